//! The Kubernetes side: kubeconfig files (and, later, the API server client).

pub mod client;
pub mod kubeconfig;
pub mod retry;
pub mod rewrite;
