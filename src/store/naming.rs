//! Names on disk, decided without touching the disk.
//!
//! kubelet style: `NAME-YYYY-MM-DD-HH-MM-SS.pem` and `NAME-current.pem`.
//! Pair style: `..STEM.YYYY_MM_DD_HH_MM_SS.NNNNNNNNN/` and `..STEM.data`.
//! Both stamps are fixed width, so that string order is time order.

use std::path::{Component, Path};

use time::{Duration, OffsetDateTime, PrimitiveDateTime};

/// Every temporary name starts with this; the store removes leftovers under its lock.
/// It starts with `..` so that the inventory never reports a temporary file.
pub const TEMP_PREFIX: &str = "..tmp-";

const KUBELET_FMT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]-[hour]-[minute]-[second]");
const PAIR_FMT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]_[month]_[day]_[hour]_[minute]_[second].[subsecond digits:9]"
);

/// A file name the store may manage: one path component, not hidden under our `..`
/// prefix, no `/`, no `..`, no NUL.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains('/') {
        return Err(format!("{name:?} contains '/'"));
    }
    if name.contains("..") {
        return Err(format!("{name:?} contains '..'"));
    }
    if name.contains('\0') {
        return Err(format!("{name:?} contains NUL"));
    }
    if name == "." {
        return Err("\".\" is not a file name".into());
    }
    Ok(())
}

/// `2026-11-22-03-00-00`, the stamp kubelet puts in its file names (UTC).
pub fn kubelet_stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(KUBELET_FMT).expect("fixed format")
}

/// The instant a kubelet stamp names (UTC), if `s` is one.
pub fn parse_kubelet_stamp(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, KUBELET_FMT)
        .ok()
        .map(|p| p.assume_utc())
}

/// `2026_11_22_03_00_00.123456789` (UTC, nanoseconds).
pub fn pair_stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(PAIR_FMT).expect("fixed format")
}

fn parse_pair_stamp(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, PAIR_FMT)
        .ok()
        .map(|p| p.assume_utc())
}

/// `NAME-current.pem`.
pub fn kubelet_current(base: &str) -> String {
    format!("{base}-current.pem")
}

/// `NAME-<stamp>.pem`.
pub fn kubelet_version(base: &str, stamp: &str) -> String {
    format!("{base}-{stamp}.pem")
}

/// The stamp of `NAME-<stamp>.pem`, if `file` is a version of `base`.
pub fn parse_kubelet_version<'a>(base: &str, file: &'a str) -> Option<&'a str> {
    let stamp = file
        .strip_prefix(base)?
        .strip_prefix('-')?
        .strip_suffix(".pem")?;
    parse_kubelet_stamp(stamp).map(|_| stamp)
}

/// `..STEM.data`, the one symlink whose rename switches a pair.
pub fn pair_data_link(stem: &str) -> String {
    format!("..{stem}.data")
}

/// `..STEM.<stamp>`, a versioned directory.
pub fn pair_version(stem: &str, stamp: &str) -> String {
    format!("..{stem}.{stamp}")
}

/// The stamp of `..STEM.<stamp>`, if `dir` is a version of `stem`.
pub fn parse_pair_version<'a>(stem: &str, dir: &'a str) -> Option<&'a str> {
    let stamp = dir
        .strip_prefix("..")?
        .strip_prefix(stem)?
        .strip_prefix('.')?;
    parse_pair_stamp(stamp).map(|_| stamp)
}

/// `..STEM.data/FILE`, the relative target of a pair's public name.
pub fn pair_link_target(stem: &str, file: &str) -> String {
    format!("{}/{file}", pair_data_link(stem))
}

/// The kubelet stamp for a new version at `now`: unique and later than every existing
/// one. Two versions in the same second (or a clock set back) take the next free second,
/// so the name keeps kubelet's shape (which the inventory recognises) and stays unique.
pub fn next_kubelet_stamp(now: OffsetDateTime, existing: &[String]) -> String {
    next_stamp(
        now,
        existing,
        Duration::SECOND,
        kubelet_stamp,
        parse_kubelet_stamp,
    )
}

/// The pair stamp for a new version at `now`: unique and later than every existing one.
pub fn next_pair_stamp(now: OffsetDateTime, existing: &[String]) -> String {
    next_stamp(
        now,
        existing,
        Duration::NANOSECOND,
        pair_stamp,
        parse_pair_stamp,
    )
}

fn next_stamp(
    now: OffsetDateTime,
    existing: &[String],
    step: Duration,
    fmt: fn(OffsetDateTime) -> String,
    parse: fn(&str) -> Option<OffsetDateTime>,
) -> String {
    let candidate = fmt(now);
    match existing.iter().max() {
        Some(latest) if *latest >= candidate => match parse(latest) {
            Some(t) => fmt(t + step),
            None => candidate,
        },
        _ => candidate,
    }
}

/// Where a kubelet `NAME-current.pem` link points, as a file name in the managed directory
/// `node_dir`: kubelet writes absolute node paths; a bare relative name is accepted too.
/// `None`: the link leaves the directory.
pub fn kubelet_link_file(target: &Path, node_dir: &Path) -> Option<String> {
    let file = if target.is_absolute() {
        if target.parent()? != node_dir {
            return None;
        }
        target.file_name()?
    } else {
        let mut c = target.components();
        match (c.next(), c.next()) {
            (Some(Component::Normal(n)), None) => n,
            _ => return None,
        }
    };
    let file = file.to_str()?;
    validate_name(file).ok()?;
    Some(file.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn names_with_slashes_dots_or_nul_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "x..y", "a\0b", "..data"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["apiserver.crt", "kubelet-client-current.pem", "sa.key"] {
            validate_name(good).unwrap();
        }
    }

    #[test]
    fn kubelet_names_have_kubelets_shape() {
        let t = datetime!(2026-11-22 03:04:05.999 UTC);
        assert_eq!(kubelet_stamp(t), "2026-11-22-03-04-05");
        let v = kubelet_version("kubelet-client", &kubelet_stamp(t));
        assert_eq!(v, "kubelet-client-2026-11-22-03-04-05.pem");
        assert_eq!(
            parse_kubelet_version("kubelet-client", &v),
            Some("2026-11-22-03-04-05")
        );
        assert_eq!(
            parse_kubelet_version("kubelet-client", "kubelet-client-current.pem"),
            None
        );
        assert_eq!(parse_kubelet_version("kubelet", &v), None);
        assert_eq!(parse_kubelet_version("kubelet-server", &v), None);
    }

    #[test]
    fn stamps_are_utc() {
        let t = datetime!(2026-11-22 04:00:00 +01:00);
        assert_eq!(kubelet_stamp(t), "2026-11-22-03-00-00");
        assert_eq!(pair_stamp(t), "2026_11_22_03_00_00.000000000");
    }

    #[test]
    fn pair_names() {
        let t = datetime!(2026-11-22 03:00:00.123456789 UTC);
        let d = pair_version("apiserver", &pair_stamp(t));
        assert_eq!(d, "..apiserver.2026_11_22_03_00_00.123456789");
        assert_eq!(
            parse_pair_version("apiserver", &d),
            Some("2026_11_22_03_00_00.123456789")
        );
        assert_eq!(parse_pair_version("apiserver", "..apiserver.data"), None);
        assert_eq!(parse_pair_version("api", &d), None);
        let other = pair_version("apiserver-etcd-client", &pair_stamp(t));
        assert_eq!(parse_pair_version("apiserver", &other), None);
        assert_eq!(
            pair_link_target("apiserver", "apiserver.key"),
            "..apiserver.data/apiserver.key"
        );
    }

    #[test]
    fn the_same_second_twice_gives_two_names() {
        let t = datetime!(2026-11-22 03:00:00.5 UTC);
        let first = next_kubelet_stamp(t, &[]);
        let second = next_kubelet_stamp(t, std::slice::from_ref(&first));
        let third = next_kubelet_stamp(t, &[first.clone(), second.clone()]);
        assert_eq!(first, "2026-11-22-03-00-00");
        assert_eq!(second, "2026-11-22-03-00-01");
        assert_eq!(third, "2026-11-22-03-00-02");
        // A later clock wins again.
        let later = datetime!(2026-11-22 04:00:00 UTC);
        assert_eq!(next_kubelet_stamp(later, &[third]), "2026-11-22-04-00-00");
    }

    #[test]
    fn the_same_nanosecond_twice_gives_two_pair_names() {
        let t = datetime!(2026-11-22 03:00:00.999999999 UTC);
        let first = next_pair_stamp(t, &[]);
        let second = next_pair_stamp(t, std::slice::from_ref(&first));
        assert_eq!(second, "2026_11_22_03_00_01.000000000");
        assert!(second > first);
    }

    #[test]
    fn kubelet_links_must_stay_in_the_directory() {
        let dir = Path::new("/var/lib/kubelet/pki");
        let f = |t: &str| kubelet_link_file(Path::new(t), dir);
        assert_eq!(
            f("/var/lib/kubelet/pki/kubelet-client-2026-11-22-03-00-00.pem").as_deref(),
            Some("kubelet-client-2026-11-22-03-00-00.pem")
        );
        assert_eq!(
            f("kubelet-client-x.pem").as_deref(),
            Some("kubelet-client-x.pem")
        );
        assert_eq!(f("/etc/shadow"), None);
        assert_eq!(f("/var/lib/kubelet/pki/sub/x.pem"), None);
        assert_eq!(f("../x.pem"), None);
        assert_eq!(f("sub/x.pem"), None);
    }
}
