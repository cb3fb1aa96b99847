//! Token signing keys: an ES256 (P-256) key generated and persisted on first start, retired
//! keys kept in the JWKS so tokens signed before a rotation still verify.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Errors of key management and signing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a key file failed.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file is not a PKCS#8 P-256 private key (PEM).
    #[error("key file {path} is not a PKCS#8 P-256 private key")]
    BadKey {
        /// The file.
        path: String,
    },
    /// Key generation failed.
    #[error("key generation failed")]
    Generate,
    /// Signing failed.
    #[error("token signing failed")]
    Sign,
}

/// One key. The parsed aws-lc-rs key pair is kept (jsonwebtoken's `encode` re-parses the
/// PKCS#8 document on every call, which costs as much as the signature itself).
struct Key {
    kid: String,
    pair: EcdsaKeyPair,
    x: String,
    y: String,
}

impl Key {
    fn from_pkcs8(der_bytes: &[u8]) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der_bytes).ok()?;
        let public = pair.public_key().as_ref();
        let (x, y) = match public {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return None,
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        // RFC 7638 thumbprint.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ));
        Some(Self { kid, pair, x, y })
    }

    fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "use": "sig", "alg": "ES256",
        })
    }
}

struct Ring {
    current: Key,
    retired: Vec<Key>,
}

/// The signing key and the retired keys still published.
pub struct KeyRing {
    path: Option<PathBuf>,
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn generate() -> Result<Vec<u8>, Error> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| Error::Generate)
}

fn write_key(path: &Path, der_bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der_bytes.to_vec()));
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_key(path: &Path) -> Result<Key, Error> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bad = || Error::BadKey {
        path: path.display().to_string(),
    };
    let p = pem::parse(&text).map_err(|_| bad())?;
    Key::from_pkcs8(p.contents()).ok_or_else(bad)
}

fn retired_dir(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".retired");
    PathBuf::from(s)
}

impl KeyRing {
    /// An in-memory key (not persisted; tests, demos).
    pub fn ephemeral() -> Result<Self, Error> {
        let der_bytes = generate()?;
        let current = Key::from_pkcs8(&der_bytes).ok_or(Error::Generate)?;
        Ok(Self {
            path: None,
            ring: RwLock::new(Ring {
                current,
                retired: Vec::new(),
            }),
        })
    }

    /// Loads the key at `path`, generating and persisting (mode 0600) one if missing;
    /// retired keys are read from `<path>.retired/*.pem`.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        let current = if path.exists() {
            read_key(path)?
        } else {
            let der_bytes = generate()?;
            write_key(path, &der_bytes)?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Key::from_pkcs8(&der_bytes).ok_or(Error::Generate)?
        };
        let mut retired = Vec::new();
        if let Ok(rd) = std::fs::read_dir(retired_dir(path)) {
            let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                retired.push(read_key(&f)?);
            }
        }
        Ok(Self {
            path: Some(path.to_owned()),
            ring: RwLock::new(Ring { current, retired }),
        })
    }

    /// Replaces the signing key with a new one; the old one stays in the JWKS. Returns the
    /// new `kid`.
    pub fn rotate(&self) -> Result<String, Error> {
        let der_bytes = generate()?;
        let new = Key::from_pkcs8(&der_bytes).ok_or(Error::Generate)?;
        let kid = new.kid.clone();
        let mut ring = self.ring.write().map_err(|_| Error::Generate)?;
        if let Some(path) = &self.path {
            let old_kid = ring.current.kid.clone();
            let dir = retired_dir(path);
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
            std::fs::rename(path, dir.join(format!("{old_kid}.pem"))).map_err(|source| {
                Error::Io {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            write_key(path, &der_bytes)?;
        }
        let old = std::mem::replace(&mut ring.current, new);
        ring.retired.push(old);
        Ok(kid)
    }

    /// The current `kid`.
    #[must_use]
    pub fn kid(&self) -> String {
        self.ring
            .read()
            .map(|r| r.current.kid.clone())
            .unwrap_or_default()
    }

    /// The JWKS document (current key first).
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = match self.ring.read() {
            Ok(r) => std::iter::once(&r.current)
                .chain(r.retired.iter().rev())
                .map(Key::jwk)
                .collect(),
            Err(_) => Vec::new(),
        };
        serde_json::json!({ "keys": keys })
    }

    /// Signs `claims` as a compact ES256 JWS (RFC 7515/7518) with `kid` (and `jku` when
    /// given) in a `jsonwebtoken::Header`: BASE64URL(header) "." BASE64URL(claims) "."
    /// BASE64URL(r ‖ s), the signature by aws-lc-rs (ECDSA P-256, SHA-256, fixed encoding).
    pub fn sign(&self, claims: &serde_json::Value, jku: Option<&str>) -> Result<String, Error> {
        let ring = self.ring.read().map_err(|_| Error::Generate)?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(ring.current.kid.clone());
        header.jku = jku.map(str::to_owned);
        let header_json = serde_json::to_vec(&header).map_err(|_| Error::Sign)?;
        let claims_json = serde_json::to_vec(claims).map_err(|_| Error::Sign)?;
        let mut out = URL_SAFE_NO_PAD.encode(header_json);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut out);
        let sig = ring
            .current
            .pair
            .sign(&SystemRandom::new(), out.as_bytes())
            .map_err(|_| Error::Sign)?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_key_reloads_and_rotation_keeps_old_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pem");
        let ring = KeyRing::load_or_create(&path).unwrap();
        let kid1 = ring.kid();
        let again = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(again.kid(), kid1);
        let tok = ring.sign(&serde_json::json!({"a": 1}), None).unwrap();
        let kid2 = ring.rotate().unwrap();
        assert_ne!(kid1, kid2);
        let reloaded = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(reloaded.kid(), kid2);
        let jwks = reloaded.jwks();
        let kids: Vec<_> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kids, vec![kid2, kid1.clone()]);
        // The token signed before the rotation still verifies with the published old key.
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        let jwk = set.find(&kid1).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&tok, &key, &v).unwrap();
        assert_eq!(data.claims["a"], 1);
    }
}
