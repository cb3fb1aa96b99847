//! The attestation server's run-time changes (`PUT /policies/SgxEnclave`,
//! `POST /policies/SgxEnclave:reset`, `POST /certificates:add|remove`), kept in a store that
//! every replica reads, so that a change made through one replica is in force on all of them
//! and survives restarts.
//!
//! The state is one JSON document, [`RuntimeState`]: the policy body as accepted (none = the
//! start-up policy), the signer changes as received, and the hashes of the start-up
//! configuration it was made on ([`BasedOn`]).
//!
//! Nothing in the document is trusted for being there. In isolated mode (start-up signer
//! certificates), the signer changes are the signed `:add`/`:remove` requests (compact JWS as
//! received), replayed at every load from the start-up signers, each verified against the
//! set in force at its point ([`replay_signer_ops`]); the policy is the JWS as received and
//! verifies against the set in force when it was accepted ([`StoredPolicy::signer_ops`]).
//! Write access to the store can thus not forge a request that no signer signed; it can still
//! drop, reorder or replay recorded signed requests (there is no trusted counter), e.g.
//! return to an earlier state, and replay one as either kind ([`SignerOp::op`] is not covered
//! by the signature: MAA's `:add` and `:remove` carry the same payload), e.g. turn a recorded
//! removal of a signer into its addition, as long as the request's signer is in the set at
//! that point.
//! Outside isolated mode, a stored policy only has to parse: write access to the store is
//! worth the admin token.
//!
//! The two parts follow the start-up configuration independently: the signer changes apply
//! only on the same start-up signers, the policy only on the same start-up policy (and, when
//! its signer history was dropped, only if the start-up signers verify it).
//!
//! Backends ([`StateBackend`]), each with compare-and-swap writes on an opaque version token:
//! - [`DirStore`]: `runtime-state.json` in a directory (created 0700; an existing one must be
//!   owned by this user and not writable by group or others; the state and lock files are
//!   opened without following links), replaced atomically
//!   (a new temporary file with a random name, fsync, rename; mode 0600) under an advisory
//!   file lock; its version is the SHA-256 of the file. One blocking file operation at a time
//!   (a hung file system does not pile up threads). For one replica, or replicas on one host
//!   sharing the directory (a demo): not for a network file system.
//! - [`ConfigMapStore`]: one data key of a Kubernetes ConfigMap, replaced with its
//!   `metadata.resourceVersion` (the API server answers 409 Conflict to a stale one).
//!
//! Both read at most [`MAX_DOCUMENT_LEN`] bytes, and [`RuntimeStore::save`] refuses to write
//! more ([`StoreError::TooLarge`]): nothing could read it back.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::policy_jws::PolicySigners;

/// The format version of [`RuntimeState`] this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Upper bound of one store read or write through [`RuntimeStore`]: a hung API server must
/// not hold changes and polls for minutes.
pub const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The file name of [`DirStore`], and the data key of [`ConfigMapStore`].
pub const STATE_KEY: &str = "runtime-state.json";

/// At most this many signer changes are kept ([`RuntimeState::signer_ops`]); further ones are
/// refused until the operator restates the signer set in the start-up configuration.
pub const MAX_SIGNER_OPS: usize = 64;

/// Upper bound of a stored document (the ConfigMap size limit).
pub const MAX_DOCUMENT_LEN: usize = 1024 * 1024;

/// The run-time changes of the attestation server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeState {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Incremented by every change (for operators and logs; the stores compare versions of
    /// their own).
    #[serde(default)]
    pub generation: u64,
    /// The start-up configuration the changes were made on: [`Self::signer_ops`] apply only
    /// on the same start-up signers, [`Self::policy`] only on the same start-up policy.
    pub based_on: BasedOn,
    /// The policy in force, as accepted by `PUT /policies/SgxEnclave`; `None`: the start-up
    /// policy.
    #[serde(default)]
    pub policy: Option<StoredPolicy>,
    /// Isolated mode: the signed `POST /certificates:add|remove` requests, in the order
    /// applied; replayed from the start-up signers, each verified against the set in force at
    /// its point (at most [`MAX_SIGNER_OPS`]).
    #[serde(default)]
    pub signer_ops: Vec<SignerOp>,
}

/// A policy as accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPolicy {
    /// The plain YAML/JSON/claim-rule text, or the compact JWS (unsigned or signed) as sent.
    pub body: String,
    /// MAA's policy hash of the text (informative: recomputed on load).
    #[serde(default)]
    pub hash: String,
    /// How many of [`RuntimeState::signer_ops`] were in force when it was accepted: in
    /// isolated mode it must verify against the signer set after those.
    #[serde(default)]
    pub signer_ops: usize,
}

/// One signer change as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerOp {
    /// `:add` or `:remove`.
    pub op: SignerOpKind,
    /// The compact JWS of the request, as received.
    pub jws: String,
}

/// The kind of a [`SignerOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignerOpKind {
    /// `POST /certificates:add`.
    Add,
    /// `POST /certificates:remove`.
    Remove,
}

/// Hashes of a replica's start-up configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasedOn {
    /// Hex SHA-256 of the `--policy` text (empty text: the default policy).
    pub startup_policy_sha256: String,
    /// Hex SHA-256 of the start-up signer certificates (see [`BasedOn::new`]).
    pub startup_signers_sha256: String,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

impl BasedOn {
    /// The hashes of a start-up configuration: SHA-256 of the policy text, and SHA-256 of the
    /// sorted hex SHA-256s of the signer certificates (DER), one per line (order-insensitive).
    #[must_use]
    pub fn new(startup_policy: &str, startup_signers: &PolicySigners) -> Self {
        let mut certs: Vec<String> = startup_signers.certificates().map(sha256_hex).collect();
        certs.sort();
        Self {
            startup_policy_sha256: sha256_hex(startup_policy.as_bytes()),
            startup_signers_sha256: sha256_hex(certs.join("\n").as_bytes()),
        }
    }
}

impl RuntimeState {
    /// No changes on `based_on`.
    #[must_use]
    pub fn empty(based_on: BasedOn) -> Self {
        Self {
            version: FORMAT_VERSION,
            generation: 0,
            based_on,
            policy: None,
            signer_ops: Vec::new(),
        }
    }

    /// Parses a stored document (any other [`Self::version`] is an error).
    pub fn from_json(data: &str) -> Result<Self, String> {
        if data.len() > MAX_DOCUMENT_LEN {
            return Err(format!("larger than {MAX_DOCUMENT_LEN} bytes"));
        }
        let version = serde_json::from_str::<serde_json::Value>(data)
            .map_err(|e| e.to_string())?
            .get("version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                version.map_or_else(|| "missing".to_owned(), |v| v.to_string())
            ));
        }
        serde_json::from_str(data).map_err(|e| e.to_string())
    }

    /// The stored document.
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string_pretty(self).map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// The same changes (policy and signer history), whatever the generation and based-on.
    #[must_use]
    pub fn same_changes(&self, other: &Self) -> bool {
        self.policy == other.policy && self.signer_ops == other.signer_ops
    }
}

/// Replays `ops` from `startup`: each must be a request that `policy_jws` accepts from the
/// set in force at its point (signer certificate in the set, signature valid, payload naming a
/// certificate that can sign) and must change the set (the handlers store no other), and a
/// removal must leave a signer. The set after each prefix: `ops.len() + 1` sets, the first
/// `startup`.
pub fn replay_signer_ops(
    startup: &PolicySigners,
    ops: &[SignerOp],
) -> Result<Vec<PolicySigners>, String> {
    if ops.len() > MAX_SIGNER_OPS {
        return Err(format!(
            "{} signer changes stored (at most {MAX_SIGNER_OPS})",
            ops.len()
        ));
    }
    let mut sets = Vec::with_capacity(ops.len().saturating_add(1));
    let mut current = startup.clone();
    for (i, op) in ops.iter().enumerate() {
        let req = crate::policy_jws::decode_certificate_request(op.jws.as_bytes(), &current)
            .map_err(|e| format!("signer change {i}: {e}"))?;
        let mut next = current.clone();
        let changed = match op.op {
            SignerOpKind::Add => next.insert(req.certificate),
            SignerOpKind::Remove => next.remove(&req.certificate),
        };
        if !changed {
            return Err(format!("signer change {i} changes nothing"));
        }
        if next.is_empty() {
            return Err(format!("signer change {i} removes the last signer"));
        }
        sets.push(std::mem::replace(&mut current, next));
    }
    sets.push(current);
    Ok(sets)
}

/// Errors of a store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored version is not the expected one: another writer came first.
    #[error("the runtime state changed meanwhile (version conflict)")]
    Conflict,
    /// The store cannot be read or written.
    #[error("runtime state store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time (a write may still have happened).
    #[error("runtime state store unavailable: {0} timed out")]
    Timeout(&'static str),
    /// A document larger than [`MAX_DOCUMENT_LEN`] (its length): refused before writing, as
    /// no replica could read it back.
    #[error(
        "the runtime state document would be {0} bytes, more than the {MAX_DOCUMENT_LEN}-byte limit of the store"
    )]
    TooLarge(usize),
}

/// What a store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Opaque version token for [`StateBackend::save`].
    pub version: String,
    /// The document, if any.
    pub data: Option<String>,
}

/// A boxed `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store of the [`RuntimeState`] document with compare-and-swap writes.
pub trait StateBackend: Send + Sync + 'static {
    /// The current document and its version.
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>>;
    /// Replaces the document if its version is still `expected` (else
    /// [`StoreError::Conflict`]); the new version.
    fn save<'a>(
        &'a self,
        data: &'a str,
        expected: &'a str,
    ) -> BoxFuture<'a, Result<String, StoreError>>;
    /// Where the state lives, for logs.
    fn describe(&self) -> String;
    /// Whether several replicas may share the state (the default): a [`DirStore`] is one
    /// replica's.
    fn shared_by_replicas(&self) -> bool {
        true
    }
}

/// A shared handle on a [`StateBackend`], each read and write bounded by a timeout
/// ([`STORE_TIMEOUT`] unless set).
#[derive(Clone)]
pub struct RuntimeStore {
    backend: Arc<dyn StateBackend>,
    timeout: std::time::Duration,
}

impl fmt::Debug for RuntimeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RuntimeStore")
            .field(&self.backend.describe())
            .finish()
    }
}

impl RuntimeStore {
    /// A store over any backend.
    pub fn new(backend: impl StateBackend) -> Self {
        Self {
            backend: Arc::new(backend),
            timeout: STORE_TIMEOUT,
        }
    }

    /// The same store with another timeout per read or write.
    #[must_use]
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether several replicas may share the state ([`StateBackend::shared_by_replicas`]).
    #[must_use]
    pub fn is_shared_by_replicas(&self) -> bool {
        self.backend.shared_by_replicas()
    }

    /// A [`DirStore`] in `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self::new(DirStore::new(dir))
    }

    /// A [`ConfigMapStore`].
    pub fn config_map(api: kube::Api<k8s_openapi::api::core::v1::ConfigMap>, name: &str) -> Self {
        Self::new(ConfigMapStore::new(api, name))
    }

    /// The current document and its version (within the timeout).
    pub async fn load(&self) -> Result<Snapshot, StoreError> {
        tokio::time::timeout(self.timeout, self.backend.load())
            .await
            .map_err(|_| StoreError::Timeout("read"))?
    }

    /// Replaces the document if its version is still `expected` (within the timeout; a write
    /// that timed out may still have happened: the next read tells).
    /// A document larger than [`MAX_DOCUMENT_LEN`] is refused ([`StoreError::TooLarge`])
    /// without writing anything: no replica could read it back.
    pub async fn save(&self, data: &str, expected: &str) -> Result<String, StoreError> {
        if data.len() > MAX_DOCUMENT_LEN {
            return Err(StoreError::TooLarge(data.len()));
        }
        tokio::time::timeout(self.timeout, self.backend.save(data, expected))
            .await
            .map_err(|_| StoreError::Timeout("write"))?
    }

    /// Where the state lives.
    #[must_use]
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The upper bound of one read or write.
    #[must_use]
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }
}

/// `runtime-state.json` in a directory (see the module docs).
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
    /// A blocking read or write is running (it may outlive its caller's timeout on a hung
    /// file system): no other is started meanwhile.
    busy: Arc<AtomicBool>,
}

/// Clears [`DirStore::busy`] when the blocking operation ends.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The version token of a [`DirStore`] without a file.
const ABSENT: &str = "absent";

impl DirStore {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs `f` on the blocking pool, unless an earlier operation still runs there.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(StoreError::Unavailable(format!(
                "{}: an earlier read or write is still running",
                self.dir.display()
            )));
        }
        let guard = Busy(self.busy.clone());
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(&this)
        })
        .await
        .map_err(|e| join_error(&e))?
    }

    /// The state file.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_KEY)
    }

    fn version_of(data: Option<&[u8]>) -> String {
        data.map_or_else(
            || ABSENT.to_owned(),
            |d| format!("sha256:{}", sha256_hex(d)),
        )
    }

    /// Refuses a directory that others could write into or that another user owns: they
    /// could replace the state (or plant links) under this server.
    fn check_dir(dir: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(dir).map_err(|e| io_error(dir, &e))?;
        if !md.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let mode = md.mode() & 0o7777;
        let uid = rustix::process::geteuid().as_raw();
        if mode & 0o022 != 0 || md.uid() != uid {
            return Err(StoreError::Unavailable(format!(
                "refusing the state directory {} (mode {mode:04o}, owner uid {}): it must be owned by this user (uid {uid}) and not writable by group or others (chmod go-w)",
                dir.display(),
                md.uid()
            )));
        }
        Ok(())
    }

    /// Opens `path` without following a symbolic link.
    fn open_nofollow(
        path: &Path,
        flags: rustix::fs::OFlags,
        mode: u32,
    ) -> std::io::Result<std::fs::File> {
        let flags = flags | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, rustix::fs::Mode::from_raw_mode(mode))?;
        Ok(std::fs::File::from(fd))
    }

    fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::Read;
        let f = match Self::open_nofollow(path, rustix::fs::OFlags::RDONLY, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, &e)),
        };
        let limit = u64::try_from(MAX_DOCUMENT_LEN).unwrap_or(u64::MAX);
        let mut data = Vec::new();
        f.take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| io_error(path, &e))?;
        if data.len() > MAX_DOCUMENT_LEN {
            return Err(StoreError::Unavailable(format!(
                "{} is larger than {MAX_DOCUMENT_LEN} bytes",
                path.display()
            )));
        }
        Ok(Some(data))
    }

    /// Checks the directory, if it exists (else it is created 0700 on the first write): it
    /// must be owned by this user and not writable by group or others. Every read and write
    /// checks it too; this is for a clear error at start-up.
    pub fn check(&self) -> Result<(), StoreError> {
        match std::fs::symlink_metadata(&self.dir) {
            // Not created yet: nothing stored.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            _ => Self::check_dir(&self.dir),
        }
    }

    fn load_blocking(&self) -> Result<Snapshot, StoreError> {
        let path = self.path();
        self.check()?;
        let data = Self::read(&path)?;
        let version = Self::version_of(data.as_deref());
        let data = data
            .map(|d| {
                String::from_utf8(d).map_err(|_| {
                    StoreError::Unavailable(format!("{} is not UTF-8", path.display()))
                })
            })
            .transpose()?;
        Ok(Snapshot { version, data })
    }

    fn save_blocking(&self, data: &str, expected: &str) -> Result<String, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        if data.len() > MAX_DOCUMENT_LEN {
            return Err(StoreError::TooLarge(data.len()));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io_error(&self.dir, &e))?;
        Self::check_dir(&self.dir)?;
        let lock_path = self.dir.join(".runtime-state.lock");
        let lock = Self::open_nofollow(
            &lock_path,
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
            0o600,
        )
        .map_err(|e| io_error(&lock_path, &e))?;
        lock.lock().map_err(|e| io_error(&lock_path, &e))?;
        let path = self.path();
        if Self::version_of(Self::read(&path)?.as_deref()) != expected {
            return Err(StoreError::Conflict);
        }
        // An unpredictable name, created new (never an existing file or symlink).
        let suffix = crate::private_file::random_hex(12)
            .ok_or_else(|| StoreError::Unavailable("no random numbers".into()))?;
        let tmp = self.dir.join(format!(".{STATE_KEY}.{suffix}.tmp"));
        let write = || -> std::io::Result<()> {
            crate::private_file::write_new(&tmp, data.as_bytes())?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(&path, &e));
        }
        drop(lock);
        Ok(Self::version_of(Some(data.as_bytes())))
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn join_error(e: &tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("store task failed: {e}"))
}

impl StateBackend for DirStore {
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        Box::pin(self.blocking(Self::load_blocking))
    }

    fn save<'a>(
        &'a self,
        data: &'a str,
        expected: &'a str,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        let (data, expected) = (data.to_owned(), expected.to_owned());
        Box::pin(self.blocking(move |this| this.save_blocking(&data, &expected)))
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    /// One replica's (a local directory).
    fn shared_by_replicas(&self) -> bool {
        false
    }
}

/// The [`STATE_KEY`] data key of a ConfigMap (see the module docs). The ConfigMap must exist
/// (the Helm chart creates it); the server needs `get` and `update` on it.
pub struct ConfigMapStore {
    api: kube::Api<k8s_openapi::api::core::v1::ConfigMap>,
    name: String,
    /// The object last read, replaced with its other keys, labels and annotations intact.
    last: Mutex<Option<k8s_openapi::api::core::v1::ConfigMap>>,
}

impl ConfigMapStore {
    /// The store in ConfigMap `name` of `api`'s namespace.
    pub fn new(api: kube::Api<k8s_openapi::api::core::v1::ConfigMap>, name: &str) -> Self {
        Self {
            api,
            name: name.to_owned(),
            last: Mutex::new(None),
        }
    }

    fn kube_error(&self, e: kube::Error) -> StoreError {
        match e {
            kube::Error::Api(s) if s.code == 409 => StoreError::Conflict,
            kube::Error::Api(s) if s.code == 404 => StoreError::Unavailable(format!(
                "ConfigMap {} not found (it must exist: the Helm chart creates it)",
                self.name
            )),
            e => StoreError::Unavailable(format!("ConfigMap {}: {e}", self.name)),
        }
    }

    async fn get(&self) -> Result<k8s_openapi::api::core::v1::ConfigMap, StoreError> {
        let cm = self
            .api
            .get(&self.name)
            .await
            .map_err(|e| self.kube_error(e))?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some(cm.clone());
        }
        Ok(cm)
    }

    fn version(cm: &k8s_openapi::api::core::v1::ConfigMap) -> String {
        cm.metadata.resource_version.clone().unwrap_or_default()
    }

    async fn save_inner(&self, data: &str, expected: &str) -> Result<String, StoreError> {
        if data.len() > MAX_DOCUMENT_LEN {
            return Err(StoreError::TooLarge(data.len()));
        }
        let cached = self
            .last
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .filter(|cm| Self::version(cm) == expected);
        let mut cm = match cached {
            Some(cm) => cm,
            None => {
                let cm = self.get().await?;
                if Self::version(&cm) != expected {
                    return Err(StoreError::Conflict);
                }
                cm
            }
        };
        cm.data
            .get_or_insert_with(Default::default)
            .insert(STATE_KEY.to_owned(), data.to_owned());
        let saved = self
            .api
            .replace(&self.name, &kube::api::PostParams::default(), &cm)
            .await
            .map_err(|e| self.kube_error(e))?;
        let version = Self::version(&saved);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(saved);
        }
        Ok(version)
    }
}

impl StateBackend for ConfigMapStore {
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        Box::pin(async move {
            let cm = self.get().await?;
            let data = cm.data.as_ref().and_then(|d| d.get(STATE_KEY)).cloned();
            if data.as_ref().is_some_and(|d| d.len() > MAX_DOCUMENT_LEN) {
                return Err(StoreError::Unavailable(format!(
                    "ConfigMap {} key {STATE_KEY} is larger than {MAX_DOCUMENT_LEN} bytes",
                    self.name
                )));
            }
            Ok(Snapshot {
                version: Self::version(&cm),
                data,
            })
        })
    }

    fn save<'a>(
        &'a self,
        data: &'a str,
        expected: &'a str,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(self.save_inner(data, expected))
    }

    fn describe(&self) -> String {
        format!(
            "ConfigMap {}/{} key {STATE_KEY}",
            self.api.namespace().unwrap_or_default(),
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn based_on() -> BasedOn {
        BasedOn::new("min_svn: 1", &PolicySigners::none())
    }

    #[tokio::test]
    async fn dir_store_compares_and_swaps_and_writes_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = RuntimeStore::dir(dir.path().join("state"));
        let first = store.load().await.unwrap();
        assert_eq!(first.data, None);
        let doc = RuntimeState::empty(based_on()).to_json().unwrap();
        let v1 = store.save(&doc, &first.version).await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(
            (loaded.version.as_str(), loaded.data.as_deref()),
            (v1.as_str(), Some(doc.as_str()))
        );
        // A writer still holding the first version loses.
        assert!(matches!(
            store.save("{}", &first.version).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            store.load().await.unwrap().data.as_deref(),
            Some(doc.as_str())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("state").join(STATE_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[tokio::test]
    async fn dir_store_unreadable_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocker = dir.path().join("state");
        std::fs::write(&blocker, "x").unwrap();
        let store = RuntimeStore::dir(&blocker);
        assert!(matches!(
            store.load().await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            store.save("{}", ABSENT).await,
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn documents_round_trip_and_other_format_versions_are_refused() {
        let mut s = RuntimeState::empty(based_on());
        s.generation = 3;
        s.policy = Some(StoredPolicy {
            body: "min_svn: 2".into(),
            hash: "h".into(),
            signer_ops: 1,
        });
        s.signer_ops.push(SignerOp {
            op: SignerOpKind::Remove,
            jws: "a.b.c".into(),
        });
        let json = s.to_json().unwrap();
        assert!(json.contains(r#""op": "remove""#), "{json}");
        let back = RuntimeState::from_json(&json).unwrap();
        assert_eq!(back, s);
        let mut v2 = serde_json::to_value(&s).unwrap();
        v2["version"] = 2.into();
        let err = RuntimeState::from_json(&v2.to_string()).unwrap_err();
        assert!(err.contains("format version 2"), "{err}");
        assert!(RuntimeState::from_json("not json").is_err());
        // Unknown fields (an older layout's `signers` list) are refused, not ignored.
        let mut old = serde_json::to_value(&s).unwrap();
        old["signers"] = serde_json::json!(["AAAA"]);
        let err = RuntimeState::from_json(&old.to_string()).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let big = format!(
            "{{\"version\":1,\"pad\":\"{}\"}}",
            "x".repeat(MAX_DOCUMENT_LEN)
        );
        assert!(
            RuntimeState::from_json(&big)
                .unwrap_err()
                .contains("larger")
        );
    }

    #[tokio::test]
    async fn dir_store_is_private_capped_and_runs_one_blocking_operation_at_a_time() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let backend = DirStore::new(dir.path().join("state"));
        let store = RuntimeStore::new(backend.clone());
        let v = store.save("{}", ABSENT).await.unwrap();
        let mode = std::fs::metadata(dir.path().join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // An earlier blocking operation still running (a hung file system): no new one.
        backend.busy.store(true, Ordering::SeqCst);
        let err = store.load().await.unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        assert!(store.save("{}", &v).await.is_err());
        backend.busy.store(false, Ordering::SeqCst);
        assert_eq!(store.load().await.unwrap().data.as_deref(), Some("{}"));
        // A document past the ConfigMap limit is not read.
        std::fs::write(backend.path(), vec![b' '; MAX_DOCUMENT_LEN + 1]).unwrap();
        let err = store.load().await.unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(!backend.busy.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn dir_store_refuses_a_loose_directory_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = RuntimeStore::dir(&state);
        let v = store.save("{}", ABSENT).await.unwrap();
        // Writable by the group (or others): refused, naming the path and the mode.
        for mode in [0o770, 0o707, 0o777] {
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(mode)).unwrap();
            for err in [
                store.load().await.unwrap_err(),
                store.save("{\"x\":1}", &v).await.unwrap_err(),
            ] {
                let m = err.to_string();
                assert!(
                    m.contains("refusing the state directory")
                        && m.contains(&state.display().to_string())
                        && m.contains(&format!("{mode:04o}")),
                    "{m}"
                );
            }
        }
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(store.load().await.unwrap().data.as_deref(), Some("{}"));
        // Owned by another user: as root, give it away; otherwise "/" is someone else's.
        let other = if rustix::process::geteuid().is_root() {
            let other = dir.path().join("other");
            std::fs::create_dir(&other).unwrap();
            std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
            other
        } else {
            PathBuf::from("/")
        };
        let err = RuntimeStore::dir(&other).load().await.unwrap_err();
        assert!(err.to_string().contains("owner uid"), "{err}");

        // The state file or the lock file a symbolic link: not followed.
        let target = dir.path().join("target");
        std::fs::write(&target, "{\"planted\":1}").unwrap();
        std::fs::remove_file(state.join(STATE_KEY)).unwrap();
        std::os::unix::fs::symlink(&target, state.join(STATE_KEY)).unwrap();
        assert!(matches!(
            store.load().await,
            Err(StoreError::Unavailable(_))
        ));
        std::fs::remove_file(state.join(STATE_KEY)).unwrap();
        let lock = state.join(".runtime-state.lock");
        std::fs::remove_file(&lock).unwrap();
        let lock_target = dir.path().join("lock-target");
        std::os::unix::fs::symlink(&lock_target, &lock).unwrap();
        assert!(matches!(
            store.save("{}", ABSENT).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(!lock_target.exists());
        assert!(!state.join(STATE_KEY).exists());
    }

    #[test]
    fn based_on_ignores_signer_order() {
        let mut ab = PolicySigners::none();
        ab.insert(vec![1]);
        ab.insert(vec![2]);
        let mut ba = PolicySigners::none();
        ba.insert(vec![2]);
        ba.insert(vec![1]);
        assert_eq!(BasedOn::new("p", &ab), BasedOn::new("p", &ba));
        assert_ne!(BasedOn::new("p", &ab), BasedOn::new("q", &ab));
        assert_ne!(
            BasedOn::new("p", &ab),
            BasedOn::new("p", &PolicySigners::none())
        );
    }
}
