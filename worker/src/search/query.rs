//! A segment query as both backends receive it: a validated filter tree
//! over the catalogue, an optional similarity condition, a page and the
//! facets wanted. The API turns the GraphQL `SegmentFilter` into this.
use std::collections::HashSet;

use uuid::Uuid;

use super::fields::{self, Field};

/// A scalar filter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// Comparisons; `NE` is `Not(Eq)`, so it also matches members lacking the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A filter tree. Every node means the same on every backend:
/// - `Compare`/`In` on a list field hold when any element satisfies them;
///   string equality ignores case; comparisons never match a missing field.
/// - `Exists` holds when the field is present (lists: non-empty).
/// - `Terms` holds when every term is among the member's search terms
///   (jieba words of interests, keywords and recent messages).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare {
        field: &'static Field,
        op: CmpOp,
        value: Scalar,
    },
    In {
        field: &'static Field,
        values: Vec<Scalar>,
    },
    Exists {
        field: &'static Field,
    },
    Terms(Vec<String>),
}

/// Members whose persona embedding has cosine similarity ≥ `min_score`
/// with `vector` (unit length); hits are ordered by that score.
#[derive(Debug, Clone, PartialEq)]
pub struct Similar {
    pub vector: Vec<f32>,
    pub min_score: f32,
}

/// The largest `offset + limit` a query may ask for.
pub const MAX_WINDOW: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub filter: Filter,
    pub similar: Option<Similar>,
    pub offset: usize,
    pub limit: usize,
    /// Facetable catalogue fields to count values of.
    pub facets: Vec<&'static Field>,
}

/// One member of the answer. Hits are ordered by similarity (when asked)
/// or by activity, highest first, ties by member id ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub member_id: Uuid,
    pub score: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetCounts {
    pub field: &'static str,
    /// Most frequent first, ties by value; at most `MAX_FACET_VALUES`.
    pub values: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResponse {
    /// Every member the filter matches (not just this page).
    pub total: u64,
    pub hits: Vec<Hit>,
    pub facets: Vec<FacetCounts>,
}

impl SearchResponse {
    /// The answer for an account without an index: nothing, with an empty
    /// list for every facet asked.
    pub fn empty(req: &SearchRequest) -> Self {
        Self {
            total: 0,
            hits: Vec::new(),
            facets: req
                .facets
                .iter()
                .map(|f| FacetCounts {
                    field: f.name,
                    values: Vec::new(),
                })
                .collect(),
        }
    }
}

/// Orders and trims facet counts the same way for every backend.
pub fn finish_facet(field: &'static str, mut values: Vec<(String, u64)>) -> FacetCounts {
    values.retain(|(_, c)| *c > 0);
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(fields::MAX_FACET_VALUES);
    FacetCounts { field, values }
}

/// Search terms of a query text: jieba words, lowercased, without stop
/// words and punctuation, deduplicated in order.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    crate::text::segment(&text.to_lowercase())
        .into_iter()
        .filter(|w| crate::text::is_search_term(w))
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

/// Search terms of a member's texts: jieba's search mode also emits the
/// shorter words inside long ones, so a query word matches a longer word.
pub fn document_terms<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for t in texts {
        for w in crate::text::segment_for_search(&t.to_lowercase()) {
            if crate::text::is_search_term(&w) && seen.insert(w.clone()) {
                out.push(w);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_match_document_words() {
        let doc = document_terms(["最近在找好用的护肤品，双十一囤货", "Skincare 推荐"]);
        for q in ["护肤品", "护肤", "双十一", "skincare"] {
            let terms = query_terms(q);
            assert!(!terms.is_empty(), "{q}");
            assert!(
                terms.iter().all(|t| doc.contains(t)),
                "{q}: {terms:?} in {doc:?}"
            );
        }
        assert!(query_terms("的了，。").is_empty());
    }

    #[test]
    fn facets_order_by_count_then_value() {
        let f = finish_facet(
            "city",
            vec![
                ("北京".into(), 2),
                ("上海".into(), 5),
                ("广州".into(), 2),
                ("x".into(), 0),
            ],
        );
        assert_eq!(
            f.values,
            vec![("上海".into(), 5), ("北京".into(), 2), ("广州".into(), 2)]
        );
    }
}
