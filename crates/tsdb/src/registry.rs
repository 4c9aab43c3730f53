//! `registry.json`: what the segment files mean. Written atomically (temporary file,
//! fsync, rename, directory fsync) at the end of every checkpoint.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TsdbError;

pub const REGISTRY_VERSION: u32 = 1;
const NAME: &str = "registry.json";

#[derive(Debug, Default, Serialize, Deserialize)]
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

#[derive(Debug, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRec {
    pub tenant: String,
    pub id: String,
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Where the registry of the engine in `dir` lives.
pub fn path(dir: &Path) -> std::path::PathBuf {
    dir.join(NAME)
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

/// A series record borrowing its strings (same JSON as [`SeriesRec`]).
#[derive(Serialize)]
pub struct SeriesRecRef<'a> {
    pub id: u32,
    pub tenant: &'a str,
    pub entity: &'a str,
    pub attr: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<&'a str>,
    pub last_rec: i64,
    pub min_file: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<(i64, Option<PointRec>)>,
}

/// An entity record borrowing its strings (same JSON as [`EntityRec`]).
#[derive(Serialize)]
pub struct EntityRecRef<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    pub types: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
}

/// Writes the registry record by record (constant memory, whatever the number of
/// series), atomically: temporary file, fsync, rename, directory fsync.
pub fn store_streaming<'a>(
    dir: &Path,
    checkpoint_lsn: u64,
    next_file: u64,
    files: &[u64],
    series: impl Iterator<Item = SeriesRecRef<'a>>,
    entities: impl Iterator<Item = EntityRecRef<'a>>,
) -> Result<(), TsdbError> {
    let path = dir.join(NAME);
    let tmp = dir.join("registry.json.tmp");
    let bad = |e: serde_json::Error| TsdbError::Corrupt {
        file: tmp.display().to_string(),
        detail: e.to_string(),
    };
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, crate::io::SyncEvery::new(File::create(&tmp)?));
    write!(
        w,
        "{{\"version\":{REGISTRY_VERSION},\"checkpoint_lsn\":{checkpoint_lsn},\"next_file\":{next_file},\"files\":"
    )?;
    serde_json::to_writer(&mut w, files).map_err(bad)?;
    w.write_all(b",\"series\":[")?;
    for (i, s) in series.enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut w, &s).map_err(bad)?;
    }
    w.write_all(b"],\"entities\":[")?;
    for (i, e) in entities.enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut w, &e).map_err(bad)?;
    }
    w.write_all(b"]}")?;
    let f = w
        .into_inner()
        .map_err(|e| TsdbError::Io(e.into_error()))?
        .into_inner();
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_registry_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let series = vec![
            SeriesRecRef {
                id: 0,
                tenant: "",
                entity: "urn:a",
                attr: "https://x/\"q\"",
                dataset: Some("urn:ds"),
                last_rec: 42,
                min_file: 3,
                overrides: vec![(7, None)],
            },
            SeriesRecRef {
                id: 1,
                tenant: "t",
                entity: "urn:b",
                attr: "y",
                dataset: None,
                last_rec: 0,
                min_file: 0,
                overrides: Vec::new(),
            },
        ];
        let entities = vec![EntityRecRef {
            tenant: "",
            id: "urn:a",
            types: vec!["T"],
            scope: Some("[\"/a\"]"),
        }];
        store_streaming(
            dir.path(),
            9,
            4,
            &[1, 3],
            series.into_iter(),
            entities.into_iter(),
        )
        .unwrap();
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
        // Empty lists are valid JSON too.
        store_streaming(
            dir.path(),
            0,
            1,
            &[],
            std::iter::empty(),
            std::iter::empty(),
        )
        .unwrap();
        assert!(load(dir.path()).unwrap().unwrap().series.is_empty());
    }
}
