//! The catalogue as DCAT-AP 3 JSON-LD (`GET /platform/v1/catalog`,
//! `GET /platform/v1/catalog/datasets/{id}`).
//!
//! Mandatory DCAT-AP 3 properties: a catalogue's `dct:title`, `dct:description`,
//! `dct:publisher` and `dcat:dataset`; a dataset's `dct:title` and `dct:description`; a
//! distribution's `dcat:accessURL`. Recommended ones given where known: `dct:identifier`,
//! `dct:issued`, `dct:modified`, `dct:publisher`, `dcat:keyword`, `dcat:theme`,
//! `dct:accessRights` (EU access-right table), `dcat:contactPoint`, `dct:license` and
//! `dct:format`/`dcat:mediaType` on distributions. The classification level, which
//! DCAT has no term for, is `cb:classification`. Terms of controlled vocabularies
//! carry the class DCAT-AP's range shapes expect (`dct:LicenseDocument`,
//! `dct:RightsStatement`, `skos:Concept`, `dct:MediaType`, `dct:MediaTypeOrExtent`),
//! so the document validates against the DCAT-AP 3.0.1 SHACL shapes and range shapes
//! without the EU vocabularies loaded (checked with pySHACL; `docs/catalog.md`).
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
        "skos": "http://www.w3.org/2004/02/skos/core#",
        "cb": "https://citybrain.example/ns#"
    })
}

/// What stays as it is in a query-string value of a link: unreserved characters and
/// the `,` `:` `/` that type lists and IRIs are made of.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b',')
    .remove(b':')
    .remove(b'/');

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn date(t: &chrono::DateTime<chrono::Utc>) -> Value {
    json!({"@value": t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "@type": "xsd:dateTime"})
}

/// A reference to a controlled-vocabulary term, typed with the class DCAT-AP's range
/// shapes expect (so the document validates without the EU vocabularies loaded).
fn term(iri: impl Into<String>, class: &str) -> Value {
    json!({"@id": iri.into(), "@type": class})
}

fn agent(name: &str) -> Value {
    json!({"@type": "foaf:Agent", "foaf:name": name})
}

fn distribution(
    url: String,
    title: &str,
    description: &str,
    media: &str,
    format: &str,
    license: &Option<String>,
) -> Value {
    let mut m = Map::new();
    m.insert("@type".into(), json!("dcat:Distribution"));
    m.insert("dcat:accessURL".into(), json!({"@id": url}));
    m.insert("dct:title".into(), json!(title));
    m.insert("dct:description".into(), json!(description));
    // The data is live: served as long as the platform runs.
    m.insert(
        "http://data.europa.eu/r5r/availability".into(),
        json!({"@id": "http://publications.europa.eu/resource/authority/planned-availability/AVAILABLE",
               "@type": "skos:Concept",
               "skos:prefLabel": {"@value": "available", "@language": "en"}}),
    );
    m.insert(
        "dcat:mediaType".into(),
        term(
            format!("http://www.iana.org/assignments/media-types/{media}"),
            "dct:MediaType",
        ),
    );
    m.insert(
        "dct:format".into(),
        term(
            format!("http://publications.europa.eu/resource/authority/file-type/{format}"),
            "dct:MediaTypeOrExtent",
        ),
    );
    if let Some(l) = license {
        m.insert("dct:license".into(), term(l.clone(), "dct:LicenseDocument"));
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
                "The entities as they are now, through the NGSI-LD API (paged with limit and offset).",
                "application/ld+json",
                "JSON_LD",
                &license,
            ));
            dists.push(distribution(
                format!("{base}/ngsi-ld/v1/temporal/entities?{filter}"),
                "History (NGSI-LD temporal query)",
                "Every attribute's past values, through the NGSI-LD temporal API (timerel, timeAt, endTimeAt).",
                "application/ld+json",
                "JSON_LD",
                &license,
            ));
        }
        if self.may_export(rc, d) {
            dists.push(distribution(
                format!("{base}/platform/v1/datasets/{}/export", d.id),
                "CSV export",
                "One row per entity as the caller may read it (limit up to 100000, offset).",
                "text/csv",
                "CSV",
                &license,
            ));
        }
        if let Some(p) = &s.privacy {
            if self.may(rc, Verb::Aggregate, d) {
                // A JSON value's text cannot fail to encode (no empty string on error).
                let description = format!(
                    "Noisy statistics with a privacy budget per consumer: {}",
                    aggregate::describe(p)
                );
                dists.push(distribution(
                    format!("{base}/platform/v1/datasets/{}/aggregate", d.id),
                    "Differentially private aggregates (count, sum, mean, histogram)",
                    &description,
                    "application/json",
                    "JSON",
                    &license,
                ));
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
            term(s.access_rights.iri(), "dct:RightsStatement"),
        );
        if let Some(l) = &license {
            m.insert("dct:license".into(), term(l.clone(), "dct:LicenseDocument"));
        }
        if !s.keywords.is_empty() {
            m.insert("dcat:keyword".into(), json!(s.keywords));
        }
        if !s.themes.is_empty() {
            let themes: Vec<Value> = s
                .themes
                .iter()
                .map(|t| {
                    let mut c = term(
                        format!("http://publications.europa.eu/resource/authority/data-theme/{t}"),
                        "skos:Concept",
                    );
                    if let (Value::Object(m), Some(label)) =
                        (&mut c, crate::dataset::theme_label(t))
                    {
                        m.insert(
                            "skos:prefLabel".into(),
                            json!({"@value": label, "@language": "en"}),
                        );
                    }
                    c
                })
                .collect();
            m.insert("dcat:theme".into(), Value::Array(themes));
        }
        if let Some(c) = &s.contact_point {
            m.insert(
                "dcat:contactPoint".into(),
                json!({"@type": "vcard:Kind", "vcard:fn": s.publisher, "vcard:hasEmail": {"@id": format!("mailto:{c}")}}),
            );
        }
        if let Some([w, so, e, n]) = s.spatial {
            let wkt = format!("POLYGON(({w} {so},{e} {so},{e} {n},{w} {n},{w} {so}))");
            m.insert(
                "dct:spatial".into(),
                json!({"@type": "dct:Location",
                       "dcat:bbox": {"@value": wkt, "@type": "http://www.opengis.net/ont/geosparql#wktLiteral"}}),
            );
        }
        if let Some(p) = &s.temporal {
            let mut t = Map::new();
            t.insert("@type".into(), json!("dct:PeriodOfTime"));
            t.insert("dcat:startDate".into(), date(&p.start));
            if let Some(end) = &p.end {
                t.insert("dcat:endDate".into(), date(end));
            }
            m.insert("dct:temporal".into(), Value::Object(t));
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
        let listed = self.datasets(rc)?;
        let datasets: Vec<Value> = listed
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
            m.insert("foaf:homepage".into(), term(h.clone(), "foaf:Document"));
        }
        // Issued with its first dataset, modified with its last change (of what this
        // caller sees).
        if let Some(t) = listed.iter().map(|d| d.issued).min() {
            m.insert("dct:issued".into(), date(&t));
        }
        if let Some(t) = listed.iter().map(|d| d.modified).max() {
            m.insert("dct:modified".into(), date(&t));
        }
        if !info.languages.is_empty() {
            let langs: Vec<Value> = info
                .languages
                .iter()
                .map(|l| {
                    term(
                        format!("http://publications.europa.eu/resource/authority/language/{l}"),
                        "dct:LinguisticSystem",
                    )
                })
                .collect();
            m.insert("dct:language".into(), Value::Array(langs));
        }
        if let Some(l) = &info.license {
            m.insert(
                "dct:license".into(),
                term(crate::dataset::licence_iri(l), "dct:LicenseDocument"),
            );
        }
        // The themes datasets use are the EU data themes.
        m.insert(
            "dcat:themeTaxonomy".into(),
            json!({"@id": "http://publications.europa.eu/resource/authority/data-theme",
                   "@type": "skos:ConceptScheme",
                   "dct:title": {"@value": "Data theme", "@language": "en"}}),
        );
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
