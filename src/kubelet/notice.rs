//! What happens to a CSR while the agent waits on it, for whoever listens (the daemon's
//! metrics and Kubernetes Events), without threading a listener through every call: the
//! daemon runs a rotation inside [`observed`], and the CSR code calls [`notify`], which does
//! nothing outside such a scope (the `rotate` command, tests).

use std::future::Future;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum CsrNotice {
    /// Created (or found again after a restart); now waiting for approval and issuance.
    Created {
        csr: String,
        signer: String,
        /// When the server created it.
        since: time::OffsetDateTime,
    },
    /// Not approved automatically (serving CSRs): someone must approve it.
    AwaitingApproval { csr: String, signer: String },
    Denied {
        csr: String,
        signer: String,
        reason: String,
        message: String,
    },
    /// The wait ended, whichever way.
    Ended { signer: String },
}

pub type Sink = Arc<dyn Fn(CsrNotice) + Send + Sync>;

tokio::task_local! {
    static SINK: Sink;
}

/// Run `f` with `sink` hearing every [`CsrNotice`] of it.
pub async fn observed<F: Future>(sink: Sink, f: F) -> F::Output {
    SINK.scope(sink, f).await
}

pub fn notify(n: CsrNotice) {
    let _ = SINK.try_with(|s| s(n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn only_inside_a_scope() {
        notify(CsrNotice::Ended { signer: "x".into() });
        let got = Arc::new(Mutex::new(vec![]));
        let g = got.clone();
        let sink: Sink = Arc::new(move |n| g.lock().unwrap().push(n));
        observed(sink, async {
            tokio::task::yield_now().await;
            notify(CsrNotice::Ended { signer: "y".into() });
        })
        .await;
        assert_eq!(
            *got.lock().unwrap(),
            vec![CsrNotice::Ended { signer: "y".into() }]
        );
    }
}
