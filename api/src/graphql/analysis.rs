//! `analyzeText`: synchronous text analysis for integrations and quick checks.
use async_graphql::{Context, Enum, Object, SimpleObject};

use crate::{
    context::ContextExt,
    error::{AppError, GqlResult},
};

pub const MAX_TEXTS: usize = 256;
pub const MAX_CHARS: usize = 5000;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SentimentLabel {
    Positive,
    Neutral,
    Negative,
}

#[derive(SimpleObject)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// Probability that the text is positive, in [0, 1].
    pub score: f64,
    /// The sentiment head that gave the score (a `modelVersions` version of
    /// kind SENTIMENT): the account's own retrained head or the platform's.
    pub model: String,
}

#[derive(SimpleObject)]
pub struct TextAnalysis {
    pub text: String,
    pub sentiment: Sentiment,
    /// TF-IDF keywords (jieba).
    pub keywords: Vec<String>,
}

#[derive(Default)]
pub struct AnalysisQuery;

#[Object]
impl AnalysisQuery {
    /// Sentiment and keywords of up to 256 texts, in order.
    async fn analyze_text(
        &self,
        ctx: &Context<'_>,
        texts: Vec<String>,
    ) -> GqlResult<Vec<TextAnalysis>> {
        if texts.is_empty() || texts.len() > MAX_TEXTS {
            return Err(AppError::bad_input("texts", format!("1 to {MAX_TEXTS} texts")).into());
        }
        if let Some(i) = texts
            .iter()
            .position(|t| t.trim().is_empty() || t.chars().count() > MAX_CHARS)
        {
            return Err(AppError::bad_input(
                format!("texts[{i}]"),
                format!("1 to {MAX_CHARS} characters"),
            )
            .into());
        }
        let models = ctx.state().models.clone().ok_or_else(|| {
            AppError::Unavailable(
                "analyzeText needs the language models (started with LINGXI_MODELS=off) / 未加载语言模型".into(),
            )
        })?;
        let models = models.for_account(ctx.db(), ctx.tenant()?).await;
        let model = models.sentiment_model();
        let owned = texts.clone();
        let analysed =
            // ahead of jobs' encoder batches: the caller waits for the answer
            tokio::task::spawn_blocking(move || {
                worker::ml::interactive(|| worker::analysis::analyze(&*models, &owned))
            })
                .await
                .map_err(|e| AppError::Internal(e.into()))?
                .map_err(AppError::Internal)?;
        Ok(texts
            .into_iter()
            .zip(analysed)
            .map(|(text, a)| TextAnalysis {
                text,
                sentiment: Sentiment {
                    label: match a.label {
                        "POSITIVE" => SentimentLabel::Positive,
                        "NEGATIVE" => SentimentLabel::Negative,
                        _ => SentimentLabel::Neutral,
                    },
                    score: (f64::from(a.sentiment) * 10_000.0).round() / 10_000.0,
                    model: model.clone(),
                },
                keywords: a.keywords,
            })
            .collect())
    }
}
