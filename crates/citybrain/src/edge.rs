//! `citybrain edge`: the light mode that runs by the sensors. Devices publish to the
//! embedded MQTT server; the mappings and their edge rules (deadband, windows,
//! downsampling) run here; the output is appended to a durable buffer (a QoS 1
//! message is acknowledged once it is in the buffer) and forwarded to a central
//! citybrain's NGSI-LD API, in order, whenever the link is up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use citybrain_ingest::deadletter::{DeadLetters, Level, NewLetter};
use citybrain_ingest::edge::{Batch, Central, Forwarder};
use citybrain_ingest::mqtt::MqttServer;
use citybrain_ingest::{Ingest, IngestSettings, Reason};
use citybrain_model::time::{Clock, SystemClock};

use crate::config::Config;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let central = match (&cfg.edge.central_url, &cfg.edge.central_mqtt) {
        (Some(u), None) => Central::Http(u.clone()),
        (None, Some(m)) => Central::Mqtt(m.clone()),
        _ => anyhow::bail!(
            "edge mode needs one of edge.central_url (HTTP) and edge.central_mqtt (MQTT)"
        ),
    };
    let mappings = cfg
        .ingest
        .mappings_dir
        .clone()
        .context("edge mode needs ingest.mappings_dir")?;
    let _lock = crate::lock_data_dir(&cfg)?;
    let buffer_dir = cfg
        .edge
        .buffer_dir
        .clone()
        .unwrap_or_else(|| cfg.storage.data_dir.join("edge-buffer"));
    let fw = Arc::new(
        Forwarder::open(&buffer_dir)
            .with_context(|| format!("opening the edge buffer {}", buffer_dir.display()))?,
    );
    let dead = Arc::new(DeadLetters::open_with(
        &cfg.ingest.deadletters_dir(&cfg.storage.data_dir),
        cfg.ingest.deadletter_retention()?,
        Some(citybrain_model::time::Clock::now(
            &citybrain_model::time::SystemClock,
        )),
    )?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ing = Arc::new(
        Ingest::forwarding(
            fw.clone(),
            clock.clone(),
            dead.clone(),
            IngestSettings {
                mappings_dir: Some(mappings.clone()),
                max_payload_bytes: cfg.ingest.max_payload_bytes,
            },
        )
        .with_context(|| format!("loading the mappings in {}", mappings.display()))?,
    );
    let (backlog, entities) = fw.backlog()?;
    if backlog > 0 {
        tracing::info!(
            batches = backlog,
            entities,
            "edge buffer holds a backlog; forwarding it first"
        );
    }
    // A batch the central refuses as a whole is kept as a dead letter here.
    let dead2 = dead.clone();
    let clock2 = clock.clone();
    let rejected = Arc::new(move |b: &Batch, why: String| {
        let raw = citybrain_ingest::json_bytes(&b.entities, "refused edge batch");
        let letter = NewLetter {
            source: "edge-forward".into(),
            reason: Reason::Invalid,
            message: why,
            level: Level::Payload,
            origin: None,
            size: raw.len() as u64,
            truncated: false,
            raw,
        };
        if let Err(e) = dead2.put_many(vec![letter], clock2.now()) {
            tracing::error!(error = %e, "could not keep a refused batch as a dead letter");
        }
    });
    tokio::spawn(fw.clone().run(central.clone(), rejected));
    tokio::spawn(crate::window_flush(ing.clone()));
    #[cfg(unix)]
    tokio::spawn(crate::reload_on_sighup(ing.clone()));
    let server = MqttServer::start(cfg.mqtt.settings(), ing.clone())
        .await
        .with_context(|| format!("starting the MQTT server on {}", cfg.mqtt.listen))?;
    crate::status_line(&format!(
        "citybrain edge MQTT listening on mqtt://{}",
        server.addr
    ));
    tracing::info!(?central, buffer = %buffer_dir.display(), "edge mode forwarding");
    crate::shutdown_signal().await;
    server.stop();
    // Give the forwarder a moment to send what is buffered; the rest stays on disk.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while fw.backlog().map(|b| b.0).unwrap_or(0) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
