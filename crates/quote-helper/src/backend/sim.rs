//! The simulation backend: a software QE3 from `sgx-sim`.

use aesm::AesmError;
use sgx_quote::{Report, TargetInfo};
use sgx_sim::Simulation;

use super::QuoteBackend;

/// Quotes with the simulated QE3 and PKI.
///
/// The app REPORT's body goes into the quote unchanged. Its MAC is **not** checked: that
/// would need the report key of Intel's SDK simulation mode (an AES-CMAC key derived from
/// a fixed base key and owner epoch), which this build does not implement; the server logs
/// this at startup.
pub struct SimBackend {
    sim: Simulation,
}

impl SimBackend {
    /// Wraps a loaded simulation.
    #[must_use]
    pub fn new(sim: Simulation) -> Self {
        Self { sim }
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

    fn is_blocking(&self) -> bool {
        false
    }

    fn target_info(&self) -> Result<[u8; 512], AesmError> {
        Ok(self.sim.qe.target_info())
    }

    fn pub_key_id(&self) -> Result<[u8; 32], AesmError> {
        Ok(self.sim.qe.pub_key_id())
    }

    fn quote_size(&self) -> Result<u32, AesmError> {
        u32::try_from(self.sim.qe.quote_size()).map_err(|_| AesmError::Unexpected)
    }

    fn quote(&self, report: &[u8; 432]) -> Result<Vec<u8>, AesmError> {
        let report = Report::parse(report).map_err(|e| {
            tracing::debug!(error = %e, "app report does not parse");
            AesmError::InvalidReport
        })?;
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
