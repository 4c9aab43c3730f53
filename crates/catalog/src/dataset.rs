//! Datasets as their publishers write them, validated naming the field at fault.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citybrain_model::context::JsonLdContext;
use citybrain_privacy::{Bounds, Budget, Mechanism};
use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// The EU access-right vocabulary (DCAT-AP `dct:accessRights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessRights {
    /// Open data: listed to anyone; anyone may ask its differentially private
    /// aggregates. The raw data stays governed by the access policies.
    Public,
    /// Listed to authenticated users.
    Restricted,
    /// Listed to its department and to those who may read its data.
    NonPublic,
}

impl AccessRights {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRights::Public => "PUBLIC",
            AccessRights::Restricted => "RESTRICTED",
            AccessRights::NonPublic => "NON_PUBLIC",
        }
    }

    /// The authority table's IRI.
    pub fn iri(self) -> String {
        format!(
            "http://publications.europa.eu/resource/authority/access-right/{}",
            self.as_str()
        )
    }
}

/// Clamping bounds of an attribute's aggregates, as published.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundsSpec {
    pub lower: f64,
    pub upper: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<f64>,
}

impl From<BoundsSpec> for Bounds {
    fn from(b: BoundsSpec) -> Bounds {
        Bounds {
            lower: b.lower,
            upper: b.upper,
            resolution: b.resolution,
        }
    }
}

fn one() -> u32 {
    1
}

/// How a dataset's aggregates are released (the differential privacy parameters,
/// `docs/privacy.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrivacySpec {
    #[serde(default)]
    pub mechanism: Mechanism,
    /// What each consumer may spend on this dataset, in all.
    pub budget: Budget,
    /// The most one release may cost: ε for Laplace, ρ for Gaussian (the default cost
    /// of a request that names none).
    pub max_query_cost: f64,
    /// Values one entity may contribute to a release (history windows: its first ones).
    #[serde(default = "one")]
    pub max_contributions: u32,
    /// Clamping bounds of the attributes whose sum and mean may be asked (short names).
    #[serde(default)]
    pub bounds: BTreeMap<String, BoundsSpec>,
}

/// A dataset as written (`PUT /platform/v1/datasets/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatasetSpec {
    pub title: String,
    pub description: String,
    /// The publishing department.
    pub publisher: String,
    /// A licence IRI, or one of the short names in [`LICENCES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    pub access_rights: AccessRights,
    /// Entity types (short names expand with the core context, or full IRIs).
    pub types: Vec<String>,
    /// Attributes (short names or IRIs); empty: every attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attrs: Vec<String>,
    /// An NGSI-LD `q` filter the dataset applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// EU data themes (`TRAN`, `ENVI`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub themes: Vec<String>,
    /// An e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_point: Option<String>,
    /// The area the data covers: a bounding box `[west, south, east, north]` in WGS 84
    /// degrees (DCAT `dct:spatial` with `dcat:bbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial: Option<[f64; 4]>,
    /// The period the data covers (`dct:temporal`); `end` absent: ongoing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal: Option<Period>,
    /// Differentially private aggregates, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySpec>,
}

/// A period of time a dataset covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
}

/// A stored dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub id: String,
    #[serde(flatten)]
    pub spec: DatasetSpec,
    pub issued: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    /// Who last defined it (`user:<id>`).
    pub author: String,
}

impl Dataset {
    /// `f` of the dataset as policies see it ([`citybrain_access::DatasetRef`]).
    pub fn with_ref<R>(&self, f: impl FnOnce(&citybrain_access::DatasetRef<'_>) -> R) -> R {
        let types = self.spec.expanded_types();
        let attrs = self.spec.short_attrs();
        f(&citybrain_access::DatasetRef {
            id: &self.id,
            types: &types,
            attrs: &attrs,
            publisher: &self.spec.publisher,
            access: self.spec.access_rights.as_str(),
        })
    }
}

/// Licences known by short name, with their EU authority IRIs.
pub const LICENCES: &[(&str, &str)] = &[
    (
        "CC-BY-4.0",
        "http://publications.europa.eu/resource/authority/licence/CC_BY_4_0",
    ),
    (
        "CC-BY-SA-4.0",
        "http://publications.europa.eu/resource/authority/licence/CC_BYSA_4_0",
    ),
    (
        "CC0-1.0",
        "http://publications.europa.eu/resource/authority/licence/CC0",
    ),
    (
        "ODbL-1.0",
        "http://publications.europa.eu/resource/authority/licence/ODC_BL",
    ),
    (
        "ODC-BY-1.0",
        "http://publications.europa.eu/resource/authority/licence/ODC_BY",
    ),
    (
        "PDDL-1.0",
        "http://publications.europa.eu/resource/authority/licence/ODC_PDDL",
    ),
];

/// A licence's IRI: a short name of [`LICENCES`] resolved, an IRI as it is.
pub fn licence_iri(l: &str) -> String {
    LICENCES
        .iter()
        .find(|(k, _)| *k == l)
        .map_or_else(|| l.to_string(), |(_, iri)| iri.to_string())
}

/// The EU data-theme codes, with their English labels.
pub const THEMES: &[(&str, &str)] = &[
    ("AGRI", "Agriculture, fisheries, forestry and food"),
    ("ECON", "Economy and finance"),
    ("EDUC", "Education, culture and sport"),
    ("ENER", "Energy"),
    ("ENVI", "Environment"),
    ("GOVE", "Government and public sector"),
    ("HEAL", "Health"),
    ("INTR", "International issues"),
    ("JUST", "Justice, legal system and public safety"),
    ("OP_DATPRO", "Provisional data"),
    ("REGI", "Regions and cities"),
    ("SOCI", "Population and society"),
    ("TECH", "Science and technology"),
    ("TRAN", "Transport"),
];

/// The label of an EU data theme.
pub fn theme_label(code: &str) -> Option<&'static str> {
    THEMES.iter().find(|(c, _)| *c == code).map(|(_, l)| *l)
}

fn invalid(msg: impl Into<String>) -> CatalogError {
    CatalogError::Invalid(msg.into())
}

/// A dataset id: letters, digits, `-`, `_`, `.`; at most 64.
pub fn check_id(id: &str) -> Result<(), CatalogError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(format!(
            "dataset id '{id}' must be 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), CatalogError> {
    if s.trim().is_empty() || s.len() > max {
        return Err(invalid(format!(
            "{field} must be non-empty text of at most {max} bytes"
        )));
    }
    Ok(())
}

fn check_name(field: &str, s: &str) -> Result<(), CatalogError> {
    citybrain_model::entity::validate_name(field, s)
        .map_err(|e| invalid(format!("{field}: {}", e.detail)))
}

impl DatasetSpec {
    /// Reads a dataset from JSON and checks it, naming the field at fault.
    pub fn from_json(body: &[u8]) -> Result<DatasetSpec, CatalogError> {
        // An object, and nothing after it (serde would read a struct from an array of
        // its fields too).
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("dataset: a JSON object is expected".to_string()));
        }
        let de = &mut serde_json::Deserializer::from_slice(body);
        let spec: DatasetSpec = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                invalid(format!("dataset: {}", e.inner()))
            } else {
                invalid(format!("{path}: {}", e.inner()))
            }
        })?;
        de.end().map_err(|e| invalid(format!("dataset: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every field, naming the one at fault.
    pub fn validate(&self) -> Result<(), CatalogError> {
        check_text("title", &self.title, 1000)?;
        check_text("description", &self.description, 10_000)?;
        check_text("publisher", &self.publisher, 256)?;
        if self.types.is_empty() || self.types.len() > 64 {
            return Err(invalid("types must list 1 to 64 entity types"));
        }
        for t in &self.types {
            check_name("types", t)?;
        }
        for a in &self.attrs {
            check_name("attrs", a)?;
        }
        if let Some(q) = &self.q {
            citybrain_model::q::Query::parse(q).map_err(|e| invalid(format!("q: {}", e.detail)))?;
        }
        if let Some(l) = &self.license {
            let iri = l.starts_with("http://") || l.starts_with("https://");
            if !iri && !LICENCES.iter().any(|(k, _)| k == l) {
                let known: Vec<&str> = LICENCES.iter().map(|(k, _)| *k).collect();
                return Err(invalid(format!(
                    "license '{l}' must be an IRI or one of {}",
                    known.join(", ")
                )));
            }
        }
        for k in &self.keywords {
            check_text("keywords", k, 200)?;
        }
        for t in &self.themes {
            if theme_label(t).is_none() {
                let codes: Vec<&str> = THEMES.iter().map(|(c, _)| *c).collect();
                return Err(invalid(format!(
                    "themes: '{t}' is not an EU data theme ({})",
                    codes.join(", ")
                )));
            }
        }
        if let Some([w, so, e, n]) = self.spatial {
            let lon = |x: f64| (-180.0..=180.0).contains(&x);
            let lat = |y: f64| (-90.0..=90.0).contains(&y);
            if !(lon(w) && lon(e) && lat(so) && lat(n) && w < e && so < n) {
                return Err(invalid(
                    "spatial must be [west, south, east, north] in degrees, west < east and south < north",
                ));
            }
        }
        if let Some(Period {
            start,
            end: Some(end),
        }) = &self.temporal
        {
            if end <= start {
                return Err(invalid("temporal.end must be later than temporal.start"));
            }
        }
        if let Some(c) = &self.contact_point {
            if !c.contains('@') || c.len() > 254 || c.chars().any(char::is_whitespace) {
                return Err(invalid(format!(
                    "contactPoint '{c}' must be an e-mail address"
                )));
            }
        }
        if let Some(p) = &self.privacy {
            p.budget.validate().map_err(|e| invalid(e.to_string()))?;
            if !(p.max_query_cost.is_finite() && p.max_query_cost > 0.0) {
                return Err(invalid("privacy.maxQueryCost must be a positive number"));
            }
            if p.mechanism == Mechanism::Gaussian && p.budget.delta <= 0.0 {
                return Err(invalid(
                    "privacy.budget.delta must be positive for the gaussian mechanism (zCDP converts to (ε, δ))",
                ));
            }
            if !(1..=1000).contains(&p.max_contributions) {
                return Err(invalid("privacy.maxContributions must be 1 to 1000"));
            }
            for (a, b) in &p.bounds {
                check_name("privacy.bounds", a)?;
                Bounds::from(*b)
                    .validate()
                    .map_err(|e| invalid(format!("privacy.bounds.{a}: {e}")))?;
                if !self.attrs.is_empty() && !self.attrs.iter().any(|x| short(x) == short(a)) {
                    return Err(invalid(format!(
                        "privacy.bounds.{a}: the dataset does not select attribute '{a}'"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The licence IRI.
    pub fn license_iri(&self) -> Option<String> {
        self.license.as_deref().map(licence_iri)
    }

    /// The types, expanded with the core context.
    pub fn expanded_types(&self) -> Vec<std::sync::Arc<str>> {
        let ld = JsonLdContext::core();
        self.types.iter().map(|t| ld.expand(t).into()).collect()
    }

    /// The attributes' short names.
    pub fn short_attrs(&self) -> Vec<std::sync::Arc<str>> {
        self.attrs.iter().map(|a| short(a).into()).collect()
    }
}

/// The short name of an IRI.
pub fn short(iri: &str) -> &str {
    citybrain_policy::short(iri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Result<DatasetSpec, String> {
        DatasetSpec::from_json(v.to_string().as_bytes()).map_err(|e| e.to_string())
    }

    fn base() -> serde_json::Value {
        json!({
            "title": "Traffic flow", "description": "Detector counts", "publisher": "transport",
            "accessRights": "PUBLIC", "types": ["TrafficFlowObserved"],
            "license": "CC-BY-4.0", "themes": ["TRAN"],
            "privacy": {"budget": {"epsilon": 5.0}, "maxQueryCost": 1.0,
                        "bounds": {"intensity": {"lower": 0, "upper": 3000}}}
        })
    }

    #[test]
    fn a_good_dataset_passes() {
        let s = spec(base()).unwrap();
        assert_eq!(
            s.license_iri().unwrap(),
            "http://publications.europa.eu/resource/authority/licence/CC_BY_4_0"
        );
        assert!(s.expanded_types()[0].ends_with("/TrafficFlowObserved"));
    }

    #[test]
    fn faults_are_named() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("title", json!(""), "title"),
            ("types", json!([]), "types"),
            ("types", json!(["bad type"]), "types"),
            ("accessRights", json!("OPEN"), "accessRights"),
            ("license", json!("my licence"), "license"),
            ("themes", json!(["TRAFFIC"]), "themes"),
            ("q", json!("(speed>1"), "q"),
            ("contactPoint", json!("nobody"), "contactPoint"),
            ("colour", json!("red"), "colour"),
            (
                "privacy",
                json!({"budget": {"epsilon": 0}, "maxQueryCost": 1}),
                "privacy.budget.epsilon",
            ),
            (
                "privacy",
                json!({"budget": {"epsilon": 1}, "maxQueryCost": 1, "mechanism": "gaussian"}),
                "privacy.budget.delta",
            ),
            (
                "privacy",
                json!({"budget": {"epsilon": 1}, "maxQueryCost": 1,
                       "bounds": {"speed": {"lower": 5, "upper": 1}}}),
                "privacy.bounds.speed",
            ),
        ];
        for (field, value, named) in cases {
            let mut v = base();
            v[field] = value;
            let e = spec(v).unwrap_err();
            assert!(e.contains(named), "{field}: {e}");
        }
        assert!(check_id("traffic-2024.v1").is_ok());
        assert!(check_id("../etc").is_err());
        assert!(check_id("").is_err());
    }
}
