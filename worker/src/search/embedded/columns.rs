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
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tantivy::{DocId, SegmentReader};

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
    /// Number and time fields by doc id, NaN where absent (for ranges).
    numbers: Mutex<HashMap<&'static str, Arc<Vec<f64>>>>,
    vectors: Mutex<Option<Arc<SegmentVectors>>>,
    order: Mutex<Option<Arc<Vec<DocId>>>>,
    /// Per facet field: counts over the live documents, with the number of
    /// deleted documents they were taken at (deletes only grow).
    live_counts: Mutex<HashMap<&'static str, LiveCounts>>,
}

/// Facet counts over live documents, and the deleted count they were taken at.
type LiveCounts = (u32, Arc<Vec<u64>>);

/// The parts of a segment cache that queries have asked for.
#[derive(Default)]
pub(super) struct Wanted {
    facets: Vec<&'static Field>,
    numbers: Vec<&'static Field>,
    order: bool,
    vectors: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SegmentCache {
    /// Adds what this cache has built to `w`.
    pub(super) fn wanted_into(&self, w: &mut Wanted) {
        for name in lock(&self.facets).keys() {
            if let Some(f) = fields::field(name)
                && !w.facets.iter().any(|x| x.name == f.name)
            {
                w.facets.push(f);
            }
        }
        for name in lock(&self.numbers).keys() {
            if let Some(f) = fields::field(name)
                && !w.numbers.iter().any(|x| x.name == f.name)
            {
                w.numbers.push(f);
            }
        }
        w.order |= lock(&self.order).is_some();
        w.vectors |= lock(&self.vectors).is_some();
    }

    /// Builds the `wanted` parts now, so the first query after a commit or
    /// a merge does not pay for decoding a new segment.
    pub(super) fn warm(&self, seg: &SegmentReader, wanted: &Wanted) -> tantivy::Result<()> {
        for f in &wanted.facets {
            self.facet(seg, f)?;
        }
        for f in &wanted.numbers {
            self.numbers(seg, f)?;
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
        let mut facets = lock(&self.facets);
        if let Some(c) = facets.get(field.name) {
            return Ok(c.clone());
        }
        let c = Arc::new(FacetColumn::build(seg, field)?);
        facets.insert(field.name, c.clone());
        Ok(c)
    }

    pub(super) fn numbers(
        &self,
        seg: &SegmentReader,
        field: &'static Field,
    ) -> tantivy::Result<Arc<Vec<f64>>> {
        let mut numbers = lock(&self.numbers);
        if let Some(v) = numbers.get(field.name) {
            return Ok(v.clone());
        }
        let col = seg.fast_fields().f64(field.name)?;
        let v = Arc::new(
            (0..seg.max_doc())
                .map(|d| col.first(d).unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        );
        numbers.insert(field.name, v.clone());
        Ok(v)
    }

    /// Activity by doc id, the key of pages without similarity (NaN: none).
    pub(super) fn activity(&self, seg: &SegmentReader) -> tantivy::Result<Arc<Vec<f64>>> {
        let field = fields::field("activity")
            .ok_or_else(|| tantivy::TantivyError::FieldNotFound("activity".to_owned()))?;
        self.numbers(seg, field)
    }

    pub(super) fn vectors(&self, seg: &SegmentReader) -> tantivy::Result<Arc<SegmentVectors>> {
        let mut v = lock(&self.vectors);
        if let Some(v) = &*v {
            return Ok(v.clone());
        }
        let built = Arc::new(SegmentVectors::build(seg)?);
        *v = Some(built.clone());
        Ok(built)
    }

    /// Every document of the segment in page order (activity descending,
    /// member id ascending), deleted ones included.
    pub(super) fn order(&self, seg: &SegmentReader) -> tantivy::Result<Arc<Vec<DocId>>> {
        let mut o = lock(&self.order);
        if let Some(o) = &*o {
            return Ok(o.clone());
        }
        let keys = PageKeys::open(seg)?;
        let mut entries: Vec<(Entry, DocId)> =
            (0..seg.max_doc()).map(|d| (keys.entry(d), d)).collect();
        // `Entry`'s order puts the better entry first.
        entries.sort_unstable_by_key(|e| e.0);
        let built = Arc::new(entries.into_iter().map(|(_, d)| d).collect::<Vec<_>>());
        *o = Some(built.clone());
        Ok(built)
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

/// The columns a page is ranked by without similarity: activity, then the
/// member id.
pub(super) struct PageKeys {
    activity: tantivy::columnar::Column<f64>,
    id_hi: tantivy::columnar::Column<u64>,
    id_lo: tantivy::columnar::Column<u64>,
}

impl PageKeys {
    pub(super) fn open(seg: &SegmentReader) -> tantivy::Result<Self> {
        let ff = seg.fast_fields();
        Ok(Self {
            activity: ff.f64("activity")?,
            id_hi: ff.u64("id_hi")?,
            id_lo: ff.u64("id_lo")?,
        })
    }

    #[inline]
    pub(super) fn activity(&self, doc: DocId) -> f64 {
        self.activity.first(doc).unwrap_or(0.0)
    }

    #[inline]
    pub(super) fn id(&self, doc: DocId) -> u128 {
        (u128::from(self.id_hi.first(doc).unwrap_or(0)) << 64)
            | u128::from(self.id_lo.first(doc).unwrap_or(0))
    }

    pub(super) fn entry(&self, doc: DocId) -> Entry {
        Entry {
            key: self.activity(doc),
            id: self.id(doc),
        }
    }
}
