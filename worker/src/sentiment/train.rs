//! The trainer: L2-regularised, class-balanced logistic regression over
//! [embedding ‖ hashed n-grams], fitted with full-batch L-BFGS (no random
//! numbers: the same data gives the same weights), then Platt scaling on a
//! held-out split, metrics and the NEUTRAL band.
use serde::{Deserialize, Serialize};

use super::corpus::Matrix;
use super::features::{Sparse, fnv1a64};

/// The features of a set of texts.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub emb: Matrix,
    /// One sparse n-gram vector per row (empty vectors when the head
    /// reads no n-grams).
    pub ngrams: Vec<Sparse>,
    pub buckets: usize,
}

impl Features {
    pub fn rows(&self) -> usize {
        self.emb.rows
    }

    pub fn select(&self, idx: &[usize]) -> Features {
        Features {
            emb: self.emb.select(idx),
            ngrams: idx.iter().map(|&i| self.ngrams[i].clone()).collect(),
            buckets: self.buckets,
        }
    }

    /// Appends `other`'s rows.
    pub fn extend(&mut self, other: &Features) {
        debug_assert_eq!(self.emb.cols, other.emb.cols);
        self.emb.data.extend_from_slice(&other.emb.data);
        self.emb.rows += other.emb.rows;
        self.ngrams.extend(other.ngrams.iter().cloned());
    }

    /// The same features with every n-gram value multiplied by its
    /// bucket's factor (see [`nb_ratios`]); in place, the embeddings are
    /// not copied.
    pub fn reweighted(mut self, factor: &[f32]) -> Features {
        for s in &mut self.ngrams {
            for (&j, v) in s.idx.iter().zip(s.val.iter_mut()) {
                *v *= factor[j as usize];
            }
        }
        self
    }
}

/// Naive-Bayes log-count ratios of the n-gram buckets (NB-SVM, Wang &
/// Manning 2012): `r_j = ln((α + n⁺_j) / ‖α + n⁺‖₁) − ln((α + n⁻_j) / ‖α + n⁻‖₁)`
/// with `n±_j` the number of positive / negative texts in which bucket `j`
/// is on. Training on `x_j · r_j` and folding `r` back into the weights
/// (`w_j · r_j`) leaves the model's form unchanged but penalises a
/// bucket's weight by `λ / r_j²`: n-grams that say nothing about the
/// label are held near zero, telling ones may grow.
pub fn nb_ratios(
    ngrams: &[Sparse],
    y: &[u8],
    weights: &[f64],
    buckets: usize,
    alpha: f64,
) -> Vec<f32> {
    let mut pos = vec![alpha; buckets];
    let mut neg = vec![alpha; buckets];
    for ((s, &label), &w) in ngrams.iter().zip(y).zip(weights) {
        let counts = if label == 1 { &mut pos } else { &mut neg };
        for &j in &s.idx {
            counts[j as usize] += w;
        }
    }
    let (sp, sn) = (pos.iter().sum::<f64>(), neg.iter().sum::<f64>());
    pos.iter()
        .zip(&neg)
        .map(|(p, n)| ((p / sp).ln() - (n / sn).ln()) as f32)
        .collect()
}

/// A linear head: `z = emb·w_emb + ngrams·w_ngram + bias`,
/// `p = sigmoid(z)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub w_emb: Vec<f32>,
    pub w_ngram: Vec<f32>,
    pub bias: f32,
}

impl Linear {
    pub fn logit(&self, emb: &[f32], ngrams: &Sparse) -> f32 {
        let mut z = self.bias;
        z += emb.iter().zip(&self.w_emb).map(|(x, w)| x * w).sum::<f32>();
        if !self.w_ngram.is_empty() {
            z += ngrams.dot(&self.w_ngram);
        }
        z
    }

    pub fn logits(&self, f: &Features) -> Vec<f32> {
        (0..f.rows())
            .map(|i| {
                let empty = Sparse::default();
                let s = f.ngrams.get(i).unwrap_or(&empty);
                self.logit(f.emb.row(i), s)
            })
            .collect()
    }

    /// Multiplies the n-gram weights by per-bucket factors (folds the
    /// [`nb_ratios`] the model was trained with into its weights).
    pub fn scale_ngrams(mut self, factor: &[f32]) -> Linear {
        for (w, f) in self.w_ngram.iter_mut().zip(factor) {
            *w *= f;
        }
        self
    }

    /// Folds a Platt scaling `sigmoid(a·z + c)` into the weights.
    pub fn fold(&self, p: &Platt) -> Linear {
        let a = p.a as f32;
        Linear {
            w_emb: self.w_emb.iter().map(|w| w * a).collect(),
            w_ngram: self.w_ngram.iter().map(|w| w * a).collect(),
            bias: self.bias * a + p.c as f32,
        }
    }
}

pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn sigmoid64(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Training settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainConfig {
    /// L2 penalty on the embedding weights.
    pub l2_embedding: f64,
    /// L2 penalty on the n-gram weights.
    pub l2_ngrams: f64,
    pub max_iter: usize,
    /// Stop when the gradient's max-norm falls below this.
    pub tolerance: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            l2_embedding: 1e-4,
            l2_ngrams: 1e-4,
            max_iter: 400,
            tolerance: 1e-6,
        }
    }
}

/// What the optimiser did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FitReport {
    pub iterations: usize,
    pub objective: f64,
    pub gradient_norm: f64,
}

/// Class weights that make both classes weigh half: `n / (2·n_class)`.
fn class_weights(y: &[u8]) -> [f64; 2] {
    class_weights_of(y, &vec![1.0; y.len()])
}

/// [`class_weights`] with row weights: `n` and `n_class` are sums of them.
fn class_weights_of(y: &[u8], weights: &[f64]) -> [f64; 2] {
    let (mut pos, mut n) = (0.0, 0.0);
    for (&l, &w) in y.iter().zip(weights) {
        n += w;
        if l == 1 {
            pos += w;
        }
    }
    let neg = (n - pos).max(1.0);
    [n / (2.0 * neg), n / (2.0 * pos.max(1.0))]
}

/// Fits the linear head on `f` with labels `y` (1 = positive) and row
/// weights (a row of weight k counts as k copies of it; both classes still
/// weigh half overall).
pub fn fit(f: &Features, y: &[u8], weights: &[f64], cfg: &TrainConfig) -> (Linear, FitReport) {
    assert_eq!(f.rows(), y.len());
    assert_eq!(weights.len(), y.len());
    let d = f.emb.cols;
    let h = if f.ngrams.iter().any(|s| !s.idx.is_empty()) {
        f.buckets
    } else {
        0
    };
    let dim = d + h + 1;
    let cw = class_weights_of(y, weights);
    let total: f64 = y
        .iter()
        .zip(weights)
        .map(|(&l, &w)| cw[l as usize] * w)
        .sum();
    let objective = |theta: &[f64], grad: &mut [f64]| -> f64 {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let (we, rest) = theta.split_at(d);
        let (wn, b) = rest.split_at(h);
        let b = b[0];
        let mut loss = 0.0;
        let mut gb = 0.0;
        for (i, &label) in y.iter().enumerate() {
            let x = f.emb.row(i);
            let s = &f.ngrams[i];
            let mut z = b;
            for (xi, wi) in x.iter().zip(we) {
                z += f64::from(*xi) * wi;
            }
            if h > 0 {
                for (&j, &v) in s.idx.iter().zip(&s.val) {
                    z += f64::from(v) * wn[j as usize];
                }
            }
            let c = cw[label as usize] * weights[i] / total;
            let yl = f64::from(label);
            // -[y log σ(z) + (1-y) log(1-σ(z))] = softplus(z) - y z
            loss += c * (softplus(z) - yl * z);
            let g = c * (sigmoid64(z) - yl);
            for (gi, xi) in grad[..d].iter_mut().zip(x) {
                *gi += g * f64::from(*xi);
            }
            if h > 0 {
                let gn = &mut grad[d..d + h];
                for (&j, &v) in s.idx.iter().zip(&s.val) {
                    gn[j as usize] += g * f64::from(v);
                }
            }
            gb += g;
        }
        grad[d + h] = gb;
        let mut reg = 0.0;
        for (i, w) in theta[..d + h].iter().enumerate() {
            let l = if i < d {
                cfg.l2_embedding
            } else {
                cfg.l2_ngrams
            };
            reg += 0.5 * l * w * w;
            grad[i] += l * w;
        }
        loss + reg
    };
    let (theta, report) = lbfgs(objective, vec![0.0; dim], cfg.max_iter, cfg.tolerance);
    let lin = Linear {
        w_emb: theta[..d].iter().map(|&v| v as f32).collect(),
        w_ngram: theta[d..d + h].iter().map(|&v| v as f32).collect(),
        bias: theta[d + h] as f32,
    };
    (lin, report)
}

/// Limited-memory BFGS (two-loop recursion, memory 10) with a
/// backtracking Armijo line search. Deterministic.
pub fn lbfgs(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    mut x: Vec<f64>,
    max_iter: usize,
    tolerance: f64,
) -> (Vec<f64>, FitReport) {
    const M: usize = 10;
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho: Vec<f64> = Vec::new();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let max_abs = |a: &[f64]| a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut iterations = 0;
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    while iterations < max_iter && max_abs(&g) > tolerance {
        iterations += 1;
        // Direction d = -H g.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            alpha[i] = rho[i] * dot(&s_hist[i], &q);
            for (qj, yj) in q.iter_mut().zip(&y_hist[i]) {
                *qj -= alpha[i] * yj;
            }
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / dot(&g, &g).sqrt().max(1e-12)
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let beta = rho[i] * dot(&y_hist[i], &q);
            for (qj, sj) in q.iter_mut().zip(&s_hist[i]) {
                *qj += (alpha[i] - beta) * sj;
            }
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        let dir = if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            slope = -dot(&g, &g);
            g.iter().map(|v| -v).collect()
        } else {
            dir
        };
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            for ((xn, xi), di) in x_new.iter_mut().zip(&x).zip(&dir) {
                *xn = xi + step * di;
            }
            let f_new = f(&x_new, &mut g_new);
            if f_new <= fx + 1e-4 * step * slope {
                let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
                let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &yv);
                if sy > 1e-12 {
                    if s_hist.len() == M {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(yv);
                    rho.push(1.0 / sy);
                }
                std::mem::swap(&mut x, &mut x_new);
                std::mem::swap(&mut g, &mut g_new);
                let decrease = fx - f_new;
                fx = f_new;
                accepted = true;
                if decrease.abs() < 1e-12 * fx.abs().max(1.0) {
                    iterations = max_iter;
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    let report = FitReport {
        iterations: iterations.min(max_iter),
        objective: fx,
        gradient_norm: max_abs(&g),
    };
    (x, report)
}

/// Platt scaling `p = sigmoid(a·z + c)` of a logit `z`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f64,
    pub c: f64,
}

/// Fits Platt scaling on held-out logits, class-balanced (the calibrated
/// probability is for a 50/50 prior) with Platt's smoothed targets
/// `(n₊+1)/(n₊+2)` and `1/(n₋+2)`. Newton's method on two parameters.
pub fn fit_platt(z: &[f32], y: &[u8]) -> Platt {
    let n_pos = y.iter().filter(|&&l| l == 1).count() as f64;
    let n_neg = y.len() as f64 - n_pos;
    let t_pos = (n_pos + 1.0) / (n_pos + 2.0);
    let t_neg = 1.0 / (n_neg + 2.0);
    let cw = class_weights(y);
    let (mut a, mut c) = (1.0f64, 0.0f64);
    for _ in 0..100 {
        let (mut ga, mut gc, mut haa, mut hac, mut hcc) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (&zi, &l) in z.iter().zip(y) {
            let zi = f64::from(zi);
            let t = if l == 1 { t_pos } else { t_neg };
            let w = cw[l as usize];
            let p = sigmoid64(a * zi + c);
            let r = w * (p - t);
            let s = w * p * (1.0 - p);
            ga += r * zi;
            gc += r;
            haa += s * zi * zi;
            hac += s * zi;
            hcc += s;
        }
        let det = haa * hcc - hac * hac;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hcc * ga - hac * gc) / det;
        let dc = (haa * gc - hac * ga) / det;
        a -= da;
        c -= dc;
        if da.abs() < 1e-10 && dc.abs() < 1e-10 {
            break;
        }
    }
    Platt { a, c }
}

/// Quality of scores (probability of positive) against labels.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub n: usize,
    pub positives: usize,
    /// Mean of the true-positive and true-negative rates at p ≥ 0.5.
    pub balanced_accuracy: f64,
    pub accuracy: f64,
    pub auc: f64,
    /// Class-balanced log loss.
    pub log_loss: f64,
    /// Expected calibration error over 10 equal-width bins.
    pub ece: f64,
}

/// Binary metrics at the 0.5 threshold.
pub fn metrics(p: &[f32], y: &[u8]) -> Metrics {
    let n = y.len();
    let positives = y.iter().filter(|&&l| l == 1).count();
    let (mut tp, mut tn) = (0usize, 0usize);
    for (&pi, &l) in p.iter().zip(y) {
        match (pi >= 0.5, l == 1) {
            (true, true) => tp += 1,
            (false, false) => tn += 1,
            _ => {}
        }
    }
    let negatives = n - positives;
    let tpr = tp as f64 / positives.max(1) as f64;
    let tnr = tn as f64 / negatives.max(1) as f64;
    let cw = class_weights(y);
    let total: f64 = y.iter().map(|&l| cw[l as usize]).sum();
    let log_loss = p
        .iter()
        .zip(y)
        .map(|(&pi, &l)| {
            let pi = f64::from(pi).clamp(1e-7, 1.0 - 1e-7);
            let v = if l == 1 { -pi.ln() } else { -(1.0 - pi).ln() };
            cw[l as usize] * v
        })
        .sum::<f64>()
        / total.max(1e-12);
    Metrics {
        n,
        positives,
        balanced_accuracy: if positives == 0 || negatives == 0 {
            f64::NAN
        } else {
            (tpr + tnr) / 2.0
        },
        accuracy: (tp + tn) as f64 / n.max(1) as f64,
        auc: auc(p, y),
        log_loss,
        ece: ece(p, y, 10),
    }
}

/// Area under the ROC curve (ties count half).
pub fn auc(p: &[f32], y: &[u8]) -> f64 {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let n_pos = y.iter().filter(|&&l| l == 1).count() as f64;
    let n_neg = y.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    // Mann-Whitney U with mid-ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if y[k] == 1 {
                rank_sum += mid;
            }
        }
        i = j + 1;
    }
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// Expected calibration error, unweighted by class.
pub fn ece(p: &[f32], y: &[u8], bins: usize) -> f64 {
    let mut count = vec![0usize; bins];
    let mut conf = vec![0f64; bins];
    let mut hits = vec![0f64; bins];
    for (&pi, &l) in p.iter().zip(y) {
        let b = ((pi * bins as f32) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += f64::from(pi);
        hits[b] += f64::from(l);
    }
    let n = p.len().max(1) as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (count[b] as f64 / n) * ((conf[b] - hits[b]) / count[b] as f64).abs())
        .sum()
}

/// The NEUTRAL band: NEGATIVE when `p < negative_below`, POSITIVE when
/// `p > positive_above`, NEUTRAL otherwise; texts of at least
/// `long.min_chars` characters use the `long` band instead.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    pub negative_below: f32,
    pub positive_above: f32,
    /// The band of review-length texts. The head is surer of them (more
    /// words, one verdict), so the rule that sets the band gives them a
    /// narrower one; heads whose JSON lacks it have one band for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<LongBand>,
}

/// The NEUTRAL band of texts with at least `min_chars` characters.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LongBand {
    pub min_chars: usize,
    pub negative_below: f32,
    pub positive_above: f32,
}

/// A text's length as the band reads it: characters, white space not counted.
pub fn text_chars(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

/// Upper bounds (exclusive) of the length buckets that
/// [`length_balanced_weights`] balances within, in [`text_chars`]; the last
/// bucket is open.
pub const LENGTH_BUCKETS: &[usize] = &[10, 20, 40, 60, 100];

/// Row weights under which positives and negatives weigh alike within
/// every length bucket, each bucket keeping its share of the rows: a
/// bucket of `n` rows, `p` of them positive, gives its positives
/// `n / 2p` and its negatives `n / 2(n − p)`. A bucket with one class
/// only keeps weight 1 (there is nothing to balance it against).
pub fn length_balanced_weights<'a>(texts: impl Iterator<Item = &'a str>, y: &[u8]) -> Vec<f64> {
    let bucket: Vec<usize> = texts
        .map(|t| {
            let n = text_chars(t);
            LENGTH_BUCKETS.iter().take_while(|&&b| n >= b).count()
        })
        .collect();
    assert_eq!(bucket.len(), y.len());
    let mut count = vec![[0usize; 2]; LENGTH_BUCKETS.len() + 1];
    for (&b, &l) in bucket.iter().zip(y) {
        count[b][usize::from(l)] += 1;
    }
    bucket
        .iter()
        .zip(y)
        .map(|(&b, &l)| {
            let [neg, pos] = count[b];
            if neg == 0 || pos == 0 {
                return 1.0;
            }
            (neg + pos) as f64 / (2 * count[b][usize::from(l)]) as f64
        })
        .collect()
}

fn band_label(p: f32, negative_below: f32, positive_above: f32) -> &'static str {
    if p < negative_below {
        "NEGATIVE"
    } else if p > positive_above {
        "POSITIVE"
    } else {
        "NEUTRAL"
    }
}

impl Thresholds {
    /// One band for all lengths.
    pub fn single(negative_below: f32, positive_above: f32) -> Thresholds {
        Thresholds {
            negative_below,
            positive_above,
            long: None,
        }
    }

    /// e.g. `NEGATIVE < 0.35 ≤ NEUTRAL ≤ 0.65 < POSITIVE (≥ 100 chars: 0.50 / 0.50)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "NEGATIVE < {:.2} ≤ NEUTRAL ≤ {:.2} < POSITIVE",
            self.negative_below, self.positive_above
        );
        if let Some(l) = self.long {
            s += &format!(
                " (≥ {} chars: {:.2} / {:.2})",
                l.min_chars, l.negative_below, l.positive_above
            );
        }
        s
    }

    /// The label of a score that is not a text's (e.g. a persona's average):
    /// the band of short texts.
    pub fn label(&self, p: f32) -> &'static str {
        band_label(p, self.negative_below, self.positive_above)
    }

    /// The label of a text's score: the band of its length.
    pub fn label_text(&self, p: f32, text: &str) -> &'static str {
        self.label_chars(p, text_chars(text))
    }

    /// The label of a score of a text of `chars` characters ([`text_chars`]).
    pub fn label_chars(&self, p: f32, chars: usize) -> &'static str {
        match self.long {
            Some(l) if chars >= l.min_chars => band_label(p, l.negative_below, l.positive_above),
            _ => self.label(p),
        }
    }
}

/// How three labels do on binary data.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BandMetrics {
    /// Share of texts labelled NEUTRAL.
    pub neutral_share: f64,
    /// Of the texts labelled POSITIVE, the share that are positive
    /// (class-balanced: as if both classes were equally frequent).
    pub positive_precision: f64,
    pub negative_precision: f64,
    /// Balanced accuracy over the texts not labelled NEUTRAL.
    pub balanced_accuracy_outside_band: f64,
    /// Balanced accuracy of the labels themselves, NEUTRAL counted wrong
    /// (binary data has no neutral texts): what a reader of the labels sees.
    #[serde(default)]
    pub label_balanced_accuracy: f64,
}

/// `chars`: each text's length ([`text_chars`]), which picks its band.
pub fn band_metrics(p: &[f32], y: &[u8], chars: &[usize], t: &Thresholds) -> BandMetrics {
    debug_assert_eq!(p.len(), chars.len());
    let cw = class_weights(y);
    let (mut pos_ok, mut pos_bad, mut neg_ok, mut neg_bad) = (0.0, 0.0, 0.0, 0.0);
    let mut neutral = 0usize;
    let mut covered_p = Vec::new();
    let mut covered_y = Vec::new();
    for ((&pi, &l), &n) in p.iter().zip(y).zip(chars) {
        let w = cw[l as usize];
        match t.label_chars(pi, n) {
            "POSITIVE" => {
                if l == 1 {
                    pos_ok += w
                } else {
                    pos_bad += w
                }
            }
            "NEGATIVE" => {
                if l == 0 {
                    neg_ok += w
                } else {
                    neg_bad += w
                }
            }
            _ => {
                neutral += 1;
                continue;
            }
        }
        covered_p.push(pi);
        covered_y.push(l);
    }
    // per class: right / all of the class (NEUTRAL counts in the denominator)
    let total = |class: u8| y.iter().filter(|&&l| l == class).count() as f64 * cw[class as usize];
    let recall = |ok: f64, class: u8| ok / f64::max(total(class), 1e-12);
    let present = |class: u8| y.contains(&class);
    let label_balanced_accuracy = match (present(0), present(1)) {
        (true, true) => (recall(neg_ok, 0) + recall(pos_ok, 1)) / 2.0,
        (false, true) => recall(pos_ok, 1),
        (true, false) => recall(neg_ok, 0),
        (false, false) => f64::NAN,
    };
    BandMetrics {
        neutral_share: neutral as f64 / p.len().max(1) as f64,
        positive_precision: pos_ok / f64::max(pos_ok + pos_bad, 1e-12),
        negative_precision: neg_ok / f64::max(neg_ok + neg_bad, 1e-12),
        balanced_accuracy_outside_band: metrics(&covered_p, &covered_y).balanced_accuracy,
        label_balanced_accuracy,
    }
}

/// The fewest long validation texts for which the long band is chosen on
/// its own (the validation split has ≈ 570); with fewer, one band.
pub const MIN_LONG_TEXTS: usize = 200;

/// Chooses the NEUTRAL band on held-out calibrated scores: the narrowest
/// band symmetric around 0.5, `[0.5 − δ, 0.5 + δ]` with δ on a 0.01 grid,
/// outside which the class-balanced accuracy reaches `target`. Symmetric
/// because the score is a calibrated probability: both thresholds stand
/// for the same odds (e.g. 0.33 / 0.67 = 2:1 either way).
///
/// With `long_min_chars` > 0, texts of that length or more get a band of
/// their own: the narrowest at which they alone reach `target` (reviews
/// are read for their verdict, and the head reads them best: more words,
/// one opinion). Then the shorter texts' band is the narrowest at which
/// the whole set reaches `target`, as one band would have to. One band
/// when fewer than [`MIN_LONG_TEXTS`] texts are long.
///
/// (Choosing both widths together for the fewest NEUTRAL labels overall
/// does the opposite: the few long texts in the middle are the cheapest
/// to hide, so it widens their band; see docs/sentiment.md.)
pub fn choose_thresholds(
    p: &[f32],
    y: &[u8],
    chars: &[usize],
    long_min_chars: usize,
    target: f64,
) -> Thresholds {
    let is_long = |i: usize| chars[i] >= long_min_chars;
    let n_long = (0..p.len()).filter(|&i| is_long(i)).count();
    if long_min_chars == 0 || n_long < MIN_LONG_TEXTS || n_long == p.len() {
        let (lo, hi) = choose_band(p, y, target);
        return Thresholds::single(lo, hi);
    }
    let (pl, yl): (Vec<f32>, Vec<u8>) = (0..p.len())
        .filter(|&i| is_long(i))
        .map(|i| (p[i], y[i]))
        .unzip();
    let (long_lo, long_hi) = choose_band(&pl, &yl, target);
    let long = Some(LongBand {
        min_chars: long_min_chars,
        negative_below: long_lo,
        positive_above: long_hi,
    });
    for k in 0..=MAX_HALF_WIDTH {
        let (lo, hi) = half_width_band(k);
        let t = Thresholds {
            negative_below: lo,
            positive_above: hi,
            long,
        };
        if band_metrics(p, y, chars, &t).balanced_accuracy_outside_band >= target {
            return t;
        }
    }
    let (lo, hi) = half_width_band(MAX_HALF_WIDTH);
    Thresholds {
        negative_below: lo,
        positive_above: hi,
        long,
    }
}

/// The widest half-width tried, in hundredths (a band of 0.05 / 0.95).
const MAX_HALF_WIDTH: u16 = 45;

/// `0.5 ∓ k/100`. Hundredths, so that the stored thresholds are exactly
/// 0.33, not 0.32999998.
fn half_width_band(k: u16) -> (f32, f32) {
    (f32::from(50 - k) / 100.0, f32::from(50 + k) / 100.0)
}

/// The narrowest symmetric band of [`choose_thresholds`] on one set.
fn choose_band(p: &[f32], y: &[u8], target: f64) -> (f32, f32) {
    // one band: lengths do not matter
    let lengths = vec![0; p.len()];
    for k in 0..=MAX_HALF_WIDTH {
        let (lo, hi) = half_width_band(k);
        let b = band_metrics(p, y, &lengths, &Thresholds::single(lo, hi));
        if b.balanced_accuracy_outside_band >= target {
            return (lo, hi);
        }
    }
    half_width_band(MAX_HALF_WIDTH)
}

/// The deterministic validation split: a text is held out when
/// FNV-1a(text) mod 1000 < `per_mille` (the same text always lands on the
/// same side, whatever the order or the rest of the corpus).
pub fn is_validation(text: &str, per_mille: u64) -> bool {
    fnv1a64(&[text.as_bytes()]) % 1000 < per_mille
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable Gaussian-ish blobs built without a random generator.
    fn toy(n: usize) -> (Features, Vec<u8>) {
        let d = 4;
        let mut data = Vec::new();
        let mut y = Vec::new();
        let mut ngrams = Vec::new();
        for i in 0..n {
            let label = (i % 2) as u8;
            let s = if label == 1 { 1.0 } else { -1.0 };
            let jitter = ((i * 7919) % 100) as f32 / 100.0 - 0.5;
            data.extend_from_slice(&[s * 0.5 + jitter, jitter * 0.3, -s * 0.2, 0.1]);
            y.push(label);
            ngrams.push(Sparse {
                idx: vec![label as u32, 2 + (i % 3) as u32],
                val: vec![0.5, 0.5],
            });
        }
        (
            Features {
                emb: Matrix {
                    rows: n,
                    cols: d,
                    data,
                },
                ngrams,
                buckets: 8,
            },
            y,
        )
    }

    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let (x, r) = lbfgs(
            |x, g| {
                g[0] = 2.0 * (x[0] - 3.0);
                g[1] = 20.0 * (x[1] + 1.0);
                (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 1.0).powi(2)
            },
            vec![0.0, 0.0],
            100,
            1e-9,
        );
        assert!(
            (x[0] - 3.0).abs() < 1e-6 && (x[1] + 1.0).abs() < 1e-6,
            "{x:?} {r:?}"
        );
    }

    #[test]
    fn fit_separates_toy_data_deterministically() {
        let (f, y) = toy(200);
        let cfg = TrainConfig::default();
        let ones = vec![1.0; y.len()];
        let (a, ra) = fit(&f, &y, &ones, &cfg);
        let (b, _) = fit(&f, &y, &ones, &cfg);
        assert_eq!(a, b, "same data, same weights");
        assert_eq!(a.w_ngram.len(), 8);
        let p: Vec<f32> = a.logits(&f).into_iter().map(sigmoid).collect();
        let m = metrics(&p, &y);
        assert!(m.balanced_accuracy > 0.99, "{m:?} {ra:?}");
        assert!(m.auc > 0.99);
    }

    #[test]
    fn nb_ratios_sign_the_telling_buckets_and_fold_back() {
        let (f, y) = toy(200);
        let ones = vec![1.0; y.len()];
        let r = nb_ratios(&f.ngrams, &y, &ones, f.buckets, 1.0);
        // Bucket 1 is on in positive rows only, bucket 0 in negative
        // ones; buckets 2..5 are on in both classes alike.
        assert!(r[1] > 2.0 && r[0] < -2.0, "{r:?}");
        assert!(r[2..5].iter().all(|v| v.abs() < 0.2), "{r:?}");
        // Training on reweighted features and folding the ratios back
        // gives the same logits as applying the weights to them.
        let g = f.clone().reweighted(&r);
        let (lin, _) = fit(&g, &y, &ones, &TrainConfig::default());
        let folded = lin.clone().scale_ngrams(&r);
        for (a, b) in lin.logits(&g).iter().zip(folded.logits(&f)) {
            assert!((a - b).abs() < 1e-4, "{a} {b}");
        }
    }

    /// A row of weight k trains like k copies of it (what the neutral
    /// messages' `neutralRepeat` relies on), for the fit and the NB ratios.
    #[test]
    fn a_row_weight_counts_as_copies() {
        let (f, y) = toy(120);
        let mut weights = vec![1.0; y.len()];
        let (mut copies, mut y_copies) = (f.clone(), y.clone());
        for i in [3usize, 10, 57] {
            weights[i] = 4.0;
            let row = f.select(&[i]);
            for _ in 0..3 {
                copies.extend(&row);
                y_copies.push(y[i]);
            }
        }
        let cfg = TrainConfig::default();
        let (a, _) = fit(&f, &y, &weights, &cfg);
        let (b, _) = fit(&copies, &y_copies, &vec![1.0; y_copies.len()], &cfg);
        let close = |u: &[f32], v: &[f32]| u.iter().zip(v).all(|(p, q)| (p - q).abs() < 1e-4);
        assert!(close(&a.w_emb, &b.w_emb), "{a:?} {b:?}");
        assert!(close(&a.w_ngram, &b.w_ngram), "{a:?} {b:?}");
        assert!((a.bias - b.bias).abs() < 1e-4);
        // and they differ from the unweighted fit: the weights do something
        let (plain, _) = fit(&f, &y, &vec![1.0; y.len()], &cfg);
        assert!(!close(&a.w_emb, &plain.w_emb), "{a:?} {plain:?}");
        let ones = vec![1.0; y_copies.len()];
        let r_w = nb_ratios(&f.ngrams, &y, &weights, f.buckets, 1.0);
        let r_c = nb_ratios(&copies.ngrams, &y_copies, &ones, f.buckets, 1.0);
        assert!(close(&r_w, &r_c), "{r_w:?} {r_c:?}");
    }

    #[test]
    fn platt_recovers_a_known_scale() {
        // Labels drawn deterministically from sigmoid(2z - 0.5).
        let mut z = Vec::new();
        let mut y = Vec::new();
        for i in 0..4000 {
            let zi = (i as f32 / 4000.0) * 6.0 - 3.0;
            let p = sigmoid(2.0 * zi - 0.5);
            let u = ((i as u64 * 2_654_435_761) % 10_000) as f32 / 10_000.0;
            z.push(zi);
            y.push(u8::from(u < p));
        }
        let pl = fit_platt(&z, &y);
        // Balanced weights shift c by the log prior ratio; a stays near 2.
        assert!((pl.a - 2.0).abs() < 0.3, "{pl:?}");
        let lin = Linear {
            w_emb: vec![1.0],
            w_ngram: vec![],
            bias: 0.5,
        };
        let folded = lin.fold(&pl);
        let z0 = lin.logit(&[0.25], &Sparse::default());
        let expect = sigmoid((pl.a * f64::from(z0) + pl.c) as f32);
        let got = sigmoid(folded.logit(&[0.25], &Sparse::default()));
        assert!((expect - got).abs() < 1e-6);
    }

    #[test]
    fn length_balance_evens_the_classes_within_each_bucket() {
        // short: 1 positive, 3 negatives; long: 3 positives, 1 negative
        let texts = ["好", "差", "差", "差"]
            .into_iter()
            .map(str::to_owned)
            .chain([
                "好".repeat(120),
                "好".repeat(130),
                "好".repeat(140),
                "差".repeat(150),
            ])
            .collect::<Vec<_>>();
        let y = [1, 0, 0, 0, 1, 1, 1, 0];
        let w = length_balanced_weights(texts.iter().map(String::as_str), &y);
        let sum = |from: usize, to: usize, label: u8| -> f64 {
            (from..to).filter(|&i| y[i] == label).map(|i| w[i]).sum()
        };
        assert!((sum(0, 4, 1) - 2.0).abs() < 1e-12, "{w:?}");
        assert!((sum(0, 4, 0) - 2.0).abs() < 1e-12, "{w:?}");
        assert!((sum(4, 8, 1) - 2.0).abs() < 1e-12, "{w:?}");
        assert!((sum(4, 8, 0) - 2.0).abs() < 1e-12, "{w:?}");
        assert!(
            w[0] > w[1] && w[7] > w[4],
            "the rarer class weighs more: {w:?}"
        );
        let one = length_balanced_weights(["好", "好"].into_iter(), &[1, 1]);
        assert_eq!(one, vec![1.0, 1.0], "one class only: nothing to balance");
    }

    #[test]
    fn auc_and_balanced_accuracy() {
        let p = [0.1, 0.4, 0.35, 0.8];
        let y = [0, 0, 1, 1];
        assert!((auc(&p, &y) - 0.75).abs() < 1e-12);
        let m = metrics(&p, &y);
        assert!((m.balanced_accuracy - 0.75).abs() < 1e-12);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert!((auc(&[0.5, 0.5], &[0, 1]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn thresholds_and_band() {
        let p = [0.05, 0.1, 0.2, 0.45, 0.55, 0.6, 0.9, 0.95];
        let y = [0, 0, 0, 1, 0, 1, 1, 1];
        let chars = [10; 8];
        let t = choose_thresholds(&p, &y, &chars, 100, 0.99);
        assert_eq!(t.long, None, "no long texts: one band");
        assert!(t.negative_below <= 0.45 && t.negative_below > 0.2, "{t:?}");
        assert!(
            (t.negative_below + t.positive_above - 1.0).abs() < 1e-6,
            "{t:?}"
        );
        let b = band_metrics(&p, &y, &chars, &t);
        assert!((b.positive_precision - 1.0).abs() < 1e-12);
        assert!((b.negative_precision - 1.0).abs() < 1e-12);
        assert!(b.neutral_share > 0.0 && b.neutral_share < 0.5);
        assert_eq!(t.label(0.01), "NEGATIVE");
        assert_eq!(t.label(0.5), "NEUTRAL");
        assert_eq!(t.label(0.99), "POSITIVE");
    }

    /// Short texts whose scores near 0.5 are coin flips, long ones the
    /// head gets right at any score: the short band widens, the long one
    /// closes, and each text is labelled by the band of its length.
    #[test]
    fn long_texts_get_their_own_band() {
        let (mut p, mut y, mut chars) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..400u16 {
            let q = f32::from(i % 100) / 100.0 + 0.005;
            // short: wrong label in the middle fifth, right outside it
            let truth = if (0.4..0.6).contains(&q) {
                u8::from(i % 2 == 0)
            } else {
                u8::from(q > 0.5)
            };
            p.push(q);
            y.push(truth);
            chars.push(30);
            // long: always on the side of its score
            p.push(q);
            y.push(u8::from(q > 0.5));
            chars.push(150);
        }
        let t = choose_thresholds(&p, &y, &chars, 100, 0.99);
        let long = t.long.expect("400 long texts: a band of their own");
        assert_eq!(
            (long.min_chars, long.negative_below, long.positive_above),
            (100, 0.5, 0.5)
        );
        assert!(t.negative_below <= 0.4 && t.positive_above >= 0.6, "{t:?}");
        let short_text = "物流很快。";
        let long_text = "房间".repeat(60);
        assert_eq!(t.label_text(0.45, short_text), "NEUTRAL");
        assert_eq!(t.label_text(0.45, &long_text), "NEGATIVE");
        assert_eq!(t.label_text(0.55, &long_text), "POSITIVE");
        // white space does not make a text long
        assert_eq!(
            t.label_text(0.45, &format!("{short_text}{}", " ".repeat(200))),
            "NEUTRAL"
        );
        // a score that is no text's uses the short band
        assert_eq!(t.label(0.45), "NEUTRAL");
        let b = band_metrics(&p, &y, &chars, &t);
        assert!(b.balanced_accuracy_outside_band >= 0.99, "{b:?}");
        assert!((0.05..0.5).contains(&b.neutral_share), "{b:?}");
        // one band (long_min_chars 0) must cover the short texts' noise for all
        let one = choose_thresholds(&p, &y, &chars, 0, 0.99);
        assert_eq!(one.long, None);
        assert!(band_metrics(&p, &y, &chars, &one).neutral_share > b.neutral_share);
        // a head's JSON from before the long band reads as one band
        let old: Thresholds =
            serde_json::from_str(r#"{"negativeBelow":0.35,"positiveAbove":0.65}"#).unwrap();
        assert_eq!(old, Thresholds::single(0.35, 0.65));
        let back: Thresholds = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn split_is_stable() {
        assert_eq!(is_validation("很好", 150), is_validation("很好", 150));
        let held = (0..10_000)
            .filter(|i| is_validation(&format!("t{i}"), 150))
            .count();
        assert!((1300..1700).contains(&held), "{held}");
    }
}
