//! Which versions to keep and which to roll back to, decided over stamps alone.

/// One version of a managed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The file (kubelet style) or directory (pair style) name in the managed directory.
    pub name: String,
    /// Its UTC stamp; string order is time order.
    pub stamp: String,
    /// Whether the live name points at it.
    pub current: bool,
}

/// The result of an install: the new current version, and why pruning old versions failed,
/// if it did. The install itself succeeded either way (the new version is live and durable);
/// a failed prune leaves extra versions, which the next install prunes.
#[derive(Debug)]
pub struct Installed {
    pub version: Version,
    pub prune_error: Option<super::StoreError>,
}

/// The stamps to delete so that `keep` versions remain: the current one always, then the
/// newest others. `keep` below 1 is taken as 1 (the current version is never pruned).
pub fn to_prune(stamps: &[String], current: Option<&str>, keep: u32) -> Vec<String> {
    let mut others: Vec<&String> = stamps
        .iter()
        .filter(|s| Some(s.as_str()) != current)
        .collect();
    others.sort_unstable_by(|a, b| b.cmp(a));
    let keep_others = if current.is_some() {
        keep.max(1) as usize - 1
    } else {
        keep.max(1) as usize
    };
    others.into_iter().skip(keep_others).cloned().collect()
}

/// The version a rollback switches to: the newest one older than the current one.
/// Versions newer than the current one (what an earlier rollback left behind, or a version
/// written but never switched to) are never chosen: rolling back only goes back.
pub fn rollback_target(stamps: &[String], current: &str) -> Option<String> {
    stamps
        .iter()
        .filter(|s| s.as_str() < current)
        .max()
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn keeps_current_and_the_newest_others() {
        let all = s(&["1", "2", "3", "4", "5", "6", "7"]);
        assert_eq!(to_prune(&all, Some("7"), 5), s(&["2", "1"]));
        assert_eq!(
            to_prune(&all, Some("7"), 1),
            s(&["6", "5", "4", "3", "2", "1"])
        );
        assert!(to_prune(&all, Some("7"), 7).is_empty());
        assert!(to_prune(&all, Some("7"), 100).is_empty());
    }

    #[test]
    fn an_old_current_survives_after_a_rollback() {
        let all = s(&["1", "2", "3", "4"]);
        // Rolled back to 2: keep 2 and the newest other.
        assert_eq!(to_prune(&all, Some("2"), 2), s(&["3", "1"]));
        assert_eq!(to_prune(&all, Some("1"), 1), s(&["4", "3", "2"]));
    }

    #[test]
    fn zero_keeps_the_current_one() {
        let all = s(&["1", "2"]);
        assert_eq!(to_prune(&all, Some("1"), 0), s(&["2"]));
        assert_eq!(to_prune(&all, None, 0), s(&["1"]));
    }

    #[test]
    fn rollback_goes_to_the_newest_older_version() {
        let all = s(&["1", "3", "2", "5", "4"]);
        assert_eq!(rollback_target(&all, "5").as_deref(), Some("4"));
        assert_eq!(rollback_target(&all, "3").as_deref(), Some("2"));
        assert_eq!(rollback_target(&all, "1"), None);
        assert_eq!(rollback_target(&s(&["5"]), "5"), None);
    }
}
