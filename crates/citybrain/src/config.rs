//! One layered configuration: defaults → TOML file → `CITYBRAIN_SECTION__KEY` environment
//! variables → command-line flags. Unknown keys are rejected at every layer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub history: History,
    pub ngsi_ld: NgsiLd,
    pub notifications: Notifications,
    pub federation: Federation,
    pub ingest: Ingest,
    pub mqtt: Mqtt,
    pub mqtt_client: MqttClient,
    pub edge: Edge,
    pub auth: Auth,
    pub governance: Governance,
    pub egress: Egress,
    pub audit: Audit,
    /// What the data catalogue says of itself (DCAT-AP `dcat:Catalog`).
    pub catalog: citybrain_catalog::CatalogInfo,
    pub twin: Twin,
    pub forecast: Forecast,
    pub log: Log,
}

/// Live forecasts of a city's own detectors from the change feed (docs/forecast.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forecast {
    pub enabled: bool,
    /// The entity type and numeric attribute forecast (short names).
    pub entity_type: String,
    pub attribute: String,
    /// Forecast attributes are named `{output_prefix}In{minutes}min`.
    pub output_prefix: String,
    /// Observations are averaged over intervals of this many seconds; one interval is
    /// one step of the forecaster.
    pub interval_secs: i64,
    pub horizons_minutes: Vec<u64>,
}

impl Default for Forecast {
    fn default() -> Self {
        Self {
            enabled: true,
            entity_type: "TrafficFlowObserved".into(),
            attribute: "averageVehicleSpeed".into(),
            output_prefix: "speed".into(),
            interval_secs: 300,
            horizons_minutes: vec![5, 15, 30, 60],
        }
    }
}

/// The live traffic twin (Eclipse SUMO) that `serve` runs beside the platform
/// (docs/twin.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Twin {
    /// Run the twin: `true` always, `false` never; unset: with `--demo` when SUMO is
    /// installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A SUMO configuration to run; unset: the demo grid, generated once into
    /// `<data_dir>/twin/grid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sumocfg: Option<PathBuf>,
    /// fixed, actuated, max-pressure or webster.
    pub controller: String,
    /// Simulated seconds per wall-clock second (1 = real time).
    pub speed: f64,
    /// Detector readings and indicators every this many simulated seconds.
    pub period_secs: f64,
    /// Where a network without a projection (the demo grid) lies: [lon, lat].
    pub origin: [f64; 2],
    /// Ambulance stations spread over the network, one ambulance each (0: no
    /// emergency response). An open incident of one of `ambulance_categories` with
    /// a place on the network dispatches the nearest available one.
    pub ambulances: usize,
    pub ambulance_categories: Vec<String>,
    /// The department a dispatch routes an incident to when it has none.
    pub ambulance_department: String,
    /// Signals give ambulances on a call green (safely, through the clearances).
    pub preemption: bool,
}

impl Default for Twin {
    fn default() -> Self {
        Self {
            enabled: None,
            sumocfg: None,
            controller: "max-pressure".into(),
            speed: 1.0,
            period_secs: 60.0,
            // West Lake, Hangzhou: beside the demo district.
            origin: [120.165, 30.262],
            ambulances: 4,
            ambulance_categories: vec!["medical".into(), "ambulance".into(), "accident".into()],
            ambulance_department: "ems".into(),
            preemption: true,
        }
    }
}

/// The tamper-evident audit log (`<data_dir>/audit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Keep it. Default: yes when authentication is on (who did what is only known
    /// then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Verify the whole log against its checkpoints at start and this often (0: never);
    /// a failure opens a critical security incident.
    pub verify_every_secs: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            enabled: None,
            verify_every_secs: 3600,
        }
    }
}

/// Where outbound requests (`@context` fetches, notifications) may go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Egress {
    /// Allow loopback, private, link-local (metadata) and other internal addresses.
    /// Default: yes when citybrain listens on loopback only, no otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_internal: Option<bool>,
    /// Internal destinations allowed all the same: CIDR blocks, addresses or host
    /// names (`10.20.0.0/16`, `contexts.city.internal`).
    pub allow: Vec<String>,
}

/// Data classification defaults (the classification itself is managed through
/// `/platform/v1/classification`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Governance {
    /// The level of types and attributes nobody classified: public, internal,
    /// confidential or restricted (or GB/T 43697's general, important, core).
    pub default_level: citybrain_policy::Level,
    /// Their owning department ("" for none).
    pub default_owner: String,
}

impl Default for Governance {
    fn default() -> Self {
        Self {
            default_level: citybrain_policy::Level::Internal,
            default_owner: String::new(),
        }
    }
}

/// Authentication. With neither API keys nor an issuer, citybrain is open to every
/// caller, and then listens on loopback only (`serve` refuses anything else).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Accept the API keys of `<data_dir>/security/keys.json` (`citybrain bootstrap`,
    /// `citybrain keys create`).
    pub api_keys: bool,
    /// Requests per second each principal may make (anonymous callers share one
    /// budget); 0: no limit. Beyond it: 429 with Retry-After.
    pub requests_per_second: f64,
    /// Requests a principal may make at once above its rate.
    pub burst: f64,
    /// Refusals (failed credentials, policy denials) in a minute above which a
    /// security incident is opened in the hub; 0: never.
    pub alert_refusals_per_minute: u64,
    /// Accept bearer tokens of an OpenID Connect issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<citybrain_identity::OidcSettings>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            api_keys: true,
            requests_per_second: 0.0,
            burst: 200.0,
            alert_refusals_per_minute: 100,
            oidc: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on (NGSI-LD brokers conventionally use port 1026).
    pub listen: SocketAddr,
    /// Base URL clients reach this server under (for hosted @context URLs).
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    /// Requests served at once; more get 503 immediately (load shedding).
    pub max_concurrent_requests: usize,
    /// Serve HTTPS with this certificate chain (PEM) and key (PEM); both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Web origins (`https://console.city.example`) allowed to call the API from a
    /// browser; `*` for any; empty: none (no CORS headers).
    pub cors_allowed_origins: Vec<String>,
    /// Most seconds a request with a body may take until its answer starts (408 beyond).
    pub request_timeout_secs: u64,
    /// Seconds a client has to send a request's headers and finish a TLS handshake
    /// (slow clients are disconnected: slowloris).
    pub header_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub data_dir: PathBuf,
    pub snapshot_after_bytes: u64,
    /// Keep a sorted index of scalar attribute values, so `q` comparisons avoid scans.
    pub value_index: bool,
    /// Keep an R-tree of GeoProperty values, so geo-queries avoid scans.
    pub spatial_index: bool,
    /// Where `citybrain backup` and `POST /platform/v1/backups` write backups (one
    /// directory per backup, named by the caller).
    pub backup_dir: PathBuf,
    /// Changes a change-feed consumer (subscriptions, rules) may fall behind before it
    /// is cut off and resumes; also the changes retained for resuming.
    pub feed_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct History {
    /// Write the in-memory history heads to a segment file once they hold this many points.
    pub checkpoint_points: u64,
    /// Most attribute instances one temporal response returns per attribute; more are
    /// paged with 206 Partial Content and Content-Range.
    pub max_instances: usize,
    /// Retention and downsampling per entity type.
    pub retention: Vec<RetentionRule>,
}

/// One retention rule: keep raw points for `raw`, then (optionally) one mean per
/// `rollup_every` until `rollup_keep`. Durations are ISO 8601 (`P30D`, `PT5M`, `P2Y`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Entity type (a term of the core context, a full IRI, or `*`).
    pub entity_type: String,
    pub raw: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_keep: Option<String>,
}

impl RetentionRule {
    /// The engine's form of the rule (durations checked by `Config::validate`).
    pub fn to_policy(&self) -> anyhow::Result<citybrain_store::tsdb::Retention> {
        use citybrain_model::duration::IsoDuration;
        let dur = |field: &str, s: &str| -> anyhow::Result<i64> {
            Ok(IsoDuration::parse(field, s)?.approx_millis())
        };
        let entity_type = if self.entity_type == "*" {
            "*".to_string()
        } else {
            citybrain_model::JsonLdContext::core().expand(&self.entity_type)
        };
        Ok(citybrain_store::tsdb::Retention {
            entity_type,
            raw_ms: dur("history.retention.raw", &self.raw)?,
            rollup_period_ms: self
                .rollup_every
                .as_deref()
                .map(|s| dur("history.retention.rollup_every", s))
                .transpose()?,
            rollup_keep_ms: self
                .rollup_keep
                .as_deref()
                .map(|s| dur("history.retention.rollup_keep", s))
                .transpose()?,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NgsiLd {
    pub default_limit: usize,
    pub max_limit: usize,
    pub max_batch: usize,
    pub context_fetch_timeout_ms: u64,
    pub context_max_bytes: usize,
}

/// Distributed operations over context source registrations (docs/federation.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Federation {
    /// How long a context source may take to answer (a registration's
    /// `management.timeout` overrides it).
    pub timeout_ms: u64,
    /// This broker's name in `Via` headers (loop detection) and its source identity;
    /// empty: a random name chosen at the first start and kept with the data.
    pub alias: String,
    /// Most context sources one request is sent to.
    pub max_sources: usize,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            timeout_ms: 5000,
            alias: String::new(),
            max_sources: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub timeout_ms: u64,
    pub attempts: u32,
    pub backoff_start_ms: u64,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Directory of mapping files (`*.toml`, `*.yaml`); empty: no mappings, `/ingest`
    /// answers 404 for every source. Reloaded by `POST /ingest/reload` or SIGHUP.
    pub mappings_dir: Option<PathBuf>,
    /// Largest payload accepted over HTTP or MQTT; bigger ones become dead letters
    /// (their first bytes kept).
    pub max_payload_bytes: usize,
    /// Where dead letters are kept (default: `<data_dir>/deadletters`).
    pub deadletters_dir: Option<PathBuf>,
    /// Dead letters kept at most; beyond it the oldest go.
    pub deadletters_max_letters: usize,
    /// Bytes of dead letters kept at most; beyond it the oldest go.
    pub deadletters_max_bytes: u64,
    /// Dead letters older than this ISO 8601 duration go ("" keeps them until
    /// replayed or deleted).
    pub deadletters_max_age: String,
}

impl Ingest {
    /// The dead-letter store's retention.
    pub fn deadletter_retention(&self) -> anyhow::Result<citybrain_ingest::deadletter::Retention> {
        let max_age = match self.deadletters_max_age.trim() {
            "" => None,
            s => Some(chrono::Duration::milliseconds(
                citybrain_model::duration::IsoDuration::parse("ingest.deadletters_max_age", s)?
                    .approx_millis(),
            )),
        };
        Ok(citybrain_ingest::deadletter::Retention {
            max_letters: self.deadletters_max_letters,
            max_bytes: self.deadletters_max_bytes,
            max_age,
        })
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Self {
            mappings_dir: None,
            max_payload_bytes: 16 * 1024 * 1024,
            deadletters_dir: None,
            deadletters_max_letters: 100_000,
            deadletters_max_bytes: 1 << 30,
            deadletters_max_age: "P30D".into(),
        }
    }
}

impl Ingest {
    pub fn deadletters_dir(&self, data_dir: &Path) -> PathBuf {
        self.deadletters_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("deadletters"))
    }
}

/// `citybrain edge`: forward mapped data to a central citybrain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Edge {
    /// Base URL of the central citybrain (`http://central:1026`): forwarding over HTTP.
    pub central_url: Option<String>,
    /// Or the central's MQTT server (`mqtt://[user:password@]central:1883`):
    /// forwarding over MQTT, QoS 1.
    pub central_mqtt: Option<String>,
    /// The store-and-forward buffer (default: `<data_dir>/edge-buffer`).
    pub buffer_dir: Option<PathBuf>,
}

/// The embedded MQTT server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Clients without credentials may connect (with the `anonymous_*` filters).
    /// Default: yes when listening on loopback only, no otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    pub anonymous_publish: Vec<String>,
    pub anonymous_subscribe: Vec<String>,
    pub max_packet_bytes: usize,
    pub max_connections: usize,
    /// Messages queued per subscriber before new ones are dropped (counted).
    pub subscriber_queue: usize,
    pub users: Vec<citybrain_ingest::mqtt::MqttUser>,
    /// Serve MQTT over TLS with this certificate chain and key (PEM); both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Publishes per second per principal (0: no limit), and the burst allowed; a
    /// client beyond it is slowed, not dropped.
    pub publishes_per_second: f64,
    pub publish_burst: f64,
}

impl Default for Mqtt {
    fn default() -> Self {
        let d = citybrain_ingest::mqtt::MqttSettings::default();
        Self {
            enabled: true,
            listen: d.listen,
            allow_anonymous: None,
            anonymous_publish: d.anonymous_publish,
            anonymous_subscribe: d.anonymous_subscribe,
            max_packet_bytes: d.max_packet_bytes,
            max_connections: d.max_connections,
            subscriber_queue: d.subscriber_queue,
            users: Vec::new(),
            tls_cert: None,
            tls_key: None,
            publishes_per_second: 0.0,
            publish_burst: 1000.0,
        }
    }
}

impl Mqtt {
    pub fn settings(&self) -> citybrain_ingest::mqtt::MqttSettings {
        citybrain_ingest::mqtt::MqttSettings {
            listen: self.listen,
            allow_anonymous: self
                .allow_anonymous
                .unwrap_or_else(|| self.listen.ip().is_loopback()),
            anonymous_publish: self.anonymous_publish.clone(),
            anonymous_subscribe: self.anonymous_subscribe.clone(),
            users: self.users.clone(),
            max_packet_bytes: self.max_packet_bytes,
            max_connections: self.max_connections,
            subscriber_queue: self.subscriber_queue,
            credentials: None,
            tls: None,
            rate: (self.publishes_per_second > 0.0).then(|| {
                std::sync::Arc::new(citybrain_identity::RateLimiter::new(
                    citybrain_identity::Rate {
                        per_second: self.publishes_per_second,
                        burst: self.publish_burst.max(1.0),
                    },
                ))
            }),
        }
    }
}

/// Client mode: subscribe to an existing broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttClient {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Filters to subscribe; empty: every mapping's topic patterns.
    pub topics: Vec<String>,
    pub qos: u8,
}

impl Default for MqttClient {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "citybrain".into(),
            username: None,
            password: None,
            topics: Vec::new(),
            qos: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter (`info`, `citybrain_store=debug,info`, ...); `RUST_LOG` wins.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1026)),
            public_url: None,
            max_body_bytes: 16 * 1024 * 1024,
            max_json_depth: 64,
            max_concurrent_requests: 4096,
            tls_cert: None,
            tls_key: None,
            cors_allowed_origins: Vec::new(),
            request_timeout_secs: 300,
            header_timeout_secs: 10,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./citybrain-data"),
            snapshot_after_bytes: 256 * 1024 * 1024,
            value_index: true,
            spatial_index: true,
            backup_dir: PathBuf::from("./citybrain-backups"),
            feed_capacity: 65_536,
        }
    }
}

impl Default for History {
    fn default() -> Self {
        Self {
            checkpoint_points: 2_000_000,
            max_instances: 10_000,
            retention: Vec::new(),
        }
    }
}

impl Default for NgsiLd {
    fn default() -> Self {
        Self {
            default_limit: 20,
            max_limit: 1000,
            max_batch: 100_000,
            context_fetch_timeout_ms: 5000,
            context_max_bytes: 1 << 20,
        }
    }
}

impl Default for Notifications {
    fn default() -> Self {
        Self {
            timeout_ms: 5000,
            attempts: 3,
            backoff_start_ms: 200,
            queue_capacity: 10_000,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

const ENV_PREFIX: &str = "CITYBRAIN_";

/// Reads a scalar from an environment variable the way TOML would.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    toml::Value::String(raw.to_string())
}

impl Config {
    /// Loads the layers below the command line. `env` is the process environment (passed
    /// in so tests can supply their own).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table =
            toml::Table::try_from(Config::default()).context("default configuration")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let file_table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing config file {}", path.display()))?;
            merge(&mut table, file_table);
        }
        for (k, v) in env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "CONFIG" {
                continue;
            }
            let Some((section, key)) = rest.split_once("__") else {
                bail!("environment variable {k}: expected {ENV_PREFIX}SECTION__KEY");
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let Some(toml::Value::Table(sec)) = table.get_mut(&section) else {
                bail!("environment variable {k}: unknown section '{section}'");
            };
            sec.insert(key, env_value(&v));
        }
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.ingest.deadletter_retention()?;
        for (name, v) in [
            ("auth.requests_per_second", self.auth.requests_per_second),
            ("mqtt.publishes_per_second", self.mqtt.publishes_per_second),
        ] {
            if !(v.is_finite() && (v == 0.0 || v >= 0.001)) {
                bail!("{name} must be 0 (no limit) or at least 0.001");
            }
        }
        if self.mqtt.tls_cert.is_some() != self.mqtt.tls_key.is_some() {
            bail!("mqtt.tls_cert and mqtt.tls_key go together: give both or neither");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            bail!("server.tls_cert and server.tls_key go together: give both or neither");
        }
        if self.server.request_timeout_secs == 0 || self.server.header_timeout_secs == 0 {
            bail!("server.request_timeout_secs and server.header_timeout_secs must be at least 1");
        }
        for o in &self.server.cors_allowed_origins {
            let ok = o == "*"
                || url::Url::parse(o).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.path() == "/"
                        && !o.ends_with('/')
                        && u.query().is_none()
                });
            if !ok {
                bail!("server.cors_allowed_origins: '{o}' is not an origin such as https://console.city.example (scheme, host, optional port; no path) or *");
            }
        }
        if self.ngsi_ld.default_limit == 0 || self.ngsi_ld.default_limit > self.ngsi_ld.max_limit {
            bail!("ngsi_ld.default_limit must be between 1 and ngsi_ld.max_limit");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be 'text' or 'json'");
        }
        if let Err(e) = self
            .twin
            .controller
            .parse::<citybrain_twin::control::ControllerKind>()
        {
            bail!("twin.controller: {e}");
        }
        if !(self.twin.speed > 0.0 && self.twin.speed <= 10_000.0) {
            bail!("twin.speed must be above 0 and at most 10000 (simulated seconds per second)");
        }
        if !(self.twin.period_secs >= 1.0 && self.twin.period_secs <= 3600.0) {
            bail!("twin.period_secs must be between 1 and 3600");
        }
        let [lon, lat] = self.twin.origin;
        if !((-180.0..=180.0).contains(&lon) && (-85.0..=85.0).contains(&lat)) {
            bail!("twin.origin must be [lon, lat] with lon in -180..180 and lat in -85..85");
        }
        if !(60..=86_400).contains(&self.forecast.interval_secs) {
            bail!("forecast.interval_secs must be between 60 and 86400");
        }
        if self.forecast.horizons_minutes.is_empty()
            || self
                .forecast
                .horizons_minutes
                .iter()
                .any(|m| *m == 0 || *m > 7 * 24 * 60)
        {
            bail!("forecast.horizons_minutes: one or more horizons of 1 minute to a week");
        }
        if self.forecast.entity_type.is_empty() || self.forecast.attribute.is_empty() {
            bail!("forecast.entity_type and forecast.attribute must be named");
        }
        let f = &self.forecast;
        let mut seen = std::collections::BTreeSet::new();
        for m in &f.horizons_minutes {
            if (m * 60) % (f.interval_secs as u64) != 0 || !seen.insert(*m) {
                bail!(
                    "forecast.horizons_minutes: {m} is not a whole number of intervals of {} s, or repeats",
                    f.interval_secs
                );
            }
        }
        let p = &f.output_prefix;
        if !(p.starts_with(|c: char| c.is_ascii_alphabetic())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            bail!("forecast.output_prefix must be a name: letters, digits and _, starting with a letter");
        }
        if self.twin.ambulance_department.trim().is_empty() {
            bail!("twin.ambulance_department must be named");
        }
        if self.notifications.attempts == 0 {
            bail!("notifications.attempts must be at least 1");
        }
        if self.history.max_instances == 0 {
            bail!("history.max_instances must be at least 1");
        }
        for rule in &self.history.retention {
            rule.to_policy()?;
        }
        citybrain_egress::EgressPolicy::strict(&self.egress.allow)?;
        if let Some(o) = &self.auth.oidc {
            o.validate().map_err(anyhow::Error::msg)?;
        }
        if self.mqtt_client.qos > 1 {
            bail!("mqtt_client.qos must be 0 or 1");
        }
        for (i, u) in self.mqtt.users.iter().enumerate() {
            if u.password.is_none() && u.token.is_none() {
                bail!(
                    "mqtt.users[{i}] ('{}') needs a password or a token",
                    u.username
                );
            }
            for f in u.publish.iter().chain(&u.subscribe) {
                if !citybrain_ingest::mqtt::valid_filter(f) {
                    bail!("mqtt.users[{i}]: '{f}' is not a valid MQTT topic filter");
                }
            }
        }
        if self.ingest.max_payload_bytes == 0 {
            bail!("ingest.max_payload_bytes must be at least 1");
        }
        Ok(())
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:9000\"\n[ngsi_ld]\nmax_limit = 500\n",
        )
        .unwrap();
        let env = vec![
            (
                "CITYBRAIN_NGSI_LD__MAX_LIMIT".to_string(),
                "700".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(&file), env).unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.ngsi_ld.max_limit, 700);
        assert_eq!(c.ngsi_ld.default_limit, 20);

        std::fs::write(&file, "[server]\nlisten_typo = 1\n").unwrap();
        assert!(Config::load(Some(&file), vec![]).is_err());
        assert!(Config::load(None, vec![("CITYBRAIN_NOPE__X".into(), "1".into())]).is_err());
        assert!(Config::load(None, vec![("CITYBRAIN_SERVER__NOPE".into(), "1".into())]).is_err());
    }

    #[test]
    fn retention_rules_are_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[history.retention]]\nentity_type = \"TrafficFlowObserved\"\nraw = \"P30D\"\nrollup_every = \"PT5M\"\nrollup_keep = \"P730D\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), vec![]).unwrap();
        let p = c.history.retention[0].to_policy().unwrap();
        assert_eq!(p.raw_ms, 30 * 86_400_000);
        assert_eq!(p.rollup_period_ms, Some(300_000));
        assert_eq!(p.rollup_keep_ms, Some(730 * 86_400_000));
        assert!(p.entity_type.ends_with("TrafficFlowObserved"));
        std::fs::write(
            &file,
            "[[history.retention]]\nentity_type = \"*\"\nraw = \"30 days\"\n",
        )
        .unwrap();
        let e = Config::load(Some(&file), vec![]).unwrap_err();
        assert!(format!("{e:#}").contains("history.retention.raw"), "{e:#}");
        std::fs::write(&file, "[history]\nmax_instances = 0\n").unwrap();
        assert!(Config::load(Some(&file), vec![]).is_err());
    }

    #[test]
    fn forecast_settings_are_checked() {
        let load = |k: &str, v: &str| {
            let env = vec![(format!("CITYBRAIN_FORECAST__{k}"), v.to_string())];
            Config::load(None, env).and_then(|c| c.validate())
        };
        // 5 minutes is not a whole number of 10-minute intervals.
        let e = load("INTERVAL_SECS", "600").unwrap_err();
        assert!(format!("{e:#}").contains("horizons_minutes"), "{e:#}");
        let e = load("OUTPUT_PREFIX", "speed in").unwrap_err();
        assert!(format!("{e:#}").contains("output_prefix"), "{e:#}");
        assert!(load("INTERVAL_SECS", "300").is_ok());
    }

    #[test]
    fn example_config_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../citybrain.example.toml");
        let c = Config::load(Some(&path), vec![]).expect("citybrain.example.toml must load");
        let text = std::fs::read_to_string(&path).unwrap();
        let listed: toml::Table = toml::from_str(&text).unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in &defaults {
            let Some(keys) = keys.as_table() else {
                continue;
            };
            for key in keys.keys() {
                let present = listed
                    .get(section)
                    .and_then(|s| s.as_table())
                    .is_some_and(|s| s.contains_key(key))
                    || text.contains(&format!("# {key} ="));
                assert!(
                    present,
                    "citybrain.example.toml does not document {section}.{key}"
                );
            }
        }
        assert_eq!(c.server.listen.port(), 1026);
    }
}
