//! The tamper-evident audit log: an append-only list of what was done, by whom,
//! hashed into an RFC 6962 Merkle tree ([`merkle`]) whose checkpoints are signed C2SP
//! notes ([`note`]).
//!
//! - Entries are JSON lines in `<data dir>/audit/log.jsonl`; entry n carries `"seq": n`.
//!   An append someone waits for is answered once it is fsynced; appends arriving
//!   together share one fsync (a writer thread drains them in batches); entries nobody
//!   waits for are fsynced within 50 ms. Only fsynced entries enter the tree.
//! - Every second with new entries (and at shutdown) the log signs a checkpoint of its
//!   size and root with its Ed25519 key and appends it to `checkpoints.jsonl`.
//! - Inclusion and consistency proofs are served from the leaf hashes kept in memory
//!   (32 bytes per entry).
//! - [`verify`] (`citybrain audit verify`) recomputes every root from the entries and
//!   checks every checkpoint's signature and root: a modified, deleted, inserted or
//!   reordered entry, or a checkpoint of another history (a fork), is reported.

pub mod merkle;
pub mod note;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use citybrain_telemetry::InternalEvent as _;
use ed25519_dalek::SigningKey;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merkle::Hash;
use crate::note::Checkpoint;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: {0}")]
    Io(String),
    #[error("audit log: {0}")]
    Invalid(String),
    /// A stored entry no longer reads: the server's fault (or tampering), not the
    /// request's.
    #[error("audit log: {0}")]
    Corrupt(String),
}

impl citybrain_model::ErrorCode for AuditError {
    fn kind(&self) -> citybrain_model::ErrorKind {
        match self {
            AuditError::Io(_) => citybrain_model::ErrorKind::Unavailable,
            AuditError::Invalid(_) => citybrain_model::ErrorKind::BadRequestData,
            AuditError::Corrupt(_) => citybrain_model::ErrorKind::InternalError,
        }
    }
    fn public_detail(&self) -> String {
        match self {
            AuditError::Io(_) => "the audit log could not be written".into(),
            e => e.to_string(),
        }
    }
}

fn io(p: &Path, e: std::io::Error) -> AuditError {
    AuditError::Io(format!("{}: {e}", p.display()))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    name: String,
    seed: String,
}

#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    size: u64,
    note: String,
}

struct State {
    leaves: Vec<Hash>,
    /// Byte offset of each entry in the log file.
    offsets: Vec<u64>,
    checkpointed: u64,
    last_note: Option<String>,
}

struct Job {
    entry: Value,
    /// Who waits for the entry's durability (`None`: nobody).
    done: Option<tokio::sync::oneshot::Sender<Result<u64, AuditError>>>,
}

/// Entries nobody waits for, gathered without waking the writer (it takes them every
/// [`LAZY_TICK`]): a read costs a push, not a thread hand-off.
type Lazy = Arc<Mutex<Vec<Value>>>;

/// How often the writer takes the entries nobody waits for.
const LAZY_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The audit log of one data directory.
pub struct AuditLog {
    dir: PathBuf,
    name: String,
    key: SigningKey,
    state: Arc<Mutex<State>>,
    tx: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    lazy: Lazy,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn load_key(dir: &Path) -> Result<(String, SigningKey), AuditError> {
    let path = dir.join("audit-key.json");
    match std::fs::read(&path) {
        Ok(b) => {
            let k: KeyFile = serde_json::from_slice(&b)
                .map_err(|e| AuditError::Invalid(format!("{}: {e}", path.display())))?;
            let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
                .decode(&k.seed)
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| AuditError::Invalid(format!("{}: bad seed", path.display())))?;
            Ok((k.name, SigningKey::from_bytes(&seed)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| AuditError::Io(e.to_string()))?;
            let mut id = [0u8; 6];
            getrandom::fill(&mut id).map_err(|e| AuditError::Io(e.to_string()))?;
            let name = format!("citybrain/audit/{}", hex(&id));
            let k = KeyFile {
                name: name.clone(),
                seed: base64::engine::general_purpose::STANDARD.encode(seed),
            };
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            let body = serde_json::to_vec_pretty(&k).map_err(|e| AuditError::Io(e.to_string()))?;
            write_private(&path, &body)?;
            Ok((name, SigningKey::from_bytes(&seed)))
        }
        Err(e) => Err(io(&path, e)),
    }
}

fn write_private(path: &Path, body: &[u8]) -> Result<(), AuditError> {
    let mut f = File::create(path).map_err(|e| io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    f.write_all(body).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// Reads the complete lines of a JSON Lines file: (offset, line) pairs, and the length
/// of the complete part (a torn last line, never acknowledged, is not part of it).
/// The complete lines of a file, each with its byte offset.
type Lines = Vec<(u64, Vec<u8>)>;

fn read_lines(path: &Path) -> Result<(Lines, u64), AuditError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(path, e)),
    };
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut pos = 0u64;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).map_err(|e| io(path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        line.pop();
        out.push((pos, line));
        pos += n as u64;
    }
    Ok((out, pos))
}

impl AuditLog {
    /// Opens (or starts) the audit log in `dir`, with its signing key in `key_dir`.
    pub fn open(dir: &Path, key_dir: &Path) -> Result<Arc<AuditLog>, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let (name, key) = load_key(key_dir)?;
        let log_path = dir.join("log.jsonl");
        let (lines, complete) = read_lines(&log_path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io(&log_path, e))?;
        // A torn last line was never acknowledged: cut it off.
        file.set_len(complete).map_err(|e| io(&log_path, e))?;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| io(&log_path, e))?;
        let (cps, _) = read_lines(&dir.join("checkpoints.jsonl"))?;
        let last: Option<StoredCheckpoint> =
            cps.last().and_then(|(_, l)| serde_json::from_slice(l).ok());
        let state = Arc::new(Mutex::new(State {
            leaves: lines.iter().map(|(_, l)| merkle::leaf_hash(l)).collect(),
            offsets: lines.iter().map(|(o, _)| *o).collect(),
            checkpointed: last.as_ref().map_or(0, |c| c.size),
            last_note: last.map(|c| c.note),
        }));
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let st = state.clone();
        let lazy: Lazy = Arc::default();
        let lz = lazy.clone();
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(file, complete, rx, lz, st, log_path))
            .map_err(|e| AuditError::Io(e.to_string()))?;
        Ok(Arc::new(AuditLog {
            dir: dir.to_path_buf(),
            name,
            key,
            state,
            tx: Mutex::new(Some(tx)),
            lazy,
            writer: Mutex::new(Some(handle)),
        }))
    }

    /// Appends an entry (its `seq` is set here); returns once it is durable.
    pub async fn append(&self, entry: Value) -> Result<u64, AuditError> {
        self.submit(entry).wait().await
    }

    /// Hands an entry to the writer and returns at once: [`Pending::wait`] says when
    /// it is durable (so that the caller can overlap the fsync with its own work);
    /// dropping the `Pending` records the entry all the same.
    pub fn submit(&self, entry: Value) -> Pending {
        let (done, wait) = tokio::sync::oneshot::channel();
        let tx = self.tx.lock();
        let sent = match tx.as_ref() {
            Some(tx) => tx
                .send(Job {
                    entry,
                    done: Some(done),
                })
                .is_ok(),
            None => false,
        };
        Pending(sent.then_some(wait))
    }

    /// Records an entry nobody waits for: written within milliseconds, fsynced within
    /// 50 ms, without waking the writer.
    pub fn record(&self, entry: Value) {
        if self.tx.lock().is_some() {
            self.lazy.lock().push(entry);
        }
    }

    pub fn size(&self) -> u64 {
        self.state.lock().leaves.len() as u64
    }

    /// The verifier key to pin outside the platform (witnesses, an external ledger).
    pub fn verifier_key(&self) -> String {
        note::verifier_key(&self.name, &self.key.verifying_key())
    }

    /// Signs a checkpoint of the log as it is, when it grew since the last one;
    /// returns the newest signed note.
    pub fn checkpoint(&self) -> Result<Option<String>, AuditError> {
        let (size, root) = {
            let st = self.state.lock();
            if st.leaves.len() as u64 == st.checkpointed {
                return Ok(st.last_note.clone());
            }
            (st.leaves.len() as u64, merkle::root(&st.leaves))
        };
        let note = Checkpoint {
            origin: self.name.clone(),
            size,
            root,
        }
        .sign(&self.name, &self.key);
        let path = self.dir.join("checkpoints.jsonl");
        let mut line = serde_json::to_vec(&StoredCheckpoint {
            size,
            note: note.clone(),
        })
        .map_err(|e| AuditError::Io(e.to_string()))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.write_all(&line).map_err(|e| io(&path, e))?;
        f.sync_data().map_err(|e| io(&path, e))?;
        let mut st = self.state.lock();
        if size > st.checkpointed {
            st.checkpointed = size;
            st.last_note = Some(note.clone());
        }
        Ok(Some(note))
    }

    /// The newest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.state.lock().last_note.clone()
    }

    /// The inclusion proof of entry `index` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<String>, AuditError> {
        let st = self.state.lock();
        if size > st.leaves.len() as u64 || index >= size {
            return Err(AuditError::Invalid(format!(
                "index {index} and size {size} must satisfy index < size <= {}",
                st.leaves.len()
            )));
        }
        Ok(b64s(&merkle::inclusion(
            index as usize,
            &st.leaves[..size as usize],
        )))
    }

    /// The consistency proof between the trees of the first `from` and `to` entries.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<String>, AuditError> {
        let st = self.state.lock();
        if from > to || to > st.leaves.len() as u64 {
            return Err(AuditError::Invalid(format!(
                "from {from} and to {to} must satisfy from <= to <= {}",
                st.leaves.len()
            )));
        }
        Ok(b64s(&merkle::consistency(
            from as usize,
            &st.leaves[..to as usize],
        )))
    }

    /// Entries `from..from+count`, as stored.
    pub fn entries(&self, from: u64, count: usize) -> Result<Vec<Value>, AuditError> {
        let offsets = {
            let st = self.state.lock();
            let start = (from as usize).min(st.offsets.len());
            let stop = (start + count).min(st.offsets.len());
            st.offsets[start..stop].to_vec()
        };
        let path = self.dir.join("log.jsonl");
        let mut out = Vec::new();
        if offsets.is_empty() {
            return Ok(out);
        }
        let mut f = BufReader::new(File::open(&path).map_err(|e| io(&path, e))?);
        f.seek(std::io::SeekFrom::Start(offsets[0]))
            .map_err(|e| io(&path, e))?;
        for _ in 0..offsets.len() {
            let mut line = Vec::new();
            f.read_until(b'\n', &mut line).map_err(|e| io(&path, e))?;
            // An entry that no longer reads is what tampering looks like: an error
            // naming it, never a null in its place.
            let entry = serde_json::from_slice(&line).map_err(|e| {
                AuditError::Corrupt(format!(
                    "entry at byte {} does not read as JSON ({e}); run `citybrain audit verify`",
                    offsets[out.len()]
                ))
            })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// Stops the writer after what was sent (waiting for it to make that durable),
    /// and signs a last checkpoint.
    pub fn close(&self) -> Result<(), AuditError> {
        self.tx.lock().take();
        if let Some(w) = self.writer.lock().take() {
            let _ = w.join();
        }
        self.checkpoint().map(|_| ())
    }
}

/// An entry handed to the writer.
pub struct Pending(Option<tokio::sync::oneshot::Receiver<Result<u64, AuditError>>>);

impl Pending {
    /// Waits until the entry is durable; its sequence number.
    pub async fn wait(self) -> Result<u64, AuditError> {
        match self.0 {
            Some(rx) => rx
                .await
                .map_err(|_| AuditError::Io("the audit writer stopped".into()))?,
            None => Err(AuditError::Io("the audit log is closed".into())),
        }
    }
}

/// Proof hashes as the API serves them (base64).
fn b64s(h: &[Hash]) -> Vec<String> {
    h.iter()
        .map(|x| base64::engine::general_purpose::STANDARD.encode(x))
        .collect()
}

/// Proof hashes as the API serves them, read back (for verifiers); `None` when one is
/// not a base64 SHA-256 hash.
pub fn proof_hashes<S: AsRef<str>>(proof: &[S]) -> Option<Vec<Hash>> {
    proof
        .iter()
        .map(|p| {
            base64::engine::general_purpose::STANDARD
                .decode(p.as_ref())
                .ok()?
                .try_into()
                .ok()
        })
        .collect()
}

/// How long entries nobody waits for may sit written but not fsynced.
const LAZY_SYNC: std::time::Duration = std::time::Duration::from_millis(50);

/// The writer thread: drains what arrived and writes it; fsyncs at once when someone
/// waits for an entry of the batch, else within [`LAZY_SYNC`]. Only fsynced entries
/// enter the tree (so a checkpoint never covers what a crash could lose), and then
/// the waiting callers are answered.
fn writer(
    mut file: File,
    mut pos: u64,
    rx: std::sync::mpsc::Receiver<Job>,
    lazy: Lazy,
    state: Arc<Mutex<State>>,
    path: PathBuf,
) {
    // Written, not yet fsynced: (offset, leaf), and the jobs to answer.
    let mut unsynced: Vec<(u64, Hash)> = Vec::new();
    let mut waiting: Vec<(u64, Job)> = Vec::new();
    let mut since: Option<std::time::Instant> = None;
    let mut synced_pos = pos;
    let mut closing = false;
    loop {
        let first = match rx.recv_timeout(LAZY_TICK) {
            Ok(j) => Some(j),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                closing = true;
                None
            }
        };
        let mut jobs: Vec<Job> = first.into_iter().collect();
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        jobs.extend(
            std::mem::take(&mut *lazy.lock())
                .into_iter()
                .map(|entry| Job { entry, done: None }),
        );
        if jobs.is_empty() && since.is_none() {
            if closing {
                break;
            }
            continue;
        }
        let mut buf = Vec::new();
        let base = state.lock().leaves.len() as u64 + unsynced.len() as u64;
        let mut urgent = false;
        let mut seq = base;
        for mut j in jobs {
            if let Value::Object(m) = &mut j.entry {
                m.insert("seq".into(), Value::from(seq));
            }
            let line = match serde_json::to_vec(&j.entry) {
                Ok(line) => line,
                Err(error) => {
                    // Refused (and counted), never written as an empty line; its
                    // sequence number goes to the next entry.
                    citybrain_telemetry::EncodeFailed {
                        what: "audit entry",
                        error: &error,
                    }
                    .emit();
                    if let Some(d) = j.done {
                        let _ = d.send(Err(AuditError::Invalid(format!(
                            "the entry could not be encoded: {error}"
                        ))));
                    }
                    continue;
                }
            };
            unsynced.push((pos + buf.len() as u64, merkle::leaf_hash(&line)));
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            urgent |= j.done.as_ref().is_some_and(|d| !d.is_closed());
            waiting.push((seq, j));
            seq += 1;
        }
        let written = file.write_all(&buf).map_err(|e| io(&path, e));
        if written.is_ok() {
            pos += buf.len() as u64;
        }
        let due = closing || since.is_some_and(|t| t.elapsed() >= LAZY_SYNC);
        if written.is_ok() && !urgent && !due && !unsynced.is_empty() {
            since.get_or_insert_with(std::time::Instant::now);
            continue;
        }
        let synced = written.and_then(|()| file.sync_data().map_err(|e| io(&path, e)));
        since = None;
        match synced {
            Ok(()) => {
                synced_pos = pos;
                {
                    let mut st = state.lock();
                    for (off, leaf) in unsynced.drain(..) {
                        st.offsets.push(off);
                        st.leaves.push(leaf);
                    }
                }
                for (seq, j) in waiting.drain(..) {
                    if let Some(d) = j.done {
                        let _ = d.send(Ok(seq));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit entries could not be written; refusing them");
                // What reached the file since the last fsync is cut off again: the log
                // keeps only durable entries.
                let _ = file.set_len(synced_pos);
                pos = synced_pos;
                unsynced.clear();
                for (_, j) in waiting.drain(..) {
                    if let Some(d) = j.done {
                        let _ = d.send(Err(e.clone()));
                    }
                }
            }
        }
        if closing {
            break;
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub entries: u64,
    pub checkpoints: u64,
    /// Entries after the newest checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
    pub problems: Vec<String>,
}

/// Verifies the audit log in `dir` against its checkpoints, with `verifier` (a pinned
/// verifier key) or, without one, the key in `key_dir`.
pub fn verify(dir: &Path, key_dir: &Path, verifier: Option<&str>) -> Result<Report, AuditError> {
    let (name, public) = match verifier {
        Some(v) => note::parse_verifier_key(v).map_err(AuditError::Invalid)?,
        None => {
            if !key_dir.join("audit-key.json").exists() {
                return Err(AuditError::Invalid(format!(
                    "no audit key in {}: this data directory keeps no audit log",
                    key_dir.display()
                )));
            }
            let (n, k) = load_key(key_dir)?;
            (n, k.verifying_key())
        }
    };
    let (lines, _) = read_lines(&dir.join("log.jsonl"))?;
    let mut report = Report {
        entries: lines.len() as u64,
        ..Default::default()
    };
    for (i, (_, l)) in lines.iter().enumerate() {
        let seq = serde_json::from_slice::<Value>(l)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_u64));
        if seq != Some(i as u64) {
            report.problems.push(format!(
                "entry {i} reads seq {seq:?}: entries were inserted, deleted or reordered"
            ));
        }
    }
    let leaves: Vec<Hash> = lines.iter().map(|(_, l)| merkle::leaf_hash(l)).collect();
    let (cps, _) = read_lines(&dir.join("checkpoints.jsonl"))?;
    let mut seen: std::collections::BTreeMap<u64, Hash> = Default::default();
    let mut newest = 0;
    for (n, (_, l)) in cps.iter().enumerate() {
        let Ok(sc) = serde_json::from_slice::<StoredCheckpoint>(l) else {
            report
                .problems
                .push(format!("checkpoint {n} is unreadable"));
            continue;
        };
        let c = match Checkpoint::open(&sc.note, &name, &public) {
            Ok(c) => c,
            Err(e) => {
                report.problems.push(format!("checkpoint {n}: {e}"));
                continue;
            }
        };
        report.checkpoints += 1;
        if let Some(other) = seen.insert(c.size, c.root) {
            if other != c.root {
                report.problems.push(format!(
                    "checkpoint {n}: two signed roots for size {}: the log was forked",
                    c.size
                ));
            }
        }
        if c.size > leaves.len() as u64 {
            report.problems.push(format!(
                "checkpoint {n} covers {} entries but the log has {}: entries were deleted",
                c.size,
                leaves.len()
            ));
            continue;
        }
        if merkle::root(&leaves[..c.size as usize]) != c.root {
            report.problems.push(format!(
                "checkpoint {n} (size {}): the entries it covers were modified, inserted, deleted or reordered",
                c.size
            ));
        }
        newest = newest.max(c.size);
    }
    report.unsigned_tail = (leaves.len() as u64).saturating_sub(newest);
    Ok(report)
}

#[cfg(test)]
mod tests;
