//! Writing large files in the background without stalling the log's fsyncs.
//!
//! On a journalling file system (ext4 with `data=ordered`, the Debian default) an
//! fsync of the write-ahead log commits the journal, and the commit first writes the
//! dirty data of every file that allocated blocks in it: a checkpoint or snapshot that
//! has buffered tens of megabytes makes the next log fsync wait for all of it (measured
//! here: log fsyncs of 60–100 ms instead of 5–10 ms while a snapshot was written). The
//! usual remedy (RocksDB's `bytes_per_sync`, PostgreSQL's `checkpoint_flush_after`) is
//! to sync the big file every megabyte or so while writing it, so that there is never
//! much of it for a log fsync to wait behind.

use std::fs::File;
use std::io::{self, Write};

/// How much a background file may have unsynced: 1 MiB.
pub const SYNC_EVERY: u64 = 1 << 20;

/// A file writer that syncs its data every [`SYNC_EVERY`] bytes (the final sync is the
/// caller's, as before).
pub struct SyncEvery {
    file: File,
    unsynced: u64,
}

impl SyncEvery {
    pub fn new(file: File) -> Self {
        Self { file, unsynced: 0 }
    }

    /// The file, for its final sync.
    pub fn into_inner(self) -> File {
        self.file
    }
}

impl Write for SyncEvery {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_written_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = SyncEvery::new(File::create(&path).unwrap());
        let chunk = vec![7u8; 300_000];
        for _ in 0..10 {
            w.write_all(&chunk).unwrap();
        }
        w.into_inner().sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 3_000_000);
    }
}
