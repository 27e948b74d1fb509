//! One pass over a query's matches: the total, the top of the page
//! (activity or similarity, ties by member id) and facet counts. The query
//! without a filter skips the pass: its page and facets come from
//! per-segment data that only changes with deletes.
use std::{
    collections::{BinaryHeap, HashMap},
    sync::Arc,
};

use tantivy::{
    DocId, Score, Searcher, SegmentReader,
    collector::{Collector, SegmentCollector},
};

use super::columns::{FacetColumn, MemberIds, SegmentCaches, SegmentVectors, page_key};
use crate::{
    search::fields::Field,
    vectors::{self, Quantized},
};

/// A ranked candidate: higher key first, then lower member id. `Ord` puts
/// the better entry first, so a max-heap's top is the worst kept.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub key: f64,
    pub id: u128,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.key.total_cmp(&self.key).then(self.id.cmp(&o.id))
    }
}

fn push_bounded(heap: &mut BinaryHeap<Entry>, keep: usize, e: Entry) {
    if keep == 0 {
        return;
    }
    if heap.len() < keep {
        heap.push(e);
    } else if heap.peek().is_some_and(|worst| e < *worst) {
        heap.pop();
        heap.push(e);
    }
}

/// What a search returns before member ids become UUIDs and facet maps
/// become sorted lists.
#[derive(Default)]
pub(super) struct PageFruit {
    pub count: u64,
    pub top: BinaryHeap<Entry>,
    pub facets: Vec<HashMap<String, u64>>,
}

impl PageFruit {
    fn merge(fruits: Vec<PageFruit>, keep: usize, facets: usize) -> PageFruit {
        let mut out = PageFruit {
            facets: vec![HashMap::new(); facets],
            ..Default::default()
        };
        for f in fruits {
            out.count += f.count;
            for e in f.top {
                push_bounded(&mut out.top, keep, e);
            }
            for (acc, counts) in out.facets.iter_mut().zip(f.facets) {
                for (v, c) in counts {
                    *acc.entry(v).or_default() += c;
                }
            }
        }
        out
    }
}

/// A similarity query prepared once: the exact vector, its int8 form and
/// the minimum score.
pub(super) struct SimilarQuery {
    pub exact: Vec<f32>,
    pub quantized: Quantized,
    pub min: f32,
}

pub(super) struct PageCollector {
    pub keep: usize,
    pub similar: Option<Arc<SimilarQuery>>,
    pub caches: SegmentCaches,
    pub facets: Vec<&'static Field>,
}

pub(super) struct PageSegment {
    keep: usize,
    similar: Option<(Arc<SimilarQuery>, Arc<SegmentVectors>)>,
    /// Activity by doc (NaN when absent, ranked as 0), read for every hit.
    activity: Arc<Vec<f64>>,
    ids: MemberIds,
    count: u64,
    top: BinaryHeap<Entry>,
    facets: Vec<(Arc<FacetColumn>, Vec<u64>)>,
}

impl Collector for PageCollector {
    type Fruit = PageFruit;
    type Child = PageSegment;

    fn for_segment(&self, _ord: u32, seg: &SegmentReader) -> tantivy::Result<PageSegment> {
        let cache = self.caches.get(seg);
        let facets = self
            .facets
            .iter()
            .map(|f| {
                let c = cache.facet(seg, f)?;
                let counts = c.counters();
                Ok((c, counts))
            })
            .collect::<tantivy::Result<_>>()?;
        let similar = match &self.similar {
            Some(q) => {
                let v = cache.vectors(seg)?;
                // Embeddings of another size never match (none at all here).
                let v = if v.dim() == q.exact.len() {
                    v
                } else {
                    Arc::default()
                };
                Some((q.clone(), v))
            }
            None => None,
        };
        Ok(PageSegment {
            keep: self.keep,
            similar,
            activity: if self.similar.is_some() {
                Arc::default()
            } else {
                cache.activity(seg)?
            },
            ids: MemberIds::open(seg)?,
            count: 0,
            top: BinaryHeap::new(),
            facets,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<PageFruit>) -> tantivy::Result<PageFruit> {
        Ok(PageFruit::merge(fruits, self.keep, self.facets.len()))
    }
}

impl PageSegment {
    /// The worst key still on a full page, if the page is full.
    fn floor(&self) -> Option<f64> {
        if self.top.len() >= self.keep {
            self.top.peek().map(|w| w.key)
        } else {
            None
        }
    }

    /// The similarity key of `doc`, `None` when it is below the minimum.
    /// `Some(None)`: a match that cannot enter the page, so its exact score
    /// was not needed.
    fn similarity(&self, doc: DocId) -> Option<Option<f64>> {
        let (q, vecs) = self.similar.as_ref()?;
        let row = vecs.row(doc)?;
        let (approx, bound) = vecs.approx(&q.quantized, row);
        if approx + bound < q.min {
            return None;
        }
        let surely_in = approx - bound >= q.min;
        let may_enter = self.keep > 0
            && self
                .floor()
                .is_none_or(|floor| f64::from(approx + bound) >= floor);
        if surely_in && !may_enter {
            return Some(None);
        }
        let s = vectors::dot(&q.exact, vecs.exact(row));
        (s >= q.min).then_some(Some(f64::from(s)))
    }
}

impl SegmentCollector for PageSegment {
    type Fruit = PageFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let key = if self.similar.is_some() {
            match self.similarity(doc) {
                Some(key) => key,
                None => return,
            }
        } else {
            Some(page_key(&self.activity, doc))
        };
        self.count += 1;
        // Most hits cannot enter a full page: skip reading their id.
        if let Some(key) = key
            && self.keep > 0
            && self.floor().is_none_or(|floor| key >= floor)
        {
            let id = self.ids.id(doc);
            push_bounded(&mut self.top, self.keep, Entry { key, id });
        }
        for (col, counts) in &mut self.facets {
            col.count(doc, counts);
        }
    }

    fn harvest(self) -> PageFruit {
        PageFruit {
            count: self.count,
            top: self.top,
            facets: self
                .facets
                .iter()
                .map(|(col, counts)| col.labelled(counts))
                .collect(),
        }
    }
}

/// Every live member: the page from each segment's precomputed order and
/// the facets from its cached live counts.
pub(super) fn all_members(
    searcher: &Searcher,
    caches: &SegmentCaches,
    keep: usize,
    facets: &[&'static Field],
) -> tantivy::Result<PageFruit> {
    let mut fruits = Vec::new();
    for seg in searcher.segment_readers() {
        let cache = caches.get(seg);
        let mut top = BinaryHeap::new();
        if keep > 0 {
            let ids = MemberIds::open(seg)?;
            let activity = cache.activity(seg)?;
            let alive = seg.alive_bitset();
            for &doc in cache
                .order(seg)?
                .iter()
                .filter(|d| alive.is_none_or(|a| a.is_alive(**d)))
                .take(keep)
            {
                top.push(ids.entry(&activity, doc));
            }
        }
        let facets = facets
            .iter()
            .map(|f| {
                let (col, counts) = cache.live_counts(seg, f)?;
                Ok(col.labelled(&counts))
            })
            .collect::<tantivy::Result<_>>()?;
        fruits.push(PageFruit {
            count: u64::from(seg.num_docs()),
            top,
            facets,
        });
    }
    Ok(PageFruit::merge(fruits, keep, facets.len()))
}
