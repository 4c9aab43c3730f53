//! Client mode: subscribe to an existing broker (Mosquitto, EMQX) and ingest what
//! arrives, acknowledging each QoS 1 message only after its durable write (manual
//! acks). The session is persistent (`clean_session = false`, a fixed client id), so
//! the broker keeps QoS 1 messages while citybrain is down.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

use crate::MessageSink;

/// Settings of the client mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Filters to subscribe; empty: the topic filters of every mapping.
    pub topics: Vec<String>,
    /// 0 or 1 (QoS 2 is served as 1).
    pub qos: u8,
    pub max_packet_bytes: usize,
}

/// Runs the client until the process ends; reconnects on its own.
pub async fn run<S: MessageSink>(settings: ClientSettings, ingest: Arc<S>) {
    let mut opts = MqttOptions::new(
        settings.client_id.clone(),
        settings.host.clone(),
        settings.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_inflight(1000);
    opts.set_max_packet_size(settings.max_packet_bytes, settings.max_packet_bytes);
    if let Some(u) = &settings.username {
        opts.set_credentials(u.clone(), settings.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    let filters: Vec<String> = if settings.topics.is_empty() {
        ingest.topic_filters()
    } else {
        settings.topics.clone()
    };
    let qos = if settings.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let (tx, rx) = mpsc::channel::<Publish>(8192);
    tokio::spawn(acker(rx, client.clone(), ingest));
    let endpoint = format!("{}:{}", settings.host, settings.port);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(%endpoint, session_present = ack.session_present, "MQTT client connected");
                for f in &filters {
                    if let Err(e) = client.subscribe(f.clone(), qos).await {
                        tracing::error!(filter = %f, error = %e, "MQTT subscribe failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(p).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "MQTT client connection lost; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Batches what has arrived, writes it, then acknowledges it.
async fn acker<S: MessageSink>(
    mut rx: mpsc::Receiver<Publish>,
    client: AsyncClient,
    ingest: Arc<S>,
) {
    let mut batch: Vec<Publish> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let msgs: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|p| (p.topic.as_str(), &p.payload[..]))
            .collect();
        let res = match ingest.stage(&msgs).await {
            Ok(st) => ingest.durable(st).await,
            Err(e) => Err(e),
        };
        drop(msgs);
        match res {
            Ok(_) => {
                for p in batch.drain(..) {
                    if p.qos != QoS::AtMostOnce {
                        let _ = client.ack(&p).await;
                    }
                }
            }
            Err(e) => {
                // Not acknowledged: the broker redelivers after the reconnect.
                tracing::error!(error = %e, "MQTT batch not stored; dropping the connection unacknowledged");
                batch.clear();
                let _ = client.disconnect().await;
            }
        }
    }
}
