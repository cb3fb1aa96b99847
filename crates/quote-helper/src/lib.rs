//! confcom's quote helper: an AESM-compatible out-of-proc quoting service.
//!
//! Enclave apps in pods set `SGX_AESM_ADDR=1`, mount the node's `/var/run/aesmd`, and get
//! DCAP quotes from this service instead of Intel's `aesmd`, over the AESM wire protocol
//! (crate `aesm`). It serves InitQuoteEx, GetQuoteSizeEx, GetQuoteEx, SelectAttKeyID,
//! GetSupportedAttKeyIDNum and GetSupportedAttKeyIDs for the ECDSA P-256 QE3 key, with the
//! quirks real clients rely on; EPID and launch-token requests get `AESM_SERVICE_UNAVAILABLE`.
//!
//! * [`service`]: the protocol logic as a pure function of a request and a [`QuoteBackend`].
//! * [`server`]: the Unix-socket server (bounded connections, per-connection timeouts,
//!   SO_PEERCRED request logs, graceful shutdown) and [`metrics`].
//! * [`backend`]: the DCAP backend (Intel's `libsgx_dcap_ql.so.1` loaded at run time) and
//!   the simulation backend (`sgx-sim`).
//! * [`cli`]: `confcom quote-helper` and its `probe` subcommand.

pub mod backend;
pub mod cli;
pub mod metrics;
pub mod server;
pub mod service;

pub use backend::QuoteBackend;
