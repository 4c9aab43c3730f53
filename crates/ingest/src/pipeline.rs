//! The ingestion pipeline: payload → records → mapped entities → (edge reduction) →
//! the broker's durable upsert; every failure → a dead letter. A payload is answered
//! only when its writes and its dead letters are both durable, so an acknowledgement
//! (HTTP 200/202, MQTT PUBACK) means nothing of it can be lost.
//!
//! Size (over the ~800-line guideline): the stages share one batch state (`Pending`,
//! `Staged`, the summary and the dead letters of a payload) that each stage moves on;
//! split across files it would be crate-public mutable state. The forwarding sink and
//! replay are the parts to move out next (issue #13's note).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use citybrain_broker::{Broker, BrokerError, ObservationBatch, Principal, RequestContext};
use citybrain_model::{Entity, JsonLdContext};
use citybrain_storage::Commit;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;

use crate::deadletter::{DeadLetterError, DeadLetters, Letter, Level, NewLetter};
use crate::decode::{decode_payload, Item, Owned};
use crate::mapping::{
    self, Mapped, MappedRecord, Mapping, MappingError, Names, Selector, TopicVars, Vars,
};
use crate::reduce::Reducer;
use crate::reject::{Reason, Reject};
use crate::stats::Stats;
use citybrain_telemetry::InternalEvent;

/// What can stop a payload from being processed (as opposed to records being
/// rejected, which is a normal outcome recorded in the summary and the dead letters).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no mapping for source '{0}'")]
    UnknownSource(String),
    #[error("no mapping handles topic '{0}'")]
    UnknownTopic(String),
    #[error("dead letter {0} does not exist")]
    NoSuchLetter(u64),
    /// The store could not make the data durable: nothing is acknowledged.
    #[error("the data could not be stored: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
}

impl citybrain_model::ErrorCode for IngestError {
    fn kind(&self) -> citybrain_model::ErrorKind {
        use citybrain_model::ErrorKind as K;
        match self {
            IngestError::UnknownSource(_)
            | IngestError::UnknownTopic(_)
            | IngestError::NoSuchLetter(_) => K::ResourceNotFound,
            IngestError::Mapping(_) => K::BadRequestData,
            IngestError::Store(_) => K::Unavailable,
            IngestError::DeadLetters(d) => d.kind(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            IngestError::Store(_) => {
                "the data could not be stored; nothing of it was acknowledged, send it again".into()
            }
            IngestError::DeadLetters(d) => d.public_detail(),
            other => other.to_string(),
        }
    }
}

/// What happened to a payload or file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Records read (rows, elements, objects).
    pub read: u64,
    /// Entity writes made durable.
    pub written: u64,
    /// Entities created by them.
    pub created: u64,
    /// Records left out by the mapping's filters.
    pub filtered: u64,
    /// Records left with nothing to write by edge reduction.
    pub reduced: u64,
    /// Records or payloads sent to the dead letters, by reason.
    pub rejected: BTreeMap<Reason, u64>,
    /// Ids of the dead letters stored (at most 100 listed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<u64>,
}

impl Summary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn add(&mut self, o: &Summary) {
        self.read += o.read;
        self.written += o.written;
        self.created += o.created;
        self.filtered += o.filtered;
        self.reduced += o.reduced;
        for (r, n) in &o.rejected {
            *self.rejected.entry(*r).or_insert(0) += n;
        }
        for id in &o.dead_letters {
            if self.dead_letters.len() < 100 {
                self.dead_letters.push(*id);
            }
        }
    }
}

/// A loaded mapping with its reduction state.
pub struct Source {
    pub mapping: Arc<Mapping>,
    pub reducer: Mutex<Reducer>,
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Directory of mapping files (reloadable); `None` when mappings are given in code.
    pub mappings_dir: Option<PathBuf>,
    /// Largest payload accepted (bigger ones are dead-lettered, truncated to this).
    pub max_payload_bytes: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            mappings_dir: None,
            max_payload_bytes: 16 << 20,
        }
    }
}

/// Where mapped records go.
pub enum Sink {
    /// The local store, through the broker (the normal server).
    Store(Arc<Broker>),
    /// A durable buffer forwarded to a central citybrain (`citybrain edge`).
    Forward(Arc<crate::edge::Forwarder>),
}

/// The ingestion service.
pub struct Ingest {
    sink: Sink,
    clock: Arc<dyn citybrain_model::time::Clock>,
    sources: RwLock<BTreeMap<String, Arc<Source>>>,
    pub dead: Arc<DeadLetters>,
    pub stats: Stats,
    /// Counters of the MQTT server and client.
    pub mqtt: Arc<crate::mqtt::MqttStats>,
    pub settings: IngestSettings,
}

/// One mapped record waiting to be written, with what a dead letter would need.
struct Pending {
    rec: MappedRecord,
    /// The record it came from (its bytes are made only if it ends in the dead letters).
    raw: Option<(Owned, u8)>,
    /// Shared by the records of one payload or file chunk.
    origin: Option<Arc<str>>,
}

impl Pending {
    fn raw_bytes(&self) -> Vec<u8> {
        match &self.raw {
            Some((o, delim)) => o.as_record().raw(*delim),
            None => crate::json_bytes(&self.rec.to_json(), "dead letter record"),
        }
    }
}

/// A batch applied and logged (its dead letters already stored), waiting to be known
/// durable.
#[derive(Default)]
pub struct Staged {
    pub summary: Summary,
    commits: Vec<Commit>,
    /// Entity writes per source, counted once durable.
    written: Vec<(String, u64)>,
    /// The records written, kept until the caller lets them go (see [`Spent`]).
    spent: Spent,
}

/// Records already written. File import hands them back to its decoder thread to be
/// freed there: memory is cheapest to free on the thread that allocated it (mimalloc
/// frees from another thread through an atomic list, and pages wait for their owner).
#[derive(Default)]
pub(crate) struct Spent(#[allow(dead_code)] Vec<Pending>);

impl Staged {
    /// Waits until everything staged is durable; then the sender may be acknowledged.
    pub async fn wait(self, ing: &Ingest) -> Result<Summary, IngestError> {
        self.wait_spent(ing).await.map(|(s, _)| s)
    }

    /// [`Staged::wait`], handing back the written records.
    pub(crate) async fn wait_spent(self, ing: &Ingest) -> Result<(Summary, Spent), IngestError> {
        for c in self.commits {
            c.wait().await.map_err(|e| IngestError::Store(e.into()))?;
        }
        for (source, n) in &self.written {
            ing.stats.written(source, *n);
        }
        Ok((self.summary, self.spent))
    }
}

/// Mapped records of one source and the letters of what failed, before any I/O.
#[derive(Default)]
pub(crate) struct Prepared {
    pending: Vec<Pending>,
    dead: Vec<NewLetter>,
    summary: Summary,
    /// The pending records as model entities, when the preparing thread could build
    /// them (file import: the decoder thread does it; grouping them into an
    /// observation batch is left to the writer, which balances the two cores).
    entities: Option<Vec<Entity>>,
}

impl Prepared {
    /// Builds the model entities of the pending records with `names` (CPU only).
    pub(crate) fn build(&mut self, names: &Names, now: chrono::DateTime<chrono::Utc>) {
        let entities: Vec<Entity> = self
            .pending
            .iter_mut()
            .map(|p| match p.raw {
                // The raw record keeps what a dead letter needs: the values move.
                Some(_) => std::mem::take(&mut p.rec).into_entity(names, now),
                None => p.rec.clone().into_entity(names, now),
            })
            .collect();
        self.entities = Some(entities);
    }
}

/// A whole payload as a dead letter (kept up to `max` bytes).
fn payload_letter(
    source: &str,
    payload: &[u8],
    max: usize,
    origin: Option<String>,
    reject: Reject,
) -> NewLetter {
    NewLetter {
        source: source.to_string(),
        reason: reject.reason,
        message: reject.message,
        level: Level::Payload,
        origin,
        size: payload.len() as u64,
        truncated: payload.len() > max,
        raw: payload[..payload.len().min(max)].to_vec(),
    }
}

impl Ingest {
    /// Builds the pipeline; loads the mappings directory when one is set.
    pub fn new(
        broker: Arc<Broker>,
        dead: Arc<DeadLetters>,
        settings: IngestSettings,
    ) -> Result<Ingest, IngestError> {
        let clock = broker.clock().clone();
        Self::with_sink(Sink::Store(broker), clock, dead, settings)
    }

    fn with_sink(
        sink: Sink,
        clock: Arc<dyn citybrain_model::time::Clock>,
        dead: Arc<DeadLetters>,
        settings: IngestSettings,
    ) -> Result<Ingest, IngestError> {
        let ing = Ingest {
            sink,
            clock,
            sources: RwLock::new(BTreeMap::new()),
            dead,
            stats: Stats::default(),
            mqtt: Arc::default(),
            settings,
        };
        ing.reload()?;
        Ok(ing)
    }

    /// Re-reads the mappings directory. On any error the running mappings stay as they
    /// were (a bad file is never half-applied) and the error names the file and line.
    pub fn reload(&self) -> Result<usize, IngestError> {
        let Some(dir) = &self.settings.mappings_dir else {
            return Ok(self.sources.read().len());
        };
        let loaded = mapping::load_dir(dir)?;
        self.install(loaded);
        Ok(self.sources.read().len())
    }

    /// Replaces the mappings with `list`.
    pub fn install(&self, list: Vec<Mapping>) {
        let mut map = BTreeMap::new();
        for m in list {
            let reducer = Mutex::new(Reducer::new(m.reduce.clone()));
            map.insert(
                m.source.clone(),
                Arc::new(Source {
                    mapping: Arc::new(m),
                    reducer,
                }),
            );
        }
        tracing::info!(mappings = map.len(), "ingest mappings installed");
        *self.sources.write() = map;
    }

    pub fn source(&self, name: &str) -> Option<Arc<Source>> {
        self.sources.read().get(name).cloned()
    }

    pub fn sources(&self) -> Vec<Arc<Source>> {
        self.sources.read().values().cloned().collect()
    }

    /// The source whose topic patterns match `topic`, with the captured variables.
    pub fn route_topic(&self, topic: &str) -> Option<(Arc<Source>, TopicVars)> {
        self.sources
            .read()
            .values()
            .find_map(|s| s.mapping.match_topic(topic).map(|v| (s.clone(), v)))
    }

    /// A pipeline that forwards to a central citybrain instead of storing (edge mode).
    pub fn forwarding(
        forwarder: Arc<crate::edge::Forwarder>,
        clock: Arc<dyn citybrain_model::time::Clock>,
        dead: Arc<DeadLetters>,
        settings: IngestSettings,
    ) -> Result<Ingest, IngestError> {
        Self::with_sink(Sink::Forward(forwarder), clock, dead, settings)
    }

    /// The broker, when records are stored locally.
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        match &self.sink {
            Sink::Store(b) => Some(b),
            Sink::Forward(_) => None,
        }
    }

    pub fn clock(&self) -> &Arc<dyn citybrain_model::time::Clock> {
        &self.clock
    }

    /// Ingests one payload for `source`.
    pub async fn ingest_payload(
        &self,
        source: &str,
        payload: &[u8],
        origin: Option<String>,
        vars: &Vars,
    ) -> Result<Summary, IngestError> {
        let src = self
            .source(source)
            .ok_or_else(|| IngestError::UnknownSource(source.to_string()))?;
        self.payload_for(&src, payload, origin, vars).await
    }

    /// Ingests a message that arrived on an MQTT topic. A topic no mapping handles is a
    /// dead letter too (source `mqtt`), never a silent drop.
    pub async fn ingest_topic(&self, topic: &str, payload: &[u8]) -> Result<Summary, IngestError> {
        if crate::edge::ngsi_ld_topic_tenant(topic).is_some() {
            return self.ingest_messages(&[(topic, payload)]).await;
        }
        match self.route_topic(topic) {
            Some((src, vars)) => {
                self.payload_for(&src, payload, Some(topic.to_string()), &vars)
                    .await
            }
            None => {
                let mut s = Summary::default();
                self.dead_payload(
                    "mqtt",
                    payload,
                    Some(topic.to_string()),
                    Reject::new(
                        Reason::NoMapping,
                        format!("no mapping handles topic '{topic}'"),
                    ),
                    &mut s,
                )?;
                Ok(s)
            }
        }
    }

    /// Records a payload that was over the size limit (its first bytes kept).
    pub async fn reject_oversized(
        &self,
        source: &str,
        prefix: &[u8],
        origin: Option<String>,
    ) -> Result<Summary, IngestError> {
        let mut summary = Summary::default();
        self.stats.payload(source, prefix.len());
        let reject = Reject::new(
            Reason::Oversized,
            format!(
                "the payload is larger than the limit of {} bytes",
                self.settings.max_payload_bytes
            ),
        );
        let mut raw = prefix.to_vec();
        // Mark it truncated even when exactly `max` bytes were kept.
        raw.truncate(self.settings.max_payload_bytes);
        self.dead_letter(
            source,
            raw,
            prefix.len() as u64 + 1,
            true,
            origin,
            reject,
            &mut summary,
        )?;
        Ok(summary)
    }

    async fn payload_for(
        &self,
        src: &Source,
        payload: &[u8],
        origin: Option<String>,
        vars: &Vars,
    ) -> Result<Summary, IngestError> {
        let m = &src.mapping;
        let mut summary = Summary::default();
        self.stats.payload(&m.source, payload.len());
        if payload.len() > self.settings.max_payload_bytes {
            let reject = Reject::new(
                Reason::Oversized,
                format!(
                    "the payload has {} bytes; the limit is {}",
                    payload.len(),
                    self.settings.max_payload_bytes
                ),
            );
            self.dead_payload(&m.source, payload, origin, reject, &mut summary)?;
            return Ok(summary);
        }
        match decode_payload(m, payload) {
            Ok(items) => {
                let s = self
                    .write_items(src, items, vars, origin.as_deref())
                    .await?;
                summary.add(&s);
            }
            Err(reject) => self.dead_payload(&m.source, payload, origin, reject, &mut summary)?,
        }
        Ok(summary)
    }

    fn dead_payload(
        &self,
        source: &str,
        payload: &[u8],
        origin: Option<String>,
        reject: Reject,
        summary: &mut Summary,
    ) -> Result<(), IngestError> {
        let max = self.settings.max_payload_bytes;
        let truncated = payload.len() > max;
        let raw = payload[..payload.len().min(max)].to_vec();
        self.dead_letter(
            source,
            raw,
            payload.len() as u64,
            truncated,
            origin,
            reject,
            summary,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &self,
        source: &str,
        raw: Vec<u8>,
        size: u64,
        truncated: bool,
        origin: Option<String>,
        reject: Reject,
        summary: &mut Summary,
    ) -> Result<(), IngestError> {
        let stored = self.dead.put_many(
            vec![NewLetter {
                source: source.to_string(),
                reason: reject.reason,
                message: reject.message,
                level: Level::Payload,
                origin,
                size,
                truncated,
                raw,
            }],
            self.clock.now(),
        )?;
        self.note_dead(&stored, summary);
        Ok(())
    }

    /// Counts stored letters in the summary and the metrics (each under its own source:
    /// letters of payloads that routed nowhere carry theirs) and logs them.
    fn note_dead(&self, stored: &[Letter], summary: &mut Summary) {
        for l in stored {
            *summary.rejected.entry(l.reason).or_insert(0) += 1;
            crate::stats::DeadLettered {
                stats: &self.stats,
                source: &l.source,
                letter: l,
            }
            .emit();
            if summary.dead_letters.len() < 100 {
                summary.dead_letters.push(l.id);
            }
        }
    }

    /// Maps, reduces and writes decoded items; rejected ones become dead letters.
    /// Answers once both are durable.
    pub async fn write_items(
        &self,
        src: &Source,
        items: Vec<Item>,
        vars: &Vars,
        origin: Option<&str>,
    ) -> Result<Summary, IngestError> {
        let mut prep = Prepared::default();
        self.prepare(src, items, vars, origin, &mut prep);
        self.commit(&src.mapping, prep).await
    }

    /// Maps and reduces items into `prep` (no I/O).
    fn prepare(
        &self,
        src: &Source,
        items: Vec<Item>,
        vars: &Vars,
        origin: Option<&str>,
        prep: &mut Prepared,
    ) {
        prepare(src, items, vars, origin, self.clock.now(), prep);
    }

    /// The clock of the platform.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// Maps and reduces items into `prep` (no I/O; file import runs it on its decoder
/// thread, so mapping and writing use both cores).
pub(crate) fn prepare(
    src: &Source,
    items: Vec<Item>,
    vars: &Vars,
    origin: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
    prep: &mut Prepared,
) {
    {
        let m = &src.mapping;
        let (mut read, mut filtered, mut reduced) = (0, 0, 0);
        let letter = |raw: Vec<u8>, reject: Reject| NewLetter {
            source: m.source.clone(),
            reason: reject.reason,
            message: reject.message,
            level: Level::Record,
            origin: origin.map(str::to_string),
            size: raw.len() as u64,
            truncated: false,
            raw,
        };
        let mut reducer = src.reducer.lock();
        let shared_origin: Option<Arc<str>> = origin.map(Arc::from);
        for item in items {
            read += 1;
            match item {
                Item::Bad { raw, reject } => prep.dead.push(letter(raw, reject)),
                Item::Record(owned) => match m.apply(owned.as_record(), vars, now) {
                    Ok(Mapped::Filtered) => filtered += 1,
                    Ok(Mapped::Entity(mut rec)) => {
                        if !reducer.is_empty() && !reducer.apply(&mut rec, now) {
                            reduced += 1;
                            continue;
                        }
                        prep.pending.push(Pending {
                            rec,
                            raw: Some((owned, m.csv_delimiter)),
                            origin: shared_origin.clone(),
                        });
                    }
                    Err(reject) => prep
                        .dead
                        .push(letter(owned.as_record().raw(m.csv_delimiter), reject)),
                },
            }
        }
        prep.summary.read += read;
        prep.summary.filtered += filtered;
        prep.summary.reduced += reduced;
    }
}

impl Ingest {
    /// Writes prepared entities and stores the dead letters; durable when it answers.
    pub(crate) async fn commit(&self, m: &Mapping, prep: Prepared) -> Result<Summary, IngestError> {
        self.stage(m, prep).await?.wait(self).await
    }

    /// [`Ingest::commit`], handing back the written records (see [`Spent`]).
    pub(crate) async fn commit_spent(
        &self,
        m: &Mapping,
        prep: Prepared,
    ) -> Result<(Summary, Spent), IngestError> {
        self.stage(m, prep).await?.wait_spent(self).await
    }

    /// Applies and logs prepared entities and stores the dead letters (fsynced), without
    /// waiting for the entity writes to be durable: see [`Staged::wait`].
    async fn stage(&self, m: &Mapping, prep: Prepared) -> Result<Staged, IngestError> {
        let Prepared {
            pending,
            mut dead,
            mut summary,
            entities,
        } = prep;
        self.stats
            .records(&m.source, summary.read, summary.filtered, summary.reduced);
        let mut commits = Vec::new();
        let (written, spent) = self
            .write_pending(m, pending, entities, &mut dead, &mut summary, &mut commits)
            .await?;
        let stored = self.dead.put_many(dead, self.clock.now())?;
        self.note_dead(&stored, &mut summary);
        Ok(Staged {
            summary,
            commits,
            written: vec![(m.source.clone(), written)],
            spent: Spent(spent),
        })
    }

    /// Ingests a batch of MQTT messages `(topic, payload)` with one durable write per
    /// source and one for the dead letters: the acknowledgements of all of them can be
    /// sent when it answers.
    pub async fn ingest_messages(&self, msgs: &[(&str, &[u8])]) -> Result<Summary, IngestError> {
        self.stage_messages(msgs).await?.wait(self).await
    }

    /// [`Ingest::ingest_messages`] without the final wait: the batch is applied and
    /// logged, its dead letters stored; acknowledge only after [`Staged::wait`]. A
    /// connection may stage its next batch meanwhile (pipelining).
    pub async fn stage_messages(&self, msgs: &[(&str, &[u8])]) -> Result<Staged, IngestError> {
        let mut by_source: BTreeMap<String, (Arc<Source>, Prepared)> = BTreeMap::new();
        let mut stray = Prepared::default();
        let max = self.settings.max_payload_bytes;
        let mut native: Vec<(&str, &[u8])> = Vec::new();
        for &(topic, payload) in msgs {
            if crate::edge::ngsi_ld_topic_tenant(topic).is_some() && self.broker().is_some() {
                native.push((topic, payload));
                continue;
            }
            let Some((src, vars)) = self.route_topic(topic) else {
                stray.dead.push(payload_letter(
                    "mqtt",
                    payload,
                    max,
                    Some(topic.to_string()),
                    Reject::new(
                        Reason::NoMapping,
                        format!("no mapping handles topic '{topic}'"),
                    ),
                ));
                continue;
            };
            self.stats.payload(&src.mapping.source, payload.len());
            let reject = if payload.len() > max {
                Some(Reject::new(
                    Reason::Oversized,
                    format!(
                        "the payload has {} bytes; the limit is {max}",
                        payload.len()
                    ),
                ))
            } else {
                match decode_payload(&src.mapping, payload) {
                    Ok(items) => {
                        let entry = by_source
                            .entry(src.mapping.source.clone())
                            .or_insert_with(|| (src.clone(), Prepared::default()));
                        self.prepare(&src, items, &vars, Some(topic), &mut entry.1);
                        None
                    }
                    Err(r) => Some(r),
                }
            };
            if let Some(r) = reject {
                stray.dead.push(payload_letter(
                    &src.mapping.source,
                    payload,
                    max,
                    Some(topic.to_string()),
                    r,
                ));
            }
        }
        let mut total = Staged::default();
        for (topic, payload) in native {
            let s = self
                .ngsi_ld_payload(topic, payload, &mut stray.dead)
                .await?;
            total.summary.add(&s);
        }
        for (_, (src, prep)) in by_source {
            let st = self.stage(&src.mapping, prep).await?;
            total.summary.add(&st.summary);
            total.commits.extend(st.commits);
            total.written.extend(st.written);
        }
        if !stray.dead.is_empty() {
            let stored = self
                .dead
                .put_many(std::mem::take(&mut stray.dead), self.clock.now())?;
            self.note_dead(&stored, &mut total.summary);
        }
        Ok(total)
    }

    /// A payload on `citybrain/ngsi-ld/{tenant}/entities`: NGSI-LD entities as they are
    /// (what `citybrain edge` forwards over MQTT), upserted (attributes added or
    /// updated) without a mapping. Durable when it answers; what the broker refuses
    /// goes to `dead` (source `ngsi-ld`).
    async fn ngsi_ld_payload(
        &self,
        topic: &str,
        payload: &[u8],
        dead: &mut Vec<NewLetter>,
    ) -> Result<Summary, IngestError> {
        const SOURCE: &str = "ngsi-ld";
        let mut summary = Summary::default();
        let (Some(broker), Some(tenant)) =
            (self.broker(), crate::edge::ngsi_ld_topic_tenant(topic))
        else {
            return Ok(summary);
        };
        self.stats.payload(SOURCE, payload.len());
        let max = self.settings.max_payload_bytes;
        let entities: Vec<Value> = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Array(a)) => a,
            Ok(o @ Value::Object(_)) => vec![o],
            Ok(_) | Err(_) => {
                dead.push(payload_letter(
                    SOURCE,
                    payload,
                    max,
                    Some(topic.to_string()),
                    Reject::new(
                        Reason::Decode,
                        "an NGSI-LD payload is a JSON entity or an array of entities",
                    ),
                ));
                return Ok(summary);
            }
        };
        let mut items = Vec::with_capacity(entities.len());
        for mut e in entities {
            let ctx = e.as_object_mut().and_then(|o| o.remove("@context"));
            let ld = match broker.contexts.resolve(ctx.as_ref()).await {
                Ok(c) => Ok(c),
                Err(BrokerError::Model(m)) => Err(m),
                Err(BrokerError::Store(s)) => return Err(IngestError::Store(s.into())),
            };
            items.push(citybrain_broker::BatchItem { body: e, ld });
        }
        summary.read = items.len() as u64;
        let rc = RequestContext::service(tenant, Principal::INGEST);
        let results = broker
            .upsert_each(&rc, &items, citybrain_broker::UpsertMode::Update)
            .await
            .map_err(|e| IngestError::Store(e.into()))?;
        for (res, item) in results.into_iter().zip(items) {
            match res {
                Ok(created) => {
                    summary.written += 1;
                    summary.created += u64::from(created);
                }
                Err(BrokerError::Store(e)) => return Err(IngestError::Store(e.into())),
                Err(BrokerError::Model(m)) => {
                    let raw = crate::json_bytes(&item.body, "dead letter entity");
                    dead.push(NewLetter {
                        source: SOURCE.into(),
                        reason: Reason::Invalid,
                        message: m.detail,
                        level: Level::Record,
                        origin: Some(topic.to_string()),
                        size: raw.len() as u64,
                        truncated: false,
                        raw,
                    });
                }
            }
        }
        self.stats.records(SOURCE, summary.read, 0, 0);
        self.stats.written(SOURCE, summary.written);
        Ok(summary)
    }

    /// Writes the windows of every source that ended more than `grace` ago; the
    /// server calls it every second.
    pub async fn flush_due_windows(
        &self,
        grace: std::time::Duration,
    ) -> Result<Summary, IngestError> {
        let cutoff = self.clock.now().timestamp_millis() - grace.as_millis() as i64;
        let mut total = Summary::default();
        for src in self.sources() {
            if !src.reducer.lock().has_windows() {
                continue;
            }
            let recs = src.reducer.lock().flush_before(cutoff);
            total.add(&self.write_reduced(&src, recs).await?);
        }
        Ok(total)
    }

    /// Writes reduction output that was held back (closed windows) for `source`.
    pub async fn flush_reduced(&self, src: &Source) -> Result<Summary, IngestError> {
        let recs = src.reducer.lock().flush();
        self.write_reduced(src, recs).await
    }

    async fn write_reduced(
        &self,
        src: &Source,
        bodies: Vec<MappedRecord>,
    ) -> Result<Summary, IngestError> {
        let mut summary = Summary::default();
        let mut dead = Vec::new();
        let pending = bodies
            .into_iter()
            .map(|rec| Pending {
                rec,
                raw: None,
                origin: None,
            })
            .collect();
        let mut commits = Vec::new();
        let (written, _) = self
            .write_pending(
                &src.mapping,
                pending,
                None,
                &mut dead,
                &mut summary,
                &mut commits,
            )
            .await?;
        Staged {
            summary: Summary::default(),
            commits,
            written: vec![(src.mapping.source.clone(), written)],
            spent: Spent::default(),
        }
        .wait(self)
        .await?;
        let stored = self.dead.put_many(dead, self.clock.now())?;
        self.note_dead(&stored, &mut summary);
        Ok(summary)
    }

    async fn context(
        &self,
        broker: &Broker,
        m: &Mapping,
    ) -> Result<Arc<JsonLdContext>, BrokerError> {
        match &m.context {
            None => Ok(JsonLdContext::core()),
            Some(url) => {
                broker
                    .contexts
                    .resolve(Some(&Value::String(url.clone())))
                    .await
            }
        }
    }

    /// Edge mode: the records go to the forwarding buffer (durable) as NGSI-LD JSON.
    fn forward(
        &self,
        fw: &crate::edge::Forwarder,
        m: &Mapping,
        pending: Vec<Pending>,
        summary: &mut Summary,
    ) -> Result<(), IngestError> {
        let entities: Vec<Value> = pending
            .iter()
            .map(|p| {
                let mut v = p.rec.to_json();
                if let (Some(ctx), Some(o)) = (&m.context, v.as_object_mut()) {
                    o.insert("@context".into(), Value::String(ctx.clone()));
                }
                v
            })
            .collect();
        let n = entities.len() as u64;
        fw.enqueue(&crate::edge::Batch {
            tenant: m.tenant.clone(),
            entities,
        })
        .map_err(|e| IngestError::Store(format!("edge buffer: {e}").into()))?;
        summary.written += n;
        self.stats.written(&m.source, n);
        Ok(())
    }

    /// The mapping's names expanded with its `@context` (for preparing batches
    /// elsewhere), when records are stored locally and the context is available.
    pub(crate) async fn names(&self, m: &Mapping) -> Option<Arc<Names>> {
        let Sink::Store(broker) = &self.sink else {
            return None;
        };
        let ld = self.context(broker, m).await.ok()?;
        Some(Arc::new(Names::new(m, ld)))
    }

    async fn write_pending(
        &self,
        m: &Mapping,
        pending: Vec<Pending>,
        entities: Option<Vec<Entity>>,
        dead: &mut Vec<NewLetter>,
        summary: &mut Summary,
        commits: &mut Vec<Commit>,
    ) -> Result<(u64, Vec<Pending>), IngestError> {
        if pending.is_empty() {
            return Ok((0, pending));
        }
        let broker = match &self.sink {
            Sink::Store(b) => b,
            Sink::Forward(fw) => {
                // The buffer append is durable already: counted at once.
                self.forward(fw, m, pending, summary)?;
                return Ok((0, Vec::new()));
            }
        };
        let rc = RequestContext::service(m.tenant.clone(), Principal::INGEST);
        let ld = match self.context(broker, m).await {
            Ok(c) => c,
            Err(BrokerError::Model(e)) => {
                // The mapping's @context cannot be had: every record waits as a dead
                // letter until it can (replay).
                for p in &pending {
                    let raw = p.raw_bytes();
                    dead.push(NewLetter {
                        source: m.source.clone(),
                        reason: Reason::Invalid,
                        message: format!("the mapping's @context: {}", e.detail),
                        level: Level::Record,
                        origin: p.origin.as_deref().map(str::to_string),
                        size: raw.len() as u64,
                        truncated: false,
                        raw,
                    });
                }
                return Ok((0, pending));
            }
            Err(BrokerError::Store(e)) => return Err(IngestError::Store(e.into())),
        };
        let now = self.clock.now();
        let entities = match entities {
            Some(list) if list.len() == pending.len() => list,
            _ => {
                let names = Names::new(m, ld);
                pending
                    .iter()
                    .map(|p| p.rec.clone().into_entity(&names, now))
                    .collect()
            }
        };
        let batch = ObservationBatch::new(entities, now);
        let (results, staged) = broker
            .stage_observations(&rc, batch)
            .map_err(|e| IngestError::Store(e.into()))?
            .into_parts();
        commits.extend(staged);
        let mut written = 0u64;
        for (res, p) in results.into_iter().zip(&pending) {
            match res {
                Ok(created) => {
                    written += 1;
                    summary.written += 1;
                    summary.created += u64::from(created);
                }
                Err(BrokerError::Store(e)) => return Err(IngestError::Store(e.into())),
                Err(BrokerError::Model(e)) => {
                    let raw = p.raw_bytes();
                    dead.push(NewLetter {
                        source: m.source.clone(),
                        reason: Reason::Invalid,
                        message: e.detail,
                        level: Level::Record,
                        origin: p.origin.as_deref().map(str::to_string),
                        size: raw.len() as u64,
                        truncated: false,
                        raw,
                    });
                }
            }
        }
        Ok((written, pending))
    }

    /// Replays dead letters through the current mappings. A letter that now succeeds is
    /// deleted; one that fails again stays, and the new reason is reported.
    pub async fn replay(&self, ids: &[u64]) -> Result<Vec<ReplayResult>, IngestError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let letter = self.dead.get(*id).ok_or(IngestError::NoSuchLetter(*id))?;
            let raw = self.dead.raw(*id)?;
            let res = self.replay_one(&letter, &raw).await?;
            let ok = res.rejected.is_empty() && !letter.truncated;
            if ok {
                self.dead.delete(&[*id])?;
            } else if !res.dead_letters.is_empty() {
                // The failure was stored again as a new letter; keep one copy only.
                self.dead.delete(&[*id])?;
            }
            out.push(ReplayResult {
                id: *id,
                replayed: ok,
                summary: res,
            });
        }
        Ok(out)
    }

    async fn replay_one(&self, l: &Letter, raw: &[u8]) -> Result<Summary, IngestError> {
        if (l.source == "mqtt" && l.reason == Reason::NoMapping) || l.source == "ngsi-ld" {
            let topic = l.origin.clone().unwrap_or_default();
            return self.ingest_topic(&topic, raw).await;
        }
        let Some(src) = self.source(&l.source) else {
            return Err(IngestError::UnknownSource(l.source.clone()));
        };
        let vars = l
            .origin
            .as_deref()
            .and_then(|o| src.mapping.match_topic(o))
            .unwrap_or_default();
        match l.level {
            Level::Payload => self.payload_for(&src, raw, l.origin.clone(), &vars).await,
            Level::Record => {
                let items = match decode_record(&src.mapping, raw) {
                    Ok(rec) => vec![Item::Record(rec)],
                    Err(reject) => vec![Item::Bad {
                        raw: raw.to_vec(),
                        reject,
                    }],
                };
                self.write_items(&src, items, &vars, l.origin.as_deref())
                    .await
            }
        }
    }
}

/// The outcome of replaying one letter.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayResult {
    pub id: u64,
    /// The letter was written and removed from the dead letters.
    pub replayed: bool,
    pub summary: Summary,
}

/// Decodes one stored record (the format a record dead letter keeps).
pub fn decode_record(m: &Mapping, raw: &[u8]) -> Result<Owned, Reject> {
    let mut one = m.clone();
    one.selector = match &m.selector {
        Selector::Xml { steps, .. } => Selector::Xml {
            steps: steps.last().cloned().into_iter().collect(),
            anywhere: true,
        },
        Selector::Json(_) => Selector::Json(Vec::new()),
        Selector::Rows => Selector::Rows,
    };
    let items = decode_payload(&one, raw)?;
    match items.into_iter().next() {
        Some(Item::Record(r)) => Ok(r),
        Some(Item::Bad { reject, .. }) => Err(reject),
        None => Err(Reject::new(Reason::Decode, "the stored record is empty")),
    }
}
