use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::{ADMIN_KEY, Server};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

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
    let url = format!("{}/graphql/ws", s.base.replace("http://", "ws://"));
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );

    // Without a valid key the connection is refused at init.
    let (mut ws, _) = tokio_tungstenite::connect_async(req.clone()).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer lx_wrong" } })
            .to_string(),
    ))
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer in time");
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert!(frame.reason.contains("authentication"), "{frame:?}")
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {ADMIN_KEY}") } }).to_string())).await.unwrap();
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
