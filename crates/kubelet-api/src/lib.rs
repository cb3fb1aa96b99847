//! The kubelet device plugin API v1beta1 and the kubelet plugin registration API v1: prost
//! messages and tonic client and server stubs generated from the upstream protos, plus the
//! contract constants of `k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/constants.go` and
//! `k8s.io/kubelet/pkg/apis/pluginregistration/v1/constants.go`.
//!
//! - [`v1beta1`] from `staging/src/k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto`,
//!   vendored in the workspace's `proto/kubelet/` (package `v1beta1`, same services, messages
//!   and field numbers).
//! - [`pluginregistration`] from `staging/src/k8s.io/kubelet/pkg/apis/pluginregistration/v1/api.proto`,
//!   vendored in this crate's `proto/kubelet/` (package `pluginregistration`): the service a
//!   plugin serves on a socket in the kubelet's plugin-watcher directory
//!   ([`PLUGINS_REGISTRY_PATH`]).
//!
//! The generated code is checked in (`src/gen/`); `tests/bootstrap.rs` regenerates it and
//! fails on a difference. This crate holds no plugin logic and does no IO.

/// Generated messages and services (`Registration`, `DevicePlugin`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    rust_2018_idioms
)]
#[rustfmt::skip]
#[path = "gen/v1beta1.rs"]
pub mod v1beta1;

/// Generated plugin registration messages and the `Registration` service (`GetInfo`,
/// `NotifyRegistrationStatus`) that the kubelet's plugin watcher calls on a plugin's socket.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    rust_2018_idioms
)]
#[rustfmt::skip]
#[path = "gen/pluginregistration.rs"]
pub mod pluginregistration;

/// Directory the kubelet's plugin watcher watches for plugin sockets (kubelet
/// `getPluginsRegistrationDir()` under the default root dir `/var/lib/kubelet`).
pub const PLUGINS_REGISTRY_PATH: &str = "/var/lib/kubelet/plugins_registry/";

/// `PluginInfo.type` of a device plugin (`pluginregistration/v1/constants.go` `DevicePlugin`): the
/// kubelet hands such plugins to the device manager (`pkg/kubelet/cm/devicemanager/plugin/
/// v1beta1/handler.go`).
pub const DEVICE_PLUGIN_TYPE: &str = "DevicePlugin";

/// API version a plugin registers with (`constants.go` `Version`).
pub const VERSION: &str = "v1beta1";

/// Directory of the kubelet's and plugins' sockets (`constants.go` `DevicePluginPath`).
pub const DEVICE_PLUGIN_PATH: &str = "/var/lib/kubelet/device-plugins/";

/// File name of the kubelet's Registration socket in [`DEVICE_PLUGIN_PATH`]
/// (`constants.go` `KubeletSocket` is the joined path).
pub const KUBELET_SOCKET: &str = "kubelet.sock";

/// File the kubelet keeps in [`DEVICE_PLUGIN_PATH`] across restarts (it deletes every other
/// file there when it starts).
pub const KUBELET_CHECKPOINT: &str = "kubelet_internal_checkpoint";

/// Health value of a usable device (`constants.go` `Healthy`).
pub const HEALTHY: &str = "Healthy";

/// Health value of an unusable device (`constants.go` `Unhealthy`). The kubelet treats every
/// value other than [`HEALTHY`] as unhealthy (devicemanager `genericDeviceUpdateCallback`).
pub const UNHEALTHY: &str = "Unhealthy";

/// Longest device ID the API allows (`Device.ID` comment in `api.proto`).
pub const MAX_DEVICE_ID_LEN: usize = 63;

/// Largest message the kubelet's plugin client accepts: grpc-go's default receive limit
/// (4 MiB); the kubelet sets none of its own.
pub const KUBELET_MAX_RECV_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Timeout of `PreStartContainer` calls (`constants.go` `KubeletPreStartContainerRPCTimeoutInSecs`).
pub const PRE_START_CONTAINER_TIMEOUT_SECS: u64 = 30;
