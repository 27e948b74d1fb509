//! `lingxi-search-bench`: segment-search benchmark over generated personas.
//!
//! ```text
//! lingxi-search-bench [--members N] [--vector-share F] [--rounds R]
//!                     [--backend embedded|meili|both] [--dir DIR] [--only 2,10]
//! ```
//!
//! Generates N deterministic personas of a Chinese brand (seeded xorshift),
//! feeds them to the backend's `rebuild` in batches of 10,000 (never holding
//! all of them), then runs a fixed mix of ten segment queries R times after
//! one warm-up. Prints build and generation time, peak RSS, index size and
//! per-query latencies, ending with a markdown table for docs/benchmarks.md.
//!
//! `--backend embedded` (default) writes the tantivy index under
//! `DIR/embedded-index` (default DIR `./target/search-bench`), deleted at
//! start and kept afterwards for inspection. `--backend meili` needs
//! `LINGXI_MEILI_URL` (and `LINGXI_MEILI_KEY` when the server has one); it
//! uses a unique index prefix and drops the index at the end. `--backend
//! both` runs embedded, then Meilisearch when `LINGXI_MEILI_URL` is set.
//!
//! `make bench-search ARGS="--members 1000000"`; see docs/benchmarks.md.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use uuid::Uuid;
use worker::search::{
    CmpOp, Filter, PersonaDoc, Scalar, Search, SearchRequest, Similar,
    embedded::EmbeddedSearch,
    fields::{self, Field},
    meili::MeiliSearch,
    query::{document_terms, query_terms},
};

const USAGE: &str = "usage: lingxi-search-bench [--members N] [--vector-share F] [--rounds R] [--backend embedded|meili|both] [--dir DIR] [--only 2,10]";

/// Embedding dimension (the persona model's).
const DIM: usize = 384;
/// Documents generated and handed to the backend at a time.
const BATCH: usize = 10_000;
/// Embedding clusters.
const CENTRES: usize = 20;
const DAY: i64 = 86_400;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

// ---- arguments -------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Embedded,
    Meili,
    Both,
}

struct Args {
    members: usize,
    vector_share: f64,
    rounds: usize,
    backend: Which,
    dir: PathBuf,
    /// Query numbers (1-10) to run; empty: all ten. For profiling one query.
    only: Vec<usize>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        members: 1_000_000,
        vector_share: 0.2,
        rounds: 20,
        backend: Which::Embedded,
        dir: PathBuf::from("./target/search-bench"),
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--members" => {
                a.members = value("--members")?
                    .replace(['_', ','], "")
                    .parse()
                    .map_err(|e| format!("--members: {e}"))?;
            }
            "--vector-share" => {
                a.vector_share = value("--vector-share")?
                    .parse()
                    .map_err(|e| format!("--vector-share: {e}"))?;
                if !(0.0..=1.0).contains(&a.vector_share) {
                    return Err("--vector-share must be within 0..1".into());
                }
            }
            "--rounds" => {
                a.rounds = value("--rounds")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
                if a.rounds == 0 {
                    return Err("--rounds must be at least 1".into());
                }
            }
            "--backend" => {
                a.backend = match value("--backend")?.as_str() {
                    "embedded" => Which::Embedded,
                    "meili" | "meilisearch" => Which::Meili,
                    "both" => Which::Both,
                    other => return Err(format!("unknown backend {other:?}\n{USAGE}")),
                };
            }
            "--dir" => a.dir = value("--dir")?.into(),
            "--only" => {
                a.only = value("--only")?
                    .split(',')
                    .map(|n| match n.trim().parse() {
                        Ok(n @ 1..=10) => Ok(n),
                        _ => Err(format!("--only takes query numbers 1 to 10, not {n:?}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

// ---- generated personas ----------------------------------------------------

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// An index into `cumulative` weights (running sums).
    fn weighted(&mut self, cumulative: &[u32]) -> usize {
        let total = cumulative.last().copied().unwrap_or(1);
        let x = self.below(u64::from(total)) as u32;
        cumulative.partition_point(|&c| c <= x)
    }
    /// An index below `n`, favouring small ones (popular words first).
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * n as f64) as usize).min(n - 1)
    }
}

fn cumulative(weights: impl IntoIterator<Item = u32>) -> Vec<u32> {
    weights
        .into_iter()
        .scan(0, |sum, w| {
            *sum += w;
            Some(*sum)
        })
        .collect()
}

/// (city, province, weight): big cities dominate a consumer brand's members.
const CITIES: &[(&str, &str, u32)] = &[
    ("上海", "上海", 120),
    ("北京", "北京", 100),
    ("广州", "广东", 80),
    ("深圳", "广东", 80),
    ("杭州", "浙江", 60),
    ("成都", "四川", 55),
    ("重庆", "重庆", 45),
    ("武汉", "湖北", 42),
    ("南京", "江苏", 40),
    ("西安", "陕西", 35),
    ("苏州", "江苏", 34),
    ("天津", "天津", 30),
    ("长沙", "湖南", 28),
    ("郑州", "河南", 26),
    ("东莞", "广东", 22),
    ("青岛", "山东", 20),
    ("沈阳", "辽宁", 18),
    ("宁波", "浙江", 18),
    ("昆明", "云南", 16),
    ("合肥", "安徽", 16),
    ("佛山", "广东", 15),
    ("厦门", "福建", 14),
    ("福州", "福建", 12),
    ("济南", "山东", 12),
    ("大连", "辽宁", 10),
    ("哈尔滨", "黑龙江", 9),
    ("南宁", "广西", 8),
    ("贵阳", "贵州", 7),
    ("石家庄", "河北", 7),
    ("乌鲁木齐", "新疆", 4),
];

/// The 14 default interest categories (worker::taxonomy), with how common
/// each is among members and the marketing words members use about it.
const CATEGORIES: &[(&str, u32, &[&str])] = &[
    (
        "母婴",
        9,
        &[
            "奶粉",
            "纸尿裤",
            "推车",
            "辅食",
            "湿巾",
            "奶瓶",
            "安全座椅",
            "早教",
            "玩具",
            "孕妇装",
            "吸奶器",
            "绘本",
            "婴儿床",
            "儿童餐椅",
        ],
    ),
    (
        "美妆护肤",
        18,
        &[
            "面霜",
            "精华",
            "口红",
            "防晒",
            "喷雾",
            "面膜",
            "眼霜",
            "爽肤水",
            "粉底液",
            "卸妆油",
            "洗面奶",
            "乳液",
            "眼影",
            "香水",
            "美白",
            "补水",
        ],
    ),
    (
        "美食",
        12,
        &[
            "火锅",
            "奶茶",
            "外卖",
            "咖啡",
            "烧烤",
            "零食",
            "甜品",
            "小龙虾",
            "螺蛳粉",
            "蛋糕",
            "坚果",
            "牛排",
            "寿司",
            "月饼",
        ],
    ),
    (
        "旅游",
        8,
        &[
            "机票",
            "酒店",
            "民宿",
            "三亚",
            "签证",
            "自驾",
            "露营",
            "攻略",
            "景区",
            "海岛",
            "邮轮",
            "高铁",
            "行李箱",
            "旅拍",
        ],
    ),
    (
        "数码",
        8,
        &[
            "手机",
            "耳机",
            "降噪耳机",
            "平板",
            "笔记本",
            "充电宝",
            "相机",
            "智能手表",
            "键盘",
            "显示器",
            "路由器",
            "投影仪",
            "无人机",
            "音箱",
        ],
    ),
    (
        "运动健身",
        6,
        &[
            "跑鞋",
            "瑜伽垫",
            "健身房",
            "半马",
            "马拉松",
            "哑铃",
            "蛋白粉",
            "骑行",
            "游泳",
            "羽毛球",
            "篮球",
            "登山",
            "跳绳",
            "运动手环",
        ],
    ),
    (
        "理财",
        5,
        &[
            "基金",
            "基金定投",
            "股票",
            "保险",
            "存款",
            "黄金",
            "信用卡",
            "理财产品",
            "债券",
            "养老金",
            "房贷",
            "收益",
            "分红",
            "国债",
        ],
    ),
    (
        "教育",
        3,
        &[
            "考研",
            "雅思",
            "网课",
            "英语",
            "编程",
            "考证",
            "公务员",
            "留学",
            "钢琴",
            "书法",
            "数学",
            "作文",
            "题库",
            "夏令营",
        ],
    ),
    (
        "家居",
        6,
        &[
            "沙发",
            "床垫",
            "扫地机器人",
            "空气净化器",
            "收纳",
            "四件套",
            "窗帘",
            "台灯",
            "装修",
            "厨具",
            "洗碗机",
            "香薰",
            "地毯",
            "衣柜",
        ],
    ),
    (
        "汽车",
        2,
        &[
            "新能源车",
            "电动车",
            "充电桩",
            "车险",
            "保养",
            "轮胎",
            "试驾",
            "车载",
            "行车记录仪",
            "洗车",
            "油耗",
            "二手车",
            "车贷",
            "自驾游",
        ],
    ),
    (
        "服饰",
        10,
        &[
            "连衣裙",
            "羽绒服",
            "卫衣",
            "牛仔裤",
            "运动鞋",
            "高跟鞋",
            "风衣",
            "衬衫",
            "包包",
            "帽子",
            "围巾",
            "汉服",
            "西装",
            "丝巾",
        ],
    ),
    (
        "宠物",
        4,
        &[
            "猫粮",
            "猫砂",
            "狗粮",
            "宠物医院",
            "驱虫",
            "猫爬架",
            "罐头",
            "冻干",
            "狗绳",
            "宠物玩具",
            "疫苗",
            "铲屎官",
            "猫咪",
            "狗狗",
        ],
    ),
    (
        "健康",
        7,
        &[
            "维生素",
            "体检",
            "益生菌",
            "睡眠",
            "减肥",
            "中医",
            "养生",
            "护眼",
            "鱼油",
            "钙片",
            "口罩",
            "血压",
            "代餐",
            "枸杞",
        ],
    ),
    (
        "游戏",
        3,
        &[
            "开黑",
            "抽卡",
            "手游",
            "主机",
            "皮肤",
            "电竞",
            "王者荣耀",
            "原神",
            "游戏本",
            "手柄",
            "副本",
            "直播",
            "显卡",
            "皮肤包",
        ],
    ),
];

/// Shopping words that belong to no category.
const GENERAL: &[&str] = &[
    "双十一",
    "618",
    "优惠券",
    "包邮",
    "会员日",
    "体验装",
    "旗舰店",
    "直播间",
    "秒杀",
    "满减",
    "赠品",
    "退货",
    "售后",
    "客服",
];

/// One short message per persona; `{a}` is one of its keywords, `{b}` a pool word.
const TEMPLATES: &[&str] = &[
    "最近在用{a}，感觉还不错",
    "{a}和{b}哪个更值得买？",
    "双十一囤了{a}，{b}也加购了",
    "求推荐性价比高的{a}",
    "朋友种草了{a}，准备入手",
    "{a}用完了，打算回购",
    "有没有{a}的优惠券？",
    "{a}到货了，物流很快",
    "在直播间买了{a}和{b}",
    "{a}效果一般，想换成{b}",
    "会员日{a}有满减吗",
    "想给家里添置{a}",
];

/// (tag, base probability); some tags also depend on age, gender and interests.
const TAGS: &[(&str, f64)] = &[
    ("VIP", 0.06),
    ("新客", 0.22),
    ("复购", 0.15),
    ("学生", 0.02),
    ("宝妈", 0.0),
    ("白领", 0.0),
    ("高净值", 0.03),
    ("沉睡", 0.10),
    ("价格敏感", 0.20),
    ("种草达人", 0.05),
];

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Random unit vectors: the embedding clusters (and the similarity probes).
fn centres() -> Vec<Vec<f32>> {
    let mut r = Rng(SEED ^ 0x5151);
    (0..CENTRES)
        .map(|_| {
            let mut v: Vec<f32> = (0..DIM).map(|_| r.unit() as f32 - 0.5).collect();
            normalize(&mut v);
            v
        })
        .collect()
}

struct Generator {
    rng: Rng,
    now: i64,
    vector_share: f64,
    centres: Vec<Vec<f32>>,
    city_cum: Vec<u32>,
    category_cum: Vec<u32>,
    pool: Vec<&'static str>,
    next: usize,
    /// Time spent in `document_terms` (jieba), part of generation.
    jieba: Duration,
}

impl Generator {
    fn new(now: i64, vector_share: f64, centres: Vec<Vec<f32>>) -> Self {
        Self {
            rng: Rng(SEED),
            now,
            vector_share,
            centres,
            city_cum: cumulative(CITIES.iter().map(|c| c.2)),
            category_cum: cumulative(CATEGORIES.iter().map(|c| c.1)),
            pool: CATEGORIES
                .iter()
                .flat_map(|c| c.2.iter().copied())
                .chain(GENERAL.iter().copied())
                .collect(),
            next: 0,
            jieba: Duration::ZERO,
        }
    }

    fn batch(&mut self, n: usize) -> Vec<PersonaDoc> {
        (0..n).map(|_| self.persona()).collect()
    }

    fn persona(&mut self) -> PersonaDoc {
        let i = self.next;
        self.next += 1;
        let r = &mut self.rng;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&r.next().to_le_bytes());
        id[8..].copy_from_slice(&r.next().to_le_bytes());
        let id = uuid::Builder::from_random_bytes(id).into_uuid();

        let (city, province) = if r.chance(0.04) {
            (None, None)
        } else {
            let c = CITIES[r.weighted(&self.city_cum)];
            (Some(c.0.to_owned()), Some(c.1.to_owned()))
        };
        let g = r.unit();
        let gender = if g < 0.56 {
            "female"
        } else if g < 0.96 {
            "male"
        } else {
            "unknown"
        };
        // Mostly 20-40, a tail to 60; 12% never said.
        let age = (!r.chance(0.12)).then(|| {
            let u = (r.unit() + r.unit()) / 2.0;
            18 + (u.powf(1.5) * 45.0) as i64
        });

        let n_interests = match r.below(20) {
            0..=7 => 1,
            8..=14 => 2,
            _ => 3,
        };
        let mut cats: Vec<usize> = Vec::with_capacity(3);
        while cats.len() < n_interests {
            let c = r.weighted(&self.category_cum);
            if !cats.contains(&c) {
                cats.push(c);
            }
        }
        let interests: Vec<String> = cats.iter().map(|&c| CATEGORIES[c].0.to_owned()).collect();

        let n_keywords = 3 + r.below(4) as usize;
        let mut keywords: Vec<&'static str> = Vec::with_capacity(n_keywords);
        let mut tries = 0;
        while keywords.len() < n_keywords && tries < 50 {
            tries += 1;
            let w = if r.chance(0.75) {
                let words = CATEGORIES[cats[r.below(cats.len() as u64) as usize]].2;
                words[r.skewed(words.len())]
            } else {
                self.pool[r.below(self.pool.len() as u64) as usize]
            };
            if !keywords.contains(&w) {
                keywords.push(w);
            }
        }
        let a = keywords[r.below(keywords.len() as u64) as usize];
        let b = self.pool[r.below(self.pool.len() as u64) as usize];
        let sentence = TEMPLATES[r.below(TEMPLATES.len() as u64) as usize]
            .replace("{a}", a)
            .replace("{b}", b);

        let young = age.is_some_and(|a| a <= 23);
        let working = age.is_some_and(|a| (23..=45).contains(&a));
        let mut tags = Vec::new();
        for &(tag, base) in TAGS {
            let p = match tag {
                "学生" if young => 0.5,
                "宝妈" if gender == "female" && cats.contains(&0) => 0.6,
                "宝妈" if gender == "female" => 0.05,
                "白领" if working => 0.35,
                _ => base,
            };
            if r.chance(p) {
                tags.push(tag.to_owned());
            }
        }

        let sentiment = (!r.chance(0.15))
            .then(|| (0.15 + 0.8 * (r.unit() + r.unit() + r.unit()) / 3.0 * 1.1).min(1.0))
            .map(|s| (s * 1000.0).round() / 1000.0);
        let activity = {
            let u = r.unit();
            (u * u * 1000.0).round() / 1000.0
        };
        // Heavy-tailed two-hop reach (0..199), degree and influence follow it.
        let reach = ((r.unit() * 5.3).exp() - 1.0) as i64;
        let degree = (reach as f64).sqrt() as i64 + r.below(3) as i64;
        let influence =
            ((reach as f64 / 200.0 * 0.7 + r.unit() * 0.3) * 10_000.0).round() / 10_000.0;
        let subscribed = !r.chance(0.18);
        let consent = !r.chance(0.30);
        let subscribed_at = subscribed.then(|| self.now - r.below(3 * 365 * DAY as u64) as i64);
        // Recent activity is more common: u² spreads the 90 days.
        let last_active_at = (!r.chance(0.08)).then(|| {
            let u = r.unit();
            self.now - (u * u * 90.0 * DAY as f64) as i64
        });

        let embedding = r.chance(self.vector_share).then(|| {
            let c = &self.centres[r.below(CENTRES as u64) as usize];
            // Noise of length t (cosine to the centre ≈ 1/√(1+t²)): 0.96 to 0.62.
            let t = 0.3 + r.unit() * 0.95;
            let a = t / (DIM as f64 / 3.0).sqrt();
            let mut v: Vec<f32> = c
                .iter()
                .map(|x| x + ((r.unit() * 2.0 - 1.0) * a) as f32)
                .collect();
            normalize(&mut v);
            v
        });

        let started = Instant::now();
        let terms = document_terms(
            interests
                .iter()
                .map(String::as_str)
                .chain(keywords.iter().copied())
                .chain([sentence.as_str()]),
        );
        self.jieba += started.elapsed();

        PersonaDoc {
            id: id.to_string(),
            openid: format!("oLxBench{i:010}"),
            city,
            province,
            gender: gender.to_owned(),
            age,
            tags,
            interests,
            keywords: keywords.into_iter().map(str::to_owned).collect(),
            sentiment,
            sentiment_label: sentiment.map(|s| worker::analysis::label(s as f32).to_owned()),
            activity,
            reach,
            degree,
            influence,
            subscribed,
            consent,
            last_active_at,
            subscribed_at,
            terms,
            embedding,
        }
    }
}

// ---- the query mix ---------------------------------------------------------

fn field(name: &str) -> &'static Field {
    fields::field(name).unwrap_or_else(|| panic!("{name} is not a catalogue field"))
}

fn cmp(name: &str, op: CmpOp, value: Scalar) -> Filter {
    Filter::Compare {
        field: field(name),
        op,
        value,
    }
}

fn s(x: &str) -> Scalar {
    Scalar::Str(x.to_owned())
}

fn facets(names: &[&str]) -> Vec<&'static Field> {
    names.iter().map(|n| field(n)).collect()
}

fn queries(now: i64, centres: &[Vec<f32>]) -> Vec<(&'static str, SearchRequest)> {
    let req = |filter: Filter, f: &[&str]| SearchRequest {
        filter,
        similar: None,
        offset: 0,
        limit: 20,
        facets: facets(f),
    };
    let similar = |filter: Filter, centre: usize, min_score: f32, f: &[&str]| SearchRequest {
        similar: Some(Similar {
            vector: centres[centre].clone(),
            min_score,
        }),
        ..req(filter, f)
    };
    vec![
        (
            "Q1 city = 上海",
            req(cmp("city", CmpOp::Eq, s("上海")), &["gender", "interests"]),
        ),
        (
            "Q2 city IN [北京,广州,深圳] AND age 25–35",
            req(
                Filter::And(vec![
                    Filter::In {
                        field: field("city"),
                        values: vec![s("北京"), s("广州"), s("深圳")],
                    },
                    cmp("age", CmpOp::Gte, Scalar::Num(25.0)),
                    cmp("age", CmpOp::Lte, Scalar::Num(35.0)),
                ]),
                &["city", "gender"],
            ),
        ),
        (
            "Q3 interests ∋ 美妆护肤 AND sentiment > 0.6",
            req(
                Filter::And(vec![
                    Filter::In {
                        field: field("interests"),
                        values: vec![s("美妆护肤")],
                    },
                    cmp("sentiment", CmpOp::Gt, Scalar::Num(0.6)),
                ]),
                &["city"],
            ),
        ),
        (
            "Q4 keyword 面霜",
            req(Filter::Terms(query_terms("面霜")), &["city", "gender"]),
        ),
        (
            "Q5 keyword \"防晒 喷雾\" AND gender = female",
            req(
                Filter::And(vec![
                    Filter::Terms(query_terms("防晒 喷雾")),
                    cmp("gender", CmpOp::Eq, s("female")),
                ]),
                &["city"],
            ),
        ),
        (
            "Q6 NOT subscribed AND lastActiveAt ≥ now−7d",
            req(
                Filter::And(vec![
                    Filter::Not(Box::new(cmp("subscribed", CmpOp::Eq, Scalar::Bool(true)))),
                    cmp(
                        "lastActiveAt",
                        CmpOp::Gte,
                        Scalar::Num((now - 7 * DAY) as f64),
                    ),
                ]),
                &["city"],
            ),
        ),
        (
            "Q7 tags IN [vip,复购] OR reach > 40",
            req(
                Filter::Or(vec![
                    Filter::In {
                        field: field("tags"),
                        values: vec![s("vip"), s("复购")],
                    },
                    cmp("reach", CmpOp::Gt, Scalar::Num(40.0)),
                ]),
                &["city", "tags", "interests"],
            ),
        ),
        (
            "Q8 all members, 4 facets",
            req(Filter::All, &["city", "gender", "interests", "tags"]),
        ),
        (
            "Q9 similar ≥ 0.8 AND city = 上海",
            similar(cmp("city", CmpOp::Eq, s("上海")), 0, 0.8, &["gender"]),
        ),
        (
            "Q10 similar ≥ 0.5, no filter",
            similar(Filter::All, 1, 0.5, &["city"]),
        ),
    ]
}

// ---- measurements ----------------------------------------------------------

/// A `/proc/self/status` value in kB.
fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    peak_kb: u64,
    rss_kb: u64,
    anon_kb: u64,
    file_kb: u64,
}

fn mem() -> Mem {
    Mem {
        peak_kb: status_kb("VmHWM").unwrap_or(0),
        rss_kb: status_kb("VmRSS").unwrap_or(0),
        anon_kb: status_kb("RssAnon").unwrap_or(0),
        file_kb: status_kb("RssFile").unwrap_or(0),
    }
}

/// Resets the peak RSS (`VmHWM`) to the current RSS, so each backend's peak is its own.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Process CPU time (user + system) from `/proc/self/stat`, at 100 ticks/s.
fn cpu_time() -> Duration {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn dir_size(p: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

/// Distinct tantivy segments in an index folder (files named `{segment}.{ext}`).
fn segments(p: &Path) -> usize {
    let mut ids = std::collections::HashSet::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && stem.len() == 32
                && stem.chars().all(|c| c.is_ascii_hexdigit())
            {
                ids.insert(stem.to_owned());
            }
        }
    }
    ids.len()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown cpu".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{model}, {cores} cores, {:.1} GiB RAM, {} {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn gb(kb: u64) -> String {
    format!("{:.2} GB", kb as f64 * 1024.0 / 1e9)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Pads to `width` terminal columns (CJK characters take two).
fn pad(s: &str, width: usize) -> String {
    let used: usize = s
        .chars()
        .map(|c| if u32::from(c) >= 0x2e80 { 2 } else { 1 })
        .sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(used)))
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---- one backend -----------------------------------------------------------

struct QueryStats {
    name: &'static str,
    total: u64,
    p50: Duration,
    p95: Duration,
    max: Duration,
}

struct Outcome {
    docs: u64,
    generation: Duration,
    jieba: Duration,
    build: Duration,
    commit: Duration,
    end_to_end: Duration,
    build_cpu: Duration,
    mem_build: Mem,
    mem_queries: Mem,
    disk: String,
    segments: Option<usize>,
    queries: Vec<QueryStats>,
    mix_p50: Duration,
    mix_p95: Duration,
    /// One pass of the whole mix, back to back.
    pass_p50: Duration,
    load_after: String,
}

async fn run(
    backend: &Search,
    account: Uuid,
    args: &Args,
    now: i64,
    index_dir: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let name = backend.name();
    reset_peak();
    println!(
        "\n== {name}: indexing {} personas in batches of {BATCH}",
        thousands(args.members as u64)
    );
    let centres = centres();
    let mut generator = Generator::new(now, args.vector_share, centres.clone());
    let mut generation = Duration::ZERO;
    let mut build = Duration::ZERO;
    let started = Instant::now();
    let cpu0 = cpu_time();
    let t = Instant::now();
    let mut rebuild = backend.rebuild(account).await?;
    build += t.elapsed();
    let mut done = 0;
    let mut last_report = Instant::now();
    while done < args.members {
        let n = BATCH.min(args.members - done);
        let t = Instant::now();
        let docs = generator.batch(n);
        generation += t.elapsed();
        let t = Instant::now();
        rebuild.add(docs).await?;
        build += t.elapsed();
        done += n;
        if last_report.elapsed() > Duration::from_secs(15) || done == args.members {
            last_report = Instant::now();
            println!(
                "  {:>9} docs  generation {:6.1} s  build {:6.1} s  wall {:6.1} s  peak RSS {}",
                thousands(done as u64),
                generation.as_secs_f64(),
                build.as_secs_f64(),
                started.elapsed().as_secs_f64(),
                gb(mem().peak_kb)
            );
        }
    }
    let t = Instant::now();
    let docs = rebuild.commit().await?;
    let commit = t.elapsed();
    build += commit;
    let end_to_end = started.elapsed();
    let build_cpu = cpu_time().saturating_sub(cpu0);
    let mem_build = mem();
    anyhow::ensure!(
        docs == args.members as u64,
        "the index holds {docs} documents, expected {}",
        args.members
    );
    let (disk, segments) = match index_dir {
        Some(d) => {
            let (bytes, files) = dir_size(d);
            (
                format!("{:.2} GB ({files} files)", bytes as f64 / 1e9),
                Some(segments(d)),
            )
        }
        None => ("n/a (server side)".to_owned(), None),
    };
    println!(
        "  committed {} docs: build {:.1} s (commit and merges {:.1} s), generation {:.1} s (jieba {:.1} s), end to end {:.1} s, process CPU during build+generation {:.1} s",
        thousands(docs),
        build.as_secs_f64(),
        commit.as_secs_f64(),
        generation.as_secs_f64(),
        generator.jieba.as_secs_f64(),
        end_to_end.as_secs_f64(),
        build_cpu.as_secs_f64()
    );
    println!(
        "  peak RSS after build {} (now {}: anon {}, file-backed {}); index on disk {disk}{}",
        gb(mem_build.peak_kb),
        gb(mem_build.rss_kb),
        gb(mem_build.anon_kb),
        gb(mem_build.file_kb),
        segments.map_or(String::new(), |n| format!(", {n} segments"))
    );
    let jieba = generator.jieba;
    drop(generator);

    let mix: Vec<_> = queries(now, &centres)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| args.only.is_empty() || args.only.contains(&(i + 1)))
        .map(|(_, q)| q)
        .collect();
    for (q, req) in &mix {
        if let Filter::Terms(t) = &req.filter {
            println!("  {q}: terms {t:?}");
        }
        if let Filter::And(items) = &req.filter {
            for i in items {
                if let Filter::Terms(t) = i {
                    println!("  {q}: terms {t:?}");
                }
            }
        }
    }
    // Warm-up: one pass, which also records totals.
    let mut totals = Vec::new();
    for (q, req) in &mix {
        let t = Instant::now();
        let r = backend.search(account, req).await?;
        println!(
            "  warm-up {q}: {} hits, {:.1} ms",
            thousands(r.total),
            ms(t.elapsed())
        );
        totals.push(r.total);
    }
    let mut samples = vec![Vec::with_capacity(args.rounds); mix.len()];
    let mut passes = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let pass = Instant::now();
        for (i, (q, req)) in mix.iter().enumerate() {
            let t = Instant::now();
            let r = backend.search(account, req).await?;
            samples[i].push(t.elapsed());
            anyhow::ensure!(r.total == totals[i], "{q}: total changed between rounds");
        }
        passes.push(pass.elapsed());
    }
    let mem_queries = mem();
    let mut all: Vec<Duration> = samples.iter().flatten().copied().collect();
    all.sort();
    passes.sort();
    let queries = mix
        .iter()
        .zip(samples)
        .zip(&totals)
        .map(|((&(name, _), mut s), &total)| {
            s.sort();
            QueryStats {
                name,
                total,
                p50: percentile(&s, 0.5),
                p95: percentile(&s, 0.95),
                max: s.last().copied().unwrap_or_default(),
            }
        })
        .collect::<Vec<_>>();
    println!(
        "\n  {} {:>10} {:>9} {:>9} {:>9}",
        pad("query", 50),
        "hits",
        "p50 ms",
        "p95 ms",
        "max ms"
    );
    for q in &queries {
        println!(
            "  {} {:>10} {:>9.2} {:>9.2} {:>9.2}",
            pad(q.name, 50),
            thousands(q.total),
            ms(q.p50),
            ms(q.p95),
            ms(q.max)
        );
    }
    let mix_p50 = percentile(&all, 0.5);
    let mix_p95 = percentile(&all, 0.95);
    let pass_p50 = percentile(&passes, 0.5);
    println!(
        "  whole mix ({} rounds × {} queries): p50 {:.2} ms, p95 {:.2} ms over single queries; one pass of the mix p50 {:.1} ms; peak RSS after queries {} (now {}: anon {}, file-backed {})",
        args.rounds,
        mix.len(),
        ms(mix_p50),
        ms(mix_p95),
        ms(pass_p50),
        gb(mem_queries.peak_kb),
        gb(mem_queries.rss_kb),
        gb(mem_queries.anon_kb),
        gb(mem_queries.file_kb)
    );
    Ok(Outcome {
        docs,
        generation,
        jieba,
        build,
        commit,
        end_to_end,
        build_cpu,
        mem_build,
        mem_queries,
        disk,
        segments,
        queries,
        mix_p50,
        mix_p95,
        pass_p50,
        load_after: load(),
    })
}

// ---- main ------------------------------------------------------------------

fn mix_label(only: &[usize]) -> String {
    if only.is_empty() {
        "the ten-query mix".to_owned()
    } else {
        let n: Vec<String> = only.iter().map(|n| format!("Q{n}")).collect();
        format!("only {}", n.join(", "))
    }
}

/// One column of the final table.
struct Column {
    title: &'static str,
    result: Result<Outcome, String>,
}

/// A column's cell: the value, or (for a backend not measured) the reason
/// in the first row and a dash below it.
fn cell(c: &Column, first: bool, f: impl Fn(&Outcome) -> String) -> String {
    match &c.result {
        Ok(o) => f(o),
        Err(e) if first => e.clone(),
        Err(_) => "—".to_owned(),
    }
}

fn table(columns: &[Column], rounds: usize) -> String {
    let mut out = String::new();
    let _ = write!(out, "| |");
    for c in columns {
        let _ = write!(out, " {} |", c.title);
    }
    let _ = write!(out, "\n|---|");
    for _ in columns {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    let mut first = true;
    let mut row = |label: &str, f: &dyn Fn(&Outcome) -> String| {
        let _ = write!(out, "| {label} |");
        for c in columns {
            let _ = write!(out, " {} |", cell(c, first, f));
        }
        out.push('\n');
        first = false;
    };
    row("personas indexed", &|o| thousands(o.docs));
    row("generation (not in build time)", &|o| {
        format!(
            "{:.1} s (jieba terms {:.1} s)",
            o.generation.as_secs_f64(),
            o.jieba.as_secs_f64()
        )
    });
    row("build: rebuild → add… → commit", &|o| {
        format!(
            "**{:.1} s** (commit + merges {:.1} s)",
            o.build.as_secs_f64(),
            o.commit.as_secs_f64()
        )
    });
    row("generation + build, wall / process CPU", &|o| {
        format!(
            "{:.1} s / {:.1} s",
            o.end_to_end.as_secs_f64(),
            o.build_cpu.as_secs_f64()
        )
    });
    row("peak RSS after build", &|o| {
        format!(
            "{} (resident then: {} anon + {} file)",
            gb(o.mem_build.peak_kb),
            gb(o.mem_build.anon_kb),
            gb(o.mem_build.file_kb)
        )
    });
    row("peak RSS after queries", &|o| {
        format!(
            "{} (resident then: {} anon + {} file)",
            gb(o.mem_queries.peak_kb),
            gb(o.mem_queries.anon_kb),
            gb(o.mem_queries.file_kb)
        )
    });
    row("index on disk", &|o| match o.segments {
        Some(n) => format!("{}, {n} segments", o.disk),
        None => o.disk.clone(),
    });
    let n = columns
        .iter()
        .find_map(|c| c.result.as_ref().ok())
        .map_or(0, |o| o.queries.len());
    for i in 0..n {
        let label = columns
            .iter()
            .find_map(|c| c.result.as_ref().ok())
            .map_or("", |o| o.queries[i].name);
        row(&format!("{label} — p50 / p95 / max (hits)"), &|o| {
            let q = &o.queries[i];
            format!(
                "{:.1} / {:.1} / {:.1} ms ({})",
                ms(q.p50),
                ms(q.p95),
                ms(q.max),
                thousands(q.total)
            )
        });
    }
    row(
        &format!("**mix p50** (all single queries, {rounds} rounds)"),
        &|o| format!("**{:.1} ms**", ms(o.mix_p50)),
    );
    row(
        &format!("**mix p95** (all single queries, {rounds} rounds)"),
        &|o| format!("**{:.1} ms**", ms(o.mix_p95)),
    );
    row("one pass of the mix, back to back (p50)", &|o| {
        format!("{:.1} ms", ms(o.pass_p50))
    });
    row("load average after the run", &|o| o.load_after.clone());
    out
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let machine = machine();
    let load_before = load();
    println!("lingxi-search-bench");
    println!("  command:  {command}");
    println!("  date:     {date}");
    println!("  machine:  {machine}");
    println!("  load:     {load_before} (1/5/15 min) at start");
    println!(
        "  personas: {}, {:.0}% with a {DIM}-d embedding ({CENTRES} clusters); {} rounds of {} after one warm-up",
        thousands(args.members as u64),
        args.vector_share * 100.0,
        args.rounds,
        mix_label(&args.only)
    );
    let now = chrono::Utc::now().timestamp();
    let mut columns = Vec::new();

    if matches!(args.backend, Which::Embedded | Which::Both) {
        let dir = args.dir.join("embedded-index");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        println!("  embedded index folder: {}", dir.display());
        let backend: Search = Arc::new(EmbeddedSearch::open(&dir)?);
        let account = Uuid::from_u128(0x1a9a_0000_0000_4000_8000_0000_0000_be9c);
        let result = run(&backend, account, &args, now, Some(&dir))
            .await
            .map_err(|e| format!("failed: {e:#}"));
        if let Err(e) = &result {
            eprintln!("embedded: {e}");
        }
        columns.push(Column {
            title: "embedded (tantivy)",
            result,
        });
    }

    if matches!(args.backend, Which::Meili | Which::Both) {
        match std::env::var("LINGXI_MEILI_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            None if args.backend == Which::Meili => {
                anyhow::bail!(
                    "--backend meili needs LINGXI_MEILI_URL (and LINGXI_MEILI_KEY if the server has a key)"
                );
            }
            None => {
                println!("\n== meilisearch: skipped, LINGXI_MEILI_URL is not set");
                columns.push(Column {
                    title: "Meilisearch",
                    result: Err("not measured (LINGXI_MEILI_URL unset)".into()),
                });
            }
            Some(url) => {
                let key = std::env::var("LINGXI_MEILI_KEY").ok();
                let prefix = format!("lxbench{}_{}", std::process::id(), now);
                let meili = Arc::new(MeiliSearch::new(&url, key.as_deref(), &prefix).await?);
                let backend: Search = meili.clone();
                let account = Uuid::new_v4();
                println!("  Meilisearch at {url}, index prefix {prefix}");
                let result = run(&backend, account, &args, now, None)
                    .await
                    .map_err(|e| format!("failed: {e:#}"));
                if let Err(e) = &result {
                    eprintln!("meilisearch: {e}");
                }
                if let Err(e) = meili.drop_account(account).await {
                    eprintln!("could not drop the bench index (prefix {prefix}): {e}");
                }
                columns.push(Column {
                    title: "Meilisearch (client process memory)",
                    result,
                });
            }
        }
    }

    println!("\n---- for docs/benchmarks.md ----\n");
    println!("Command: `{command}`  ");
    println!("Machine: {machine}  ");
    println!("Date: {date}; load average at start {load_before}  ");
    println!(
        "Personas: {}, {:.0}% with a {DIM}-d embedding; {} rounds of {} after one warm-up; `limit: 20`.\n",
        thousands(args.members as u64),
        args.vector_share * 100.0,
        args.rounds,
        mix_label(&args.only)
    );
    println!("{}", table(&columns, args.rounds));
    if columns.iter().all(|c| c.result.is_err()) {
        anyhow::bail!("no backend was measured");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
