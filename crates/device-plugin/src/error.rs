//! Errors of the device plugin and their mapping to gRPC statuses.

use std::path::PathBuf;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Allocate named a device ID this plugin never advertised.
    #[error("unknown device id {id:?} for resource {resource}")]
    UnknownDevice {
        /// The resource.
        resource: &'static str,
        /// The ID (truncated to 63 characters).
        id: String,
    },
    /// Allocate asked for devices whose host node is missing.
    #[error("devices of {resource} are unhealthy: {} is missing", path.display())]
    Unhealthy {
        /// The resource.
        resource: &'static str,
        /// The missing host node.
        path: PathBuf,
    },
    /// A socket could not be bound, connected or removed.
    #[error("socket {}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kubelet refused or failed the registration.
    #[error("registering {resource} with the kubelet")]
    Register {
        /// The resource.
        resource: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Kubernetes API failed.
    #[error("kubernetes api")]
    Kube(#[source] kube::Error),
    /// Platform detection failed.
    #[error("detecting the sgx platform")]
    Platform(#[source] sgx_platform::Error),
    /// Writing the NFD feature file failed.
    #[error("writing nfd feature file {}", path.display())]
    Nfd {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::UnknownDevice { .. } => tonic::Status::invalid_argument(e.to_string()),
            Error::Unhealthy { .. } => tonic::Status::failed_precondition(e.to_string()),
            _ => {
                tracing::warn!(error = %crate::error_chain(&e), "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
