//! Features of the sentiment head: the e5 embedding (computed by
//! `ml::Models`) and, optionally, hashed n-grams of the text.
//!
//! The n-grams are jieba words (unigrams, bigrams) and character n-grams
//! of the normalised text, hashed with 64-bit FNV-1a (fixed offset basis
//! and prime: identical on every run and platform) into `hash_buckets`
//! buckets. A text's n-gram vector is binary (a bucket is on or off),
//! scaled to L2 norm `ngram_scale`, so short and long texts weigh alike.
use serde::{Deserialize, Serialize};

use crate::ml::Output;
use crate::text;

/// Dimensions of the multilingual-e5-small embedding.
pub const EMBEDDING_DIMS: usize = 384;

/// Which prefix the embedding was computed with (`ml::Models`
/// `embed_queries` = "query: ", `embed_passages` = "passage: ").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingPrefix {
    Query,
    Passage,
}

impl EmbeddingPrefix {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddingPrefix::Query => "query",
            EmbeddingPrefix::Passage => "passage",
        }
    }
}

impl std::str::FromStr for EmbeddingPrefix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "query" => Ok(EmbeddingPrefix::Query),
            "passage" => Ok(EmbeddingPrefix::Passage),
            other => anyhow::bail!("embedding prefix {other:?}: expected query or passage"),
        }
    }
}

/// What the head reads. Stored in the head's JSON; [`ngrams`] and the
/// ONNX graph's inputs follow it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSpec {
    /// The embedding model the head was trained on, e.g.
    /// `multilingual-e5-small-int8@1`.
    pub embedding_model: String,
    /// The e5 prefix the embeddings must be computed with.
    pub embedding_prefix: EmbeddingPrefix,
    /// Which output of the e5 graph: `sentiment` (through the sentiment
    /// adapter) or `embedding`; heads from before the adapter have none.
    #[serde(default)]
    pub embedding_output: Output,
    pub embedding_dims: usize,
    /// Buckets of the hashed n-gram input; 0 = the head reads the
    /// embedding only (no "ngrams" input in the ONNX graph).
    pub hash_buckets: usize,
    /// Always "fnv1a64": FNV-1a, 64 bits, over the UTF-8 bytes of a
    /// kind tag (`w:`, `ww:`, `cN:`) followed by the n-gram, modulo
    /// `hash_buckets`.
    pub hash: String,
    /// jieba words (`worker::text::segment`).
    pub word_unigrams: bool,
    /// Pairs of consecutive jieba words.
    pub word_bigrams: bool,
    /// Character n-gram lengths (e.g. `[2]` = char bigrams), over the
    /// normalised text with whitespace removed.
    pub char_ngrams: Vec<usize>,
    /// L2 norm of a text's n-gram vector (relative to the unit-length
    /// embedding).
    pub ngram_scale: f32,
}

impl FeatureSpec {
    /// An embedding-only spec.
    pub fn embedding_only(model: &str, prefix: EmbeddingPrefix) -> FeatureSpec {
        FeatureSpec {
            embedding_model: model.to_owned(),
            embedding_prefix: prefix,
            embedding_output: Output::Embedding,
            embedding_dims: EMBEDDING_DIMS,
            hash_buckets: 0,
            hash: HASH_NAME.to_owned(),
            word_unigrams: false,
            word_bigrams: false,
            char_ngrams: Vec::new(),
            ngram_scale: 0.0,
        }
    }

    /// True when the head reads hashed n-grams.
    pub fn uses_ngrams(&self) -> bool {
        self.hash_buckets > 0
            && (self.word_unigrams || self.word_bigrams || !self.char_ngrams.is_empty())
    }
}

/// The one hash this module implements.
pub const HASH_NAME: &str = "fnv1a64";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over the concatenation of `parts`.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// Normalises text for n-grams: full-width ASCII to half-width, the
/// ideographic space to a space, ASCII lower case.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
            '\u{3000}' => ' ',
            '\u{FEFF}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// A sparse n-gram vector: sorted, distinct bucket indices and one value
/// per index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sparse {
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

impl Sparse {
    pub fn dot(&self, w: &[f32]) -> f32 {
        self.idx
            .iter()
            .zip(&self.val)
            .map(|(&i, &v)| v * w[i as usize])
            .sum()
    }
}

fn bucket(tag: &[u8], gram: &str, buckets: usize) -> u32 {
    (fnv1a64(&[tag, gram.as_bytes()]) % buckets as u64) as u32
}

/// Calls `f(tag, gram)` for each n-gram of `text` under `spec` (repeats
/// included), in the order the head's features are defined.
fn each_gram(text: &str, spec: &FeatureSpec, mut f: impl FnMut(&[u8], &str)) {
    let norm = normalize(text);
    if spec.word_unigrams || spec.word_bigrams {
        let words: Vec<String> = text::segment(&norm)
            .into_iter()
            .filter(|w| !w.trim().is_empty())
            .collect();
        if spec.word_unigrams {
            for w in &words {
                f(b"w:", w);
            }
        }
        if spec.word_bigrams {
            let mut pair = String::new();
            for p in words.windows(2) {
                pair.clear();
                pair.push_str(&p[0]);
                pair.push('\u{1F}');
                pair.push_str(&p[1]);
                f(b"ww:", &pair);
            }
        }
    }
    if !spec.char_ngrams.is_empty() {
        let chars: Vec<char> = norm.chars().filter(|c| !c.is_whitespace()).collect();
        let mut gram = String::new();
        for &n in &spec.char_ngrams {
            if n == 0 || chars.len() < n {
                continue;
            }
            let tag = format!("c{n}:");
            for win in chars.windows(n) {
                gram.clear();
                gram.extend(win);
                f(tag.as_bytes(), &gram);
            }
        }
    }
}

/// The hashed n-grams of `text` under `spec` (empty when the spec has
/// none).
pub fn ngrams(text: &str, spec: &FeatureSpec) -> Sparse {
    if !spec.uses_ngrams() {
        return Sparse::default();
    }
    let h = spec.hash_buckets;
    let mut on: Vec<u32> = Vec::new();
    each_gram(text, spec, |tag, gram| on.push(bucket(tag, gram, h)));
    on.sort_unstable();
    on.dedup();
    Sparse {
        val: vec![ngram_value(on.len(), spec); on.len()],
        idx: on,
    }
}

/// The value of each of a text's `n` distinct n-grams: together they have
/// L2 norm `ngram_scale`, so short and long texts weigh alike.
pub fn ngram_value(n: usize, spec: &FeatureSpec) -> f32 {
    if n == 0 {
        0.0
    } else {
        spec.ngram_scale / (n as f32).sqrt()
    }
}

/// Each distinct n-gram of `text` as `tag + gram` (word pairs joined by
/// `|`) with its bucket, for explaining a score.
pub fn named_ngrams(text: &str, spec: &FeatureSpec) -> Vec<(String, u32)> {
    if !spec.uses_ngrams() {
        return Vec::new();
    }
    let mut out: Vec<(String, u32)> = Vec::new();
    each_gram(text, spec, |tag, gram| {
        let name = format!(
            "{}{}",
            String::from_utf8_lossy(tag),
            gram.replace('\u{1F}', "|")
        );
        out.push((name, bucket(tag, gram, spec.hash_buckets)));
    });
    out.sort_by_key(|(_, b)| *b);
    out.dedup_by_key(|(_, b)| *b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FeatureSpec {
        FeatureSpec {
            hash_buckets: 4096,
            word_unigrams: true,
            word_bigrams: true,
            char_ngrams: vec![2],
            ngram_scale: 0.5,
            ..FeatureSpec::embedding_only("test", EmbeddingPrefix::Query)
        }
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // Test vectors of the FNV reference (64-bit FNV-1a).
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
    }

    #[test]
    fn ngrams_are_deterministic_and_unit_scaled() {
        let s = spec();
        let a = ngrams("这家店的服务太差了，再也不来了！", &s);
        let b = ngrams("这家店的服务太差了，再也不来了！", &s);
        assert_eq!(a, b);
        assert!(!a.idx.is_empty());
        assert!(a.idx.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
        assert!(a.idx.iter().all(|&i| (i as usize) < s.hash_buckets));
        let norm: f32 = a.val.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 0.5).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn full_width_and_case_are_normalised() {
        let s = spec();
        assert_eq!(ngrams("ＧＯＯＤ！", &s), ngrams("good!", &s));
        assert_eq!(normalize("Ａｂ\u{3000}"), "ab ");
    }

    #[test]
    fn empty_and_embedding_only() {
        assert!(ngrams("", &spec()).idx.is_empty());
        let e = FeatureSpec::embedding_only("m", EmbeddingPrefix::Passage);
        assert!(!e.uses_ngrams());
        assert!(ngrams("很好", &e).idx.is_empty());
    }

    #[test]
    fn buckets_are_stable_across_releases() {
        // A changed bucket silently breaks every shipped head: pin one.
        let s = FeatureSpec {
            word_unigrams: false,
            word_bigrams: false,
            char_ngrams: vec![2],
            ngram_scale: 1.0,
            ..spec()
        };
        let v = ngrams("好评", &s);
        // FNV-1a-64("c2:好评") mod 4096, computed independently.
        assert_eq!(v.idx, vec![3562]);
        assert!((v.val[0] - 1.0).abs() < 1e-6);
    }
}
