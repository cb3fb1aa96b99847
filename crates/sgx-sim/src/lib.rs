//! Simulated SGX DCAP quoting, for machines without SGX.
//!
//! * [`SimPki`]: a simulated Intel-style PKI built with rcgen: a root CA, a PCK Processor CA,
//!   a PCK certificate carrying the real SGX extension (OID 1.2.840.113741.1.13.1: PPID, TCB
//!   components, PCE SVN, CPUSVN, PCE-ID, FMSPC, SGX type) and a TCB signing certificate.
//!   The extension is encoded by `sgx_quote::pck::SgxExtension::to_der`. Common names are
//!   Intel's (verifiers match them exactly), and every subject's organization is
//!   `confcom SIMULATED (not Intel)` so nobody mistakes it for Intel's PKI.
//! * [`SoftQe`]: a software QE3 with a P-256 attestation key. It builds v3 quotes
//!   (certification data type 5, the PEM PCK chain) through `sgx_quote`'s encoder: the QE
//!   report's REPORTDATA is SHA-256(attestation key ‖ QE auth data) ‖ 0^32 and is signed by
//!   the PCK key, the quote by the attestation key.
//! * [`collateral`]: `dcap-verify`'s [`Collateral`](dcap_verify::Collateral) for the PKI
//!   (TCB info v3 and QE identity v2 signed by the TCB signing key, plus the PCK and root
//!   CRLs), consistent with it so the quote verifies as `UpToDate` under the DCAP rules when
//!   the simulated root is the trust anchor; and the Intel PCS style files derived from it.
//! * [`state`]: persistence of keys and certificates as PEM in a directory (the only module
//!   doing IO; std only), and the `confcom sim export` file layout.
//!
//! It is not secure: everything here is for tests, demos and development clusters. Time and
//! randomness come in as parameters or from aws-lc-rs; it never starts threads or runtimes.

pub mod collateral;
mod error;
mod pki;
mod qe;
pub mod report_mac;
pub mod state;

pub use error::{Error, Result};
pub use pki::{PlatformTcb, SimPki};
pub use qe::{QE_AUTH_DATA, QE_ISV_SVN, QE_MRENCLAVE, SoftQe};

/// Prefix of every simulated certificate subject.
pub const SIM_MARK: &str = "confcom SIMULATED";

/// A complete simulation: the PKI and the software QE3 that quotes with it.
pub struct Simulation {
    /// The simulated PKI (keys and certificates).
    pub pki: SimPki,
    /// The software quoting enclave.
    pub qe: SoftQe,
}

impl Simulation {
    /// Generates a fresh PKI and QE attestation key; certificates start one day before `now`.
    ///
    /// # Errors
    /// Key generation or certificate signing failures.
    pub fn generate(now: time::OffsetDateTime) -> Result<Self> {
        let pki = SimPki::generate(now)?;
        let att_key = qe::generate_attestation_key()?;
        let qe = SoftQe::new(&pki, &att_key)?;
        Ok(Self { pki, qe })
    }

    /// Collateral (TCB info, QE identity, CRLs and issuer chains) valid from one day before
    /// `now` to 30 days after it.
    ///
    /// # Errors
    /// Signing failures.
    pub fn collateral(&self, now: time::OffsetDateTime) -> Result<dcap_verify::Collateral> {
        collateral::build(&self.pki, now)
    }
}
