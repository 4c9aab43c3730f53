//! Online backups and restores of a data directory.
//!
//! A backup is a data directory as of one log position `L`, taken while writes go on.
//! It first asks for a snapshot and waits for it (so the log to copy and to replay at
//! restore is short), then copies:
//! - the history's latest checkpoint (registry and segment files, linked or copied
//!   under the history's maintenance lock: [`citybrain_tsdb::backup`]);
//! - the newest snapshot (at `S`; snapshots are renamed into place only when whole);
//! - every log segment on disk, the older ones hard-linked (they never change again),
//!   the one being written copied byte by byte and cut after its last whole record,
//!   whose position is `L`;
//! - the other files of the directory (keys, the audit log, dead letters, import
//!   state, the twin's files), copied as they are;
//! - `BACKUP.json`, the report.
//!
//! While it runs, the store deletes no snapshot and no log segment (`Inner::files`),
//! so the segments on disk reach back to both `S` and the history's checkpoint;
//! segments listed after the snapshot and the history were taken end at or after both.
//! Opening the copy replays the log from the snapshot (state) and from the
//! checkpoint (history) to `L`: exactly the writes up to `L`, as a crash at `L` would
//! leave them (tested against the live store in `tests.rs`).

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::Path;
use std::time::Instant;

use citybrain_tsdb::backup::link_or_copy;

use super::*;

/// How long a backup waits for its fresh snapshot before copying without one.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The report's name inside a backup.
pub const MANIFEST: &str = "BACKUP.json";

/// Entries of the data directory that are the store's own (copied by the rules
/// above) or must not be copied.
fn is_store_file(name: &str) -> bool {
    name == "LOCK"
        || name == "history"
        || name == MANIFEST
        || name.ends_with(".tmp")
        || (name.starts_with("wal-") && name.ends_with(".log"))
        || (name.starts_with("snap-") && name.ends_with(".bin"))
}

/// Creates `dest`, or accepts it when it exists and is empty.
fn prepare(dest: &Path) -> Result<(), StoreError> {
    if dest.exists() {
        if std::fs::read_dir(dest)?.next().is_some() {
            return Err(StoreError::Invalid(format!(
                "{} exists and is not empty",
                dest.display()
            )));
        }
    } else {
        std::fs::create_dir_all(dest)?;
    }
    Ok(())
}

/// Copies `src` to `dst` and syncs the copy; a file that vanished meanwhile is
/// skipped (`None`).
fn copy_synced(src: &Path, dst: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::copy(src, dst) {
        Ok(len) => {
            File::open(dst)?.sync_all()?;
            Ok(Some(len))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Copies the tree at `src` into `dst`, leaving out `skip` (the backup itself, when
/// it is inside the data directory); counts (files, bytes) into `n`.
fn copy_tree(src: &Path, dst: &Path, skip: &Path, n: &mut (u64, u64)) -> Result<(), StoreError> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let path = entry.path();
        if std::fs::canonicalize(&path).is_ok_and(|p| p == skip) {
            continue;
        }
        let to = dst.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&path, &to, skip, n)?;
        } else if kind.is_file() {
            if let Some(len) = copy_synced(&path, &to)? {
                n.0 += 1;
                n.1 += len;
            }
        }
    }
    wal::sync_dir(dst)?;
    Ok(())
}

/// Copies the log segment being written up to its current end, then cuts the copy
/// after its last whole record. Answers the copy's last LSN (0 when it has none).
fn copy_active_segment(src: &Path, dst: &Path) -> Result<(u64, u64), StoreError> {
    let mut from = File::open(src)?;
    let mut bytes = Vec::new();
    from.read_to_end(&mut bytes)?;
    {
        let mut to = File::create(dst)?;
        to.write_all(&bytes)?;
    }
    let mut last = 0u64;
    let (good, torn) = wal::read_segment(dst, &mut |entry| {
        last = last.max(match entry {
            WalEntry::History { lsn, .. } => lsn,
            WalEntry::Record(rec) => rec.lsn,
        });
    })?;
    let to = std::fs::OpenOptions::new().write(true).open(dst)?;
    if torn {
        to.set_len(good)?;
    }
    to.sync_all()?;
    Ok((last, if torn { good } else { bytes.len() as u64 }))
}

impl EmbeddedStore {
    /// Takes an online backup into `dest` (see the module documentation).
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let started = Instant::now();
        prepare(dest)?;
        let dest_abs = std::fs::canonicalize(dest)?;
        let dir = &self.inner.dir;
        // A fresh snapshot first (and with it a history checkpoint), as PostgreSQL's
        // base backup starts with a checkpoint: the copied log is then short, and the
        // restored directory opens without replaying everything since the last one.
        let before = self.inner.snapshots.load(Ordering::Acquire);
        self.request_background_snapshot();
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        while self.inner.snapshots.load(Ordering::Acquire) == before {
            if Instant::now() > deadline || self.inner.failed.load(Ordering::Acquire) {
                tracing::warn!(
                    "backup: no fresh snapshot in time; copying the log since the last one"
                );
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // No snapshot or segment is deleted until the copy is done.
        let _files = self.inner.files.lock();
        let mut report = BackupReport::default();
        let hist_dir = dest.join("history");
        std::fs::create_dir_all(&hist_dir)?;
        let h = self
            .inner
            .history
            .backup_to(&hist_dir)
            .map_err(history_error)?;
        report.history_lsn = h.checkpoint_lsn;
        report.files += h.files;
        report.bytes += h.bytes;
        if let Some((lsn, path)) = snapshot::list(dir)?.pop() {
            report.snapshot_lsn = lsn;
            report.bytes += link_or_copy(&path, &snapshot::path_for(dest, lsn))?;
            report.files += 1;
        }
        let segments = wal::list_segments(dir)?;
        let mut last = report.snapshot_lsn.max(report.history_lsn);
        for (i, (first, path)) in segments.iter().enumerate() {
            let to = wal::segment_path(dest, *first);
            if i + 1 < segments.len() {
                report.bytes += link_or_copy(path, &to)?;
            } else {
                let (seg_last, len) = copy_active_segment(path, &to)?;
                last = last.max(seg_last);
                report.bytes += len;
            }
            report.files += 1;
        }
        report.lsn = last;
        let mut n = (0u64, 0u64);
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if is_store_file(&name) || std::fs::canonicalize(&path).is_ok_and(|p| p == dest_abs) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                copy_tree(&path, &dest.join(&*name), &dest_abs, &mut n)?;
            } else if kind.is_file() {
                if let Some(len) = copy_synced(&path, &dest.join(&*name))? {
                    n.0 += 1;
                    n.1 += len;
                }
            }
        }
        report.files += n.0;
        report.bytes += n.1;
        report.seconds = started.elapsed().as_secs_f64();
        let manifest = serde_json::to_vec_pretty(&report).map_err(|e| StoreError::Corrupt {
            file: MANIFEST.into(),
            detail: e.to_string(),
        })?;
        let mut f = File::create(dest.join(MANIFEST))?;
        f.write_all(&manifest)?;
        f.sync_all()?;
        wal::sync_dir(dest)?;
        tracing::info!(dest = %dest.display(), lsn = report.lsn, files = report.files, bytes = report.bytes, seconds = report.seconds, "backup taken");
        Ok(report)
    }
}

/// Restores the backup in `from` into the data directory `to` (created; must not
/// exist or be empty): copies every file but the report. Answers the report. Open
/// the directory afterwards to replay it (the caller checks it opens).
pub fn restore(from: &Path, to: &Path) -> Result<BackupReport, StoreError> {
    let manifest = std::fs::read(from.join(MANIFEST)).map_err(|e| {
        StoreError::Invalid(format!(
            "{} is not a citybrain backup (no {MANIFEST}: {e})",
            from.display()
        ))
    })?;
    let report: BackupReport =
        serde_json::from_slice(&manifest).map_err(|e| StoreError::Corrupt {
            file: from.join(MANIFEST).display().to_string(),
            detail: e.to_string(),
        })?;
    prepare(to)?;
    let mut n = (0u64, 0u64);
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == MANIFEST {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&name), Path::new(""), &mut n)?;
        } else {
            copy_synced(&path, &to.join(&name))?;
        }
    }
    wal::sync_dir(to)?;
    Ok(report)
}
