//! `citybrain deadletters`: list, show, replay and delete the dead letters of a running
//! server, through its `/ingest/deadletters` API.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args)]
pub struct DeadLetterArgs {
    /// The server's base URL.
    #[arg(long, env = "CITYBRAIN_URL", default_value = "http://127.0.0.1:1026")]
    pub server: String,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand)]
pub enum Action {
    /// List dead letters (oldest first).
    List {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Show one letter with its payload.
    Show { id: u64 },
    /// Replay letters through the current mappings (all matching when no id is given).
    Replay {
        ids: Vec<u64>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete letters.
    Delete { ids: Vec<u64> },
}

async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("the server answered {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

pub async fn run(a: DeadLetterArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = a.server.trim_end_matches('/');
    let url = format!("{base}/ingest/deadletters");
    match a.action {
        Action::List {
            source,
            reason,
            limit,
            offset,
        } => {
            let mut q = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            if let Some(s) = source {
                q.push(("source", s));
            }
            if let Some(r) = reason {
                q.push(("reason", r));
            }
            let v = check(http.get(&url).query(&q).send().await?).await?;
            println!("{} dead letters", v["total"]);
            for l in v["letters"].as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {}  {:<14} {:<13} {:>8} B  {}",
                    l["id"],
                    l["at"].as_str().unwrap_or_default(),
                    l["source"].as_str().unwrap_or_default(),
                    l["reason"].as_str().unwrap_or_default(),
                    l["size"],
                    l["message"].as_str().unwrap_or_default()
                );
            }
        }
        Action::Show { id } => {
            let v = check(http.get(format!("{url}/{id}")).send().await?).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Action::Replay {
            ids,
            source,
            reason,
        } => {
            let body = if ids.is_empty() {
                json!({"source": source, "reason": reason})
            } else {
                json!({ "ids": ids })
            };
            let body = strip_nulls(body);
            let v = check(
                http.post(format!("{url}/replay"))
                    .json(&body)
                    .send()
                    .await?,
            )
            .await?;
            println!("replayed {}, failed {}", v["replayed"], v["failed"]);
            for r in v["results"].as_array().into_iter().flatten() {
                if r["replayed"] != json!(true) {
                    println!("  {} failed again: {}", r["id"], r["summary"]["rejected"]);
                }
            }
        }
        Action::Delete { ids } => {
            for id in ids {
                check(http.delete(format!("{url}/{id}")).send().await?).await?;
                println!("deleted {id}");
            }
        }
    }
    Ok(())
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}
