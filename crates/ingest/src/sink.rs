//! Ingestion as the MQTT server's and client's message sink: a batch of messages is
//! staged through the mappings (applied and logged) and acknowledged once durable.

use std::sync::Arc;

use citybrain_mqtt::{MessageSink, MqttStats};

use crate::pipeline::{Ingest, IngestError, Staged};

impl MessageSink for Ingest {
    type Staged = Staged;
    type Error = IngestError;

    async fn stage(&self, msgs: &[(&str, &[u8])]) -> Result<Staged, IngestError> {
        self.stage_messages(msgs).await
    }

    async fn durable(&self, staged: Staged) -> Result<(), IngestError> {
        staged.wait(self).await.map(|_| ())
    }

    fn topic_filters(&self) -> Vec<String> {
        self.sources()
            .iter()
            .flat_map(|s| {
                s.mapping
                    .topics
                    .iter()
                    .map(|t| t.filter())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn mqtt_stats(&self) -> Arc<MqttStats> {
        self.mqtt.clone()
    }
}
