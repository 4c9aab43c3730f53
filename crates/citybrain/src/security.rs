//! Identity at the command line and at start-up: `citybrain bootstrap`, `citybrain keys
//! create|list|revoke`, the authenticator `serve` runs with, and the rule that an
//! unauthenticated citybrain listens on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use citybrain_identity::{Authenticator, KeyStore, NewKey, Oidc};
use citybrain_model::time::{Clock, SystemClock};
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::ConfigArgs;

#[derive(Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The administrator's user id.
    #[arg(long, default_value = "admin")]
    pub user: String,
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and cannot be shown again.
    Create {
        /// The user the key acts for.
        #[arg(long)]
        user: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        name: String,
        /// Roles (repeat or comma-separate): admin, operator, analyst, viewer, or your own.
        #[arg(long, value_delimiter = ',')]
        role: Vec<String>,
        #[arg(long)]
        department: Option<String>,
        /// Tenants the key may act in (default: every tenant).
        #[arg(long, value_delimiter = ',')]
        tenant: Vec<String>,
        /// read, write, admin or * (default *).
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// Expiry: an RFC 3339 time or an ISO 8601 duration from now (P90D).
        #[arg(long)]
        expires: Option<String>,
        /// Print the key alone (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List keys (never their secrets).
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (takes effect in a running server within a second).
    Revoke { id: String },
}

fn key_store(cfg: &Config) -> anyhow::Result<KeyStore> {
    KeyStore::open(&cfg.storage.data_dir).with_context(|| {
        format!(
            "opening the key store in {}",
            cfg.storage.data_dir.display()
        )
    })
}

fn expiry(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Some(t) = citybrain_model::time::parse_datetime(s) {
        return Ok(t);
    }
    let d = citybrain_model::duration::IsoDuration::parse("--expires", s)
        .context("--expires: an RFC 3339 time or an ISO 8601 duration (P90D)")?;
    Ok(now + chrono::Duration::milliseconds(d.approx_millis()))
}

/// `citybrain bootstrap`: the first administrator key, once.
pub fn bootstrap(cfg: &Config, a: &BootstrapArgs) -> anyhow::Result<()> {
    let ks = key_store(cfg)?;
    let now = SystemClock.now();
    if ks.has_active_role("admin", now) {
        bail!(
            "an administrator key exists already in {}; create more with `citybrain keys create --role admin`",
            cfg.storage.data_dir.display()
        );
    }
    let (key, secret) = ks.create(
        NewKey {
            name: "bootstrap administrator".into(),
            user: a.user.clone(),
            roles: vec!["admin".into()],
            ..Default::default()
        },
        now,
    )?;
    println!("{secret}");
    eprintln!(
        "administrator key {} created for user '{}'. It is shown once: keep it safe.\n\
         Use it as `Authorization: Bearer <key>` (or as an MQTT password).",
        key.id, key.user
    );
    Ok(())
}

/// `citybrain keys …`.
pub fn keys(cfg: &Config, a: KeysArgs) -> anyhow::Result<()> {
    let ks = key_store(cfg)?;
    let now = SystemClock.now();
    match a.command {
        KeysCommand::Create {
            user,
            name,
            role,
            department,
            tenant,
            scope,
            expires,
            quiet,
        } => {
            let expires_at = expires.map(|e| expiry(&e, now)).transpose()?;
            let (key, secret) = ks.create(
                NewKey {
                    name,
                    user,
                    roles: role,
                    department,
                    tenants: (!tenant.is_empty()).then_some(tenant),
                    scopes: scope,
                    expires_at,
                },
                now,
            )?;
            println!("{secret}");
            if !quiet {
                eprintln!(
                    "key {} created for '{}' (roles: {}; scopes: {}). It is shown once.",
                    key.id,
                    key.user,
                    key.roles.join(","),
                    key.scopes.join(",")
                );
            }
        }
        KeysCommand::List { json } => {
            let keys = ks.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!("ID               USER          ROLES               SCOPES        STATE     NAME");
                for k in keys {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else if !k.active(now) {
                        "expired"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<16} {:<13} {:<19} {:<13} {:<9} {}",
                        k.id,
                        k.user,
                        k.roles.join(","),
                        k.scopes.join(","),
                        state,
                        k.name
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let k = ks.revoke(&id, now)?;
            eprintln!("key {} of '{}' revoked", k.id, k.user);
        }
    }
    Ok(())
}

/// The authenticator `serve` runs with, or `None` when no credential is configured
/// (the open loopback mode).
pub fn authenticator(cfg: &Config) -> anyhow::Result<Option<Arc<Authenticator>>> {
    let keys = if cfg.auth.api_keys {
        Some(Arc::new(key_store(cfg)?))
    } else {
        None
    };
    let oidc = match &cfg.auth.oidc {
        Some(o) => Some(Oidc::new(o.clone()).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let a = Authenticator::new(keys, oidc, Arc::new(SystemClock));
    Ok(a.configured().then(|| Arc::new(a)))
}

/// The access policies and classification kept in the store, with the pseudonym keys
/// of `<data_dir>/security`.
pub fn governance(
    cfg: &Config,
    store: &citybrain_store::EmbeddedStore,
) -> anyhow::Result<Arc<citybrain_policy::Governance>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys =
        citybrain_policy::PseudonymKeys::open(&cfg.storage.data_dir.join("security"), clock.now())?;
    let default = citybrain_policy::Class {
        level: cfg.governance.default_level,
        owner: cfg.governance.default_owner.clone(),
        sharing: citybrain_policy::Sharing::Conditional,
    };
    let g = citybrain_policy::Governance::with_store(
        clock,
        Arc::new(keys),
        Arc::new(store.clone()),
        Some(default),
    )?;
    tracing::info!(
        policies = g.policies().version,
        "access policies in force (version 0: the default roles)"
    );
    Ok(Arc::new(g))
}

/// An unauthenticated citybrain listens on loopback only: anyone who reaches it may
/// read and change every tenant's data.
pub fn check_exposure(
    auth: Option<&Authenticator>,
    http: SocketAddr,
    mqtt: Option<SocketAddr>,
) -> anyhow::Result<()> {
    if auth.is_some() {
        return Ok(());
    }
    let exposed: Vec<String> = std::iter::once(("HTTP", http))
        .chain(mqtt.map(|m| ("MQTT", m)))
        .filter(|(_, a)| !a.ip().is_loopback())
        .map(|(what, a)| format!("{what} on {a}"))
        .collect();
    if exposed.is_empty() {
        return Ok(());
    }
    bail!(
        "refusing to listen ({}) without authentication: anyone who can reach it could read \
         and change every tenant's data.\n\
         Create an administrator key first:   citybrain bootstrap --data-dir <the same data dir>\n\
         or configure an OpenID Connect issuer under [auth.oidc] (see citybrain.example.toml and docs/security.md).\n\
         To try citybrain on this machine only, listen on 127.0.0.1.",
        exposed.join(", ")
    )
}

/// Where outbound requests may go: everywhere when citybrain listens on loopback only
/// (unless configured otherwise), else public destinations and `egress.allow`.
pub fn egress(cfg: &Config) -> anyhow::Result<Arc<citybrain_egress::EgressPolicy>> {
    let local = cfg.server.listen.ip().is_loopback()
        && (!cfg.mqtt.enabled || cfg.mqtt.listen.ip().is_loopback());
    Ok(Arc::new(if cfg.egress.allow_internal.unwrap_or(local) {
        citybrain_egress::EgressPolicy::open()
    } else {
        citybrain_egress::EgressPolicy::strict(&cfg.egress.allow)?
    }))
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every root from the entries and check every signed checkpoint; exits
    /// non-zero on any modified, deleted, inserted or reordered entry or forked
    /// checkpoint.
    Verify {
        /// A verifier key pinned outside the platform (`citybrain audit key` printed
        /// it); default: the key in the data directory.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print the verifier key (to pin with witnesses or an external ledger).
    Key,
}

/// The audit log of the data directory.
pub fn audit_log(cfg: &Config) -> anyhow::Result<Arc<citybrain_audit::AuditLog>> {
    let dir = &cfg.storage.data_dir;
    Ok(citybrain_audit::AuditLog::open(
        &dir.join("audit"),
        &dir.join("security"),
    )?)
}

/// `citybrain audit …`.
pub fn audit(cfg: &Config, a: AuditArgs) -> anyhow::Result<()> {
    let dir = &cfg.storage.data_dir;
    match a.command {
        AuditCommand::Key => {
            let log = audit_log(cfg)?;
            println!("{}", log.verifier_key());
            Ok(())
        }
        AuditCommand::Verify { key } => {
            let r =
                citybrain_audit::verify(&dir.join("audit"), &dir.join("security"), key.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if r.problems.is_empty() {
                eprintln!(
                    "audit log verified: {} entries, {} checkpoints, {} entries after the newest checkpoint",
                    r.entries, r.checkpoints, r.unsigned_tail
                );
                Ok(())
            } else {
                bail!(
                    "the audit log does not verify: {} problems",
                    r.problems.len()
                )
            }
        }
    }
}

/// Signs a checkpoint every second when the log grew, and verifies the whole log
/// against its signed checkpoints at start and every `verify_every` (0: never): a
/// failure opens a critical security incident. Both run in this one task, so no
/// checkpoint is written while a verification reads the files.
pub async fn checkpoints(
    log: Arc<citybrain_audit::AuditLog>,
    data_dir: std::path::PathBuf,
    hub: Arc<citybrain_hub::Hub>,
    verify_every: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next_verify = (!verify_every.is_zero()).then(std::time::Instant::now);
    loop {
        tick.tick().await;
        if next_verify.is_some_and(|t| std::time::Instant::now() >= t) {
            next_verify = Some(std::time::Instant::now() + verify_every);
            let dir = data_dir.clone();
            let report = tokio::task::spawn_blocking(move || {
                citybrain_audit::verify(&dir.join("audit"), &dir.join("security"), None)
            })
            .await;
            let problem = match report {
                Ok(Ok(r)) if r.problems.is_empty() => {
                    tracing::info!(
                        entries = r.entries,
                        checkpoints = r.checkpoints,
                        "audit log verified"
                    );
                    None
                }
                Ok(Ok(r)) => Some(format!(
                    "{} problems, the first: {}",
                    r.problems.len(),
                    r.problems.first().map(String::as_str).unwrap_or_default()
                )),
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("the verification stopped: {e}")),
            };
            if let Some(p) = problem {
                file_security_incident(
                    &hub,
                    "",
                    format!("Audit log verification failed: {p}"),
                    citybrain_rules::Severity::Critical,
                )
                .await;
            }
        }
        let l = log.clone();
        match tokio::task::spawn_blocking(move || l.checkpoint()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint failed"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
        }
    }
}

/// Opens a security incident (category `security`: a 72-hour reporting deadline).
async fn file_security_incident(
    hub: &citybrain_hub::Hub,
    tenant: &str,
    title: String,
    severity: citybrain_rules::Severity,
) {
    tracing::warn!(%title, "security incident");
    let rc = citybrain_access::RequestContext::service(tenant, citybrain_access::Principal::SYSTEM);
    let incident = citybrain_hub::NewIncident {
        category: citybrain_hub::sla::SECURITY.into(),
        title,
        severity: Some(severity),
        location: None,
        entities: Vec::new(),
        tasks: Vec::new(),
    };
    if let Err(e) = hub.open_incident(&rc, incident).await {
        tracing::error!(error = %e, "the security incident could not be filed");
    }
}

/// Watches refusals (failed credentials, policy denials) for bursts: more than
/// `threshold` in a minute opens a security incident, at most one per quarter hour.
pub struct SecurityWatch {
    threshold: u64,
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
    last_alert: Option<std::time::Instant>,
}

impl SecurityWatch {
    pub fn new(threshold: u64) -> Self {
        SecurityWatch {
            threshold,
            samples: Default::default(),
            last_alert: None,
        }
    }

    /// Takes the refusal count at `now`; the incident's title when a burst is on.
    pub fn observe(&mut self, now: std::time::Instant, refusals: u64) -> Option<String> {
        const WINDOW: Duration = Duration::from_secs(60);
        const QUIET: Duration = Duration::from_secs(15 * 60);
        self.samples.push_back((now, refusals));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            self.samples.pop_front();
        }
        let oldest = self.samples.front().map_or(refusals, |(_, n)| *n);
        let burst = refusals.saturating_sub(oldest);
        let quiet = self
            .last_alert
            .is_none_or(|t| now.duration_since(t) >= QUIET);
        if self.threshold > 0 && burst > self.threshold && quiet {
            self.last_alert = Some(now);
            return Some(format!(
                "Burst of refused requests: {burst} failed credentials or policy denials within a minute"
            ));
        }
        None
    }
}

/// Every 10 s: a burst of refusals opens a security incident in the hub (category
/// `security`: a 72-hour reporting deadline unless the SLA policy names another).
pub async fn watch_refusals(
    auth: Arc<Authenticator>,
    hub: Arc<citybrain_hub::Hub>,
    threshold: u64,
) {
    let mut watch = SecurityWatch::new(threshold);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let Some(title) = watch.observe(std::time::Instant::now(), auth.stats.refusals()) else {
            continue;
        };
        file_security_incident(&hub, "", title, citybrain_rules::Severity::High).await;
    }
}

/// Every 10 s: consumers that ran out of privacy budget open a security incident in
/// the dataset's tenant (category `security`), one per dataset and consumer a day: an
/// exhausted budget is what a reconstruction attack on open data looks like.
pub async fn watch_budgets(catalog: Arc<citybrain_catalog::Catalog>, hub: Arc<citybrain_hub::Hub>) {
    let mut told: std::collections::HashMap<
        (String, String, String),
        chrono::DateTime<chrono::Utc>,
    > = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        for x in catalog.take_exhaustions() {
            let key = (x.tenant.clone(), x.dataset.clone(), x.consumer.clone());
            if told
                .get(&key)
                .is_some_and(|t| x.at - *t < chrono::Duration::hours(24))
            {
                continue;
            }
            told.insert(key, x.at);
            file_security_incident(
                &hub,
                &x.tenant,
                budget_incident_title(&x),
                citybrain_rules::Severity::Medium,
            )
            .await;
        }
        // Forget what is older than a day (the map stays as small as a day's alerts).
        if let Some(now) = told.values().max().copied() {
            told.retain(|_, t| now - *t < chrono::Duration::hours(24));
        }
    }
}

fn budget_incident_title(x: &citybrain_catalog::Exhaustion) -> String {
    format!(
        "Privacy budget exhausted: {} on dataset '{}' (more requests refused)",
        x.consumer, x.dataset
    )
}

/// Re-reads the key file when `citybrain keys` changed it (a revocation takes effect
/// within a second).
pub async fn watch_keys(ks: Arc<KeyStore>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        match ks.refresh() {
            Ok(true) => tracing::info!(keys = ks.list().len(), "API keys reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "the key file could not be read; the keys last read stay in force")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_mode_stays_on_loopback() {
        let lo: SocketAddr = "127.0.0.1:1026".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1026".parse().unwrap();
        let mq: SocketAddr = "0.0.0.0:1883".parse().unwrap();
        assert!(check_exposure(None, lo, Some("127.0.0.1:1883".parse().unwrap())).is_ok());
        let e = check_exposure(None, any, None).unwrap_err().to_string();
        assert!(
            e.contains("HTTP on 0.0.0.0:1026") && e.contains("citybrain bootstrap"),
            "{e}"
        );
        let e = check_exposure(None, lo, Some(mq)).unwrap_err().to_string();
        assert!(e.contains("MQTT on 0.0.0.0:1883"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ks = Arc::new(KeyStore::open(dir.path()).unwrap());
        let a = Authenticator::new(Some(ks), None, Arc::new(SystemClock));
        assert!(check_exposure(Some(&a), any, Some(mq)).is_ok());
    }

    #[test]
    fn a_burst_of_refusals_raises_one_incident_per_quarter_hour() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = SecurityWatch::new(50);
        assert!(
            w.observe(at(0), 1000).is_none(),
            "the first sample is the baseline"
        );
        assert!(w.observe(at(10), 1030).is_none());
        let title = w.observe(at(20), 1060).expect("60 refusals in 20 s");
        assert!(title.contains("60"), "{title}");
        // Still bursting: no second incident within the quarter hour.
        assert!(w.observe(at(30), 1200).is_none());
        // A slow trickle never raises one.
        let mut slow = SecurityWatch::new(50);
        for i in 0..100 {
            assert!(slow.observe(at(i * 10), i * 5).is_none());
        }
        // Off when the threshold is 0.
        let mut off = SecurityWatch::new(0);
        assert!(off.observe(at(0), 0).is_none() && off.observe(at(1), 1_000_000).is_none());
    }

    #[test]
    fn expiry_takes_a_time_or_a_duration() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(expiry("P1D", now).unwrap(), now + chrono::Duration::days(1));
        assert_eq!(
            expiry("2027-01-01T00:00:00Z", now).unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert!(expiry("soon", now).is_err());
    }
}
