//! Edge mode: the ingestion pipeline (mappings, edge reduction) runs on a small box by
//! the sensors, and its output is forwarded to a central citybrain over HTTP (NGSI-LD
//! batch upsert). Store-and-forward: every mapped batch is first appended to an
//! on-disk buffer (fsync before the device is acknowledged), and a forwarder drains the
//! buffer in order, deleting a batch only once the central answered for it. While the
//! link is down the buffer grows; when it comes back the backlog is sent oldest first.
//!
//! Buffer format (version 1): segment files `buf-<seq>.log` of frames
//! `[u32 len][u32 crc32][JSON {"tenant": .., "entities": [..]}]`, and `cursor`
//! (`<seq> <offset>`, the first unsent frame), rewritten atomically after each ack.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const SEGMENT_BYTES: u64 = 64 << 20;
const MAX_FRAME: u32 = 512 << 20;

/// What the forwarder does with a batch the central refuses as a whole.
pub type OnRejected = Arc<dyn Fn(&Batch, String) + Send + Sync>;

/// One forwarded batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    #[serde(default)]
    pub tenant: String,
    pub entities: Vec<Value>,
}

struct Inner {
    dir: PathBuf,
    /// Segment being written.
    write_seq: u64,
    write_file: File,
    write_len: u64,
    /// First unsent frame.
    read_seq: u64,
    read_off: u64,
}

/// Counters of the forwarder.
#[derive(Debug, Default)]
pub struct EdgeStats {
    pub buffered_batches: AtomicU64,
    pub buffered_entities: AtomicU64,
    pub forwarded_batches: AtomicU64,
    pub forwarded_entities: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub rejected_batches: AtomicU64,
}

/// The on-disk buffer and its forwarder.
pub struct Forwarder {
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    pub stats: EdgeStats,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("buf-{seq:016}.log"))
}

fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix("buf-")?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Reads the frame at `off` of segment `seq`: `Ok(None)` at the end (or a torn tail).
fn read_frame(dir: &Path, seq: u64, off: u64) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    let mut f = match File::open(seg_path(dir, seq)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(off))?;
    let mut head = [0u8; 8];
    if f.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_FRAME {
        return Ok(None);
    }
    let mut body = vec![0u8; len as usize];
    if f.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    Ok(Some((body, off + 8 + len as u64)))
}

impl Forwarder {
    /// Opens (or creates) the buffer in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Forwarder> {
        std::fs::create_dir_all(dir)?;
        let segs = segments(dir)?;
        let (read_seq, read_off) = match std::fs::read_to_string(dir.join("cursor")) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
                (it.next().unwrap_or(0), it.next().unwrap_or(0))
            }
            Err(_) => (segs.first().copied().unwrap_or(0), 0),
        };
        // The last segment is written on; a torn frame at its end is cut.
        let write_seq = segs.last().copied().unwrap_or(read_seq).max(read_seq);
        let path = seg_path(dir, write_seq);
        let mut good = 0u64;
        if path.exists() {
            let mut off = 0u64;
            while let Some((_, next)) = read_frame(dir, write_seq, off)? {
                off = next;
            }
            good = off;
        }
        let write_file = OpenOptions::new().create(true).append(true).open(&path)?;
        if write_file.metadata()?.len() > good {
            tracing::warn!(segment = %path.display(), "edge buffer ends in a torn frame; cutting it");
            write_file.set_len(good)?;
        }
        let fw = Forwarder {
            inner: Mutex::new(Inner {
                dir: dir.to_path_buf(),
                write_seq,
                write_file,
                write_len: good,
                read_seq,
                read_off,
            }),
            wake: tokio::sync::Notify::new(),
            stats: EdgeStats::default(),
        };
        let (b, e) = fw.backlog()?;
        fw.stats.buffered_batches.store(b, Ordering::Relaxed);
        fw.stats.buffered_entities.store(e, Ordering::Relaxed);
        Ok(fw)
    }

    /// Batches and entities waiting to be forwarded.
    pub fn backlog(&self) -> std::io::Result<(u64, u64)> {
        let g = self.inner.lock();
        let (mut batches, mut entities) = (0, 0);
        let (mut seq, mut off) = (g.read_seq, g.read_off);
        loop {
            match read_frame(&g.dir, seq, off)? {
                Some((body, next)) => {
                    batches += 1;
                    entities += serde_json::from_slice::<Batch>(&body)
                        .map(|b| b.entities.len() as u64)
                        .unwrap_or(0);
                    off = next;
                }
                None if seq < g.write_seq => {
                    seq += 1;
                    off = 0;
                }
                None => return Ok((batches, entities)),
            }
        }
    }

    /// Appends a batch durably (fsync) and wakes the forwarder.
    pub fn enqueue(&self, batch: &Batch) -> std::io::Result<()> {
        let body = serde_json::to_vec(batch).map_err(std::io::Error::other)?;
        let mut frame = Vec::with_capacity(body.len() + 8);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        {
            let mut g = self.inner.lock();
            if g.write_len > SEGMENT_BYTES {
                g.write_seq += 1;
                let p = seg_path(&g.dir, g.write_seq);
                g.write_file = OpenOptions::new().create(true).append(true).open(p)?;
                g.write_len = 0;
            }
            g.write_file.write_all(&frame)?;
            g.write_file.sync_data()?;
            g.write_len += frame.len() as u64;
        }
        self.stats.buffered_batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .buffered_entities
            .fetch_add(batch.entities.len() as u64, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(())
    }

    /// The oldest unsent batch and the position after it.
    fn peek(&self) -> std::io::Result<Option<(Batch, u64, u64)>> {
        let mut g = self.inner.lock();
        loop {
            match read_frame(&g.dir, g.read_seq, g.read_off)? {
                Some((body, next)) => {
                    let batch = serde_json::from_slice::<Batch>(&body)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    return Ok(Some((batch, g.read_seq, next)));
                }
                None if g.read_seq < g.write_seq => {
                    // Past the end of a finished segment: drop it, go on.
                    let old = seg_path(&g.dir, g.read_seq);
                    g.read_seq += 1;
                    g.read_off = 0;
                    let _ = std::fs::remove_file(old);
                    let (dir, s, o) = (g.dir.clone(), g.read_seq, g.read_off);
                    save_cursor(&dir, s, o)?;
                }
                None => return Ok(None),
            }
        }
    }

    /// Marks everything before (`seq`, `off`) as sent.
    fn ack(&self, seq: u64, off: u64, entities: usize) -> std::io::Result<()> {
        let mut g = self.inner.lock();
        g.read_seq = seq;
        g.read_off = off;
        let dir = g.dir.clone();
        save_cursor(&dir, seq, off)?;
        drop(g);
        self.stats.buffered_batches.fetch_sub(1, Ordering::Relaxed);
        self.stats
            .buffered_entities
            .fetch_sub(entities as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Drains the buffer to the central until the process ends. A batch the central
    /// refuses as a whole (HTTP 4xx) is handed to `rejected` (the edge's dead letters)
    /// and skipped; anything else (5xx, no connection, no PUBACK) is retried with
    /// backoff, in order.
    pub async fn run(self: Arc<Self>, central: Central, rejected: OnRejected) {
        let mut link = match Link::open(&central) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "edge forwarding cannot start");
                return;
            }
        };
        let mut backoff = Duration::from_millis(200);
        loop {
            let next = match self.peek() {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "edge buffer unreadable");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some((batch, seq, off)) = next else {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                continue;
            };
            match link.send(&batch).await {
                Sent::Ok => {
                    self.stats.forwarded_batches.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .forwarded_entities
                        .fetch_add(batch.entities.len() as u64, Ordering::Relaxed);
                    if let Err(e) = self.ack(seq, off, batch.entities.len()) {
                        tracing::error!(error = %e, "edge buffer cursor not saved");
                    }
                    backoff = Duration::from_millis(200);
                }
                Sent::Refused(why) => {
                    self.stats.rejected_batches.fetch_add(1, Ordering::Relaxed);
                    rejected(&batch, why);
                    let _ = self.ack(seq, off, batch.entities.len());
                }
                Sent::Retry(why) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%why, ?backoff, "forwarding failed; keeping the batch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    // A fresh connection: no half-sent state (an old PUBACK must never
                    // count for the batch sent again).
                    if let Ok(l) = Link::open(&central) {
                        link = l;
                    }
                }
            }
        }
    }
}

/// Where the edge forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Central {
    /// A citybrain's base URL: NGSI-LD batch upsert.
    Http(String),
    /// `mqtt://[user:password@]host[:port]`: a citybrain's MQTT server, on the topic
    /// `citybrain/ngsi-ld/{tenant}/entities` (`_` for the default tenant).
    Mqtt(String),
}

/// The MQTT topic on which a citybrain takes NGSI-LD entities as they are (an array
/// of normalized entities: an upsert that adds or updates attributes).
pub fn ngsi_ld_topic(tenant: &str) -> String {
    format!(
        "citybrain/ngsi-ld/{}/entities",
        if tenant.is_empty() { "_" } else { tenant }
    )
}

/// The tenant of a [`ngsi_ld_topic`], if `topic` is one.
pub fn ngsi_ld_topic_tenant(topic: &str) -> Option<&str> {
    let t = topic
        .strip_prefix("citybrain/ngsi-ld/")?
        .strip_suffix("/entities")?;
    match t {
        "_" => Some(""),
        t if !t.is_empty() && !t.contains('/') => Some(t),
        _ => None,
    }
}

enum Sent {
    Ok,
    Refused(String),
    Retry(String),
}

enum Link {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Mqtt {
        client: rumqttc::AsyncClient,
        events: Box<rumqttc::EventLoop>,
    },
}

/// Largest MQTT payload the forwarder sends (a batch is split below it).
const MQTT_PAYLOAD: usize = 512 << 10;

impl Link {
    fn open(c: &Central) -> Result<Link, String> {
        match c {
            Central::Http(base) => Ok(Link::Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| e.to_string())?,
                url: format!(
                    "{}/ngsi-ld/v1/entityOperations/upsert?options=update",
                    base.trim_end_matches('/')
                ),
            }),
            Central::Mqtt(uri) => {
                let u = crate::mqtt::notify::MqttUri::parse(&format!(
                    "{}/t",
                    uri.trim_end_matches('/')
                ))?;
                let mut opts = rumqttc::MqttOptions::new(
                    format!("citybrain-edge-{}", std::process::id()),
                    u.host,
                    u.port,
                );
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_max_packet_size(1 << 20, MQTT_PAYLOAD + 4096);
                if let Some(user) = u.username {
                    opts.set_credentials(user, u.password.unwrap_or_default());
                }
                let (client, events) = rumqttc::AsyncClient::new(opts, 16);
                Ok(Link::Mqtt {
                    client,
                    events: Box::new(events),
                })
            }
        }
    }

    async fn send(&mut self, batch: &Batch) -> Sent {
        match self {
            Link::Http { client, url } => {
                let with_ctx = batch.entities.iter().any(|e| e.get("@context").is_some());
                let mut req = client
                    .post(url.as_str())
                    .header(
                        "Content-Type",
                        if with_ctx {
                            "application/ld+json"
                        } else {
                            "application/json"
                        },
                    )
                    .json(&batch.entities);
                if !batch.tenant.is_empty() {
                    req = req.header("NGSILD-Tenant", batch.tenant.as_str());
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        if r.status().as_u16() == 207 {
                            let body = r.text().await.unwrap_or_default();
                            tracing::warn!(%body, "central refused part of a forwarded batch");
                        }
                        Sent::Ok
                    }
                    Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        Sent::Refused(format!("central answered {status}: {body}"))
                    }
                    Ok(r) => Sent::Retry(format!("central answered {}", r.status())),
                    Err(e) => Sent::Retry(e.to_string()),
                }
            }
            Link::Mqtt { client, events } => {
                // Split the batch into payloads under the size limit, publish each at
                // QoS 1 and wait for every PUBACK (given after the central's durable
                // write) before the batch counts as sent.
                let topic = ngsi_ld_topic(&batch.tenant);
                let mut parts: Vec<Vec<u8>> = Vec::new();
                let mut cur: Vec<u8> = b"[".to_vec();
                for e in &batch.entities {
                    let text = crate::json_bytes(e, "forwarded entity");
                    if cur.len() > 1 && cur.len() + text.len() + 2 > MQTT_PAYLOAD {
                        cur.push(b']');
                        parts.push(std::mem::replace(&mut cur, b"[".to_vec()));
                    }
                    if cur.len() > 1 {
                        cur.push(b',');
                    }
                    cur.extend_from_slice(&text);
                }
                cur.push(b']');
                parts.push(cur);
                let mut waiting = 0usize;
                for p in parts {
                    if let Err(e) = client
                        .publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, p)
                        .await
                    {
                        return Sent::Retry(e.to_string());
                    }
                    waiting += 1;
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while waiting > 0 {
                    match tokio::time::timeout_at(deadline, events.poll()).await {
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => {
                            waiting -= 1
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Sent::Retry(e.to_string()),
                        Err(_) => return Sent::Retry("no PUBACK within 30 s".into()),
                    }
                }
                Sent::Ok
            }
        }
    }
}

fn save_cursor(dir: &Path, seq: u64, off: u64) -> std::io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    std::fs::write(&tmp, format!("{seq} {off}\n"))?;
    std::fs::rename(&tmp, dir.join("cursor"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(n: usize) -> Batch {
        Batch {
            tenant: String::new(),
            entities: (0..n)
                .map(|i| json!({"id": format!("urn:x:{i}")}))
                .collect(),
        }
    }

    #[test]
    fn buffer_survives_reopen_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        {
            let f = Forwarder::open(dir.path()).unwrap();
            f.enqueue(&batch(2)).unwrap();
            f.enqueue(&batch(3)).unwrap();
            let (b, seq, off) = f.peek().unwrap().unwrap();
            assert_eq!(b.entities.len(), 2);
            f.ack(seq, off, 2).unwrap();
        }
        // A torn frame at the end is cut on open.
        let seg = seg_path(dir.path(), 0);
        let mut fh = OpenOptions::new().append(true).open(&seg).unwrap();
        fh.write_all(&[99, 0, 0, 0, 1]).unwrap();
        drop(fh);
        let f = Forwarder::open(dir.path()).unwrap();
        assert_eq!(f.backlog().unwrap(), (1, 3));
        let (b, seq, off) = f.peek().unwrap().unwrap();
        assert_eq!(b.entities.len(), 3);
        f.ack(seq, off, 3).unwrap();
        assert!(f.peek().unwrap().is_none());
        f.enqueue(&batch(1)).unwrap();
        assert_eq!(f.backlog().unwrap(), (1, 1));
    }

    #[test]
    fn segments_roll_and_are_removed_once_sent() {
        let dir = tempfile::tempdir().unwrap();
        let f = Forwarder::open(dir.path()).unwrap();
        f.enqueue(&batch(1)).unwrap();
        f.inner.lock().write_len = SEGMENT_BYTES + 1;
        f.enqueue(&batch(2)).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![0, 1]);
        for n in [1, 2] {
            let (b, seq, off) = f.peek().unwrap().unwrap();
            assert_eq!(b.entities.len(), n);
            f.ack(seq, off, n).unwrap();
        }
        assert!(f.peek().unwrap().is_none());
        assert_eq!(segments(dir.path()).unwrap(), vec![1]);
    }
}
