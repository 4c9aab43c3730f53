//! The write-ahead log: segment files of checksummed frames.
//!
//! ```text
//! segment file  = header frame*
//! header        = "CBWAL" 0x00 version:u16le          (8 bytes)
//! frame         = len:u32le crc32:u32le payload[len]  (crc32 of payload)
//! payload       = JSON of WalRecord                  (first byte '{')
//!               | 0xB1 lsn:varint history-ops       (binary, citybrain_tsdb::wire)
//! ```
//! Version 2 added the binary history frames, version 3 the update records (`pa`: the
//! attributes an update changed); older segments are still read.
//! Segment files are named `wal-{first_lsn:020}.log`. On recovery a torn or corrupt
//! frame at the end of the last segment is cut off (it was never acknowledged, since
//! acknowledgement waits for fsync); corruption anywhere else stops the start.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use citybrain_model::Entity;
use citybrain_tsdb::HistOp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;

const MAGIC: &[u8; 6] = b"CBWAL\0";
pub(crate) const HEADER_LEN: u64 = 8;
/// Frames larger than this are treated as corruption.
const MAX_FRAME: u32 = 256 * 1024 * 1024;

/// One logged operation. The entity is logged whole after the change (an after-image),
/// which makes replay idempotent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WalOp {
    #[serde(rename = "pe")]
    PutEntity {
        t: String,
        e: Entity,
        /// Records no history (the writer logged the history itself).
        #[serde(default)]
        nh: bool,
    },
    /// An update as the attributes it changed (format 3; see `delta`).
    #[serde(rename = "pa")]
    PatchEntity {
        t: String,
        id: String,
        #[serde(with = "citybrain_model::time::serde_dt")]
        m: chrono::DateTime<chrono::Utc>,
        #[serde(default, deserialize_with = "citybrain_model::intern::de_pairs")]
        a: Vec<citybrain_model::entity::AttrEntry>,
        #[serde(default)]
        r: Vec<String>,
        #[serde(default, deserialize_with = "de_types")]
        ty: Option<Vec<std::sync::Arc<str>>>,
        #[serde(default)]
        nh: bool,
    },
    #[serde(rename = "de")]
    DeleteEntity {
        t: String,
        id: String,
        #[serde(default)]
        nh: bool,
        /// When it was deleted (microseconds), for the history's deletion instances.
        #[serde(default)]
        at: Option<i64>,
    },
    #[serde(rename = "pd")]
    PutDoc {
        t: String,
        c: String,
        id: String,
        v: Value,
    },
    #[serde(rename = "dd")]
    DeleteDoc { t: String, c: String, id: String },
}

fn de_types<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<std::sync::Arc<str>>>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.map(|v| {
        v.iter()
            .map(|s| citybrain_model::intern::intern(s))
            .collect()
    }))
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WalRecord {
    pub lsn: u64,
    pub op: WalOp,
    /// Who wrote it (absent before the records carried it, and for writes of nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The request it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rq: Option<String>,
}

/// One decoded frame.
#[derive(Debug)]
pub(crate) enum WalEntry {
    Record(WalRecord),
    History { lsn: u64, ops: Vec<HistOp> },
}

impl WalEntry {
    #[cfg(test)]
    pub fn lsn(&self) -> u64 {
        match self {
            WalEntry::Record(r) => r.lsn,
            WalEntry::History { lsn, .. } => *lsn,
        }
    }
}

const HISTORY_FRAME: u8 = 0xB1;

/// Appends one framed binary history record to `buf`.
pub(crate) fn encode_history(
    lsn: u64,
    ops: &[HistOp],
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.push(HISTORY_FRAME);
    citybrain_tsdb::codec::put_varint(buf, lsn);
    citybrain_tsdb::wire::encode_ops(ops, buf);
    seal(buf, start)
}

fn seal(buf: &mut Vec<u8>, start: usize) -> Result<(), StoreError> {
    let payload = &buf[start + 8..];
    let Ok(len) = u32::try_from(payload.len()) else {
        buf.truncate(start);
        return Err(StoreError::Rejected(citybrain_model::ModelError::bad_data(
            "record is too large to store",
        )));
    };
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn decode(payload: &[u8]) -> Option<WalEntry> {
    if payload.first() == Some(&HISTORY_FRAME) {
        let mut r = citybrain_tsdb::codec::Reader::new(&payload[1..]);
        let lsn = r.varint()?;
        let ops = citybrain_tsdb::wire::decode_ops(&mut r)?;
        return Some(WalEntry::History { lsn, ops });
    }
    serde_json::from_slice::<WalRecord>(payload)
        .ok()
        .map(WalEntry::Record)
}

/// Appends one framed record to `buf`.
pub(crate) fn encode<T: Serialize>(rec: &T, buf: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    if let Err(e) = serde_json::to_writer(&mut *buf, rec) {
        buf.truncate(start);
        return Err(StoreError::Corrupt {
            file: "<encode>".into(),
            detail: e.to_string(),
        });
    }
    seal(buf, start)
}

/// Deletes a log segment a step at a time: it is cut by 32 MiB, with a pause of 5 ms
/// between cuts, then unlinked. Unlinking a 256 MiB file at once drops its cached
/// pages and frees its blocks in one go, which held up the log's next writes and
/// fsyncs by 50–100 ms here (RocksDB rate-limits its file deletions for the same
/// reason). Only background threads call this.
pub(crate) fn remove_gently(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt as _;
    const STEP: u64 = 32 << 20;
    // A segment a backup hard-linked shares its inode with the backup's copy:
    // shrinking it would cut the backup too, so it is only unlinked.
    if std::fs::metadata(path)?.nlink() > 1 {
        std::fs::remove_file(path)?;
        return Ok(());
    }
    let f = OpenOptions::new().write(true).open(path)?;
    let mut len = f.metadata()?.len();
    while len > STEP {
        len -= STEP;
        f.set_len(len)?;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(f);
    std::fs::remove_file(path)?;
    Ok(())
}

pub(crate) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("wal-{first_lsn:020}.log"))
}

/// Lists segment files, sorted by first LSN.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    list_numbered(dir, "wal-", ".log")
}

/// Files named `{prefix}{number}{suffix}` in `dir`, sorted by number.
pub(crate) fn list_numbered(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(suffix))
        {
            if let Ok(number) = n.parse::<u64>() {
                out.push((number, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a new segment file with its header, synced.
pub(crate) fn create_segment(dir: &Path, first_lsn: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, first_lsn);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let mut header = [0u8; 8];
    header[..6].copy_from_slice(MAGIC);
    header[6..8].copy_from_slice(&(crate::WAL_FORMAT_VERSION as u16).to_le_bytes());
    f.write_all(&header)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(f)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads every record of a segment, handing each to `apply` in order. Returns the byte
/// offset of the end of the last good frame, and whether bytes after it were cut off.
pub(crate) fn read_segment(
    path: &Path,
    apply: &mut dyn FnMut(WalEntry),
) -> Result<(u64, bool), StoreError> {
    let file_name = path.display().to_string();
    let f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut header = [0u8; 8];
    if r.read_exact(&mut header).is_err() {
        return Ok((0, true));
    }
    if &header[..6] != MAGIC {
        return Err(StoreError::Corrupt {
            file: file_name,
            detail: "bad segment header".into(),
        });
    }
    let version = u16::from_le_bytes([header[6], header[7]]) as u32;
    if !(1..=crate::WAL_FORMAT_VERSION).contains(&version) {
        return Err(StoreError::Version {
            file: file_name,
            found: version,
            supported: crate::WAL_FORMAT_VERSION,
        });
    }
    let mut offset = HEADER_LEN;
    let mut payload = Vec::new();
    loop {
        let mut fh = [0u8; 8];
        match r.read_exact(&mut fh) {
            Ok(()) => {}
            Err(_) => break,
        }
        let len = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]);
        let crc = u32::from_le_bytes([fh[4], fh[5], fh[6], fh[7]]);
        if len > MAX_FRAME || offset + 8 + len as u64 > file_len {
            break;
        }
        payload.resize(len as usize, 0);
        if r.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(rec) = decode(&payload) else {
            break;
        };
        apply(rec);
        offset += 8 + len as u64;
    }
    Ok((offset, offset < file_len))
}

/// Opens the last segment for appending after cutting a torn tail at `good_len`.
pub(crate) fn reopen_for_append(path: &Path, good_len: u64) -> Result<File, StoreError> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.set_len(good_len.max(HEADER_LEN))?;
    f.seek(SeekFrom::End(0))?;
    f.sync_all()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = create_segment(dir.path(), 1).unwrap();
        let mut buf = Vec::new();
        for lsn in 1..=3 {
            let rec = WalRecord {
                lsn,
                op: WalOp::DeleteEntity {
                    t: String::new(),
                    id: format!("urn:x:{lsn}"),
                    nh: false,
                    at: None,
                },
                by: None,
                rq: None,
            };
            encode(&rec, &mut buf).unwrap();
        }
        f.write_all(&buf).unwrap();
        f.write_all(&[7, 0, 0, 0, 1, 2]).unwrap(); // a torn frame
        drop(f);
        let path = segment_path(dir.path(), 1);
        let mut recs = Vec::new();
        let (good, torn) = read_segment(&path, &mut |r| recs.push(r)).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].lsn(), 3);
        assert!(torn);
        assert_eq!(good, HEADER_LEN + buf.len() as u64);
        // A flipped byte inside the second frame stops reading after the first.
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER_LEN as usize + (buf.len() / 3) + 12;
        bytes[second] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let mut recs = Vec::new();
        let (_, torn) = read_segment(&path, &mut |r| recs.push(r)).unwrap();
        assert_eq!(recs.len(), 1);
        assert!(torn);
    }
}
