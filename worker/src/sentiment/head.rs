//! The sentiment head: a calibrated linear model over the e5 embedding and
//! hashed n-grams, stored as an ONNX graph plus a JSON description.
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use ort::session::Session;
use ort::value::TensorRef;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::features::{self, FeatureSpec, Sparse};
use super::train::{Linear, Platt, Thresholds, sigmoid};
use super::{lexicon, runtime};
use crate::ml::onnx::{Attr, DataType, Dim, Graph, ModelProto};

/// Format of the head JSON (and graph) this build writes. Format 1 heads
/// (a dense `ngrams` input `[N, hash_buckets]`) are still read: their
/// weights are re-exported as a format 2 graph on load.
pub const FORMAT: u32 = 2;
/// Graph input: e5 embeddings, float `[N, 384]`.
pub const INPUT_EMBEDDING: &str = "embedding";
/// Graph input (heads with n-grams): the buckets that are on in each text,
/// int64 `[N, K]`, padded with bucket 0 (K = the most any text of the
/// batch has, at least 1).
pub const INPUT_NGRAM_IDS: &str = "ngram_ids";
/// Graph input (heads with n-grams): the value of each bucket in
/// `ngram_ids`, float `[N, K]`, 0 for padding.
pub const INPUT_NGRAM_VALUES: &str = "ngram_values";
/// Graph output: calibrated probability that the text is positive,
/// float `[N]`.
pub const OUTPUT: &str = "positive";

const W_EMBEDDING: &str = "w_embedding";
const W_NGRAMS: &str = "w_ngrams";
const BIAS: &str = "bias";

/// The ONNX file a head JSON goes with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OnnxInfo {
    pub file: String,
    pub sha256: String,
    pub bytes: usize,
    pub inputs: Vec<String>,
    pub output: String,
}

/// How the logit was calibrated (already folded into the ONNX weights).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Calibration {
    /// "platt".
    pub method: String,
    pub a: f64,
    pub c: f64,
    pub fitted_on: String,
}

impl HeadMeta {
    /// The head's JSON as written (pretty, with a final newline).
    pub fn to_json(&self) -> anyhow::Result<String> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// Writes the head's JSON ([`HeadMeta::to_json`], atomically) to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        crate::ml::manifest::write_atomic(path, self.to_json()?.as_bytes())?;
        Ok(())
    }
}

/// The head's JSON: everything but the weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeadMeta {
    pub format: u32,
    /// e.g. `sentiment-20261127-221500`.
    pub version: String,
    /// "logistic-regression".
    pub kind: String,
    pub created_at: String,
    pub features: FeatureSpec,
    pub onnx: OnnxInfo,
    pub calibration: Calibration,
    pub thresholds: Thresholds,
    /// `{"train": Metrics, "validation": Metrics, "validationBand":
    /// BandMetrics, "eval": {...}}`.
    pub metrics: serde_json::Value,
    /// Corpus, split, settings and the command that reproduces the head.
    pub training: serde_json::Value,
}

/// A loaded head. `predict` is safe to call from several threads (one
/// ONNX Runtime session behind a mutex).
pub struct Head {
    meta: HeadMeta,
    onnx: Vec<u8>,
    linear: Linear,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("version", &self.meta.version)
            .field("features", &self.meta.features)
            .field("thresholds", &self.meta.thresholds)
            .finish()
    }
}

impl Clone for Head {
    fn clone(&self) -> Head {
        Head {
            meta: self.meta.clone(),
            onnx: self.onnx.clone(),
            linear: self.linear.clone(),
            session: Mutex::new(None),
        }
    }
}

/// The ONNX graph of a (calibrated) linear head. The n-grams come in
/// sparse (ids and values) so that the hash space can be large: the graph
/// gathers their weights instead of multiplying a dense `[N, buckets]`
/// matrix.
/// The terms of one text's score ([`Head::explain`]).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub bias: f32,
    /// The embedding's share of the logit.
    pub embedding: f32,
    /// Each n-gram's share, largest magnitude first.
    pub ngrams: Vec<(String, f32)>,
    pub logit: f32,
    /// The head's probability, `sigmoid(logit)`.
    pub head: f32,
    /// After the lexical prior (emoji, sticker codes, slang).
    pub score: f32,
}

pub fn export_onnx(lin: &Linear, spec: &FeatureSpec, version: &str) -> Vec<u8> {
    let d = lin.w_emb.len();
    let mut g = Graph::new("lingxi_sentiment");
    g.doc("Lingxi sentiment head: calibrated probability that a text is positive, from its multilingual-e5-small embedding and hashed n-grams (see docs/sentiment.md).");
    g.metadata("version", version);
    g.metadata("embedding_model", &spec.embedding_model);
    g.metadata("embedding_prefix", spec.embedding_prefix.as_str());
    let batch = Dim::param("batch");
    let x = g.input(
        INPUT_EMBEDDING,
        DataType::Float,
        &[batch.clone(), Dim::fixed(d as i64)],
    );
    let we = g.init_f32(W_EMBEDDING, &[d as i64, 1], &lin.w_emb);
    let b = g.init_f32(BIAS, &[1], &[lin.bias]);
    let mut z = g.node("MatMul", &[&x, &we]);
    if spec.uses_ngrams() {
        let h = lin.w_ngram.len();
        let k = Dim::param("ngrams");
        let ids = g.input(
            INPUT_NGRAM_IDS,
            DataType::Int64,
            &[batch.clone(), k.clone()],
        );
        let vals = g.input(INPUT_NGRAM_VALUES, DataType::Float, &[batch.clone(), k]);
        let wn = g.init_f32(W_NGRAMS, &[h as i64], &lin.w_ngram);
        let picked = g.node_attrs("Gather", &[&wn, &ids], &[("axis", Attr::Int(0))]);
        let terms = g.node("Mul", &[&picked, &vals]);
        let axis = g.const_i64(&[1]);
        let zn = g.node_attrs("ReduceSum", &[&terms, &axis], &[("keepdims", Attr::Int(1))]);
        z = g.node("Add", &[&z, &zn]);
    }
    let z = g.node("Add", &[&z, &b]);
    let p = g.node("Sigmoid", &[&z]);
    let flat = g.const_i64(&[-1]);
    let p = g.node("Reshape", &[&p, &flat]);
    g.output_from(&p, OUTPUT, DataType::Float, &[batch]);
    g.to_bytes()
}

/// The graph inputs of a head with this spec.
fn graph_inputs(spec: &FeatureSpec) -> Vec<String> {
    let mut inputs = vec![INPUT_EMBEDDING.to_owned()];
    if spec.uses_ngrams() {
        inputs.push(INPUT_NGRAM_IDS.to_owned());
        inputs.push(INPUT_NGRAM_VALUES.to_owned());
    }
    inputs
}

/// Pads sparse vectors into `[n, k]` ids and values (bucket 0 with value
/// 0 as padding; k ≥ 1 so that no tensor is empty).
pub fn pad_sparse(rows: &[Sparse]) -> (usize, Vec<i64>, Vec<f32>) {
    let k = rows.iter().map(|s| s.idx.len()).max().unwrap_or(0).max(1);
    let mut ids = vec![0i64; rows.len() * k];
    let mut vals = vec![0f32; rows.len() * k];
    for (r, s) in rows.iter().enumerate() {
        for (c, (&i, &v)) in s.idx.iter().zip(&s.val).enumerate() {
            ids[r * k + c] = i64::from(i);
            vals[r * k + c] = v;
        }
    }
    (k, ids, vals)
}

fn initializer(m: &ModelProto, name: &str) -> anyhow::Result<(Vec<i64>, Vec<f32>)> {
    let g = m.graph.as_ref().context("ONNX model has no graph")?;
    let t = g
        .initializer
        .iter()
        .find(|t| t.name == name)
        .with_context(|| format!("ONNX graph has no initializer {name:?}"))?;
    anyhow::ensure!(t.data_type == DataType::Float as i32, "{name} is not float");
    let data = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    let n: i64 = t.dims.iter().product();
    anyhow::ensure!(
        data.len() as i64 == n,
        "{name}: {} values for {:?}",
        data.len(),
        t.dims
    );
    Ok((t.dims.clone(), data))
}

fn sha256_hex(b: &[u8]) -> String {
    crate::ml::manifest::sha256_bytes(b)
}

impl Head {
    /// Builds a head from trained, calibrated weights; fills in the ONNX
    /// description of `meta`.
    pub fn from_linear(lin: Linear, mut meta: HeadMeta) -> anyhow::Result<Head> {
        anyhow::ensure!(
            lin.w_emb.len() == meta.features.embedding_dims,
            "{} embedding weights for {} dims",
            lin.w_emb.len(),
            meta.features.embedding_dims
        );
        if meta.features.uses_ngrams() {
            anyhow::ensure!(
                lin.w_ngram.len() == meta.features.hash_buckets,
                "{} n-gram weights for {} buckets",
                lin.w_ngram.len(),
                meta.features.hash_buckets
            );
        }
        let onnx = export_onnx(&lin, &meta.features, &meta.version);
        let inputs = graph_inputs(&meta.features);
        meta.format = FORMAT;
        meta.onnx = OnnxInfo {
            file: format!("{}.onnx", meta.version),
            sha256: sha256_hex(&onnx),
            bytes: onnx.len(),
            inputs,
            output: OUTPUT.to_owned(),
        };
        Ok(Head {
            meta,
            onnx,
            linear: lin,
            session: Mutex::new(None),
        })
    }

    /// Loads a head from its ONNX bytes and JSON (checks the sha256 and
    /// that weights and feature spec agree). A format 1 head is converted:
    /// its weights are re-exported as a format 2 graph (sparse n-gram
    /// inputs), with the same outputs.
    pub fn from_bytes(onnx: Vec<u8>, json: &str) -> anyhow::Result<Head> {
        let meta: HeadMeta = serde_json::from_str(json).context("parsing the head JSON")?;
        anyhow::ensure!(
            meta.format == 1 || meta.format == FORMAT,
            "head JSON format {} but this build reads 1 and {FORMAT}",
            meta.format
        );
        let sha = sha256_hex(&onnx);
        anyhow::ensure!(
            sha == meta.onnx.sha256,
            "head ONNX sha256 {sha} does not match the JSON ({})",
            meta.onnx.sha256
        );
        let model = ModelProto::decode(onnx.as_slice()).context("decoding the head ONNX")?;
        let (dims, w_emb) = initializer(&model, W_EMBEDDING)?;
        anyhow::ensure!(
            dims == [meta.features.embedding_dims as i64, 1],
            "{W_EMBEDDING} has dims {dims:?}"
        );
        let (_, bias) = initializer(&model, BIAS)?;
        let w_ngram = if meta.features.uses_ngrams() {
            let (dims, w) = initializer(&model, W_NGRAMS)?;
            let h = meta.features.hash_buckets as i64;
            let expect: &[i64] = if meta.format == 1 { &[h, 1] } else { &[h] };
            anyhow::ensure!(dims == expect, "{W_NGRAMS} has dims {dims:?}");
            w
        } else {
            Vec::new()
        };
        let linear = Linear {
            w_emb,
            w_ngram,
            bias: bias[0],
        };
        if meta.format == 1 {
            return Head::from_linear(linear, meta);
        }
        Ok(Head {
            meta,
            onnx,
            linear,
            session: Mutex::new(None),
        })
    }

    /// Loads a head from an `.onnx` file and its `.json`.
    pub fn from_files(onnx: &Path, json: &Path) -> anyhow::Result<Head> {
        let bytes = std::fs::read(onnx).with_context(|| format!("reading {}", onnx.display()))?;
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        Head::from_bytes(bytes, &text)
            .with_context(|| format!("loading the head {}", onnx.display()))
    }

    /// Writes `<version>.onnx` and `<version>.json` into `dir`, or, with
    /// `name`, `<name>.onnx` and `<name>.json`; returns both paths.
    pub fn write(&self, dir: &Path, name: Option<&str>) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let stem = name.unwrap_or(&self.meta.version);
        let (onnx_bytes, json_text) = self.files(name)?;
        let onnx = dir.join(format!("{stem}.onnx"));
        let json = dir.join(format!("{stem}.json"));
        crate::ml::manifest::write_atomic(&onnx, onnx_bytes)?;
        crate::ml::manifest::write_atomic(&json, json_text.as_bytes())?;
        Ok((onnx, json))
    }

    /// The bytes [`Head::write`] writes with `name`: the ONNX graph and the
    /// JSON that names it.
    pub fn files(&self, name: Option<&str>) -> anyhow::Result<(&[u8], String)> {
        let stem = name.unwrap_or(&self.meta.version);
        let mut meta = self.meta.clone();
        meta.onnx.file = format!("{stem}.onnx");
        Ok((&self.onnx, meta.to_json()?))
    }

    /// e.g. `sentiment-20261127-221500`.
    pub fn version(&self) -> &str {
        &self.meta.version
    }

    /// The NEUTRAL band.
    pub fn thresholds(&self) -> Thresholds {
        self.meta.thresholds
    }

    /// The metrics recorded when the head was trained (and evaluated).
    pub fn metrics(&self) -> &serde_json::Value {
        &self.meta.metrics
    }

    pub fn meta(&self) -> &HeadMeta {
        &self.meta
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.meta.features
    }

    pub fn onnx_bytes(&self) -> &[u8] {
        &self.onnx
    }

    pub fn linear(&self) -> &Linear {
        &self.linear
    }

    /// The calibration folded into the weights.
    pub fn platt(&self) -> Platt {
        Platt {
            a: self.meta.calibration.a,
            c: self.meta.calibration.c,
        }
    }

    /// POSITIVE / NEUTRAL / NEGATIVE for `text`'s probability (the band
    /// of its length).
    pub fn label(&self, p: f32, text: &str) -> &'static str {
        self.meta.thresholds.label_text(p, text)
    }

    /// The hashed n-grams of each text (empty when the head reads none).
    pub fn ngrams(&self, texts: &[String]) -> Vec<Sparse> {
        texts
            .iter()
            .map(|t| features::ngrams(t, &self.meta.features))
            .collect()
    }

    fn check_inputs(&self, texts: &[String], embeddings: &[Vec<f32>]) -> anyhow::Result<()> {
        anyhow::ensure!(
            texts.len() == embeddings.len(),
            "{} texts but {} embeddings",
            texts.len(),
            embeddings.len()
        );
        let d = self.meta.features.embedding_dims;
        if let Some((i, e)) = embeddings.iter().enumerate().find(|(_, e)| e.len() != d) {
            anyhow::bail!("embedding {i} has {} dims, the head reads {d}", e.len());
        }
        Ok(())
    }

    /// The head computed in Rust: the same function as the ONNX graph.
    pub fn predict_reference(
        &self,
        texts: &[String],
        embeddings: &[Vec<f32>],
    ) -> anyhow::Result<Vec<f32>> {
        self.check_inputs(texts, embeddings)?;
        Ok(texts
            .iter()
            .zip(embeddings)
            .map(|(t, e)| {
                let s = features::ngrams(t, &self.meta.features);
                sigmoid(self.linear.logit(e, &s))
            })
            .collect())
    }

    /// Probability that each text is positive, from the text (n-grams) and
    /// its embedding (computed with the prefix in [`Head::spec`]). Runs
    /// the ONNX graph on ONNX Runtime when this process has an environment
    /// for it (see [`super::runtime`]), else the Rust reference (same
    /// numbers within 1e-5), then takes the texts' emoji, sticker codes and
    /// slang into account ([`super::lexicon`]: the head never saw them).
    pub fn predict(&self, texts: &[String], embeddings: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
        let mut p = if runtime::environment().is_some() {
            self.predict_onnx(texts, embeddings)?
        } else {
            self.predict_reference(texts, embeddings)?
        };
        for (p, t) in p.iter_mut().zip(texts) {
            *p = lexicon::adjust(t, *p);
        }
        Ok(p)
    }

    /// Why the head scores `text` as it does: the terms of its logit (the
    /// bias, the embedding's share, each n-gram's share), the head's
    /// probability, and the probability after the lexical prior (what
    /// [`Head::predict`] answers).
    ///
    /// # Errors
    /// `embedding` is not as wide as the head reads.
    pub fn explain(&self, text: &str, embedding: &[f32]) -> anyhow::Result<Explanation> {
        self.check_inputs(&[text.to_owned()], &[embedding.to_vec()])?;
        let lin = &self.linear;
        let emb: f32 = embedding.iter().zip(&lin.w_emb).map(|(x, w)| x * w).sum();
        let named = features::named_ngrams(text, &self.meta.features);
        let value = features::ngram_value(named.len(), &self.meta.features);
        let mut ngrams: Vec<(String, f32)> = named
            .into_iter()
            .filter_map(|(name, b)| Some((name, value * lin.w_ngram.get(b as usize)?)))
            .collect();
        ngrams.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let logit = lin.bias + emb + ngrams.iter().map(|(_, c)| c).sum::<f32>();
        let head = sigmoid(logit);
        Ok(Explanation {
            bias: lin.bias,
            embedding: emb,
            ngrams,
            logit,
            head,
            score: lexicon::adjust(text, head),
        })
    }

    /// True when [`Head::predict`] runs on ONNX Runtime in this process.
    pub fn uses_onnx_runtime(&self) -> bool {
        runtime::environment().is_some()
    }

    /// Runs the ONNX graph on ONNX Runtime.
    ///
    /// # Errors
    /// No ONNX Runtime environment in this process (see
    /// [`super::runtime::init_standalone`]), or ONNX Runtime fails.
    pub fn predict_onnx(
        &self,
        texts: &[String],
        embeddings: &[Vec<f32>],
    ) -> anyhow::Result<Vec<f32>> {
        self.check_inputs(texts, embeddings)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let env = runtime::environment().context(
            "no ONNX Runtime environment for the sentiment head in this process (see worker::sentiment::runtime)",
        )?;
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let s = Session::builder(env)
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?
                .with_intra_threads(1)
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?
                .commit_from_memory(&self.onnx)
                .map_err(|e| anyhow::anyhow!("ONNX Runtime cannot load the sentiment head: {e}"))?;
            *guard = Some(s);
        }
        let session = guard.as_mut().expect("session just created");
        let n = texts.len();
        let d = self.meta.features.embedding_dims;
        let emb: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let emb_t = TensorRef::from_array_view(([n, d], emb.as_slice()))
            .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?;
        let outputs = if self.meta.features.uses_ngrams() {
            let (k, ids, vals) = pad_sparse(&self.ngrams(texts));
            let ids_t = TensorRef::from_array_view(([n, k], ids.as_slice()))
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?;
            let vals_t = TensorRef::from_array_view(([n, k], vals.as_slice()))
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?;
            session
                .run(ort::inputs![
                    INPUT_EMBEDDING => emb_t,
                    INPUT_NGRAM_IDS => ids_t,
                    INPUT_NGRAM_VALUES => vals_t
                ])
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?
        } else {
            session
                .run(ort::inputs![INPUT_EMBEDDING => emb_t])
                .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?
        };
        let (shape, data) = outputs[OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?;
        anyhow::ensure!(
            shape.len() == 1 && shape[0] as usize == n,
            "head returned shape {:?}, expected [{n}]",
            &shape[..]
        );
        Ok(data.to_vec())
    }
}
