use serde_json::{Value, json};
use tests::{ADMIN_KEY, Server, eventually};

const STATUS: &str = "query($id: ID!) { campaign(id: $id) { status startAt } }";

async fn status(s: &Server, id: &Value) -> String {
    s.gql(STATUS, json!({ "id": id })).await["campaign"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn illegal(s: &Server, mutation: &str, id: &Value, extra: Value) {
    let mut vars = json!({ "id": id });
    if let (Some(v), Some(e)) = (vars.as_object_mut(), extra.as_object()) {
        v.extend(e.clone());
    }
    s.err_as(Some(ADMIN_KEY), mutation, vars, "BAD_USER_INPUT")
        .await;
}

const PAUSE: &str = "mutation($id: ID!) { pauseCampaign(id: $id) { status } }";
const RESUME: &str = "mutation($id: ID!) { resumeCampaign(id: $id) { status } }";
const SCHEDULE: &str = "mutation($id: ID!, $at: DateTime!) { scheduleCampaign(id: $id, startAt: $at) { status startAt } }";
const COMPLETE: &str = "mutation($id: ID!) { completeCampaign(id: $id) { status } }";
const ARCHIVE: &str = "mutation($id: ID!) { archiveCampaign(id: $id) { status } }";

#[tokio::test]
async fn the_status_machine_allows_only_documented_moves() {
    let s = Server::start().await;
    let c = s.gql("mutation { createCampaign(input: { name: \"双十一\" }) { id status objective channel frequencyCap { count perHours } } }", json!({})).await;
    let id = c["createCampaign"]["id"].clone();
    assert_eq!(c["createCampaign"]["status"], "DRAFT");
    assert_eq!(c["createCampaign"]["objective"], "ENGAGEMENT");
    assert_eq!(c["createCampaign"]["frequencyCap"]["count"], 1);

    // DRAFT cannot pause, resume or complete; nothing changes.
    for m in [PAUSE, RESUME, COMPLETE] {
        illegal(&s, m, &id, json!({})).await;
        assert_eq!(status(&s, &id).await, "DRAFT");
    }
    // DRAFT → SCHEDULED (far future, so the scheduler leaves it alone).
    let d = s
        .gql(SCHEDULE, json!({ "id": id, "at": "2099-01-01T00:00:00Z" }))
        .await;
    assert_eq!(d["scheduleCampaign"]["status"], "SCHEDULED");
    assert_eq!(
        d["scheduleCampaign"]["startAt"],
        "2099-01-01T00:00:00+00:00"
    );
    illegal(&s, SCHEDULE, &id, json!({ "at": "2099-02-01T00:00:00Z" })).await;
    illegal(&s, PAUSE, &id, json!({})).await;
    assert_eq!(status(&s, &id).await, "SCHEDULED");
    // ARCHIVED from anywhere, then nothing more.
    assert_eq!(
        s.gql(ARCHIVE, json!({ "id": id })).await["archiveCampaign"]["status"],
        "ARCHIVED"
    );
    for m in [PAUSE, RESUME, COMPLETE, ARCHIVE] {
        illegal(&s, m, &id, json!({})).await;
    }
    illegal(
        &s,
        "mutation($id: ID!) { updateCampaign(id: $id, input: { name: \"x\" }) { id } }",
        &id,
        json!({}),
    )
    .await;
    assert_eq!(status(&s, &id).await, "ARCHIVED");
}

#[tokio::test]
async fn a_scheduled_campaign_starts_at_its_time_then_pauses_resumes_and_completes() {
    let s = Server::start().await;
    let id = s
        .gql(
            "mutation { createCampaign(input: { name: \"会员日\" }) { id } }",
            json!({}),
        )
        .await["createCampaign"]["id"]
        .clone();
    let now = chrono::Utc::now().to_rfc3339();
    s.gql(SCHEDULE, json!({ "id": id, "at": now })).await;
    let running = eventually(15, || async {
        (status(&s, &id).await == "RUNNING").then_some(())
    })
    .await;
    assert!(
        running.is_some(),
        "the scheduler did not start the campaign:\n{}",
        s.log()
    );
    assert_eq!(
        s.gql(PAUSE, json!({ "id": id })).await["pauseCampaign"]["status"],
        "PAUSED"
    );
    illegal(&s, PAUSE, &id, json!({})).await;
    assert_eq!(
        s.gql(RESUME, json!({ "id": id })).await["resumeCampaign"]["status"],
        "RUNNING"
    );
    assert_eq!(
        s.gql(COMPLETE, json!({ "id": id })).await["completeCampaign"]["status"],
        "COMPLETED"
    );
    illegal(&s, RESUME, &id, json!({})).await;
    assert_eq!(status(&s, &id).await, "COMPLETED");
}

#[tokio::test]
async fn campaign_settings_are_validated_and_updated() {
    let s = Server::start().await;
    let c1 = s
        .gql(
            "mutation { createContent(input: { title: \"面霜\", body: \"冬季修护\" }) { id } }",
            json!({}),
        )
        .await["createContent"]["id"]
        .clone();
    let c2 = s
        .gql(
            "mutation { createContent(input: { title: \"精华\", body: \"焕亮\" }) { id } }",
            json!({}),
        )
        .await["createContent"]["id"]
        .clone();
    let seg = s.gql("mutation { createSegment(input: { name: \"全部女性\", filter: { field: \"gender\", op: EQ, value: \"female\" } }) { id } }", json!({})).await["createSegment"]["id"].clone();
    let id = s
        .gql(
            "mutation { createCampaign(input: { name: \"x\" }) { id } }",
            json!({}),
        )
        .await["createCampaign"]["id"]
        .clone();

    let q = "mutation($id: ID!, $i: UpdateCampaignInput!) { updateCampaign(id: $id, input: $i) { name budget segment { name } contents { title } frequencyCap { count perHours } } }";
    let d = s.gql(q, json!({ "id": id, "i": { "name": "冬季大促", "budget": 12345.67, "segmentId": seg, "contentIds": [c2, c1], "frequencyCap": { "count": 2, "perHours": 48 } } })).await;
    let u = &d["updateCampaign"];
    assert_eq!(u["name"], "冬季大促");
    assert_eq!(u["budget"], 12345.67);
    assert_eq!(u["segment"]["name"], "全部女性");
    assert_eq!(
        u["contents"],
        json!([{ "title": "精华" }, { "title": "面霜" }])
    );
    assert_eq!(u["frequencyCap"], json!({ "count": 2, "perHours": 48 }));

    for (input, field) in [
        (json!({ "budget": -1 }), "input.budget"),
        (json!({ "budget": 1.234 }), "input.budget"),
        (json!({ "name": "  " }), "input.name"),
        (
            json!({ "frequencyCap": { "count": 0, "perHours": 24 } }),
            "input.frequencyCap.count",
        ),
        (
            json!({ "contentIds": ["00000000-0000-7000-8000-000000000000"] }),
            "input.contentIds",
        ),
        (
            json!({ "segmentId": "00000000-0000-7000-8000-000000000000" }),
            "input.segmentId",
        ),
        (json!({ "endAt": "2001-01-01T00:00:00Z" }), "input.endAt"),
    ] {
        let body = s
            .err_as(
                Some(ADMIN_KEY),
                q,
                json!({ "id": id, "i": input }),
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
    // Nothing of the rejected updates stuck; null clears the segment.
    let d = s
        .gql(q, json!({ "id": id, "i": { "segmentId": null } }))
        .await;
    assert_eq!(d["updateCampaign"]["budget"], 12345.67);
    assert!(d["updateCampaign"]["segment"].is_null());
    assert_eq!(d["updateCampaign"]["contents"].as_array().unwrap().len(), 2);
}
