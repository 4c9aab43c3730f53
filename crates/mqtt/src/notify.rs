//! NGSI-LD notifications to `mqtt://[user:password@]host[:port]/topic` endpoints. A
//! notification for the embedded server's own address goes straight into its hub; any
//! other broker gets a client connection, kept open and reused per (host, port, user).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use citybrain_broker::subscriptions::MqttTransport;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use super::hub::Hub;

/// A parsed `mqtt://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUri {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub topic: String,
}

impl MqttUri {
    pub fn parse(uri: &str) -> Result<MqttUri, String> {
        let rest = uri
            .strip_prefix("mqtt://")
            .ok_or_else(|| format!("'{uri}' is not an mqtt:// URI"))?;
        let (authority, topic) = rest
            .split_once('/')
            .ok_or_else(|| format!("'{uri}' has no topic"))?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
                None => (Some(u.to_string()), None),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("'{uri}': bad port '{p}'"))?,
            ),
            _ => (hostport.to_string(), 1883),
        };
        if host.is_empty() || topic.is_empty() {
            return Err(format!("'{uri}' needs a host and a topic"));
        }
        Ok(MqttUri {
            host,
            port,
            username,
            password,
            topic: topic.to_string(),
        })
    }
}

fn qos_of(q: u8) -> QoS {
    match q {
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtMostOnce,
    }
}

/// Clients are reused per (host, port, username).
type ClientKey = (String, u16, Option<String>);

/// The notification transport.
pub struct MqttNotifier {
    local: Option<(SocketAddr, Arc<Hub>)>,
    clients: Mutex<HashMap<ClientKey, AsyncClient>>,
}

impl MqttNotifier {
    /// `local`: the embedded server's address and hub, when it runs.
    pub fn new(local: Option<(SocketAddr, Arc<Hub>)>) -> Self {
        Self {
            local,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn is_local(&self, u: &MqttUri) -> Option<&Arc<Hub>> {
        let (addr, hub) = self.local.as_ref()?;
        let host_ok = match u.host.as_str() {
            "localhost" => addr.ip().is_loopback(),
            h => h
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == addr.ip() || (ip.is_loopback() && addr.ip().is_loopback())),
        };
        (host_ok && u.port == addr.port()).then_some(hub)
    }

    fn client(&self, u: &MqttUri) -> AsyncClient {
        let key = (u.host.clone(), u.port, u.username.clone());
        let mut g = self.clients.lock();
        if let Some(c) = g.get(&key) {
            return c.clone();
        }
        // One id per connection: brokers close an older connection with the same id.
        let id = format!("citybrain-notify-{}-{}", std::process::id(), g.len() + 1);
        let mut opts = MqttOptions::new(id, u.host.clone(), u.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 16 << 20);
        if let Some(user) = &u.username {
            opts.set_credentials(user.clone(), u.password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let endpoint = format!("{}:{}", u.host, u.port);
        tokio::spawn(async move {
            loop {
                if let Err(e) = eventloop.poll().await {
                    tracing::warn!(%endpoint, error = %e, "MQTT notification connection failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        g.insert(key, client.clone());
        client
    }
}

impl MqttTransport for MqttNotifier {
    fn publish(
        &self,
        uri: &str,
        payload: Vec<u8>,
        qos: u8,
    ) -> futures_util_box::BoxFuture<'_, Result<(), String>> {
        let parsed = MqttUri::parse(uri);
        Box::pin(async move {
            let u = parsed?;
            if let Some(hub) = self.is_local(&u) {
                hub.publish(&u.topic, &Bytes::from(payload), qos_of(qos), false);
                return Ok(());
            }
            let client = self.client(&u);
            client
                .publish(u.topic, qos_of(qos), false, payload)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The boxed-future type of the broker's trait.
mod futures_util_box {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            MqttUri::parse("mqtt://u:p@broker.city:1884/citybrain/alerts/x").unwrap(),
            MqttUri {
                host: "broker.city".into(),
                port: 1884,
                username: Some("u".into()),
                password: Some("p".into()),
                topic: "citybrain/alerts/x".into()
            }
        );
        let u = MqttUri::parse("mqtt://127.0.0.1/t").unwrap();
        assert_eq!((u.port, u.topic.as_str()), (1883, "t"));
        assert!(MqttUri::parse("mqtt://host").is_err());
        assert!(MqttUri::parse("mqtt://host:x/t").is_err());
        assert!(MqttUri::parse("http://host/t").is_err());
    }
}
