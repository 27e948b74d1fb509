use serde_json::json;
use tests::{ADMIN_KEY, Server};

const MEMBERS_CSV: &str = "\
openid,nickname,gender,age,city,province,tags,subscribed,subscribedAt
o_001,王小雨,female,28,上海,上海,护肤|母婴,true,2026-01-05T08:00:00Z
o_002,李浩,male,notanumber,北京,北京,,true,
o_003,张婷,女,33,杭州,浙江,护肤,false,2026-03-01 09:30:00
,没有openid,female,20,上海,上海,,true,
o_005,刘杰,unknown,41,成都,四川,数码| 游戏 ,true,
o_006,陈静,female,25,广州,广东,,maybe,
o_007,\"杨,逗号\",female,30,深圳,广东,,true,
o_008,too,many,columns,here,x,y,z,w,v
";

const LIST: &str = "{ members(first: 100) { totalCount edges { node { openid nickname gender age city province tags subscribed subscribedAt } } } }";

#[tokio::test]
async fn csv_import_reports_bad_rows_by_line_and_keeps_the_good_ones() {
    let s = Server::start().await;
    let r = s
        .import(ADMIN_KEY, "importMembers", "CSV", MEMBERS_CSV)
        .await;
    assert_eq!(r["accepted"], 4, "{r}");
    assert_eq!(r["rejectedCount"], 4);
    let lines: Vec<i64> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 5, 7, 9], "{r}");
    let msg = r["rejected"][0]["message"].as_str().unwrap();
    assert!(msg.contains("age"), "the message names the column: {msg}");

    let d = s.gql(LIST, json!({})).await;
    assert_eq!(d["members"]["totalCount"], 4);
    let first = &d["members"]["edges"][0]["node"];
    assert_eq!(first["openid"], "o_001");
    assert_eq!(first["nickname"], "王小雨");
    assert_eq!(first["tags"], json!(["护肤", "母婴"]));
    assert_eq!(first["age"], 28);
    let zhang = &d["members"]["edges"][1]["node"];
    assert_eq!(zhang["gender"], "female", "女 is female");
    assert_eq!(zhang["subscribed"], false);
    assert_eq!(
        zhang["subscribedAt"], "2026-03-01T01:30:00+00:00",
        "naive times are China Standard Time"
    );
    let liu = &d["members"]["edges"][2]["node"];
    assert_eq!(liu["tags"], json!(["数码", "游戏"]));
    let yang = &d["members"]["edges"][3]["node"];
    assert_eq!(yang["nickname"], "杨,逗号");
}

#[tokio::test]
async fn reimporting_changes_nothing_and_partial_files_keep_stored_values() {
    let s = Server::start().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", MEMBERS_CSV)
        .await;
    let before = s.gql(LIST, json!({})).await;
    let again = s
        .import(ADMIN_KEY, "importMembers", "CSV", MEMBERS_CSV)
        .await;
    assert_eq!(again["accepted"], 4);
    assert_eq!(
        s.gql(LIST, json!({})).await,
        before,
        "a re-import changes nothing"
    );

    // A file with fewer columns updates only those columns.
    let r = s
        .import(
            ADMIN_KEY,
            "importMembers",
            "CSV",
            "openid,city\no_001,苏州\n",
        )
        .await;
    assert_eq!(r["accepted"], 1);
    let d = s.gql(LIST, json!({})).await;
    let m = &d["members"]["edges"][0]["node"];
    assert_eq!(m["city"], "苏州");
    assert_eq!(m["nickname"], "王小雨");
    assert_eq!(m["age"], 28);
    assert_eq!(d["members"]["totalCount"], 4);
}

#[tokio::test]
async fn jsonl_import_accepts_typed_values_and_reports_bad_lines() {
    let s = Server::start().await;
    let data = [
        r#"{"openid":"j_1","nickname":"小周","age":31,"tags":["旅游","美食"],"subscribed":true}"#,
        r#"{"openid":"j_2","age":"abc"}"#,
        "",
        r#"not json"#,
        r#"{"openid":"j_4","colour":"red"}"#,
        r#"[1,2]"#,
        r#"{"openid":"j_6","gender":"male","city":"西安"}"#,
    ]
    .join("\n");
    let r = s.import(ADMIN_KEY, "importMembers", "JSONL", &data).await;
    assert_eq!(r["accepted"], 2, "{r}");
    let lines: Vec<i64> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5, 6]);
    let d = s.gql(LIST, json!({})).await;
    assert_eq!(
        d["members"]["edges"][0]["node"]["tags"],
        json!(["旅游", "美食"])
    );
}

#[tokio::test]
async fn a_bad_header_rejects_the_file_and_stores_nothing() {
    let s = Server::start().await;
    let q =
        "mutation($d: String!) { importMembers(input: { format: CSV, data: $d }) { accepted } }";
    let body = s
        .err_as(
            Some(ADMIN_KEY),
            q,
            json!({ "d": "openid,colour\na,red\n" }),
            "BAD_USER_INPUT",
        )
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    s.err_as(
        Some(ADMIN_KEY),
        q,
        json!({ "d": "nickname\n小雨\n" }),
        "BAD_USER_INPUT",
    )
    .await;
    s.err_as(Some(ADMIN_KEY), q, json!({ "d": "   " }), "BAD_USER_INPUT")
        .await;
    s.err_as(
        Some(ADMIN_KEY),
        "mutation { importMembers(input: { format: XML, data: \"x\" }) { accepted } }",
        json!({}),
        "BAD_USER_INPUT",
    )
    .await;
    assert_eq!(s.gql(LIST, json!({})).await["members"]["totalCount"], 0);
}

#[tokio::test]
async fn events_messages_and_relations_import_with_references_checked() {
    let s = Server::start().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_1\no_2\n")
        .await;
    let camp = s
        .gql(
            "mutation { createCampaign(input: { name: \"c\" }) { id } }",
            json!({}),
        )
        .await["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = format!(
        "openid,type,at,contentId,campaignId,value\n\
         o_1,view,2026-11-01T08:00:00Z,,,\n\
         o_1,purchase,1764230400,,{camp},199.5\n\
         o_9,view,2026-11-01T08:00:00Z,,,\n\
         o_2,click,someday,,,\n\
         o_2,click,2026-11-02T08:00:00Z,,00000000-0000-7000-8000-000000000000,\n\
         o_2,share,2026-11-02T08:00:00Z,,,\n"
    );
    let r = s.import(ADMIN_KEY, "importEvents", "CSV", &events).await;
    assert_eq!(r["accepted"], 3, "{r}");
    let lines: Vec<i64> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5, 6]);
    // Idempotent.
    assert_eq!(
        s.import(ADMIN_KEY, "importEvents", "CSV", &events).await["accepted"],
        3
    );
    let count = "{ members { edges { node { openid events { totalCount } messages { totalCount edges { node { kind text } } } friends } } } }";
    let d = s.gql(count, json!({})).await;
    assert_eq!(d["members"]["edges"][0]["node"]["events"]["totalCount"], 2);
    assert_eq!(d["members"]["edges"][1]["node"]["events"]["totalCount"], 1);

    let messages = "{\"openid\":\"o_1\",\"kind\":\"moment\",\"text\":\"这款面霜很好用\",\"at\":\"2026-11-01T08:00:00Z\"}\n\
                    {\"openid\":\"o_1\",\"kind\":\"letter\",\"text\":\"x\",\"at\":\"2026-11-01T08:00:00Z\"}\n\
                    {\"openid\":\"o_2\",\"text\":\"\",\"at\":\"2026-11-01T08:00:00Z\"}\n\
                    {\"openid\":\"o_2\",\"text\":\"物流太慢了\",\"at\":\"2026-11-03 12:00:00\"}";
    let r = s
        .import(ADMIN_KEY, "importMessages", "JSONL", messages)
        .await;
    assert_eq!(r["accepted"], 2, "{r}");
    assert_eq!(
        s.import(ADMIN_KEY, "importMessages", "JSONL", messages)
            .await["accepted"],
        2
    );

    let relations = "openid,friend_openid\no_1,o_2\no_1,o_2\no_2,o_2\no_2,wx_outsider\n";
    let r = s
        .import(ADMIN_KEY, "importRelations", "CSV", relations)
        .await;
    assert_eq!(r["accepted"], 3, "{r}");
    assert_eq!(r["rejected"][0]["line"], 4);

    let d = s.gql(count, json!({})).await;
    let o1 = &d["members"]["edges"][0]["node"];
    let o2 = &d["members"]["edges"][1]["node"];
    assert_eq!(o1["messages"]["totalCount"], 1);
    assert_eq!(o1["messages"]["edges"][0]["node"]["kind"], "moment");
    assert_eq!(o2["messages"]["totalCount"], 1);
    assert_eq!(o1["friends"], json!(["o_2"]));
    assert_eq!(o2["friends"], json!(["wx_outsider"]));
}

/// On PostgreSQL an import keeps the planner's statistics of the table it
/// grows current (autovacuum would analyse it a minute or more later, and
/// until then each chunk's lookups are planned for an empty table).
#[tokio::test]
async fn on_postgresql_an_import_keeps_the_planner_statistics_current() {
    if tests::backend() != "postgres" {
        eprintln!("skipped: PostgreSQL only (LINGXI_TEST_BACKEND=postgres)");
        return;
    }
    let s = Server::start().await;
    let csv: String = std::iter::once("openid,city\n".to_owned())
        .chain((0..1_200).map(|i| format!("o_stat{i:04},上海\n")))
        .collect();
    let r = s.import(ADMIN_KEY, "importMembers", "CSV", &csv).await;
    assert_eq!(r["accepted"], 1_200, "{r}");
    // ANALYZE writes pg_class.reltuples (-1 until a table is analysed).
    let counted = s
        .sql_count("SELECT reltuples::bigint FROM pg_class WHERE relname = 'member'")
        .await;
    assert!(counted >= 1_000, "statistics count {counted} members");
}
