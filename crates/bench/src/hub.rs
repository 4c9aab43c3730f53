//! `hub`: the coordination hub end to end, in process (issue #5, point 9). The rules
//! scenario's 10,000 rules are put through the hub; a writer sends observations of its
//! 10,000 entities through the bulk observation path (`Broker::upsert_observations`,
//! durable) at a paced rate (100,000/s by default: a batch of 1,000 every 10 ms),
//! stamped with the wall clock as `observedAt`; the hub evaluates every durable change
//! and files events as incidents. It measures the latency from an observation that
//! crosses a threshold rule (its `observedAt`) to its incident arriving on the live
//! feed, and the observations per second actually written; beside it, the latency to
//! the rule event alone (before filing) and the time for a batch to become durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use citybrain_broker::{Broker, BrokerConfig, RequestContext};
use citybrain_hub::Hub;
use citybrain_model::context::JsonLdContext;
use citybrain_model::time::SystemClock;
use citybrain_model::{Attribute, Entity};
use citybrain_rules::parse_rules;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::rules::{entity, rules_yaml, ATTRS, PER_TYPE, TYPES};

/// Whether a rule of the rules scenario raises at the crossing observation itself
/// (thresholds and rates; windows close later by design, heartbeats on the clock).
fn is_instant(rule: &str) -> bool {
    match (
        rule.chars().next(),
        rule.get(1..).and_then(|n| n.parse::<usize>().ok()),
    ) {
        (Some('e'), Some(i)) => i % 18 < 15,
        (Some('t'), Some(i)) => i % 5 < 3,
        _ => false,
    }
}

pub async fn run(seconds: u64, rate: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(StoreOptions::new(dir.path()))?;
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker = Broker::new(
        dynstore.clone(),
        Arc::new(SystemClock),
        BrokerConfig::default(),
    )
    .await;
    broker.start();
    let hub = Hub::new(dynstore.clone(), Arc::new(SystemClock))?;
    tokio::spawn(hub.clone().run(dynstore.subscribe()));
    tokio::spawn(hub.clone().run_ticks());
    let specs = parse_rules(&rules_yaml(), "bench")?;
    let n_rules = specs.len();
    let t = Instant::now();
    let puts = specs
        .into_iter()
        .map(|s| {
            let hub = hub.clone();
            async move {
                let rc = citybrain_broker::RequestContext::service(
                    "",
                    citybrain_broker::Principal::SYSTEM,
                );
                hub.put_rule(&rc, s, true).await
            }
        })
        .collect::<Vec<_>>();
    for r in futures::future::join_all(puts).await {
        r?;
    }
    eprintln!(
        "hub: {n_rules} rules put in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The live feed of incidents: latency of each threshold incident change.
    let mut feed = hub.subscribe_incidents();
    let lat = Arc::new(parking_lot::Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    let lat2 = lat.clone();
    let saves = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let saves2 = saves.clone();
    let reader = tokio::spawn(async move {
        loop {
            let c = match feed.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            saves2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let i = &c.incident;
            let from_rule = i
                .history
                .last()
                .is_some_and(|s| s.action == "opened" || s.action == "event");
            if from_rule && i.rules.last().is_some_and(|r| is_instant(r)) {
                let ms = (Utc::now() - i.last_event_at).num_milliseconds().max(1) as u64;
                let _ = lat2.lock().record(ms);
            }
        }
    });

    // The hub's event feed: latency from the crossing observation to its rule event
    // (the write, the change feed and the evaluation, without the incident's filing).
    let mut evfeed = hub.subscribe();
    let evlat = Arc::new(parking_lot::Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    let evlat2 = evlat.clone();
    let evreader = tokio::spawn(async move {
        loop {
            match evfeed.recv().await {
                Ok(e) => {
                    if e.event.kind == citybrain_rules::EventKind::Raised
                        && is_instant(&e.event.rule)
                    {
                        let ms = (Utc::now() - e.event.at).num_milliseconds().max(1) as u64;
                        let _ = evlat2.lock().record(ms);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    });
    let ctx = JsonLdContext::core();
    let types: Vec<Arc<str>> = (0..TYPES)
        .map(|t| Arc::from(ctx.expand(&format!("T{t}"))))
        .collect();
    let attrs: Vec<Arc<str>> = (0..ATTRS)
        .map(|a| Arc::from(ctx.expand(&format!("a{a}"))))
        .collect();
    let n_entities = TYPES * PER_TYPE;
    let ids: Vec<String> = (0..n_entities).map(entity).collect();
    let mut values = vec![50.0f64; n_entities * ATTRS];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let rc = RequestContext::tenant("");
    let batch = (rate / 100).max(1);
    let total_batches = seconds as usize * 100;
    let start = Instant::now();
    let mut written = 0usize;
    // Up to 8 batches in flight: each waits for durability, and the group commit makes
    // one fsync of those that meet.
    let mut inflight = tokio::task::JoinSet::new();
    // How long a batch takes to be durable (and so to reach the change feed).
    let write_lat = Arc::new(parking_lot::Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    for b in 0..total_batches {
        let due = start + Duration::from_millis(b as u64 * 10);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        let at = Utc::now();
        let mut items = Vec::with_capacity(batch);
        for _ in 0..batch {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let e = (seed % n_entities as u64) as usize;
            let a = ((seed >> 20) % ATTRS as u64) as usize;
            let step = ((seed >> 40) % 1000) as f64 / 1000.0 * 6.0 - 3.0;
            let v = &mut values[e * ATTRS + a];
            *v = (*v + step).clamp(0.0, 100.0);
            let mut attr = Attribute::property(json!(*v), at);
            attr.observed_at = Some(at);
            items.push(Entity {
                id: ids[e].clone(),
                types: vec![types[e % TYPES].clone()],
                scope: None,
                created_at: at,
                modified_at: at,
                attrs: vec![(attrs[a].clone(), citybrain_model::instances![attr])],
            });
        }
        written += items.len();
        while inflight.len() >= 8 {
            if let Some(r) = inflight.join_next().await {
                r??;
            }
        }
        let (broker, rc, wl) = (broker.clone(), rc.clone(), write_lat.clone());
        inflight.spawn(async move {
            let t = Instant::now();
            let r = broker.upsert_observations(&rc, items).await.map(|_| ());
            let _ = wl.lock().record(t.elapsed().as_millis().max(1) as u64);
            r
        });
    }
    while let Some(r) = inflight.join_next().await {
        r??;
    }
    let secs = start.elapsed().as_secs_f64();
    // Let the hub drain what is in flight.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
    evreader.abort();
    let ev = evlat.lock().clone();
    let h = lat.lock().clone();
    let w = write_lat.lock().clone();
    let st = &hub.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let open = hub.incidents("", &Default::default()).await.len();
    let rate_done = written as f64 / secs;
    eprintln!(
        "hub: {written} observations in {secs:.2} s = {rate_done:.0}/s through {n_rules} rules; events raised {}, cleared {}; {open} incidents, {} incident saves; crossing → incident on the live feed: p50 {} ms, p99 {} ms, max {} ms ({} samples); crossing → rule event: p50 {} ms, p99 {} ms; batch durable write p50 {} ms, p99 {} ms, max {} ms",
        get(&st.events_raised),
        get(&st.events_cleared),
        saves.load(std::sync::atomic::Ordering::Relaxed),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        h.len(),
        ev.value_at_quantile(0.5),
        ev.value_at_quantile(0.99),
        w.value_at_quantile(0.5),
        w.value_at_quantile(0.99),
        w.max(),
    );
    store.close();
    Ok(json!({
        "rules": n_rules,
        "observations": written,
        "seconds": secs,
        "observations_per_sec": rate_done.round(),
        "events_raised": get(&st.events_raised),
        "events_cleared": get(&st.events_cleared),
        "incidents": open,
        "incident_saves": saves.load(std::sync::atomic::Ordering::Relaxed),
        "latency_ms": {"p50": h.value_at_quantile(0.5), "p99": h.value_at_quantile(0.99), "max": h.max(), "samples": h.len()},
        "event_latency_ms": {"p50": ev.value_at_quantile(0.5), "p99": ev.value_at_quantile(0.99), "max": ev.max(), "samples": ev.len()},
        "write_latency_ms": {"p50": w.value_at_quantile(0.5), "p99": w.value_at_quantile(0.99), "max": w.max()},
    }))
}
