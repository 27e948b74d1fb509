//! Loading the language models for a process, per configuration.
use crate::{Config, analysis::SharedModels};

/// The models for this process, or `None` with `LINGXI_MODELS=off`.
///
/// # Errors
/// Models are on but missing or corrupt: the message names `make setup`.
pub fn load(cfg: &Config) -> anyhow::Result<Option<SharedModels>> {
    if !cfg.models_enabled {
        tracing::warn!("LINGXI_MODELS=off: text analysis and personas without language models");
        return Ok(None);
    }
    tracing::warn!(dir = %cfg.models_dir.display(), "the model runtime is not built into this version yet");
    Ok(None)
}
