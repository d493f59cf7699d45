//! Pure certificate logic: no files, no clock, no network. Callers pass bytes and `now`.

pub mod cert;
pub mod csr;
pub mod issue;
pub mod key;
pub mod keygen;
pub mod material;
pub mod policy;
pub mod randomness;
pub mod status;

pub use cert::CertInfo;
pub use material::{parse_material, Material};
pub use status::{classify, Status, WarnPolicy};

/// An instant as RFC 3339 in UTC, to the second: the one form used in logs, JSON and state.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
