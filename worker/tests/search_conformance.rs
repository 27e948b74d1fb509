//! The search conformance suite: the same requests on every backend must
//! give the same members (in the same order), totals and facets as a plain
//! reference evaluation of the filter over the documents.
//!
//! The embedded backend always runs. The Meilisearch half runs when
//! `LINGXI_MEILI_URL` points at a server (`LINGXI_MEILI_KEY` if it needs
//! one); otherwise the suite says it skipped it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;
use worker::search::{
    CmpOp, Filter, PersonaDoc, Scalar, Search, SearchBackend, SearchRequest, SearchResponse,
    Similar,
    embedded::EmbeddedSearch,
    fields::{self, FIELDS, MEMBER_ID},
    meili::MeiliSearch,
    query::{Hit, document_terms, finish_facet, query_terms},
};

const DIM: usize = 384;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.next() as usize % xs.len()]
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 10_000) as f32 / 10_000.0
    }
}

const TEXTS: &[&str] = &[
    "这款面霜很滋润，双十一囤货",
    "周末去三亚旅游，海景酒店",
    "新买的手机拍照清晰",
    "宝宝的奶粉和纸尿裤",
    "健身房办了年卡，每天跑步",
    "基金定投和理财课程",
];

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// Documents with clustered embeddings (five directions plus noise), so
/// similarity thresholds cut somewhere interesting.
fn docs(n: usize) -> Vec<PersonaDoc> {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let centres: Vec<Vec<f32>> = (0..5)
        .map(|_| {
            let mut v: Vec<f32> = (0..DIM).map(|_| r.unit() - 0.5).collect();
            normalize(&mut v);
            v
        })
        .collect();
    (0..n)
        .map(|i| {
            let texts: Vec<&str> = (0..(r.next() % 3)).map(|_| r.pick(TEXTS)).collect();
            let interests: Vec<String> = ["美妆护肤", "旅游", "数码", "母婴"]
                .iter()
                .filter(|_| r.one_in(3))
                .map(|s| s.to_string())
                .collect();
            let embedding = (!r.one_in(6)).then(|| {
                let c = &centres[r.next() as usize % centres.len()];
                let mut v: Vec<f32> = c.iter().map(|x| x + (r.unit() - 0.5) * 0.08).collect();
                normalize(&mut v);
                v
            });
            let sentiment = (!r.one_in(4)).then(|| (r.next() % 1000) as f64 / 1000.0);
            PersonaDoc {
                id: Uuid::now_v7().to_string(),
                openid: format!("o{i:05}"),
                city: (!r.one_in(9)).then(|| r.pick(&["上海", "北京", "广州", "杭州"]).into()),
                province: None,
                gender: r.pick(&["male", "female", "unknown"]).into(),
                age: (!r.one_in(7)).then(|| 18 + (r.next() % 45) as i64),
                tags: ["VIP", "新客", "复购"]
                    .iter()
                    .filter(|_| r.one_in(3))
                    .map(|s| s.to_string())
                    .collect(),
                keywords: Vec::new(),
                terms: document_terms(
                    interests
                        .iter()
                        .map(String::as_str)
                        .chain(texts.iter().copied()),
                ),
                interests,
                sentiment,
                sentiment_label: sentiment.map(|s| worker::analysis::label(s as f32).into()),
                // Few distinct values, so ties (broken by id) are common.
                activity: (r.next() % 5) as f64 / 4.0,
                reach: (r.next() % 50) as i64,
                degree: (r.next() % 6) as i64,
                influence: (r.next() % 100) as f64 / 100.0,
                subscribed: !r.one_in(4),
                consent: !r.one_in(3),
                last_active_at: (!r.one_in(5))
                    .then(|| 1_790_000_000 + (r.next() % 5_000_000) as i64),
                subscribed_at: None,
                embedding,
            }
        })
        .collect()
}

// ---- the reference evaluation -------------------------------------------

fn values(d: &PersonaDoc, name: &str) -> Vec<Value> {
    let v = serde_json::to_value(d).unwrap();
    match v.get(name) {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(x) => vec![x.clone()],
    }
}

fn scalar_eq(v: &Value, s: &Scalar) -> bool {
    match s {
        Scalar::Str(x) => v
            .as_str()
            .is_some_and(|y| y.to_lowercase() == x.to_lowercase()),
        Scalar::Num(x) => v.as_f64() == Some(*x),
        Scalar::Bool(x) => v.as_bool() == Some(*x),
    }
}

fn matches(d: &PersonaDoc, f: &Filter) -> bool {
    match f {
        Filter::All => true,
        Filter::And(xs) => xs.iter().all(|x| matches(d, x)),
        Filter::Or(xs) => xs.iter().any(|x| matches(d, x)),
        Filter::Not(x) => !matches(d, x),
        Filter::Compare { field, op, value } => values(d, field.name).iter().any(|v| match op {
            CmpOp::Eq => scalar_eq(v, value),
            _ => {
                let (Some(a), Scalar::Num(b)) = (v.as_f64(), value) else {
                    return false;
                };
                match op {
                    CmpOp::Gt => a > *b,
                    CmpOp::Gte => a >= *b,
                    CmpOp::Lt => a < *b,
                    CmpOp::Lte => a <= *b,
                    CmpOp::Eq => unreachable!(),
                }
            }
        }),
        Filter::In { field, values: vs } => values(d, field.name)
            .iter()
            .any(|v| vs.iter().any(|s| scalar_eq(v, s))),
        Filter::Exists { field } => !values(d, field.name).is_empty(),
        Filter::Terms(ts) => ts.iter().all(|t| d.terms.contains(t)),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn reference(docs: &[PersonaDoc], req: &SearchRequest) -> SearchResponse {
    let mut hits: Vec<(f64, Uuid, &PersonaDoc)> = docs
        .iter()
        .filter(|d| matches(d, &req.filter))
        .filter_map(|d| match &req.similar {
            None => Some((d.activity, d.member_id(), d)),
            Some(s) => {
                let score = dot(&s.vector, d.embedding.as_ref()?);
                (score >= s.min_score).then_some((f64::from(score), d.member_id(), d))
            }
        })
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let facets = req
        .facets
        .iter()
        .map(|f| {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for (_, _, d) in &hits {
                for v in values(d, f.name) {
                    let key = match v {
                        Value::String(s) => s,
                        Value::Bool(b) => b.to_string(),
                        other => fields::format_number(other.as_f64().unwrap()),
                    };
                    *counts.entry(key).or_default() += 1;
                }
            }
            finish_facet(f.name, counts.into_iter().collect())
        })
        .collect();
    SearchResponse {
        total: hits.len() as u64,
        hits: hits
            .iter()
            .skip(req.offset)
            .take(req.limit)
            .map(|(score, id, _)| Hit {
                member_id: *id,
                score: req.similar.is_some().then_some(*score as f32),
            })
            .collect(),
        facets,
    }
}

// ---- the cases -----------------------------------------------------------

fn field(name: &str) -> &'static fields::Field {
    fields::field(name).unwrap()
}

fn cmp(name: &str, op: CmpOp, value: Scalar) -> Filter {
    Filter::Compare {
        field: field(name),
        op,
        value,
    }
}

fn s(x: &str) -> Scalar {
    Scalar::Str(x.into())
}

fn cases(docs: &[PersonaDoc]) -> Vec<(&'static str, SearchRequest)> {
    let facets: Vec<&'static fields::Field> = FIELDS.iter().filter(|f| f.facet).collect();
    let req = |filter: Filter| SearchRequest {
        filter,
        similar: None,
        offset: 0,
        limit: 50,
        facets: facets.clone(),
    };
    let probe = docs.iter().find_map(|d| d.embedding.clone()).unwrap();
    let seed_ids: Vec<Scalar> = docs[..3].iter().map(|d| s(&d.id)).collect();
    vec![
        ("all", req(Filter::All)),
        ("eq", req(cmp("city", CmpOp::Eq, s("上海")))),
        (
            "case-insensitive eq on a list",
            req(Filter::In {
                field: field("tags"),
                values: vec![s("vip")],
            }),
        ),
        (
            "ne",
            req(Filter::Not(Box::new(cmp("city", CmpOp::Eq, s("上海"))))),
        ),
        (
            "in + range",
            req(Filter::And(vec![
                Filter::In {
                    field: field("city"),
                    values: vec![s("北京"), s("广州")],
                },
                cmp("age", CmpOp::Gte, Scalar::Num(25.0)),
                cmp("age", CmpOp::Lt, Scalar::Num(35.0)),
            ])),
        ),
        (
            "or / not / exists",
            req(Filter::Or(vec![
                Filter::Not(Box::new(Filter::Exists {
                    field: field("age"),
                })),
                Filter::And(vec![
                    cmp("subscribed", CmpOp::Eq, Scalar::Bool(true)),
                    cmp("sentiment", CmpOp::Gt, Scalar::Num(0.7)),
                ]),
            ])),
        ),
        (
            "and not",
            req(Filter::And(vec![
                cmp("gender", CmpOp::Eq, s("female")),
                Filter::Not(Box::new(cmp("subscribed", CmpOp::Eq, Scalar::Bool(true)))),
            ])),
        ),
        (
            "only nots",
            req(Filter::And(vec![
                Filter::Not(Box::new(cmp("city", CmpOp::Eq, s("上海")))),
                Filter::Not(Box::new(Filter::In {
                    field: field("tags"),
                    values: vec![s("VIP")],
                })),
            ])),
        ),
        (
            "time range",
            req(cmp(
                "lastActiveAt",
                CmpOp::Gte,
                Scalar::Num(1_792_000_000.0),
            )),
        ),
        (
            "float eq",
            req(cmp("activity", CmpOp::Eq, Scalar::Num(0.5))),
        ),
        ("keywords", req(Filter::Terms(query_terms("面霜")))),
        (
            "keywords inside words",
            req(Filter::Terms(query_terms("旅游 酒店"))),
        ),
        (
            "interests",
            req(Filter::In {
                field: field("interests"),
                values: vec![s("美妆护肤")],
            }),
        ),
        (
            "page 3",
            SearchRequest {
                offset: 100,
                ..req(Filter::All)
            },
        ),
        (
            "similar, thresholded, seeds excluded",
            SearchRequest {
                similar: Some(Similar {
                    vector: probe.clone(),
                    min_score: 0.5,
                }),
                ..req(Filter::Not(Box::new(Filter::In {
                    field: &MEMBER_ID,
                    values: seed_ids,
                })))
            },
        ),
        (
            "similar with a filter, page 2",
            SearchRequest {
                similar: Some(Similar {
                    vector: probe,
                    min_score: -1.0,
                }),
                offset: 20,
                limit: 30,
                ..req(cmp("gender", CmpOp::Eq, s("female")))
            },
        ),
        ("empty", req(cmp("city", CmpOp::Eq, s("拉萨")))),
    ]
}

fn same(name: &str, backend: &str, got: &SearchResponse, want: &SearchResponse) {
    assert_eq!(got.total, want.total, "{backend} / {name}: total");
    let ids = |r: &SearchResponse| r.hits.iter().map(|h| h.member_id).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{backend} / {name}: members in order");
    for (g, w) in got.hits.iter().zip(&want.hits) {
        match (g.score, w.score) {
            (Some(a), Some(b)) => {
                assert!((a - b).abs() < 1e-4, "{backend} / {name}: score {a} vs {b}")
            }
            (a, b) => assert_eq!(
                a.is_some(),
                b.is_some(),
                "{backend} / {name}: score presence"
            ),
        }
    }
    assert_eq!(got.facets, want.facets, "{backend} / {name}: facets");
}

async fn check(backend: &Search, docs: &[PersonaDoc]) {
    let account = Uuid::now_v7();
    // Half by upsert, then everything through a rebuild, then one erasure.
    backend
        .upsert(account, docs[..docs.len() / 2].to_vec())
        .await
        .unwrap();
    let mut rebuild = backend.rebuild(account).await.unwrap();
    for chunk in docs.chunks(97) {
        rebuild.add(chunk.to_vec()).await.unwrap();
    }
    assert_eq!(rebuild.commit().await.unwrap(), docs.len() as u64);
    let gone = docs[7].member_id();
    backend.delete(account, &[gone]).await.unwrap();
    let live: Vec<PersonaDoc> = docs
        .iter()
        .filter(|d| d.member_id() != gone)
        .cloned()
        .collect();
    assert_eq!(backend.count(account).await.unwrap(), live.len() as u64);
    // An upsert replaces, never duplicates.
    let mut changed = live[0].clone();
    changed.city = Some("成都".into());
    backend
        .upsert(account, vec![changed.clone()])
        .await
        .unwrap();
    let live: Vec<PersonaDoc> = std::iter::once(changed)
        .chain(live[1..].iter().cloned())
        .collect();
    assert_eq!(backend.count(account).await.unwrap(), live.len() as u64);

    for (name, req) in cases(&live) {
        let want = reference(&live, &req);
        let got = backend.search(account, &req).await.unwrap();
        same(name, backend.name(), &got, &want);
    }
    // Whatever a backend cached for those answers must follow later
    // writes: an erasure in an existing segment, and a replaced member.
    let gone = live[11].member_id();
    backend.delete(account, &[gone]).await.unwrap();
    let mut changed = live[12].clone();
    changed.city = Some("上海".into());
    changed.activity = 1.0;
    backend
        .upsert(account, vec![changed.clone()])
        .await
        .unwrap();
    let live: Vec<PersonaDoc> = live
        .iter()
        .filter(|d| d.member_id() != gone)
        .map(|d| {
            if d.id == changed.id {
                changed.clone()
            } else {
                d.clone()
            }
        })
        .collect();
    for (name, req) in cases(&live) {
        let want = reference(&live, &req);
        let got = backend.search(account, &req).await.unwrap();
        same(name, backend.name(), &got, &want);
    }
    // Another account's index is empty, whatever the filter.
    let other = backend
        .search(Uuid::now_v7(), &cases(&live)[0].1)
        .await
        .unwrap();
    assert_eq!(other.total, 0);
}

#[tokio::test]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Search = std::sync::Arc::new(EmbeddedSearch::open(dir.path()).unwrap());
    check(&backend, &docs(600)).await;
}

#[tokio::test]
async fn idle_embedded_indexes_close_and_reopen_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    // Idle at once: every call first closes the indexes nobody holds.
    let backend = std::sync::Arc::new(
        EmbeddedSearch::open(dir.path())
            .unwrap()
            .with_idle(std::time::Duration::ZERO),
    );
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let all = SearchRequest {
        filter: Filter::All,
        similar: None,
        offset: 0,
        limit: 10,
        facets: Vec::new(),
    };
    backend.upsert(a, docs(50)).await.unwrap();
    backend.upsert(b, docs(20)).await.unwrap();
    assert_eq!(backend.open_accounts(), 1, "a closed when b was opened");
    assert_eq!(backend.search(b, &all).await.unwrap().total, 20);
    // Searching a reopens it from disk, with everything it held, and closes b.
    let again = backend.search(a, &all).await.unwrap();
    assert_eq!(again.total, 50);
    assert_eq!(again.hits.len(), 10);
    assert_eq!(backend.open_accounts(), 1);
    // A rebuild in progress keeps its index open however idle it is.
    let rebuild = backend.rebuild(b).await.unwrap();
    assert_eq!(backend.search(a, &all).await.unwrap().total, 50);
    assert_eq!(backend.open_accounts(), 2, "b is held by its rebuild");
    drop(rebuild);
    // With the default idle time nothing closes between calls.
    let kept = EmbeddedSearch::open(dir.path()).unwrap();
    kept.upsert(a, docs(5)).await.unwrap();
    assert_eq!(kept.search(b, &all).await.unwrap().total, 20);
    assert_eq!(kept.open_accounts(), 2);
}

#[tokio::test]
async fn meilisearch_backend_conforms() {
    let Ok(url) = std::env::var("LINGXI_MEILI_URL") else {
        eprintln!(
            "search conformance: Meilisearch half SKIPPED (LINGXI_MEILI_URL is not set); \
             the embedded half ran against the reference evaluation"
        );
        return;
    };
    let key = std::env::var("LINGXI_MEILI_KEY").ok();
    let prefix = format!("lxtest{}", Uuid::new_v4().simple());
    let backend: Search = std::sync::Arc::new(
        MeiliSearch::new(&url, key.as_deref(), &prefix)
            .await
            .unwrap(),
    );
    check(&backend, &docs(600)).await;
}
