//! What the collector reads per hit, decoded once per segment into flat
//! arrays: facet values as dense segment-local ordinals, persona embeddings
//! (f32 for exact scores plus an int8 copy for the scan), and for the
//! unfiltered query the segment's documents in page order.
//!
//! Segments are immutable, so each is decoded the first time a query needs
//! it and dropped when a merge retires the segment. Reading tantivy's
//! columns per hit (multi-valued indexes, bit-unpacking, dictionary-encoded
//! bytes) cost tens of nanoseconds per hit and field; these arrays cost one
//! load.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    hash::Hash,
    sync::{Arc, Mutex},
};

use tantivy::{DocId, Searcher, SegmentReader, TantivyError, columnar::Column, index::SegmentId};

use super::collect::Entry;
use crate::{
    search::fields::{self, Field, FieldType},
    vectors::{self, Quantized},
};

/// The ordinal of "no value".
const NONE: u32 = u32::MAX;

/// One facet field of one segment: each document's values as ordinals into
/// `labels` (the values as facets report them).
pub(super) struct FacetColumn {
    labels: Vec<String>,
    /// `None`: one value per document, `ords[doc]`. `Some`: the values of
    /// `doc` are `ords[offsets[doc]..offsets[doc + 1]]`.
    offsets: Option<Vec<u32>>,
    ords: Vec<u32>,
}

impl FacetColumn {
    fn build(seg: &SegmentReader, field: &Field) -> tantivy::Result<Self> {
        let ff = seg.fast_fields();
        let max = seg.max_doc();
        let mut labels = Vec::new();
        let mut offsets = None;
        let mut ords = Vec::with_capacity(max as usize);
        match field.ty {
            FieldType::Text | FieldType::TextList => {
                if let Some(col) = ff.str(field.name)? {
                    let mut s = String::new();
                    for ord in 0..col.num_terms() as u64 {
                        s.clear();
                        col.ord_to_str(ord, &mut s)?;
                        labels.push(s.clone());
                    }
                    if field.ty == FieldType::TextList {
                        let mut off = Vec::with_capacity(max as usize + 1);
                        for doc in 0..max {
                            off.push(ords.len() as u32);
                            ords.extend(col.term_ords(doc).map(|o| o as u32));
                        }
                        off.push(ords.len() as u32);
                        offsets = Some(off);
                    } else {
                        ords.extend(
                            (0..max).map(|d| col.term_ords(d).next().map_or(NONE, |o| o as u32)),
                        );
                    }
                } else {
                    ords.resize(max as usize, NONE);
                }
            }
            FieldType::Number | FieldType::Time => {
                let col = ff.f64(field.name)?;
                let mut seen: HashMap<u64, u32> = HashMap::new();
                for doc in 0..max {
                    ords.push(col.first(doc).map_or(NONE, |v| {
                        *seen.entry(v.to_bits()).or_insert_with(|| {
                            labels.push(fields::format_number(v));
                            labels.len() as u32 - 1
                        })
                    }));
                }
            }
            FieldType::Bool => {
                let col = ff.bool(field.name)?;
                labels = vec!["false".to_owned(), "true".to_owned()];
                ords.extend((0..max).map(|d| col.first(d).map_or(NONE, u32::from)));
            }
        }
        Ok(Self {
            labels,
            offsets,
            ords,
        })
    }

    /// A zeroed counter per value.
    pub(super) fn counters(&self) -> Vec<u64> {
        vec![0; self.labels.len()]
    }

    /// Adds `doc`'s values to `counts` (from [`Self::counters`]).
    #[inline]
    pub(super) fn count(&self, doc: DocId, counts: &mut [u64]) {
        match &self.offsets {
            None => {
                let o = self.ords[doc as usize];
                if o != NONE {
                    counts[o as usize] += 1;
                }
            }
            Some(off) => {
                let (a, b) = (off[doc as usize] as usize, off[doc as usize + 1] as usize);
                for &o in &self.ords[a..b] {
                    counts[o as usize] += 1;
                }
            }
        }
    }

    /// The counted values by label.
    pub(super) fn labelled(&self, counts: &[u64]) -> HashMap<String, u64> {
        counts
            .iter()
            .zip(&self.labels)
            .filter(|(c, _)| **c > 0)
            .map(|(c, l)| (l.clone(), *c))
            .collect()
    }
}

/// Persona embeddings of one segment by doc id: f32 for exact scores and
/// an int8 copy that the similarity scan reads first (a quarter of the
/// memory traffic; see [`vectors::Quantized`]).
#[derive(Default)]
pub(super) struct SegmentVectors {
    dim: usize,
    /// Row per doc id; `NONE` when the doc has no embedding.
    slot: Vec<u32>,
    /// The docs with an embedding, 64 per word.
    present: Vec<u64>,
    exact: Vec<f32>,
    quantized: Vec<i8>,
    /// Per row: the int8 scale and the L1 norm, for the error bound.
    scale: Vec<f32>,
    l1: Vec<f32>,
}

impl SegmentVectors {
    fn build(seg: &SegmentReader) -> tantivy::Result<Self> {
        let mut out = SegmentVectors {
            dim: 0,
            slot: vec![NONE; seg.max_doc() as usize],
            present: vec![0; (seg.max_doc() as usize).div_ceil(64)],
            exact: Vec::new(),
            quantized: Vec::new(),
            scale: Vec::new(),
            l1: Vec::new(),
        };
        let Some(col) = seg.fast_fields().bytes("vec")? else {
            return Ok(out);
        };
        let mut buf = Vec::new();
        let mut rows = 0u32;
        for doc in 0..seg.max_doc() {
            let Some(ord) = col.term_ords(doc).next() else {
                continue;
            };
            buf.clear();
            if !col.ord_to_bytes(ord, &mut buf)? {
                continue;
            }
            let v = vectors::from_bytes(&buf);
            if out.dim == 0 {
                out.dim = v.len();
            }
            if v.len() != out.dim || v.is_empty() {
                continue;
            }
            let q = Quantized::new(&v);
            out.quantized.extend_from_slice(&q.values);
            out.scale.push(q.scale);
            out.l1.push(q.l1);
            out.exact.extend_from_slice(&v);
            out.slot[doc as usize] = rows;
            out.present[doc as usize / 64] |= 1 << (doc % 64);
            rows += 1;
        }
        Ok(out)
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    pub(super) fn rows(&self) -> usize {
        self.scale.len()
    }

    pub(super) fn present(&self) -> &[u64] {
        &self.present
    }

    /// The row of `doc`'s embedding, if it has one.
    #[inline]
    pub(super) fn row(&self, doc: DocId) -> Option<usize> {
        let r = *self.slot.get(doc as usize)?;
        (r != NONE).then_some(r as usize)
    }

    #[inline]
    pub(super) fn exact(&self, row: usize) -> &[f32] {
        &self.exact[row * self.dim..(row + 1) * self.dim]
    }

    /// `query · row` approximately, with a bound on the error.
    #[inline]
    pub(super) fn approx(&self, query: &Quantized, row: usize) -> (f32, f32) {
        let v = &self.quantized[row * self.dim..(row + 1) * self.dim];
        query.dot_bounded(v, self.scale[row], self.l1[row])
    }
}

/// Everything cached for one segment; each part is built on first use.
#[derive(Default)]
pub(super) struct SegmentCache {
    facets: Mutex<HashMap<&'static str, Arc<FacetColumn>>>,
    /// Number and time fields by doc id, NaN where absent (ranges, activity).
    numbers: Mutex<HashMap<&'static str, Arc<Vec<f64>>>>,
    vectors: Mutex<Option<Arc<SegmentVectors>>>,
    order: Mutex<Option<Arc<Vec<DocId>>>>,
    /// Per facet field: counts over the live documents, with the number of
    /// deleted documents they were taken at (deletes only grow).
    live_counts: Mutex<HashMap<&'static str, LiveCounts>>,
}

/// Facet counts over live documents, and the deleted count they were taken at.
type LiveCounts = (u32, Arc<Vec<u64>>);

/// The parts of segment caches that queries have asked for, by field name.
#[derive(Default)]
pub(super) struct Wanted {
    facets: BTreeSet<&'static str>,
    numbers: BTreeSet<&'static str>,
    order: bool,
    vectors: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The value under `key`, built (under the lock, so once) when missing.
fn memo<K: Eq + Hash, V>(
    map: &Mutex<HashMap<K, Arc<V>>>,
    key: K,
    build: impl FnOnce() -> tantivy::Result<V>,
) -> tantivy::Result<Arc<V>> {
    let mut map = lock(map);
    if let Some(v) = map.get(&key) {
        return Ok(v.clone());
    }
    let v = Arc::new(build()?);
    map.insert(key, v.clone());
    Ok(v)
}

/// [`memo`] for a single value.
fn memo_one<V>(
    slot: &Mutex<Option<Arc<V>>>,
    build: impl FnOnce() -> tantivy::Result<V>,
) -> tantivy::Result<Arc<V>> {
    let mut slot = lock(slot);
    if let Some(v) = &*slot {
        return Ok(v.clone());
    }
    let v = Arc::new(build()?);
    *slot = Some(v.clone());
    Ok(v)
}

fn catalogue(name: &str) -> tantivy::Result<&'static Field> {
    fields::field(name).ok_or_else(|| TantivyError::FieldNotFound(name.to_owned()))
}

impl SegmentCache {
    /// Adds what this cache has built to `w`.
    fn wanted_into(&self, w: &mut Wanted) {
        w.facets.extend(lock(&self.facets).keys());
        w.numbers.extend(lock(&self.numbers).keys());
        w.order |= lock(&self.order).is_some();
        w.vectors |= lock(&self.vectors).is_some();
    }

    /// Builds the `wanted` parts now, so the first query after a commit or
    /// a merge does not pay for decoding a new segment.
    fn warm(&self, seg: &SegmentReader, wanted: &Wanted) -> tantivy::Result<()> {
        for name in &wanted.facets {
            self.facet(seg, catalogue(name)?)?;
        }
        for name in &wanted.numbers {
            self.numbers(seg, catalogue(name)?)?;
        }
        if wanted.order {
            self.order(seg)?;
        }
        if wanted.vectors {
            self.vectors(seg)?;
        }
        Ok(())
    }

    pub(super) fn facet(
        &self,
        seg: &SegmentReader,
        field: &'static Field,
    ) -> tantivy::Result<Arc<FacetColumn>> {
        memo(&self.facets, field.name, || FacetColumn::build(seg, field))
    }

    pub(super) fn numbers(
        &self,
        seg: &SegmentReader,
        field: &'static Field,
    ) -> tantivy::Result<Arc<Vec<f64>>> {
        memo(&self.numbers, field.name, || {
            let col = seg.fast_fields().f64(field.name)?;
            Ok((0..seg.max_doc())
                .map(|d| col.first(d).unwrap_or(f64::NAN))
                .collect())
        })
    }

    /// Activity by doc id, the key of pages without similarity (NaN: none,
    /// see [`page_key`]).
    pub(super) fn activity(&self, seg: &SegmentReader) -> tantivy::Result<Arc<Vec<f64>>> {
        self.numbers(seg, catalogue("activity")?)
    }

    pub(super) fn vectors(&self, seg: &SegmentReader) -> tantivy::Result<Arc<SegmentVectors>> {
        memo_one(&self.vectors, || SegmentVectors::build(seg))
    }

    /// Every document of the segment in page order (activity descending,
    /// member id ascending), deleted ones included.
    pub(super) fn order(&self, seg: &SegmentReader) -> tantivy::Result<Arc<Vec<DocId>>> {
        let activity = self.activity(seg)?;
        memo_one(&self.order, || {
            let ids = MemberIds::open(seg)?;
            let mut entries: Vec<(Entry, DocId)> = (0..seg.max_doc())
                .map(|d| (ids.entry(&activity, d), d))
                .collect();
            // `Entry`'s order puts the better entry first.
            entries.sort_unstable_by_key(|e| e.0);
            Ok(entries.into_iter().map(|(_, d)| d).collect())
        })
    }

    /// Facet counts over the segment's live documents.
    pub(super) fn live_counts(
        &self,
        seg: &SegmentReader,
        field: &'static Field,
    ) -> tantivy::Result<(Arc<FacetColumn>, Arc<Vec<u64>>)> {
        let column = self.facet(seg, field)?;
        let deleted = seg.num_deleted_docs();
        if let Some((at, counts)) = lock(&self.live_counts).get(field.name)
            && *at == deleted
        {
            return Ok((column, counts.clone()));
        }
        let mut counts = column.counters();
        match seg.alive_bitset() {
            Some(alive) => alive
                .iter_alive()
                .for_each(|d| column.count(d, &mut counts)),
            None => (0..seg.max_doc()).for_each(|d| column.count(d, &mut counts)),
        }
        let counts = Arc::new(counts);
        lock(&self.live_counts).insert(field.name, (deleted, counts.clone()));
        Ok((column, counts))
    }
}

/// The caches of one index's segments, shared by its queries (ranges,
/// "has an embedding"), its collector and its commits.
#[derive(Clone, Default)]
pub(super) struct SegmentCaches(Arc<Mutex<HashMap<SegmentId, Arc<SegmentCache>>>>);

impl SegmentCaches {
    /// The cache of `seg` (empty the first time).
    pub(super) fn get(&self, seg: &SegmentReader) -> Arc<SegmentCache> {
        lock(&self.0).entry(seg.segment_id()).or_default().clone()
    }

    /// Forgets the segments `searcher` no longer has (merged away).
    pub(super) fn retain_live(&self, searcher: &Searcher) {
        let live: HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        lock(&self.0).retain(|id, _| live.contains(id));
    }

    /// What queries have had decoded on any segment so far.
    pub(super) fn wanted(&self) -> Wanted {
        let mut wanted = Wanted::default();
        for c in lock(&self.0).values() {
            c.wanted_into(&mut wanted);
        }
        wanted
    }

    /// Decodes `wanted` for every segment of `searcher` that lacks it.
    pub(super) fn warm(&self, searcher: &Searcher, wanted: &Wanted) {
        for seg in searcher.segment_readers() {
            if let Err(e) = self.get(seg).warm(seg, wanted) {
                tracing::warn!(error = %e, "could not prepare a new index segment");
            }
        }
    }
}

/// A page key from the activity array: a member without one ranks as 0.
#[inline]
pub(super) fn page_key(activity: &[f64], doc: DocId) -> f64 {
    let a = activity[doc as usize];
    if a.is_nan() { 0.0 } else { a }
}

/// Member ids, the tie-break of every page; read only for page candidates.
pub(super) struct MemberIds {
    hi: Column<u64>,
    lo: Column<u64>,
}

impl MemberIds {
    pub(super) fn open(seg: &SegmentReader) -> tantivy::Result<Self> {
        let ff = seg.fast_fields();
        Ok(Self {
            hi: ff.u64("id_hi")?,
            lo: ff.u64("id_lo")?,
        })
    }

    #[inline]
    pub(super) fn id(&self, doc: DocId) -> u128 {
        (u128::from(self.hi.first(doc).unwrap_or(0)) << 64)
            | u128::from(self.lo.first(doc).unwrap_or(0))
    }

    /// The ranked entry of `doc` on a page without similarity.
    pub(super) fn entry(&self, activity: &[f64], doc: DocId) -> Entry {
        Entry {
            key: page_key(activity, doc),
            id: self.id(doc),
        }
    }
}
