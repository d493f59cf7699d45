//! Independent work spread over the machine's cores, results in input order.
//!
//! `check` parses and verifies thousands of certificates; each is independent. Scoped
//! std threads pulling small chunks from a shared counter are enough for that (no thread
//! pool crate): a slow file does not hold up a whole share of the work.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Items handed to a worker at a time: large enough that the counter is not contended,
/// small enough that the last chunks balance out.
const CHUNK: usize = 16;

/// `items.iter().map(f).collect()`, on up to `available_parallelism()` threads (the calling
/// thread included). The order of the results is the order of `items`. A panic in `f` is
/// propagated.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len().div_ceil(CHUNK));
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + CHUNK).min(items.len());
            done.push((start, items[start..end].iter().map(&f).collect()));
        }
    };
    let mut chunks = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut chunks = work();
        for h in helpers {
            match h.join() {
                Ok(c) => chunks.extend(c),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        chunks
    });
    chunks.sort_unstable_by_key(|(start, _)| *start);
    chunks.into_iter().flat_map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order() {
        let items: Vec<u32> = (0..1000).collect();
        let out = map(&items, |i| i * 2);
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(map(&[] as &[u32], |i| *i).is_empty());
        assert_eq!(map(&[7u32], |i| *i + 1), vec![8]);
    }

    #[test]
    fn every_item_is_mapped_exactly_once() {
        let items: Vec<usize> = (0..257).collect();
        let calls = AtomicUsize::new(0);
        let out = map(&items, |i| {
            calls.fetch_add(1, Ordering::Relaxed);
            *i
        });
        assert_eq!(calls.load(Ordering::Relaxed), items.len());
        assert_eq!(out, items);
    }

    #[test]
    #[should_panic(expected = "item 100")]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let items: Vec<usize> = (0..200).collect();
        map(&items, |i| assert_ne!(*i, 100, "item 100"));
    }
}
