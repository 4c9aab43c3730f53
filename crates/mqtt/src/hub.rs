//! Subscriptions and fan-out of the embedded server: who listens to which filter, the
//! retained message per topic, and delivery into each subscriber's bounded queue (a
//! slow subscriber loses messages, counted, rather than slowing publishers or the
//! ingest path).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rumqttc::QoS;
use tokio::sync::mpsc;

use super::MqttStats;
use citybrain_telemetry::InternalEvent;

/// A message for one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

struct Sub {
    conn: u64,
    filter: String,
    qos: QoS,
    tx: mpsc::Sender<Delivery>,
}

/// The subscription registry.
pub struct Hub {
    subs: RwLock<Vec<Sub>>,
    retained: Mutex<HashMap<String, (Bytes, QoS)>>,
    next_conn: AtomicU64,
    pub stats: Arc<MqttStats>,
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

impl Hub {
    pub fn new(stats: Arc<MqttStats>) -> Self {
        Self {
            subs: RwLock::new(Vec::new()),
            retained: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            stats,
        }
    }

    pub fn connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds (or replaces) a subscription; answers the retained messages it matches.
    pub fn subscribe(
        &self,
        conn: u64,
        filter: &str,
        qos: QoS,
        tx: mpsc::Sender<Delivery>,
    ) -> Vec<Delivery> {
        {
            let mut subs = self.subs.write();
            subs.retain(|s| !(s.conn == conn && s.filter == filter));
            subs.push(Sub {
                conn,
                filter: filter.to_string(),
                qos,
                tx,
            });
        }
        self.retained
            .lock()
            .iter()
            .filter(|(t, _)| rumqttc::mqttbytes::matches(t, filter))
            .map(|(t, (p, q))| Delivery {
                topic: t.clone(),
                payload: p.clone(),
                qos: min_qos(*q, qos),
                retain: true,
            })
            .collect()
    }

    pub fn unsubscribe(&self, conn: u64, filter: &str) {
        self.subs
            .write()
            .retain(|s| !(s.conn == conn && s.filter == filter));
    }

    /// Drops every subscription of a connection.
    pub fn disconnect(&self, conn: u64) {
        self.subs.write().retain(|s| s.conn != conn);
    }

    /// Delivers a message to every matching subscriber (once per connection, at the
    /// highest QoS among its matching filters, capped by the message's QoS). A retained
    /// message replaces the topic's retained one; an empty retained payload clears it.
    pub fn publish(&self, topic: &str, payload: &Bytes, qos: QoS, retain: bool) {
        if retain {
            let mut r = self.retained.lock();
            if payload.is_empty() {
                r.remove(topic);
            } else {
                r.insert(topic.to_string(), (payload.clone(), qos));
            }
        }
        let subs = self.subs.read();
        let mut best: HashMap<u64, (QoS, &mpsc::Sender<Delivery>)> = HashMap::new();
        for s in subs.iter() {
            if rumqttc::mqttbytes::matches(topic, &s.filter) {
                let q = min_qos(s.qos, qos);
                best.entry(s.conn)
                    .and_modify(|e| {
                        if (q as u8) > (e.0 as u8) {
                            e.0 = q;
                        }
                    })
                    .or_insert((q, &s.tx));
            }
        }
        for (_, (q, tx)) in best {
            let d = Delivery {
                topic: topic.to_string(),
                payload: payload.clone(),
                qos: q,
                retain: false,
            };
            if tx.try_send(d).is_ok() {
                MqttStats::add(&self.stats.delivered, 1);
            } else {
                super::events::DeliveryDropped {
                    stats: &self.stats,
                    topic,
                }
                .emit();
            }
        }
    }

    pub fn subscription_count(&self) -> usize {
        self.subs.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fan_out_retained_and_overlaps() {
        let hub = Hub::new(Arc::new(MqttStats::default()));
        let (tx, mut rx) = mpsc::channel(10);
        let a = hub.connection_id();
        hub.publish(
            "city/a/t",
            &Bytes::from_static(b"r"),
            QoS::AtLeastOnce,
            true,
        );
        let retained = hub.subscribe(a, "city/+/t", QoS::AtMostOnce, tx.clone());
        assert_eq!(retained.len(), 1);
        assert_eq!(retained[0].qos, QoS::AtMostOnce);
        hub.subscribe(a, "city/#", QoS::AtLeastOnce, tx);
        hub.publish(
            "city/b/t",
            &Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
        );
        let d = rx.recv().await.unwrap();
        assert_eq!(d.qos, QoS::AtLeastOnce);
        assert!(rx.try_recv().is_err(), "one delivery per connection");
        hub.unsubscribe(a, "city/#");
        hub.publish(
            "city/b/t",
            &Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
        );
        assert_eq!(rx.recv().await.unwrap().qos, QoS::AtMostOnce);
        hub.disconnect(a);
        assert_eq!(hub.subscription_count(), 0);
        // Clearing a retained message.
        hub.publish("city/a/t", &Bytes::new(), QoS::AtMostOnce, true);
        let (tx2, _rx2) = mpsc::channel(1);
        assert!(hub.subscribe(2, "#", QoS::AtMostOnce, tx2).is_empty());
    }
}
