//! `citybrain import --mapping MAPPING FILE...`: imports vendor files through a mapping
//! into the data directory (the server must be stopped: the directory lock says so).
//! Files of any size stream with constant memory; a progress bar shows bytes; the
//! summary gives records read, written, filtered, reduced and rejected by reason.
//! Rejected records go to the dead letters (`citybrain deadletters` once the server
//! runs). An interrupted import, started again, resumes after the last durable chunk.

use std::path::PathBuf;
use std::sync::Arc;

use citybrain_ingest::deadletter::DeadLetters;
use citybrain_ingest::import::{import_file, ImportOptions};
use citybrain_ingest::{Ingest, IngestSettings, Summary};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub config: crate::ConfigArgs,
    /// The mapping file (TOML or YAML; docs/mappings.md).
    #[arg(long, short)]
    pub mapping: PathBuf,
    /// Files to import, in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Records per durable write (and per resume point).
    #[arg(long, default_value_t = citybrain_ingest::import::DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Start from the beginning even if an interrupted import of a file was recorded.
    #[arg(long)]
    pub restart: bool,
    /// No progress bar (logs and the summary only).
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(cfg: Config, a: ImportArgs) -> anyhow::Result<()> {
    let mapping = citybrain_ingest::load_file(&a.mapping)?;
    let source = mapping.source.clone();
    let (_lock, store) = crate::open_data_dir(&cfg)?;
    let public = cfg
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    // An offline tool run by the operator on a stopped server: no caller to govern.
    let broker =
        crate::build_broker(&cfg, &store, public, Arc::new(citybrain_access::AllowAll)).await?;
    let dead = Arc::new(DeadLetters::open_with(
        &cfg.ingest.deadletters_dir(&cfg.storage.data_dir),
        cfg.ingest.deadletter_retention()?,
        Some(citybrain_model::time::Clock::now(
            &citybrain_model::time::SystemClock,
        )),
    )?);
    let ing = Ingest::new(
        broker,
        dead,
        IngestSettings {
            mappings_dir: None,
            max_payload_bytes: cfg.ingest.max_payload_bytes,
        },
    )?;
    ing.install(vec![mapping]);
    let state_dir = cfg.storage.data_dir.join("imports");
    if a.restart {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let opts = ImportOptions {
        chunk: a.chunk,
        state_dir: Some(state_dir),
    };
    let mut total = Summary::default();
    let started = std::time::Instant::now();
    let mut result = Ok(());
    for f in &a.files {
        let bar = if a.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(f.display().to_string());
        let b2 = bar.clone();
        let res = import_file(&ing, &source, f, &opts, &mut |p| {
            b2.set_position(p.bytes_read);
            if p.resumed_from > 0 {
                b2.set_message(format!(
                    "{} (resumed after {} records)",
                    f.display(),
                    p.resumed_from
                ));
            }
        })
        .await;
        bar.finish_and_clear();
        match res {
            Ok(s) => {
                print_summary(&f.display().to_string(), &s);
                total.add(&s);
            }
            Err(e) => {
                result = Err(anyhow::anyhow!("{}: {e}", f.display()));
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if a.files.len() > 1 {
        print_summary("all files", &total);
    }
    println!(
        "{} records in {:.2} s ({:.0} records/s)",
        total.read,
        secs,
        total.read as f64 / secs.max(1e-9)
    );
    drop(ing);
    tokio::task::spawn_blocking(move || store.close()).await?;
    result
}

fn print_summary(name: &str, s: &Summary) {
    println!(
        "{name}: read {}, written {} ({} new entities), filtered {}, reduced {}, rejected {}",
        s.read,
        s.written,
        s.created,
        s.filtered,
        s.reduced,
        s.rejected_total()
    );
    for (reason, n) in &s.rejected {
        println!("  rejected {reason}: {n}");
    }
    if !s.dead_letters.is_empty() {
        println!(
            "  dead letters: {} (see `citybrain deadletters list`)",
            s.dead_letters
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
