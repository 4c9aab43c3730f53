//! The `temporal` scenario: the temporal API over HTTP, end to end (parse, engine,
//! render, transfer). A year of one-minute data loaded through temporal provision and
//! aggregated to daily means; `lastN=1` over 10,000 entities; temporal queries while
//! batch upserts run at half the measured maximum rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::{entity, Ctx};

const YEAR_ID: &str = "urn:ngsi-ld:WeatherObserved:bench-year";
const T0_MS: i64 = 1_700_006_400_000; // 2023-11-15T00:00:00Z, a day boundary

fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn hist() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

fn figures(h: &Histogram<u64>) -> Value {
    json!({
        "runs": h.len(),
        "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
    })
}

impl Ctx {
    async fn send_ok(&self, r: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let r = r.send().await?;
        if !r.status().is_success() {
            bail!("{} {}", r.status(), r.text().await.unwrap_or_default());
        }
        Ok(r)
    }

    async fn load_year(&self, points: usize) -> anyhow::Result<Value> {
        let started = Instant::now();
        let mut v = 150i64;
        let mut seed = 7u64;
        for chunk_start in (0..points).step_by(20_000) {
            let n = 20_000.min(points - chunk_start);
            let instances: Vec<Value> = (0..n)
                .map(|j| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    v += ((seed >> 33) % 3) as i64 - 1;
                    let t = T0_MS + (chunk_start + j) as i64 * 60_000;
                    json!({"type": "Property", "value": v as f64 / 10.0, "observedAt": iso(t)})
                })
                .collect();
            let body = json!({"id": YEAR_ID, "type": "WeatherObserved", "temperature": instances});
            self.send_ok(
                self.req(reqwest::Method::POST, "/ngsi-ld/v1/temporal/entities")
                    .json(&body),
            )
            .await?;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(
            json!({"points": points, "seconds": secs, "points_per_sec": (points as f64 / secs).round()}),
        )
    }

    async fn daily_means(&self) -> anyhow::Result<usize> {
        let r = self
            .send_ok(self.req(
                reqwest::Method::GET,
                &format!("/ngsi-ld/v1/temporal/entities/{YEAR_ID}?options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=P1D"),
            ))
            .await?;
        let v: Value = r.json().await?;
        Ok(v["temperature"]["avg"].as_array().map_or(0, Vec::len))
    }

    async fn last_n_all(&self, n: usize) -> anyhow::Result<usize> {
        let mut got = 0;
        for offset in (0..n).step_by(1000) {
            let r = self
                .send_ok(self.req(
                    reqwest::Method::GET,
                    &format!("/ngsi-ld/v1/temporal/entities?type=TrafficFlowObserved&attrs=intensity&lastN=1&limit=1000&offset={offset}"),
                ))
                .await?;
            let v: Value = r.json().await?;
            got += v.as_array().map_or(0, Vec::len);
        }
        Ok(got)
    }

    /// `batch_rate`: the batch scenario's attribute updates per second, when it ran.
    pub async fn temporal(self: &Arc<Self>, batch_rate: Option<f64>) -> anyhow::Result<Value> {
        let quick = self.args.duration <= 3;
        let points = if quick { 52_560 } else { 525_600 };
        let load = self.load_year(points).await?;
        eprintln!("temporal load: {load}");
        let mut h = hist()?;
        let mut days = 0;
        for _ in 0..if quick { 5 } else { 20 } {
            let t = Instant::now();
            days = self.daily_means().await?;
            h.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        let mut agg = figures(&h);
        agg["points"] = json!(points);
        agg["days"] = json!(days);
        eprintln!("temporal daily means over HTTP: {agg}");

        let n = self.args.entities;
        self.seed(n, 3).await?;
        let mut h = hist()?;
        let mut got = 0;
        for _ in 0..if quick { 2 } else { 5 } {
            let t = Instant::now();
            got = self.last_n_all(n).await?;
            h.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        let mut last = figures(&h);
        last["entities"] = json!(got);
        last["pages"] = json!(n.div_ceil(1000));
        eprintln!("temporal lastN=1 over HTTP: {last}");

        // Queries while batch upserts run at half the maximum.
        let target = batch_rate.unwrap_or(250_000.0) * 0.5;
        let size = self.args.batch_size;
        let per_request = (size * self.args.batch_attrs) as f64;
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut loaders = Vec::new();
        let writers = 4usize;
        for w in 0..writers {
            let (me, stop, written) = (self.clone(), stop.clone(), written.clone());
            loaders.push(tokio::spawn(async move {
                let started = Instant::now();
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let body: Vec<Value> = (0..size)
                        .map(|j| entity(((w * 7 + k) * size + j) % 20_000, me.args.batch_attrs))
                        .collect();
                    k += 1;
                    let ok = me
                        .req(reqwest::Method::POST, "/ngsi-ld/v1/entityOperations/upsert")
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        written.fetch_add(per_request as u64, Ordering::Relaxed);
                    }
                    let due =
                        Duration::from_secs_f64(k as f64 * per_request / (target / writers as f64));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }));
        }
        let started = Instant::now();
        let mut h = hist()?;
        let mut i = 0u64;
        while started.elapsed() < Duration::from_secs(self.args.duration) {
            let t = Instant::now();
            if i.is_multiple_of(2) {
                self.daily_means().await?;
            } else {
                let id = format!(
                    "urn:ngsi-ld:TrafficFlowObserved:b{:07}",
                    (i * 7919) % n as u64
                );
                self.send_ok(self.req(
                    reqwest::Method::GET,
                    &format!("/ngsi-ld/v1/temporal/entities/{id}?lastN=10"),
                ))
                .await?;
            }
            h.record(t.elapsed().as_micros().max(1) as u64)?;
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for l in loaders {
            let _ = l.await;
        }
        let secs = started.elapsed().as_secs_f64();
        let mut mixed = figures(&h);
        mixed["target_attribute_updates_per_sec"] = json!(target.round());
        mixed["attribute_updates_per_sec"] =
            json!((written.load(Ordering::Relaxed) as f64 / secs).round());
        mixed["queries"] = json!("alternating: a year of daily means; lastN=10 of one entity");
        eprintln!("temporal mixed: {mixed}");
        Ok(json!({"load": load, "daily_means_year": agg, "last_n_10k": last, "mixed_50pct": mixed}))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso(super::T0_MS), "2023-11-15T00:00:00Z");
        assert_eq!(
            super::iso(951_782_400_000 + 3_661_000),
            "2000-02-29T01:01:01Z"
        );
    }
}
