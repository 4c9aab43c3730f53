//! The MQTT server's internal events: each is logged and counted in one place
//! (`citybrain-telemetry`), so a log line and its metric cannot drift apart.

use citybrain_telemetry::InternalEvent;

use super::MqttStats;

/// A CONNECT was refused (credentials, limits, client id).
pub(crate) struct ConnectionRefused<'a> {
    pub stats: &'a MqttStats,
    pub client_id: &'a str,
    pub why: &'a dyn std::fmt::Debug,
}

impl InternalEvent for ConnectionRefused<'_> {
    fn emit(self) {
        tracing::info!(client_id = self.client_id, why = ?self.why, "MQTT connection refused");
        MqttStats::add(&self.stats.refused, 1);
    }
}

/// A PUBLISH or SUBSCRIBE refused by the connection's ACL.
pub(crate) struct Denied<'a> {
    pub stats: &'a MqttStats,
    pub what: &'static str,
    pub topic: &'a str,
    pub user: Option<&'a str>,
}

impl InternalEvent for Denied<'_> {
    fn emit(self) {
        tracing::info!(topic = self.topic, user = ?self.user, what = self.what, "MQTT {} denied by ACL", self.what);
        MqttStats::add(&self.stats.denied, 1);
    }
}

/// A connection closed for a protocol error.
pub(crate) struct ProtocolError<'a> {
    pub stats: &'a MqttStats,
    pub peer: &'a std::net::SocketAddr,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ProtocolError<'_> {
    fn emit(self) {
        tracing::info!(peer = %self.peer, error = %self.error, "MQTT connection closed for a protocol error");
        MqttStats::add(&self.stats.protocol_errors, 1);
    }
}

/// A message not delivered to a subscriber whose queue was full.
pub(crate) struct DeliveryDropped<'a> {
    pub stats: &'a MqttStats,
    pub topic: &'a str,
}

impl InternalEvent for DeliveryDropped<'_> {
    fn emit(self) {
        tracing::debug!(
            topic = self.topic,
            "MQTT subscriber queue full: message dropped"
        );
        MqttStats::add(&self.stats.delivery_dropped, 1);
    }
}
