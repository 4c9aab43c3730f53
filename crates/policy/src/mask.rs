//! Masking at read time: what a `@mask("…")` annotation on a permit policy does to an
//! attribute's values.
//!
//! - `redact`: the attribute is left out.
//! - `partial`: text keeps a few characters at each end (`138****1234`,
//!   `110101********4578`, `粤B****5`); other values are redacted.
//! - `pseudonym`: the value becomes `pn:<key id>:<HMAC-SHA-256>` under the platform's
//!   pseudonym key, so one person links across datasets and reads without being
//!   revealed; rotating the key ([`PseudonymKeys::rotate`]) unlinks what follows from
//!   what came before.
//! - `geohash:N`: a location becomes the centre of its geohash cell of N characters
//!   (5 ≈ 4.9 km, 6 ≈ 1.2 km, 7 ≈ 153 m).
//! - `time:PT1H` (any ISO 8601 duration of whole seconds): date-times in the value and
//!   `observedAt` fall to the start of their bucket.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use citybrain_model::{AttrKind, AttrValue, Attribute};
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::PolicyError;

/// A masking method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mask {
    Redact,
    Partial,
    Pseudonym,
    Geohash(u8),
    /// Bucket size in seconds.
    Time(i64),
}

impl Mask {
    /// Parses an annotation's value, naming what is wrong.
    pub fn parse(s: &str) -> Result<Mask, String> {
        let s = s.trim();
        match s {
            "redact" => return Ok(Mask::Redact),
            "partial" => return Ok(Mask::Partial),
            "pseudonym" => return Ok(Mask::Pseudonym),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("geohash:") {
            return match n.parse::<u8>() {
                Ok(n @ 1..=12) => Ok(Mask::Geohash(n)),
                _ => Err(format!(
                    "@mask(\"{s}\"): the geohash precision must be 1-12"
                )),
            };
        }
        if let Some(d) = s.strip_prefix("time:") {
            let ms = citybrain_model::duration::IsoDuration::parse("@mask", d)
                .map_err(|e| format!("@mask(\"{s}\"): {e}"))?
                .approx_millis();
            return if ms >= 1000 {
                Ok(Mask::Time(ms / 1000))
            } else {
                Err(format!(
                    "@mask(\"{s}\"): the bucket must be at least one second"
                ))
            };
        }
        Err(format!(
            "@mask(\"{s}\"): expected redact, partial, pseudonym, geohash:N or time:DURATION"
        ))
    }

    /// How much a mask hides, to pick the strongest of several (redaction first).
    pub fn strength(self) -> u8 {
        match self {
            Mask::Redact => 5,
            Mask::Pseudonym => 4,
            Mask::Partial => 3,
            Mask::Geohash(_) => 2,
            Mask::Time(_) => 1,
        }
    }
}

/// `138****1234`: a few characters kept at each end, by length.
pub fn partial(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        15.. => (6, 4),
        11..=14 => (3, 4),
        5..=10 => (2, 1),
        _ => (0, 0),
    };
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// The centre of the geohash cell of `precision` characters holding (lon, lat).
pub fn geohash_centre(lon: f64, lat: f64, precision: u8) -> (f64, f64, String) {
    let (mut lo_lon, mut hi_lon, mut lo_lat, mut hi_lat) = (-180.0, 180.0, -90.0, 90.0);
    let mut hash = String::with_capacity(precision as usize);
    let mut even = true;
    let (mut bit, mut ch) = (0u8, 0usize);
    while hash.len() < precision as usize {
        if even {
            let mid = (lo_lon + hi_lon) / 2.0;
            if lon >= mid {
                ch = ch * 2 + 1;
                lo_lon = mid;
            } else {
                ch *= 2;
                hi_lon = mid;
            }
        } else {
            let mid = (lo_lat + hi_lat) / 2.0;
            if lat >= mid {
                ch = ch * 2 + 1;
                lo_lat = mid;
            } else {
                ch *= 2;
                hi_lat = mid;
            }
        }
        even = !even;
        bit += 1;
        if bit == 5 {
            hash.push(BASE32[ch] as char);
            bit = 0;
            ch = 0;
        }
    }
    ((lo_lon + hi_lon) / 2.0, (lo_lat + hi_lat) / 2.0, hash)
}

/// The first position of a GeoJSON geometry.
fn first_position(g: &Value) -> Option<(f64, f64)> {
    let mut c = g.get("coordinates")?;
    while let Some(first) = c.as_array().and_then(|a| a.first()) {
        if first.is_number() {
            let a = c.as_array()?;
            return Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?));
        }
        c = first;
    }
    None
}

fn bucket(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(secs), 0).unwrap_or(t)
}

/// The platform's pseudonym keys: the newest pseudonymises; older ones are kept so that
/// an operator can tell which key period a pseudonym came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PseudonymKey {
    id: String,
    key: String,
    created_at: DateTime<Utc>,
}

/// The keys as held: the stored list, and the newest one keyed for use (decoded and
/// set up once, not on every pseudonym).
struct Keys {
    stored: Vec<PseudonymKey>,
    current: Option<(String, Hmac<Sha256>)>,
}

impl Keys {
    fn new(stored: Vec<PseudonymKey>, origin: &str) -> Result<Keys, PolicyError> {
        let mut current = None;
        for k in &stored {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&k.key)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    PolicyError::Invalid(format!(
                        "{origin}: key {} is not 32 bytes of base64",
                        k.id
                    ))
                })?;
            let mac = Hmac::<Sha256>::new_from_slice(&bytes)
                .map_err(|e| PolicyError::Invalid(format!("{origin}: key {}: {e}", k.id)))?;
            current = Some((k.id.clone(), mac));
        }
        Ok(Keys { stored, current })
    }
}

pub struct PseudonymKeys {
    path: Option<PathBuf>,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for PseudonymKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKeys")
            .field("path", &self.path)
            .finish()
    }
}

fn new_key(now: DateTime<Utc>, n: usize) -> Result<PseudonymKey, PolicyError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| PolicyError::Io(format!("random bytes: {e}")))?;
    Ok(PseudonymKey {
        id: format!("k{}", n + 1),
        key: base64::engine::general_purpose::STANDARD.encode(k),
        created_at: now,
    })
}

/// Writes the key file: owner-only, fsynced, then renamed into place (a crash leaves
/// the old file or the new one, never a torn one).
fn write_keys(path: &Path, keys: &[PseudonymKey]) -> Result<(), PolicyError> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| PolicyError::Io(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let body = serde_json::to_vec_pretty(keys).map_err(|e| PolicyError::Io(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(fail)?;
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

impl PseudonymKeys {
    /// Keys held in memory only (tests, tools).
    pub fn ephemeral(now: DateTime<Utc>) -> Result<PseudonymKeys, PolicyError> {
        Ok(PseudonymKeys {
            path: None,
            keys: RwLock::new(Keys::new(vec![new_key(now, 0)?], "memory")?),
        })
    }

    /// The keys of `<dir>/pseudonym-keys.json`, made on first use.
    pub fn open(dir: &Path, now: DateTime<Utc>) -> Result<PseudonymKeys, PolicyError> {
        let path = dir.join("pseudonym-keys.json");
        let stored: Vec<PseudonymKey> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| PolicyError::Invalid(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(PolicyError::Io(format!("{}: {e}", path.display()))),
        };
        let keys = Keys::new(stored, &path.display().to_string())?;
        let s = PseudonymKeys {
            path: Some(path),
            keys: RwLock::new(keys),
        };
        if s.keys.read().current.is_none() {
            s.rotate(now)?;
        }
        Ok(s)
    }

    /// Starts a new key period; returns the new key's id. The key is stored before it
    /// is used.
    pub fn rotate(&self, now: DateTime<Utc>) -> Result<String, PolicyError> {
        let mut keys = self.keys.write();
        let mut stored = keys.stored.clone();
        let k = new_key(now, stored.len())?;
        let id = k.id.clone();
        stored.push(k);
        let origin = match &self.path {
            Some(path) => {
                write_keys(path, &stored)?;
                path.display().to_string()
            }
            None => "memory".into(),
        };
        *keys = Keys::new(stored, &origin)?;
        Ok(id)
    }

    /// `pn:<key id>:<first 16 bytes of HMAC-SHA-256, base64url>`.
    pub fn pseudonym(&self, text: &str) -> String {
        let keys = self.keys.read();
        let Some((id, mac)) = &keys.current else {
            // Unreachable: a key set always holds a key (opened or made).
            return "pn:none".into();
        };
        let mut mac = mac.clone();
        mac.update(text.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!(
            "pn:{id}:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..16])
        )
    }
}

/// The text a value is pseudonymised or partially masked from.
fn text_of(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.to_string(),
        AttrValue::Json(j) => j.to_string(),
        other => other.to_value().to_string(),
    }
}

/// Applies `mask` to an attribute instance; `None` means the attribute goes.
pub fn apply(mask: Mask, a: &Attribute, keys: &PseudonymKeys) -> Option<Attribute> {
    let mut m = a.clone();
    match mask {
        Mask::Redact => return None,
        Mask::Partial => match &a.value {
            AttrValue::Str(s) => m.value = AttrValue::Str(partial(s).into()),
            _ => return None,
        },
        Mask::Pseudonym => {
            if matches!(a.value, AttrValue::Null) {
                return Some(m);
            }
            m.value = AttrValue::Str(keys.pseudonym(&text_of(&a.value)).into());
            if a.kind != AttrKind::Property {
                // A pseudonymised relationship or location is no longer one.
                m.kind = AttrKind::Property;
            }
        }
        Mask::Geohash(p) => {
            if a.kind != AttrKind::GeoProperty {
                return None;
            }
            let g: Value = serde_json::from_str(&text_of(&a.value)).ok()?;
            let (lon, lat) = first_position(&g)?;
            let (clon, clat, _) = geohash_centre(lon, lat, p);
            let point = json!({"type": "Point", "coordinates": [clon, clat]});
            m.value = AttrValue::Json(point.to_string().into());
        }
        Mask::Time(secs) => {
            m.observed_at = a.observed_at.map(|t| bucket(t, secs));
            if let AttrValue::Str(s) = &a.value {
                if let Some(t) = citybrain_model::time::parse_datetime(s) {
                    m.value = AttrValue::Str(
                        citybrain_model::time::format_datetime(&bucket(t, secs)).into(),
                    );
                }
            }
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_masks_keep_the_ends() {
        assert_eq!(partial("13812341234"), "138****1234");
        assert_eq!(partial("110101199003074578"), "110101********4578");
        assert_eq!(partial("粤B12345"), "粤B****5");
        assert_eq!(partial("abc"), "***");
        assert_eq!(partial(""), "");
    }

    #[test]
    fn geohash_matches_the_reference() {
        // The classic example: 57.64911, 10.40744 -> u4pruydqqvj.
        let (_, _, h) = geohash_centre(10.40744, 57.64911, 11);
        assert_eq!(h, "u4pruydqqvj");
        // Wikipedia's: 42.6, -5.6 -> ezs42, whose cell centre is 42.605, -5.603.
        let (lon, lat, h) = geohash_centre(-5.6, 42.6, 5);
        assert_eq!(h, "ezs42");
        assert!((lon + 5.603).abs() < 0.001 && (lat - 42.605).abs() < 0.001);
    }

    #[test]
    fn masks_parse_and_refuse_nonsense() {
        assert_eq!(Mask::parse("geohash:6"), Ok(Mask::Geohash(6)));
        assert_eq!(Mask::parse("time:PT1H"), Ok(Mask::Time(3600)));
        assert!(Mask::parse("geohash:40").is_err());
        assert!(Mask::parse("scramble").unwrap_err().contains("scramble"));
    }

    #[test]
    fn pseudonyms_link_within_a_key_period_only() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let k = PseudonymKeys::open(dir.path(), now).unwrap();
        let a = k.pseudonym("13812341234");
        assert_eq!(a, k.pseudonym("13812341234"));
        assert_ne!(a, k.pseudonym("13812341235"));
        assert!(a.starts_with("pn:k1:"));
        // The same keys after a restart.
        let again = PseudonymKeys::open(dir.path(), now).unwrap();
        assert_eq!(again.pseudonym("13812341234"), a);
        again.rotate(now).unwrap();
        let b = again.pseudonym("13812341234");
        assert!(b.starts_with("pn:k2:") && b != a);
    }

    #[test]
    fn key_files_are_private_and_a_damaged_key_is_an_error() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        PseudonymKeys::open(dir.path(), now).unwrap();
        let path = dir.path().join("pseudonym-keys.json");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = v[0]["key"].as_str().unwrap();
        std::fs::write(&path, text.replace(key, "not-base64!")).unwrap();
        let e = PseudonymKeys::open(dir.path(), now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key k1"), "{e}");
    }

    #[test]
    fn time_buckets_fall_to_their_start() {
        let t = citybrain_model::time::parse_datetime("2026-03-01T08:47:13Z").unwrap();
        assert_eq!(
            citybrain_model::time::format_datetime(&bucket(t, 3600)),
            "2026-03-01T08:00:00Z"
        );
    }
}
