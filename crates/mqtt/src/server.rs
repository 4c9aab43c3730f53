//! The embedded MQTT server: one task reads each connection and batches its PUBLISHes;
//! a processor task per connection writes each batch through the ingestion pipeline
//! (one durable write per batch) and only then sends the PUBACKs/PUBRECs, in order; a
//! writer task encodes acknowledgements and deliveries. When the store cannot make a
//! batch durable the connection is closed without acknowledging it, so the client
//! sends it again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::codec::{self, In, Out, Refusal, Version};
use super::events;
use super::hub::{Delivery, Hub};
use super::{Grant, MqttSettings, MqttStats};
use crate::MessageSink;
use citybrain_telemetry::InternalEvent;

/// Most messages the reader gathers before handing them on.
const MAX_BATCH: usize = 4096;
/// Most messages the processor merges into one durable write.
const MAX_MERGED: usize = 32_768;

/// A running server.
pub struct MqttServer {
    pub hub: Arc<Hub>,
    pub addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
}

impl MqttServer {
    /// Binds and starts accepting.
    pub async fn start<S: MessageSink>(
        settings: MqttSettings,
        ingest: Arc<S>,
    ) -> std::io::Result<MqttServer> {
        let listener = TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let hub = Arc::new(Hub::new(ingest.mqtt_stats()));
        let (stop, stopped) = watch::channel(false);
        let settings = Arc::new(settings);
        let h = hub.clone();
        tokio::spawn(async move {
            accept_loop(listener, settings, ingest, h, stopped).await;
        });
        tracing::info!(%addr, "MQTT server listening");
        Ok(MqttServer { hub, addr, stop })
    }

    /// Stops accepting; open connections end when their clients go.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop<S: MessageSink>(
    listener: TcpListener,
    settings: Arc<MqttSettings>,
    ingest: Arc<S>,
    hub: Arc<Hub>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            acc = listener.accept() => match acc {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (s, i, h) = (settings.clone(), ingest.clone(), hub.clone());
                    tokio::spawn(async move {
                        let stats = h.stats.clone();
                        if let Err(e) = connection(stream, s, i, h).await {
                            if matches!(e, ConnError::Protocol(_)) {
                                events::ProtocolError {
                                    stats: &stats,
                                    peer: &peer,
                                    error: &e,
                                }
                                .emit();
                            } else {
                                tracing::debug!(%peer, error = %e, "MQTT connection ended");
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A publish waiting for its durable write.
struct Incoming {
    topic: String,
    payload: Bytes,
    qos: QoS,
    pkid: u16,
    retain: bool,
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the client was idle beyond its keep-alive")]
    KeepAlive,
    #[error("the connection is going away")]
    Closed,
}

impl From<codec::CodecError> for ConnError {
    fn from(e: codec::CodecError) -> Self {
        ConnError::Protocol(e.to_string())
    }
}

struct Guard {
    hub: Arc<Hub>,
    conn: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.disconnect(self.conn);
        self.hub
            .stats
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<(), ConnError> {
    buf.reserve(16 * 1024);
    let n = stream.read_buf(buf).await?;
    if n == 0 {
        return Err(ConnError::Closed);
    }
    Ok(())
}

/// Serves one client over a plain TCP stream, or over TLS when the server has it
/// (the handshake within 10 s, like the CONNECT).
async fn connection<S: MessageSink>(
    stream: TcpStream,
    settings: Arc<MqttSettings>,
    ingest: Arc<S>,
    hub: Arc<Hub>,
) -> Result<(), ConnError> {
    match settings.tls.clone() {
        None => {
            let (rd, wr) = stream.into_split();
            session(rd, wr, settings, ingest, hub).await
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
                .map_err(|_| ConnError::Protocol("no TLS handshake within 10 s".into()))?
                .map_err(|e| ConnError::Protocol(format!("TLS handshake: {e}")))?;
            let (rd, wr) = tokio::io::split(tls);
            session(rd, wr, settings, ingest, hub).await
        }
    }
}

async fn session<S: MessageSink>(
    mut rd: impl AsyncRead + Unpin + Send + 'static,
    mut wr: impl AsyncWrite + Unpin + Send + 'static,
    settings: Arc<MqttSettings>,
    ingest: Arc<S>,
    hub: Arc<Hub>,
) -> Result<(), ConnError> {
    let stats = hub.stats.clone();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // CONNECT within 10 seconds.
    let (version, connect) = tokio::time::timeout(Duration::from_secs(10), async {
        let version = loop {
            if let Some(v) = codec::sniff_version(&buf)? {
                break v;
            }
            read_more(&mut rd, &mut buf).await?;
        };
        loop {
            if let Some(p) = codec::read(version, &mut buf, settings.max_packet_bytes)? {
                return Ok::<_, ConnError>((version, p));
            }
            read_more(&mut rd, &mut buf).await?;
        }
    })
    .await
    .map_err(|_| ConnError::Protocol("no CONNECT within 10 s".into()))??;
    let In::Connect {
        client_id,
        keep_alive,
        username,
        password,
        ..
    } = connect
    else {
        return Err(ConnError::Protocol(
            "the first packet must be CONNECT".into(),
        ));
    };
    let verdict = if MqttStats::get(&stats.connections) as usize >= settings.max_connections {
        Err(Refusal::ServerBusy)
    } else if client_id.len() > 256 {
        Err(Refusal::BadClientId)
    } else {
        settings
            .authenticate(&client_id, username.as_deref(), password.as_deref())
            .await
    };
    let mut out = BytesMut::new();
    codec::write(
        version,
        Out::ConnAck(verdict.as_ref().map(|_| ()).map_err(|r| *r)),
        &mut out,
    )?;
    wr.write_all(&out).await?;
    let grant = match verdict {
        Ok(g) => g,
        Err(r) => {
            events::ConnectionRefused {
                stats: &stats,
                client_id: &client_id,
                why: &r,
            }
            .emit();
            return Ok(());
        }
    };
    MqttStats::add(&stats.connections, 1);
    MqttStats::add(&stats.connections_total, 1);
    let conn = hub.connection_id();
    let _guard = Guard {
        hub: hub.clone(),
        conn,
    };
    tracing::debug!(client_id, principal = %grant.principal().actor(), ?version, "MQTT client connected");

    let (out_tx, out_rx) = mpsc::channel::<Out>(1024);
    let (del_tx, del_rx) = mpsc::channel::<Delivery>(settings.subscriber_queue.max(1));
    let (batch_tx, batch_rx) = mpsc::channel::<Vec<Incoming>>(16);
    let writer = tokio::spawn(writer(wr, version, out_rx, del_rx));
    let processor = tokio::spawn(processor(batch_rx, out_tx.clone(), ingest, hub.clone()));

    let res = reader(
        &mut rd, &mut buf, version, keep_alive, &settings, &grant, conn, &hub, &out_tx, &del_tx,
        &batch_tx,
    )
    .await;
    drop(batch_tx);
    // Let the processor finish (and acknowledge) what it holds before closing.
    let _ = processor.await;
    drop(out_tx);
    drop(del_tx);
    let _ = writer.await;
    match res {
        Err(ConnError::Closed) => Ok(()),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn reader(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    version: Version,
    keep_alive: u16,
    settings: &MqttSettings,
    grant: &Grant,
    conn: u64,
    hub: &Arc<Hub>,
    out: &mpsc::Sender<Out>,
    deliveries: &mpsc::Sender<Delivery>,
    batches: &mpsc::Sender<Vec<Incoming>>,
) -> Result<(), ConnError> {
    let stats = hub.stats.clone();
    let idle = if keep_alive == 0 {
        Duration::from_secs(24 * 3600)
    } else {
        Duration::from_millis(keep_alive as u64 * 1500)
    };
    let mut aliases: HashMap<u16, String> = HashMap::new();
    // QoS 2 packet ids received and not yet released.
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    let mut batch: Vec<Incoming> = Vec::new();
    let send = |o: Out| async move { out.send(o).await.map_err(|_| ConnError::Closed) };
    loop {
        while let Some(p) = codec::read(version, buf, settings.max_packet_bytes)? {
            match p {
                In::Publish {
                    topic,
                    alias,
                    payload,
                    qos,
                    pkid,
                    retain,
                } => {
                    let topic = match (topic.is_empty(), alias) {
                        (false, Some(a)) => {
                            aliases.insert(a, topic.clone());
                            topic
                        }
                        (true, Some(a)) => aliases.get(&a).cloned().ok_or_else(|| {
                            ConnError::Protocol(format!("unknown topic alias {a}"))
                        })?,
                        (false, None) => topic,
                        (true, None) => {
                            return Err(ConnError::Protocol("PUBLISH without a topic".into()))
                        }
                    };
                    if !rumqttc::mqttbytes::valid_topic(&topic) {
                        return Err(ConnError::Protocol(format!(
                            "'{topic}' is not a valid topic name"
                        )));
                    }
                    MqttStats::add(&stats.messages_in, 1);
                    MqttStats::add(&stats.bytes_in, payload.len() as u64);
                    if !grant.may_publish(&topic) {
                        events::Denied {
                            stats: &stats,
                            what: "publish",
                            topic: &topic,
                            user: grant.user.as_deref(),
                        }
                        .emit();
                        match (qos, version) {
                            (QoS::AtMostOnce, _) => continue,
                            (_, Version::V4) => {
                                // 3.1.1 cannot refuse a PUBLISH: the spec's answer is
                                // to close the connection.
                                return Err(ConnError::Protocol(format!(
                                    "not authorized to publish to '{topic}'"
                                )));
                            }
                            (QoS::AtLeastOnce, Version::V5) => {
                                send(Out::PubAck(pkid, false)).await?
                            }
                            (QoS::ExactlyOnce, Version::V5) => {
                                send(Out::PubRec(pkid, false)).await?
                            }
                        }
                        continue;
                    }
                    if let Some(limiter) = &settings.rate {
                        let principal = grant.principal();
                        while let Err(wait) = limiter.take(&principal, std::time::Instant::now()) {
                            // Back-pressure: what is batched goes on to be written and
                            // acknowledged; this client is not read meanwhile.
                            MqttStats::add(&stats.throttled, 1);
                            if !batch.is_empty() {
                                batches
                                    .send(std::mem::take(&mut batch))
                                    .await
                                    .map_err(|_| ConnError::Closed)?;
                            }
                            tokio::time::sleep(wait).await;
                        }
                    }
                    if qos == QoS::ExactlyOnce && !awaiting_rel.insert(pkid) {
                        // A re-sent QoS 2 message already written: acknowledge again.
                        send(Out::PubRec(pkid, true)).await?;
                        continue;
                    }
                    batch.push(Incoming {
                        topic,
                        payload,
                        qos,
                        pkid,
                        retain,
                    });
                    if batch.len() >= MAX_BATCH {
                        batches
                            .send(std::mem::take(&mut batch))
                            .await
                            .map_err(|_| ConnError::Closed)?;
                    }
                }
                In::PubRel(pkid) => {
                    awaiting_rel.remove(&pkid);
                    send(Out::PubComp(pkid)).await?;
                }
                In::PubAck(_) | In::PubComp(_) => {}
                In::PubRec(pkid) => send(Out::PubRel(pkid)).await?,
                In::Subscribe { pkid, filters } => {
                    let mut codes = Vec::with_capacity(filters.len());
                    let mut retained = Vec::new();
                    for (f, q) in &filters {
                        if rumqttc::mqttbytes::valid_filter(f) && grant.may_subscribe(f) {
                            let q = if *q == QoS::ExactlyOnce {
                                QoS::AtLeastOnce
                            } else {
                                *q
                            };
                            retained.extend(hub.subscribe(conn, f, q, deliveries.clone()));
                            codes.push(Some(q));
                        } else {
                            events::Denied {
                                stats: &stats,
                                what: "subscription",
                                topic: f,
                                user: grant.user.as_deref(),
                            }
                            .emit();
                            codes.push(None);
                        }
                    }
                    send(Out::SubAck(pkid, codes)).await?;
                    for d in retained {
                        let _ = deliveries.try_send(d);
                    }
                }
                In::Unsubscribe { pkid, filters } => {
                    for f in &filters {
                        hub.unsubscribe(conn, f);
                    }
                    send(Out::UnsubAck(pkid, filters.len())).await?;
                }
                In::PingReq => send(Out::PingResp).await?,
                In::Disconnect => {
                    if !batch.is_empty() {
                        let _ = batches.send(std::mem::take(&mut batch)).await;
                    }
                    return Err(ConnError::Closed);
                }
                In::Connect { .. } => {
                    return Err(ConnError::Protocol("a second CONNECT".into()));
                }
                In::Unexpected(what) => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected {what} from a client"
                    )));
                }
            }
        }
        // Everything buffered is parsed: hand the batch over, then read more.
        if !batch.is_empty() {
            batches
                .send(std::mem::take(&mut batch))
                .await
                .map_err(|_| ConnError::Closed)?;
        }
        match tokio::time::timeout(idle, read_more(rd, buf)).await {
            Ok(r) => r?,
            Err(_) => return Err(ConnError::KeepAlive),
        }
    }
}

/// Writes each batch durably, then acknowledges it and forwards it to subscribers.
/// Stages each batch (applied and logged) and hands it to the acknowledger, which
/// waits until it is durable and only then acknowledges it, in order. Staging the next
/// batch while the previous one's fsync runs keeps both cores busy.
async fn processor<S: MessageSink>(
    mut batches: mpsc::Receiver<Vec<Incoming>>,
    out: mpsc::Sender<Out>,
    ingest: Arc<S>,
    hub: Arc<Hub>,
) {
    let (staged_tx, staged_rx) = mpsc::channel::<(S::Staged, Vec<Incoming>)>(4);
    let acker = tokio::spawn(acknowledger(staged_rx, out, ingest.clone(), hub));
    while let Some(mut batch) = batches.recv().await {
        // Whatever else the reader queued meanwhile joins this write (group commit per
        // connection: under load, batches grow instead of fsyncs).
        while batch.len() < MAX_MERGED {
            match batches.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let msgs: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|m| (m.topic.as_str(), &m.payload[..]))
            .collect();
        let staged = ingest.stage(&msgs).await;
        drop(msgs);
        match staged {
            Ok(st) => {
                if staged_tx.send((st, batch)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                // Nothing of this batch is acknowledged: the client will send it again.
                tracing::error!(error = %e, messages = batch.len(), "MQTT batch not stored; closing the connection unacknowledged");
                break;
            }
        }
    }
    drop(staged_tx);
    let _ = acker.await;
}

async fn acknowledger<S: MessageSink>(
    mut staged: mpsc::Receiver<(S::Staged, Vec<Incoming>)>,
    out: mpsc::Sender<Out>,
    ingest: Arc<S>,
    hub: Arc<Hub>,
) {
    while let Some((st, batch)) = staged.recv().await {
        if let Err(e) = ingest.durable(st).await {
            tracing::error!(error = %e, messages = batch.len(), "MQTT batch not durable; closing the connection unacknowledged");
            return;
        }
        for m in &batch {
            hub.publish(&m.topic, &m.payload, m.qos, m.retain);
            let ack = match m.qos {
                QoS::AtMostOnce => continue,
                QoS::AtLeastOnce => Out::PubAck(m.pkid, true),
                QoS::ExactlyOnce => Out::PubRec(m.pkid, true),
            };
            MqttStats::add(&hub.stats.acks, 1);
            if out.send(ack).await.is_err() {
                return;
            }
        }
    }
}

async fn writer(
    mut wr: impl AsyncWrite + Unpin,
    version: Version,
    mut out: mpsc::Receiver<Out>,
    mut deliveries: mpsc::Receiver<Delivery>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut next_pkid: u16 = 0;
    let mut deliveries_open = true;
    loop {
        let first = tokio::select! {
            o = out.recv() => match o {
                Some(o) => o,
                None => break,
            },
            d = deliveries.recv(), if deliveries_open => match d {
                Some(d) => delivery(d, &mut next_pkid),
                None => { deliveries_open = false; continue; }
            },
        };
        if codec::write(version, first, &mut buf).is_err() {
            break;
        }
        // Coalesce whatever else is ready into the same write.
        while buf.len() < 64 * 1024 {
            let next = match out.try_recv() {
                Ok(o) => o,
                Err(_) => match deliveries.try_recv() {
                    Ok(d) => delivery(d, &mut next_pkid),
                    Err(_) => break,
                },
            };
            if codec::write(version, next, &mut buf).is_err() {
                break;
            }
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

fn delivery(d: Delivery, next_pkid: &mut u16) -> Out {
    let pkid = if d.qos == QoS::AtMostOnce {
        0
    } else {
        *next_pkid = next_pkid.wrapping_add(1).max(1);
        *next_pkid
    };
    Out::Publish {
        topic: d.topic,
        payload: d.payload,
        qos: d.qos,
        pkid,
        retain: d.retain,
    }
}
