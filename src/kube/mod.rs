//! The Kubernetes side: kubeconfig files (and, later, the API server client).

pub mod kubeconfig;
