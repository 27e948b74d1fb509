use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::{ADMIN_KEY, Server};
use tokio_tungstenite::tungstenite::Message;

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// graphql-transport-ws: auth in connection_init, then live updates.
#[tokio::test]
async fn campaign_updates_stream_over_websocket() {
    let s = Server::start().await;
    let id = s
        .gql(
            "mutation { createCampaign(input: { name: \"直播\" }) { id } }",
            json!({}),
        )
        .await["createCampaign"]["id"]
        .clone();
    // Without a valid key the connection is refused at init.
    let mut ws = s.ws("lx_wrong").await;
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer in time");
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert!(frame.reason.contains("authentication"), "{frame:?}")
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    let mut ws = s.ws(ADMIN_KEY).await;
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    ws.send(Message::text(json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription($id: ID!) { campaignUpdated(id: $id) { name status } }", "variables": { "id": id } } }).to_string())).await.unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(
        first["payload"]["data"]["campaignUpdated"]["status"], "DRAFT",
        "{first}"
    );
    s.gql(
        "mutation($id: ID!) { archiveCampaign(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let next = next_json(&mut ws).await;
    assert_eq!(
        next["payload"]["data"]["campaignUpdated"]["status"], "ARCHIVED",
        "{next}"
    );
}

async fn metric(s: &Server, name: &str) -> Option<f64> {
    tests::metric(&s.metrics().await, name)
}

/// Several subscriptions share the process's one watcher: it follows each
/// row once, wakes only the subscriptions whose row changed, and forgets
/// the rows when their subscribers leave.
#[tokio::test]
async fn subscriptions_share_one_watcher_and_wake_only_for_their_row() {
    let s = Server::start().await;
    let mut ids = Vec::new();
    for name in ["春季上新", "会员日"] {
        ids.push(
            s.gql(
                "mutation($n: String!) { createCampaign(input: { name: $n }) { id } }",
                json!({ "n": name }),
            )
            .await["createCampaign"]["id"]
                .clone(),
        );
    }
    let mut ws = s.ws(ADMIN_KEY).await;
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    // Two subscriptions on the first campaign, one on the second.
    for (sub, id) in [("a1", &ids[0]), ("a2", &ids[0]), ("b", &ids[1])] {
        ws.send(Message::text(json!({ "id": sub, "type": "subscribe", "payload": { "query": "subscription($id: ID!) { campaignUpdated(id: $id) { name } }", "variables": { "id": id } } }).to_string())).await.unwrap();
    }
    let mut first = Vec::new();
    for _ in 0..3 {
        let m = next_json(&mut ws).await;
        assert_eq!(m["type"], "next", "{m}");
        first.push(m["id"].as_str().unwrap().to_owned());
    }
    first.sort();
    assert_eq!(
        first,
        ["a1", "a2", "b"],
        "each subscription starts with its row"
    );
    assert_eq!(
        metric(&s, "lingxi_subscription_rows_watched").await,
        Some(2.0),
        "two rows followed for three subscriptions"
    );

    s.gql(
        "mutation($id: ID!) { updateCampaign(id: $id, input: { name: \"会员日·加场\" }) { id } }",
        json!({ "id": ids[1] }),
    )
    .await;
    let m = next_json(&mut ws).await;
    assert_eq!(
        m["id"], "b",
        "only the second campaign's subscriber wakes: {m}"
    );
    assert_eq!(
        m["payload"]["data"]["campaignUpdated"]["name"],
        "会员日·加场"
    );

    s.gql(
        "mutation($id: ID!) { updateCampaign(id: $id, input: { name: \"春季上新·二期\" }) { id } }",
        json!({ "id": ids[0] }),
    )
    .await;
    let mut woke = Vec::new();
    for _ in 0..2 {
        let m = next_json(&mut ws).await;
        assert_eq!(
            m["payload"]["data"]["campaignUpdated"]["name"], "春季上新·二期",
            "{m}"
        );
        woke.push(m["id"].as_str().unwrap().to_owned());
    }
    woke.sort();
    assert_eq!(
        woke,
        ["a1", "a2"],
        "both subscribers of the first campaign wake"
    );

    // Completing a row's only subscription forgets that row alone.
    ws.send(Message::text(
        json!({ "id": "b", "type": "complete" }).to_string(),
    ))
    .await
    .unwrap();
    let one = tests::eventually(10, || async {
        (metric(&s, "lingxi_subscription_rows_watched").await == Some(1.0)).then_some(())
    })
    .await;
    assert!(one.is_some(), "the second campaign is no longer followed");
    ws.close(None).await.unwrap();
    let forgotten = tests::eventually(10, || async {
        (metric(&s, "lingxi_subscription_rows_watched").await == Some(0.0)).then_some(())
    })
    .await;
    assert!(
        forgotten.is_some(),
        "a closed connection leaves no watched rows"
    );
}
