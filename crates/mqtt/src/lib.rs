//! MQTT, both ways a city runs it:
//! - an embedded MQTT server (3.1.1 and 5) that `citybrain serve` starts: devices
//!   publish, messages are routed by the mappings' topic patterns, and a QoS 1/2
//!   message is acknowledged only after its durable write (`server.rs`);
//! - a client that subscribes to an existing broker (Mosquitto, EMQX) and acknowledges
//!   the same way, with manual acks (`client.rs`);
//! - and NGSI-LD notifications to `mqtt://` endpoints (`notify.rs`).
//!
//! Why not rumqttd: its router sends PUBACK as soon as a message is in its in-memory
//! log, before any application sees it, so "acknowledged means durable" could not hold,
//! and it has no per-topic ACLs. The packet codecs come from rumqttc (the same project);
//! the server here is the session layer: auth, ACLs, subscriptions, retained messages,
//! and acknowledgement after the write. Sessions are clean (no persistent sessions).
//!
//! The crate knows nothing of ingestion: messages go to a [`MessageSink`] (the
//! ingestion pipeline implements it), which stages a batch and says when it is
//! durable; only then is it acknowledged.

pub mod client;
pub mod codec;
mod events;
pub mod hub;
pub mod notify;
pub mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use hub::Hub;
pub use rumqttc::mqttbytes::{valid_filter, valid_topic};
pub use server::MqttServer;

/// Where MQTT messages go (the ingestion pipeline). A message is acknowledged (PUBACK or
/// PUBREC from the server; the manual ack in client mode) only once [`MessageSink::durable`]
/// has answered for the batch that carried it; a failure closes the connection
/// unacknowledged, so the sender sends again.
pub trait MessageSink: Send + Sync + 'static {
    /// A batch applied and logged, not yet known durable.
    type Staged: Send + 'static;
    type Error: std::fmt::Display + Send + 'static;

    /// Applies and logs a batch of `(topic, payload)` messages.
    fn stage(
        &self,
        msgs: &[(&str, &[u8])],
    ) -> impl std::future::Future<Output = Result<Self::Staged, Self::Error>> + Send;

    /// Waits until a staged batch is durable.
    fn durable(
        &self,
        staged: Self::Staged,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;

    /// The topic filters the sink routes (client mode subscribes to them when told
    /// no topics).
    fn topic_filters(&self) -> Vec<String>;

    /// The counters the server moves (shared with whoever reports them).
    fn mqtt_stats(&self) -> std::sync::Arc<MqttStats>;
}

/// One user of the embedded server: a password or a token (a client presents the token
/// as its password, with any username), and the topic filters it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttUser {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    /// Filters this user may publish to (`+`, `#` wildcards; `{username}` and
    /// `{client_id}` are replaced). Default: everything.
    #[serde(default = "all")]
    pub publish: Vec<String>,
    /// Filters this user may subscribe to. Default: everything.
    #[serde(default = "all")]
    pub subscribe: Vec<String>,
}

fn all() -> Vec<String> {
    vec!["#".into()]
}

/// Settings of the embedded server.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub listen: SocketAddr,
    /// Clients without credentials may connect (then `anonymous_*` filters apply).
    pub allow_anonymous: bool,
    pub anonymous_publish: Vec<String>,
    pub anonymous_subscribe: Vec<String>,
    pub users: Vec<MqttUser>,
    pub max_packet_bytes: usize,
    pub max_connections: usize,
    /// Messages a subscriber may have queued before new ones are dropped (counted).
    pub subscriber_queue: usize,
    /// The platform's API keys and OIDC tokens, accepted as passwords (any username);
    /// the credential's scopes decide publishing (`write`) and subscribing (`read`).
    pub credentials: Option<std::sync::Arc<citybrain_identity::Authenticator>>,
    /// Serve MQTT over TLS (MQTTS, port 8883 by convention) with this configuration.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Publishes per principal (`mqtt.publishes_per_second`; buckets of their own, not
    /// the HTTP API's): a client over its rate is slowed (its connection is not read until its bucket refills), never
    /// dropped, so QoS 1 messages are delayed, not lost.
    pub rate: Option<std::sync::Arc<citybrain_identity::RateLimiter>>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            allow_anonymous: true,
            anonymous_publish: all(),
            anonymous_subscribe: all(),
            users: Vec::new(),
            max_packet_bytes: 1 << 20,
            max_connections: 10_000,
            subscriber_queue: 10_000,
            credentials: None,
            tls: None,
            rate: None,
        }
    }
}

/// Who a connection is, once authenticated, and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub user: Option<String>,
    /// The identity a platform credential (API key, token) proved.
    pub identity: Option<std::sync::Arc<citybrain_access::Identity>>,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Grant {
    /// The connection's principal: the MQTT family's request context is built from
    /// it, once per connection (the user who authenticated, or anonymous).
    pub fn principal(&self) -> citybrain_broker::Principal {
        if let Some(i) = &self.identity {
            return citybrain_broker::Principal::User(i.clone());
        }
        match &self.user {
            Some(u) => citybrain_broker::Principal::user(u, &[]),
            None => citybrain_broker::Principal::Anonymous,
        }
    }

    /// Whether `topic` may be published.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish
            .iter()
            .any(|f| rumqttc::mqttbytes::matches(topic, f))
    }

    /// Whether `filter` may be subscribed: it must be covered by an allowed filter
    /// (`a/+/c` is covered by `a/#`, not the other way round).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|allowed| covers(allowed, filter))
    }
}

/// Whether every topic matching `filter` also matches `allowed`.
fn covers(allowed: &str, filter: &str) -> bool {
    let mut a = allowed.split('/');
    let mut f = filter.split('/');
    loop {
        match (a.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl MqttSettings {
    /// Authenticates a CONNECT: the configured users first, then the platform's API keys
    /// and tokens (as the password, any username).
    pub async fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Grant, codec::Refusal> {
        let local = self.authenticate_local(client_id, username, password);
        let (Err(codec::Refusal::BadCredentials), Some(auth), Some(pw)) =
            (&local, &self.credentials, password)
        else {
            return local;
        };
        match auth
            .authenticate(citybrain_identity::Credential::Secret(pw))
            .await
        {
            Ok(citybrain_access::Principal::User(identity)) => {
                let all = |yes: bool| if yes { all() } else { Vec::new() };
                Ok(Grant {
                    user: Some(identity.id.clone()),
                    publish: all(identity.scopes.write),
                    subscribe: all(identity.scopes.read),
                    identity: Some(identity),
                })
            }
            Ok(_) => local,
            Err(e) => {
                tracing::info!(client_id, reason = e.reason(), "MQTT credential refused");
                local
            }
        }
    }

    /// Authenticates against the configured users and anonymous access.
    fn authenticate_local(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Grant, codec::Refusal> {
        let expand = |filters: &[String], user: &str| -> Vec<String> {
            filters
                .iter()
                .map(|f| {
                    f.replace("{username}", user)
                        .replace("{client_id}", client_id)
                })
                .collect()
        };
        match (username, password) {
            (None, None) if self.allow_anonymous => Ok(Grant {
                user: None,
                identity: None,
                publish: expand(&self.anonymous_publish, ""),
                subscribe: expand(&self.anonymous_subscribe, ""),
            }),
            (None, None) => Err(codec::Refusal::NotAuthorized),
            (_, Some(pw)) => {
                let hit = self.users.iter().find(|u| {
                    let by_password = u.password.as_deref().is_some_and(|p| {
                        username == Some(u.username.as_str())
                            && constant_time_eq(p.as_bytes(), pw.as_bytes())
                    });
                    let by_token = u
                        .token
                        .as_deref()
                        .is_some_and(|t| constant_time_eq(t.as_bytes(), pw.as_bytes()));
                    by_password || by_token
                });
                match hit {
                    Some(u) => Ok(Grant {
                        user: Some(u.username.clone()),
                        identity: None,
                        publish: expand(&u.publish, &u.username),
                        subscribe: expand(&u.subscribe, &u.username),
                    }),
                    None => Err(codec::Refusal::BadCredentials),
                }
            }
            (Some(_), None) => Err(codec::Refusal::BadCredentials),
        }
    }
}

/// MQTT metrics, each defined once (see `citybrain-telemetry`).
pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static CONNECTIONS: MetricDef =
        MetricDef::gauge("mqtt_connections", "MQTT clients connected now");
    pub static CONNECTIONS_TOTAL: MetricDef = MetricDef::counter(
        "mqtt_connections_accepted",
        "MQTT connections accepted since start",
    );
    pub static REFUSED: MetricDef = MetricDef::counter(
        "mqtt_refused",
        "MQTT connections refused (credentials, limits)",
    );
    pub static MESSAGES_IN: MetricDef =
        MetricDef::counter("mqtt_messages_in", "MQTT PUBLISH packets received");
    pub static BYTES_IN: MetricDef =
        MetricDef::counter("mqtt_bytes_in", "MQTT payload bytes received");
    pub static ACKS: MetricDef = MetricDef::counter(
        "mqtt_acks",
        "MQTT PUBACK/PUBREC sent after the durable write",
    );
    pub static DENIED: MetricDef = MetricDef::counter(
        "mqtt_denied",
        "MQTT publishes or subscriptions refused by ACL",
    );
    pub static DELIVERED: MetricDef =
        MetricDef::counter("mqtt_delivered", "MQTT messages queued to subscribers");
    pub static DELIVERY_DROPPED: MetricDef = MetricDef::counter(
        "mqtt_delivery_dropped",
        "MQTT messages dropped because a subscriber queue was full",
    );
    pub static PROTOCOL_ERRORS: MetricDef = MetricDef::counter(
        "mqtt_protocol_errors",
        "MQTT connections closed for protocol errors",
    );
    pub static THROTTLED: MetricDef = MetricDef::counter(
        "mqtt_throttled",
        "MQTT publishes held back because their principal was over its rate",
    );
}

impl citybrain_telemetry::Metrics for MqttStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        for (def, c) in [
            (&metric::CONNECTIONS, &self.connections),
            (&metric::CONNECTIONS_TOTAL, &self.connections_total),
            (&metric::REFUSED, &self.refused),
            (&metric::MESSAGES_IN, &self.messages_in),
            (&metric::BYTES_IN, &self.bytes_in),
            (&metric::ACKS, &self.acks),
            (&metric::DENIED, &self.denied),
            (&metric::DELIVERED, &self.delivered),
            (&metric::DELIVERY_DROPPED, &self.delivery_dropped),
            (&metric::PROTOCOL_ERRORS, &self.protocol_errors),
            (&metric::THROTTLED, &self.throttled),
        ] {
            out(def, MqttStats::get(c) as f64);
        }
    }
}

/// Counters of the MQTT side, read by `/metrics`.
#[derive(Debug, Default)]
pub struct MqttStats {
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub refused: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub acks: AtomicU64,
    pub denied: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_dropped: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub throttled: AtomicU64,
}

impl MqttStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cover_filters() {
        assert!(covers("#", "a/b"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/+/c", "a/x/c"));
        assert!(!covers("a/+/c", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("a/b", "a/b"));
        assert!(!covers("a/b", "a/b/c"));
    }

    #[tokio::test]
    async fn auth_by_password_token_or_anonymous() {
        let s = MqttSettings {
            allow_anonymous: false,
            users: vec![
                MqttUser {
                    username: "sensor".into(),
                    password: Some("pw".into()),
                    token: None,
                    publish: vec!["city/{username}/#".into()],
                    subscribe: vec![],
                },
                MqttUser {
                    username: "gateway".into(),
                    password: None,
                    token: Some("tok-123".into()),
                    publish: vec!["city/#".into()],
                    subscribe: vec!["citybrain/notify/#".into()],
                },
            ],
            ..Default::default()
        };
        let g = s
            .authenticate("c1", Some("sensor"), Some("pw"))
            .await
            .unwrap();
        assert!(g.may_publish("city/sensor/aq"));
        assert!(!g.may_publish("city/other/aq"));
        assert!(!g.may_subscribe("#"));
        assert_eq!(
            s.authenticate("c1", Some("sensor"), Some("wrong")).await,
            Err(codec::Refusal::BadCredentials)
        );
        assert_eq!(
            s.authenticate("c1", None, None).await,
            Err(codec::Refusal::NotAuthorized)
        );
        let g = s
            .authenticate("c2", Some("anything"), Some("tok-123"))
            .await
            .unwrap();
        assert_eq!(g.user.as_deref(), Some("gateway"));
        assert!(g.may_subscribe("citybrain/notify/x"));
        assert!(!g.may_subscribe("citybrain/#"));
    }

    #[tokio::test]
    async fn platform_keys_are_passwords_and_their_scopes_decide() {
        use citybrain_identity::{Authenticator, KeyStore, NewKey};
        let dir = tempfile::tempdir().unwrap();
        let keys = std::sync::Arc::new(KeyStore::open(dir.path()).unwrap());
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let key = |scopes: &[&str]| {
            keys.create(
                NewKey {
                    name: "gateway".into(),
                    user: "gw-1".into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
                now,
            )
            .unwrap()
        };
        let (_, writer) = key(&["write"]);
        let (revoked, reader) = key(&["read"]);
        let clock = std::sync::Arc::new(citybrain_model::time::ManualClock::new(now));
        let s = MqttSettings {
            allow_anonymous: false,
            credentials: Some(std::sync::Arc::new(Authenticator::new(
                Some(keys.clone()),
                None,
                clock,
            ))),
            ..Default::default()
        };
        let g = s
            .authenticate("c", Some("any"), Some(&writer))
            .await
            .unwrap();
        assert_eq!(g.principal().actor(), "user:gw-1");
        assert!(g.may_publish("city/x") && !g.may_subscribe("city/#"));
        let g = s.authenticate("c", None, Some(&reader)).await.unwrap();
        assert!(!g.may_publish("city/x") && g.may_subscribe("city/#"));
        keys.revoke(&revoked.id, now).unwrap();
        assert_eq!(
            s.authenticate("c", None, Some(&reader)).await,
            Err(codec::Refusal::BadCredentials)
        );
        let mut wrong = writer.clone();
        wrong.push('x');
        assert_eq!(
            s.authenticate("c", None, Some(&wrong)).await,
            Err(codec::Refusal::BadCredentials)
        );
    }
}
