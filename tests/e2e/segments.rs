use serde_json::json;
use tests::{ADMIN_KEY, Server};

const CREATE: &str = "mutation($n: String!, $f: SegmentFilter!) { createSegment(input: { name: $n, filter: $f }) { id name filter } }";

#[tokio::test]
async fn saved_segments_store_a_validated_filter() {
    let s = Server::start().await;
    let filter = json!({ "and": [
        { "field": "city", "op": "EQ", "value": "上海" },
        { "field": "age", "op": "GTE", "value": 25 },
        { "field": "age", "op": "LTE", "value": 35 },
        { "field": "interests", "op": "CONTAINS", "value": "美妆护肤" },
        { "not": { "field": "gender", "op": "IN", "value": ["male"] } },
        { "text": "面霜" },
        { "field": "sentiment", "op": "GT", "value": 0.6 }
    ]});
    let d = s
        .gql(CREATE, json!({ "n": "上海 25-35 护肤", "f": filter }))
        .await;
    assert_eq!(d["createSegment"]["filter"], filter);
    let list = s
        .gql(
            "{ segments { totalCount edges { node { name filter } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["segments"]["totalCount"], 1);
    assert_eq!(list["segments"]["edges"][0]["node"]["filter"], filter);
    // An integration key reads segments.
    let integration = s.new_key(ADMIN_KEY, "INTEGRATION").await;
    let d = s
        .ok_as(&integration, "{ segments { totalCount } }", json!({}))
        .await;
    assert_eq!(d["segments"]["totalCount"], 1);
}

#[tokio::test]
async fn bad_filters_name_the_field_and_store_nothing() {
    let s = Server::start().await;
    for (filter, field) in [
        (
            json!({ "field": "colour", "op": "EQ", "value": "red" }),
            "input.filter.field",
        ),
        (
            json!({ "field": "age", "op": "GT", "value": "old" }),
            "input.filter.value",
        ),
        (
            json!({ "field": "tags", "op": "GT", "value": 3 }),
            "input.filter.op",
        ),
        (
            json!({ "and": [{ "field": "city", "op": "EQ", "value": "上海" }, { "field": "city" }] }),
            "input.filter.and[1].op",
        ),
        (json!({ "or": [] }), "input.filter.or"),
        (
            json!({ "field": "city", "op": "IN", "value": "上海" }),
            "input.filter.value",
        ),
        (
            json!({ "field": "city", "op": "EQ", "value": "上海", "text": "x" }),
            "input.filter",
        ),
        (
            json!({ "similarTo": { "memberIds": ["nope"] } }),
            "input.filter.similarTo.memberIds[0]",
        ),
        (
            json!({ "similarTo": { "text": "护肤", "minScore": 3 } }),
            "input.filter.similarTo.minScore",
        ),
    ] {
        let body = s
            .err_as(
                Some(ADMIN_KEY),
                CREATE,
                json!({ "n": "x", "f": filter }),
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
    }
    // A wrong GraphQL type in the filter is rejected by the schema.
    s.err_as(
        Some(ADMIN_KEY),
        CREATE,
        json!({ "n": "x", "f": { "op": "ALMOST" } }),
        "BAD_USER_INPUT",
    )
    .await;
    assert_eq!(
        s.gql("{ segments { totalCount } }", json!({})).await["segments"]["totalCount"],
        0
    );
}
