//! API keys: random, shown once, stored as SHA-256.
//!
//! A key reads `cbk_<key id>_<secret>`: the key id (16 hex digits) is public and names
//! the key in listings, logs and audit records; the secret is 32 random bytes
//! (256 bits, base64url). The store keeps `SHA-256(key id ":" secret)`, never the
//! secret: keys are high-entropy, so a fast hash suffices (a slow password hash would
//! cost milliseconds on every request for no gain), and a leaked key file reveals no
//! usable key. Verification looks the key up by id and compares the hashes in
//! constant time.
//!
//! The keys live in `<data dir>/security/keys.json`, rewritten atomically (temporary
//! file, fsync, rename) under `keys.lock`, so that `citybrain keys create|revoke`
//! works while the server runs; the server notices a changed file within a second
//! ([`KeyStore::refresh`]), so a revocation takes effect at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use citybrain_access::{Identity, Scopes};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AuthError, IdentityError};

/// The prefix of every API key (so that secret scanners and the HTTP layer recognise
/// one).
pub const KEY_PREFIX: &str = "cbk_";

/// One stored key (without its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKey {
    /// The public key id (16 hex digits).
    pub id: String,
    /// What the key is for ("traffic dashboard").
    pub name: String,
    /// The user the key acts for.
    pub user: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Tenants the key may act in; absent: every tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// `read`, `write`, `admin`.
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Hex SHA-256 of `id:secret`.
    pub sha256: String,
}

impl ApiKey {
    /// Whether the key is usable at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// The identity the key authenticates.
    pub fn identity(&self) -> Result<Identity, IdentityError> {
        Ok(Identity {
            id: self.user.clone(),
            roles: self.roles.clone(),
            department: self.department.clone(),
            tenants: self.tenants.clone(),
            scopes: Scopes::parse(&self.scopes).map_err(IdentityError::Invalid)?,
            via: format!("key:{}", self.id),
        })
    }
}

/// What `keys create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
    pub department: Option<String>,
    pub tenants: Option<Vec<String>>,
    /// Default: all scopes.
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    keys: Vec<ApiKey>,
}

/// A key as the verifier holds it: the record, the identity it proves (shared by every
/// request that presents it), and the stored hash as bytes.
type Entry = (ApiKey, Arc<Identity>, [u8; 32]);

/// The file as last read: keys by id, and the file's stamp (to notice changes).
#[derive(Default)]
struct Loaded {
    by_id: HashMap<String, Arc<Entry>>,
    order: Vec<String>,
    stamp: Option<(SystemTime, u64)>,
}

/// The API keys of one data directory.
pub struct KeyStore {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("dir", &self.dir).finish()
    }
}

fn digest(id: &str, secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update(b":");
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn hash(id: &str, secret: &str) -> String {
    hex(&digest(id, secret))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| {
            [
                HEX[(b >> 4) as usize] as char,
                HEX[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let val = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = val(b[2 * i])? << 4 | val(b[2 * i + 1])?;
    }
    Some(out)
}

fn random<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| IdentityError::Io(format!("random bytes: {e}")))?;
    Ok(buf)
}

/// Splits `cbk_<id>_<secret>`.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty();
    ok.then_some((id, secret))
}

impl KeyStore {
    /// The key store of a data directory (`<dir>/security`); created on first write.
    pub fn open(data_dir: &Path) -> Result<KeyStore, IdentityError> {
        let s = KeyStore {
            dir: data_dir.join("security"),
            loaded: RwLock::new(Loaded::default()),
        };
        s.refresh()?;
        Ok(s)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    fn stamp(&self) -> Result<Option<(SystemTime, u64)>, IdentityError> {
        match std::fs::metadata(self.path()) {
            Ok(m) => Ok(Some((
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IdentityError::io(&self.path(), e)),
        }
    }

    fn read_file(&self) -> Result<KeyFile, IdentityError> {
        match std::fs::read(self.path()) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| IdentityError::Invalid(format!("{}: {e}", self.path().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile {
                version: 1,
                keys: Vec::new(),
            }),
            Err(e) => Err(IdentityError::io(&self.path(), e)),
        }
    }

    /// Re-reads the key file if it changed since it was last read (the server calls
    /// this every second). Returns whether it did. A damaged file is an error and the
    /// keys last read stay in force.
    pub fn refresh(&self) -> Result<bool, IdentityError> {
        let stamp = self.stamp()?;
        if self.loaded.read().stamp == stamp && stamp.is_some() {
            return Ok(false);
        }
        let file = self.read_file()?;
        let mut by_id = HashMap::new();
        let mut order = Vec::new();
        for k in file.keys {
            let identity = Arc::new(k.identity()?);
            let stored = unhex(&k.sha256).ok_or_else(|| {
                IdentityError::Invalid(format!("key {}: sha256 is not 64 hex digits", k.id))
            })?;
            order.push(k.id.clone());
            by_id.insert(k.id.clone(), Arc::new((k, identity, stored)));
        }
        *self.loaded.write() = Loaded {
            by_id,
            order,
            stamp,
        };
        Ok(true)
    }

    /// Changes the key file under its lock: read, change, write atomically.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Vec<ApiKey>) -> Result<T, IdentityError>,
    ) -> Result<T, IdentityError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| IdentityError::io(&self.dir, e))?;
        restrict_dir(&self.dir);
        let lock_path = self.dir.join("keys.lock");
        let lock = File::create(&lock_path).map_err(|e| IdentityError::io(&lock_path, e))?;
        lock.lock().map_err(|e| IdentityError::io(&lock_path, e))?;
        let mut file = self.read_file()?;
        let out = f(&mut file.keys)?;
        let tmp = self.dir.join("keys.json.tmp");
        let body = serde_json::to_vec_pretty(&file)
            .map_err(|e| IdentityError::Invalid(format!("encoding keys: {e}")))?;
        {
            let mut t = File::create(&tmp).map_err(|e| IdentityError::io(&tmp, e))?;
            restrict_file(&t);
            t.write_all(&body).map_err(|e| IdentityError::io(&tmp, e))?;
            t.sync_all().map_err(|e| IdentityError::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, self.path()).map_err(|e| IdentityError::io(&self.path(), e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        drop(lock);
        self.refresh()?;
        Ok(out)
    }

    /// Creates a key; returns it and the whole key (`cbk_…`), which is shown once and
    /// never stored.
    pub fn create(
        &self,
        spec: NewKey,
        now: DateTime<Utc>,
    ) -> Result<(ApiKey, String), IdentityError> {
        if spec.user.trim().is_empty() {
            return Err(IdentityError::Invalid("user: must not be empty".into()));
        }
        let scopes = if spec.scopes.is_empty() {
            vec!["*".to_string()]
        } else {
            spec.scopes
        };
        Scopes::parse(&scopes).map_err(|e| IdentityError::Invalid(format!("scopes: {e}")))?;
        if let Some(ts) = &spec.tenants {
            for t in ts.iter().filter(|t| *t != "*") {
                citybrain_access::validate_tenant(t)
                    .map_err(|e| IdentityError::Invalid(format!("tenants: {e}")))?;
            }
        }
        if spec.expires_at.is_some_and(|e| e <= now) {
            return Err(IdentityError::Invalid(
                "expiresAt: must be in the future".into(),
            ));
        }
        let id = hex(&random::<8>()?);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?);
        let key = ApiKey {
            sha256: hash(&id, &secret),
            id: id.clone(),
            name: spec.name,
            user: spec.user,
            roles: spec.roles,
            department: spec.department,
            tenants: spec.tenants,
            scopes,
            created_at: now,
            expires_at: spec.expires_at,
            revoked_at: None,
        };
        let stored = key.clone();
        self.change(move |keys| {
            keys.push(stored);
            Ok(())
        })?;
        Ok((key, format!("{KEY_PREFIX}{id}_{secret}")))
    }

    /// Revokes a key by id (kept, marked revoked, so the audit trail can still name it).
    pub fn revoke(&self, id: &str, now: DateTime<Utc>) -> Result<ApiKey, IdentityError> {
        self.change(|keys| {
            let k = keys
                .iter_mut()
                .find(|k| k.id == id)
                .ok_or_else(|| IdentityError::NotFound(id.to_string()))?;
            if k.revoked_at.is_none() {
                k.revoked_at = Some(now);
            }
            Ok(k.clone())
        })
    }

    /// Every key, in creation order.
    pub fn list(&self) -> Vec<ApiKey> {
        let l = self.loaded.read();
        l.order
            .iter()
            .filter_map(|id| l.by_id.get(id).map(|k| k.0.clone()))
            .collect()
    }

    /// Whether any key usable at `now` has role `role`.
    pub fn has_active_role(&self, role: &str, now: DateTime<Utc>) -> bool {
        self.loaded
            .read()
            .by_id
            .values()
            .any(|k| k.0.active(now) && k.0.roles.iter().any(|r| r == role))
    }

    pub fn is_empty(&self) -> bool {
        self.loaded.read().by_id.is_empty()
    }

    /// Checks a presented key: its id must exist, its hash match (constant time), and
    /// the key be neither revoked nor expired.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Arc<Identity>, AuthError> {
        let (id, secret) = parse(token).ok_or(AuthError::Malformed("API key"))?;
        let found = self.loaded.read().by_id.get(id).cloned();
        // Hash even for an unknown id, so that timing does not tell which ids exist.
        let presented = digest(id, secret);
        let Some(entry) = found else {
            return Err(AuthError::UnknownKey);
        };
        let (key, identity, stored) = &*entry;
        if !bool::from(presented.ct_eq(stored)) {
            return Err(AuthError::UnknownKey);
        }
        if key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if key.expires_at.is_some_and(|e| now >= e) {
            return Err(AuthError::Expired);
        }
        Ok(identity.clone())
    }
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(unix)]
fn restrict_file(f: &File) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_dir(_: &Path) {}

#[cfg(not(unix))]
fn restrict_file(_: &File) {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn spec(user: &str) -> NewKey {
        NewKey {
            name: "test".into(),
            user: user.into(),
            roles: vec!["admin".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_key_is_shown_once_and_stored_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path()).unwrap();
        let (key, token) = ks.create(spec("ana"), t0()).unwrap();
        assert!(token.starts_with("cbk_"));
        // 256 bits of secret: 43 base64url characters.
        assert_eq!(token.len(), 4 + 16 + 1 + 43);
        let file = std::fs::read_to_string(dir.path().join("security/keys.json")).unwrap();
        let secret = &token[KEY_PREFIX.len() + 17..];
        assert!(!file.contains(secret), "the secret must not be stored");
        assert!(file.contains(&key.sha256));
        let who = ks.verify(&token, t0()).unwrap();
        assert_eq!(who.id, "ana");
        assert_eq!(who.via, format!("key:{}", key.id));
        assert!(ks.has_active_role("admin", t0()));
    }

    #[test]
    fn wrong_revoked_and_expired_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path()).unwrap();
        let mut s = spec("ana");
        s.expires_at = Some(t0() + chrono::Duration::days(1));
        let (key, token) = ks.create(s, t0()).unwrap();
        // One character of the secret changed.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(ks.verify(&forged, t0()), Err(AuthError::UnknownKey));
        assert_eq!(
            ks.verify("cbk_0000000000000000_x", t0()),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            ks.verify("cbk_nothex", t0()),
            Err(AuthError::Malformed("API key"))
        );
        assert_eq!(
            ks.verify(&token, t0() + chrono::Duration::days(2)),
            Err(AuthError::Expired)
        );
        ks.revoke(&key.id, t0()).unwrap();
        assert_eq!(ks.verify(&token, t0()), Err(AuthError::Revoked));
        assert!(!ks.has_active_role("admin", t0()));
        assert!(matches!(
            ks.revoke("ffffffffffffffff", t0()),
            Err(IdentityError::NotFound(_))
        ));
    }

    #[test]
    fn another_process_changes_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let server = KeyStore::open(dir.path()).unwrap();
        let cli = KeyStore::open(dir.path()).unwrap();
        let (key, token) = cli.create(spec("ana"), t0()).unwrap();
        assert_eq!(server.verify(&token, t0()), Err(AuthError::UnknownKey));
        assert!(server.refresh().unwrap());
        assert!(server.verify(&token, t0()).is_ok());
        assert!(!server.refresh().unwrap(), "unchanged file: no re-read");
        cli.revoke(&key.id, t0()).unwrap();
        server.refresh().unwrap();
        assert_eq!(server.verify(&token, t0()), Err(AuthError::Revoked));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(dir.path()).unwrap();
        let mut s = spec("ana");
        s.scopes = vec!["reed".into()];
        let e = ks.create(s, t0()).unwrap_err().to_string();
        assert!(e.contains("scopes") && e.contains("reed"), "{e}");
        let mut s = spec("ana");
        s.tenants = Some(vec!["bad tenant".into()]);
        assert!(ks
            .create(s, t0())
            .unwrap_err()
            .to_string()
            .contains("tenants"));
        let mut s = spec("ana");
        s.expires_at = Some(t0());
        assert!(ks
            .create(s, t0())
            .unwrap_err()
            .to_string()
            .contains("expiresAt"));
        assert!(ks.create(spec(" "), t0()).is_err());
        assert!(ks.is_empty());
    }
}
