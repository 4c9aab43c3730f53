//! Temporal representations (NGSI-LD 4.5.7–4.5.9, 4.5.19): normalized (every instance
//! with its `instanceId`), simplified (`temporalValues`: `[content, time]` pairs) and
//! aggregated (`[value, start, end]` per period and method).

use citybrain_model::render::{compact_types, content, render_attribute, Format, RenderOptions};
use citybrain_model::time::{format_datetime, from_micros, from_millis};
use citybrain_model::{AttrKind, Attribute, JsonLdContext};
use citybrain_storage::history::{attribute_of, instance_id};
use citybrain_storage::tsdb::{AggValue, Point};
use serde_json::{json, Map, Value};

use super::{SeriesPoints, TemporalEntity, TemporalFormat, TemporalQuery, TimeProperty};

fn time_value(tq: &TemporalQuery, p: &Point) -> Value {
    let t = match tq.property {
        TimeProperty::ObservedAt => from_millis(p.t),
        _ => from_micros(p.rec),
    };
    Value::String(format_datetime(&t))
}

/// The member holding the values of a kind in the simplified representation.
fn plural(kind: AttrKind) -> &'static str {
    match kind {
        AttrKind::Relationship => "objects",
        AttrKind::LanguageProperty => "languageMaps",
        AttrKind::JsonProperty => "jsons",
        AttrKind::VocabProperty => "vocabs",
        AttrKind::ListProperty => "valueLists",
        AttrKind::ListRelationship => "objectLists",
        _ => "values",
    }
}

fn simple_content(a: &Attribute, ctx: &JsonLdContext) -> Value {
    let c = content(a, ctx);
    match a.kind {
        AttrKind::LanguageProperty => json!({ "languageMap": c }),
        AttrKind::JsonProperty => json!({ "json": c }),
        AttrKind::VocabProperty => json!({ "vocab": c }),
        _ => c,
    }
}

fn agg_json(v: &AggValue) -> Value {
    match v {
        AggValue::Count(n) => json!(n),
        AggValue::Num(x) => json!(x),
        // A stored instance document that no longer reads is damaged history: logged,
        // and its aggregate shown as unknown (null).
        AggValue::Doc(d) => match serde_json::from_str::<Attribute>(d) {
            Ok(a) => a.value.to_value(),
            Err(error) => {
                tracing::error!(%error, "an aggregated history instance is unreadable");
                Value::Null
            }
        },
        AggValue::Null => Value::Null,
    }
}

fn series_header(kind: AttrKind, s: &SeriesPoints) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(kind.type_name().into()));
    if let Some(d) = &s.dataset {
        m.insert("datasetId".into(), Value::String(d.to_string()));
    }
    m
}

/// Renders one series in the simplified or aggregated representation.
fn render_series(s: &SeriesPoints, tq: &TemporalQuery, ctx: &JsonLdContext) -> Value {
    let mut m = series_header(s.kind, s);
    match (&tq.aggregation, &s.buckets) {
        (Some(agg), Some(buckets)) => {
            for (i, method) in agg.methods.iter().enumerate() {
                let rows: Vec<Value> = buckets
                    .iter()
                    .map(|b| {
                        json!([
                            agg_json(&b.values[i]),
                            format_datetime(&from_millis(b.start)),
                            format_datetime(&from_millis(b.end)),
                        ])
                    })
                    .collect();
                m.insert(method.name().into(), Value::Array(rows));
            }
        }
        _ => {
            let rows: Vec<Value> = s
                .points
                .iter()
                .map(|p| {
                    let a = attribute_of(p, s.dataset.as_deref());
                    json!([simple_content(&a, ctx), time_value(tq, p)])
                })
                .collect();
            m.insert(plural(s.kind).into(), Value::Array(rows));
        }
    }
    Value::Object(m)
}

/// Renders one entity's temporal evolution.
pub fn render_temporal(
    e: &TemporalEntity,
    tq: &TemporalQuery,
    ctx: &JsonLdContext,
    o: &RenderOptions,
) -> Map<String, Value> {
    let mut out = Map::new();
    if !o.projection.omit_id {
        out.insert("id".into(), Value::String(e.id.clone()));
    }
    if !o.projection.omit_type && !e.types.is_empty() {
        out.insert("type".into(), compact_types(&e.types, ctx));
    }
    if let Some(scope) = &e.scope {
        let v = if scope.len() == 1 {
            Value::String(scope[0].clone())
        } else {
            scope.iter().cloned().map(Value::String).collect()
        };
        out.insert("scope".into(), v);
    }
    let normalized = RenderOptions {
        format: Format::Normalized,
        sys_attrs: o.sys_attrs,
        projection: Default::default(),
        lang: o.lang.clone(),
        dataset_ids: None,
    };
    let mut names: Vec<&str> = Vec::new();
    for s in &e.series {
        if !names.contains(&&*s.attr) {
            names.push(&s.attr);
        }
    }
    for name in names {
        if !o.projection.keeps(name) {
            continue;
        }
        let series: Vec<&SeriesPoints> = e.series.iter().filter(|s| &*s.attr == name).collect();
        let value = match tq.format {
            TemporalFormat::Normalized => {
                let mut items = Vec::new();
                for s in &series {
                    for p in &s.points {
                        let a = attribute_of(p, s.dataset.as_deref());
                        let mut v = render_attribute(&a, ctx, &normalized);
                        if let Value::Object(m) = &mut v {
                            m.insert("instanceId".into(), Value::String(instance_id(p)));
                            if tq.property == TimeProperty::DeletedAt {
                                m.insert("deletedAt".into(), time_value(tq, p));
                            }
                        }
                        items.push(v);
                    }
                }
                Value::Array(items)
            }
            _ => {
                let rendered: Vec<Value> =
                    series.iter().map(|s| render_series(s, tq, ctx)).collect();
                citybrain_model::render::one_or_list(rendered)
            }
        };
        out.insert(ctx.compact(name), value);
    }
    out
}
