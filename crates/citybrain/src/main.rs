//! The citybrain binary: parses the command line, loads the layered configuration, wires
//! the store, broker and HTTP API together, and runs until SIGINT/SIGTERM.

mod backup;
mod config;
mod deadletters;
mod demo;
mod edge;
mod export;
mod forecast;
mod forecast_live;
mod import;
mod security;
mod tasks;
mod twin;
mod twin_live;
mod twin_scenarios;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use citybrain_api::HttpLimits;
use citybrain_broker::{Broker, BrokerConfig, ContextSettings, DispatchSettings, Limits};
use citybrain_ingest::deadletter::DeadLetters;
use citybrain_ingest::{Ingest, IngestSettings};
use citybrain_model::time::SystemClock;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// mimalloc: size-class pages without per-allocation headers. The state is millions of
/// small allocations; measured against glibc malloc in docs/benchmarks.md (memory).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "citybrain",
    version,
    about = "citybrain: an open-source city operations platform (NGSI-LD context broker and more)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print the effective configuration (all layers applied) as TOML.
    PrintConfig(ConfigArgs),
    /// Write a time range of chosen history series as CSV (the server must be stopped).
    Export(export::ExportArgs),
    /// Import CSV, JSON, JSON Lines or XML files through a mapping (the server must be
    /// stopped; resumable after an interruption).
    Import(import::ImportArgs),
    /// List, inspect, replay or delete dead letters of a running server.
    Deadletters(deadletters::DeadLetterArgs),
    /// Edge mode: map and thin sensor data by the sensors, forward it to a central
    /// citybrain (store-and-forward over HTTP).
    Edge(ServeArgs),
    /// Create the first administrator's API key (printed once).
    Bootstrap(security::BootstrapArgs),
    /// Create, list or revoke API keys (works while the server runs).
    Keys(security::KeysArgs),
    /// Verify the audit log against its signed checkpoints, or print its verifier key.
    Audit(security::AuditArgs),
    /// The traffic digital twin (Eclipse SUMO): scenarios and headless episodes.
    Twin(twin::TwinArgs),
    /// Traffic forecasting: evaluate the models on a series.
    Forecast(forecast::ForecastArgs),
    /// Take a consistent online backup of the data directory (state, history, rules,
    /// incidents) under storage.backup_dir, while the server runs or not.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data directory (the server must be stopped).
    Restore(backup::RestoreArgs),
}

#[derive(Args)]
pub struct ConfigArgs {
    /// A TOML configuration file (see citybrain.example.toml).
    #[arg(long, env = "CITYBRAIN_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:1026).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Data directory (default ./citybrain-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address of the embedded MQTT server (default 127.0.0.1:1883).
    #[arg(long)]
    mqtt_listen: Option<SocketAddr>,
    /// Load the demo district (a few hundred entities) on first start.
    #[arg(long)]
    demo: bool,
}

pub(crate) fn load_config(a: &ConfigArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(a.config.as_deref(), std::env::vars())?;
    if let Some(l) = a.listen {
        cfg.server.listen = l;
    }
    if let Some(d) = &a.data_dir {
        cfg.storage.data_dir = d.clone();
    }
    Ok(cfg)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::PrintConfig(a) => {
            let cfg = load_config(&a)?;
            print!("{}", toml::to_string_pretty(&cfg)?);
            Ok(())
        }
        Command::Export(a) => {
            let cfg = load_config(&a.config)?;
            let (_lock, store) = open_data_dir(&cfg)?;
            let res = export::run(&store, &a);
            store.close();
            let (series, rows) = res?;
            eprintln!("exported {rows} rows from {series} series");
            Ok(())
        }
        Command::Import(a) => {
            let cfg = load_config(&a.config)?;
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(import::run(cfg, a))
        }
        Command::Edge(a) => {
            let mut cfg = load_config(&a.config)?;
            if let Some(m) = a.mqtt_listen {
                cfg.mqtt.listen = m;
            }
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(edge::run(cfg))
        }
        Command::Bootstrap(a) => security::bootstrap(&load_config(&a.config)?, &a),
        Command::Audit(a) => {
            let cfg = load_config(&a.config)?;
            security::audit(&cfg, a)
        }
        Command::Twin(a) => twin::twin(a),
        Command::Forecast(a) => forecast::forecast(a),
        Command::Backup(a) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(backup::backup(a))
        }
        Command::Restore(a) => backup::restore(a),
        Command::Keys(a) => {
            let cfg = load_config(&a.config)?;
            security::keys(&cfg, a)
        }
        Command::Deadletters(a) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(deadletters::run(a))
        }
        Command::Serve(a) => {
            let mut cfg = load_config(&a.config)?;
            if let Some(m) = a.mqtt_listen {
                cfg.mqtt.listen = m;
            }
            // The demo brings the example mappings when run from a checkout.
            let examples = PathBuf::from("examples/mappings");
            if a.demo && cfg.ingest.mappings_dir.is_none() && examples.is_dir() {
                cfg.ingest.mappings_dir = Some(examples);
            }
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(cfg, a.demo))
        }
    }
}

/// A status line on standard output (what scripts and tests wait for). A closed
/// stdout (the reader went away) is not a reason to stop the server.
pub fn status_line(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

pub(crate) fn store_options(cfg: &Config) -> anyhow::Result<StoreOptions> {
    Ok(StoreOptions {
        dir: cfg.storage.data_dir.clone(),
        snapshot_after_bytes: cfg.storage.snapshot_after_bytes,
        value_index: cfg.storage.value_index,
        spatial_index: cfg.storage.spatial_index,
        history_checkpoint_points: cfg.history.checkpoint_points,
        history_retention: cfg
            .history
            .retention
            .iter()
            .map(|r| r.to_policy())
            .collect::<anyhow::Result<_>>()?,
        clock: Arc::new(citybrain_model::time::SystemClock),
        feed_capacity: cfg.storage.feed_capacity,
        faults: None,
    })
}

/// One process per data directory: `serve` and `export` hold `LOCK` (an advisory lock
/// the operating system drops when the process ends, even on kill -9).
pub fn lock_data_dir(cfg: &Config) -> anyhow::Result<std::fs::File> {
    let dir = &cfg.storage.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let f = std::fs::File::create(dir.join("LOCK"))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the data directory {} is in use by another citybrain process",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// The broker over `store`, configured from `cfg`.
pub async fn build_broker(
    cfg: &Config,
    store: &EmbeddedStore,
    public_base: String,
    authorizer: Arc<dyn citybrain_access::Authorizer>,
) -> anyhow::Result<Arc<Broker>> {
    let broker_cfg = BrokerConfig {
        authorizer,
        egress: security::egress(cfg)?,
        backup_dir: Some(cfg.storage.backup_dir.clone()),
        limits: Limits {
            default_limit: cfg.ngsi_ld.default_limit,
            max_limit: cfg.ngsi_ld.max_limit,
            max_batch: cfg.ngsi_ld.max_batch,
            max_instances: cfg.history.max_instances,
        },
        contexts: ContextSettings {
            public_base,
            fetch_timeout: Duration::from_millis(cfg.ngsi_ld.context_fetch_timeout_ms),
            max_bytes: cfg.ngsi_ld.context_max_bytes,
        },
        dispatch: DispatchSettings {
            timeout: Duration::from_millis(cfg.notifications.timeout_ms),
            attempts: cfg.notifications.attempts,
            backoff_start: Duration::from_millis(cfg.notifications.backoff_start_ms),
            queue_capacity: cfg.notifications.queue_capacity,
        },
    };
    let store_dyn: Arc<dyn EntityStore> = Arc::new(store.clone());
    Ok(Broker::new(store_dyn, Arc::new(SystemClock), broker_cfg).await)
}

/// The ingestion pipeline with the configured mappings directory, or `None` when no
/// directory is configured. A mapping error stops the start (naming file and line).
fn build_ingest(cfg: &Config, broker: &Arc<Broker>) -> anyhow::Result<Option<Arc<Ingest>>> {
    let wanted = cfg.ingest.mappings_dir.is_some() || cfg.mqtt.enabled || cfg.mqtt_client.enabled;
    if !wanted {
        return Ok(None);
    }
    let dead = Arc::new(DeadLetters::open_with(
        &cfg.ingest.deadletters_dir(&cfg.storage.data_dir),
        cfg.ingest.deadletter_retention()?,
        Some(citybrain_model::time::Clock::now(
            &citybrain_model::time::SystemClock,
        )),
    )?);
    let ing = Ingest::new(
        broker.clone(),
        dead,
        IngestSettings {
            mappings_dir: cfg.ingest.mappings_dir.clone(),
            max_payload_bytes: cfg.ingest.max_payload_bytes,
        },
    )
    .with_context(|| match &cfg.ingest.mappings_dir {
        Some(d) => format!("loading the mappings in {}", d.display()),
        None => "starting ingestion".into(),
    })?;
    Ok(Some(Arc::new(ing)))
}

/// Starts the embedded MQTT server and the client mode as configured, and enables
/// `mqtt://` notification endpoints.
async fn start_mqtt(
    cfg: &Config,
    broker: &Arc<Broker>,
    ing: &Arc<Ingest>,
    tasks: &tasks::Supervisor,
    auth: Option<&Arc<citybrain_identity::Authenticator>>,
) -> anyhow::Result<Option<citybrain_ingest::mqtt::MqttServer>> {
    use citybrain_ingest::mqtt::{client, notify::MqttNotifier, MqttServer};
    let server = if cfg.mqtt.enabled {
        let mut settings = cfg.mqtt.settings();
        settings.credentials = auth.cloned();
        if let (Some(c), Some(k)) = (&cfg.mqtt.tls_cert, &cfg.mqtt.tls_key) {
            settings.tls = Some(citybrain_identity::tls::server_config(c, k)?);
        }
        let s = MqttServer::start(settings, ing.clone())
            .await
            .with_context(|| {
                format!(
                    "starting the MQTT server on {} (set mqtt.listen, --mqtt-listen, or mqtt.enabled = false)",
                    cfg.mqtt.listen
                )
            })?;
        Some(s)
    } else {
        None
    };
    let local = server.as_ref().map(|s| (s.addr, s.hub.clone()));
    broker
        .subscriptions
        .set_mqtt_transport(Arc::new(MqttNotifier::new(local)));
    if cfg.mqtt_client.enabled {
        let c = &cfg.mqtt_client;
        tasks.spawn(
            "mqtt-client",
            client::run(
                client::ClientSettings {
                    host: c.host.clone(),
                    port: c.port,
                    client_id: c.client_id.clone(),
                    username: c.username.clone(),
                    password: c.password.clone(),
                    topics: c.topics.clone(),
                    qos: c.qos,
                    max_packet_bytes: cfg.mqtt.max_packet_bytes,
                },
                ing.clone(),
            ),
        );
        tracing::info!(host = %c.host, port = c.port, "MQTT client mode started");
    }
    Ok(server)
}

/// Writes edge-rule windows that have ended, every second (a quiet sensor's last
/// window is written too).
pub async fn window_flush(ing: Arc<Ingest>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Err(e) = ing.flush_due_windows(Duration::from_secs(2)).await {
            tracing::error!(error = %e, "writing closed windows failed");
        }
    }
}

/// SIGHUP re-reads the mappings (a bad file is logged and the running mappings stay).
#[cfg(unix)]
pub async fn reload_on_sighup(ing: Arc<Ingest>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return std::future::pending().await;
    };
    while hup.recv().await.is_some() {
        match ing.reload() {
            Ok(n) => tracing::info!(mappings = n, "mappings reloaded (SIGHUP)"),
            Err(e) => {
                tracing::error!(error = %e, "mapping reload failed; keeping the running mappings")
            }
        }
    }
}

/// Locks the data directory and opens the store in it (serve, export, import). The
/// lock is held as long as the returned file lives.
pub fn open_data_dir(cfg: &Config) -> anyhow::Result<(std::fs::File, EmbeddedStore)> {
    let lock = lock_data_dir(cfg)?;
    let store = EmbeddedStore::open(store_options(cfg)?).with_context(|| {
        format!(
            "opening the data directory {}",
            cfg.storage.data_dir.display()
        )
    })?;
    Ok((lock, store))
}

async fn serve(cfg: Config, demo: bool) -> anyhow::Result<()> {
    let auth = security::authenticator(&cfg)?;
    security::check_exposure(
        auth.as_deref(),
        cfg.server.listen,
        cfg.mqtt.enabled.then_some(cfg.mqtt.listen),
    )?;
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(c), Some(k)) => Some(citybrain_api::serve::tls_config(c, k)?),
        _ => None,
    };
    let (_lock, store) = open_data_dir(&cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    let public_base = cfg.server.public_url.clone().unwrap_or_else(|| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    });
    let governance = match &auth {
        Some(_) => Some(security::governance(&cfg, &store)?),
        None => {
            tracing::warn!("no API keys and no OIDC issuer: authentication is off and every local caller may do everything (run `citybrain bootstrap` to turn it on)");
            None
        }
    };
    let audit = match cfg.audit.enabled.unwrap_or(auth.is_some()) {
        true => Some(security::audit_log(&cfg)?),
        false => None,
    };
    let authorizer: Arc<dyn citybrain_access::Authorizer> = match &governance {
        Some(g) => Arc::new(citybrain_access::Limited(g.clone())),
        None => Arc::new(citybrain_access::AllowAll),
    };
    let broker = build_broker(&cfg, &store, public_base, authorizer).await?;
    let tasks = tasks::Supervisor::new();
    if let Some(ks) = auth.as_ref().and_then(|a| a.keys()) {
        tasks.spawn("key-watch", security::watch_keys(ks.clone()));
    }
    for (name, task) in broker.background() {
        tasks.spawn(name, task);
    }
    if demo {
        let n = demo::load_once(&broker, &store).await?;
        if n > 0 {
            tracing::info!(entities = n, "demo district loaded");
        }
    }
    let ingest = build_ingest(&cfg, &broker)?;
    #[cfg(unix)]
    if let Some(ing) = &ingest {
        tasks.spawn("mapping-reload", reload_on_sighup(ing.clone()));
    }
    let mqtt = match &ingest {
        Some(ing) => {
            tasks.spawn("window-flush", window_flush(ing.clone()));
            start_mqtt(&cfg, &broker, ing, &tasks, auth.as_ref()).await?
        }
        None => {
            // No ingestion and no MQTT server: `mqtt://` notification endpoints still
            // work, through client connections to the brokers they name.
            broker.subscriptions.set_mqtt_transport(Arc::new(
                citybrain_ingest::mqtt::notify::MqttNotifier::new(None),
            ));
            None
        }
    };
    // The coordination hub: rules (stored as documents) on the change feed. Without
    // rules it costs one idle change-feed consumer.
    // Subscribed before the hub rebuilds its rule states from the entities as they
    // are: a change made meanwhile is evaluated (at worst seen twice), never missed.
    let feed = store.subscribe();
    let hub = citybrain_hub::Hub::with_authorizer(
        Arc::new(store.clone()),
        broker.clock().clone(),
        broker.authorizer().clone(),
    )?;
    if let Some(g) = &governance {
        let flags = hub.emergency_flags();
        g.set_mode_source(Arc::new(move |tenant: &str| flags.contains(tenant)));
    }
    let h = hub.clone();
    tasks.spawn_draining("rules", move |stop| h.run_until(feed, Some(stop)));
    if cfg.forecast.enabled {
        let feed = store.subscribe();
        let (f, b) = (cfg.forecast.clone(), broker.clone());
        let s: Arc<dyn EntityStore> = Arc::new(store.clone());
        tasks.spawn_draining("forecasts", move |stop| {
            forecast_live::run(f, s, feed, b, stop)
        });
    }
    tasks.spawn("sla-checks", hub.clone().run_ticks());
    if let Some(a) = &auth {
        tasks.spawn(
            "security-watch",
            security::watch_refusals(a.clone(), hub.clone(), cfg.auth.alert_refusals_per_minute),
        );
    }
    if demo {
        let n = demo::load_hub(&hub).await?;
        if n > 0 {
            tracing::info!(
                rules = n,
                "demo rules, routing, SLAs and Open311 services loaded"
            );
        }
    }
    if let Some(a) = &audit {
        tasks.spawn(
            "audit-checkpoints",
            security::checkpoints(
                a.clone(),
                cfg.storage.data_dir.clone(),
                hub.clone(),
                Duration::from_secs(cfg.audit.verify_every_secs),
            ),
        );
    }
    let catalog = Arc::new(
        citybrain_catalog::Catalog::new(
            broker.clone(),
            Arc::new(store.clone()),
            governance.clone(),
            cfg.catalog.clone(),
        )
        .with_base_url(cfg.server.public_url.clone()),
    );
    tasks.spawn(
        "privacy-watch",
        security::watch_budgets(catalog.clone(), hub.clone()),
    );
    if demo {
        let n = demo::load_catalog(&catalog).await?;
        if n > 0 {
            tracing::info!(datasets = n, "demo datasets defined");
        }
    }
    let mut scenarios: Option<Arc<dyn citybrain_api::scenarios::Scenarios>> = None;
    if let Some(sumo) = twin_live::wanted(&cfg.twin, demo) {
        if ingest.is_some() {
            scenarios = what_ifs(&sumo, &cfg, broker.clock().clone()).await;
        }
        match &ingest {
            Some(ing) => tasks.spawn(
                "twin",
                twin_live::run(
                    sumo,
                    cfg.twin.clone(),
                    cfg.storage.data_dir.clone(),
                    ing.clone(),
                    broker.clone(),
                    hub.clone(),
                ),
            ),
            None => tracing::error!(
                "the traffic twin is off: ingestion is off (set ingest.mappings_dir to a directory with examples/mappings/sumo-*.yaml)"
            ),
        }
    }
    let subscriptions = broker.subscriptions.clone();
    let federation_settings = citybrain_federation::FederationSettings {
        timeout: Duration::from_millis(cfg.federation.timeout_ms.max(1)),
        max_sources: cfg.federation.max_sources.max(1),
        // Empty: the one kept with the data (chosen at the first start).
        alias: cfg.federation.alias.clone(),
    };
    let federation = citybrain_federation::Federation::new(broker.clone(), federation_settings)
        .await
        .context("federation")?;
    let app = citybrain_api::service(citybrain_api::Parts {
        broker,
        ingest,
        hub: Some(hub),
        auth,
        governance,
        audit: audit.clone(),
        catalog: Some(catalog),
        rate: (cfg.auth.requests_per_second > 0.0).then(|| citybrain_identity::Rate {
            per_second: cfg.auth.requests_per_second,
            burst: cfg.auth.burst.max(1.0),
        }),
        limits: HttpLimits {
            max_body_bytes: cfg.server.max_body_bytes,
            max_json_depth: cfg.server.max_json_depth,
            max_concurrent_requests: cfg.server.max_concurrent_requests,
            request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
        },
        cors_origins: cfg.server.cors_allowed_origins.clone(),
        tls: tls.is_some(),
        scenarios,
        federation: Some(federation),
    });
    let tls_on = tls.is_some();
    tracing::info!(%addr, data_dir = %cfg.storage.data_dir.display(), "citybrain listening");
    let scheme = if tls_on { "https" } else { "http" };
    status_line(&format!("citybrain listening on {scheme}://{addr}"));
    if let Some(m) = &mqtt {
        status_line(&format!("citybrain MQTT listening on mqtt://{}", m.addr));
    }
    citybrain_api::serve::serve(
        listener,
        app,
        citybrain_api::serve::ServeOptions {
            tls,
            header_timeout: Duration::from_secs(cfg.server.header_timeout_secs),
            drain: Duration::from_secs(5),
        },
        shutdown_signal(),
    )
    .await?;
    // Shutdown, in order: the intake has stopped (HTTP above: in-flight requests were
    // answered); then MQTT; then the background tasks, the rule evaluation draining
    // what was acknowledged; then the store writes its final snapshot.
    let started = std::time::Instant::now();
    if let Some(m) = &mqtt {
        m.stop();
    }
    let drained = tasks.shutdown(Duration::from_secs(3)).await;
    // Subscription counters and times, for the next start.
    subscriptions.save_statuses();
    if let Some(a) = &audit {
        if let Err(e) = a.close() {
            tracing::error!(error = %e, "the audit log's last checkpoint could not be signed");
        }
    }
    tokio::task::spawn_blocking(move || store.close()).await?;
    tracing::info!(
        drained,
        seconds = started.elapsed().as_secs_f64(),
        "stopped cleanly"
    );
    Ok(())
}

/// The twin's what-if runs for the API, on the live twin's scenario (the demo grid is
/// generated here the first time); `None`, logged, when the scenario cannot be read.
async fn what_ifs(
    sumo: &citybrain_twin::sumo::Sumo,
    cfg: &config::Config,
    clock: Arc<dyn citybrain_model::time::Clock>,
) -> Option<Arc<dyn citybrain_api::scenarios::Scenarios>> {
    let (sumo, twin, data_dir) = (sumo.clone(), cfg.twin.clone(), cfg.storage.data_dir.clone());
    let made = tokio::task::spawn_blocking(move || {
        let path = twin_live::scenario(&sumo, &twin, &data_dir)?;
        let controller = twin
            .controller
            .parse()
            .map_err(citybrain_twin::TwinError::Config)?;
        twin_scenarios::TwinScenarios::start(
            sumo,
            path,
            controller,
            data_dir.join("twin").join("what-if"),
            clock,
        )
    })
    .await;
    match made {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "what-if runs of the twin are off");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "what-if runs of the twin are off");
            None
        }
    }
}
