use serde_json::json;
use tests::{Options, Server};

/// `make run` starts with a demo brand a person can click through.
#[tokio::test]
async fn the_demo_brand_is_loaded_on_first_start() {
    let s = Server::start_with(Options {
        demo: true,
        ..Default::default()
    })
    .await;
    assert!(
        s.stdout_lines.iter().any(|l| l.contains(tests::ADMIN_KEY)),
        "the admin key is printed: {:?}",
        s.stdout_lines
    );
    assert!(
        s.stdout_lines
            .iter()
            .any(|l| l.starts_with("GraphiQL: http://"))
    );
    let d = s
        .gql(
            "{ viewer { account { name } } members(first: 50) { totalCount edges { node { nickname city age messages { totalCount } } } }
               campaigns { totalCount edges { node { status contents { variants { text } } } } } segments { totalCount }
               jobSchedules { name kind enabled nextRunAt } }",
            json!({}),
        )
        .await;
    assert_eq!(d["members"]["totalCount"], 2000);
    assert_eq!(d["campaigns"]["totalCount"], 3);
    assert_eq!(d["segments"]["totalCount"], 1);
    // Recurring jobs: the built-in nightly rebuild and two examples, one off.
    let schedules = d["jobSchedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 3, "{schedules:?}");
    assert!(
        schedules
            .iter()
            .any(|j| j["enabled"] == true && j["nextRunAt"].is_string())
    );
    assert!(
        schedules
            .iter()
            .any(|j| j["enabled"] == false && j["nextRunAt"].is_null())
    );
    let statuses: Vec<&str> = d["campaigns"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"RUNNING") && statuses.contains(&"DRAFT"));
    let edges = d["members"]["edges"].as_array().unwrap();
    let chinese = edges
        .iter()
        .filter(|e| {
            e["node"]["nickname"]
                .as_str()
                .unwrap()
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        })
        .count();
    assert_eq!(chinese, edges.len(), "nicknames are Chinese");
    let with_text: i64 = edges
        .iter()
        .map(|e| e["node"]["messages"]["totalCount"].as_i64().unwrap())
        .sum();
    assert!(with_text >= 50, "members wrote messages");
    let msgs = s.sql_count("SELECT COUNT(*) FROM message").await;
    let complaints = s.sql_count("SELECT COUNT(*) FROM message WHERE text LIKE '%差%' OR text LIKE '%失望%' OR text LIKE '%退%'").await;
    assert!(
        msgs > 4000 && complaints > msgs / 20 && complaints < msgs / 2,
        "a mix of praise and complaints: {complaints}/{msgs}"
    );
    // The demo's personas are built and indexed in the background: segment
    // previews answer soon after start, and agree with the database.
    let shanghai = s
        .sql_count("SELECT COUNT(*) FROM member WHERE city = '上海'")
        .await;
    assert!(shanghai > 0);
    let q = "{ segmentPreview(filter: { field: \"city\", op: EQ, value: \"上海\" }) { total facets(fields: [\"interests\"]) { values { value count } } } segments { edges { node { preview { total } } } } }";
    let d = tests::eventually(180, || async {
        let d = s.gql(q, json!({})).await;
        (d["segmentPreview"]["total"].as_i64() == Some(shanghai)).then_some(d)
    })
    .await
    .unwrap_or_else(|| panic!("the demo index did not fill:\n{}", s.log()));
    let interests = d["segmentPreview"]["facets"][0]["values"]
        .as_array()
        .unwrap();
    assert!(!interests.is_empty(), "personas carry interests: {d}");
    assert!(
        d["segments"]["edges"][0]["node"]["preview"]["total"]
            .as_i64()
            .unwrap()
            > 0
    );
}
