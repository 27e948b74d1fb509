//! A generated audience whose segment answers the tests compute on their
//! own, from the same rows they import.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tests::Server;

pub const CITIES: [&str; 5] = ["上海", "北京", "广州", "深圳", "杭州"];
pub const TAGS: [&str; 4] = ["vip", "新客", "复购", "学生"];

#[derive(Debug, Clone)]
pub struct Person {
    pub openid: String,
    pub city: Option<&'static str>,
    pub age: Option<i64>,
    pub gender: &'static str,
    pub tags: Vec<&'static str>,
    pub subscribed: bool,
    pub texts: Vec<&'static str>,
    pub events: usize,
}

/// `n` people with a spread of attributes, some missing, and a few texts.
pub fn people(n: usize, prefix: &str) -> Vec<Person> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|i| {
            let r = next();
            let mut texts = Vec::new();
            if r % 5 == 0 {
                texts.push("这款面霜很滋润，准备双十一再囤两瓶");
            }
            if r % 7 == 1 {
                texts.push("周末去三亚旅游，海景酒店太美了");
            }
            if r % 9 == 2 {
                texts.push("新买的手机拍照清晰，续航也不错");
            }
            Person {
                openid: format!("{prefix}{i:04}"),
                city: (r % 13 != 0).then(|| CITIES[(r >> 8) as usize % CITIES.len()]),
                age: (r % 11 != 0).then(|| 18 + ((r >> 16) % 40) as i64),
                gender: ["female", "male", "unknown"][(r >> 24) as usize % 3],
                tags: TAGS
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| (r >> (32 + k)) & 3 == 0)
                    .map(|(_, t)| *t)
                    .collect(),
                subscribed: (r >> 40) % 4 != 0,
                texts,
                events: ((r >> 44) % 4) as usize,
            }
        })
        .collect()
}

/// Imports members, messages and events under `key`, then builds personas
/// (which also rebuilds the index) and waits for every queued job.
pub async fn load(s: &Server, key: &str, people: &[Person]) {
    let mut csv = String::from("openid,gender,age,city,tags,subscribed\n");
    for p in people {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.openid,
            p.gender,
            p.age.map(|a| a.to_string()).unwrap_or_default(),
            p.city.unwrap_or(""),
            p.tags.join("|"),
            p.subscribed
        ));
    }
    let r = s.import(key, "importMembers", "CSV", &csv).await;
    assert_eq!(r["accepted"], people.len(), "{r}");
    let now = chrono::Utc::now();
    let mut msgs = Vec::new();
    let mut events = Vec::new();
    for p in people {
        for (i, t) in p.texts.iter().enumerate() {
            let at = (now - chrono::Duration::hours(i as i64 + 1)).to_rfc3339();
            msgs.push(
                json!({ "openid": p.openid, "kind": "chat", "text": t, "at": at }).to_string(),
            );
        }
        for i in 0..p.events {
            let at = (now - chrono::Duration::days(i as i64 + 1)).to_rfc3339();
            events.push(json!({ "openid": p.openid, "type": "view", "at": at }).to_string());
        }
    }
    if !msgs.is_empty() {
        s.import(key, "importMessages", "JSONL", &msgs.join("\n"))
            .await;
    }
    if !events.is_empty() {
        s.import(key, "importEvents", "JSONL", &events.join("\n"))
            .await;
    }
    settle(s, key).await;
    let d = s
        .ok_as(
            key,
            "mutation { enqueueJob(input: { kind: BUILD_PERSONAS }) { id } }",
            json!({}),
        )
        .await;
    let job = s.wait_job_as(key, &d["enqueueJob"]["id"], 120).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    settle(s, key).await;
}

/// Waits until the debounced refreshes have been queued and every job due
/// now ran (the nightly rebuild, queued for 03:00, does not count).
pub async fn settle(s: &Server, key: &str) {
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let q = "{ q: jobs(status: QUEUED, first: 100) { edges { node { runAt } } } r: jobs(status: RUNNING) { totalCount } }";
    let idle = tests::eventually(120, || async {
        let d = s.ok_as(key, q, json!({})).await;
        let soon = chrono::Utc::now() + chrono::Duration::minutes(1);
        let due = d["q"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["node"]["runAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t < soon)
            })
            .count();
        (due == 0 && d["r"]["totalCount"] == 0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "jobs did not drain:\n{}", s.log());
}

pub const PREVIEW: &str = "query($f: SegmentFilter!, $first: Int, $after: String) {
  segmentPreview(filter: $f, first: $first, after: $after) {
    total
    facets(fields: [\"city\", \"gender\", \"tags\", \"subscribed\"]) { field values { value count } }
    members { totalCount pageInfo { hasNextPage endCursor }
      edges { cursor score node { id openid persona { activity } } } }
  }
}";

/// Every member of a filter, walking the pages; (total, openids in order, facets).
pub async fn all_pages(s: &Server, key: &str, filter: &Value) -> (u64, Vec<String>, Value) {
    let mut after: Option<String> = None;
    let mut openids = Vec::new();
    let mut total = None;
    let mut facets = Value::Null;
    loop {
        let d = s
            .ok_as(
                key,
                PREVIEW,
                json!({ "f": filter, "first": 37, "after": after }),
            )
            .await;
        let p = &d["segmentPreview"];
        let t = p["total"].as_u64().unwrap();
        assert_eq!(p["members"]["totalCount"].as_u64(), Some(t));
        if let Some(prev) = total {
            assert_eq!(prev, t, "the total does not change between pages");
        } else {
            facets = p["facets"].clone();
        }
        total = Some(t);
        for e in p["members"]["edges"].as_array().unwrap() {
            openids.push(e["node"]["openid"].as_str().unwrap().to_owned());
        }
        if p["members"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = p["members"]["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
    (total.unwrap(), openids, facets)
}

/// Facet counts of `people` for the preview's four facet fields, shaped
/// like the API's answer (count desc, value asc).
pub fn expected_facets(people: &[&Person]) -> Value {
    let mut out = Vec::new();
    type Values = Box<dyn Fn(&Person) -> Vec<String>>;
    let fields: [(&str, Values); 4] = [
        (
            "city",
            Box::new(|p: &Person| p.city.iter().map(|c| c.to_string()).collect()),
        ),
        ("gender", Box::new(|p: &Person| vec![p.gender.to_owned()])),
        (
            "tags",
            Box::new(|p: &Person| p.tags.iter().map(|t| t.to_string()).collect()),
        ),
        (
            "subscribed",
            Box::new(|p: &Person| vec![p.subscribed.to_string()]),
        ),
    ];
    for (name, f) in fields {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for p in people {
            for v in f(p) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let mut values: Vec<(String, u64)> = counts.into_iter().collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.push(json!({
            "field": name,
            "values": values.into_iter().map(|(v, c)| json!({ "value": v, "count": c })).collect::<Vec<_>>(),
        }));
    }
    Value::Array(out)
}

pub fn openids(people: &[&Person]) -> BTreeSet<String> {
    people.iter().map(|p| p.openid.clone()).collect()
}

pub type Predicate = fn(&Person) -> bool;

/// Filters with their meaning computed independently: the segment language
/// (and/or/not, IN, ranges, EXISTS, list CONTAINS, booleans, Chinese keywords).
pub fn cases() -> Vec<(&'static str, Value, Predicate)> {
    vec![
        (
            "everyone",
            json!({ "and": [{ "field": "gender", "op": "EXISTS" }] }),
            |_| true,
        ),
        (
            "city EQ",
            json!({ "field": "city", "op": "EQ", "value": "上海" }),
            |p| p.city == Some("上海"),
        ),
        (
            "city NE includes members without a city",
            json!({ "field": "city", "op": "NE", "value": "上海" }),
            |p| p.city != Some("上海"),
        ),
        (
            "IN and an age range",
            json!({ "and": [
                { "field": "city", "op": "IN", "value": ["北京", "广州"] },
                { "field": "age", "op": "GTE", "value": 25 },
                { "field": "age", "op": "LTE", "value": 35 }
            ]}),
            |p| {
                matches!(p.city, Some("北京" | "广州"))
                    && p.age.is_some_and(|a| (25..=35).contains(&a))
            },
        ),
        (
            "strict bounds",
            json!({ "and": [
                { "field": "age", "op": "GT", "value": 30 },
                { "field": "age", "op": "LT", "value": 40 }
            ]}),
            |p| p.age.is_some_and(|a| a > 30 && a < 40),
        ),
        (
            "or of a list and a field",
            json!({ "or": [
                { "field": "tags", "op": "CONTAINS", "value": "vip" },
                { "field": "gender", "op": "EQ", "value": "female" }
            ]}),
            |p| p.tags.contains(&"vip") || p.gender == "female",
        ),
        (
            "not of an and",
            json!({ "not": { "and": [
                { "field": "subscribed", "op": "EQ", "value": true },
                { "field": "tags", "op": "IN", "value": ["新客", "学生"] }
            ]}}),
            |p| !(p.subscribed && p.tags.iter().any(|t| *t == "新客" || *t == "学生")),
        ),
        (
            "missing age",
            json!({ "field": "age", "op": "EXISTS", "value": false }),
            |p| p.age.is_none(),
        ),
        (
            "any tag at all",
            json!({ "field": "tags", "op": "EXISTS" }),
            |p| !p.tags.is_empty(),
        ),
        ("Chinese keyword", json!({ "text": "面霜" }), |p| {
            p.texts.iter().any(|t| t.contains("面霜"))
        }),
        (
            "keyword inside a longer word, with a filter",
            json!({ "and": [{ "text": "旅游 海景" }, { "field": "subscribed", "op": "EQ", "value": true }] }),
            |p| {
                p.subscribed
                    && p.texts
                        .iter()
                        .any(|t| t.contains("旅游") && t.contains("海景"))
            },
        ),
        (
            "nothing",
            json!({ "field": "city", "op": "EQ", "value": "拉萨" }),
            |_| false,
        ),
    ]
}
