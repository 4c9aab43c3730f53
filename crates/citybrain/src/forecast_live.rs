//! Live forecasts for a city's own detectors: every `TrafficFlowObserved` (by default)
//! speed on the change feed, whatever its source, feeds an online forecaster per
//! entity (`citybrain_forecast::stream`: fixed intervals by observation time), and each
//! closed interval writes a `TrafficFlowForecast` with the speed 5–60 minutes ahead and
//! its band, which rules and the map read like any entity.
//!
//! The twin's detectors are left out (`dataProvider` `citybrain-twin`): the live twin
//! forecasts them itself, per simulated period, since its readings compress time.

use std::sync::Arc;
use std::time::Duration;

use citybrain_broker::{BatchItem, Broker, Principal, RequestContext, UpsertMode};
use citybrain_forecast::online::OnlineSettings;
use citybrain_forecast::stream::{Closed, Streams};
use citybrain_model::entity::Entity;
use citybrain_store::storage::{Change, ChangeKind, EntityStore, Feed};
use serde_json::{json, Value};

use citybrain_policy::short;

use crate::config;

/// Who the forecasts are written by.
const FORECASTER: Principal = Principal::Service("forecast");
/// Writes are gathered for this long, then sent in one batch per tenant.
const FLUSH: Duration = Duration::from_secs(1);
/// The twin's readings carry this `dataProvider`.
const TWIN_PROVIDER: &str = "citybrain-twin";
/// How far ahead of the change's own time an observation may lie (s).
const FUTURE_SLACK: i64 = 300;

/// The forecast entity's id for an observed entity: `TrafficFlowObserved:x` gives
/// `TrafficFlowForecast:x` (as the twin names its own); any other id keeps all of
/// its name after `urn:ngsi-ld:`, so two detectors never share one forecast.
pub fn forecast_id(observed: &str) -> String {
    let tail = observed
        .strip_prefix("urn:ngsi-ld:TrafficFlowObserved:")
        .or_else(|| observed.strip_prefix("urn:ngsi-ld:"))
        .unwrap_or(observed);
    format!("urn:ngsi-ld:TrafficFlowForecast:{tail}")
}

/// What the forecaster reads from one change: the entity's id, the observation time
/// (unix s), the value and the location, when the change is an observation of the
/// configured type and attribute.
fn observation(c: &Change, cfg: &config::Forecast) -> Option<(Arc<Entity>, i64, f64)> {
    if c.kind == ChangeKind::Deleted {
        return None;
    }
    let e = c.after.as_ref()?;
    if !e.types.iter().any(|t| short(t) == cfg.entity_type) {
        return None;
    }
    let attr = |name: &str| {
        e.attrs
            .iter()
            .find(|(n, _)| short(n) == name)
            .and_then(|(n, _)| e.default_instance(n))
    };
    if attr("dataProvider").is_some_and(|a| a.value.to_value() == json!(TWIN_PROVIDER)) {
        return None;
    }
    let a = attr(&cfg.attribute)?;
    // Only a new reading: an update that left the attribute as it was is none.
    if let Some(before) = c.before.as_ref() {
        let old = before
            .attrs
            .iter()
            .find(|(n, _)| short(n) == cfg.attribute)
            .and_then(|(n, _)| before.default_instance(n));
        if old.is_some_and(|o| {
            o.value == a.value && o.observed_at == a.observed_at && o.modified_at == a.modified_at
        }) {
            return None;
        }
    }
    let value = a.value.to_value().as_f64()?;
    let at = a.observed_at.unwrap_or(e.modified_at);
    // A reading from the future (a wrong clock, a typo) would hold its series' open
    // interval ahead of every real reading: left out.
    if at > c.at + chrono::TimeDelta::seconds(FUTURE_SLACK) {
        return None;
    }
    Some((e.clone(), at.timestamp(), value))
}

/// The forecast entity of an observed one, normalized NGSI-LD (core context).
fn forecast_entity(
    observed: &Entity,
    closed: &Closed,
    cfg: &config::Forecast,
    interval: i64,
) -> Option<Value> {
    if closed.forecasts.is_empty() {
        return None;
    }
    let at = chrono::DateTime::from_timestamp(closed.end, 0)?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r1 = |x: f64| (x.max(0.0) * 10.0).round() / 10.0;
    let mut e = json!({
        "id": forecast_id(&observed.id),
        "type": "TrafficFlowForecast",
        "refTrafficFlowObserved": {"type": "Relationship", "object": observed.id},
        "dataProvider": {"type": "Property", "value": "citybrain-forecast"},
    });
    let obj = e.as_object_mut()?;
    for f in &closed.forecasts {
        let minutes = (f.steps as i64 * interval) / 60;
        let name = format!("{}In{minutes}min", cfg.output_prefix);
        for (suffix, v) in [("", f.value), ("Lower", f.lower), ("Upper", f.upper)] {
            obj.insert(
                format!("{name}{suffix}"),
                json!({"type": "Property", "value": r1(v), "unitCode": "KMH", "observedAt": at}),
            );
        }
    }
    if let Some((_, loc)) = observed
        .attrs
        .iter()
        .find(|(n, _)| short(n) == "location")
        .and_then(|(n, _)| Some((n, observed.default_instance(n)?)))
    {
        obj.insert(
            "location".into(),
            json!({"type": "GeoProperty", "value": loc.value.to_value()}),
        );
    }
    Some(e)
}

/// Horizons in intervals, from minutes.
fn steps(cfg: &config::Forecast) -> Vec<usize> {
    cfg.horizons_minutes
        .iter()
        .map(|m| ((*m as f64 * 60.0 / cfg.interval_secs as f64).round() as usize).max(1))
        .collect()
}

/// Runs until the store closes or `stop` turns true. A feed the store cuts (this
/// consumer fell behind) is resumed where it stopped, or from now on when the store
/// no longer holds those changes (forecasters keep what they learnt).
pub async fn run(
    cfg: config::Forecast,
    store: Arc<dyn EntityStore>,
    mut feed: Feed,
    broker: Arc<Broker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = cfg.interval_secs.max(1);
    let mut streams = Streams::new(
        interval,
        OnlineSettings {
            horizons: steps(&cfg),
            ..OnlineSettings::default()
        },
    );
    let mut pending: Vec<(Arc<str>, Value)> = Vec::new();
    let mut gone: Vec<(Arc<str>, String)> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH);
    loop {
        tokio::select! {
            c = feed.recv() => {
                let Some(c) = c else {
                    match feed.gap().map(|g| {
                        store.subscribe_from(Some(g.after)).or_else(|_| Ok::<_, ()>(store.subscribe()))
                    }) {
                        Some(Ok(next)) => {
                            tracing::warn!("live forecasts fell behind the change feed; resumed");
                            feed = next;
                            continue;
                        }
                        _ => break,
                    }
                };
                if c.kind == ChangeKind::Deleted {
                    if let Some(e) = c.before.as_ref().filter(|e| {
                        e.types.iter().any(|t| short(t) == cfg.entity_type)
                    }) {
                        streams.forget(&format!("{}\u{0}{}", c.tenant, e.id));
                        gone.push((c.tenant.clone(), forecast_id(&e.id)));
                    }
                    continue;
                }
                if let Some((e, at, v)) = observation(&c, &cfg) {
                    let key = format!("{}\u{0}{}", c.tenant, e.id);
                    if let Some(closed) = streams.observe(&key, at, v) {
                        if let Some(f) = forecast_entity(&e, &closed, &cfg, interval) {
                            pending.push((c.tenant.clone(), f));
                        }
                    }
                }
            }
            _ = tick.tick() => {
                // Written beside the loop: the feed keeps being read meanwhile.
                if !pending.is_empty() || !gone.is_empty() {
                    let (batch, deleted) = (std::mem::take(&mut pending), std::mem::take(&mut gone));
                    tokio::spawn(flush(broker.clone(), batch, deleted));
                }
            }
            _ = stop.changed() => break,
        }
    }
    flush(broker, pending, gone).await;
}

async fn flush(
    broker: Arc<Broker>,
    pending: Vec<(Arc<str>, Value)>,
    gone: Vec<(Arc<str>, String)>,
) {
    let mut by_tenant: std::collections::BTreeMap<Arc<str>, Vec<BatchItem>> =
        std::collections::BTreeMap::new();
    for (tenant, body) in pending {
        by_tenant
            .entry(tenant)
            .or_default()
            .push(BatchItem::core(body));
    }
    for (tenant, batch) in by_tenant {
        let rc = RequestContext::service(tenant.to_string(), FORECASTER);
        match broker.batch_upsert(&rc, &batch, UpsertMode::Replace).await {
            Ok(r) if r.errors.is_empty() => {}
            Ok(r) => tracing::warn!(%tenant, errors = ?r.errors, "forecasts refused"),
            Err(e) => tracing::warn!(%tenant, error = %e, "forecasts not written"),
        }
    }
    // A detector deleted: its forecast goes too (a rule on it could never clear).
    for (tenant, id) in gone {
        let rc = RequestContext::service(tenant.to_string(), FORECASTER);
        if let Err(e) = broker.delete_entity(&rc, &id).await {
            tracing::debug!(%tenant, %id, error = %e, "no forecast to delete");
        }
    }
}
