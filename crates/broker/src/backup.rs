//! Online backups on request (`POST /platform/v1/backups`): a consistent copy of the
//! store, named by the caller, under the configured backup directory
//! (`storage.backup_dir`). Only there: an administrator names a backup, not a path on
//! the server. `citybrain restore` brings one back (`docs/storage.md`, "Backups").

use std::path::PathBuf;

use citybrain_access::{Action, Resource, Verb};
use citybrain_model::ModelError;
use citybrain_storage::BackupReport;

use crate::error::{BrokerError, Result};
use crate::request::RequestContext;
use crate::Broker;

/// How many unnamed backups one second can take (`backup-<time>`, then `-2` …).
const MAX_SUFFIX: usize = 100;

/// A backup's name: a letter or digit, then up to 63 letters, digits, `.`, `_`, `-`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::bad_data(format!(
            "backup 'name' '{name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

impl Broker {
    /// Takes an online backup named `name` (default: `backup-<UTC time>`) and answers
    /// its name, where it is, and what it holds.
    pub async fn backup(
        &self,
        rc: &RequestContext,
        name: Option<&str>,
    ) -> Result<(String, PathBuf, BackupReport)> {
        self.allow(rc, Action::new(Verb::Administer, Resource::Operations))?;
        let Some(root) = self.backup_dir.clone() else {
            return Err(BrokerError::Model(ModelError::new(
                citybrain_model::ErrorKind::OperationNotSupported,
                "backups are not configured (storage.backup_dir)",
            )));
        };
        // A chosen name can conflict (409); an unnamed backup takes the next free
        // suffix when another took its second (the store claims the directory
        // atomically, so two at once cannot take the same one).
        let candidates: Vec<String> = match name {
            Some(n) => {
                check_name(n)?;
                vec![n.to_string()]
            }
            None => {
                let base = format!("backup-{}", self.clock.now().format("%Y%m%dT%H%M%SZ"));
                std::iter::once(base.clone())
                    .chain((2..=MAX_SUFFIX).map(|n| format!("{base}-{n}")))
                    .collect()
            }
        };
        for name in candidates {
            let dest = root.join(&name);
            let store = self.store.clone();
            let to = dest.clone();
            let result = tokio::task::spawn_blocking(move || store.backup(&to))
                .await
                .map_err(|e| {
                    BrokerError::Store(citybrain_storage::StoreError::Io(std::io::Error::other(
                        e.to_string(),
                    )))
                })?;
            match result {
                // Taken meanwhile: the next candidate.
                Err(citybrain_storage::StoreError::Rejected(m))
                    if m.kind == citybrain_model::ErrorKind::AlreadyExists => {}
                other => {
                    let report = other?;
                    tracing::info!(actor = %rc.actor(), %name, lsn = report.lsn, "backup taken");
                    let dest = std::fs::canonicalize(&dest).unwrap_or(dest);
                    return Ok((name, dest, report));
                }
            }
        }
        Err(BrokerError::Model(ModelError::new(
            citybrain_model::ErrorKind::AlreadyExists,
            match name {
                Some(n) => format!("a backup named '{n}' exists"),
                None => "every default backup name of this second is taken; retry in a second"
                    .to_string(),
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for ok in ["nightly", "2026-12-07", "b.1_x-y"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../etc", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
