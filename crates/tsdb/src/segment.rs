//! Segment blocks and segment files (on-disk format version 1, see `docs/history.md`).
//!
//! ```text
//! file    = header block* footer trailer
//! header  = "CBTS" 0x00 0x00 version:u16le                       (8 bytes)
//! block   = len:u32le crc32:u32le payload[len]                    (one series, ≤ MAX_POINTS)
//! payload = count:varint t:times rec:times flags:ints unit:strings numbers:floats docs:strings
//! footer  = n:varint (series offset len count min_t max_t min_rec max_rec):varint*
//! trailer = footer_len:u32le footer_crc32:u32le "CBTSEND!"
//! ```
//! Points in a block are sorted by (t, rec). `flags` = observed bit | kind << 1 (kind 0 =
//! float, 1 = integer, 2 = document); `numbers` holds floats and integers in point order,
//! `docs` the documents. A block whose checksum fails is reported and skipped; the other
//! blocks of the file stay readable. A file whose footer is damaged is re-indexed by
//! walking its blocks.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{self, Reader};
use crate::error::TsdbError;
use crate::point::{Point, Val};

pub const FORMAT_VERSION: u16 = 1;
const MAGIC: &[u8; 6] = b"CBTS\0\0";
const TRAILER_MAGIC: &[u8; 8] = b"CBTSEND!";
const HEADER_LEN: u64 = 8;
/// The most points one block holds.
pub const MAX_POINTS: usize = 4096;

const KIND_F: i64 = 0;
const KIND_I: i64 = 1;
const KIND_D: i64 = 2;
const BIG_INT: i64 = 4;
const MAX_EXACT_INT: i64 = 1 << 53;

/// Encodes sorted points of one series into a block payload.
pub fn encode_block(series: u32, points: &[Point], out: &mut Vec<u8>) {
    codec::put_varint(out, u64::from(series));
    codec::put_varint(out, points.len() as u64);
    let ts: Vec<i64> = points.iter().map(|p| p.t).collect();
    codec::put_times(out, &ts);
    let recs: Vec<i64> = points.iter().map(|p| p.rec).collect();
    codec::put_times(out, &recs);
    let mut flags = Vec::with_capacity(points.len());
    let mut nums = Vec::new();
    let mut docs: Vec<Cow<'_, str>> = Vec::new();
    for p in points {
        let kind = match &p.v {
            Val::F(f) => {
                nums.push(*f);
                KIND_F
            }
            Val::I(i) if i.unsigned_abs() < MAX_EXACT_INT as u64 => {
                nums.push(*i as f64);
                KIND_I
            }
            // Integers beyond 2^53 are kept exactly, as text.
            Val::I(i) => {
                docs.push(Cow::Owned(i.to_string()));
                KIND_D | BIG_INT
            }
            Val::D(d) => {
                docs.push(Cow::Borrowed(d));
                KIND_D
            }
        };
        flags.push(i64::from(p.observed) | (kind << 1));
    }
    codec::put_ints(out, &flags);
    let units: Vec<&str> = points
        .iter()
        .map(|p| p.unit.as_deref().unwrap_or(""))
        .collect();
    codec::put_strings(out, &units);
    codec::put_floats(out, &nums);
    let docs: Vec<&str> = docs.iter().map(|d| d.as_ref()).collect();
    codec::put_strings(out, &docs);
}

/// Decodes a block payload: (series, points).
pub fn decode_block(payload: &[u8]) -> Option<(u32, Vec<Point>)> {
    let mut out = Vec::new();
    let series = decode_block_into(payload, &mut out)?;
    Some((series, out))
}

/// Decodes a block payload, appending its points to `out`; returns the series. On
/// malformed input `out` is left as it was.
pub fn decode_block_into(payload: &[u8], out: &mut Vec<Point>) -> Option<u32> {
    let start = out.len();
    let res = decode_points(payload, out);
    if res.is_none() {
        out.truncate(start);
    }
    res
}

/// Decodes only the times and values of a block whose points are all numbers, into
/// `ts` and `vals` (cleared first). `Some(false)`: the block holds other values.
pub fn decode_numeric(payload: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Option<bool> {
    ts.clear();
    vals.clear();
    let mut r = Reader::new(payload);
    let _series = r.varint()?;
    let n = usize::try_from(r.varint()?).ok()?;
    if n > MAX_POINTS {
        return None;
    }
    codec::get_times(&mut r, n, ts)?;
    let mut scratch = Vec::new();
    codec::get_times(&mut r, n, &mut scratch)?;
    scratch.clear();
    codec::get_ints(&mut r, n, &mut scratch)?;
    if scratch
        .iter()
        .any(|f| !matches!((f >> 1) & 3, KIND_F | KIND_I))
    {
        return Some(false);
    }
    codec::get_strings(&mut r, n)?;
    codec::get_floats(&mut r, n, vals)?;
    Some(true)
}

fn decode_points(payload: &[u8], out: &mut Vec<Point>) -> Option<u32> {
    let mut r = Reader::new(payload);
    let series = u32::try_from(r.varint()?).ok()?;
    let n = usize::try_from(r.varint()?).ok()?;
    if n > MAX_POINTS {
        return None;
    }
    let mut ts = Vec::new();
    codec::get_times(&mut r, n, &mut ts)?;
    let mut recs = Vec::new();
    codec::get_times(&mut r, n, &mut recs)?;
    let mut flags = Vec::new();
    codec::get_ints(&mut r, n, &mut flags)?;
    let units = codec::get_strings(&mut r, n)?;
    let nnum = flags
        .iter()
        .filter(|f| matches!((*f >> 1) & 3, KIND_F | KIND_I))
        .count();
    let mut nums = Vec::new();
    codec::get_floats(&mut r, nnum, &mut nums)?;
    let ndoc = n - nnum;
    let docs = codec::get_strings(&mut r, ndoc)?;
    let mut unit_cache: Vec<Arc<str>> = Vec::new();
    let mut doc_cache: Vec<Arc<str>> = Vec::new();
    let (mut ni, mut di) = (0usize, 0usize);
    out.reserve(n);
    for i in 0..n {
        let f = flags[i];
        let v = match (f >> 1) & 3 {
            KIND_F => {
                ni += 1;
                Val::F(*nums.get(ni - 1)?)
            }
            KIND_I => {
                ni += 1;
                Val::I(*nums.get(ni - 1)? as i64)
            }
            KIND_D => {
                di += 1;
                let d = *docs.get(di - 1)?;
                if (f >> 1) & BIG_INT != 0 {
                    Val::I(d.parse().ok()?)
                } else {
                    Val::D(intern(&mut doc_cache, d))
                }
            }
            _ => return None,
        };
        let u = units[i];
        out.push(Point {
            t: ts[i],
            rec: recs[i],
            observed: f & 1 == 1,
            unit: (!u.is_empty()).then(|| intern(&mut unit_cache, u)),
            v,
        });
    }
    Some(series)
}

/// Shares equal strings of one block (segments repeat units and documents).
fn intern(cache: &mut Vec<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(a) = cache.iter().rev().take(8).find(|a| &***a == s) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(s);
    cache.push(a.clone());
    a
}

/// Where a block lives, with its summary (for pruning without reading it).
#[derive(Debug, Clone)]
pub struct BlockRef {
    pub file: Arc<SegFile>,
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub min_t: i64,
    pub max_t: i64,
    pub min_rec: i64,
    pub max_rec: i64,
}

impl BlockRef {
    /// Reads and checks the block.
    pub fn read(&self) -> Result<Vec<Point>, TsdbError> {
        let mut out = Vec::with_capacity(self.count as usize);
        self.read_into(&mut out)?;
        Ok(out)
    }

    /// Reads the block's bytes and checks them.
    pub fn payload(&self) -> Result<Vec<u8>, TsdbError> {
        let mut buf = vec![0u8; self.len as usize + 8];
        self.file.file.read_exact_at(&mut buf, self.offset)?;
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if crc32fast::hash(&buf[8..]) != crc {
            return Err(self.corrupt("block checksum mismatch"));
        }
        buf.drain(..8);
        Ok(buf)
    }

    /// The times and values of an all-numeric block (None: it holds other values).
    pub fn read_numeric(&self, ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<bool, TsdbError> {
        let payload = self.payload()?;
        decode_numeric(&payload, ts, vals).ok_or_else(|| self.corrupt("undecodable block"))
    }

    /// Reads and checks the block, appending its points to `out`.
    pub fn read_into(&self, out: &mut Vec<Point>) -> Result<(), TsdbError> {
        let payload = self.payload()?;
        match decode_block_into(&payload, out) {
            Some(_) => Ok(()),
            None => Err(self.corrupt("undecodable block")),
        }
    }

    fn corrupt(&self, what: &str) -> TsdbError {
        TsdbError::Corrupt {
            file: self.file.path.display().to_string(),
            detail: format!("{what} at byte {}", self.offset),
        }
    }
}

/// An open, immutable segment file.
#[derive(Debug)]
pub struct SegFile {
    pub id: u64,
    pub path: PathBuf,
    file: File,
}

pub fn file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:012}.cbts"))
}

/// One entry of a file's index: (series, block summary without the file).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub series: u32,
    pub offset: u64,
    pub len: u32,
    pub count: u32,
    pub min_t: i64,
    pub max_t: i64,
    pub min_rec: i64,
    pub max_rec: i64,
}

/// Writes a segment file of blocks (each `(series, sorted points)`), synced. Series with
/// more than [`MAX_POINTS`] points are split into several blocks.
pub fn write_file(dir: &Path, id: u64, series: &[(u32, &[Point])]) -> Result<(), TsdbError> {
    let path = file_path(dir, id);
    let tmp = path.with_extension("tmp");
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let mut index = Vec::new();
    let mut f = crate::io::SyncEvery::new(File::create(&tmp)?);
    let mut written = 0u64;
    let mut payload = Vec::new();
    for (sid, points) in series {
        for chunk in points.chunks(MAX_POINTS) {
            payload.clear();
            encode_block(*sid, chunk, &mut payload);
            let offset = written + out.len() as u64;
            let len = u32::try_from(payload.len()).map_err(|_| TsdbError::TooLarge)?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            out.extend_from_slice(&payload);
            index.push(IndexEntry {
                series: *sid,
                offset,
                len,
                count: chunk.len() as u32,
                min_t: chunk.iter().map(|p| p.t).min().unwrap_or(0),
                max_t: chunk.iter().map(|p| p.t).max().unwrap_or(0),
                min_rec: chunk.iter().map(|p| p.rec).min().unwrap_or(0),
                max_rec: chunk.iter().map(|p| p.rec).max().unwrap_or(0),
            });
            if out.len() as u64 >= crate::io::SYNC_EVERY {
                f.write_all(&out)?;
                written += out.len() as u64;
                out.clear();
            }
        }
    }
    let mut footer = Vec::new();
    codec::put_varint(&mut footer, index.len() as u64);
    for e in &index {
        codec::put_varint(&mut footer, u64::from(e.series));
        codec::put_varint(&mut footer, e.offset);
        codec::put_varint(&mut footer, u64::from(e.len));
        codec::put_varint(&mut footer, u64::from(e.count));
        for v in [e.min_t, e.max_t, e.min_rec, e.max_rec] {
            codec::put_varint(&mut footer, codec::zigzag(v));
        }
    }
    out.extend_from_slice(&footer);
    let flen = u32::try_from(footer.len()).map_err(|_| TsdbError::TooLarge)?;
    out.extend_from_slice(&flen.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&footer).to_le_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    f.write_all(&out)?;
    let f = f.into_inner();
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// An opened file, its block index and the damage found while opening it.
pub type OpenedFile = (Arc<SegFile>, Vec<IndexEntry>, Vec<TsdbError>);

/// Opens a segment file and returns its index. A damaged footer is rebuilt by walking
/// the blocks (blocks with bad checksums are reported and left out).
pub fn open_file(dir: &Path, id: u64) -> Result<OpenedFile, TsdbError> {
    let path = file_path(dir, id);
    let file = File::open(&path)?;
    let size = file.metadata()?.len();
    let name = path.display().to_string();
    let mut header = [0u8; 8];
    file.read_exact_at(&mut header, 0)?;
    if &header[..6] != MAGIC {
        return Err(TsdbError::Corrupt {
            file: name,
            detail: "bad segment header".into(),
        });
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if version != FORMAT_VERSION {
        return Err(TsdbError::Version {
            file: name,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let seg = Arc::new(SegFile { id, path, file });
    let mut problems = Vec::new();
    match read_footer(&seg.file, size) {
        Some(index) => return Ok((seg, index, problems)),
        None => problems.push(TsdbError::Corrupt {
            file: name.clone(),
            detail: "damaged footer; re-indexing the blocks".into(),
        }),
    }
    // Walk the blocks, up to the footer when the trailer still says where it starts.
    let end = blocks_end(&seg.file, size).unwrap_or(size);
    let mut index = Vec::new();
    let mut off = HEADER_LEN;
    let mut head = [0u8; 8];
    while off + 8 <= end && seg.file.read_exact_at(&mut head, off).is_ok() {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if off + 8 + u64::from(len) > end {
            problems.push(TsdbError::Corrupt {
                file: name.clone(),
                detail: format!("truncated block at byte {off}"),
            });
            break;
        }
        let mut payload = vec![0u8; len as usize];
        seg.file.read_exact_at(&mut payload, off + 8)?;
        let decoded = (crc32fast::hash(&payload) == crc)
            .then(|| decode_block(&payload))
            .flatten();
        match decoded {
            Some((series, pts)) if !pts.is_empty() => index.push(IndexEntry {
                series,
                offset: off,
                len,
                count: pts.len() as u32,
                min_t: pts.iter().map(|p| p.t).min().unwrap_or(0),
                max_t: pts.iter().map(|p| p.t).max().unwrap_or(0),
                min_rec: pts.iter().map(|p| p.rec).min().unwrap_or(0),
                max_rec: pts.iter().map(|p| p.rec).max().unwrap_or(0),
            }),
            Some(_) => {}
            None => problems.push(TsdbError::Corrupt {
                file: name.clone(),
                detail: format!("block checksum mismatch at byte {off}"),
            }),
        }
        off += 8 + u64::from(len);
    }
    Ok((seg, index, problems))
}

/// Where the blocks end, from an intact trailer.
fn blocks_end(file: &File, size: u64) -> Option<u64> {
    let mut trailer = [0u8; 16];
    file.read_exact_at(&mut trailer, size.checked_sub(16)?)
        .ok()?;
    if &trailer[8..] != TRAILER_MAGIC {
        return None;
    }
    let flen = u64::from(u32::from_le_bytes([
        trailer[0], trailer[1], trailer[2], trailer[3],
    ]));
    size.checked_sub(16 + flen).filter(|e| *e >= HEADER_LEN)
}

fn read_footer(file: &File, size: u64) -> Option<Vec<IndexEntry>> {
    if size < HEADER_LEN + 16 {
        return None;
    }
    let mut trailer = [0u8; 16];
    file.read_exact_at(&mut trailer, size - 16).ok()?;
    if &trailer[8..] != TRAILER_MAGIC {
        return None;
    }
    let flen = u64::from(u32::from_le_bytes([
        trailer[0], trailer[1], trailer[2], trailer[3],
    ]));
    let crc = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    let start = size.checked_sub(16 + flen)?;
    if start < HEADER_LEN {
        return None;
    }
    let mut footer = vec![0u8; flen as usize];
    file.read_exact_at(&mut footer, start).ok()?;
    if crc32fast::hash(&footer) != crc {
        return None;
    }
    let mut r = Reader::new(&footer);
    let n = usize::try_from(r.varint()?).ok()?;
    if n > footer.len() {
        return None;
    }
    let mut index = Vec::with_capacity(n);
    for _ in 0..n {
        index.push(IndexEntry {
            series: u32::try_from(r.varint()?).ok()?,
            offset: r.varint()?,
            len: u32::try_from(r.varint()?).ok()?,
            count: u32::try_from(r.varint()?).ok()?,
            min_t: r.ivarint()?,
            max_t: r.ivarint()?,
            min_rec: r.ivarint()?,
            max_rec: r.ivarint()?,
        });
    }
    Some(index)
}
