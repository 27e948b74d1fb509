use std::{env, fs, path::Path};

/// `frontend-schema/schema.graphql` is the live schema's SDL.
#[test]
fn frontend_schema_is_up_to_date() {
    let sdl = api::graphql::sdl();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend-schema/schema.graphql");
    if env::var_os("UPDATE_SCHEMA").is_some() {
        fs::write(&path, &sdl).unwrap();
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed != sdl {
        let diff: Vec<String> = committed
            .lines()
            .zip(sdl.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n- {a}\n+ {b}", i + 1))
            .collect();
        panic!(
            "frontend-schema/schema.graphql is stale: run `make schema`\n{}\n(committed {} lines, live {} lines)",
            diff.join("\n"),
            committed.lines().count(),
            sdl.lines().count()
        );
    }
}

/// The names API.md promises are in the schema.
#[test]
fn the_public_contract_names_exist() {
    let sdl = api::graphql::sdl();
    for name in [
        "viewer: Viewer!",
        "campaigns(",
        "campaign(id: ID!)",
        "contents(",
        "members(",
        "member(id: ID!)",
        "segments(",
        "createCampaign(input: CreateCampaignInput!): Campaign!",
        "updateCampaign(id: ID!, input: UpdateCampaignInput!)",
        "scheduleCampaign(id: ID!, startAt: DateTime!)",
        "pauseCampaign(id: ID!)",
        "createContent(input: CreateContentInput!)",
        "importMembers(input: ImportInput!): ImportResult!",
        "importEvents(",
        "importMessages(",
        "importRelations(",
        "recordEvents(events: [EventInput!]!): Int!",
        "deleteMember(id: ID!): Boolean!",
        "createSegment(input: CreateSegmentInput!)",
        "createApiKey(input: CreateApiKeyInput!): NewApiKey!",
        "createAccount(input: CreateAccountInput!): NewAccount!",
        "configureWechat(input: WechatConfigInput!): Account!",
        "revokeApiKey(id: ID!): Boolean!",
        "scalar JSON",
        "scalar DateTime",
        "enum Role",
        "enum CampaignStatus",
        "enum ImportFormat",
        "input SegmentFilter",
        "totalCount: Int!",
    ] {
        assert!(sdl.contains(name), "schema lacks {name}");
    }
}
