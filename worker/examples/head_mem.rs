//! Memory of a sentiment head in a process: loads the shipped head ten
//! times, runs each once (which opens its ONNX Runtime session) and prints
//! the resident memory added. Sizes `LINGXI_ACCOUNT_HEADS`.
//!
//! `cargo run --release -p worker --example head_mem` (needs `make setup`).
fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: f64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / 1e6
}
fn main() {
    let dir = std::env::var("LINGXI_MODELS_DIR").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lingxi/models"),
        std::path::PathBuf::from,
    );
    let _m = worker::ml::Models::load(&dir).unwrap();
    let texts = vec!["这家店很好吃".to_string()];
    let first = worker::sentiment::Head::shipped();
    let d = first.meta().features.embedding_dims;
    first.predict(&texts, &[vec![0.0; d]]).unwrap();
    let base = rss_mb();
    let mut heads = Vec::new();
    for _ in 0..10 {
        let h = worker::sentiment::Head::shipped();
        let after_load = rss_mb();
        h.predict(&texts, &[vec![0.0; d]]).unwrap();
        println!(
            "loaded +{:.1} MB, used +{:.1} MB",
            after_load - base,
            rss_mb() - base
        );
        heads.push(h);
    }
    println!(
        "10 heads: {:.1} MB, {:.1} MB each",
        rss_mb() - base,
        (rss_mb() - base) / 10.0
    );
}
