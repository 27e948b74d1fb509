use serde_json::json;
use tests::{ADMIN_KEY, Server};

const VIEWER: &str = "{ viewer { role operator account { id name } } }";

#[tokio::test]
async fn requests_without_a_valid_key_are_unauthenticated() {
    let s = Server::start().await;
    s.err_as(None, VIEWER, json!({}), "UNAUTHENTICATED").await;
    s.err_as(Some("lx_wrong"), VIEWER, json!({}), "UNAUTHENTICATED")
        .await;
    s.err_as(
        Some(""),
        "{ campaigns { totalCount } }",
        json!({}),
        "UNAUTHENTICATED",
    )
    .await;
    // Mutations too, and nothing is created.
    s.err_as(
        None,
        "mutation { createCampaign(input: { name: \"x\" }) { id } }",
        json!({}),
        "UNAUTHENTICATED",
    )
    .await;
    assert_eq!(
        s.gql("{ campaigns { totalCount } }", json!({})).await["campaigns"]["totalCount"],
        0
    );
    // The schema itself is public, for GraphiQL and codegen.
    let body = s
        .gql_as(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn each_role_gets_exactly_its_rights() {
    let s = Server::start().await;
    let viewer = s.gql(VIEWER, json!({})).await;
    assert_eq!(viewer["viewer"]["role"], "ADMIN");
    assert_eq!(viewer["viewer"]["operator"], true);

    let manager = s.new_key(ADMIN_KEY, "MANAGER").await;
    let integration = s.new_key(ADMIN_KEY, "INTEGRATION").await;
    assert_eq!(
        s.ok_as(&manager, VIEWER, json!({})).await["viewer"]["role"],
        "MANAGER"
    );

    // MANAGER: campaigns yes, keys and accounts no.
    let create = "mutation { createCampaign(input: { name: \"春季上新\" }) { id status } }";
    let c = s.ok_as(&manager, create, json!({})).await;
    assert_eq!(c["createCampaign"]["status"], "DRAFT");
    s.err_as(
        Some(&manager),
        "mutation { createApiKey(input: { name: \"x\", role: ADMIN }) { secret } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;
    s.err_as(
        Some(&manager),
        "{ apiKeys { totalCount } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;

    // INTEGRATION: read segments and members, nothing else.
    s.ok_as(
        &integration,
        "{ members { totalCount } segments { totalCount } }",
        json!({}),
    )
    .await;
    s.err_as(
        Some(&integration),
        "{ campaigns { totalCount } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;
    s.err_as(Some(&integration), create, json!({}), "FORBIDDEN")
        .await;
    s.err_as(
        Some(&integration),
        "mutation { importMembers(input: { format: CSV, data: \"openid\\na\" }) { accepted } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;
    assert_eq!(
        s.gql("{ members { totalCount } }", json!({})).await["members"]["totalCount"],
        0
    );

    // Only the operator creates accounts; a new account's admin is not the operator.
    let (_, other_admin) = s.new_account("第二品牌").await;
    assert_eq!(
        s.ok_as(&other_admin, VIEWER, json!({})).await["viewer"]["operator"],
        false
    );
    s.err_as(
        Some(&other_admin),
        "mutation { createAccount(input: { name: \"x\" }) { adminKey } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;
    s.err_as(
        Some(&manager),
        "mutation { createAccount(input: { name: \"x\" }) { adminKey } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;
}

#[tokio::test]
async fn revoked_keys_stop_working_and_secrets_are_stored_hashed() {
    let s = Server::start().await;
    let d = s.gql("mutation { createApiKey(input: { name: \"ci\", role: MANAGER }) { key { id role } secret } }", json!({})).await;
    let secret = d["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let id = d["createApiKey"]["key"]["id"].as_str().unwrap().to_owned();
    s.ok_as(&secret, VIEWER, json!({})).await;
    let stored = s
        .sql_count(&format!(
            "SELECT COUNT(*) FROM api_key WHERE secret_hash = '{secret}'"
        ))
        .await;
    assert_eq!(stored, 0, "the secret itself is never stored");
    let keys = s
        .gql(
            "{ apiKeys { totalCount edges { node { id name role } } } }",
            json!({}),
        )
        .await;
    assert_eq!(keys["apiKeys"]["totalCount"], 2);

    let r = s
        .gql(
            "mutation($id: ID!) { revokeApiKey(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r["revokeApiKey"], true);
    s.err_as(Some(&secret), VIEWER, json!({}), "UNAUTHENTICATED")
        .await;
}

#[tokio::test]
async fn wechat_settings_are_validated_and_secrets_never_read_back() {
    let s = Server::start().await;
    let q = "mutation($i: WechatConfigInput!) { configureWechat(input: $i) { wechat { appId mode configured } } }";
    let bad =
        json!({ "i": { "appId": "nope", "appSecret": "s", "token": "tok123", "mode": "PLAIN" } });
    let body = s.err_as(Some(ADMIN_KEY), q, bad, "BAD_USER_INPUT").await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "input.appId");
    let no_aes = json!({ "i": { "appId": "wx1234567890abcdef", "appSecret": "s3cr3t", "token": "tok123", "mode": "SAFE" } });
    s.err_as(Some(ADMIN_KEY), q, no_aes, "BAD_USER_INPUT").await;
    let ok = json!({ "i": { "appId": "wx1234567890abcdef", "appSecret": "s3cr3t", "token": "tok123",
        "encodingAesKey": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "mode": "SAFE" } });
    let d = s.gql(q, ok).await;
    assert_eq!(d["configureWechat"]["wechat"]["configured"], true);
    assert_eq!(d["configureWechat"]["wechat"]["mode"], "SAFE");
    // The type has no field for the secret, token or AES key.
    let body = s
        .gql_as(
            Some(ADMIN_KEY),
            "{ viewer { account { wechat { appSecret } } } }",
            json!({}),
        )
        .await;
    assert_eq!(tests::error_code(&body).as_deref(), Some("BAD_USER_INPUT"));
    let manager = s.new_key(ADMIN_KEY, "MANAGER").await;
    s.err_as(Some(&manager), q, json!({ "i": { "appId": "wx1234567890abcdef", "appSecret": "x", "token": "tok123", "mode": "PLAIN" } }), "FORBIDDEN").await;
}

/// API processes started at once on an empty database bootstrap it once:
/// one account, one operator key, and every process serves.
#[tokio::test]
async fn apis_starting_together_on_an_empty_database_bootstrap_it_once() {
    let db = tests::FreshDatabase::new().await;
    let mut apis: Vec<_> = (1..=3).map(|i| db.spawn_api(i)).collect();
    tests::all_started(&mut apis, |i| db.api_log(i), "Lingxi listening on").await;
    assert_eq!(db.count("SELECT COUNT(*) FROM account").await, 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM api_key WHERE operator")
            .await,
        1
    );
}
