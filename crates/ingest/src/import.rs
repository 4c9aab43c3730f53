//! File import: a decoder thread streams records from the file (constant memory) in
//! chunks to the writer, which maps and writes each chunk durably, then records its
//! progress in a resume file. An interrupted import started again with the same file
//! and source skips what was already written (at most the last chunk is written twice;
//! see docs/mappings.md).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::deadletter::{Level, NewLetter};
use crate::decode::{decode, Item};
use crate::pipeline::{prepare, Ingest, IngestError, Prepared, Spent, Summary};
use crate::reject::Reject;

/// Options of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Records per durable write.
    pub chunk: usize,
    /// Where resume files are kept (`None`: no resume).
    pub state_dir: Option<PathBuf>,
}

/// Records per durable write by default. A chunk coalesces the writes of an entity's
/// records into one state update: with 100,000 a 10,000-station file imports about a
/// fifth faster than with 50,000 (less work per record), for about 150 MB more peak
/// memory (docs/benchmarks.md, ingestion). `--chunk` lowers it on small machines.
pub const DEFAULT_CHUNK: usize = 100_000;

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            chunk: DEFAULT_CHUNK,
            state_dir: None,
        }
    }
}

/// Progress reported after each chunk.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub bytes_read: u64,
    pub total_bytes: u64,
    /// Items skipped because an earlier run wrote them.
    pub resumed_from: u64,
    pub summary: Summary,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ResumeState {
    file: String,
    source: String,
    size: u64,
    modified_ns: i128,
    items_done: u64,
}

struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Msg {
    /// A chunk, mapped on the decoder thread, and how many items it held.
    Chunk(Prepared, u64),
    /// The decoder stopped: the error that ended the document, if any.
    End(Option<Reject>),
}

fn io_err(path: &Path, e: std::io::Error) -> IngestError {
    IngestError::Store(format!("{}: {e}", path.display()).into())
}

fn resume_path(dir: &Path, file: &Path, source: &str) -> PathBuf {
    let key = format!("{}\u{0}{source}", file.display());
    dir.join(format!(
        "import-{:08x}.json",
        crc32fast::hash(key.as_bytes())
    ))
}

fn identity(path: &Path) -> std::io::Result<(u64, i128)> {
    let md = std::fs::metadata(path)?;
    let modified = md
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    Ok((md.len(), modified))
}

/// Imports one file with the mapping of `source`.
pub async fn import_file(
    ing: &Ingest,
    source: &str,
    path: &Path,
    opts: &ImportOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Summary, IngestError> {
    let src = ing
        .source(source)
        .ok_or_else(|| IngestError::UnknownSource(source.to_string()))?;
    let abs = std::fs::canonicalize(path).map_err(|e| io_err(path, e))?;
    let (size, modified_ns) = identity(&abs).map_err(|e| io_err(path, e))?;
    let state_file = opts
        .state_dir
        .as_ref()
        .map(|d| resume_path(d, &abs, source));
    let mut skip = 0u64;
    if let Some(sf) = &state_file {
        if let Ok(text) = std::fs::read_to_string(sf) {
            match serde_json::from_str::<ResumeState>(&text) {
                Ok(st)
                    if st.size == size && st.modified_ns == modified_ns && st.source == source =>
                {
                    skip = st.items_done;
                    tracing::info!(file = %abs.display(), skip, "resuming an interrupted import");
                }
                _ => {
                    tracing::info!(file = %abs.display(), "the file changed since the interrupted import; starting over")
                }
            }
        }
    }
    let file = File::open(&abs).map_err(|e| io_err(path, e))?;
    let count = Arc::new(AtomicU64::new(0));
    let reader = BufReader::with_capacity(
        256 << 10,
        CountingReader {
            inner: file,
            count: count.clone(),
        },
    );
    // One chunk waits while the next is decoded and mapped: memory stays at about two
    // chunks whatever the file size.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let chunk = opts.chunk.max(1);
    let origin = abs.display().to_string();
    let (src2, origin2, clock) = (src.clone(), origin.clone(), ing.clock().clone());
    let names = ing.names(&src.mapping).await;
    // Written records go back to the decoder thread, which made them, to be freed.
    let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Spent>();
    let decoder = std::thread::Builder::new()
        .name("import-decode".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(chunk);
            let mut closed = false;
            let send = |items: Vec<Item>| -> bool {
                while let Ok(spent) = spent_rx.try_recv() {
                    drop(spent);
                }
                let n = items.len() as u64;
                let mut prep = Prepared::default();
                let now = clock.now();
                prepare(&src2, items, &[], Some(&origin2), now, &mut prep);
                if let Some(names) = &names {
                    prep.build(names, now);
                }
                tx.blocking_send(Msg::Chunk(prep, n)).is_err()
            };
            let res = decode(&src2.mapping, reader, skip, &mut |item| {
                if closed {
                    return;
                }
                buf.push(item);
                if buf.len() >= chunk {
                    closed = send(std::mem::replace(&mut buf, Vec::with_capacity(chunk)));
                }
            });
            if !buf.is_empty() && !closed {
                send(buf);
            }
            let _ = tx.blocking_send(Msg::End(res.err()));
        })
        .map_err(|e| IngestError::Store(format!("cannot start the decoder: {e}").into()))?;
    let mut p = Progress {
        total_bytes: size,
        resumed_from: skip,
        ..Default::default()
    };
    let mut done = skip;
    let mut fatal = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Chunk(prep, n) => {
                let (s, spent) = ing.commit_spent(&src.mapping, prep).await?;
                // A decoder that has finished frees nothing more: then it is dropped here.
                let _ = spent_tx.send(spent);
                p.summary.add(&s);
                done += n;
                if let Some(sf) = &state_file {
                    save_state(
                        sf,
                        &ResumeState {
                            file: origin.clone(),
                            source: source.to_string(),
                            size,
                            modified_ns,
                            items_done: done,
                        },
                    )
                    .map_err(|e| io_err(sf, e))?;
                }
                p.bytes_read = count.load(Ordering::Relaxed);
                progress(&p);
            }
            Msg::End(err) => fatal = err,
        }
    }
    let _ = decoder.join();
    let s = ing.flush_reduced(&src).await?;
    p.summary.add(&s);
    if let Some(reject) = fatal {
        // The document ended in an error: keep the position and message as a dead
        // letter (the file itself is the raw data; it is not copied).
        let stored = ing.dead.put_many(
            vec![NewLetter {
                source: source.to_string(),
                reason: reject.reason,
                message: format!("{} (after {done} records)", reject.message),
                level: Level::Payload,
                origin: Some(origin.clone()),
                raw: Vec::new(),
                size,
                truncated: true,
            }],
            ing.clock().now(),
        )?;
        for l in stored {
            *p.summary.rejected.entry(l.reason).or_insert(0) += 1;
            p.summary.dead_letters.push(l.id);
        }
    }
    if let Some(sf) = &state_file {
        let _ = std::fs::remove_file(sf);
    }
    p.bytes_read = count.load(Ordering::Relaxed);
    progress(&p);
    Ok(p.summary)
}

fn save_state(path: &Path, st: &ResumeState) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(st).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}
