//! Queries answered from the segment caches as bitmaps: number and time
//! ranges, and "has an embedding".
//!
//! tantivy's fast-field range query checks one document per `seek`; inside
//! an intersection that meant an optional-index rank and a bit-unpacking
//! read per candidate, the largest cost of filtered segments in the
//! benchmark. Here a range scans the segment's decoded values once into a
//! bitmap, which intersections seek in constant time.
use std::{fmt, ops::Bound};

use tantivy::{
    DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyError,
    query::{ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight},
};

use super::columns::{SegmentCache, SegmentCaches};
use crate::search::fields::Field;

/// What a [`BitmapQuery`] matches in one segment, from its cache.
pub(super) trait SegmentBitmap: Clone + fmt::Debug + Send + Sync + 'static {
    fn words(&self, cache: &SegmentCache, seg: &SegmentReader) -> tantivy::Result<Words>;
}

/// A tantivy query over a [`SegmentBitmap`].
#[derive(Clone)]
pub(super) struct BitmapQuery<B> {
    pub bitmap: B,
    pub caches: SegmentCaches,
}

impl<B: fmt::Debug> fmt::Debug for BitmapQuery<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.bitmap.fmt(f)
    }
}

impl<B: SegmentBitmap> BitmapQuery<B> {
    fn matches(&self, seg: &SegmentReader) -> tantivy::Result<Words> {
        self.bitmap.words(&self.caches.get(seg), seg)
    }
}

impl<B: SegmentBitmap> Query for BitmapQuery<B> {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl<B: SegmentBitmap> Weight for BitmapQuery<B> {
    fn scorer(&self, seg: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ConstScorer::new(self.matches(seg)?, boost)))
    }

    fn explain(&self, seg: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.matches(seg)?.contains(doc) {
            Ok(Explanation::new_with_string(
                format!("{:?}", self.bitmap),
                1.0,
            ))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match {:?}",
                self.bitmap
            )))
        }
    }
}

/// `lower ≤ field ≤ upper` (each bound inclusive, exclusive or open).
#[derive(Clone, Debug)]
pub(super) struct NumberRange {
    pub field: &'static Field,
    pub lower: Bound<f64>,
    pub upper: Bound<f64>,
}

impl NumberRange {
    pub(super) fn new(field: &'static Field) -> Self {
        Self {
            field,
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// Narrows the lower bound to the tighter of the two.
    pub(super) fn at_least(&mut self, b: Bound<f64>) {
        self.lower = match (self.lower, b) {
            (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
            (Bound::Included(a), Bound::Included(b)) => Bound::Included(a.max(b)),
            (Bound::Excluded(a), Bound::Excluded(b)) => Bound::Excluded(a.max(b)),
            (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
                if e >= i {
                    Bound::Excluded(e)
                } else {
                    Bound::Included(i)
                }
            }
        };
    }

    /// Narrows the upper bound to the tighter of the two.
    pub(super) fn at_most(&mut self, b: Bound<f64>) {
        self.upper = match (self.upper, b) {
            (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
            (Bound::Included(a), Bound::Included(b)) => Bound::Included(a.min(b)),
            (Bound::Excluded(a), Bound::Excluded(b)) => Bound::Excluded(a.min(b)),
            (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
                if e <= i {
                    Bound::Excluded(e)
                } else {
                    Bound::Included(i)
                }
            }
        };
    }

    /// The range as closed bounds; a NaN (a missing value) fails both.
    fn interval(&self) -> (f64, f64) {
        let lo = match self.lower {
            Bound::Included(l) => l,
            Bound::Excluded(l) => l.next_up(),
            Bound::Unbounded => f64::NEG_INFINITY,
        };
        let hi = match self.upper {
            Bound::Included(u) => u,
            Bound::Excluded(u) => u.next_down(),
            Bound::Unbounded => f64::INFINITY,
        };
        (lo, hi)
    }

    #[cfg(test)]
    fn contains(&self, v: f64) -> bool {
        let (lo, hi) = self.interval();
        v >= lo && v <= hi
    }
}

impl SegmentBitmap for NumberRange {
    /// The matching doc ids, 64 per word, built without branches.
    fn words(&self, cache: &SegmentCache, seg: &SegmentReader) -> tantivy::Result<Words> {
        let values = cache.numbers(seg, self.field)?;
        let (lo, hi) = self.interval();
        let mut words = Vec::with_capacity(values.len().div_ceil(64));
        let mut count = 0u32;
        for chunk in values.chunks(64) {
            let mut w = 0u64;
            for (i, v) in chunk.iter().enumerate() {
                w |= u64::from((*v >= lo) & (*v <= hi)) << i;
            }
            count += w.count_ones();
            words.push(w);
        }
        Ok(Words::new(words, count))
    }
}

/// A doc set over a plain bitmap: `seek` jumps to the target's word.
pub(super) struct Words {
    words: Vec<u64>,
    /// The word being read, and its bits not yet returned.
    at: usize,
    rest: u64,
    doc: DocId,
    count: u32,
}

impl Words {
    pub(super) fn new(words: Vec<u64>, count: u32) -> Self {
        let rest = words.first().copied().unwrap_or(0);
        let mut w = Self {
            words,
            at: 0,
            rest,
            doc: 0,
            count,
        };
        w.advance();
        w
    }

    fn contains(&self, doc: DocId) -> bool {
        self.words
            .get(doc as usize / 64)
            .is_some_and(|w| w & (1 << (doc % 64)) != 0)
    }
}

impl DocSet for Words {
    #[inline]
    fn advance(&mut self) -> DocId {
        loop {
            if self.rest != 0 {
                let bit = self.rest.trailing_zeros();
                self.rest &= self.rest - 1;
                self.doc = (self.at as DocId) * 64 + bit;
                return self.doc;
            }
            self.at += 1;
            let Some(w) = self.words.get(self.at) else {
                self.at = self.words.len();
                self.doc = TERMINATED;
                return TERMINATED;
            };
            self.rest = *w;
        }
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        let word = target as usize / 64;
        if word >= self.words.len() {
            self.at = self.words.len();
            self.rest = 0;
            self.doc = TERMINATED;
            return TERMINATED;
        }
        if word > self.at {
            self.at = word;
            self.rest = self.words[word];
        }
        self.rest &= u64::MAX << (target % 64);
        self.advance()
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.count
    }
}

/// Members with a persona embedding: a similarity search intersects its
/// filter with this, so the scan visits only documents it can score.
#[derive(Clone, Debug)]
pub(super) struct HasVector;

impl SegmentBitmap for HasVector {
    fn words(&self, cache: &SegmentCache, seg: &SegmentReader) -> tantivy::Result<Words> {
        let v = cache.vectors(seg)?;
        Ok(Words::new(v.present().to_vec(), v.rows() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> NumberRange {
        static AGE: Field = Field {
            name: "age",
            ty: crate::search::fields::FieldType::Number,
            facet: true,
        };
        NumberRange::new(&AGE)
    }

    #[test]
    fn bounds_tighten() {
        let mut r = range();
        r.at_least(Bound::Included(25.0));
        r.at_least(Bound::Excluded(25.0));
        r.at_least(Bound::Included(20.0));
        r.at_most(Bound::Included(35.0));
        r.at_most(Bound::Excluded(40.0));
        assert_eq!(r.lower, Bound::Excluded(25.0));
        assert_eq!(r.upper, Bound::Included(35.0));
        assert!(!r.contains(25.0));
        assert!(r.contains(25.5));
        assert!(r.contains(35.0));
        assert!(!r.contains(35.1));
        assert!(!r.contains(f64::NAN));
        let open = range();
        assert!(open.contains(-1e300));
        assert!(!open.contains(f64::NAN));
    }

    #[test]
    fn words_iterate_and_seek() {
        let docs = [0u32, 5, 63, 64, 130, 700];
        let mut words = vec![0u64; 12];
        for d in docs {
            words[d as usize / 64] |= 1 << (d % 64);
        }
        let mut all = Vec::new();
        let mut w = Words::new(words.clone(), docs.len() as u32);
        while w.doc() != TERMINATED {
            all.push(w.doc());
            w.advance();
        }
        assert_eq!(all, docs);
        let mut w = Words::new(words.clone(), docs.len() as u32);
        assert_eq!(w.seek(6), 63);
        assert_eq!(w.seek(63), 63);
        assert_eq!(w.seek(65), 130);
        assert_eq!(w.seek(131), 700);
        assert_eq!(w.seek(701), TERMINATED);
        let mut w = Words::new(words, docs.len() as u32);
        assert_eq!(w.seek(100_000), TERMINATED);
        assert_eq!(Words::new(Vec::new(), 0).doc(), TERMINATED);
    }
}
