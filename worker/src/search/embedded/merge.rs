//! Which segments tantivy merges. Its default policy ends up with one huge
//! segment (78% of a 1M-member index in the benchmark), and segments are
//! the unit of parallel search, so one core did most of every query. Here
//! segments grow only to a cap: a large index is many similar segments that
//! the search pool shares out evenly, and small ones from upserts are folded
//! together in batches.
use tantivy::{
    index::SegmentMeta,
    indexer::{MergeCandidate, MergePolicy},
};

/// Documents per segment beyond which merging stops.
const CAP: u32 = 131_072;
/// Small segments wait for this many before they are folded together.
const MIN_SMALL: usize = 8;

#[derive(Debug, Default)]
pub(super) struct CappedMerges;

impl MergePolicy for CappedMerges {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        candidates(
            segments
                .iter()
                .map(|s| (s.id(), s.num_docs(), s.num_deleted_docs()))
                .collect(),
        )
        .into_iter()
        .map(MergeCandidate)
        .collect()
    }
}

/// Groups of segments to merge, from (id, live docs, deleted docs).
fn candidates<Id: Copy>(segments: Vec<(Id, u32, u32)>) -> Vec<Vec<Id>> {
    let mut out = Vec::new();
    let mut small = Vec::new();
    for (id, live, deleted) in segments {
        if deleted > 0 && deleted * 3 >= live + deleted {
            // Mostly deleted: rewrite it on its own.
            out.push(vec![id]);
        } else if live < CAP / 2 {
            small.push((id, live));
        }
    }
    if small.len() < MIN_SMALL {
        return out;
    }
    small.sort_by_key(|s| s.1);
    let mut group = Vec::new();
    let mut docs = 0u32;
    for (id, live) in small {
        if !group.is_empty() && docs + live > CAP {
            if group.len() > 1 {
                out.push(std::mem::take(&mut group));
            }
            group.clear();
            docs = 0;
        }
        group.push(id);
        docs += live;
    }
    if group.len() > 1 {
        out.push(group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_small_segments_up_to_the_cap() {
        // Seven small segments wait; the eighth starts a merge.
        let seven: Vec<(u32, u32, u32)> = (0..7).map(|i| (i, 1_000, 0)).collect();
        assert!(candidates(seven.clone()).is_empty());
        let mut eight = seven;
        eight.push((7, 1_000, 0));
        assert_eq!(candidates(eight), vec![(0..8).collect::<Vec<_>>()]);

        // Large segments stay; small ones never merge past the cap.
        let mut mixed = vec![(100, 120_000, 0), (101, 98_000, 0)];
        mixed.extend((0..10).map(|i| (i, 30_000, 0)));
        let groups = candidates(mixed);
        assert!(
            groups
                .iter()
                .all(|g| !g.contains(&100) && !g.contains(&101))
        );
        assert!(groups.iter().all(|g| g.len() as u32 * 30_000 <= CAP));
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);

        // A mostly deleted segment is rewritten alone.
        assert_eq!(candidates(vec![(9, 100, 60)]), vec![vec![9]]);
    }
}
