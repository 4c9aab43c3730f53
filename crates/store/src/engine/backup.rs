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

/// Claims `dest` for a backup: creates it (its parents as needed), readable by the
/// owner only (it holds keys and personal data). An existing `dest` is refused, even
/// empty: two backups must never share a directory.
fn claim(dest: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dest) {
        Ok(()) => Ok(()),
        // A conflict (409) naming the directory, not where it is on the server.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StoreError::Rejected(citybrain_model::ModelError::new(
                citybrain_model::ErrorKind::AlreadyExists,
                format!(
                    "'{}' exists; a backup goes into a new directory",
                    dest.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ),
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses a restore target that exists and is not empty.
fn check_empty(to: &Path) -> Result<(), StoreError> {
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        return Err(StoreError::Invalid(format!(
            "{} exists and is not empty",
            to.display()
        )));
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
        if holds(&path, skip) {
            continue;
        }
        let to = dst.join(entry.file_name());
        // Symbolic links are followed: what they point at is copied.
        let kind = std::fs::metadata(&path)?;
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

/// Whether `path` is the backup or a directory holding it (a backup directory inside
/// the data directory is not copied into the backups).
fn holds(path: &Path, backup: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| backup.starts_with(p))
}

/// Copies the log segment being written up to its current end, then cuts the copy
/// after its last whole record. Answers the copy's last LSN (0 when it has none).
fn copy_active_segment(src: &Path, dst: &Path) -> Result<(u64, u64), StoreError> {
    let mut from = File::open(src)?;
    let mut bytes = Vec::new();
    from.read_to_end(&mut bytes)?;
    {
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)?;
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
    /// Asks for a snapshot (finished in the background) and waits until one has been
    /// written, or failed, or the wait is over; refuses on a failed or closing store.
    fn fresh_snapshot(&self) -> Result<(), StoreError> {
        let seen = |i: &Inner| {
            i.snapshots.load(Ordering::Acquire) + i.snapshot_failures.load(Ordering::Acquire)
        };
        let before = seen(&self.inner);
        self.request_background_snapshot();
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        while seen(&self.inner) == before {
            self.writable()?;
            {
                let p = self.inner.pending.lock();
                if p.shutdown || p.abandon {
                    return Err(StoreError::ShuttingDown);
                }
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    "backup: no fresh snapshot in time; copying the log since the last one"
                );
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Takes an online backup into `dest` (see the module documentation).
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport, StoreError> {
        let started = Instant::now();
        claim(dest)?;
        let dest_abs = std::fs::canonicalize(dest)?;
        let dir = &self.inner.dir;
        self.fresh_snapshot()?;
        // No snapshot or segment is deleted until the copy is done.
        let _files = self.inner.files.lock();
        let mut report = BackupReport::default();
        // The files beside the store first, so that what they record (import
        // progress) is not ahead of the log position the backup ends at.
        let mut n = (0u64, 0u64);
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if is_store_file(&name) || holds(&path, &dest_abs) {
                continue;
            }
            let kind = std::fs::metadata(&path)?;
            if kind.is_dir() {
                copy_tree(&path, &dest.join(&*name), &dest_abs, &mut n)?;
            } else if kind.is_file() {
                if let Some(len) = copy_synced(&path, &dest.join(&*name))? {
                    n.0 += 1;
                    n.1 += len;
                }
            }
        }
        // The snapshot before the history: a snapshot on disk means its history
        // checkpoint was written, so the history copied next is at least as new, and
        // replay from the log covers both.
        if let Some((lsn, path)) = snapshot::list(dir)?.pop() {
            report.snapshot_lsn = lsn;
            report.bytes += link_or_copy(&path, &snapshot::path_for(dest, lsn))?;
            report.files += 1;
        }
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
        let segments = wal::list_segments(dir)?;
        let mut last = report.snapshot_lsn.max(report.history_lsn);
        for (i, (first, path)) in segments.iter().enumerate() {
            let to = wal::segment_path(dest, *first);
            if i + 1 < segments.len() {
                report.bytes += link_or_copy(path, &to)?;
            } else {
                let (seg_last, len) = copy_active_segment(path, &to)?;
                // An empty active segment still says everything before it was logged.
                last = last.max(seg_last).max(first.saturating_sub(1));
                report.bytes += len;
            }
            report.files += 1;
        }
        report.lsn = last;
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
    check_empty(to)?;
    // Copied beside the target, then renamed into place: a restore that fails half
    // way leaves no half-restored data directory.
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "data".into());
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = parent.join(format!(".{name}.restoring"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let copied = (|| -> Result<(), StoreError> {
        let mut n = (0u64, 0u64);
        std::fs::create_dir(&staging)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == MANIFEST {
                continue;
            }
            let path = entry.path();
            if std::fs::metadata(&path)?.is_dir() {
                copy_tree(&path, &staging.join(&name), Path::new(""), &mut n)?;
            } else {
                copy_synced(&path, &staging.join(&name))?;
            }
        }
        wal::sync_dir(&staging)?;
        if to.exists() {
            std::fs::remove_dir(to)?;
        }
        std::fs::rename(&staging, to)?;
        wal::sync_dir(&parent)?;
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(report)
}
