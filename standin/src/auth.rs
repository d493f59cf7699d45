//! Who is asking (client certificate, bootstrap or service-account token) and whether
//! RBAC lets them: the stand-in's authentication and authorization.

use http::{header, Request};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::api::{CLIENT_KUBELET, KUBELET_SERVING};
use crate::ca::{csr_pem_to_der, parse_csr};
use crate::state::{lock, ApiError, Shared, GROUP, RESOURCE};

/// The authenticated requester.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub(crate) fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

pub(crate) const BOOTSTRAP_TOKEN_USER_PREFIX: &str = "system:bootstrap:";

pub(crate) fn is_bootstrap_token_shape(t: &str) -> Option<(&str, &str)> {
    let (id, secret) = t.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Union authenticator, as kube-apiserver: client certificate, then bearer token; a request
/// with no credentials is `system:anonymous` when anonymous auth is on; any presented but
/// invalid credential (with nothing valid) is 401.
pub(crate) fn authenticate(
    shared: &Shared,
    peer_cert: Option<&[u8]>,
    req: &Request<hyper::body::Incoming>,
) -> Result<User, ApiError> {
    let unauthorized = || ApiError::new(401, "Unauthorized", "Unauthorized");
    let mut presented = false;
    if let Some(der) = peer_cert {
        presented = true;
        let cas = lock(&shared.client_cas).clone();
        let found = if cas.is_empty() {
            shared.ca.authenticate_client_cert(der).ok()
        } else {
            cas.iter()
                .find_map(|ca| crate::ca::authenticate_client_cert(ca, der).ok())
        };
        if let Some((cn, mut groups)) = found {
            groups.push("system:authenticated".into());
            return Ok(User { name: cn, groups });
        }
    }
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        presented = true;
        let h = h.to_str().unwrap_or("");
        if let Some(token) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
            if let Some((id, secret)) = is_bootstrap_token_shape(token.trim()) {
                if shared.tokens.get(id).map(String::as_str) == Some(secret) {
                    return Ok(User {
                        name: format!("{BOOTSTRAP_TOKEN_USER_PREFIX}{id}"),
                        groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
                    });
                }
            }
        }
    }
    if presented || !shared.opts.anonymous {
        return Err(unauthorized());
    }
    Ok(User {
        name: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    })
}

pub(crate) fn forbidden(
    user: &User,
    verb: &str,
    res: &str,
    name: Option<&str>,
    why: &str,
) -> ApiError {
    let what = match name {
        Some(n) => format!("{RESOURCE}.{GROUP} \"{n}\" is forbidden"),
        None => format!("{RESOURCE}.{GROUP} is forbidden"),
    };
    let mut msg = format!(
        "{what}: User \"{}\" cannot {verb} resource \"{res}\" in API group \"{GROUP}\" at the cluster scope",
        user.name
    );
    if !why.is_empty() {
        msg.push_str(": ");
        msg.push_str(why);
    }
    let mut e = ApiError::new(403, "Forbidden", msg);
    e.name = name.map(str::to_string);
    e
}

/// RBAC as kubeadm sets it up plus the Node authorizer, for this one resource.
pub(crate) fn authorize(
    shared: &Shared,
    user: &User,
    verb: &str,
    sub: Option<&str>,
    name: Option<&str>,
    create: Option<&CertificateSigningRequest>,
) -> Result<(), ApiError> {
    let res = match sub {
        Some(s) => format!("{RESOURCE}/{s}"),
        None => RESOURCE.to_string(),
    };
    if user.in_group("system:masters") {
        return Ok(());
    }
    let attrs = crate::rbac::Attrs {
        verb,
        group: GROUP,
        resource: RESOURCE,
        subresource: sub,
        name,
    };
    if crate::rbac::allows(shared, user, &attrs) {
        return Ok(());
    }
    let is_bootstrapper = user.in_group("system:bootstrappers");
    let node_name = user
        .name
        .strip_prefix("system:node:")
        .filter(|_| user.in_group("system:nodes"));
    if !(is_bootstrapper || node_name.is_some()) || sub.is_some() {
        return Err(forbidden(user, verb, &res, name, ""));
    }
    match verb {
        "get" | "list" | "watch" => Ok(()),
        "create" => {
            let Some(csr) = create else { return Ok(()) };
            if !shared.opts.strict_create {
                return Ok(());
            }
            let signer = csr.spec.signer_name.as_str();
            let cn = csr_common_name(csr).unwrap_or_default();
            if let Some(node) = node_name {
                if signer != CLIENT_KUBELET && signer != KUBELET_SERVING {
                    return Err(forbidden(
                        user,
                        verb,
                        &res,
                        name,
                        &format!(
                            "nodes may only request signers {CLIENT_KUBELET} and {KUBELET_SERVING}"
                        ),
                    ));
                }
                if cn != format!("system:node:{node}") {
                    return Err(forbidden(user, verb, &res, name, &format!("node \"{node}\" may only request certificates for itself, not for \"{cn}\"")));
                }
                Ok(())
            } else if signer != CLIENT_KUBELET {
                Err(forbidden(
                    user,
                    verb,
                    &res,
                    name,
                    &format!("bootstrappers may only request signer {CLIENT_KUBELET}"),
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(forbidden(user, verb, &res, name, "")),
    }
}

pub(crate) fn csr_common_name(csr: &CertificateSigningRequest) -> Option<String> {
    let der = csr_pem_to_der(&csr.spec.request.0).ok()?;
    parse_csr(&der).ok().map(|p| p.common_name)
}
