//! The GraphQL schema, split by domain.
use async_graphql::{ID, MergedObject, Schema, SchemaBuilder};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub mod accounts;
pub mod analysis;
pub mod audiences;
pub mod campaigns;
pub mod connection;
pub mod contents;
pub mod imports;
pub mod jobs;
pub mod loaders;
pub mod models;
pub mod preview;
pub mod schedules;
pub mod segments;
pub mod sentiment;
pub mod subscriptions;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    accounts::AccountsQuery,
    campaigns::CampaignsQuery,
    contents::ContentsQuery,
    audiences::AudiencesQuery,
    segments::SegmentsQuery,
    jobs::JobsQuery,
    schedules::SchedulesQuery,
    analysis::AnalysisQuery,
    models::ModelsQuery,
    sentiment::SentimentQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    accounts::AccountsMutation,
    campaigns::CampaignsMutation,
    contents::ContentsMutation,
    audiences::AudiencesMutation,
    imports::ImportsMutation,
    segments::SegmentsMutation,
    jobs::JobsMutation,
    schedules::SchedulesMutation,
    sentiment::SentimentMutation,
    models::ModelsMutation,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, subscriptions::SubscriptionRoot>;

/// The schema with its limits and extensions but no data attached: shared
/// by the server and the SDL export test.
pub fn schema_builder(
    max_depth: usize,
    max_complexity: usize,
) -> SchemaBuilder<QueryRoot, MutationRoot, subscriptions::SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        subscriptions::SubscriptionRoot,
    )
    .extension(crate::policy::Authorization)
    .limit_depth(max_depth)
    .limit_complexity(max_complexity)
}

/// The SDL as committed in `frontend-schema/schema.graphql`.
pub fn sdl() -> String {
    schema_builder(usize::MAX, usize::MAX)
        .finish()
        .sdl_with_options(
            async_graphql::SDLExportOptions::new()
                .sorted_fields()
                .sorted_enum_items(),
        )
}

/// Parses a GraphQL `ID` argument.
///
/// # Errors
/// `BAD_USER_INPUT` naming `field` when it is not an id of this API.
pub fn parse_id(id: &ID, field: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::bad_input(field, "not an id of this API"))
}

pub fn to_id(id: Uuid) -> ID {
    ID(id.to_string())
}

/// Trims and bounds a required human-entered string.
///
/// # Errors
/// `BAD_USER_INPUT` naming `field`.
pub fn required_text(field: &str, value: &str, max_chars: usize) -> AppResult<String> {
    let t = value.trim();
    if t.is_empty() {
        return Err(AppError::bad_input(field, "must not be empty / 不能为空"));
    }
    if t.chars().count() > max_chars {
        return Err(AppError::bad_input(
            field,
            format!("at most {max_chars} characters / 过长"),
        ));
    }
    Ok(t.to_owned())
}
