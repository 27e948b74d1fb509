//! `lingxi-models bench`: embedding throughput of this runtime against
//! stock Python onnxruntime on the same ONNX graphs and the same texts, in
//! one run, configurations interleaved round by round (so a busy machine
//! slows all of them alike), median per configuration.
//!
//! The texts are short Chinese reviews read at run time from
//! `waimai_10k.csv` (column `review`); nothing is copied into the repo.
//! The Python side needs an interpreter with `onnxruntime`, `tokenizers`
//! and `numpy` (`--python`); without one it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::runtime::{EmbeddingVariant, Models, Options, Output};

pub struct BenchArgs {
    pub models_dir: PathBuf,
    pub csv: PathBuf,
    pub n: usize,
    pub batch: usize,
    pub rounds: usize,
    pub python: Option<String>,
}

/// The default location of the review corpus: `shared/` next to the repo.
pub fn default_csv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/sentiment/waimai_10k.csv")
}

/// Second column of a two-column CSV with a header (quotes handled).
fn read_reviews(path: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let Some((_, rest)) = line.split_once(',') else {
            continue;
        };
        let review = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(q) => q.replace("\"\"", "\""),
            None => rest.to_owned(),
        };
        if !review.trim().is_empty() {
            out.push(review);
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

const PY: &str = r#"
import json, sys, time
import numpy as np, onnxruntime as ort, tokenizers
model, tok_path, texts_path, bs, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
outputs = None if sys.argv[6] == "all" else [sys.argv[6]]
texts = ["passage: " + t for t in json.load(open(texts_path, encoding="utf-8"))]
tok = tokenizers.Tokenizer.from_file(tok_path)
tok.enable_truncation(512)
so = ort.SessionOptions()
so.intra_op_num_threads = threads
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
def run(texts):
    out = []
    for i in range(0, len(texts), bs):
        enc = tok.encode_batch(texts[i:i + bs])
        L = max(len(e.ids) for e in enc)
        ids = np.ones((len(enc), L), np.int64)
        mask = np.zeros((len(enc), L), np.int64)
        for j, e in enumerate(enc):
            ids[j, :len(e.ids)] = e.ids
            mask[j, :len(e.ids)] = 1
        out.append(s.run(outputs, {"input_ids": ids, "attention_mask": mask})[0])
    return np.concatenate(out)
run(texts[:bs])
t = time.perf_counter()
run(texts)
print(json.dumps({"seconds": time.perf_counter() - t, "ort": ort.__version__}))
"#;

fn python_ok(py: &str) -> bool {
    Command::new(py)
        .args(["-c", "import onnxruntime, tokenizers, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    if !a.csv.is_file() {
        eprintln!(
            "[bench] skipped: {} is absent (pass --csv PATH to a CSV whose second column holds texts)",
            a.csv.display()
        );
        return Ok(());
    }
    let texts =
        read_reviews(&a.csv, a.n).with_context(|| format!("reading {}", a.csv.display()))?;
    if texts.is_empty() {
        bail!("no texts in {}", a.csv.display());
    }
    let opts = Options::from_env()?;
    let fp32 = Models::load_with(
        &a.models_dir,
        &Options {
            variant: EmbeddingVariant::Fp32,
            batch_size: a.batch,
            ..opts.clone()
        },
    )?;
    let int8 = Models::load_with(
        &a.models_dir,
        &Options {
            variant: EmbeddingVariant::Int8,
            batch_size: a.batch,
            ..opts.clone()
        },
    )?;
    let path = |k: &str| fp32.manifest().models[k].path(&a.models_dir);
    let (fp32_path, int8_path) = (
        path(super::manifest::E5_FP32),
        path(super::manifest::E5_INT8),
    );
    let tok_path = path(super::manifest::TOKENIZER);

    let python = a.python.clone().filter(|p| {
        let ok = python_ok(p);
        if !ok {
            eprintln!(
                "[bench] {p} cannot import onnxruntime, tokenizers and numpy: Python side skipped"
            );
        }
        ok
    });
    let texts_file = std::env::temp_dir().join(format!("lingxi-bench-{}.json", std::process::id()));
    let script = std::env::temp_dir().join(format!("lingxi-bench-{}.py", std::process::id()));
    std::fs::write(&texts_file, serde_json::to_vec(&texts)?)?;
    std::fs::write(&script, PY)?;

    let tokens: usize = texts
        .iter()
        .map(|t| int8.token_count(t, false).unwrap_or(0))
        .sum();
    let unique = texts.iter().collect::<std::collections::HashSet<_>>().len();
    eprintln!(
        "[bench] {} texts ({unique} distinct, {:.1} tokens on average with the prefix), batch {}, \
         {} ONNX Runtime threads, {} rounds; load average {}",
        texts.len(),
        tokens as f64 / texts.len() as f64,
        a.batch,
        opts.threads,
        a.rounds,
        loadavg()
    );

    // (label, samples in texts/s)
    let mut results: Vec<(String, Vec<f64>)> = Vec::new();
    let mut record = |label: &str, secs: f64| {
        let tps = texts.len() as f64 / secs;
        eprintln!("[bench]   {label:<58} {tps:>7.1} texts/s");
        match results.iter_mut().find(|(l, _)| l == label) {
            Some((_, v)) => v.push(tps),
            None => results.push((label.to_owned(), vec![tps])),
        }
    };
    let mut py_version = String::new();
    let mut python_run = |model: &Path, outputs: &str| -> anyhow::Result<f64> {
        let py = python.as_deref().expect("checked");
        let out = Command::new(py)
            .arg(&script)
            .arg(model)
            .arg(&tok_path)
            .arg(&texts_file)
            .arg(a.batch.to_string())
            .arg(opts.threads.to_string())
            .arg(outputs)
            .output()?;
        if !out.status.success() {
            bail!("python failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        py_version = v["ort"].as_str().unwrap_or("").to_owned();
        v["seconds"].as_f64().context("python output")
    };
    let chunks = |m: &Models| -> anyhow::Result<f64> {
        let t = Instant::now();
        for c in texts.chunks(a.batch) {
            m.embed_passages(c)?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let whole = |m: &Models| -> anyhow::Result<f64> {
        let t = Instant::now();
        m.embed_passages(&texts)?;
        Ok(t.elapsed().as_secs_f64())
    };
    // warm-up
    int8.embed_passages(&texts[..a.batch.min(texts.len())])?;
    fp32.embed_passages(&texts[..a.batch.min(texts.len())])?;
    for round in 1..=a.rounds {
        eprintln!(
            "[bench] round {round}/{} (load average {})",
            a.rounds,
            loadavg()
        );
        if python.is_some() {
            record(
                "python onnxruntime, fp32, input order",
                python_run(&fp32_path, super::e5::OUTPUT)?,
            );
        }
        record("lingxi, fp32, input order (no sorting)", chunks(&fp32)?);
        record("lingxi, fp32, sorted by length + dedup", whole(&fp32)?);
        record(
            "lingxi, int8, sorted by length + dedup (product default)",
            whole(&int8)?,
        );
        record(
            "lingxi, int8, embedding + sentiment branch (what analysis computes)",
            {
                let t = Instant::now();
                int8.embed_outputs(&texts, false, &[Output::Embedding, Output::Sentiment])?;
                t.elapsed().as_secs_f64()
            },
        );
        if python.is_some() {
            record(
                "python onnxruntime, int8 graph, input order",
                python_run(&int8_path, super::e5::OUTPUT)?,
            );
            record(
                "python onnxruntime, int8 graph, embedding + sentiment branch",
                python_run(&int8_path, "all")?,
            );
        }
    }
    let _ = std::fs::remove_file(&texts_file);
    let _ = std::fs::remove_file(&script);

    let baseline = results
        .iter()
        .find(|(l, _)| l.starts_with("python onnxruntime, fp32"))
        .map(|(_, v)| median(&mut v.clone()));
    println!(
        "\n| configuration ({} texts, batch {}, {} threads) | texts/s (median of {}) | vs Python fp32 |",
        texts.len(),
        a.batch,
        opts.threads,
        a.rounds
    );
    println!("|---|---:|---:|");
    for (label, v) in &mut results {
        let m = median(v);
        let rel = baseline.map_or("–".to_owned(), |b| format!("{:.2}×", m / b));
        println!("| {label} | {m:.1} | {rel} |");
    }
    if !py_version.is_empty() {
        println!(
            "\nPython onnxruntime {py_version}; load average at the end {}",
            loadavg()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_plain_reviews() {
        let p = std::env::temp_dir().join(format!("lingxi-bench-csv-{}", std::process::id()));
        std::fs::write(
            &p,
            "label,review\n1,很快，好吃\n0,\"送餐慢,\"\"凉了\"\"\"\n1,\n1,好\n",
        )
        .unwrap();
        let r = read_reviews(&p, 10).unwrap();
        assert_eq!(r, ["很快，好吃", "送餐慢,\"凉了\"", "好"]);
        assert_eq!(read_reviews(&p, 1).unwrap().len(), 1);
        std::fs::remove_file(&p).unwrap();
    }
}
