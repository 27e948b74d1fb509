//! The four bulk imports.
use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};

use crate::{
    context::ContextExt,
    error::{AppError, GqlResult},
    service::imports::{
        self, Format, Importer, Outcome, events::EventsImport, members::MembersImport,
        messages::MessagesImport, relations::RelationsImport,
    },
};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ImportFormat {
    /// Header row, then one row per line.
    Csv,
    /// One JSON object per line, with the same keys as the CSV columns.
    Jsonl,
}

#[derive(InputObject)]
pub struct ImportInput {
    pub format: ImportFormat,
    pub data: String,
}

#[derive(SimpleObject)]
pub struct ImportRowError {
    /// 1-based; the CSV header is line 1.
    pub line: i32,
    pub message: String,
}

#[derive(SimpleObject)]
pub struct ImportResult {
    /// Rows stored (or already present: re-imports are idempotent).
    pub accepted: i32,
    /// The first 1000 rejected rows, by line.
    pub rejected: Vec<ImportRowError>,
    /// All rejected rows, listed or not.
    pub rejected_count: i32,
}

impl From<Outcome> for ImportResult {
    fn from(o: Outcome) -> Self {
        Self {
            accepted: o.accepted as i32,
            rejected_count: o.rejected_count as i32,
            rejected: o
                .rejected
                .into_iter()
                .map(|e| ImportRowError {
                    line: e.line as i32,
                    message: e.message,
                })
                .collect(),
        }
    }
}

pub(crate) async fn run_import<I: Importer + Sync>(
    ctx: &Context<'_>,
    importer: I,
    input: ImportInput,
    what: &'static str,
) -> GqlResult<ImportResult> {
    if input.data.trim().is_empty() {
        return Err(AppError::bad_input("input.data", "is empty").into());
    }
    let format = match input.format {
        ImportFormat::Csv => Format::Csv,
        ImportFormat::Jsonl => Format::Jsonl,
    };
    let started = std::time::Instant::now();
    let outcome = imports::run(ctx.db(), &importer, format, &input.data).await?;
    let metrics = &ctx.state().metrics;
    metrics.import_rows(what, outcome.accepted as u64, outcome.rejected_count as u64);
    tracing::info!(
        import = what,
        accepted = outcome.accepted,
        rejected = outcome.rejected_count,
        ms = started.elapsed().as_millis() as u64,
        "import finished"
    );
    Ok(outcome.into())
}

#[derive(Default)]
pub struct ImportsMutation;

#[Object]
impl ImportsMutation {
    /// Members, upserted by openid.
    async fn import_members(
        &self,
        ctx: &Context<'_>,
        input: ImportInput,
    ) -> GqlResult<ImportResult> {
        run_import(
            ctx,
            MembersImport {
                account_id: ctx.tenant()?,
            },
            input,
            "members",
        )
        .await
    }
    /// Events; duplicates are ignored.
    async fn import_events(
        &self,
        ctx: &Context<'_>,
        input: ImportInput,
    ) -> GqlResult<ImportResult> {
        run_import(
            ctx,
            EventsImport {
                account_id: ctx.tenant()?,
            },
            input,
            "events",
        )
        .await
    }
    /// Chat messages, Moments posts and comments; duplicates are ignored.
    async fn import_messages(
        &self,
        ctx: &Context<'_>,
        input: ImportInput,
    ) -> GqlResult<ImportResult> {
        run_import(
            ctx,
            MessagesImport {
                account_id: ctx.tenant()?,
            },
            input,
            "messages",
        )
        .await
    }
    /// Friend edges; duplicates are ignored.
    async fn import_relations(
        &self,
        ctx: &Context<'_>,
        input: ImportInput,
    ) -> GqlResult<ImportResult> {
        run_import(
            ctx,
            RelationsImport {
                account_id: ctx.tenant()?,
            },
            input,
            "relations",
        )
        .await
    }
}
