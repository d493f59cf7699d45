//! CA rotations the cluster asks for (`caRotation.cluster: true`, see
//! `ca_rotation::cluster`): polled from the loop, so that a phase never runs beside one of
//! the daemon's own rotations, and the watchdog is pinged while it runs.

use super::Agent;

impl Agent {
    pub(super) async fn sync_ca_rotations(&mut self) {
        let progress = |m: &str| tracing::info!("{m}");
        let sync = crate::ca_rotation::cluster::sync(
            &self.root,
            &self.config,
            &mut self.ca_attempts,
            &progress,
        );
        match sync.await {
            Ok(lines) => {
                for l in lines {
                    tracing::info!("{l}");
                }
            }
            Err(e) => tracing::warn!(ERROR = %e, "CA rotation from the cluster: {e}"),
        }
    }
}
