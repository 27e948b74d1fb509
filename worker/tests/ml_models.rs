//! End-to-end checks of `worker::ml` against the installed models (`make
//! setup`). Without them (no manifest in `LINGXI_MODELS_DIR` /
//! `~/.cache/lingxi/models`) each test prints why and passes.
use std::path::{Path, PathBuf};

use worker::ml::{self, EmbeddingVariant, ModelError, Models, Options, Output};

fn installed() -> Option<PathBuf> {
    let dir = ml::default_models_dir();
    if dir.join("manifest.json").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: no models in {} (run `make setup`)", dir.display());
        None
    }
}

fn load(dir: &Path, variant: EmbeddingVariant) -> Models {
    let opts = Options {
        variant,
        ..Options::default()
    };
    Models::load_with(dir, &opts).expect("models load")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|t| (*t).to_owned()).collect()
}

#[test]
fn int8_embeddings_are_normalised_deduplicated_and_batch_invariant() {
    let Some(dir) = installed() else { return };
    let m = load(&dir, EmbeddingVariant::Int8);
    assert_eq!(m.dims(), 384);
    assert_eq!(
        m.embedding_model(),
        ml::setup::model_id(ml::e5::Variant::Int8)
    );
    let texts = s(&[
        "很快，好吃，味道足，量大",
        "送餐太慢了，饭都凉了",
        "很快，好吃，味道足，量大",
        "",
        "Great coupons for members this weekend",
    ]);
    let v = m.embed_passages(&texts).unwrap();
    assert_eq!(v.len(), texts.len());
    for e in &v {
        assert_eq!(e.len(), 384);
        let n = cos(e, e).sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    }
    assert_eq!(v[0], v[2], "identical texts get identical vectors");
    // one at a time gives the same vectors as in a padded batch
    for (t, e) in texts.iter().zip(&v) {
        let one = &m.embed_passages(std::slice::from_ref(t)).unwrap()[0];
        assert!(cos(one, e) > 0.9999, "{t:?}: {}", cos(one, e));
    }
    assert!(m.embed_passages(&[]).unwrap().is_empty());
}

#[test]
fn queries_find_the_matching_passage() {
    let Some(dir) = installed() else { return };
    let m = load(&dir, EmbeddingVariant::Int8);
    let passages = s(&[
        "配送很快，半小时就送到了，饭菜还是热的",
        "会员积分可以兑换优惠券",
        "The battery lasts two days on a single charge",
    ]);
    let queries = s(&[
        "外卖送得快吗",
        "how to redeem loyalty points",
        "phone battery life",
    ]);
    let p = m.embed_passages(&passages).unwrap();
    let q = m.embed_queries(&queries).unwrap();
    for (i, qv) in q.iter().enumerate() {
        let best = (0..p.len())
            .max_by(|&a, &b| cos(qv, &p[a]).total_cmp(&cos(qv, &p[b])))
            .unwrap();
        assert_eq!(best, i, "query {:?}", queries[i]);
    }
    // the prefix matters: a query vector is not the passage vector
    let same = m.embed_passages(&queries[..1]).unwrap();
    assert!(cos(&same[0], &q[0]) < 0.999);
}

#[test]
fn fp32_and_int8_agree_and_match_the_reference() {
    let Some(dir) = installed() else { return };
    let fp32 = load(&dir, EmbeddingVariant::Fp32);
    let int8 = load(&dir, EmbeddingVariant::Int8);
    let r32 = ml::setup::compare_with_reference(&fp32).unwrap();
    let r8 = ml::setup::compare_with_reference(&int8).unwrap();
    assert!(r32.min_cosine > 0.999, "{r32:?}");
    assert!(r8.min_cosine > ml::setup::MIN_COSINE, "{r8:?}");
    let texts = s(&["双十一全场五折", "味道一般，分量太少"]);
    let a = fp32.embed_passages(&texts).unwrap();
    let b = int8.embed_passages(&texts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(cos(x, y) > 0.99);
    }
}

#[test]
fn long_texts_are_embedded_in_windows_not_cut_at_512_tokens() {
    let Some(dir) = installed() else { return };
    let m = load(&dir, EmbeddingVariant::Int8);
    assert_eq!(m.max_tokens(), 512);
    let praise = "房间干净整洁，前台服务热情周到，早餐品种丰富，下次还会再来。";
    let complaint = "隔音太差，空调坏了没人修，热水时有时无，退房时还多收了钱。";
    let head = praise.repeat(40); // well over 512 tokens on its own
    let long = format!("{head}{}", complaint.repeat(40));
    assert!(m.token_count(&head, true).unwrap() > 512);
    assert!(m.token_count(&long, true).unwrap() > 1024);
    let v = m
        .embed_queries(&[long.clone(), head, praise.into(), complaint.into()])
        .unwrap();
    let (long_v, head_v, praise_v, complaint_v) = (&v[0], &v[1], &v[2], &v[3]);
    let n = cos(long_v, long_v).sqrt();
    assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    // Cut at 512 tokens, the long text would be its first window: praise
    // only. Its embedding carries the complaints at the end as well.
    assert!(
        cos(long_v, complaint_v) > cos(head_v, complaint_v) + 0.04,
        "long·complaint {} vs head·complaint {}",
        cos(long_v, complaint_v),
        cos(head_v, complaint_v)
    );
    assert!(cos(long_v, praise_v) > 0.8, "{}", cos(long_v, praise_v));
    // a long text of one repeated sentence stays close to that sentence
    assert!(cos(head_v, praise_v) > 0.9, "{}", cos(head_v, praise_v));
    // batch-invariant: alone it gets the same vector
    let alone = &m.embed_queries(std::slice::from_ref(&long)).unwrap()[0];
    assert!(cos(alone, long_v) > 0.9999);
}

#[test]
fn the_sentiment_branch_is_the_adapter_on_the_same_pass() {
    let Some(dir) = installed() else { return };
    let adapter = ml::adapter::Adapter::shipped().unwrap();
    let (w, b) = adapter.head(384).unwrap();
    for variant in [EmbeddingVariant::Int8, EmbeddingVariant::Fp32] {
        let m = load(&dir, variant);
        assert_eq!(
            m.sentiment_model().unwrap(),
            format!("{}+{}", m.embedding_model(), adapter.tag())
        );
        let texts = s(&[
            "酒店位置好，房间宽敞干净，服务员很热情，强烈推荐！",
            "房间又小又脏，隔音差，前台态度恶劣，再也不会来了。",
            "送得很快，味道也不错，好评",
            "等了两个小时，饭菜全凉了，难吃",
        ]);
        let out = m
            .embed_outputs(&texts, true, &[Output::Embedding, Output::Sentiment])
            .unwrap();
        let (base, senti) = (&out[0], &out[1]);
        assert_eq!(base, &m.embed_queries(&texts).unwrap(), "{variant:?}");
        for (t, v) in texts.iter().zip(senti) {
            let n = cos(v, v).sqrt();
            assert!((n - 1.0).abs() < 1e-4, "{t}: norm {n}");
        }
        // The adapter moves the vectors: same text, another direction.
        assert!(
            cos(&base[0], &senti[0]) < 0.99,
            "{}",
            cos(&base[0], &senti[0])
        );
        // The adapter's own training head reads the branch as it was trained.
        let logit = |v: &[f32]| cos(v, &w) + b;
        for (i, t) in texts.iter().enumerate() {
            let z = logit(&senti[i]);
            assert_eq!(z > 0.0, i % 2 == 0, "{variant:?} {t}: logit {z}");
        }
        // batch-invariant, and the same when asked for alone
        let alone = m
            .embed_outputs(&texts[1..2], true, &[Output::Sentiment])
            .unwrap();
        assert!(cos(&alone[0][0], &senti[1]) > 0.9999);
    }
}

/// Links the installed files into a scratch dir with an edited manifest.
fn scratch_copy(dir: &Path, name: &str) -> PathBuf {
    let tmp = std::env::temp_dir().join(format!("lingxi-ml-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for sub in ["e5-small", "onnxruntime"] {
        std::fs::create_dir_all(tmp.join(sub)).unwrap();
    }
    let m = ml::manifest::Manifest::read(dir).unwrap();
    for e in m.models.values() {
        std::os::unix::fs::symlink(e.path(dir), tmp.join(&e.file)).unwrap();
    }
    m.write(&tmp).unwrap();
    tmp
}

#[test]
fn corrupt_or_missing_files_name_make_setup() {
    let Some(dir) = installed() else { return };
    let tmp = scratch_copy(&dir, "corrupt");
    let mut m = ml::manifest::Manifest::read(&tmp).unwrap();
    m.models.get_mut(ml::manifest::TOKENIZER).unwrap().sha256 = "0".repeat(64);
    m.write(&tmp).unwrap();
    let err = Models::load_with(&tmp, &Options::default()).unwrap_err();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("make setup"), "{err}");

    std::fs::remove_file(tmp.join("onnxruntime/libonnxruntime.so.1.32.0")).unwrap();
    let err = Models::load_with(&tmp, &Options::default()).unwrap_err();
    assert!(matches!(err, ModelError::NotInstalled { .. }), "{err:?}");
    assert!(err.to_string().contains("make setup"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_graph_installed_before_the_adapter_asks_for_make_setup() {
    let Some(dir) = installed() else { return };
    let tmp = scratch_copy(&dir, "no-adapter");
    // The manifest of an older setup: no sentiment output, no branch id.
    let mut m = ml::manifest::Manifest::read(&tmp).unwrap();
    let e = m.models.get_mut(ml::manifest::E5_INT8).unwrap();
    e.outputs.retain(|t| t.name != ml::e5::SENTIMENT_OUTPUT);
    e.params.remove("sentiment_model");
    m.write(&tmp).unwrap();
    let models = Models::load_with(&tmp, &Options::default()).unwrap();
    assert_eq!(models.sentiment_model(), None);
    let texts = s(&["好评"]);
    // e5's own embedding still works; the sentiment branch names the fix
    assert_eq!(models.embed_queries(&texts).unwrap()[0].len(), 384);
    let err = models
        .embed_outputs(&texts, true, &[Output::Sentiment])
        .unwrap_err();
    assert!(err.needs_setup(), "{err:?}");
    assert!(err.to_string().contains("make setup"), "{err}");
    assert!(err.to_string().contains("sentiment_embedding"), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn exported_linear_head_runs_in_onnx_runtime() {
    let Some(dir) = installed() else { return };
    let m = load(&dir, EmbeddingVariant::Int8);
    // p = sigmoid(x·w + b) over 384-dim embeddings
    let w: Vec<f32> = (0..384)
        .map(|i| if i % 2 == 0 { 0.5 } else { -0.25 })
        .collect();
    let onnx = ml::onnx::linear_head("sentiment", "embedding", "p_positive", &w, &[0.1], 384);
    let mut session = m.session_from_memory(&onnx).unwrap();
    let x: Vec<f32> = (0..2 * 384).map(|i| (i % 7) as f32 / 10.0).collect();
    let input = ort::value::TensorRef::from_array_view(([2usize, 384], x.as_slice())).unwrap();
    let out = session.run(ort::inputs!["embedding" => input]).unwrap();
    let (shape, p) = out["p_positive"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&shape[..], &[2, 1]);
    for r in 0..2 {
        let z: f32 = (0..384).map(|i| x[r * 384 + i] * w[i]).sum::<f32>() + 0.1;
        let want = 1.0 / (1.0 + (-z).exp());
        assert!((p[r] - want).abs() < 1e-5, "{} vs {want}", p[r]);
    }
}
