//! Where the agent's random numbers come from (`version --verbose` says it).
//!
//! - Private keys and ECDSA signature nonces: aws-lc's CTR-DRBG (rcgen and rustls use
//!   aws-lc-rs). The build turns aws-lc's CPU-jitter entropy source off
//!   (`AWS_LC_SYS_NO_JITTER_ENTROPY` in `.cargo/config.toml`), so the DRBG is seeded and
//!   reseeded from the kernel's getrandom(2), as OpenSSL's, Go's and BoringSSL's are. The
//!   jitter source cost ~80 ms of CPU at the first random number of every process.
//! - Serial numbers and retry jitter: getrandom(2) directly.

/// How aws-lc's DRBG is seeded, as the linked library reports it (not as the build meant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrbgSeed {
    /// getrandom(2) alone.
    Kernel,
    /// aws-lc's CPU-jitter entropy source (a binary built without `.cargo/config.toml`).
    CpuJitter,
}

pub fn drbg_seed() -> DrbgSeed {
    // Asks which entropy source aws-lc selected; it does not start the source.
    match aws_lc_rs::try_fips_cpu_jitter_entropy() {
        Ok(()) => DrbgSeed::CpuJitter,
        Err(_) => DrbgSeed::Kernel,
    }
}

/// The lines `version --verbose` prints about randomness.
pub fn describe() -> Vec<String> {
    let seed = match drbg_seed() {
        DrbgSeed::Kernel => "seeded from the kernel (getrandom); CPU-jitter entropy source: off",
        DrbgSeed::CpuJitter => {
            "seeded from aws-lc's CPU-jitter entropy source (~80 ms per process); \
             CPU-jitter entropy source: on"
        }
    };
    vec![
        format!(
            "crypto: aws-lc {} (through aws-lc-rs)",
            aws_lc_rs::awslc_version()
        ),
        format!("keys and signatures: aws-lc CTR-DRBG {seed}"),
        "serial numbers: 128 bits from getrandom".to_string(),
    ]
}

/// `buf.len()` bytes from getrandom(2) (blocks only until the kernel's pool is initialised,
/// once per boot).
pub fn fill(buf: &mut [u8]) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        filled +=
            rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| format!("getrandom: {e}"))?;
    }
    Ok(())
}
