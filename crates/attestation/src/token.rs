//! Token signing keys: an ES256 (P-256) key generated and persisted on first start (or, read
//! only, managed outside: a Kubernetes Secret), retired keys kept in the JWKS so tokens
//! signed before a rotation still verify, and reloads when the key files change
//! ([`KeyRing::reload`]).
//!
//! The files: the key at `FILE`; retired keys at `FILE.retired/*.pem` (where
//! [`KeyRing::rotate`] writes the key it replaces), and, for a read-only key only, at
//! `retired-*.pem` beside `FILE` (what a Secret with several entries gives: `key.pem`,
//! `retired-next.pem`, ...; a writable key's directory, often the working directory, is not
//! scanned). Key files are read only if they are regular files (after symlinks) of at most
//! [`MAX_KEY_FILE_LEN`] bytes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

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
    /// The key is managed outside the server (read-only) and its file does not exist.
    #[error(
        "key file {path} does not exist (the key is managed outside this server, read-only: it is never generated)"
    )]
    Missing {
        /// The file.
        path: String,
    },
    /// [`KeyRing::rotate`] of a read-only key: rotate it by changing its files.
    #[error(
        "the signing key is managed outside this server (read-only): it cannot be rotated here"
    )]
    ReadOnly,
    /// [`KeyRing::rotate`] refused: the key file no longer holds the key in force (it was
    /// changed outside the server); nothing was written.
    #[error(
        "key file {path} no longer holds the signing key in force (changed outside this server): not rotated"
    )]
    KeyFileChanged {
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

impl Error {
    /// The kind of the IO error behind a file failure, if it is one.
    #[must_use]
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// How long a previous current key that no file holds any more stays published by default
/// after a reload replaced it: the default token lifetime (tokens it signed verify until
/// they expire) plus [`DEFAULT_RETENTION_MARGIN`].
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(8 * 3600 + 15 * 60);

/// The margin added to the token lifetime in [`DEFAULT_RETENTION`] (clock skew, relying
/// parties' caches of `/certs`).
pub const DEFAULT_RETENTION_MARGIN: Duration = Duration::from_secs(15 * 60);

/// The largest key file read (a P-256 PKCS#8 PEM is about 250 bytes).
pub const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// Prefix of the retired key files beside the key file.
const RETIRED_PREFIX: &str = "retired-";

/// One key. The parsed aws-lc-rs key pair is kept (jsonwebtoken's `encode` re-parses the
/// PKCS#8 document on every call, which costs as much as the signature itself), and the
/// PKCS#8 document itself ([`KeyRing::rotate`] writes it as the retired copy).
struct Key {
    kid: String,
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
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
        Some(Self {
            kid,
            pair,
            pkcs8: der_bytes.to_vec(),
            x,
            y,
        })
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
    /// The retired keys of the files, in file-name order.
    retired: Vec<Key>,
    /// Previous current keys (replaced by a reload or a rotation), oldest first, with when
    /// they were replaced: published for [`KeyRing::with_retention`] even if no file holds
    /// them.
    previous: Vec<(Key, Instant)>,
}

/// What [`KeyRing::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reload {
    /// The files are the ones in force (or the keys are not from files).
    Unchanged,
    /// A new current key (`kid`) signs from now on; the previous one stays published.
    KeyChanged {
        /// The `kid` of the key replaced.
        previous: String,
        /// The `kid` of the new current key.
        kid: String,
    },
    /// Only the retired key files changed.
    RetiredChanged,
}

/// The signing key and the retired keys still published.
pub struct KeyRing {
    path: Option<PathBuf>,
    read_only: bool,
    retention: Duration,
    ring: RwLock<Ring>,
    /// SHA-256 of the key files in force (names and contents), `None` without files. Held
    /// by a reload or a rotation throughout (one at a time).
    loaded: Mutex<Option<Vec<u8>>>,
    /// The retired key files skipped at start-up ([`Self::take_load_errors`]).
    load_errors: Mutex<Vec<Error>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

fn generate() -> Result<Vec<u8>, Error> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| Error::Generate)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.display().to_string();
    move |source| Error::Io { path, source }
}

/// Writes `der_bytes` as PEM into a new file beside `path` (a random name, `create_new`: an
/// existing file or symlink there is never followed, mode 0600), synced; returns its path.
fn write_temp(path: &Path, der_bytes: &[u8]) -> Result<PathBuf, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let suffix = crate::private_file::random_hex(8).ok_or(Error::Generate)?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{suffix}"));
    let tmp = PathBuf::from(name);
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der_bytes.to_vec()));
    crate::private_file::write_new(&tmp, text.as_bytes()).map_err(io_error(&tmp))?;
    Ok(tmp)
}

/// Moves the temporary file `tmp` over `path` (one rename: `path` is never missing; the
/// temporary file is removed if that fails).
fn install(tmp: &Path, path: &Path) -> Result<(), Error> {
    std::fs::rename(tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(tmp);
        io_error(path)(source)
    })
}

fn write_key(path: &Path, der_bytes: &[u8]) -> Result<(), Error> {
    let tmp = write_temp(path, der_bytes)?;
    install(&tmp, path)
}

/// The file work of a rotation: `old` (the key in force, `old_kid`) written to
/// `FILE.retired/<old_kid>.pem`, then `new` atomically over `path`. On a failure, whatever
/// this wrote is removed again: the files are as they were.
fn write_rotation(path: &Path, old_kid: &str, old: &[u8], new: &[u8]) -> Result<(), Error> {
    let tmp = write_temp(path, new)?;
    let dir = retired_dir(path);
    let retired = dir.join(format!("{old_kid}.pem"));
    let dir_existed = std::fs::symlink_metadata(&dir).is_ok();
    let retired_existed = std::fs::symlink_metadata(&retired).is_ok();
    let undo_retired = || {
        if !retired_existed {
            let _ = std::fs::remove_file(&retired);
        }
        if !dir_existed {
            let _ = std::fs::remove_dir(&dir);
        }
    };
    if let Err(e) = write_key(&retired, old) {
        let _ = std::fs::remove_file(&tmp);
        undo_retired();
        return Err(e);
    }
    if let Err(e) = install(&tmp, path) {
        undo_retired();
        return Err(e);
    }
    Ok(())
}

/// The contents of the key file `path`, read only if it is a regular file (symlinks are
/// followed to it: a Secret volume's entries are symlinks into `..data`; a FIFO or a device
/// is never opened for reading) of at most [`MAX_KEY_FILE_LEN`] bytes.
fn read_key_file(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let invalid = |what: &str| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned()),
    };
    if !std::fs::metadata(path).map_err(io_error(path))?.is_file() {
        return Err(invalid("not a regular file"));
    }
    // Non-blocking: should the file be swapped for a FIFO meanwhile, the open does not wait
    // for a writer (and the check below refuses it).
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io_error(path)(e.into()))?;
    let f = std::fs::File::from(fd);
    if !f.metadata().map_err(io_error(path))?.is_file() {
        return Err(invalid("not a regular file"));
    }
    let mut text = Vec::new();
    f.take(MAX_KEY_FILE_LEN.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(io_error(path))?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_KEY_FILE_LEN {
        return Err(invalid("larger than 64 KiB"));
    }
    Ok(text)
}

fn parse_key(path: &Path, text: &[u8]) -> Result<Key, Error> {
    let bad = || Error::BadKey {
        path: path.display().to_string(),
    };
    let p = pem::parse(text).map_err(|_| bad())?;
    Key::from_pkcs8(p.contents()).ok_or_else(bad)
}

fn retired_dir(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".retired");
    PathBuf::from(s)
}

/// The contents of the key files.
struct Files {
    key: Vec<u8>,
    /// Each retired file with its contents, or why it could not be read.
    retired: Vec<(PathBuf, Result<Vec<u8>, Error>)>,
    /// SHA-256 of every file's name and contents (or read error).
    digest: Vec<u8>,
}

/// The `.pem` files of `dir` whose name `matches`, sorted (none if `dir` does not exist).
/// Symlinks are followed (a Secret volume's files are symlinks into `..data`); only regular
/// files are listed.
fn pem_files(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, Error> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error(dir)(source)),
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".pem") && !n.starts_with("..") && matches(n))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The retired key files of the key at `path`: `<path>.retired/*.pem`, then (if `beside`:
/// a read-only key, the layout of a Secret) `retired-*.pem` beside it.
fn retired_files(path: &Path, beside: bool) -> Result<Vec<PathBuf>, Error> {
    let mut files = pem_files(&retired_dir(path), |_| true)?;
    if beside {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let own = path.file_name();
        files.extend(pem_files(dir, |n| {
            n.starts_with(RETIRED_PREFIX) && Some(std::ffi::OsStr::new(n)) != own
        })?);
    }
    Ok(files)
}

/// Reads the key files: the key file must be readable, a retired file that is not keeps
/// its error in [`Files::retired`].
fn read_files(path: &Path, beside: bool) -> Result<Files, Error> {
    let key = read_key_file(path)?;
    let retired: Vec<_> = retired_files(path, beside)?
        .into_iter()
        .map(|f| {
            let text = read_key_file(&f);
            (f, text)
        })
        .collect();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut add = |name: &Path, text: Result<&[u8], String>| {
        let name = name.as_os_str().as_encoded_bytes();
        let (tag, text) = match &text {
            Ok(t) => (0u8, *t),
            Err(e) => (1u8, e.as_bytes()),
        };
        ctx.update(&[tag]);
        for part in [name, text] {
            ctx.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_le_bytes());
            ctx.update(part);
        }
    };
    add(path, Ok(&key));
    for (f, text) in &retired {
        add(
            f,
            text.as_deref().map_err(|e| {
                format!(
                    "{e}: {}",
                    e.io_kind().map(|k| k.to_string()).unwrap_or_default()
                )
            }),
        );
    }
    let digest = ctx.finish().as_ref().to_vec();
    Ok(Files {
        key,
        retired,
        digest,
    })
}

impl Files {
    /// The keys; the first retired file that cannot be read or parsed is an error.
    fn parse(self, path: &Path) -> Result<(Key, Vec<Key>), Error> {
        let (current, retired, errors) = self.parse_lenient(path)?;
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok((current, retired)),
        }
    }

    /// The keys, skipping (and returning the errors of) retired files that cannot be read
    /// or parsed; the key file is still strict.
    fn parse_lenient(self, path: &Path) -> Result<(Key, Vec<Key>, Vec<Error>), Error> {
        let current = parse_key(path, &self.key)?;
        let mut retired = Vec::new();
        let mut errors = Vec::new();
        for (f, text) in self.retired {
            match text.and_then(|t| parse_key(&f, &t)) {
                Ok(k) => retired.push(k),
                Err(e) => errors.push(e),
            }
        }
        Ok((current, retired, errors))
    }
}

impl KeyRing {
    /// An in-memory key (not persisted; tests, demos).
    pub fn ephemeral() -> Result<Self, Error> {
        let der_bytes = generate()?;
        let current = Key::from_pkcs8(&der_bytes).ok_or(Error::Generate)?;
        Ok(Self {
            path: None,
            read_only: false,
            retention: DEFAULT_RETENTION,
            ring: RwLock::new(Ring {
                current,
                retired: Vec::new(),
                previous: Vec::new(),
            }),
            loaded: Mutex::new(None),
            load_errors: Mutex::new(Vec::new()),
        })
    }

    /// Loads the key at `path`, generating and persisting (mode 0600) one if missing;
    /// retired keys are read from `<path>.retired/*.pem`. A retired file that cannot be read
    /// or is not a key is skipped ([`Self::take_load_errors`]); the key file must be good.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        if !path.exists() {
            let der_bytes = generate()?;
            write_key(path, &der_bytes)?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
        }
        Self::load(path, false)
    }

    /// Loads the key at `path` and the retired keys (`<path>.retired/*.pem` and
    /// `retired-*.pem` beside it) managed outside the server (a Kubernetes Secret): nothing
    /// is ever generated or written, a missing file is an error ([`Error::Missing`]), and
    /// [`Self::rotate`] refuses ([`Error::ReadOnly`]); rotate by changing the files
    /// ([`Self::reload`]). Bad retired files are skipped as in [`Self::load_or_create`].
    pub fn load_read_only(path: &Path) -> Result<Self, Error> {
        if !path.exists() {
            return Err(Error::Missing {
                path: path.display().to_string(),
            });
        }
        Self::load(path, true)
    }

    fn load(path: &Path, read_only: bool) -> Result<Self, Error> {
        let files = read_files(path, read_only)?;
        let digest = files.digest.clone();
        let (current, retired, errors) = files.parse_lenient(path)?;
        Ok(Self {
            path: Some(path.to_owned()),
            read_only,
            retention: DEFAULT_RETENTION,
            ring: RwLock::new(Ring {
                current,
                retired,
                previous: Vec::new(),
            }),
            loaded: Mutex::new(Some(digest)),
            load_errors: Mutex::new(errors),
        })
    }

    /// The retired key files skipped at load (unreadable, or not keys), once: the caller
    /// logs them.
    pub fn take_load_errors(&self) -> Vec<Error> {
        std::mem::take(
            &mut *self
                .load_errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// How long a previous current key that no file holds stays published after a reload
    /// or a rotation replaced it (default [`DEFAULT_RETENTION`]): the token lifetime plus a
    /// margin.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// See [`Self::with_retention`].
    #[must_use]
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Whether the key is managed outside the server ([`Self::load_read_only`]).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The key file, if the key is from one.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the key files again, and puts them in force if they changed (compared by
    /// content, not modification time: a Kubernetes Secret volume changes by swapping a
    /// `..data` symlink). On a new current key, it signs from now on and the previous one
    /// stays published (for [`Self::with_retention`]) even if no file holds it. A file that
    /// cannot be read or is not a key is an error and the keys in force stay. Also drops the
    /// previous keys kept longer than the retention. The poll step of the server, callable
    /// directly (blocking file I/O); a no-op for an [`Self::ephemeral`] key.
    pub fn reload(&self) -> Result<Reload, Error> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        self.reload_locked(&mut loaded)
    }

    /// [`Self::reload`] with the lock of the files in force held.
    fn reload_locked(&self, loaded: &mut Option<Vec<u8>>) -> Result<Reload, Error> {
        let Some(path) = &self.path else {
            return Ok(Reload::Unchanged);
        };
        self.expire_previous();
        let files = read_files(path, self.read_only)?;
        if loaded.as_deref() == Some(&files.digest[..]) {
            return Ok(Reload::Unchanged);
        }
        let digest = files.digest.clone();
        let (current, retired) = files.parse(path)?;
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let outcome = if current.kid == ring.current.kid {
            Reload::RetiredChanged
        } else {
            let kid = current.kid.clone();
            let old = std::mem::replace(&mut ring.current, current);
            let previous = old.kid.clone();
            ring.previous.retain(|(k, _)| k.kid != kid);
            ring.previous.push((old, Instant::now()));
            Reload::KeyChanged { previous, kid }
        };
        ring.retired = retired;
        *loaded = Some(digest);
        Ok(outcome)
    }

    /// Drops the previous keys kept longer than the retention (the write lock only when one
    /// is due).
    fn expire_previous(&self) {
        let retention = self.retention;
        let due = |since: &Instant| since.elapsed() >= retention;
        {
            let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
            if !ring.previous.iter().any(|(_, since)| due(since)) {
                return;
            }
        }
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        ring.previous.retain(|(k, since)| {
            let keep = !due(since);
            if !keep {
                tracing::info!(kid = %k.kid, "previous token signing key no longer published (retention over)");
            }
            keep
        });
    }

    /// Replaces the signing key with a new one; the old one stays in the JWKS. With a key
    /// file, the key in force (from memory) is written to `<path>.retired/<kid>.pem`, then
    /// the new key replaces the key file atomically (a temporary file renamed over it: the
    /// key file never goes missing); a failure leaves the files and keys as they were.
    /// Refused when the key file no longer holds the key in force
    /// ([`Error::KeyFileChanged`]: the next [`Self::reload`] puts the file's key in force)
    /// and for a read-only key. Returns the new `kid`. Blocking file I/O; the keys are locked
    /// only for the swap (signing goes on meanwhile).
    pub fn rotate(&self) -> Result<String, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let der_bytes = generate()?;
        let new = Key::from_pkcs8(&der_bytes).ok_or(Error::Generate)?;
        let kid = new.kid.clone();
        // Held throughout: no poll or other rotation in between (the key in force stays).
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = &self.path {
            let (old_kid, old) = {
                let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
                (ring.current.kid.clone(), ring.current.pkcs8.clone())
            };
            match read_key_file(path).and_then(|text| parse_key(path, &text)) {
                Ok(on_disk) if on_disk.kid == old_kid => {}
                Ok(_) | Err(Error::BadKey { .. }) => {
                    return Err(Error::KeyFileChanged {
                        path: path.display().to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
            write_rotation(path, &old_kid, &old, &der_bytes)?;
        }
        {
            let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
            let old = std::mem::replace(&mut ring.current, new);
            ring.previous.push((old, Instant::now()));
        }
        // The files now hold the keys in force: the next poll finds them unchanged.
        if let Err(e) = self.reload_locked(&mut loaded) {
            tracing::warn!(error = %e, "key files unreadable after a rotation");
        }
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

    /// The JWKS document: the current key first, then the previous keys (newest first), then
    /// the retired keys of the files, each once.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = match self.ring.read() {
            Ok(r) => {
                let mut seen = std::collections::HashSet::new();
                std::iter::once(&r.current)
                    .chain(r.previous.iter().rev().map(|(k, _)| k))
                    .chain(r.retired.iter().rev())
                    .filter(|k| seen.insert(k.kid.as_str()))
                    .map(Key::jwk)
                    .collect()
            }
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

    fn kids(ring: &KeyRing) -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A new key as PEM text and its `kid`.
    fn new_key() -> (String, String) {
        let der_bytes = generate().unwrap();
        let kid = Key::from_pkcs8(&der_bytes).unwrap().kid;
        (pem::encode(&pem::Pem::new("PRIVATE KEY", der_bytes)), kid)
    }

    /// The claims of `token` verified with `ring`'s JWKS (by its `kid`).
    fn verify(ring: &KeyRing, token: &str) -> serde_json::Value {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(ring.jwks()).unwrap();
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .unwrap()
            .claims
    }

    fn token_kid(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    /// Every file under `dir` (recursively, symlinks not followed) with its contents.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.extend(snapshot(&p));
            } else if meta.is_symlink() {
                out.push((
                    p.clone(),
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
        out.sort();
        out
    }

    /// Replaces `path` atomically with `text`.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

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
        assert_eq!(kids(&ring), vec![kid2.clone(), kid1.clone()]);
        // The rotation's own files are in force: the next poll finds nothing new.
        assert_eq!(ring.reload().unwrap(), Reload::Unchanged);
        let reloaded = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(reloaded.kid(), kid2);
        assert_eq!(kids(&reloaded), vec![kid2, kid1]);
        // The token signed before the rotation still verifies with the published old key.
        assert_eq!(verify(&reloaded, &tok)["a"], 1);
    }

    #[test]
    fn retired_keys_beside_the_key_and_in_the_retired_dir_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let (current, kid) = new_key();
        let (beside, kid_beside) = new_key();
        let (in_dir, kid_in_dir) = new_key();
        let (other, kid_other) = new_key();
        std::fs::write(&path, current).unwrap();
        std::fs::write(dir.path().join("retired-2026-11.pem"), beside).unwrap();
        std::fs::create_dir(dir.path().join("key.pem.retired")).unwrap();
        std::fs::write(dir.path().join("key.pem.retired/x.pem"), in_dir).unwrap();
        // Neither a retired-*.pem beside the key nor in the retired directory: not published.
        std::fs::write(dir.path().join("other.pem"), &other).unwrap();
        std::fs::write(dir.path().join("retired-1.txt"), &other).unwrap();
        let ring = KeyRing::load_read_only(&path).unwrap();
        assert_eq!(ring.kid(), kid);
        let published = kids(&ring);
        assert_eq!(published.len(), 3, "{published:?}");
        assert_eq!(published[0], kid);
        assert!(published.contains(&kid_beside) && published.contains(&kid_in_dir));
        assert!(!published.contains(&kid_other));
        // A writable key's directory (often the working directory) is not scanned: only
        // its retired directory.
        let ring = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(kids(&ring), vec![kid.clone(), kid_in_dir.clone()]);
        assert!(ring.take_load_errors().is_empty());
        // A retired file that is not a key is skipped at start-up, its error kept for the
        // caller to log; the other keys are in force.
        std::fs::write(dir.path().join("retired-bad.pem"), "not a key").unwrap();
        std::fs::write(dir.path().join("key.pem.retired/bad.pem"), "not a key").unwrap();
        let ring = KeyRing::load_read_only(&path).unwrap();
        let errors = ring.take_load_errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| matches!(e, Error::BadKey { .. })));
        assert!(errors[0].to_string().contains("bad.pem"), "{}", errors[0]);
        assert!(
            errors[1].to_string().contains("retired-bad.pem"),
            "{}",
            errors[1]
        );
        assert!(ring.take_load_errors().is_empty(), "once");
        assert_eq!(kids(&ring).len(), 3);
        // Unchanged files: the poll does not report them again.
        assert_eq!(ring.reload().unwrap(), Reload::Unchanged);
        // The key file itself stays strict.
        std::fs::write(&path, "not a key").unwrap();
        let err = KeyRing::load_read_only(&path).unwrap_err();
        assert!(matches!(err, Error::BadKey { .. }), "{err}");
    }

    #[test]
    fn a_changed_key_file_signs_from_the_next_reload_and_the_old_key_stays_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let (k1, kid1) = new_key();
        let (k2, kid2) = new_key();
        std::fs::write(&path, &k1).unwrap();
        let ring = KeyRing::load_read_only(&path).unwrap();
        assert_eq!(ring.reload().unwrap(), Reload::Unchanged);
        let before = ring.sign(&serde_json::json!({"n": 1}), None).unwrap();
        // A new key; the old one in no file at all.
        replace(&path, &k2);
        assert_eq!(
            ring.reload().unwrap(),
            Reload::KeyChanged {
                previous: kid1.clone(),
                kid: kid2.clone()
            }
        );
        assert_eq!(ring.reload().unwrap(), Reload::Unchanged);
        let after = ring.sign(&serde_json::json!({"n": 2}), None).unwrap();
        assert_eq!(
            (token_kid(&before), token_kid(&after)),
            (kid1.clone(), kid2.clone())
        );
        assert_eq!(kids(&ring), vec![kid2.clone(), kid1.clone()]);
        assert_eq!(verify(&ring, &before)["n"], 1);
        assert_eq!(verify(&ring, &after)["n"], 2);
        // Back to the first key (a rollback): each key published once.
        replace(&path, &k1);
        assert!(matches!(ring.reload().unwrap(), Reload::KeyChanged { .. }));
        assert_eq!(kids(&ring), vec![kid1, kid2]);
    }

    #[test]
    fn a_secret_volume_data_symlink_swap_is_a_reload() {
        use std::os::unix::fs::symlink;
        // The layout of a Kubernetes Secret volume: `key.pem -> ..data/key.pem`,
        // `..data -> ..<timestamp>`; an update writes a new timestamped directory and
        // renames a new `..data` symlink over the old one (the mtimes of the visible names
        // never change).
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (k1, kid1) = new_key();
        let (k2, kid2) = new_key();
        std::fs::create_dir(d.join("..2026_11_01")).unwrap();
        std::fs::write(d.join("..2026_11_01/key.pem"), &k1).unwrap();
        symlink("..2026_11_01", d.join("..data")).unwrap();
        symlink("..data/key.pem", d.join("key.pem")).unwrap();
        let path = d.join("key.pem");
        let ring = KeyRing::load_read_only(&path).unwrap();
        let before = ring.sign(&serde_json::json!({"n": 1}), None).unwrap();
        assert_eq!(kids(&ring), vec![kid1.clone()]);

        let swap = |version: &str, files: &[(&str, &str)]| {
            std::fs::create_dir(d.join(version)).unwrap();
            for (name, text) in files {
                std::fs::write(d.join(version).join(name), text).unwrap();
            }
            symlink(version, d.join("..data_tmp")).unwrap();
            std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        };
        // The rotation: new key.pem, old key as retired-1.pem.
        swap("..2026_11_28", &[("key.pem", &k2), ("retired-1.pem", &k1)]);
        symlink("..data/retired-1.pem", d.join("retired-1.pem")).unwrap();
        assert_eq!(
            ring.reload().unwrap(),
            Reload::KeyChanged {
                previous: kid1.clone(),
                kid: kid2.clone()
            }
        );
        assert_eq!(
            token_kid(&ring.sign(&serde_json::json!({}), None).unwrap()),
            kid2
        );
        assert_eq!(kids(&ring), vec![kid2.clone(), kid1.clone()]);
        assert_eq!(verify(&ring, &before)["n"], 1);
        // The retired key removed from the Secret: still published from memory within the
        // retention.
        swap("..2026_11_29", &[("key.pem", &k2)]);
        std::fs::remove_file(d.join("retired-1.pem")).unwrap();
        assert_eq!(ring.reload().unwrap(), Reload::RetiredChanged);
        assert_eq!(kids(&ring), vec![kid2, kid1]);
        // After the retention: previous_keys_are_dropped_after_the_retention.
    }

    #[test]
    fn previous_keys_are_dropped_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let (k1, kid1) = new_key();
        let (k2, kid2) = new_key();
        std::fs::write(&path, &k1).unwrap();
        let ring = KeyRing::load_read_only(&path)
            .unwrap()
            .with_retention(Duration::ZERO);
        replace(&path, &k2);
        assert!(matches!(ring.reload().unwrap(), Reload::KeyChanged { .. }));
        assert_eq!(kids(&ring), vec![kid2.clone(), kid1]);
        assert_eq!(ring.reload().unwrap(), Reload::Unchanged);
        assert_eq!(kids(&ring), vec![kid2]);
    }

    #[test]
    fn an_invalid_or_missing_new_file_keeps_the_keys_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let (k1, kid1) = new_key();
        let (k2, kid2) = new_key();
        let (r, kid_r) = new_key();
        std::fs::write(&path, &k1).unwrap();
        std::fs::write(dir.path().join("retired-a.pem"), &r).unwrap();
        let ring = KeyRing::load_read_only(&path).unwrap();
        let published = kids(&ring);
        assert_eq!(published, vec![kid1.clone(), kid_r.clone()]);
        for broken in [
            "",
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            replace(&path, broken);
            let err = ring.reload().unwrap_err();
            assert!(matches!(err, Error::BadKey { .. }), "{err}");
            // Still an error at the next poll (not taken as seen).
            assert!(ring.reload().is_err());
            assert_eq!(ring.kid(), kid1);
            assert_eq!(kids(&ring), published);
            assert_eq!(
                token_kid(&ring.sign(&serde_json::json!({}), None).unwrap()),
                kid1
            );
        }
        std::fs::remove_file(&path).unwrap();
        let err = ring.reload().unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound), "{err}");
        assert_eq!(kids(&ring), published);
        // A valid key with an invalid retired file: nothing changes either.
        std::fs::write(&path, &k2).unwrap();
        std::fs::write(dir.path().join("retired-b.pem"), "garbage").unwrap();
        assert!(ring.reload().is_err());
        assert_eq!(kids(&ring), published);
        // Repaired: in force.
        std::fs::remove_file(dir.path().join("retired-b.pem")).unwrap();
        assert!(matches!(ring.reload().unwrap(), Reload::KeyChanged { .. }));
        assert_eq!(kids(&ring), vec![kid2, kid1, kid_r]);
    }

    #[test]
    fn read_only_never_writes_and_a_missing_file_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing/key.pem");
        let err = KeyRing::load_read_only(&path).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("never generated"),
            "{msg}"
        );
        assert!(snapshot(dir.path()).is_empty(), "nothing written");
        std::fs::create_dir(dir.path().join("signing")).unwrap();
        let (k1, kid1) = new_key();
        std::fs::write(&path, &k1).unwrap();
        let before = snapshot(dir.path());
        let ring = KeyRing::load_read_only(&path).unwrap();
        assert!(ring.is_read_only());
        assert!(matches!(ring.rotate().unwrap_err(), Error::ReadOnly));
        ring.sign(&serde_json::json!({}), None).unwrap();
        assert_eq!(ring.reload().unwrap(), Reload::Unchanged);
        assert_eq!(ring.kid(), kid1);
        assert_eq!(snapshot(dir.path()), before, "nothing written");
        assert!(!KeyRing::load_or_create(&path).unwrap().is_read_only());
    }

    #[test]
    fn key_files_are_written_through_a_fresh_private_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        // The old predictable temp name, planted as a symlink to another file: never
        // followed (the old code truncated and overwrote the target).
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("key.tmp")).unwrap();
        let ring = KeyRing::load_or_create(&path).unwrap();
        ring.rotate().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let retired = std::fs::read_dir(dir.path().join("key.pem.retired"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for f in [&path, &retired] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["key.pem", "key.pem.retired", "key.tmp", "victim"],
            "no temp file left"
        );
        // Temp names are random and created exclusively.
        let a = write_temp(&path, &generate().unwrap()).unwrap();
        let b = write_temp(&path, &generate().unwrap()).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("key.pem.tmp-") && name.len() == "key.pem.tmp-".len() + 16,
            "{name}"
        );
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_failed_rotation_leaves_the_files_and_keys_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let ring = KeyRing::load_or_create(&path).unwrap();
        let kid = ring.kid();
        // The retired directory cannot be created (a file is in the way).
        std::fs::write(dir.path().join("key.pem.retired"), "").unwrap();
        let before = snapshot(dir.path());
        let err = ring.rotate().unwrap_err();
        assert!(err.io_kind().is_some(), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        assert_eq!((ring.kid(), kids(&ring)), (kid.clone(), vec![kid]));
    }

    #[test]
    fn rotation_retires_the_key_in_force_and_refuses_a_key_file_changed_outside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let ring = KeyRing::load_or_create(&path).unwrap();
        let kid1 = ring.kid();
        let kid2 = ring.rotate().unwrap();
        // The retired copy is the key that was in force (by its kid), the key file the new
        // key.
        let retired = dir.path().join(format!("key.pem.retired/{kid1}.pem"));
        let text = std::fs::read(&retired).unwrap();
        assert_eq!(parse_key(&retired, &text).unwrap().kid, kid1);
        let text = std::fs::read(&path).unwrap();
        assert_eq!(parse_key(&path, &text).unwrap().kid, kid2);

        // Another key written into the key file outside the server: refused, nothing
        // written, the keys in force stay (the old code moved that file into the retired
        // directory and lost it from the files in force).
        let (other, other_kid) = new_key();
        replace(&path, &other);
        let before = snapshot(dir.path());
        let err = ring.rotate().unwrap_err();
        assert!(matches!(err, Error::KeyFileChanged { .. }), "{err}");
        assert!(err.to_string().contains("key.pem"), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        assert_eq!(ring.kid(), kid2);
        // Garbage in the key file: refused the same way.
        replace(&path, "not a key");
        assert!(matches!(
            ring.rotate().unwrap_err(),
            Error::KeyFileChanged { .. }
        ));
        // The next reload puts the file's key in force; then rotation works again.
        replace(&path, &other);
        assert!(matches!(ring.reload().unwrap(), Reload::KeyChanged { .. }));
        let kid3 = ring.rotate().unwrap();
        let retired = dir.path().join(format!("key.pem.retired/{other_kid}.pem"));
        assert_eq!(
            parse_key(&retired, &std::fs::read(&retired).unwrap())
                .unwrap()
                .kid,
            other_kid
        );
        assert_eq!(ring.kid(), kid3);
    }

    #[test]
    fn a_rotation_whose_install_fails_removes_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        // The key file cannot be replaced (a non-empty directory is in the way of the
        // rename): the retired copy written before is removed again, with its directory.
        let path = dir.path().join("key.pem");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "").unwrap();
        let before = snapshot(dir.path());
        let (old, new) = (generate().unwrap(), generate().unwrap());
        let err = write_rotation(&path, "kid-old", &old, &new).unwrap_err();
        assert!(err.io_kind().is_some(), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        // An existing retired directory and copy are left as they were.
        std::fs::create_dir(dir.path().join("key.pem.retired")).unwrap();
        std::fs::write(dir.path().join("key.pem.retired/kid-old.pem"), "kept").unwrap();
        std::fs::write(dir.path().join("key.pem.retired/other.pem"), "kept").unwrap();
        let err = write_rotation(&path, "kid-old", &old, &new).unwrap_err();
        assert!(err.io_kind().is_some(), "{err}");
        let after = snapshot(dir.path());
        assert!(
            after
                .iter()
                .all(|(p, _)| !p.to_string_lossy().contains(".tmp-")),
            "{after:?}"
        );
        assert!(dir.path().join("key.pem.retired/other.pem").exists());
    }

    #[test]
    fn only_regular_key_files_of_at_most_64_kib_are_read() {
        let mkfifo = |p: &Path| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        // A FIFO is never opened (the read would block until a writer came).
        mkfifo(&path);
        let err = KeyRing::load_read_only(&path).unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::InvalidInput),
            "{err}"
        );
        assert!(
            format!("{:?}", std::error::Error::source(&err)).contains("not a regular file"),
            "{err:?}"
        );
        // Nor through a symlink; a retired FIFO is not even listed.
        std::fs::remove_file(&path).unwrap();
        let (k, kid) = new_key();
        std::fs::write(&path, &k).unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        std::os::unix::fs::symlink(&fifo, dir.path().join("retired-fifo.pem")).unwrap();
        let ring = KeyRing::load_read_only(&path).unwrap();
        assert_eq!(kids(&ring), vec![kid]);
        assert!(ring.take_load_errors().is_empty());
        assert!(read_key_file(&dir.path().join("retired-fifo.pem")).is_err());
        // A directory, and an oversized file.
        assert!(read_key_file(dir.path()).is_err());
        let big = dir.path().join("big.pem");
        let mut text = k.into_bytes();
        text.resize(usize::try_from(MAX_KEY_FILE_LEN).unwrap() + 1, b'\n');
        std::fs::write(&big, &text).unwrap();
        let err = read_key_file(&big).unwrap_err();
        assert!(
            format!("{:?}", std::error::Error::source(&err)).contains("64 KiB"),
            "{err:?}"
        );
        text.truncate(usize::try_from(MAX_KEY_FILE_LEN).unwrap());
        std::fs::write(&big, &text).unwrap();
        assert_eq!(read_key_file(&big).unwrap().len(), text.len());
    }

    #[test]
    fn the_default_retention_is_the_default_token_lifetime_plus_a_margin() {
        assert_eq!(
            DEFAULT_RETENTION,
            Duration::from_secs(8 * 3600) + DEFAULT_RETENTION_MARGIN
        );
        let ring = KeyRing::ephemeral().unwrap();
        assert_eq!(ring.retention(), DEFAULT_RETENTION);
        let ring = ring.with_retention(Duration::from_secs(60));
        assert_eq!(ring.retention(), Duration::from_secs(60));
    }
}
