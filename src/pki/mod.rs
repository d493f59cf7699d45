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
