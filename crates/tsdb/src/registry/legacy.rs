//! `registry.json`, the registry of format version 1: one JSON document rewritten whole
//! at every checkpoint. Only read now, to open a history written by an older build; the
//! first checkpoint after that writes `registry.log` and removes it.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{LoadedEntity, LoadedSeries};
use crate::error::TsdbError;
use crate::point::{Point, SeriesKey, Val};

pub const REGISTRY_VERSION: u32 = 1;
pub const NAME: &str = "registry.json";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub version: u32,
    /// Every log record up to this LSN is in the segment files.
    pub checkpoint_lsn: u64,
    pub next_file: u64,
    pub files: Vec<u64>,
    pub series: Vec<SeriesRec>,
    pub entities: Vec<EntityRec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesRec {
    pub id: u32,
    pub tenant: String,
    pub entity: String,
    pub attr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The highest `rec` as of the checkpoint (keeps replay deterministic).
    pub last_rec: i64,
    /// Blocks in files older than this belong to a deleted past of the series.
    #[serde(default)]
    pub min_file: u64,
    /// Instance edits not yet folded into blocks: rec → replacement (None = deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<(i64, Option<PointRec>)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRec {
    pub t: i64,
    pub rec: i64,
    pub observed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRec {
    pub tenant: String,
    pub id: String,
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

pub fn load(dir: &Path) -> Result<Option<Registry>, TsdbError> {
    let path = dir.join(NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let reg: Registry = serde_json::from_slice(&bytes).map_err(|e| TsdbError::Corrupt {
        file: path.display().to_string(),
        detail: e.to_string(),
    })?;
    if reg.version != REGISTRY_VERSION {
        return Err(TsdbError::Version {
            file: path.display().to_string(),
            found: reg.version as u16,
            supported: REGISTRY_VERSION as u16,
        });
    }
    Ok(Some(reg))
}

fn from_rec(r: &PointRec) -> Point {
    let v = match (&r.f, &r.i, &r.d) {
        (Some(f), _, _) => Val::F(*f),
        (_, Some(i), _) => Val::I(*i),
        (_, _, Some(d)) => Val::D(Arc::from(d.as_str())),
        _ => Val::D(Arc::from("null")),
    };
    Point {
        t: r.t,
        rec: r.rec,
        observed: r.observed,
        unit: r.unit.as_deref().map(Arc::from),
        v,
    }
}

/// The version 1 registry in the form the engine opens (its writer then writes the
/// log whole at the first checkpoint).
pub fn convert(reg: Registry) -> super::Loaded {
    let entities = reg
        .entities
        .into_iter()
        .enumerate()
        .map(|(i, e)| LoadedEntity {
            eid: i as u32,
            tenant: Arc::from(e.tenant),
            id: Arc::from(e.id),
            meta: Some((
                e.types.into_iter().map(Arc::from).collect(),
                e.scope.map(Arc::from),
            )),
        })
        .collect();
    let series = reg
        .series
        .into_iter()
        .map(|s| {
            let overrides = s
                .overrides
                .iter()
                .map(|(rec, p)| (*rec, p.as_ref().map(from_rec)))
                .collect();
            let key = SeriesKey {
                tenant: Arc::from(s.tenant),
                entity: Arc::from(s.entity),
                attr: Arc::from(s.attr),
                dataset: s.dataset.map(Arc::from),
            };
            LoadedSeries {
                id: s.id,
                key,
                entity: None,
                last_rec: s.last_rec,
                min_file: s.min_file,
                overrides,
            }
        })
        .collect();
    super::Loaded {
        checkpoint_lsn: reg.checkpoint_lsn,
        next_file: reg.next_file,
        files: reg.files,
        series,
        entities,
        writer: super::WriterState::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_registry_loads() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"version":1,"checkpoint_lsn":9,"next_file":4,"files":[1,3],
            "series":[{"id":0,"tenant":"","entity":"urn:a","attr":"https://x/\"q\"","dataset":"urn:ds",
                       "last_rec":42,"min_file":3,"overrides":[[7,null]]},
                      {"id":1,"tenant":"t","entity":"urn:b","attr":"y","last_rec":0}],
            "entities":[{"tenant":"","id":"urn:a","types":["T"],"scope":"[\"/a\"]"}]}"#;
        std::fs::write(dir.path().join(NAME), text).unwrap();
        let reg = load(dir.path()).unwrap().unwrap();
        assert_eq!(
            (reg.checkpoint_lsn, reg.next_file, reg.files.clone()),
            (9, 4, vec![1, 3])
        );
        assert_eq!(reg.series.len(), 2);
        assert_eq!(reg.series[0].attr, "https://x/\"q\"");
        assert_eq!(reg.series[0].dataset.as_deref(), Some("urn:ds"));
        assert_eq!(reg.series[0].overrides.len(), 1);
        assert_eq!(reg.series[1].tenant, "t");
        assert_eq!(reg.entities[0].scope.as_deref(), Some("[\"/a\"]"));
        std::fs::write(dir.path().join(NAME), b"{\"version\":1").unwrap();
        assert!(matches!(load(dir.path()), Err(TsdbError::Corrupt { .. })));
        std::fs::write(
            dir.path().join(NAME),
            text.replace("\"version\":1", "\"version\":7"),
        )
        .unwrap();
        assert!(matches!(load(dir.path()), Err(TsdbError::Version { .. })));
    }
}
