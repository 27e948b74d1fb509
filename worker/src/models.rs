//! Loading the language models for a process, per configuration: the e5
//! embedding model (`ml::Models`) and the sentiment head (`sentiment::Head`,
//! the shipped one or the active retrained version).
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::{
    Config,
    analysis::TextModels,
    ml::{self, Output},
    registry::{self, NewVersion, kind},
    sentiment::{self, EmbeddingPrefix, Head},
};

pub type SharedModels = Arc<LoadedModels>;

pub struct LoadedModels {
    pub embed: ml::Models,
    head: RwLock<Arc<Head>>,
}

impl LoadedModels {
    pub fn head(&self) -> Arc<Head> {
        self.head
            .read()
            .map(|h| Arc::clone(&h))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Swaps in another sentiment head (a promoted retrain) without a restart.
    pub fn set_head(&self, head: Head) {
        if let Ok(mut h) = self.head.write() {
            *h = Arc::new(head);
        }
    }

    /// Records the installed models as model versions (once), and loads the
    /// active sentiment head when it is not the one in memory.
    ///
    /// # Errors
    /// Database errors, or an active head file that cannot be read.
    pub async fn sync_registry(&self, db: &DatabaseConnection) -> anyhow::Result<()> {
        let tx = registry::begin_locked(db).await?;
        let active = self.record_versions(&tx).await?;
        tx.commit().await?;
        if let Some(active) = active
            && active.version != self.head().version()
        {
            let head = if active.path == BUILTIN {
                Head::shipped()
            } else {
                let onnx = std::path::PathBuf::from(&active.path);
                Head::from_files(&onnx, &onnx.with_extension("json")).with_context(|| {
                    format!("active sentiment head {} cannot be loaded", active.version)
                })?
            };
            tracing::info!(version = head.version(), "sentiment head loaded");
            self.set_head(head);
        }
        let head = self.head();
        let version = self
            .embed
            .output_model(head.spec().embedding_output)
            .unwrap_or("none (no sentiment adapter installed)");
        if head.spec().embedding_model != version {
            // Still usable (the variants' embeddings are close), but its calibration
            // was measured on the other one: retrain to match.
            tracing::warn!(
                head = head.version(),
                trained_on = %head.spec().embedding_model,
                loaded = %version,
                "the sentiment head was trained on other embeddings than the loaded model; run RETRAIN_SENTIMENT"
            );
        }
        Ok(())
    }

    /// Records the installed models (once) and settles which sentiment
    /// head is active; returns it. Inside the registry's lock.
    async fn record_versions(
        &self,
        db: &impl ConnectionTrait,
    ) -> anyhow::Result<Option<entity::model_version::Model>> {
        let m = self.embed.manifest();
        let version = self.embed.embedding_model().to_owned();
        let sha = m
            .models
            .values()
            .find(|e| e.version == version)
            .map(|e| e.sha256.clone())
            .unwrap_or_default();
        registry::ensure(
            db,
            NewVersion {
                kind: kind::EMBEDDING,
                version: &version,
                path: "models dir",
                sha256: &sha,
                metrics: serde_json::json!({ "dims": self.embed.dims() }),
            },
            true,
        )
        .await?;
        // The description only: `sync_registry` decodes the weights only if
        // the built-in head becomes active while another one is in memory
        // (at start the built-in one already is).
        let shipped = Head::shipped_meta();
        let builtin = registry::ensure(
            db,
            NewVersion {
                kind: kind::SENTIMENT,
                version: &shipped.version,
                path: BUILTIN,
                sha256: &shipped.onnx.sha256,
                metrics: sentiment::registry_metrics(&shipped),
            },
            true,
        )
        .await?;
        let mut active = registry::active(db, kind::SENTIMENT).await?;
        if let Some(a) = &active
            && a.version != shipped.version
            && (a.path == BUILTIN
                || registry::balanced_accuracy(&shipped.metrics)
                    > registry::balanced_accuracy(&a.metrics))
        {
            // An earlier release's built-in head (its weights left with that
            // release), or a retrained head that this release's built-in one
            // beats on the same validation split: the rule retraining follows.
            tracing::info!(
                from = %a.version,
                to = %shipped.version,
                "this release's built-in sentiment head replaces the active one"
            );
            registry::activate(db, builtin.id).await?;
            active = Some(builtin);
        }
        Ok(active)
    }
}

impl TextModels for LoadedModels {
    fn embedding_model(&self) -> String {
        self.embed.embedding_model().to_owned()
    }
    fn embed_passages(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(self.embed.embed_passages(texts)?)
    }
    fn embed_queries(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(self.embed.embed_queries(texts)?)
    }
    fn embed_and_score(&self, texts: &[String]) -> anyhow::Result<(Vec<Vec<f32>>, Vec<f32>)> {
        let head = self.head();
        let spec = head.spec();
        if spec.embedding_prefix != EmbeddingPrefix::Query {
            // a head on the other prefix needs a pass of its own
            let head_input = sentiment::head_input(&self.embed, spec, texts)?;
            let p = head.predict(texts, &head_input)?;
            return Ok((self.embed.embed_queries(texts)?, p));
        }
        let mut outputs = vec![Output::Embedding];
        if spec.embedding_output != Output::Embedding {
            outputs.push(spec.embedding_output);
        }
        let mut vectors = self.embed.embed_outputs(texts, true, &outputs)?.into_iter();
        let embeddings = vectors.next().unwrap_or_default();
        let p = match vectors.next() {
            Some(head_input) => head.predict(texts, &head_input)?,
            None => head.predict(texts, &embeddings)?,
        };
        Ok((embeddings, p))
    }
    fn sentiment_model(&self) -> String {
        self.head().version().to_owned()
    }
    fn label(&self, p: f32, text: &str) -> &'static str {
        self.head().label(p, text)
    }
}

/// The registry path of the head compiled into this release.
const BUILTIN: &str = "builtin";

/// The models for this process, or `None` with `LINGXI_MODELS=off`.
///
/// # Errors
/// Models are on but missing or corrupt: the message names `make setup`.
pub fn load(cfg: &Config) -> anyhow::Result<Option<SharedModels>> {
    if !cfg.models_enabled {
        tracing::warn!("LINGXI_MODELS=off: no text analysis; personas use the category lexicon");
        return Ok(None);
    }
    let embed = ml::Models::load(&cfg.models_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let head = Head::shipped();
    // Models installed by a setup from before the sentiment adapter: say so
    // now rather than at the first analysis.
    embed.output_model(head.spec().embedding_output)?;
    tracing::info!(
        embedding = embed.embedding_model(),
        sentiment = head.version(),
        "models loaded"
    );
    Ok(Some(Arc::new(LoadedModels {
        embed,
        head: RwLock::new(Arc::new(head)),
    })))
}
