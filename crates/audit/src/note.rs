//! Checkpoints as C2SP signed notes (`tlog-checkpoint`), signed with Ed25519.
//!
//! A checkpoint's text is `<origin>\n<size>\n<base64 root>\n`; a signature line reads
//! `— <key name> <base64(key id || signature)>`, where the key id is the first four
//! bytes of `SHA-256(<key name> "\n" 0x01 <public key>)` (0x01: Ed25519). The
//! verifier key, to pin outside the platform, is `<name>+<key id hex>+<base64(0x01 ||
//! public key)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(public.to_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A checkpoint as read back from a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The signed note.
    pub fn sign(&self, name: &str, key: &SigningKey) -> String {
        let text = self.text();
        let sig = key.sign(text.as_bytes());
        let mut blob = key_id(name, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n\u{2014} {name} {}\n", B64.encode(blob))
    }

    /// Reads a signed note and checks its signature by `name`'s `public` key.
    pub fn open(note: &str, name: &str, public: &VerifyingKey) -> Result<Checkpoint, String> {
        let (text, sigs) = note
            .split_once("\n\n")
            .ok_or("a signed note has its text, a blank line, then signatures")?;
        let text = format!("{text}\n");
        let mut lines = text.lines();
        let origin = lines.next().ok_or("no origin line")?.to_string();
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("no size line")?;
        let root: Hash = lines
            .next()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or("no root hash line")?;
        let want = key_id(name, public);
        let prefix = format!("\u{2014} {name} ");
        let mut signed = false;
        for line in sigs.lines() {
            let Some(b) = line.strip_prefix(&prefix) else {
                continue;
            };
            let blob = B64.decode(b).map_err(|_| "a signature is not base64")?;
            if blob.len() != 68 || blob[..4] != want {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| "a malformed signature")?;
            if public.verify(text.as_bytes(), &sig).is_err() {
                return Err("the signature does not verify".into());
            }
            signed = true;
        }
        if !signed {
            return Err(format!("no signature by {name}"));
        }
        Ok(Checkpoint { origin, size, root })
    }
}

/// The verifier key string of `name`'s key.
pub fn verifier_key(name: &str, public: &VerifyingKey) -> String {
    let mut k = vec![1u8];
    k.extend_from_slice(&public.to_bytes());
    format!(
        "{name}+{}+{}",
        crate::hex(&key_id(name, public)),
        B64.encode(k)
    )
}

/// Reads a verifier key string back.
pub fn parse_verifier_key(s: &str) -> Result<(String, VerifyingKey), String> {
    // Names hold no '+'; the base64 key may.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(_id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a verifier key reads <name>+<key id>+<key>".into());
    };
    let k = B64.decode(key).map_err(|_| "the key is not base64")?;
    if k.len() != 33 || k[0] != 1 {
        return Err("not an Ed25519 verifier key".into());
    }
    let bytes: [u8; 32] = k[1..].try_into().map_err(|_| "bad key length")?;
    let public = VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 key")?;
    Ok((name.to_string(), public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_sign_open_and_refuse_tampering() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let c = Checkpoint {
            origin: "citybrain.test/audit".into(),
            size: 42,
            root: [9u8; 32],
        };
        let note = c.sign("citybrain.test/audit", &key);
        assert!(note.starts_with("citybrain.test/audit\n42\n"));
        assert!(note.contains("\n\n\u{2014} citybrain.test/audit "));
        let pk = key.verifying_key();
        assert_eq!(Checkpoint::open(&note, "citybrain.test/audit", &pk), Ok(c));
        let forged = note.replace("\n42\n", "\n41\n");
        assert!(Checkpoint::open(&forged, "citybrain.test/audit", &pk).is_err());
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(Checkpoint::open(&note, "citybrain.test/audit", &other).is_err());
        let vk = verifier_key("citybrain.test/audit", &pk);
        assert_eq!(parse_verifier_key(&vk).unwrap().1, pk);
    }
}
