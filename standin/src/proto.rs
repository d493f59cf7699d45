//! Just enough of Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) to read
//! a CertificateSigningRequest body: `kubectl certificate approve|deny` sends one. Unknown
//! fields are skipped. Responses are always JSON (client-go decodes by Content-Type).

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::ByteString;

pub const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    b: &'a [u8],
}

enum Val<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&c, rest) = self.b.split_first()?;
            self.b = rest;
            v |= ((c & 0x7f) as u64) << (7 * i);
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn next(&mut self) -> Option<Result<(u64, Val<'a>), ()>> {
        if self.b.is_empty() {
            return None;
        }
        let Some(key) = self.varint() else {
            return Some(Err(()));
        };
        let (field, wt) = (key >> 3, key & 7);
        let v = match wt {
            0 => match self.varint() {
                Some(v) => Val::Varint(v),
                None => return Some(Err(())),
            },
            1 | 5 => {
                let n = if wt == 1 { 8 } else { 4 };
                if self.b.len() < n {
                    return Some(Err(()));
                }
                self.b = &self.b[n..];
                Val::Other
            }
            2 => {
                let Some(n) = self.varint() else {
                    return Some(Err(()));
                };
                let n = n as usize;
                if self.b.len() < n {
                    return Some(Err(()));
                }
                let (d, rest) = self.b.split_at(n);
                self.b = rest;
                Val::Bytes(d)
            }
            _ => return Some(Err(())),
        };
        Some(Ok((field, v)))
    }
}

type R<T> = Result<T, String>;

fn fields(b: &[u8]) -> R<Vec<(u64, Val<'_>)>> {
    let mut r = Reader { b };
    let mut out = vec![];
    while let Some(x) = r.next() {
        out.push(x.map_err(|_| "malformed protobuf".to_string())?);
    }
    Ok(out)
}

fn s(b: &[u8]) -> R<String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in protobuf string".into())
}

fn time(b: &[u8]) -> R<Time> {
    let mut secs = 0i64;
    for (f, v) in fields(b)? {
        if let (1, Val::Varint(x)) = (f, v) {
            secs = x as i64;
        }
    }
    Ok(Time(
        k8s_openapi::jiff::Timestamp::from_second(secs).map_err(|e| e.to_string())?,
    ))
}

fn map_entry(b: &[u8]) -> R<(String, String)> {
    let (mut k, mut v) = (String::new(), String::new());
    for (f, x) in fields(b)? {
        match (f, x) {
            (1, Val::Bytes(d)) => k = s(d)?,
            (2, Val::Bytes(d)) => v = s(d)?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn meta(b: &[u8]) -> R<ObjectMeta> {
    let mut m = ObjectMeta::default();
    for (f, v) in fields(b)? {
        let Val::Bytes(d) = v else { continue };
        match f {
            1 => m.name = Some(s(d)?).filter(|x| !x.is_empty()),
            2 => m.generate_name = Some(s(d)?).filter(|x| !x.is_empty()),
            5 => m.uid = Some(s(d)?).filter(|x| !x.is_empty()),
            6 => m.resource_version = Some(s(d)?).filter(|x| !x.is_empty()),
            11 => {
                let (k, v) = map_entry(d)?;
                m.labels.get_or_insert_with(Default::default).insert(k, v);
            }
            12 => {
                let (k, v) = map_entry(d)?;
                m.annotations
                    .get_or_insert_with(Default::default)
                    .insert(k, v);
            }
            _ => {}
        }
    }
    Ok(m)
}

fn spec(b: &[u8]) -> R<CertificateSigningRequestSpec> {
    let mut sp = CertificateSigningRequestSpec::default();
    for (f, v) in fields(b)? {
        match (f, v) {
            (1, Val::Bytes(d)) => sp.request = ByteString(d.to_vec()),
            (2, Val::Bytes(d)) => sp.username = Some(s(d)?),
            (3, Val::Bytes(d)) => sp.uid = Some(s(d)?),
            (4, Val::Bytes(d)) => sp.groups.get_or_insert_with(Vec::new).push(s(d)?),
            (5, Val::Bytes(d)) => sp.usages.get_or_insert_with(Vec::new).push(s(d)?),
            (7, Val::Bytes(d)) => sp.signer_name = s(d)?,
            (8, Val::Varint(x)) => sp.expiration_seconds = Some(x as i32),
            _ => {}
        }
    }
    Ok(sp)
}

fn condition(b: &[u8]) -> R<CertificateSigningRequestCondition> {
    let mut c = CertificateSigningRequestCondition::default();
    for (f, v) in fields(b)? {
        let Val::Bytes(d) = v else { continue };
        match f {
            1 => c.type_ = s(d)?,
            2 => c.reason = Some(s(d)?).filter(|x| !x.is_empty()),
            3 => c.message = Some(s(d)?).filter(|x| !x.is_empty()),
            4 => c.last_update_time = Some(time(d)?),
            5 => c.last_transition_time = Some(time(d)?),
            6 => c.status = s(d)?,
            _ => {}
        }
    }
    Ok(c)
}

fn status(b: &[u8]) -> R<CertificateSigningRequestStatus> {
    let mut st = CertificateSigningRequestStatus::default();
    for (f, v) in fields(b)? {
        match (f, v) {
            (1, Val::Bytes(d)) => st
                .conditions
                .get_or_insert_with(Vec::new)
                .push(condition(d)?),
            (2, Val::Bytes(d)) => st.certificate = Some(ByteString(d.to_vec())),
            _ => {}
        }
    }
    Ok(st)
}

/// Decodes `k8s\0` + runtime.Unknown{typeMeta, raw} holding a CertificateSigningRequest.
pub fn decode_csr(body: &[u8]) -> R<CertificateSigningRequest> {
    let body = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body without the k8s magic prefix")?;
    let mut raw: Option<&[u8]> = None;
    let mut kind = String::new();
    for (f, v) in fields(body)? {
        match (f, v) {
            (1, Val::Bytes(tm)) => {
                for (g, x) in fields(tm)? {
                    if let (2, Val::Bytes(k)) = (g, x) {
                        kind = s(k)?;
                    }
                }
            }
            (2, Val::Bytes(r)) => raw = Some(r),
            _ => {}
        }
    }
    if kind != "CertificateSigningRequest" {
        return Err(format!("the object provided is unrecognized (must be of type CertificateSigningRequest): kind {kind:?}"));
    }
    let mut csr = CertificateSigningRequest::default();
    for (f, v) in fields(raw.unwrap_or_default())? {
        let Val::Bytes(d) = v else { continue };
        match f {
            1 => csr.metadata = meta(d)?,
            2 => csr.spec = spec(d)?,
            3 => csr.status = Some(status(d)?),
            _ => {}
        }
    }
    Ok(csr)
}
