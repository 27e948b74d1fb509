//! ONNX Runtime for the sentiment head.
//!
//! ONNX Runtime allows one environment per process; `ml::environment`
//! owns it and `ml::Models::load` uses the same one, so the head's session
//! shares the library and the thread pool with the e5 sessions, whichever
//! comes first.
use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::ml;

/// The process's ONNX Runtime environment for the head: the one
/// `ml::Models::load` created, else (first call only) the one
/// `ml::environment` creates from the default models directory. `None`
/// when the models are not installed; [`super::Head::predict`] then
/// computes the same function in Rust.
pub fn environment() -> Option<&'static Environment> {
    static FALLBACK_REPORTED: OnceLock<()> = OnceLock::new();
    match ml::environment(&ml::default_models_dir()) {
        Ok(env) => Some(env),
        Err(e) => {
            FALLBACK_REPORTED.get_or_init(|| {
                tracing::warn!(
                    error = %e,
                    "no ONNX Runtime for the sentiment head: scoring it in Rust (same numbers)"
                );
            });
            None
        }
    }
}

/// Creates (or returns) the process's ONNX Runtime environment from the
/// models in `models_dir` (`make setup`), as `ml::Models::load` would.
///
/// # Errors
/// The models directory has no intact `libonnxruntime`, or it does not
/// load.
pub fn init_standalone(models_dir: &Path) -> anyhow::Result<&'static Environment> {
    Ok(ml::environment(models_dir)?)
}
