//! The DCAP backend: Intel's quoting library `libsgx_dcap_ql.so.1`, loaded at run time.
//!
//! It needs the library (and what it links: `libsgx_qe3_logic`, `libsgx_pce_logic`,
//! urts, `libsgx_enclave_common`), the QE3/PCE enclaves, a QPL for the PCK certificates,
//! and the devices `/dev/sgx_enclave` and `/dev/sgx_provision` (or the legacy
//! `/dev/sgx/enclave`, `/dev/sgx/provision`). [`DcapBackend::load`] checks all of them up
//! front and fails with one message naming everything that is missing.
//!
//! `libsgx_dcap_ql` quotes out-of-proc through AESM when `SGX_AESM_ADDR` is set in *its*
//! process, which for this service would mean quoting through its own socket: loading is
//! refused while that variable is set.
//!
//! `libsgx_dcap_ql` does not expose the attestation public key, so the public key ID is
//! taken from the first quote a client gets (the startup pre-warm makes no quote: that
//! needs an app REPORT). Until then InitQuoteEx answers 32 zero bytes; clients of the
//! out-of-proc protocol only use its size.
//!
//! `libsgx_dcap_ql` has no `qe_report_info` parameter either, so a GetQuoteEx asking for a
//! QE report is refused with `AESM_UNABLE_TO_GENERATE_QE_REPORT` before anything is quoted
//! ([`QuoteBackend::supports_qe_report`] is false); [`DcapBackend::load`] warns about it once.

// FFI into Intel's C library is the purpose of this module.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};

use aesm::AesmError;
use aws_lc_rs::digest::{SHA256, digest};
use libloading::Library;

use super::QuoteBackend;

/// The library's soname.
pub const DCAP_QL_LIBRARY: &str = "libsgx_dcap_ql.so.1";

/// Device pairs accepted (in-kernel driver names first, then the legacy out-of-tree ones).
pub const DEVICE_PAIRS: [(&str, &str); 2] = [
    ("/dev/sgx_enclave", "/dev/sgx_provision"),
    ("/dev/sgx/enclave", "/dev/sgx/provision"),
];

type GetTargetInfo = unsafe extern "C" fn(*mut u8) -> u32;
type GetQuoteSize = unsafe extern "C" fn(*mut u32) -> u32;
type GetQuote = unsafe extern "C" fn(*const u8, u32, *mut u8) -> u32;

/// Why the DCAP backend cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DcapError {
    /// Libraries or devices are missing.
    #[error("dcap backend unavailable, missing: {}", missing.join(", "))]
    Missing {
        /// Everything that is missing, one entry each.
        missing: Vec<String>,
    },
    /// `SGX_AESM_ADDR` is set in this process.
    #[error(
        "SGX_AESM_ADDR is set in the quote helper's environment: libsgx_dcap_ql would send \
         quotes back to this service; unset it for the quote helper container"
    )]
    AesmAddrSet,
    /// Pre-warming (init quote) failed.
    #[error("pre-warm failed: {call} returned quote3 error {code:#06x}")]
    Prewarm {
        /// The library function.
        call: &'static str,
        /// Its `quote3_error_t`.
        code: u32,
    },
}

struct Symbols {
    get_target_info: GetTargetInfo,
    get_quote_size: GetQuoteSize,
    get_quote: GetQuote,
    // Keeps the code behind the function pointers mapped.
    _lib: Library,
}

/// Quotes through `libsgx_dcap_ql.so.1`.
pub struct DcapBackend {
    syms: Mutex<Symbols>,
    pub_key_id: OnceLock<[u8; 32]>,
    /// Requests waiting for the library (another call is inside it).
    waiting: AtomicUsize,
}

/// Requests that may wait for the quoting library while another call is inside it (a first
/// quote can take seconds: it loads the enclaves and fetches PCK certificates). More are
/// answered `AESM_BUSY` at once, which clients retry, rather than each holding one of the
/// server's workers until the library is free.
pub const MAX_LIBRARY_WAITERS: usize = 4;

/// Checks devices under `dev_root` ("/" on a real node) and returns what is missing.
#[must_use]
pub fn missing_devices(dev_root: &Path) -> Vec<String> {
    let rel = |p: &str| dev_root.join(p.trim_start_matches('/'));
    if DEVICE_PAIRS
        .iter()
        .any(|(e, p)| rel(e).exists() && rel(p).exists())
    {
        return Vec::new();
    }
    let (e, p) = DEVICE_PAIRS[0];
    let mut missing = Vec::new();
    if !rel(e).exists() {
        missing.push(format!("{e} (SGX enclave device; mount it into the pod)"));
    }
    if !rel(p).exists() {
        missing.push(format!(
            "{p} (SGX provisioning device, needed by QE3/PCE; mount it and run in the sgx_prv group)"
        ));
    }
    missing
}

/// Maps `quote3_error_t` to `aesm_error_t` the way aesmd's ECDSA bundle does for the
/// codes clients act on; everything else is `AESM_UNEXPECTED_ERROR`.
#[must_use]
pub fn map_quote3_error(code: u32) -> AesmError {
    match code {
        0 => AesmError::Success,
        0xe002 => AesmError::Parameter,
        0xe003 => AesmError::OutOfMemory,
        0xe004 => AesmError::EcdsaIdMismatch,
        0xe005 => AesmError::PathnameBufferOverflow,
        0xe006 => AesmError::FileAccess,
        0xe007 => AesmError::StoredKey,
        0xe008 => AesmError::PubKeyIdMismatch,
        0xe009 => AesmError::InvalidPceSigScheme,
        0xe00a => AesmError::AttKeyBlob,
        0xe00b => AesmError::UnsupportedAttKeyId,
        0xe00c => AesmError::UnsupportedLoadingPolicy,
        0xe00d => AesmError::InterfaceUnavailable,
        0xe00e => AesmError::PlatformLibUnavailable,
        0xe00f => AesmError::AttKeyNotInitialized,
        0xe010 => AesmError::AttKeyCertDataInvalid,
        0xe011 => AesmError::NoPlatformCertData,
        0xe012 => AesmError::OutOfEpc,
        0xe013 => AesmError::Report,
        0xe014 => AesmError::EnclaveLost,
        0xe015 => AesmError::InvalidReport,
        0xe016 => AesmError::EnclaveLoad,
        0xe017 => AesmError::UnableToGenerateQeReport,
        0xe018 => AesmError::KeyCertification,
        _ => AesmError::Unexpected,
    }
}

impl DcapBackend {
    /// Checks the devices under `dev_root` and loads `library` (normally
    /// [`DCAP_QL_LIBRARY`]); then pre-warms with `sgx_qe_get_target_info` and
    /// `sgx_qe_get_quote_size` (which load QE3/PCE, certify the attestation key and fetch the
    /// PCK certificate data; no quote is made) so the first client does not pay for that
    /// inside its 15 s timeout. Logs one warning that `qe_report_info` requests will be
    /// refused.
    ///
    /// # Errors
    /// [`DcapError::Missing`] naming every missing library, symbol and device;
    /// [`DcapError::AesmAddrSet`]; [`DcapError::Prewarm`].
    pub fn load(library: &str, dev_root: &Path) -> Result<Self, DcapError> {
        if std::env::var_os("SGX_AESM_ADDR").is_some() {
            return Err(DcapError::AesmAddrSet);
        }
        let mut missing = Vec::new();
        // SAFETY: loading Intel's quoting library runs its constructors; that is the
        // documented way to use it, and nothing else in this process relies on it.
        let lib = match unsafe { Library::new(library) } {
            Ok(lib) => Some(lib),
            Err(e) => {
                missing.push(format!(
                    "{library} (Intel DCAP quote library, package libsgx-dcap-ql: {e})"
                ));
                None
            }
        };
        missing.extend(missing_devices(dev_root));
        let Some(lib) = lib else {
            return Err(DcapError::Missing { missing });
        };
        // SAFETY: the signatures match sgx_dcap_ql_wrapper.h (quote3_error_t is a u32
        // enum; the buffers are sgx_target_info_t, uint32_t, sgx_report_t and uint8_t*).
        let syms = unsafe {
            let t = lib.get::<GetTargetInfo>(b"sgx_qe_get_target_info\0");
            let s = lib.get::<GetQuoteSize>(b"sgx_qe_get_quote_size\0");
            let q = lib.get::<GetQuote>(b"sgx_qe_get_quote\0");
            match (t, s, q) {
                (Ok(t), Ok(s), Ok(q)) => Some((*t, *s, *q)),
                _ => None,
            }
        };
        let Some((get_target_info, get_quote_size, get_quote)) = syms else {
            missing.push(format!(
                "sgx_qe_get_target_info/sgx_qe_get_quote_size/sgx_qe_get_quote in {library}"
            ));
            return Err(DcapError::Missing { missing });
        };
        if !missing.is_empty() {
            return Err(DcapError::Missing { missing });
        }
        let backend = Self::from_symbols(Symbols {
            get_target_info,
            get_quote_size,
            get_quote,
            _lib: lib,
        });
        backend
            .raw_target_info()
            .map_err(|code| DcapError::Prewarm {
                call: "sgx_qe_get_target_info",
                code,
            })?;
        backend
            .raw_quote_size()
            .map_err(|code| DcapError::Prewarm {
                call: "sgx_qe_get_quote_size",
                code,
            })?;
        tracing::warn!(
            library,
            refused_with = AesmError::UnableToGenerateQeReport.label(),
            "GetQuoteEx requests with qe_report_info will be refused: {library} takes no \
             qe_report_info, so it cannot make a QE report for the app; clients that always \
             send one (the Fortanix aesm-client crate) cannot quote through the dcap backend"
        );
        Ok(backend)
    }

    fn from_symbols(syms: Symbols) -> Self {
        Self {
            syms: Mutex::new(syms),
            pub_key_id: OnceLock::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Runs `f` with the library, waiting for it only if fewer than [`MAX_LIBRARY_WAITERS`]
    /// requests wait already; otherwise [`AesmError::Busy`].
    fn with_bounded<T>(&self, f: impl FnOnce(&Symbols) -> T) -> Result<T, AesmError> {
        let guard = match self.syms.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_LIBRARY_WAITERS {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    tracing::info!(
                        waiting = MAX_LIBRARY_WAITERS,
                        "quoting library busy; answering AESM_BUSY"
                    );
                    return Err(AesmError::Busy);
                }
                let g = self
                    .syms
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                g
            }
        };
        Ok(f(&guard))
    }

    fn with<T>(&self, f: impl FnOnce(&Symbols) -> T) -> T {
        let guard = match self.syms.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&guard)
    }

    fn raw_target_info(&self) -> Result<[u8; 512], u32> {
        let mut ti = [0u8; 512];
        // SAFETY: `ti` is a writable sgx_target_info_t (512 bytes).
        let rc = self.with(|s| unsafe { (s.get_target_info)(ti.as_mut_ptr()) });
        if rc == 0 { Ok(ti) } else { Err(rc) }
    }

    fn raw_quote_size(&self) -> Result<u32, u32> {
        let mut size = 0u32;
        // SAFETY: `size` is a writable uint32_t.
        let rc = self.with(|s| unsafe { (s.get_quote_size)(&mut size) });
        if rc == 0 { Ok(size) } else { Err(rc) }
    }
}

fn log_code(call: &'static str, code: u32) -> AesmError {
    tracing::warn!(
        call,
        code = format_args!("{code:#06x}"),
        "libsgx_dcap_ql call failed"
    );
    map_quote3_error(code)
}

impl QuoteBackend for DcapBackend {
    fn name(&self) -> &'static str {
        "dcap"
    }

    fn target_info(&self) -> Result<[u8; 512], AesmError> {
        let mut ti = [0u8; 512];
        // SAFETY: `ti` is a writable sgx_target_info_t (512 bytes).
        let rc = self.with_bounded(|s| unsafe { (s.get_target_info)(ti.as_mut_ptr()) })?;
        if rc == 0 {
            Ok(ti)
        } else {
            Err(log_code("sgx_qe_get_target_info", rc))
        }
    }

    /// SHA-256 of the attestation key from the first client quote; 32 zero bytes before
    /// any (see the module docs).
    fn pub_key_id(&self) -> Result<[u8; 32], AesmError> {
        Ok(self.pub_key_id.get().copied().unwrap_or([0; 32]))
    }

    fn quote_size(&self) -> Result<u32, AesmError> {
        let mut size = 0u32;
        // SAFETY: `size` is a writable uint32_t.
        let rc = self.with_bounded(|s| unsafe { (s.get_quote_size)(&mut size) })?;
        if rc == 0 {
            Ok(size)
        } else {
            Err(log_code("sgx_qe_get_quote_size", rc))
        }
    }

    fn quote(&self, report: &[u8; 432]) -> Result<Vec<u8>, AesmError> {
        // Size and quote under one lock hold, so no other call (a re-certified key, a new
        // PCK cert chain) can change the size in between.
        let buf = self.with_bounded(|s| {
            let mut size = 0u32;
            // SAFETY: `size` is a writable uint32_t.
            let rc = unsafe { (s.get_quote_size)(&mut size) };
            if rc != 0 {
                return Err(log_code("sgx_qe_get_quote_size", rc));
            }
            let mut buf = vec![0u8; usize::try_from(size).map_err(|_| AesmError::Unexpected)?];
            // SAFETY: `report` is an sgx_report_t (432 bytes); `buf` has `size` writable
            // bytes.
            let rc = unsafe { (s.get_quote)(report.as_ptr(), size, buf.as_mut_ptr()) };
            if rc != 0 {
                return Err(log_code("sgx_qe_get_quote", rc));
            }
            Ok(buf)
        })??;
        if let Ok((q, _)) = sgx_quote::Quote::parse_tolerant(&buf) {
            let mut id = [0u8; 32];
            id.copy_from_slice(digest(&SHA256, &q.signature.attestation_key).as_ref());
            let _ = self.pub_key_id.set(id);
        }
        Ok(buf)
    }

    /// `libsgx_dcap_ql` has no `qe_report_info` parameter (`libsgx_qe3_logic` has).
    fn supports_qe_report(&self) -> bool {
        false
    }

    fn qe_report(
        &self,
        _target_info: &[u8; 512],
        _report_data: [u8; 64],
    ) -> Result<[u8; 432], AesmError> {
        // Not called: supports_qe_report is false.
        Err(AesmError::UnableToGenerateQeReport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_and_devices_are_all_named() {
        let root = tempfile::tempdir().unwrap();
        let err = DcapBackend::load("libconfcom_does_not_exist.so.1", root.path())
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("libconfcom_does_not_exist.so.1"), "{msg}");
        assert!(msg.contains("/dev/sgx_enclave"), "{msg}");
        assert!(msg.contains("/dev/sgx_provision"), "{msg}");
    }

    #[test]
    fn devices_are_found_under_either_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("dev/sgx")).unwrap();
        std::fs::write(root.path().join("dev/sgx_enclave"), b"").unwrap();
        let m = missing_devices(root.path());
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("/dev/sgx_provision"));
        std::fs::write(root.path().join("dev/sgx/enclave"), b"").unwrap();
        std::fs::write(root.path().join("dev/sgx/provision"), b"").unwrap();
        assert!(missing_devices(root.path()).is_empty());
    }

    /// Fake `libsgx_dcap_ql` functions: every size query changes the size, and a quote
    /// call fails (0xe002) unless it gets the size of the latest query, as a library whose
    /// size changed between the two calls would.
    mod fake {
        use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

        pub static SIZE: AtomicU32 = AtomicU32::new(1000);
        pub static QUOTES: AtomicUsize = AtomicUsize::new(0);
        pub static STALE: AtomicUsize = AtomicUsize::new(0);

        pub unsafe extern "C" fn target_info(ti: *mut u8) -> u32 {
            // SAFETY: the caller passes a 512-byte buffer.
            unsafe { ti.write_bytes(0x77, 512) };
            0
        }

        pub unsafe extern "C" fn quote_size(out: *mut u32) -> u32 {
            let size = 1000 + (SIZE.fetch_add(1, Ordering::SeqCst) + 1) % 16;
            SIZE.store(size, Ordering::SeqCst);
            std::thread::yield_now();
            // SAFETY: the caller passes a writable uint32_t.
            unsafe { out.write(size) };
            0
        }

        pub unsafe extern "C" fn quote(_report: *const u8, size: u32, buf: *mut u8) -> u32 {
            QUOTES.fetch_add(1, Ordering::SeqCst);
            if size != SIZE.load(Ordering::SeqCst) {
                STALE.fetch_add(1, Ordering::SeqCst);
                return 0xe002;
            }
            // SAFETY: the caller passes `size` writable bytes.
            unsafe { buf.write_bytes(0x5a, usize::try_from(size).unwrap_or(0)) };
            0
        }
    }

    fn fake_backend() -> DcapBackend {
        DcapBackend::from_symbols(Symbols {
            get_target_info: fake::target_info,
            get_quote_size: fake::quote_size,
            get_quote: fake::quote,
            // Any loaded library will do: nothing is looked up in it.
            _lib: Library::from(libloading::os::unix::Library::this()),
        })
    }

    /// Exercises the real `quote` code path against fake library functions (there is no
    /// SGX hardware or Intel library here): concurrent size queries never slip between a
    /// quote's size query and its quote call, and `qe_report_info` is refused without a
    /// quote.
    #[test]
    fn quote_size_and_quote_are_one_lock_hold_and_qe_reports_are_refused_up_front() {
        use std::sync::atomic::Ordering;

        use aesm::{ECDSA_P256_QE3_KEY_ID, QE_REPORT_INFO_SIZE, Request, Response};

        let b = fake_backend();
        assert!(!b.supports_qe_report());
        assert_eq!(b.target_info().unwrap(), [0x77; 512]);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..400 {
                    b.quote_size().unwrap();
                }
            });
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let q = b.quote(&[0; 432]).unwrap();
                        assert!((1000..1016).contains(&q.len()), "{}", q.len());
                        assert!(q.iter().all(|&x| x == 0x5a));
                    }
                });
            }
        });
        assert_eq!(fake::STALE.load(Ordering::SeqCst), 0);
        assert_eq!(fake::QUOTES.load(Ordering::SeqCst), 400);
        // The fake quotes do not parse, so no key was learned: still the zero ID.
        assert_eq!(b.pub_key_id().unwrap(), [0; 32]);

        let res = crate::service::handle(
            &b,
            Request::GetQuoteEx {
                report: vec![0; 432],
                att_key_id: Some(ECDSA_P256_QE3_KEY_ID.to_vec()),
                qe_report_info: Some(vec![0; QE_REPORT_INFO_SIZE]),
                buf_size: 4096,
            },
        );
        assert_eq!(res.code(), AesmError::UnableToGenerateQeReport);
        assert!(matches!(res, Response::Error { .. }));
        assert_eq!(fake::QUOTES.load(Ordering::SeqCst), 400, "a quote was made");
    }

    /// A library call that stays inside until released.
    mod stuck {
        use std::sync::atomic::{AtomicBool, Ordering};

        pub static HOLD: AtomicBool = AtomicBool::new(true);
        pub static INSIDE: AtomicBool = AtomicBool::new(false);

        pub unsafe extern "C" fn target_info(ti: *mut u8) -> u32 {
            INSIDE.store(true, Ordering::SeqCst);
            while HOLD.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // SAFETY: the caller passes a 512-byte buffer.
            unsafe { ti.write_bytes(0x11, 512) };
            0
        }

        pub unsafe extern "C" fn quote_size(out: *mut u32) -> u32 {
            // SAFETY: the caller passes a writable uint32_t.
            unsafe { out.write(100) };
            0
        }

        pub unsafe extern "C" fn quote(_report: *const u8, size: u32, buf: *mut u8) -> u32 {
            // SAFETY: the caller passes `size` writable bytes.
            unsafe { buf.write_bytes(0x22, usize::try_from(size).unwrap_or(0)) };
            0
        }
    }

    #[test]
    fn requests_beyond_the_waiters_bound_are_answered_busy_while_the_library_is_held() {
        use std::sync::atomic::Ordering;

        let b = DcapBackend::from_symbols(Symbols {
            get_target_info: stuck::target_info,
            get_quote_size: stuck::quote_size,
            get_quote: stuck::quote,
            _lib: Library::from(libloading::os::unix::Library::this()),
        });
        std::thread::scope(|s| {
            let holder = s.spawn(|| b.target_info());
            while !stuck::INSIDE.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let waiters: Vec<_> = (0..MAX_LIBRARY_WAITERS)
                .map(|_| s.spawn(|| b.quote_size()))
                .collect();
            while b.waiting.load(Ordering::SeqCst) < MAX_LIBRARY_WAITERS {
                std::thread::yield_now();
            }
            // One more: answered while the library is still held (were it to wait instead,
            // the library is released after 10 s and the answer is not Busy).
            let (tx, rx) = std::sync::mpsc::channel();
            let backend = &b;
            s.spawn(move || {
                let _ = tx.send((backend.quote_size(), backend.quote(&[0; 432])));
            });
            let answer = rx.recv_timeout(std::time::Duration::from_secs(10));
            stuck::HOLD.store(false, Ordering::SeqCst);
            let (size, quote) = answer.expect("the extra request waited for the library");
            assert_eq!(size, Err(AesmError::Busy));
            assert_eq!(quote, Err(AesmError::Busy));
            assert_eq!(holder.join().unwrap(), Ok([0x11; 512]));
            for w in waiters {
                assert!(w.join().unwrap().is_ok());
            }
        });
        assert_eq!(b.waiting.load(Ordering::SeqCst), 0);
        assert!(b.quote_size().is_ok());
    }

    #[test]
    fn quote3_errors_map_to_aesm_codes() {
        assert_eq!(map_quote3_error(0), AesmError::Success);
        assert_eq!(map_quote3_error(0xe011), AesmError::NoPlatformCertData);
        assert_eq!(map_quote3_error(0xe00f), AesmError::AttKeyNotInitialized);
        assert_eq!(map_quote3_error(0x1234), AesmError::Unexpected);
    }
}
