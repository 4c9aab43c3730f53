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

pub fn store(dir: &Path, reg: &Registry) -> Result<(), TsdbError> {
    let path = dir.join(NAME);
    let tmp = dir.join("registry.json.tmp");
    let bytes = serde_json::to_vec(reg).map_err(|e| TsdbError::Corrupt {
        file: tmp.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}
