use std::time::Duration;

use serde_json::{Value, json};
use tests::{ADMIN_KEY, Options, Server};

async fn still_serving(s: &Server) {
    let h: Value = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(
        s.gql("{ viewer { role } }", json!({})).await["viewer"]["role"],
        "ADMIN"
    );
}

#[tokio::test]
async fn invalid_utf8_and_malformed_bodies_get_400_with_a_code() {
    let s = Server::start().await;
    let post = |body: Vec<u8>| {
        s.client
            .post(format!("{}/graphql", s.base))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let mut bad = br#"{"query":"{ viewer { role } }","variables":{"x":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, b'"', b'}', b'}']);
    let res = post(bad).await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );

    let res = post(b"{ not json".to_vec()).await.unwrap();
    assert_eq!(res.status(), 400);
    // Valid JSON, invalid GraphQL: a GraphQL error with a code.
    let body = s
        .gql_as(Some(ADMIN_KEY), "{ viewer { role ", json!({}))
        .await;
    assert_eq!(tests::error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let body = s
        .gql_as(
            Some(ADMIN_KEY),
            "query($n: Int!) { members(first: $n) { totalCount } }",
            json!({ "n": "ten" }),
        )
        .await;
    assert_eq!(tests::error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    still_serving(&s).await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_nothing_is_stored() {
    let s = Server::start_with(Options {
        max_body_mb: Some(1),
        ..Default::default()
    })
    .await;
    let big: String = std::iter::once("openid\n".to_owned())
        .chain((0..120_000).map(|i| format!("o_{i:08}\n")))
        .collect();
    assert!(big.len() > 1024 * 1024);
    let res = s
        .client
        .post(format!("{}/graphql", s.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "query": "mutation($d: String!) { importMembers(input: { format: CSV, data: $d }) { accepted } }", "variables": { "d": big } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    still_serving(&s).await;
    assert_eq!(
        s.gql("{ members { totalCount } }", json!({})).await["members"]["totalCount"],
        0
    );
}

#[tokio::test]
async fn deep_or_complex_queries_are_refused() {
    let s = Server::start().await;
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(14),
        "} ".repeat(14)
    );
    let body = s.gql_as(Some(ADMIN_KEY), &deep, json!({})).await;
    assert_eq!(
        tests::error_code(&body).as_deref(),
        Some("QUERY_TOO_COMPLEX"),
        "{body}"
    );
    let wide: String = format!(
        "{{ {} }}",
        (0..400)
            .map(|i| format!(
                "a{i}: members(first: 500) {{ totalCount edges {{ node {{ openid city }} }} }}"
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let body = s.gql_as(Some(ADMIN_KEY), &wide, json!({})).await;
    assert_eq!(
        tests::error_code(&body).as_deref(),
        Some("QUERY_TOO_COMPLEX"),
        "{body}"
    );
}

#[tokio::test]
async fn health_metrics_graphiql_and_unknown_routes() {
    let s = Server::start().await;
    s.gql("{ viewer { role } }", json!({})).await;
    s.gql_as(None, "{ viewer { role } }", json!({})).await;
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("lingxi_http_requests_total{route=\"/graphql\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lingxi_graphql_errors_total{code=\"UNAUTHENTICATED\"} 1"),
        "{metrics}"
    );
    let page = s
        .client
        .get(format!("{}/graphql", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Lingxi"));
    let res = s
        .client
        .get(format!("{}/nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut s = Server::start().await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = s
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(exit.success(), "clean exit, got {exit:?}\n{}", s.log());
    assert!(s.log().contains("shutting down"));
}

#[tokio::test]
async fn batched_operations_each_get_an_answer() {
    let s = Server::start().await;
    let res: Value = s
        .client
        .post(format!("{}/graphql", s.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!([{ "query": "{ viewer { role } }" }, { "query": "{ campaigns { totalCount } }" }]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res[0]["data"]["viewer"]["role"], "ADMIN");
    assert_eq!(res[1]["data"]["campaigns"]["totalCount"], 0);
}
