//! The approver's Prometheus metrics (prometheus-client, its own registry) and the
//! `/metrics` endpoint, served with hyper on `--metrics-listen`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
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
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let m = m.clone();
                    async move {
                        let resp = if req.uri().path() == "/metrics" {
                            hyper::Response::builder()
                                .header(
                                    "Content-Type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(m.render())
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body("not found: try /metrics\n".to_string())
                        };
                        Ok::<_, Infallible>(resp.expect("response"))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Binds `addr` (port 0: a free port) and returns the listener and the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}
