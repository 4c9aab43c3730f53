//! Online backups of the history: the registry and the segment files it names, as of
//! one checkpoint, taken while ingestion goes on.
//!
//! Segment files are never changed once written (a checkpoint or a compaction writes a
//! new file, then the registry, then removes what it replaced), so holding the
//! engine's maintenance lock (no checkpoint or compaction in between) makes the
//! registry on disk and its files one consistent checkpoint. Segments are hard-linked
//! into the backup when it is on the same file system (instant, no space) and copied
//! otherwise; the registry log is copied up to its last whole checkpoint (a link would
//! see the live log's later appends). The lock is held only for that.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use crate::engine::Tsdb;
use crate::error::TsdbError;
use crate::{registry, segment};

/// Hard-links `src` to `dst`, or copies it where links cannot be made (another file
/// system, links refused), then syncs the copy. A hard link shares the immutable file;
/// nothing to sync. `dst` must not exist: an existing one is an error, never
/// overwritten (it could be a link to `src` itself, which a copy would empty).
pub fn link_or_copy(src: &Path, dst: &Path) -> io::Result<u64> {
    let len = std::fs::metadata(src)?.len();
    match std::fs::hard_link(src, dst) {
        Ok(()) => return Ok(len),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::CrossesDevices
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::Unsupported
            ) => {}
        Err(e) => return Err(e),
    }
    let mut from = File::open(src)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    io::copy(&mut from, &mut to)?;
    to.sync_all()?;
    Ok(len)
}

/// Copies the first `len` bytes of `src` into a new file `dst`, synced.
fn copy_prefix(src: &Path, dst: &Path, len: u64) -> io::Result<u64> {
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let copied = io::copy(&mut File::open(src)?.take(len), &mut to)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} is shorter than its recorded length", src.display()),
        ));
    }
    to.sync_all()?;
    Ok(len)
}

/// What a history backup holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryBackup {
    /// Every log record up to this LSN is in the copied files; later ones must come
    /// from the log.
    pub checkpoint_lsn: u64,
    pub files: u64,
    pub bytes: u64,
}

impl Tsdb {
    /// Copies the latest checkpoint (registry and segment files) into `dest`, which
    /// must exist and be empty.
    pub fn backup_to(&self, dest: &Path) -> Result<HistoryBackup, TsdbError> {
        let _m = self.maintenance_lock();
        let dir = self.dir();
        let committed = self.registry_len();
        let legacy = dir.join(registry::legacy::NAME);
        if committed == 0 && !legacy.exists() {
            // No checkpoint yet: everything is in the log.
            return Ok(HistoryBackup::default());
        }
        // Under the lock, the registry on disk names exactly the registered files.
        let (checkpoint_lsn, files) = self.registered();
        let mut out = HistoryBackup {
            checkpoint_lsn,
            ..Default::default()
        };
        for id in files {
            let name = segment::file_path(dir, id);
            let Some(file_name) = name.file_name() else {
                continue;
            };
            out.bytes += link_or_copy(&name, &dest.join(file_name))?;
            out.files += 1;
        }
        out.bytes += if committed == 0 {
            // A version 1 registry, rewritten whole (never changed) by older builds.
            link_or_copy(&legacy, &dest.join(registry::legacy::NAME))?
        } else {
            copy_prefix(&registry::path(dir), &registry::path(dest), committed)?
        };
        out.files += 1;
        File::open(dest)?.sync_all()?;
        Ok(out)
    }
}
