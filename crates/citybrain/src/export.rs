//! `citybrain export`: a time range of chosen series as CSV, for analysts.
//!
//! It reads the data directory directly (the server must be stopped: the directory
//! lock says so), through the same recovery as the server, so unflushed history in the
//! log is included. One row per attribute instance:
//! `entity,type,attribute,datasetId,observedAt,recordedAt,value,unitCode`.
//! Numbers are written as numbers; other values as their JSON text; names are compacted
//! with the core context. Parquet is left out on purpose: arrow + parquet add about five
//! minutes of build time on two cores, and CSV loads into every analysis tool.

use std::io::Write;
use std::ops::Bound;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{TimeZone, Utc};
use citybrain_model::time::{format_datetime, from_millis, parse_datetime};
use citybrain_model::JsonLdContext;
use citybrain_store::storage::history::{attribute_of, is_deletion};
use citybrain_store::tsdb::{Selection, TimeProp, Val};
use citybrain_store::{EmbeddedStore, HistoryStore};
use clap::Args;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: crate::ConfigArgs,
    /// Tenant (NGSILD-Tenant); the default tenant when absent.
    #[arg(long, default_value = "")]
    pub tenant: String,
    /// Only entities of this type (short name or IRI); repeatable.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only these entity ids; repeatable.
    #[arg(long = "entity")]
    pub entities: Vec<String>,
    /// Only these attributes (short name or IRI); repeatable.
    #[arg(long = "attr")]
    pub attrs: Vec<String>,
    /// Start of the range (inclusive), ISO 8601.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range (exclusive), ISO 8601.
    #[arg(long)]
    pub to: Option<String>,
    /// Output file; standard output when absent or `-`.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

fn bound(name: &str, v: Option<&str>) -> anyhow::Result<Option<i64>> {
    v.map(|s| {
        parse_datetime(s)
            .map(|t| t.timestamp_millis())
            .with_context(|| format!("--{name} '{s}' is not an ISO 8601 date-time"))
    })
    .transpose()
}

/// Writes the export; returns (series, rows).
pub fn run(store: &EmbeddedStore, a: &ExportArgs) -> anyhow::Result<(u64, u64)> {
    let ctx = JsonLdContext::core();
    let from = bound("from", a.from.as_deref())?;
    let to = bound("to", a.to.as_deref())?;
    let types: Vec<String> = a.types.iter().map(|t| ctx.expand(t)).collect();
    let attrs: Vec<String> = a.attrs.iter().map(|t| ctx.expand(t)).collect();
    let db = store.reader();
    let mut chosen = Vec::new();
    db.scan(&a.tenant, None, &mut |h| {
        let type_ok = types.is_empty() || h.types.iter().any(|t| types.iter().any(|x| **x == **t));
        let id_ok = a.entities.is_empty() || a.entities.iter().any(|e| **e == *h.id);
        if type_ok && id_ok {
            for s in &h.series {
                if attrs.is_empty() || attrs.iter().any(|x| **x == *s.attr) {
                    chosen.push((h.id.clone(), h.types.clone(), s.clone()));
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    let sink: Box<dyn Write> = match a.out.as_deref() {
        None => Box::new(std::io::stdout().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout().lock()),
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
    };
    let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, sink));
    w.write_record([
        "entity",
        "type",
        "attribute",
        "datasetId",
        "observedAt",
        "recordedAt",
        "value",
        "unitCode",
    ])?;
    let bar = indicatif::ProgressBar::new(chosen.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {wide_bar} {pos}/{len} series, {msg} rows, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let sel = Selection {
        time: TimeProp::Observed,
        lower: from.map_or(Bound::Unbounded, Bound::Included),
        upper: to.map_or(Bound::Unbounded, Bound::Excluded),
        last_n: None,
    };
    let mut rows = 0u64;
    let mut num = String::new();
    for (entity, types, s) in &chosen {
        let type_name = types.first().map(|t| ctx.compact(t)).unwrap_or_default();
        let attr = ctx.compact(&s.attr);
        let (points, errors) = db.read(s.id, &sel);
        for e in errors {
            bar.suspend(|| eprintln!("warning: {e}; the rest of the series is exported"));
        }
        for p in points.iter().filter(|p| !is_deletion(p)) {
            let value = match &p.v {
                Val::F(f) => {
                    num.clear();
                    num.push_str(
                        &serde_json::Number::from_f64(*f)
                            .map_or_else(|| "null".into(), |n| n.to_string()),
                    );
                    num.clone()
                }
                Val::I(i) => i.to_string(),
                Val::D(_) => attribute_of(p, None).value.to_value().to_string(),
            };
            let rec = Utc
                .timestamp_micros(p.rec)
                .single()
                .map(|t| format_datetime(&t))
                .unwrap_or_default();
            w.write_record([
                &**entity,
                type_name.as_str(),
                attr.as_str(),
                s.dataset.as_deref().unwrap_or(""),
                &format_datetime(&from_millis(p.t)),
                &rec,
                &value,
                p.unit.as_deref().unwrap_or(""),
            ])?;
            rows += 1;
        }
        bar.inc(1);
        bar.set_message(rows.to_string());
    }
    w.flush()?;
    bar.finish_and_clear();
    Ok((chosen.len() as u64, rows))
}
