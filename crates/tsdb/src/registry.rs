//! The series registry: what the segment files mean, kept as an append-only log
//! (`registry.log`, format version 2).
//!
//! A series' key never changes once created; what changes at a checkpoint is the
//! state of the series that received points or edits, the entities whose types or
//! scope changed, and the list of files. A checkpoint therefore appends only those
//! (a *delta*), and the cost of a checkpoint follows what changed, not the number of
//! series (version 1 rewrote one JSON document of every series each time: 711 MB at
//! 3 million series). Once the deltas add up to more than the last whole write, the
//! next checkpoint writes the whole registry into a new file and renames it over the
//! log (as LevelDB starts a new MANIFEST), so the log stays within about twice its
//! live size and reading it at start stays proportional to the live series.
//!
//! ```text
//! file    = "CBTSREG\n" version:u32le batch*
//! batch   = len:u32le crc32:u32le payload[len]      crc32 (IEEE) of the payload
//! payload = flags:u8 rec*                           flags 1 = final: ends a checkpoint
//! rec     = 1 text:str                              NAME: the next name number
//!         | 2 eid:v tenant:name id:str              ENTITY: the next entity number
//!         | 3 eid:v n:v type:name* scope:opt(str)   META: the entity's types and scope
//!         | 4 eid:v                                 UNMETA: the entity was deleted
//!         | 5 sid:v eid+1:v attr:name opt(name)     SERIES: the next series number
//!         | 6 sid:v last_rec:iv min_file:v n:v (rec:iv opt(point))*   STATE
//!         | 7 lsn:v next_file:v n:v file:v*         CHECKPOINT, last of a final batch
//!         | 8 entities:v series:v                   SIZE: how many a whole write holds
//! v = LEB128 varint; iv = zig-zag varint; str = len:v bytes; opt(x) = 0 | 1 x;
//! name = v, a NAME's number in this file; point as in the log (`wire.rs`)
//! ```
//!
//! A checkpoint is many batches (each up to about 1 MiB) ending with a final one, and
//! is durable once the final batch is synced. Reading applies records only up to the
//! last final batch: a torn tail (a crash during an append) is left out, and the next
//! checkpoint writes the whole registry anew rather than append after it. A damaged
//! batch that is not the tail is an error (the file was changed after it was synced).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{put_blob, put_varint, zigzag, Reader};
use crate::error::TsdbError;
use crate::io::SyncEvery;
use crate::point::{Point, SeriesKey};
use crate::wire;

pub(crate) mod legacy;

pub const VERSION: u32 = 2;
pub const NAME: &str = "registry.log";
const MAGIC: &[u8; 8] = b"CBTSREG\n";
const HEADER_LEN: u64 = 12;
/// A batch is cut once its payload passes this size.
const BATCH_BYTES: usize = 1 << 20;
/// Deltas may add this much beyond the last whole write before a small registry is
/// written whole again.
const MIN_DELTA_BYTES: u64 = 4 << 20;

const FINAL: u8 = 1;
const R_NAME: u8 = 1;
const R_ENTITY: u8 = 2;
const R_META: u8 = 3;
const R_UNMETA: u8 = 4;
const R_SERIES: u8 = 5;
const R_STATE: u8 = 6;
const R_CHECKPOINT: u8 = 7;
const R_SIZE: u8 = 8;
/// A size record reserves room for at most this many (a sound one is exact).
const MAX_RESERVE: u64 = 1 << 27;

/// Where the registry of the engine in `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

/// A series as the registry knows it.
#[derive(Debug)]
pub struct LoadedSeries {
    pub id: u32,
    pub key: SeriesKey,
    /// The position of its entity in [`Loaded::entities`], where known.
    pub entity: Option<usize>,
    /// The highest `rec` as of the checkpoint (keeps replay deterministic).
    pub last_rec: i64,
    /// Blocks in files older than this belong to a deleted past of the series.
    pub min_file: u64,
    /// Instance edits not yet folded into blocks: rec → replacement (None = deleted).
    pub overrides: Vec<(i64, Option<Point>)>,
}

/// An entity's types and scope.
pub type Meta = (Vec<Arc<str>>, Option<Arc<str>>);

/// An entity as the registry knows it.
#[derive(Debug)]
pub struct LoadedEntity {
    /// Its number in the registry file.
    pub eid: u32,
    pub tenant: Arc<str>,
    pub id: Arc<str>,
    /// Types and scope, when the entity is not deleted.
    pub meta: Option<Meta>,
}

/// What a registry holds, read at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub checkpoint_lsn: u64,
    pub next_file: u64,
    pub files: Vec<u64>,
    /// In number order (every number below the count is present in a sound file).
    pub series: Vec<LoadedSeries>,
    pub entities: Vec<LoadedEntity>,
    /// How the log continues: the writer's state.
    pub writer: WriterState,
}

/// What the writer needs to append to a log it did not write.
#[derive(Debug, Default)]
pub struct WriterState {
    names: Vec<Arc<str>>,
    /// Bytes of whole checkpoints; appends go after them.
    committed: u64,
    /// Bytes of the whole write the log starts with.
    base: u64,
    next_eid: u32,
    series: u32,
    /// The log may be appended to (it exists and has no torn tail).
    appendable: bool,
    /// A version 1 `registry.json` is there, to be removed after the next whole write.
    legacy: bool,
}

fn corrupt(path: &Path, detail: impl Into<String>) -> TsdbError {
    TsdbError::Corrupt {
        file: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Reads the registry of `dir`: the log, or a version 1 `registry.json` where no log
/// was written yet, or nothing (a new engine).
pub fn load(dir: &Path) -> Result<Option<Loaded>, TsdbError> {
    let path = path(dir);
    match File::open(&path) {
        Ok(file) => read_log(&path, file).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(reg) = legacy::load(dir)? else {
                return Ok(None);
            };
            let mut loaded = legacy::convert(reg);
            loaded.writer.legacy = true;
            Ok(Some(loaded))
        }
        Err(e) => Err(e.into()),
    }
}

/// The batches of a log: `visit` sees each payload (flags first) up to `upto` bytes.
/// Returns the end of the last final batch and of the first one, and the file's
/// length.
fn scan(
    path: &Path,
    file: File,
    upto: Option<u64>,
    mut visit: impl FnMut(&[u8]) -> Result<(), TsdbError>,
) -> Result<(u64, u64, u64), TsdbError> {
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; HEADER_LEN as usize];
    if size < HEADER_LEN {
        return Err(corrupt(path, "shorter than its header"));
    }
    r.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(corrupt(path, "not a history registry log"));
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION {
        return Err(TsdbError::Version {
            file: path.display().to_string(),
            found: u16::try_from(version).unwrap_or(u16::MAX),
            supported: VERSION as u16,
        });
    }
    let end = upto.unwrap_or(size).min(size);
    let mut pos = HEADER_LEN;
    let (mut committed, mut first) = (HEADER_LEN, 0u64);
    let mut buf = Vec::new();
    while pos + 8 <= end {
        let mut h = [0u8; 8];
        r.read_exact(&mut h)?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let next = pos + 8 + len as u64;
        if next > end {
            // Runs past the end: a torn append.
            break;
        }
        // A batch's length is bounded by the file (checked above), so this is too.
        buf.resize(len, 0);
        r.read_exact(&mut buf)?;
        if len == 0 || crc32fast::hash(&buf) != crc {
            // The last batch torn, or a tail the file system filled with zeros after a
            // crash; anything else is damage after a sync.
            if next == size || (buf.iter().all(|b| *b == 0) && zeros_to_end(&mut r)?) {
                break;
            }
            return Err(corrupt(
                path,
                format!("batch at byte {pos} fails its checksum"),
            ));
        }
        visit(&buf)?;
        pos = next;
        if buf[0] & FINAL != 0 {
            committed = pos;
            if first == 0 {
                first = pos;
            }
        }
    }
    Ok((committed, first, size))
}

/// Whether everything left to read is zero bytes.
fn zeros_to_end(r: &mut impl Read) -> Result<bool, TsdbError> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

fn read_log(path: &Path, file: File) -> Result<Loaded, TsdbError> {
    // First pass: where the last whole checkpoint ends (the checksums are checked).
    let (committed, base, size) = scan(path, file.try_clone()?, None, |_| Ok(()))?;
    drop(file);
    if committed == HEADER_LEN {
        return Err(corrupt(path, "no complete checkpoint"));
    }
    // Second pass: the records of whole checkpoints.
    let mut d = Decoder {
        file_len: size,
        ..Default::default()
    };
    scan(path, File::open(path)?, Some(committed), |payload| {
        d.batch(&payload[1..])
            .ok_or_else(|| corrupt(path, "malformed registry record"))
    })?;
    let Decoder {
        file_len: _,
        names,
        entities,
        series,
        lsn,
        next_file,
        files,
    } = d;
    let next_eid = entities.len() as u32;
    let count = series.len() as u32;
    Ok(Loaded {
        checkpoint_lsn: lsn,
        next_file,
        files,
        series,
        entities,
        writer: WriterState {
            names,
            committed,
            base,
            next_eid,
            series: count,
            appendable: committed == size,
            legacy: false,
        },
    })
}

#[derive(Default)]
struct Decoder {
    /// The file's length, which bounds what a size record may reserve.
    file_len: u64,
    names: Vec<Arc<str>>,
    entities: Vec<LoadedEntity>,
    series: Vec<LoadedSeries>,
    lsn: u64,
    next_file: u64,
    files: Vec<u64>,
}

fn count(r: &mut Reader<'_>) -> Option<usize> {
    let n = usize::try_from(r.varint()?).ok()?;
    (n <= r.remaining()).then_some(n)
}

impl Decoder {
    fn name(&self, r: &mut Reader<'_>) -> Option<Arc<str>> {
        let i = usize::try_from(r.varint()?).ok()?;
        self.names.get(i).cloned()
    }

    fn opt_name(&self, r: &mut Reader<'_>) -> Option<Option<Arc<str>>> {
        match r.u8()? {
            0 => Some(None),
            1 => Some(Some(self.name(r)?)),
            _ => None,
        }
    }

    fn entity(&mut self, r: &mut Reader<'_>) -> Option<&mut LoadedEntity> {
        let eid = usize::try_from(r.varint()?).ok()?;
        self.entities.get_mut(eid)
    }

    /// Applies one batch's records; None when one is malformed.
    fn batch(&mut self, data: &[u8]) -> Option<()> {
        let mut r = Reader::new(data);
        while r.remaining() > 0 {
            match r.u8()? {
                R_NAME => self.names.push(Arc::from(r.str()?)),
                R_ENTITY => {
                    let eid = u32::try_from(r.varint()?).ok()?;
                    // Numbers are given in order, each once.
                    (eid as usize == self.entities.len()).then_some(())?;
                    let tenant = self.name(&mut r)?;
                    let id = Arc::from(r.str()?);
                    self.entities.push(LoadedEntity {
                        eid,
                        tenant,
                        id,
                        meta: None,
                    });
                }
                R_META => {
                    let eid = usize::try_from(r.varint()?).ok()?;
                    let n = count(&mut r)?;
                    let mut types = Vec::with_capacity(n);
                    for _ in 0..n {
                        types.push(self.name(&mut r)?);
                    }
                    let scope = match r.u8()? {
                        0 => None,
                        1 => Some(Arc::from(r.str()?)),
                        _ => return None,
                    };
                    self.entities.get_mut(eid)?.meta = Some((types, scope));
                }
                R_UNMETA => self.entity(&mut r)?.meta = None,
                R_SERIES => {
                    let sid = usize::try_from(r.varint()?).ok()?;
                    (sid == self.series.len() && sid < u32::MAX as usize).then_some(())?;
                    let at = usize::try_from(r.varint()?).ok()?.checked_sub(1);
                    let (tenant, entity) = match at {
                        None => (Arc::from(""), Arc::from("")),
                        Some(e) => {
                            let e = self.entities.get(e)?;
                            (e.tenant.clone(), e.id.clone())
                        }
                    };
                    let attr = self.name(&mut r)?;
                    let dataset = self.opt_name(&mut r)?;
                    self.series.push(LoadedSeries {
                        id: sid as u32,
                        key: SeriesKey {
                            tenant,
                            entity,
                            attr,
                            dataset,
                        },
                        entity: at,
                        last_rec: 0,
                        min_file: 0,
                        overrides: Vec::new(),
                    });
                }
                R_STATE => {
                    let sid = usize::try_from(r.varint()?).ok()?;
                    let last_rec = r.ivarint()?;
                    let min_file = r.varint()?;
                    let n = count(&mut r)?;
                    let mut overrides = Vec::with_capacity(n);
                    for _ in 0..n {
                        let rec = r.ivarint()?;
                        let p = match r.u8()? {
                            0 => None,
                            1 => Some(wire::point(&mut r, (0, 0), &mut None)?),
                            _ => return None,
                        };
                        overrides.push((rec, p));
                    }
                    let s = self.series.get_mut(sid)?;
                    s.last_rec = last_rec;
                    s.min_file = min_file;
                    s.overrides = overrides;
                }
                R_SIZE => {
                    // Bounded by the file: every entity and series takes bytes of it.
                    let cap = self.file_len.min(MAX_RESERVE);
                    let entities = r.varint()?.min(cap / 4) as usize;
                    let series = r.varint()?.min(cap / 4) as usize;
                    self.entities
                        .reserve_exact(entities.saturating_sub(self.entities.len()));
                    self.series
                        .reserve_exact(series.saturating_sub(self.series.len()));
                }
                R_CHECKPOINT => {
                    self.lsn = r.varint()?;
                    self.next_file = r.varint()?;
                    let n = count(&mut r)?;
                    self.files.clear();
                    for _ in 0..n {
                        self.files.push(r.varint()?);
                    }
                }
                _ => return None,
            }
        }
        Some(())
    }
}

/// Appends checkpoints to the log, or writes it whole.
pub struct Writer {
    dir: PathBuf,
    /// The log, open for appending; None when the next write must be whole.
    file: Option<File>,
    committed: u64,
    base: u64,
    names: HashMap<Arc<str>, u32>,
    next_eid: u32,
    /// Series numbers below this are in the log.
    series: u32,
    legacy: bool,
    /// Deltas may grow this much past the last whole write before it is written anew.
    min_delta: u64,
}

impl Writer {
    /// A writer continuing what was read (`None`: a new engine).
    pub fn new(dir: &Path, state: Option<WriterState>) -> Result<Writer, TsdbError> {
        let state = state.unwrap_or_default();
        let file = if state.appendable {
            Some(OpenOptions::new().append(true).open(path(dir))?)
        } else {
            None
        };
        Ok(Writer {
            dir: dir.to_path_buf(),
            file,
            committed: state.committed,
            base: state.base,
            names: state
                .names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, i as u32))
                .collect(),
            next_eid: state.next_eid,
            series: state.series,
            legacy: state.legacy,
            min_delta: MIN_DELTA_BYTES,
        })
    }

    /// Whether the next checkpoint must write the registry whole: there is no log to
    /// append to, or the deltas since the last whole write outgrew it.
    pub fn wants_whole(&self) -> bool {
        self.file.is_none()
            || self.committed.saturating_sub(self.base) > self.base.max(self.min_delta)
    }

    /// How much deltas may add past the last whole write before the next is whole
    /// (tests make it small to exercise both).
    #[cfg(test)]
    pub fn set_min_delta(&mut self, bytes: u64) {
        self.min_delta = bytes;
    }

    /// Makes the next write whole (a checkpoint failed after some of its state was
    /// taken: only a whole write is sure to record it).
    pub fn force_whole(&mut self) {
        self.file = None;
    }

    /// Bytes of whole checkpoints in the log (0: none written by this version yet).
    pub fn committed_len(&self) -> u64 {
        self.committed
    }

    /// Starts a checkpoint's records: appended to the log, or (`whole`) a new file.
    pub fn begin(&mut self, whole: bool) -> Result<Batch<'_>, TsdbError> {
        let sink = if whole || self.file.is_none() {
            // Until this whole write is committed, nothing may be appended.
            self.file = None;
            self.names.clear();
            self.next_eid = 0;
            self.series = 0;
            let tmp = self.dir.join("registry.log.tmp");
            let mut w = BufWriter::with_capacity(1 << 20, SyncEvery::new(File::create(&tmp)?));
            w.write_all(MAGIC)?;
            w.write_all(&VERSION.to_le_bytes())?;
            Sink::Whole { tmp, w }
        } else {
            let Some(file) = self.file.as_ref() else {
                return Err(TsdbError::BadRecord("registry log not open"));
            };
            Sink::Append(BufWriter::with_capacity(
                1 << 20,
                SyncEvery::new(file.try_clone()?),
            ))
        };
        Ok(Batch {
            written: match sink {
                Sink::Whole { .. } => HEADER_LEN,
                Sink::Append(_) => 0,
            },
            w: self,
            sink: Some(sink),
            buf: vec![0],
            done: false,
        })
    }
}

enum Sink {
    Whole {
        tmp: PathBuf,
        w: BufWriter<SyncEvery>,
    },
    Append(BufWriter<SyncEvery>),
}

impl Sink {
    fn out(&mut self) -> &mut BufWriter<SyncEvery> {
        match self {
            Sink::Whole { w, .. } | Sink::Append(w) => w,
        }
    }
}

/// One checkpoint's records being written. Dropped without [`Batch::commit`] (or on
/// any error), the log is written whole at the next checkpoint.
pub struct Batch<'a> {
    w: &'a mut Writer,
    sink: Option<Sink>,
    /// The payload being built, its flags byte first.
    buf: Vec<u8>,
    written: u64,
    done: bool,
}

impl Batch<'_> {
    /// Series numbers below this are recorded (in the log, or earlier in this batch).
    pub fn series_written(&self) -> u32 {
        self.w.series
    }

    fn name(&mut self, s: &Arc<str>) -> u32 {
        if let Some(&n) = self.w.names.get(&**s) {
            return n;
        }
        let n = self.w.names.len() as u32;
        self.w.names.insert(s.clone(), n);
        self.buf.push(R_NAME);
        put_blob(&mut self.buf, s.as_bytes());
        n
    }

    /// Says how many entities and series a whole write holds (the reader reserves
    /// room for them at once).
    pub fn size(&mut self, entities: usize, series: usize) -> Result<(), TsdbError> {
        self.buf.push(R_SIZE);
        put_varint(&mut self.buf, entities as u64);
        put_varint(&mut self.buf, series as u64);
        self.spill()
    }

    /// Records a new entity and returns its number.
    pub fn entity(&mut self, tenant: &Arc<str>, id: &str) -> Result<u32, TsdbError> {
        let tenant = self.name(tenant);
        let eid = self.w.next_eid;
        self.w.next_eid += 1;
        self.buf.push(R_ENTITY);
        put_varint(&mut self.buf, u64::from(eid));
        put_varint(&mut self.buf, u64::from(tenant));
        put_blob(&mut self.buf, id.as_bytes());
        self.spill()?;
        Ok(eid)
    }

    /// Records an entity's types and scope (`None`: deleted).
    pub fn meta(
        &mut self,
        eid: u32,
        meta: Option<(&[Arc<str>], Option<&str>)>,
    ) -> Result<(), TsdbError> {
        let Some((types, scope)) = meta else {
            self.buf.push(R_UNMETA);
            put_varint(&mut self.buf, u64::from(eid));
            return self.spill();
        };
        let names: Vec<u32> = types.iter().map(|t| self.name(t)).collect();
        self.buf.push(R_META);
        put_varint(&mut self.buf, u64::from(eid));
        put_varint(&mut self.buf, names.len() as u64);
        for n in names {
            put_varint(&mut self.buf, u64::from(n));
        }
        match scope {
            Some(s) => {
                self.buf.push(1);
                put_blob(&mut self.buf, s.as_bytes());
            }
            None => self.buf.push(0),
        }
        self.spill()
    }

    /// Records the next series (numbers are given in order) of entity `eid`.
    pub fn series(
        &mut self,
        sid: u32,
        eid: Option<u32>,
        attr: &Arc<str>,
        dataset: Option<&Arc<str>>,
    ) -> Result<(), TsdbError> {
        if sid != self.w.series {
            return Err(TsdbError::BadRecord("registry series out of order"));
        }
        self.w.series += 1;
        let attr = self.name(attr);
        let dataset = dataset.map(|d| self.name(d));
        self.buf.push(R_SERIES);
        put_varint(&mut self.buf, u64::from(sid));
        put_varint(&mut self.buf, eid.map_or(0, |e| u64::from(e) + 1));
        put_varint(&mut self.buf, u64::from(attr));
        match dataset {
            Some(d) => {
                self.buf.push(1);
                put_varint(&mut self.buf, u64::from(d));
            }
            None => self.buf.push(0),
        }
        self.spill()
    }

    /// Records a series' state as of the checkpoint.
    pub fn state(
        &mut self,
        sid: u32,
        last_rec: i64,
        min_file: u64,
        overrides: &BTreeMap<i64, Option<Point>>,
    ) -> Result<(), TsdbError> {
        self.buf.push(R_STATE);
        put_varint(&mut self.buf, u64::from(sid));
        put_varint(&mut self.buf, zigzag(last_rec));
        put_varint(&mut self.buf, min_file);
        put_varint(&mut self.buf, overrides.len() as u64);
        for (rec, p) in overrides {
            put_varint(&mut self.buf, zigzag(*rec));
            match p {
                Some(p) => {
                    self.buf.push(1);
                    wire::put_point(&mut self.buf, p, (0, 0));
                }
                None => self.buf.push(0),
            }
        }
        self.spill()
    }

    fn spill(&mut self) -> Result<(), TsdbError> {
        if self.buf.len() >= BATCH_BYTES {
            self.flush_batch(0)?;
        }
        Ok(())
    }

    fn flush_batch(&mut self, flags: u8) -> Result<(), TsdbError> {
        self.buf[0] = flags;
        let len = u32::try_from(self.buf.len()).map_err(|_| TsdbError::TooLarge)?;
        let crc = crc32fast::hash(&self.buf);
        let Some(out) = self.sink.as_mut().map(Sink::out) else {
            return Err(TsdbError::BadRecord("registry batch already ended"));
        };
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&self.buf)?;
        self.written += 8 + u64::from(len);
        self.buf.clear();
        self.buf.push(0);
        Ok(())
    }

    /// Ends the checkpoint: its position and files, then everything synced (and a
    /// whole write renamed over the log). Returns the bytes written.
    pub fn commit(mut self, lsn: u64, next_file: u64, files: &[u64]) -> Result<u64, TsdbError> {
        self.buf.push(R_CHECKPOINT);
        put_varint(&mut self.buf, lsn);
        put_varint(&mut self.buf, next_file);
        put_varint(&mut self.buf, files.len() as u64);
        for f in files {
            put_varint(&mut self.buf, *f);
        }
        self.flush_batch(FINAL)?;
        let written = self.written;
        let Some(sink) = self.sink.take() else {
            return Err(TsdbError::BadRecord("registry batch already ended"));
        };
        match sink {
            Sink::Append(w) => {
                let f = w
                    .into_inner()
                    .map_err(|e| TsdbError::Io(e.into_error()))?
                    .into_inner();
                f.sync_data()?;
                self.w.committed += written;
            }
            Sink::Whole { tmp, w } => {
                let f = w
                    .into_inner()
                    .map_err(|e| TsdbError::Io(e.into_error()))?
                    .into_inner();
                f.sync_all()?;
                drop(f);
                let log = path(&self.w.dir);
                std::fs::rename(&tmp, &log)?;
                // The log on disk is this one now (a backup copies this length of it),
                // even if what follows fails.
                self.w.committed = written;
                self.w.base = written;
                if self.w.legacy {
                    match std::fs::remove_file(self.w.dir.join(legacy::NAME)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.w.legacy = false;
                }
                File::open(&self.w.dir)?.sync_all()?;
                self.w.file = Some(OpenOptions::new().append(true).open(&log)?);
            }
        }
        self.done = true;
        Ok(written)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Part of it may be on disk without its end, and the names and numbers it
            // gave are not: the next write is whole.
            self.w.file = None;
        }
    }
}

#[cfg(test)]
mod tests;
