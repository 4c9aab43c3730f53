//! The dead-letter store: every payload or record that could not be decoded, mapped or
//! written is kept with its source, time, reason, message and raw bytes, durably
//! (fsync before the sender is acknowledged), until it is replayed or deleted.
//!
//! Format (version 1): one append-only file `deadletters.log` of frames
//! `[u32 len][u32 crc32][u32 header_len][header JSON][raw bytes]` (little endian; `len`
//! counts everything after the crc). A header is a [`Letter`] without its bytes, or a
//! tombstone `{"del": id}`. Opening scans the file, keeps the headers in memory, and
//! cuts a torn last frame. When more than half the file is dead it is rewritten.
//!
//! Retention ([`Retention`], `ingest.deadletters_max_*`): beyond a number of letters,
//! a size, or an age, the oldest letters are dropped (tombstoned, counted in
//! `citybrain_deadletters_expired_total`) when new ones arrive and when the store
//! opens, so a source that keeps sending garbage cannot fill the disk.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::reject::Reason;

const FILE: &str = "deadletters.log";
const MAX_FRAME: u32 = 256 << 20;

/// Whether a letter holds a whole payload or one record of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Payload,
    Record,
}

/// One dead letter (its raw bytes are read on demand).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Letter {
    pub id: u64,
    pub source: String,
    pub at: DateTime<Utc>,
    pub reason: Reason,
    pub message: String,
    pub level: Level,
    /// The MQTT topic or file it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Size of the original bytes.
    pub size: u64,
    /// The stored bytes are a prefix (the payload was over the size limit).
    #[serde(default)]
    pub truncated: bool,
}

/// A letter to store.
#[derive(Debug, Clone)]
pub struct NewLetter {
    pub source: String,
    pub reason: Reason,
    pub message: String,
    pub level: Level,
    pub origin: Option<String>,
    pub raw: Vec<u8>,
    pub size: u64,
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("dead letter {0} does not exist")]
    NotFound(u64),
}

impl citybrain_model::ErrorCode for DeadLetterError {
    fn kind(&self) -> citybrain_model::ErrorKind {
        match self {
            DeadLetterError::Io(e) if citybrain_storage::disk_full(e) => {
                citybrain_model::ErrorKind::InsufficientStorage
            }
            DeadLetterError::Io(_) => citybrain_model::ErrorKind::InternalError,
            DeadLetterError::NotFound(_) => citybrain_model::ErrorKind::ResourceNotFound,
        }
    }
    fn public_detail(&self) -> String {
        match self {
            DeadLetterError::Io(e) if citybrain_storage::disk_full(e) => {
                "the server's disk is full; the dead letter was not changed".into()
            }
            DeadLetterError::Io(_) => "internal storage error; see the server log".into(),
            other => other.to_string(),
        }
    }
}

impl citybrain_telemetry::Metrics for DeadLetters {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        out(
            &crate::stats::metric::LETTER_BYTES,
            self.file_bytes() as f64,
        );
        out(
            &crate::stats::metric::LETTERS_EXPIRED,
            self.expired() as f64,
        );
    }

    fn visit_labelled(
        &self,
        out: &mut dyn FnMut(
            &'static citybrain_telemetry::MetricDef,
            citybrain_telemetry::Labels<'_>,
            f64,
        ),
    ) {
        for ((source, reason), n) in self.counts() {
            out(
                &crate::stats::metric::LETTERS,
                &[("source", &source), ("reason", reason.as_str())],
                n as f64,
            );
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Header {
    Del { del: u64 },
    Letter(Letter),
}

struct Entry {
    letter: Letter,
    raw_offset: u64,
    raw_len: u32,
    frame_len: u64,
}

struct Inner {
    file: File,
    len: u64,
    live_bytes: u64,
    next_id: u64,
    letters: BTreeMap<u64, Entry>,
    /// Letters dropped by retention since start.
    expired: u64,
}

/// How many dead letters are kept, and for how long; the oldest go first.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_letters: usize,
    /// Bytes of live letters (headers and stored payloads).
    pub max_bytes: u64,
    /// Letters older than this go (`None`: no age limit).
    pub max_age: Option<chrono::Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_letters: 100_000,
            max_bytes: 1 << 30,
            max_age: Some(chrono::Duration::days(30)),
        }
    }
}

/// Filters for listing.
#[derive(Debug, Clone, Default)]
pub struct LetterQuery {
    pub source: Option<String>,
    pub reason: Option<Reason>,
    pub limit: usize,
    pub offset: usize,
}

/// The store.
pub struct DeadLetters {
    path: PathBuf,
    inner: Mutex<Inner>,
    retention: Retention,
}

fn frame(header: &[u8], raw: &[u8]) -> Vec<u8> {
    let len = (4 + header.len() + raw.len()) as u32;
    let mut body = Vec::with_capacity(len as usize);
    body.extend_from_slice(&(header.len() as u32).to_le_bytes());
    body.extend_from_slice(header);
    body.extend_from_slice(raw);
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Appends frames durably; a write that fails part way is cut off again, so later
/// frames start where the index expects them.
fn append(g: &mut Inner, bytes: &[u8]) -> Result<(), DeadLetterError> {
    let res = g.file.write_all(bytes).and_then(|()| g.file.sync_data());
    if let Err(e) = res {
        let _ = g.file.set_len(g.len);
        return Err(e.into());
    }
    g.len += bytes.len() as u64;
    Ok(())
}

impl DeadLetters {
    /// Opens (or creates) the store in `dir` with the default retention.
    pub fn open(dir: &Path) -> Result<DeadLetters, DeadLetterError> {
        Self::open_with(dir, Retention::default(), None)
    }

    /// Opens (or creates) the store in `dir`, keeping what `retention` allows (the age
    /// measured from `now`, when given).
    pub fn open_with(
        dir: &Path,
        retention: Retention,
        now: Option<DateTime<Utc>>,
    ) -> Result<DeadLetters, DeadLetterError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut inner = Inner {
            file,
            len: 0,
            live_bytes: 0,
            next_id: 1,
            letters: BTreeMap::new(),
            expired: 0,
        };
        Self::scan(&path, &mut inner)?;
        let store = DeadLetters {
            path,
            inner: Mutex::new(inner),
            retention,
        };
        {
            let mut g = store.inner.lock();
            store.expire(&mut g, now)?;
            store.maybe_rewrite(&mut g)?;
        }
        Ok(store)
    }

    fn scan(path: &Path, inner: &mut Inner) -> Result<(), DeadLetterError> {
        let mut r = BufReader::new(File::open(path)?);
        let mut pos = 0u64;
        loop {
            let mut head = [0u8; 8];
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if !(4..=MAX_FRAME).contains(&len) {
                break;
            }
            let mut body = vec![0u8; len as usize];
            if r.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
                break;
            }
            let hlen = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
            let Some(hbytes) = body.get(4..4 + hlen) else {
                break;
            };
            match serde_json::from_slice::<Header>(hbytes) {
                Ok(Header::Del { del }) => {
                    if let Some(e) = inner.letters.remove(&del) {
                        inner.live_bytes = inner.live_bytes.saturating_sub(e.frame_len);
                    }
                }
                Ok(Header::Letter(l)) => {
                    inner.next_id = inner.next_id.max(l.id + 1);
                    let raw_len = (len as usize - 4 - hlen) as u32;
                    inner.live_bytes += 8 + len as u64;
                    inner.letters.insert(
                        l.id,
                        Entry {
                            letter: l,
                            raw_offset: pos + 8 + 4 + hlen as u64,
                            raw_len,
                            frame_len: 8 + len as u64,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, offset = pos, "skipping an unreadable dead-letter header");
                }
            }
            pos += 8 + len as u64;
        }
        let actual = std::fs::metadata(path)?.len();
        if actual > pos {
            tracing::warn!(
                cut = actual - pos,
                "dead-letter log ends in a torn frame; cutting it"
            );
            inner.file.set_len(pos)?;
        }
        inner.len = pos;
        Ok(())
    }

    /// Stores letters durably (one fsync for all); answers them with their ids.
    pub fn put_many(
        &self,
        new: Vec<NewLetter>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Letter>, DeadLetterError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let mut g = self.inner.lock();
        let mut out = Vec::with_capacity(new.len());
        let mut bytes = Vec::new();
        let mut pending = Vec::new();
        for n in new {
            let letter = Letter {
                id: g.next_id,
                source: n.source,
                at: now,
                reason: n.reason,
                message: n.message,
                level: n.level,
                origin: n.origin,
                size: n.size,
                truncated: n.truncated,
            };
            g.next_id += 1;
            let header = serde_json::to_vec(&Header::Letter(letter.clone()))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let raw_offset = g.len + bytes.len() as u64 + 8 + 4 + header.len() as u64;
            let f = frame(&header, &n.raw);
            bytes.extend_from_slice(&f);
            pending.push((
                letter.clone(),
                raw_offset,
                n.raw.len() as u32,
                f.len() as u64,
            ));
            out.push(letter);
        }
        append(&mut g, &bytes)?;
        for (letter, raw_offset, raw_len, flen) in pending {
            g.live_bytes += flen;
            g.letters.insert(
                letter.id,
                Entry {
                    letter,
                    raw_offset,
                    raw_len,
                    frame_len: flen,
                },
            );
        }
        // The letters are stored; retention's own failures are logged, not the
        // sender's problem (they are tried again at the next put).
        if let Err(error) = self
            .expire(&mut g, Some(now))
            .and_then(|()| self.maybe_rewrite(&mut g))
        {
            tracing::warn!(%error, "dead-letter retention could not run; retried at the next letter");
        }
        Ok(out)
    }

    /// Drops the oldest letters beyond the retention's count, size and age.
    fn expire(&self, g: &mut Inner, now: Option<DateTime<Utc>>) -> Result<(), DeadLetterError> {
        let r = self.retention;
        let cutoff = match (now, r.max_age) {
            (Some(now), Some(age)) => Some(now - age),
            _ => None,
        };
        let (mut count, mut bytes) = (g.letters.len(), g.live_bytes);
        let mut gone = Vec::new();
        for (id, e) in &g.letters {
            let old = cutoff.is_some_and(|c| e.letter.at < c);
            if !(old || count > r.max_letters || bytes > r.max_bytes) {
                break;
            }
            gone.push(*id);
            count -= 1;
            bytes = bytes.saturating_sub(e.frame_len);
        }
        if gone.is_empty() {
            return Ok(());
        }
        self.tombstone(g, &gone)?;
        g.expired += gone.len() as u64;
        tracing::info!(
            dropped = gone.len(),
            "dead letters beyond retention dropped (oldest first)"
        );
        Ok(())
    }

    /// Rewrites the file once more than half of a large one is dead.
    fn maybe_rewrite(&self, g: &mut Inner) -> Result<(), DeadLetterError> {
        if g.len > (64 << 20) && g.live_bytes * 2 < g.len {
            self.rewrite(g)?;
        }
        Ok(())
    }

    /// Writes tombstones for `ids` (held letters) durably and forgets them.
    fn tombstone(&self, g: &mut Inner, ids: &[u64]) -> Result<(), DeadLetterError> {
        let mut bytes = Vec::new();
        for id in ids {
            let h = serde_json::to_vec(&Header::Del { del: *id })
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            bytes.extend_from_slice(&frame(&h, &[]));
        }
        append(g, &bytes)?;
        for id in ids {
            if let Some(e) = g.letters.remove(id) {
                g.live_bytes = g.live_bytes.saturating_sub(e.frame_len);
            }
        }
        Ok(())
    }

    /// Letters dropped by retention since the store opened.
    pub fn expired(&self) -> u64 {
        self.inner.lock().expired
    }

    pub fn get(&self, id: u64) -> Option<Letter> {
        self.inner.lock().letters.get(&id).map(|e| e.letter.clone())
    }

    /// The stored bytes of a letter.
    pub fn raw(&self, id: u64) -> Result<Vec<u8>, DeadLetterError> {
        let g = self.inner.lock();
        let e = g.letters.get(&id).ok_or(DeadLetterError::NotFound(id))?;
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(e.raw_offset))?;
        let mut buf = vec![0u8; e.raw_len as usize];
        f.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Letters matching `q`, oldest first, and how many match in all.
    pub fn list(&self, q: &LetterQuery) -> (Vec<Letter>, usize) {
        let g = self.inner.lock();
        let matching = g.letters.values().map(|e| &e.letter).filter(|l| {
            q.source.as_ref().is_none_or(|s| &l.source == s)
                && q.reason.is_none_or(|r| l.reason == r)
        });
        let total = matching.clone().count();
        let page = matching.skip(q.offset).take(q.limit).cloned().collect();
        (page, total)
    }

    /// Ids of the letters matching `q` (all of them; for bulk replay).
    pub fn ids(&self, source: Option<&str>, reason: Option<Reason>) -> Vec<u64> {
        let g = self.inner.lock();
        g.letters
            .values()
            .filter(|e| {
                source.is_none_or(|s| e.letter.source == s)
                    && reason.is_none_or(|r| e.letter.reason == r)
            })
            .map(|e| e.letter.id)
            .collect()
    }

    /// Removes letters (after a successful replay, or on request), durably.
    pub fn delete(&self, ids: &[u64]) -> Result<usize, DeadLetterError> {
        let mut g = self.inner.lock();
        let gone: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| g.letters.contains_key(id))
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        self.tombstone(&mut g, &gone)?;
        Ok(gone.len())
    }

    /// Stored letters per (source, reason).
    pub fn counts(&self) -> BTreeMap<(String, Reason), u64> {
        let g = self.inner.lock();
        let mut out = BTreeMap::new();
        for e in g.letters.values() {
            *out.entry((e.letter.source.clone(), e.letter.reason))
                .or_insert(0) += 1;
        }
        out
    }

    pub fn len(&self) -> usize {
        self.inner.lock().letters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the log file holds.
    pub fn file_bytes(&self) -> u64 {
        self.inner.lock().len
    }

    /// Rewrites the log with the live letters only.
    fn rewrite(&self, g: &mut Inner) -> Result<(), DeadLetterError> {
        let tmp = self.path.with_extension("log.tmp");
        let res = self.write_live(g, &tmp);
        let (moved, pos) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, &self.path)?;
        // Only now does the index follow the new file.
        g.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        g.letters = moved;
        g.len = pos;
        g.live_bytes = pos;
        Ok(())
    }

    /// Writes the live letters to `tmp`, synced; answers their new index and length.
    fn write_live(
        &self,
        g: &Inner,
        tmp: &Path,
    ) -> Result<(BTreeMap<u64, Entry>, u64), DeadLetterError> {
        let mut out = File::create(tmp)?;
        let mut src = File::open(&self.path)?;
        let mut pos = 0u64;
        let mut moved = BTreeMap::new();
        for (id, e) in &g.letters {
            let mut raw = vec![0u8; e.raw_len as usize];
            src.seek(SeekFrom::Start(e.raw_offset))?;
            src.read_exact(&mut raw)?;
            let header = serde_json::to_vec(&Header::Letter(e.letter.clone()))
                .map_err(|x| std::io::Error::other(x.to_string()))?;
            let f = frame(&header, &raw);
            out.write_all(&f)?;
            moved.insert(
                *id,
                Entry {
                    raw_offset: pos + 8 + 4 + header.len() as u64,
                    raw_len: e.raw_len,
                    frame_len: f.len() as u64,
                    letter: e.letter.clone(),
                },
            );
            pos += f.len() as u64;
        }
        out.sync_all()?;
        Ok((moved, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_model::time::{Clock as _, SystemClock};

    fn letter(source: &str, reason: Reason, raw: &[u8]) -> NewLetter {
        NewLetter {
            source: source.into(),
            reason,
            message: "m".into(),
            level: Level::Payload,
            origin: None,
            raw: raw.to_vec(),
            size: raw.len() as u64,
            truncated: false,
        }
    }

    #[test]
    fn put_list_raw_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemClock.now_precise();
        {
            let s = DeadLetters::open(dir.path()).unwrap();
            let put = s
                .put_many(
                    vec![
                        letter("a", Reason::Decode, b"{broken"),
                        letter("b", Reason::BadValue, b"x,y"),
                        letter("a", Reason::BadTime, &[0xff, 0x00]),
                    ],
                    now,
                )
                .unwrap();
            assert_eq!(put.iter().map(|l| l.id).collect::<Vec<_>>(), vec![1, 2, 3]);
            assert_eq!(s.raw(3).unwrap(), vec![0xff, 0x00]);
            let (page, total) = s.list(&LetterQuery {
                source: Some("a".into()),
                limit: 10,
                ..Default::default()
            });
            assert_eq!((page.len(), total), (2, 2));
            assert_eq!(s.delete(&[1, 99]).unwrap(), 1);
            assert!(matches!(s.raw(1), Err(DeadLetterError::NotFound(1))));
        }
        let s = DeadLetters::open(dir.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.raw(2).unwrap(), b"x,y");
        assert_eq!(
            s.counts().get(&("a".to_string(), Reason::BadTime)),
            Some(&1)
        );
        // New ids never reuse old ones.
        let l = s
            .put_many(vec![letter("c", Reason::Invalid, b"")], now)
            .unwrap();
        assert_eq!(l[0].id, 4);
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = DeadLetters::open(dir.path()).unwrap();
            s.put_many(
                vec![letter("a", Reason::Decode, b"one")],
                SystemClock.now_precise(),
            )
            .unwrap();
        }
        let path = dir.path().join(FILE);
        let good = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let s = DeadLetters::open(dir.path()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        s.put_many(
            vec![letter("a", Reason::Decode, b"two")],
            SystemClock.now_precise(),
        )
        .unwrap();
        drop(s);
        assert_eq!(DeadLetters::open(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn retention_drops_the_oldest_by_count_size_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let keep = Retention {
            max_letters: 5,
            max_bytes: u64::MAX,
            max_age: Some(chrono::Duration::days(1)),
        };
        let s = DeadLetters::open_with(dir.path(), keep, Some(t0)).unwrap();
        let batch = |n: usize| {
            (0..n)
                .map(|i| letter("a", Reason::Decode, format!("p{i}").as_bytes()))
                .collect()
        };
        s.put_many(batch(8), t0).unwrap();
        // Eight sent, five kept: the newest.
        assert_eq!(s.ids(None, None), vec![4, 5, 6, 7, 8]);
        assert_eq!(s.expired(), 3);
        // A day and a bit later, a new letter: the old ones are past their age.
        s.put_many(batch(1), t0 + chrono::Duration::hours(25))
            .unwrap();
        assert_eq!(s.ids(None, None), vec![9]);
        drop(s);
        // Reopened: the tombstones hold; a smaller byte budget drops more at open.
        let s = DeadLetters::open_with(dir.path(), keep, Some(t0 + chrono::Duration::hours(25)))
            .unwrap();
        assert_eq!(s.ids(None, None), vec![9]);
        s.put_many(batch(3), t0 + chrono::Duration::hours(26))
            .unwrap();
        drop(s);
        let tight = Retention {
            max_bytes: 1,
            ..keep
        };
        let s = DeadLetters::open_with(dir.path(), tight, None).unwrap();
        assert!(s.is_empty(), "{:?}", s.ids(None, None));
    }

    #[test]
    fn rewrite_keeps_live_letters() {
        let dir = tempfile::tempdir().unwrap();
        let s = DeadLetters::open(dir.path()).unwrap();
        s.put_many(
            (0..10)
                .map(|i| letter("a", Reason::Decode, format!("p{i}").as_bytes()))
                .collect(),
            SystemClock.now_precise(),
        )
        .unwrap();
        s.delete(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        {
            let mut g = s.inner.lock();
            s.rewrite(&mut g).unwrap();
        }
        assert_eq!(s.raw(9).unwrap(), b"p8");
        drop(s);
        let s = DeadLetters::open(dir.path()).unwrap();
        assert_eq!(s.ids(None, None), vec![8, 9, 10]);
        assert_eq!(s.raw(10).unwrap(), b"p9");
    }
}
