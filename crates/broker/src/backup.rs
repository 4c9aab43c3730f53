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
        let name = match name {
            Some(n) => {
                check_name(n)?;
                n.to_string()
            }
            // A second unnamed backup within the same second gets a suffix, not a 409
            // (only a name the caller chose can conflict).
            None => {
                let base = format!("backup-{}", self.clock.now().format("%Y%m%dT%H%M%SZ"));
                (1..)
                    .map(|n| match n {
                        1 => base.clone(),
                        n => format!("{base}-{n}"),
                    })
                    .find(|n| !root.join(n).exists())
                    .unwrap_or(base)
            }
        };
        let dest = root.join(&name);
        if dest.exists() {
            return Err(BrokerError::Model(ModelError::new(
                citybrain_model::ErrorKind::AlreadyExists,
                format!("a backup named '{name}' exists"),
            )));
        }
        let store = self.store.clone();
        let to = dest.clone();
        let report = tokio::task::spawn_blocking(move || store.backup(&to))
            .await
            .map_err(|e| {
                BrokerError::Store(citybrain_storage::StoreError::Io(std::io::Error::other(
                    e.to_string(),
                )))
            })??;
        tracing::info!(actor = %rc.actor(), %name, lsn = report.lsn, "backup taken");
        let dest = std::fs::canonicalize(&dest).unwrap_or(dest);
        Ok((name, dest, report))
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
