//! Chinese text preprocessing with jieba: segmentation, stop words, keywords.
use std::sync::OnceLock;

use jieba_rs::{Jieba, KeywordExtract, KeywordExtractConfig, TfIdf};

/// Marketing words jieba's dictionary splits badly (双十一 → 双十 + 一).
const USER_WORDS: &[&str] = &[
    "双十一",
    "双11",
    "618",
    "种草",
    "拔草",
    "回购",
    "面霜",
    "精华",
    "防晒",
    "口红",
    "面膜",
    "眼霜",
    "爽肤水",
    "粉底液",
    "纸尿裤",
    "奶粉",
    "推车",
    "外卖",
    "奶茶",
    "火锅",
    "半马",
    "瑜伽垫",
    "降噪耳机",
    "新能源车",
    "扫地机器人",
    "猫粮",
    "猫砂",
    "开黑",
    "抽卡",
    "基金定投",
    "体验装",
    "旗舰店",
    "会员日",
    "客服",
    "售后",
    "退货",
    "物流",
    "包邮",
];

/// Words that say nothing about interests.
const STOP_WORDS: &[&str] = &[
    "一个", "没有", "什么", "这个", "那个", "我们", "你们", "他们", "自己", "就是", "还是", "真的",
    "感觉", "觉得", "已经", "今天", "昨天", "一下", "一直", "非常", "特别", "比较", "还有", "然后",
    "但是", "因为", "所以", "如果", "可以", "不会", "这么", "那么", "怎么", "时候", "东西", "知道",
    "现在", "以后", "之后", "之前", "次", "太", "了", "的", "啊", "吧",
];

struct Engine {
    jieba: Jieba,
    tfidf: TfIdf,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut jieba = Jieba::new();
        for w in USER_WORDS {
            jieba.add_word(w, Some(50_000), Some("n"));
        }
        let mut tfidf = TfIdf::default();
        let mut config = KeywordExtractConfig::builder();
        for w in STOP_WORDS {
            config = config.add_stop_word(*w);
        }
        *tfidf.config_mut() = config.build();
        Engine { jieba, tfidf }
    })
}

/// Segments text into words (accurate mode, HMM for unknown words).
pub fn segment(text: &str) -> Vec<String> {
    engine()
        .jieba
        .cut(text, true)
        .into_iter()
        .map(|t| t.word.to_owned())
        .collect()
}

/// Segments text in jieba's search mode: long words and the words inside them.
pub fn segment_for_search(text: &str) -> Vec<String> {
    engine()
        .jieba
        .cut_for_search(text, true)
        .into_iter()
        .map(|t| t.word.to_owned())
        .collect()
}

/// Function words that never narrow a keyword search.
const PARTICLES: &[&str] = &[
    "的", "了", "是", "在", "我", "你", "他", "她", "它", "很", "都", "也", "和", "就", "吗", "呢",
    "啊", "吧", "呀", "哦", "嗯", "着", "过", "被", "把", "与", "及", "或", "而", "之", "这", "那",
    "有", "和", "a", "an", "the", "of", "and", "or", "to", "in", "is",
];

/// Whether a segmented word is worth matching in a keyword search: not
/// whitespace, punctuation or a particle.
pub fn is_search_term(word: &str) -> bool {
    word.chars().any(char::is_alphanumeric) && !PARTICLES.contains(&word)
}

/// The `top_k` TF-IDF keywords (nouns, verbs, adjectives and English words).
pub fn keywords(text: &str, top_k: usize) -> Vec<String> {
    let e = engine();
    let pos = [
        "n", "nr", "ns", "nt", "nz", "vn", "v", "a", "an", "eng", "l", "i",
    ]
    .map(str::to_owned)
    .to_vec();
    e.tfidf
        .extract_keywords(&e.jieba, text, top_k, pos)
        .into_iter()
        .map(|k| k.keyword)
        .filter(|k| k.chars().count() >= 2 && !k.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marketing_words_stay_whole() {
        let words = segment("双十一面霜买一送一");
        assert!(words.contains(&"双十一".to_owned()), "{words:?}");
        assert!(words.contains(&"面霜".to_owned()), "{words:?}");
    }

    #[test]
    fn keywords_skip_stop_words() {
        let k = keywords("这款面霜真的非常滋润，秋冬用面霜刚刚好，皮肤不干了", 5);
        assert!(k.contains(&"面霜".to_owned()), "{k:?}");
        assert!(!k.iter().any(|w| w == "真的" || w == "非常"), "{k:?}");
    }
}
