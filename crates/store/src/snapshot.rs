//! Snapshots: the whole state at one LSN, so that the log before it can be dropped.
//!
//! ```text
//! snapshot file = "CBSNAP" version:u16le lsn:u64le frame* end
//! frame         = len:u32le crc32:u32le payload    (payload: JSON of SnapItem)
//! end           = frame whose payload is SnapItem::End { count }
//! ```
//! Written to a temporary name, synced, then renamed to `snap-{lsn:020}.bin`; a snapshot
//! without its end frame is ignored.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use citybrain_model::Entity;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;
use crate::wal::sync_dir;

const MAGIC: &[u8; 6] = b"CBSNAP";

#[derive(Serialize, Deserialize)]
pub(crate) enum SnapItem {
    #[serde(rename = "e")]
    Entity { t: String, e: Entity },
    #[serde(rename = "d")]
    Doc {
        t: String,
        c: String,
        id: String,
        v: Value,
    },
    #[serde(rename = "end")]
    End { count: u64 },
}

/// What a snapshot holds.
pub(crate) struct SnapshotData {
    pub lsn: u64,
    /// Per tenant, its entities (one pointer each: at 1M entities the list is 8 MB).
    pub entities: Vec<(Arc<str>, Vec<Arc<Entity>>)>,
    pub docs: Vec<Arc<StoredDoc>>,
}

/// A document as the store holds it (shared with snapshots being written).
#[derive(Debug)]
pub(crate) struct StoredDoc {
    pub t: String,
    pub c: String,
    pub id: String,
    pub v: Value,
}

pub(crate) fn path_for(dir: &Path, lsn: u64) -> PathBuf {
    dir.join(format!("snap-{lsn:020}.bin"))
}

pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    crate::wal::list_numbered(dir, "snap-", ".bin")
}

/// Borrowed twin of [`SnapItem`] for writing without copying entities.
#[derive(Serialize)]
enum SnapItemRef<'a> {
    #[serde(rename = "e")]
    Entity { t: &'a str, e: &'a Entity },
    #[serde(rename = "d")]
    Doc {
        t: &'a str,
        c: &'a str,
        id: &'a str,
        v: &'a Value,
    },
    #[serde(rename = "end")]
    End { count: u64 },
}

fn frame(w: &mut impl std::io::Write, item: &SnapItemRef<'_>) -> Result<(), StoreError> {
    let payload = serde_json::to_vec(item).map_err(|e| StoreError::Corrupt {
        file: "<snapshot>".into(),
        detail: e.to_string(),
    })?;
    let len = u32::try_from(payload.len()).map_err(|_| StoreError::Corrupt {
        file: "<snapshot>".into(),
        detail: "item too large".into(),
    })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
    w.write_all(&payload)?;
    Ok(())
}

/// Writes a snapshot durably and returns its path. A snapshot that cannot be written
/// (a full disk) leaves no partial file behind.
pub(crate) fn write(dir: &Path, data: &SnapshotData) -> Result<PathBuf, StoreError> {
    let tmp = dir.join(format!("snap-{:020}.tmp", data.lsn));
    let res = write_to(dir, &tmp, data);
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn write_to(dir: &Path, tmp: &Path, data: &SnapshotData) -> Result<PathBuf, StoreError> {
    let tmp = tmp.to_path_buf();
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, citybrain_tsdb::io::SyncEvery::new(f));
    w.write_all(MAGIC)?;
    w.write_all(&(crate::FORMAT_VERSION as u16).to_le_bytes())?;
    w.write_all(&data.lsn.to_le_bytes())?;
    let mut count = 0u64;
    for (t, list) in &data.entities {
        for e in list {
            frame(&mut w, &SnapItemRef::Entity { t, e })?;
            count += 1;
        }
    }
    for d in &data.docs {
        frame(
            &mut w,
            &SnapItemRef::Doc {
                t: &d.t,
                c: &d.c,
                id: &d.id,
                v: &d.v,
            },
        )?;
        count += 1;
    }
    frame(&mut w, &SnapItemRef::End { count })?;
    let f = w
        .into_inner()
        .map_err(|e| StoreError::Io(e.into_error()))?
        .into_inner();
    f.sync_all()?;
    let path = path_for(dir, data.lsn);
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads a snapshot, handing each item to `apply` as it is decoded (no second copy of the
/// state in memory). Returns its LSN, or `Ok(None)` when it is incomplete or damaged; the
/// caller then discards what it applied and falls back to an older snapshot or the log.
pub(crate) fn read(
    path: &Path,
    apply: &mut dyn FnMut(SnapItem),
) -> Result<Option<u64>, StoreError> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut header = [0u8; 16];
    if r.read_exact(&mut header).is_err() || &header[..6] != MAGIC {
        return Ok(None);
    }
    let version = u16::from_le_bytes([header[6], header[7]]) as u32;
    if version != crate::FORMAT_VERSION {
        return Err(StoreError::Version {
            file: path.display().to_string(),
            found: version,
            supported: crate::FORMAT_VERSION,
        });
    }
    let mut lsn_bytes = [0u8; 8];
    lsn_bytes.copy_from_slice(&header[8..16]);
    let lsn = u64::from_le_bytes(lsn_bytes);
    // Frames are read and decoded on a second thread, a batch at a time, while this
    // one applies them: at a million entities the decoding alone takes seconds.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SnapItem>>(4);
        let decoder = scope.spawn(move || decode_frames(&mut r, &tx));
        for batch in rx {
            for item in batch {
                apply(item);
            }
        }
        match decoder.join() {
            Ok(true) => Ok(Some(lsn)),
            Ok(false) => Ok(None),
            Err(_) => Err(StoreError::Io(std::io::Error::other(
                "decoding the snapshot panicked",
            ))),
        }
    })
}

/// Reads and decodes the frames after the header, sending them in batches; true when
/// the end frame was reached with the right count (the snapshot is whole).
fn decode_frames(r: &mut BufReader<File>, tx: &std::sync::mpsc::SyncSender<Vec<SnapItem>>) -> bool {
    const BATCH: usize = 512;
    let mut payload = Vec::new();
    let mut count = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let mut fh = [0u8; 8];
        if r.read_exact(&mut fh).is_err() {
            return false;
        }
        let len = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]) as usize;
        let crc = u32::from_le_bytes([fh[4], fh[5], fh[6], fh[7]]);
        payload.resize(len, 0);
        if r.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            return false;
        }
        match serde_json::from_slice::<SnapItem>(&payload) {
            Ok(SnapItem::End { count: n }) => {
                let whole = n == count;
                if whole && !batch.is_empty() && tx.send(batch).is_err() {
                    return false;
                }
                return whole;
            }
            Err(_) => return false,
            Ok(item) => batch.push(item),
        }
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(full).is_err() {
                return false;
            }
        }
        count += 1;
    }
}
