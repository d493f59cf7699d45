//! RBAC for users that are neither `system:masters` nor nodes: ClusterRoles bound (as a
//! ClusterRoleBinding would) to a user or a group through the library API, evaluated as
//! pkg/registry/rbac/validation does (apiGroups, resources with `res/sub`, verbs,
//! resourceNames; `*` everywhere). Plus the CertificateApproval admission check: updating
//! `certificatesigningrequests/approval` also needs verb `approve` on `signers` named after the
//! CSR's signerName (or `<domain>/*`).

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

use crate::auth::User;
use crate::state::{lock, Shared};

/// What a request wants to do, in SubjectAccessReview's words.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Who a ClusterRole is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
}

fn has(list: &Option<Vec<String>>, want: &str) -> bool {
    list.as_ref()
        .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

fn rule_allows(rule: &PolicyRule, a: &Attrs<'_>) -> bool {
    let resource = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let names_ok = match &rule.resource_names {
        None => true,
        Some(n) if n.is_empty() => true,
        // A rule with resourceNames never matches a request without a name (create, list).
        Some(n) => a.name.is_some_and(|name| n.iter().any(|x| x == name)),
    };
    rule.verbs.iter().any(|v| v == "*" || v == a.verb)
        && has(&rule.api_groups, a.group)
        && (has(&rule.resources, &resource)
            // `res/*` covers every subresource of res.
            || a.subresource.is_some() && has(&rule.resources, &format!("{}/*", a.resource)))
        && names_ok
}

fn bound_to(subject: &Subject, user: &User) -> bool {
    match subject {
        Subject::User(u) => *u == user.name,
        Subject::Group(g) => user.groups.iter().any(|x| x == g),
    }
}

/// Whether a ClusterRole bound to `user` (or one of its groups) allows `a`.
pub fn allows(shared: &Shared, user: &User, a: &Attrs<'_>) -> bool {
    lock(&shared.bindings)
        .iter()
        .filter(|(s, _)| bound_to(s, user))
        .flat_map(|(_, role)| role.rules.iter().flatten())
        .any(|r| rule_allows(r, a))
}

/// CertificateApproval admission: may `user` approve (or deny) CSRs for `signer`?
pub fn may_approve(shared: &Shared, user: &User, signer: &str) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let wildcard = signer
        .split_once('/')
        .map(|(domain, _)| format!("{domain}/*"));
    [Some(signer.to_string()), wildcard]
        .into_iter()
        .flatten()
        .any(|name| {
            allows(
                shared,
                user,
                &Attrs {
                    verb: "approve",
                    group: "certificates.k8s.io",
                    resource: "signers",
                    subresource: None,
                    name: Some(&name),
                },
            )
        })
}

/// Stored bindings.
pub type Bindings = Vec<(Subject, ClusterRole)>;

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], res: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        PolicyRule {
            api_groups: v(groups),
            resources: v(res),
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            resource_names: if names.is_empty() { None } else { v(names) },
            non_resource_urls: None,
        }
    }

    fn attrs<'a>(
        verb: &'a str,
        res: &'a str,
        sub: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attrs<'a> {
        Attrs {
            verb,
            group: "certificates.k8s.io",
            resource: res,
            subresource: sub,
            name,
        }
    }

    #[test]
    fn subresources_and_resource_names() {
        let approval = rule(
            &["certificates.k8s.io"],
            &["certificatesigningrequests/approval"],
            &["update"],
            &[],
        );
        assert!(rule_allows(
            &approval,
            &attrs(
                "update",
                "certificatesigningrequests",
                Some("approval"),
                Some("x")
            )
        ));
        assert!(!rule_allows(
            &approval,
            &attrs(
                "update",
                "certificatesigningrequests",
                Some("status"),
                Some("x")
            )
        ));
        assert!(!rule_allows(
            &approval,
            &attrs("update", "certificatesigningrequests", None, Some("x"))
        ));
        let signer = rule(
            &["certificates.k8s.io"],
            &["signers"],
            &["approve"],
            &["kubernetes.io/kubelet-serving"],
        );
        assert!(rule_allows(
            &signer,
            &attrs(
                "approve",
                "signers",
                None,
                Some("kubernetes.io/kubelet-serving")
            )
        ));
        assert!(!rule_allows(
            &signer,
            &attrs(
                "approve",
                "signers",
                None,
                Some("kubernetes.io/kube-apiserver-client")
            )
        ));
        assert!(!rule_allows(
            &signer,
            &attrs("approve", "signers", None, None)
        ));
    }
}
