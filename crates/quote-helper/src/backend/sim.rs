//! The simulation backend: a software QE3 from `sgx-sim`.

use aesm::AesmError;
use sgx_quote::{Report, TargetInfo};
use sgx_sim::Simulation;
use sgx_sim::report_mac::{self, ReportMac};

use super::QuoteBackend;

/// Quotes with the simulated QE3 and PKI.
///
/// The app REPORT's body goes into the quote unchanged. Its MAC is checked against the
/// report key of Intel's SDK simulation mode for our QE's TARGETINFO
/// ([`sgx_sim::report_mac`]) and the result is logged as `report_mac = "sdk-sim-valid" |
/// "not-sdk-sim"`; a REPORT is never rejected for it (apps built in hardware mode or with
/// other SDKs cannot match). The derivation follows the SDK source; it has not been checked
/// against a REPORT from a real SDK simulation enclave.
pub struct SimBackend {
    sim: Simulation,
    target_info: [u8; 512],
}

impl SimBackend {
    /// Wraps a loaded simulation.
    #[must_use]
    pub fn new(sim: Simulation) -> Self {
        let target_info = sim.qe.target_info();
        Self { sim, target_info }
    }

    /// Whether `report`'s MAC matches the SDK simulation report key for our QE.
    #[must_use]
    pub fn report_mac(&self, report: &[u8; 432]) -> ReportMac {
        report_mac::check(report, &self.target_info)
    }

    /// The simulation (for exporting its root and collateral).
    #[must_use]
    pub fn simulation(&self) -> &Simulation {
        &self.sim
    }
}

impl QuoteBackend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn may_block(&self) -> bool {
        false
    }

    fn target_info(&self) -> Result<[u8; 512], AesmError> {
        Ok(self.target_info)
    }

    fn pub_key_id(&self) -> Result<[u8; 32], AesmError> {
        Ok(self.sim.qe.pub_key_id())
    }

    fn quote_size(&self) -> Result<u32, AesmError> {
        u32::try_from(self.sim.qe.quote_size()).map_err(|_| AesmError::Unexpected)
    }

    fn quote(&self, report: &[u8; 432]) -> Result<Vec<u8>, AesmError> {
        let raw = report;
        let report = Report::parse(report).map_err(|e| {
            tracing::debug!(error = %e, "app report does not parse");
            AesmError::InvalidReport
        })?;
        // Informational only: never a reason to refuse the quote.
        tracing::info!(
            report_mac = self.report_mac(raw).label(),
            mrenclave = %hex::encode(report.body.mr_enclave.0),
            "app report MAC checked against the SDK simulation report key"
        );
        self.sim.qe.quote(&report.body).map_err(|e| {
            tracing::error!(error = %e, "simulated quote failed");
            AesmError::Unexpected
        })
    }

    fn qe_report(
        &self,
        target_info: &[u8; 512],
        report_data: [u8; 64],
    ) -> Result<[u8; 432], AesmError> {
        let target = TargetInfo::parse(target_info).map_err(|_| AesmError::Parameter)?;
        Ok(self.sim.qe.qe_report_for(&target, report_data))
    }
}

#[cfg(test)]
mod tests {
    use sgx_quote::{MrEnclave, ReportBody};

    use super::*;

    fn backend() -> SimBackend {
        SimBackend::new(Simulation::generate(time::OffsetDateTime::now_utc()).unwrap())
    }

    fn body() -> [u8; 384] {
        ReportBody {
            mr_enclave: MrEnclave([0x11; 32]),
            ..ReportBody::default()
        }
        .to_bytes()
    }

    #[test]
    fn sdk_sim_report_is_recognised_and_quoted() {
        let b = backend();
        let report = report_mac::sdk_sim_report(&body(), &b.target_info().unwrap());
        assert_eq!(b.report_mac(&report), ReportMac::SdkSimValid);
        assert!(!b.quote(&report).unwrap().is_empty());
    }

    #[test]
    fn report_without_sdk_sim_mac_is_still_quoted() {
        let b = backend();
        let mut report = [0u8; 432];
        report[..384].copy_from_slice(&body());
        assert_eq!(b.report_mac(&report), ReportMac::NotSdkSim);
        let quote = b.quote(&report).unwrap();
        let sdk = report_mac::sdk_sim_report(&body(), &b.target_info().unwrap());
        // Same body, same quoted body, whatever the MAC.
        let parsed = sgx_quote::Quote::parse(&quote).unwrap();
        assert_eq!(
            parsed.sgx_report_body(),
            Some(&Report::parse(&sdk).unwrap().body)
        );
    }
}
