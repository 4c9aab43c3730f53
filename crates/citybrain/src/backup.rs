//! `citybrain backup` and `citybrain restore`.
//!
//! `backup` takes a consistent copy of the data directory as of one log position while
//! writes go on (`docs/storage.md`, "Backups"). With a server running on the data
//! directory it asks that server (`POST /platform/v1/backups`, an administrator's
//! key when authentication is on), which writes the backup under
//! `storage.backup_dir`; with none running it opens the directory itself and writes
//! to the same place. `restore` copies a backup into an empty data directory and
//! opens it once, to replay it and show what it holds.

use std::path::PathBuf;

use anyhow::{bail, Context};
use citybrain_store::EntityStore;
use clap::Args;
use serde_json::{json, Value};

use crate::{load_config, lock_data_dir, store_options, ConfigArgs};

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The backup's name under storage.backup_dir (default: backup-<UTC time>).
    #[arg(long)]
    name: Option<String>,
    /// The running server's base URL (default: http:// and server.listen).
    #[arg(long)]
    server: Option<String>,
    /// An administrator's API key or token (servers with authentication on).
    #[arg(long, conflicts_with = "key_file")]
    key: Option<String>,
    /// A file holding the key (kept out of the process list).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The backup directory (holding BACKUP.json).
    #[arg(long)]
    from: PathBuf,
}

fn print_report(v: &Value) {
    println!(
        "backup {} at {}: log position {}, {} files, {} bytes, {:.2} s",
        v["name"].as_str().unwrap_or_default(),
        v["path"].as_str().unwrap_or_default(),
        v["lsn"],
        v["files"],
        v["bytes"],
        v["seconds"].as_f64().unwrap_or_default()
    );
}

pub async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let cfg = load_config(&a.config)?;
    if let Some(n) = &a.name {
        citybrain_broker::backup::check_name(n).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    match lock_data_dir(&cfg) {
        Ok(lock) => {
            // No server: the directory is ours for the copy.
            let store = citybrain_store::EmbeddedStore::open(store_options(&cfg)?)
                .with_context(|| format!("opening {}", cfg.storage.data_dir.display()))?;
            let name = a.name.clone().unwrap_or_else(|| {
                #[allow(clippy::disallowed_methods)] // a name for the operator
                let now = chrono::Utc::now();
                format!("backup-{}", now.format("%Y%m%dT%H%M%SZ"))
            });
            let path = cfg.storage.backup_dir.join(&name);
            if path.exists() {
                bail!("a backup named '{name}' exists ({})", path.display());
            }
            let report = store.backup(&path);
            store.close();
            drop(lock);
            let mut v = json!(report?);
            v["name"] = json!(name);
            v["path"] = json!(path.display().to_string());
            print_report(&v);
            Ok(())
        }
        Err(_) => {
            let base = a
                .server
                .clone()
                .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
            let key = match (&a.key, &a.key_file) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
            let mut req = reqwest::Client::new()
                .post(format!(
                    "{}/platform/v1/backups",
                    base.trim_end_matches('/')
                ))
                .json(&json!({"name": a.name}));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let resp = req.send().await.with_context(|| {
                format!("the data directory is in use; asking the server at {base}")
            })?;
            let status = resp.status();
            let text = resp.text().await?;
            if !status.is_success() {
                bail!("the server answered {status}: {text}");
            }
            print_report(&serde_json::from_str(&text).context("the server's answer")?);
            Ok(())
        }
    }
}

pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let cfg = load_config(&a.config)?;
    let dir = &cfg.storage.data_dir;
    let report = citybrain_store::restore(&a.from, dir)
        .with_context(|| format!("restoring {} into {}", a.from.display(), dir.display()))?;
    let lock = lock_data_dir(&cfg)?;
    let store = citybrain_store::EmbeddedStore::open(store_options(&cfg)?)
        .with_context(|| format!("opening the restored {}", dir.display()))?;
    let stats = store.stats();
    let tenants = store.tenants()?;
    store.close();
    drop(lock);
    if stats.durable_lsn != report.lsn {
        bail!(
            "the restored directory replays to log position {}, the backup says {}",
            stats.durable_lsn,
            report.lsn
        );
    }
    println!(
        "restored {} into {}: log position {}, {} entities in {} tenants",
        a.from.display(),
        dir.display(),
        stats.durable_lsn,
        stats.entities,
        tenants.len()
    );
    Ok(())
}
