//! The catalogue as DCAT-AP 3 JSON-LD (`GET /platform/v1/catalog`,
//! `GET /platform/v1/catalog/datasets/{id}`).
//!
//! Mandatory DCAT-AP 3 properties: a catalogue's `dct:title`, `dct:description`,
//! `dct:publisher` and `dcat:dataset`; a dataset's `dct:title` and `dct:description`; a
//! distribution's `dcat:accessURL`. Recommended ones given where known: `dct:identifier`,
//! `dct:issued`, `dct:modified`, `dct:publisher`, `dcat:keyword`, `dcat:theme`,
//! `dct:accessRights` (EU access-right table), `dcat:contactPoint`, `dct:license` and
//! `dct:format`/`dcat:mediaType` on distributions. The classification level, which
//! DCAT has no term for, is `cb:classification`.
//!
//! A dataset lists only the distributions the caller may use: the NGSI-LD URLs when it
//! reads every type, the CSV export when it may export, the aggregate endpoint when it
//! may ask aggregates.

use citybrain_access::{RequestContext, Verb};
use serde_json::{json, Map, Value};

use crate::dataset::Dataset;
use crate::{aggregate, Catalog, Result};

/// The JSON-LD context of the answers.
pub fn context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "cb": "https://citybrain.example/ns#"
    })
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,:/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn date(t: &chrono::DateTime<chrono::Utc>) -> Value {
    json!({"@value": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "@type": "xsd:dateTime"})
}

fn agent(name: &str) -> Value {
    json!({"@type": "foaf:Agent", "foaf:name": name})
}

fn distribution(
    url: String,
    title: &str,
    media: &str,
    format: &str,
    license: &Option<String>,
) -> Value {
    let mut m = Map::new();
    m.insert("@type".into(), json!("dcat:Distribution"));
    m.insert("dcat:accessURL".into(), json!({"@id": url}));
    m.insert("dct:title".into(), json!(title));
    m.insert(
        "dcat:mediaType".into(),
        json!({"@id": format!("http://www.iana.org/assignments/media-types/{media}")}),
    );
    m.insert(
        "dct:format".into(),
        json!({"@id": format!("http://publications.europa.eu/resource/authority/file-type/{format}")}),
    );
    if let Some(l) = license {
        m.insert("dct:license".into(), json!({"@id": l}));
    }
    Value::Object(m)
}

impl Catalog {
    /// One dataset as a `dcat:Dataset` node, with the distributions `rc` may use.
    pub fn dcat_dataset(&self, rc: &RequestContext, base: &str, d: &Dataset) -> Value {
        let s = &d.spec;
        let license = s.license_iri();
        let types: Vec<String> = s.expanded_types().iter().map(|t| t.to_string()).collect();
        let mut filter = format!("type={}", percent(&types.join(",")));
        if !s.attrs.is_empty() {
            filter.push_str(&format!("&attrs={}", percent(&s.attrs.join(","))));
        }
        if let Some(q) = &s.q {
            filter.push_str(&format!("&q={}", percent(q)));
        }
        let mut dists = Vec::new();
        if self.may_read_data(rc, d) {
            dists.push(distribution(
                format!("{base}/ngsi-ld/v1/entities?{filter}"),
                "Current state (NGSI-LD query)",
                "application/ld+json",
                "JSON_LD",
                &license,
            ));
            dists.push(distribution(
                format!("{base}/ngsi-ld/v1/temporal/entities?{filter}"),
                "History (NGSI-LD temporal query)",
                "application/ld+json",
                "JSON_LD",
                &license,
            ));
        }
        if self.may_export(rc, d) {
            dists.push(distribution(
                format!("{base}/platform/v1/datasets/{}/export", d.id),
                "CSV export",
                "text/csv",
                "CSV",
                &license,
            ));
        }
        if let Some(p) = &s.privacy {
            if self.may(rc, Verb::Aggregate, d) {
                let mut a = distribution(
                    format!("{base}/platform/v1/datasets/{}/aggregate", d.id),
                    "Differentially private aggregates (count, sum, mean, histogram)",
                    "application/json",
                    "JSON",
                    &license,
                );
                if let Value::Object(m) = &mut a {
                    m.insert(
                        "dct:description".into(),
                        json!(format!(
                            "Noisy statistics with a privacy budget per consumer: {}",
                            serde_json::to_string(&aggregate::describe(p)).unwrap_or_default()
                        )),
                    );
                }
                dists.push(a);
            }
        }
        let mut m = Map::new();
        m.insert(
            "@id".into(),
            json!(format!("{base}/platform/v1/catalog/datasets/{}", d.id)),
        );
        m.insert("@type".into(), json!("dcat:Dataset"));
        m.insert("dct:identifier".into(), json!(d.id));
        m.insert("dct:title".into(), json!(s.title));
        m.insert("dct:description".into(), json!(s.description));
        m.insert("dct:publisher".into(), agent(&s.publisher));
        m.insert("dct:issued".into(), date(&d.issued));
        m.insert("dct:modified".into(), date(&d.modified));
        m.insert(
            "dct:accessRights".into(),
            json!({"@id": s.access_rights.iri()}),
        );
        if let Some(l) = &license {
            m.insert("dct:license".into(), json!({"@id": l}));
        }
        if !s.keywords.is_empty() {
            m.insert("dcat:keyword".into(), json!(s.keywords));
        }
        if !s.themes.is_empty() {
            let themes: Vec<Value> = s
                .themes
                .iter()
                .map(|t| json!({"@id": format!("http://publications.europa.eu/resource/authority/data-theme/{t}")}))
                .collect();
            m.insert("dcat:theme".into(), Value::Array(themes));
        }
        if let Some(c) = &s.contact_point {
            m.insert(
                "dcat:contactPoint".into(),
                json!({"@type": "vcard:Kind", "vcard:fn": s.publisher, "vcard:hasEmail": {"@id": format!("mailto:{c}")}}),
            );
        }
        if let Some(level) = self.level(d) {
            m.insert("cb:classification".into(), json!(level));
        }
        m.insert("cb:entityType".into(), json!(types));
        m.insert("dcat:distribution".into(), Value::Array(dists));
        Value::Object(m)
    }

    /// The whole catalogue as `rc` may see it.
    pub fn dcat_catalog(&self, rc: &RequestContext, base: &str) -> Result<Value> {
        let datasets: Vec<Value> = self
            .datasets(rc)?
            .iter()
            .map(|d| self.dcat_dataset(rc, base, d))
            .collect();
        let info = self.info();
        let mut m = Map::new();
        m.insert("@context".into(), context());
        m.insert("@id".into(), json!(format!("{base}/platform/v1/catalog")));
        m.insert("@type".into(), json!("dcat:Catalog"));
        m.insert("dct:title".into(), json!(info.title));
        m.insert("dct:description".into(), json!(info.description));
        m.insert("dct:publisher".into(), agent(&info.publisher));
        if let Some(h) = &info.homepage {
            m.insert("foaf:homepage".into(), json!({"@id": h}));
        }
        m.insert("dcat:dataset".into(), Value::Array(datasets));
        Ok(Value::Object(m))
    }

    /// One dataset as a DCAT-AP document.
    pub fn dcat_document(&self, rc: &RequestContext, base: &str, id: &str) -> Result<Value> {
        let d = self.dataset(rc, id)?;
        let mut v = self.dcat_dataset(rc, base, &d);
        if let Value::Object(m) = &mut v {
            m.insert("@context".into(), context());
        }
        Ok(v)
    }
}
