//! The approver's Prometheus metrics (prometheus-client, its own registry), served on
//! `--metrics-listen` by the agent's endpoint (`crate::metrics::serve::listen_with`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::rules::Rule;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

/// Every metric the approver exports (prefix `kube_cert_agent_approver_`).
pub struct Metrics {
    registry: Registry,
    pub approved: Counter,
    pub denied: Family<RuleLabel, Counter>,
    /// Rule failures left pending (policy `--on-failure pending`).
    pub held: Family<RuleLabel, Counter>,
    pub pending: Gauge,
    pub breaker_open: Gauge,
    pub leader: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("kube_cert_agent_approver");
        let approved = Counter::default();
        let denied = Family::<RuleLabel, Counter>::default();
        let held = Family::<RuleLabel, Counter>::default();
        let (pending, breaker_open, leader) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "approved",
            "kubelet-serving CSRs approved",
            approved.clone(),
        );
        registry.register(
            "denied",
            "kubelet-serving CSRs denied, by the rule that failed",
            denied.clone(),
        );
        registry.register(
            "held",
            "rule failures left pending (--on-failure pending), by rule",
            held.clone(),
        );
        registry.register(
            "pending",
            "kubelet-serving CSRs pending approval",
            pending.clone(),
        );
        registry.register(
            "breaker_open",
            "1 while more CSRs are pending than nodes + margin (no approvals)",
            breaker_open.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease and acts",
            leader.clone(),
        );
        // Every rule's series exists from the start, so a rate() over it never lacks data.
        for r in Rule::ALL {
            let _ = denied.get_or_create(&RuleLabel {
                rule: r.id().into(),
            });
        }
        Arc::new(Metrics {
            registry,
            approved,
            denied,
            held,
            pending,
            breaker_open,
            leader,
        })
    }

    pub fn deny(&self, rule: Rule) {
        self.denied
            .get_or_create(&RuleLabel {
                rule: rule.id().into(),
            })
            .inc();
    }

    pub fn hold(&self, rule: Rule) {
        self.held
            .get_or_create(&RuleLabel {
                rule: rule.id().into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // The Prometheus text format 0.0.4, as the agent's endpoint (promtool reads it).
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
