//! Pure Kubernetes rules for SGX: resource names, labels and pod mutation over kube-core
//! admission types.
//!
//! What it is:
//! - [`names`]: every resource name, annotation, label and path the project uses;
//! - [`quantity`]: exact parsing and formatting of Kubernetes quantities;
//! - [`mutate`](mod@mutate): the admission rules of the mutating webhook (pods that request EPC get the SGX
//!   devices, the quote-helper wiring and the total-EPC annotation), returning a JSON Patch;
//! - [`labels`]: the node label set the node registrar publishes.
//!
//! What it is not: it does no IO, holds no clock, and does not depend on tokio, hyper, axum or
//! kube-client. The webhook crate decodes HTTP and calls [`mutate::review`].

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod labels;
pub mod mutate;
pub mod names;
pub mod quantity;

pub use mutate::{Mutation, mutate, mutate_pod, review};
