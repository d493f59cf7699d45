//! `caRotation:`: whether the daemon follows CARotation objects in the cluster.

use serde::Deserialize;

use super::HumanDuration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaRotationSpec {
    /// List the cluster's CARotation objects (with the kubelet's client certificate), run
    /// the phase each asks for, and report the phase reached into its `status.nodes`.
    #[serde(default)]
    pub cluster: bool,
    /// How often the objects are listed (and an incomplete phase is retried, with
    /// backoff up to 16 times this).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

impl Default for CaRotationSpec {
    fn default() -> Self {
        CaRotationSpec {
            cluster: false,
            poll_interval: default_poll_interval(),
        }
    }
}

impl CaRotationSpec {
    /// The daemon polls with the node's credentials: it needs the kubelet section.
    pub fn check(&self, has_kubelet: bool) -> Result<(), String> {
        if !self.cluster {
            return Ok(());
        }
        if !has_kubelet {
            return Err("caRotation.cluster: the CARotation objects are read and reported with the node's credentials: it needs the kubelet section".into());
        }
        if self.poll_interval.0 < std::time::Duration::from_secs(1) {
            return Err("caRotation.pollInterval: at least 1s".into());
        }
        Ok(())
    }

    pub fn interval(&self) -> time::Duration {
        time::Duration::try_from(self.poll_interval.0).unwrap_or(time::Duration::MINUTE)
    }
}
