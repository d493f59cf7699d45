//! kube-cert-agent: keeps every certificate a Kubernetes node depends on valid.
//!
//! The library holds everything; `main.rs` only hands the command line to [`cli::main`].
//! Pure decisions (status, deadlines, matching) live in [`pki`]; the disk lives in
//! [`paths`] and [`inventory`]; the API server lives in [`kube`].

pub mod absent;
pub mod agent;
pub mod approver;
pub mod ca_rotation;
pub mod check;
pub mod cli;
pub mod config;
pub mod declared;
pub mod events;
pub mod exit;
pub mod inventory;
pub mod kube;
pub mod kubeadm;
pub mod kubelet;
pub mod lifecycle;
pub mod metrics;
pub mod node_facts;
pub mod parallel;
pub mod paths;
pub mod pki;
pub mod remote;
pub mod revocation;
pub mod rotation;
pub mod service;
pub mod store;
pub mod yaml;
