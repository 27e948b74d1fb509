//! Texts longer than the encoder's window (512 tokens for e5) are embedded
//! as overlapping windows, each with the `<s>` + prefix + … + `</s>` frame
//! the model was trained on, and the windows' vectors are averaged
//! (weighted by their token counts), instead of cutting the text at 512
//! tokens and ignoring its end.

/// Body tokens shared by consecutive windows, so a sentence cut at a window
/// edge is seen whole by one of them.
pub const OVERLAP: usize = 64;

/// At most this many windows per text (≈ 28,000 tokens with e5): the rest
/// of a longer text is ignored rather than letting one pasted book stall a
/// batch.
pub const MAX_WINDOWS: usize = 64;

/// Splits an encoded text `ids` = `<s>, prefix…, body…, </s>` into
/// sequences of at most `max` tokens. A text that fits comes back whole; a
/// longer one as windows that each repeat `<s>`, `prefix` (when `ids`
/// starts with it) and `</s>` around consecutive, overlapping slices of the
/// body.
pub fn split(ids: &[u32], prefix: &[u32], max: usize) -> Vec<Vec<u32>> {
    if ids.len() <= max || ids.len() < 2 {
        return vec![ids.to_vec()];
    }
    let prefix_len = if ids[1..ids.len() - 1].starts_with(prefix) {
        prefix.len()
    } else {
        0
    };
    let (bos, rest) = ids.split_at(1);
    let (prefix, rest) = rest.split_at(prefix_len);
    let (body, eos) = rest.split_at(rest.len() - 1);
    let width = max.saturating_sub(prefix_len + 2).max(1);
    let stride = width.saturating_sub(OVERLAP).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while out.len() < MAX_WINDOWS {
        let end = (start + width).min(body.len());
        let mut w = Vec::with_capacity(end - start + prefix_len + 2);
        w.extend_from_slice(bos);
        w.extend_from_slice(prefix);
        w.extend_from_slice(&body[start..end]);
        w.extend_from_slice(eos);
        out.push(w);
        if end == body.len() {
            break;
        }
        start += stride;
    }
    out
}

/// The L2-normalised mean of `vectors` weighted by `weights` (the windows'
/// token counts).
pub fn combine(vectors: &[Vec<f32>], weights: &[usize]) -> Vec<f32> {
    let dims = vectors.first().map_or(0, Vec::len);
    let mut sum = vec![0f32; dims];
    for (v, &w) in vectors.iter().zip(weights) {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x * w as f32;
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|x| *x /= norm);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: usize) -> Vec<u32> {
        // <s>=0, prefix 7 8, body 100.., </s>=2
        let mut v = vec![0, 7, 8];
        v.extend((0..body as u32).map(|i| 100 + i));
        v.push(2);
        v
    }

    #[test]
    fn short_texts_stay_whole() {
        let ids = text(10);
        assert_eq!(split(&ids, &[7, 8], 512), vec![ids.clone()]);
        let exact = text(508);
        assert_eq!(exact.len(), 512);
        assert_eq!(split(&exact, &[7, 8], 512).len(), 1);
    }

    #[test]
    fn long_texts_become_framed_overlapping_windows_covering_the_body() {
        let ids = text(1200);
        let ws = split(&ids, &[7, 8], 512);
        assert_eq!(
            ws.len(),
            3,
            "508-token bodies with stride 444 cover 1200 tokens in 3"
        );
        let mut seen = std::collections::BTreeSet::new();
        for w in &ws {
            assert!(w.len() <= 512);
            assert_eq!(
                &w[..3],
                &[0, 7, 8],
                "each window starts with <s> and the prefix"
            );
            assert_eq!(*w.last().unwrap(), 2, "each window ends with </s>");
            seen.extend(w[3..w.len() - 1].iter().copied());
        }
        assert_eq!(seen.len(), 1200, "every body token is in some window");
        // consecutive windows share OVERLAP body tokens
        let first_tail = &ws[0][ws[0].len() - 1 - OVERLAP..ws[0].len() - 1];
        assert_eq!(first_tail, &ws[1][3..3 + OVERLAP]);
    }

    #[test]
    fn a_text_without_the_prefix_gets_none_repeated() {
        let mut ids = text(1200);
        ids[1] = 9; // not the prefix 7 8
        for w in split(&ids, &[7, 8], 512) {
            assert_eq!(w[0], 0);
            assert_ne!(&w[1..3], &[7, 8]);
        }
    }

    #[test]
    fn window_count_is_capped() {
        let ids = text(100_000);
        let ws = split(&ids, &[7, 8], 512);
        assert_eq!(ws.len(), MAX_WINDOWS);
    }

    #[test]
    fn combine_weights_by_length_and_normalises() {
        let v = combine(&[vec![1.0, 0.0], vec![0.0, 1.0]], &[300, 100]);
        assert!(
            (v[0] - 0.9487).abs() < 1e-3 && (v[1] - 0.3162).abs() < 1e-3,
            "{v:?}"
        );
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
}
