//! `kube-cert-agent check`: the inventory as a report, like `kubeadm certs check-expiration`.

use std::fmt::Write as _;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::exit::ExitCode;
use crate::inventory::Entry;
use crate::pki::{classify, Status, WarnPolicy};

/// One row of `check --output json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub path: String,
    pub location: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub residual_seconds: Option<i64>,
    #[serde(rename = "isCA")]
    pub is_ca: Option<bool>,
    pub key_type: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub ext_key_usages: Vec<String>,
    pub key_path: Option<String>,
    pub key_matches: Option<bool>,
    pub chains_to: Option<String>,
    pub status: Status,
    pub error: Option<String>,
}

impl Row {
    /// A row with nothing read from a file: only where, what state, and why.
    pub fn bare(path: String, status: Status, error: Option<String>) -> Row {
        Row {
            path,
            location: None,
            subject: None,
            issuer: None,
            serial: None,
            not_before: None,
            not_after: None,
            residual_seconds: None,
            is_ca: None,
            key_type: None,
            dns_names: vec![],
            ip_addresses: vec![],
            ext_key_usages: vec![],
            key_path: None,
            key_matches: None,
            chains_to: None,
            status,
            error,
        }
    }
}

pub fn rows(entries: &[Entry], now: OffsetDateTime, policy: WarnPolicy) -> Vec<Row> {
    entries.iter().map(|e| row(e, now, policy)).collect()
}

fn row(e: &Entry, now: OffsetDateTime, policy: WarnPolicy) -> Row {
    let rfc = |t: OffsetDateTime| t.format(&Rfc3339).ok();
    let c = e.cert.as_ref();
    let status = match (c, &e.problem) {
        (Some(c), None) => classify(c.not_before, c.not_after, c.is_ca, now, policy),
        _ => Status::Invalid,
    };
    Row {
        path: e.path.clone(),
        location: e.location.clone(),
        subject: c.map(|c| c.subject.clone()),
        issuer: c.map(|c| c.issuer.clone()),
        serial: c.map(|c| c.serial.clone()),
        not_before: c.and_then(|c| rfc(c.not_before)),
        not_after: c.and_then(|c| rfc(c.not_after)),
        residual_seconds: c.map(|c| (c.not_after - now).whole_seconds()),
        is_ca: c.map(|c| c.is_ca),
        key_type: c.map(|c| c.key_type.clone()),
        dns_names: c.map(|c| c.dns_names.clone()).unwrap_or_default(),
        ip_addresses: c
            .map(|c| c.ip_addresses.iter().map(|i| i.to_string()).collect())
            .unwrap_or_default(),
        ext_key_usages: c.map(|c| c.ext_key_usages.clone()).unwrap_or_default(),
        key_path: e.key_path.clone(),
        key_matches: e.key_matches,
        chains_to: e.chains_to.clone(),
        status,
        error: e.problem.clone(),
    }
}

/// Mark every leaf that a RenewRevocation entry revokes as `invalid`, naming the entry.
/// (CAs are never revoked by these entries: the agent does not rotate CAs.)
pub fn apply_revocations(rows: &mut [Row], entries: &[Entry], revs: &[crate::revocation::Entry]) {
    for (row, entry) in rows.iter_mut().zip(entries) {
        let Some(cert) = entry.cert.as_ref().filter(|c| !c.is_ca) else {
            continue;
        };
        if let Some(r) =
            crate::revocation::first_match(revs, &crate::revocation::Identity::of(cert))
        {
            let mut why = format!("revoked by {} ({}) in {}", r.id(), r.describe(), r.source);
            if r.not_before.is_none() {
                why.push_str("; the entry has no notBefore, so it also revokes any replacement: add notBefore");
            }
            row.status = Status::Invalid;
            row.error = Some(why);
        }
    }
}

/// 0 all valid, 1 some warning, 2 some expired / not yet valid / invalid.
pub fn exit_code(rows: &[Row]) -> ExitCode {
    match rows.iter().map(|r| r.status).max() {
        None | Some(Status::Ok) => ExitCode::Ok,
        Some(Status::Warning) => ExitCode::Warning,
        Some(_) => ExitCode::Critical,
    }
}

pub fn render_json(rows: &[Row]) -> String {
    serde_json::to_string_pretty(rows).expect("rows serialize") + "\n"
}

/// kubeadm's table: leaves first, then CAs, then what could not be read.
pub fn render_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let leaves: Vec<&Row> = rows.iter().filter(|r| r.is_ca == Some(false)).collect();
    let cas: Vec<&Row> = rows.iter().filter(|r| r.is_ca == Some(true)).collect();
    let label = |r: &Row| match &r.location {
        Some(l) => format!("{} ({l})", r.path),
        None => r.path.clone(),
    };
    let mut leaf_lines = vec![[
        "CERTIFICATE".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CERTIFICATE AUTHORITY".into(),
        "STATUS".into(),
    ]];
    for r in &leaves {
        leaf_lines.push([
            label(r),
            expires(r),
            residual(r),
            r.chains_to.clone().unwrap_or_else(|| "(not found)".into()),
            status_text(r),
        ]);
    }
    if leaves.is_empty() {
        out.push_str("No leaf certificates found.\n");
    } else {
        write_columns(&mut out, &leaf_lines);
    }
    out.push('\n');
    let mut ca_lines = vec![[
        "CERTIFICATE AUTHORITY".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "STATUS".into(),
    ]];
    for r in &cas {
        ca_lines.push([label(r), expires(r), residual(r), status_text(r)]);
    }
    if cas.is_empty() {
        out.push_str("No certificate authorities found.\n");
    } else {
        write_columns(&mut out, &ca_lines);
    }
    let missing = |r: &&Row| {
        r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("missing: "))
    };
    let (absent, bad): (Vec<&Row>, Vec<&Row>) =
        rows.iter().filter(|r| r.is_ca.is_none()).partition(missing);
    if !absent.is_empty() {
        out.push_str("\nMISSING (configured, belongs on this node, no file)\n");
        for r in absent {
            let _ = writeln!(
                out,
                "{}: {}",
                r.path,
                r.error.as_deref().unwrap_or_default()
            );
        }
    }
    if !bad.is_empty() {
        out.push_str("\nUNREADABLE\n");
        for r in bad {
            let _ = writeln!(
                out,
                "{}: {}",
                label(r),
                r.error.as_deref().unwrap_or("invalid")
            );
        }
    }
    out
}

fn status_text(r: &Row) -> String {
    match &r.error {
        Some(e) => format!("{}: {e}", r.status.as_str()),
        None => r.status.as_str().to_string(),
    }
}

fn expires(r: &Row) -> String {
    let Some(na) = r
        .not_after
        .as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    else {
        return "-".into();
    };
    let fmt =
        time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    na.format(fmt).unwrap_or_default()
}

fn residual(r: &Row) -> String {
    match r.residual_seconds {
        Some(s) if s > 0 => short_human_duration(s),
        Some(_) => "<expired>".into(),
        None => "-".into(),
    }
}

/// kubeadm's `duration.ShortHumanDuration`.
pub fn short_human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 60 {
        format!("{secs}s")
    } else if m < 60 {
        format!("{m}m")
    } else if h < 48 {
        format!("{h}h")
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn write_columns<const N: usize>(out: &mut String, lines: &[[String; N]]) {
    let mut widths = [0usize; N];
    for l in lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for l in lines {
        let mut line = String::new();
        for (i, cell) in l.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubeadm() {
        assert_eq!(short_human_duration(59), "59s");
        assert_eq!(short_human_duration(3599), "59m");
        assert_eq!(short_human_duration(47 * 3600), "47h");
        assert_eq!(short_human_duration(96 * 3600), "4d");
        assert_eq!(short_human_duration(10 * 365 * 86400), "10y");
    }

    #[test]
    fn exit_code_is_the_worst_status() {
        let mk = |status| Row::bare("p".into(), status, None);
        assert_eq!(exit_code(&[]), ExitCode::Ok);
        assert_eq!(
            exit_code(&[mk(Status::Ok), mk(Status::Warning)]),
            ExitCode::Warning
        );
        assert_eq!(
            exit_code(&[mk(Status::Warning), mk(Status::NotYetValid)]),
            ExitCode::Critical
        );
        assert_eq!(exit_code(&[mk(Status::Invalid)]), ExitCode::Critical);
    }
}
