//! Data classification and grading: every entity type and attribute has a level, an
//! owning department and a sharing condition. What is not classified gets the
//! configured default (internal unless configured otherwise), never "public" by
//! accident; an attribute without its own entry inherits its type's.
//!
//! Levels follow GB/T 43697-2024 (核心 core, 重要 important, 一般 general data), mapped
//! to the four grades policies compare: restricted (3), confidential (2), internal
//! (1), public (0).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// A classification level, ordered from open to closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Open data.
    Public = 0,
    /// GB/T 43697 general data (一般数据).
    #[serde(alias = "general")]
    Internal = 1,
    /// GB/T 43697 important data (重要数据).
    #[serde(alias = "important")]
    Confidential = 2,
    /// GB/T 43697 core data (核心数据).
    #[serde(alias = "core")]
    Restricted = 3,
}

/// Under what condition data may be shared beyond its owner (GB/T 37988 / the public
/// data sharing rules: 无条件共享, 有条件共享, 不予共享).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Unconditional,
    Conditional,
    None,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Unconditional => "unconditional",
            Sharing::Conditional => "conditional",
            Sharing::None => "none",
        }
    }
}

/// The classification of one type or attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Class {
    pub level: Level,
    /// The owning department ("" when none is named).
    #[serde(default)]
    pub owner: String,
    #[serde(default = "conditional")]
    pub sharing: Sharing,
}

fn conditional() -> Sharing {
    Sharing::Conditional
}

impl Default for Class {
    fn default() -> Self {
        Class {
            level: Level::Internal,
            owner: String::new(),
            sharing: Sharing::Conditional,
        }
    }
}

/// The city's classification: by entity type (short name, e.g. `Camera`) and by
/// attribute (`Type.attribute`, e.g. `Vehicle.licensePlate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Classification {
    /// For types and attributes not listed.
    #[serde(default)]
    pub default: Class,
    #[serde(default)]
    pub types: BTreeMap<String, Class>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Class>,
}

/// The short name of an expanded IRI (its last path segment or fragment): what
/// policies and the classification name types and attributes by.
pub fn short(iri: &str) -> &str {
    iri.rsplit(['/', '#']).next().unwrap_or(iri)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':'))
}

impl Classification {
    /// Reads and checks a classification (JSON), naming the field at fault.
    pub fn parse(v: serde_json::Value) -> Result<Classification, PolicyError> {
        let c: Classification = serde_json::from_value(v)
            .map_err(|e| PolicyError::Invalid(format!("classification: {e}")))?;
        for t in c.types.keys() {
            if !valid_name(t) {
                return Err(PolicyError::Invalid(format!(
                    "classification.types: '{t}' is not a type's short name"
                )));
            }
        }
        for a in c.attributes.keys() {
            match a.split_once('.') {
                Some((t, n)) if valid_name(t) && valid_name(n) => {}
                _ => {
                    return Err(PolicyError::Invalid(format!(
                        "classification.attributes: '{a}' must read Type.attribute"
                    )))
                }
            }
        }
        Ok(c)
    }

    /// The class of an entity type (short name).
    pub fn of_type(&self, ty: &str) -> &Class {
        self.types.get(ty).unwrap_or(&self.default)
    }

    /// The class of an attribute of a type (short names): its own entry, else the
    /// type's.
    pub fn of_attribute(&self, ty: &str, attr: &str) -> &Class {
        // Formatting a key per lookup is cheap next to the policy evaluation it feeds,
        // and decisions are cached.
        self.attributes
            .get(&format!("{ty}.{attr}"))
            .unwrap_or_else(|| self.of_type(ty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gbt_terms_map_to_levels_and_defaults_are_never_public() {
        let c = Classification::parse(json!({
            "types": {"Camera": {"level": "core", "owner": "police", "sharing": "none"}},
            "attributes": {"Vehicle.licensePlate": {"level": "important"}}
        }))
        .unwrap();
        assert_eq!(c.of_type("Camera").level, Level::Restricted);
        assert_eq!(
            c.of_attribute("Vehicle", "licensePlate").level,
            Level::Confidential
        );
        assert_eq!(c.of_type("Unknown").level, Level::Internal);
        assert_eq!(c.of_attribute("Camera", "status").owner, "police");
        assert_eq!(
            short("https://smartdatamodels.org/dataModel.Transportation/Vehicle"),
            "Vehicle"
        );
        assert_eq!(
            short("https://uri.etsi.org/ngsi-ld/default-context/speed"),
            "speed"
        );
        assert_eq!(short("urn:x#frag"), "frag");
    }

    #[test]
    fn bad_classifications_name_the_field() {
        let e = Classification::parse(json!({"types": {"Camera": {"level": "secret"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("classification") && e.contains("secret"), "{e}");
        let e = Classification::parse(json!({"attributes": {"plate": {"level": "public"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Type.attribute"), "{e}");
        assert!(Classification::parse(json!({"typos": {}})).is_err());
    }
}
