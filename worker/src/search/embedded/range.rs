//! Number and time ranges as a tantivy query over the segment caches.
//!
//! tantivy's fast-field range query checks one document per `seek`; inside
//! an intersection that meant an optional-index rank and a bit-unpacking
//! read per candidate, the largest cost of filtered segments in the
//! benchmark. Here a range scans the segment's decoded values once into a
//! bitset, which intersections seek in constant time.
use std::{
    collections::HashMap,
    fmt,
    ops::Bound,
    sync::{Arc, Mutex},
};

use tantivy::{
    BitSet, DocId, Score, SegmentReader, TantivyError,
    index::SegmentId,
    query::{BitSetDocSet, ConstScorer, EnableScoring, Explanation, Query, Scorer, Weight},
};

use super::columns::SegmentCache;
use crate::search::fields::Field;

pub(super) type Caches = Arc<Mutex<HashMap<SegmentId, Arc<SegmentCache>>>>;

/// `lower ≤ field ≤ upper` (each bound inclusive, exclusive or open).
#[derive(Clone)]
pub(super) struct CachedRange {
    pub field: &'static Field,
    pub lower: Bound<f64>,
    pub upper: Bound<f64>,
    pub caches: Caches,
}

impl fmt::Debug for CachedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRange")
            .field("field", &self.field.name)
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish_non_exhaustive()
    }
}

impl CachedRange {
    pub(super) fn new(field: &'static Field, caches: Caches) -> Self {
        Self {
            field,
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            caches,
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

    /// Whether `v` is inside (a missing value, NaN, never is).
    #[inline]
    fn contains(&self, v: f64) -> bool {
        let above = match self.lower {
            Bound::Included(l) => v >= l,
            Bound::Excluded(l) => v > l,
            Bound::Unbounded => !v.is_nan(),
        };
        let below = match self.upper {
            Bound::Included(u) => v <= u,
            Bound::Excluded(u) => v < u,
            Bound::Unbounded => !v.is_nan(),
        };
        above && below
    }

    fn cache(&self, seg: &SegmentReader) -> Arc<SegmentCache> {
        let mut all = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(seg.segment_id()).or_default().clone()
    }

    fn matches(&self, seg: &SegmentReader) -> tantivy::Result<BitSet> {
        let values = self.cache(seg).numbers(seg, self.field)?;
        let mut set = BitSet::with_max_value(seg.max_doc());
        for (doc, v) in values.iter().enumerate() {
            if self.contains(*v) {
                set.insert(doc as DocId);
            }
        }
        Ok(set)
    }
}

impl Query for CachedRange {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for CachedRange {
    fn scorer(&self, seg: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ConstScorer::new(
            BitSetDocSet::from(self.matches(seg)?),
            boost,
        )))
    }

    fn explain(&self, seg: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.matches(seg)?.contains(doc) {
            Ok(Explanation::new("CachedRange", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} is outside the range"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> CachedRange {
        static AGE: Field = Field {
            name: "age",
            ty: crate::search::fields::FieldType::Number,
            facet: true,
        };
        CachedRange::new(&AGE, Caches::default())
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
}
