//! The sentiment adapter: LoRA deltas and LayerNorms for e5's top layers,
//! trained for sentiment by `research/sentiment/lora_top.py` and shipped as
//! `worker/assets/sentiment/e5-sentiment-lora.safetensors` (docs/sentiment.md).
//!
//! `lingxi-models setup` merges it into the converted graph as a second
//! branch: the hidden states entering layer `first_layer` feed both the base
//! layers (→ `sentence_embedding`) and the adapted copies of the same layers
//! (→ `sentiment_embedding`), so one run yields both vectors.
//!
//! Tensors, per adapted layer `L` and matrix `m` in q, k, v, ao, fi, fo:
//! `l{L}.{m}.lora_a` `[in, rank]` and `l{L}.{m}.lora_b` `[rank, out]` (F16;
//! `W' = W + a·b·alpha/rank` in `[in, out]` orientation),
//! `l{L}.{aln,oln}.{w,b}` `[384]` (F32, replacing the base LayerNorms), and
//! the research head `head.w` `[384]`, `head.b` `[1]` (F32; the product
//! trains its own head over the adapted embedding).

use std::collections::{BTreeMap, HashMap};

use super::manifest::sha256_bytes;
use super::q4::f16_to_f32;

/// The adapter this release ships.
pub const SHIPPED: &[u8] = include_bytes!("../../assets/sentiment/e5-sentiment-lora.safetensors");

/// The matrices of one encoder layer, as named in the converter.
pub const MATRICES: [&str; 6] = ["q", "k", "v", "ao", "fi", "fo"];

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("adapter file: {0}")]
    Format(String),
    #[error("adapter tensor {name}: {detail}")]
    Tensor { name: String, detail: String },
}

fn format_err(s: impl Into<String>) -> AdapterError {
    AdapterError::Format(s.into())
}

/// A parsed adapter (tensors widened to f32).
#[derive(Debug, Clone)]
pub struct Adapter {
    /// First adapted layer (0-based).
    pub first_layer: usize,
    /// Number of adapted layers (the top ones).
    pub layers: usize,
    pub rank: usize,
    pub alpha: f32,
    /// sha256 of the file; its first 8 hex digits name the adapter.
    pub sha256: String,
    /// The `__metadata__` strings (training settings).
    pub meta: BTreeMap<String, String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Adapter {
    /// Parses a safetensors file (u64 LE header length, JSON header, data).
    pub fn parse(bytes: &[u8]) -> Result<Adapter, AdapterError> {
        let n = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
            .ok_or_else(|| format_err("shorter than its 8-byte header length"))?;
        let header = bytes
            .get(8..8usize.saturating_add(n))
            .ok_or_else(|| format_err("header length past the end of the file"))?;
        let data = &bytes[8 + n..];
        let mut header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| format_err(format!("header: {e}")))?;
        let meta: BTreeMap<String, String> = match header.remove("__metadata__") {
            Some(m) => {
                serde_json::from_value(m).map_err(|e| format_err(format!("metadata: {e}")))?
            }
            None => BTreeMap::new(),
        };
        let mut tensors = HashMap::with_capacity(header.len());
        for (name, t) in header {
            let bad = |detail: String| AdapterError::Tensor {
                name: name.clone(),
                detail,
            };
            let dtype = t["dtype"].as_str().unwrap_or_default();
            let shape: Vec<usize> = serde_json::from_value(t["shape"].clone())
                .map_err(|e| bad(format!("shape: {e}")))?;
            let offs: [usize; 2] = serde_json::from_value(t["data_offsets"].clone())
                .map_err(|e| bad(format!("data_offsets: {e}")))?;
            let raw = data
                .get(offs[0]..offs[1])
                .ok_or_else(|| bad("data past the end of the file".into()))?;
            let values: Vec<f32> = match dtype {
                "F32" => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                "F16" => raw
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                other => return Err(bad(format!("dtype {other:?}, expected F16 or F32"))),
            };
            if values.len() != shape.iter().product::<usize>() {
                return Err(bad(format!("{} values for shape {shape:?}", values.len())));
            }
            tensors.insert(name, (shape, values));
        }
        let num = |k: &str| -> Result<f64, AdapterError> {
            meta.get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format_err(format!("metadata {k:?} missing or not a number")))
        };
        let a = Adapter {
            first_layer: num("first_layer")? as usize,
            layers: num("layers")? as usize,
            rank: num("rank")? as usize,
            alpha: num("alpha")? as f32,
            sha256: sha256_bytes(bytes),
            meta: meta.clone(),
            tensors,
        };
        if a.rank == 0 || a.layers == 0 {
            return Err(format_err("rank and layers must be positive"));
        }
        Ok(a)
    }

    /// The adapter compiled into this release.
    pub fn shipped() -> Result<Adapter, AdapterError> {
        Adapter::parse(SHIPPED)
    }

    /// Short name recorded in model ids, e.g. `lora-dc23ead7`.
    pub fn tag(&self) -> String {
        tag_of(&self.sha256)
    }

    /// [`Adapter::tag`] of the shipped adapter, without parsing it.
    pub fn shipped_tag() -> String {
        tag_of(&sha256_bytes(SHIPPED))
    }

    /// Layers `first_layer..first_layer + layers`.
    pub fn layer_range(&self) -> std::ops::Range<usize> {
        self.first_layer..self.first_layer + self.layers
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], AdapterError> {
        let (s, v) = self.tensors.get(name).ok_or_else(|| AdapterError::Tensor {
            name: name.to_owned(),
            detail: "missing".into(),
        })?;
        if s != shape {
            return Err(AdapterError::Tensor {
                name: name.to_owned(),
                detail: format!("shape {s:?}, expected {shape:?}"),
            });
        }
        Ok(v)
    }

    /// A vector tensor (LayerNorm weight or bias, head).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, AdapterError> {
        Ok(self.get(name, &[n])?.to_vec())
    }

    /// Adds `a·b·alpha/rank` of layer `l`'s matrix `m` to `w`, a
    /// `[n_out, n_in]` row-major matrix (the converter's orientation).
    pub fn merge_into(
        &self,
        l: usize,
        m: &str,
        w: &mut [f32],
        n_out: usize,
        n_in: usize,
    ) -> Result<(), AdapterError> {
        let r = self.rank;
        let a = self.get(&format!("l{l}.{m}.lora_a"), &[n_in, r])?;
        let b = self.get(&format!("l{l}.{m}.lora_b"), &[r, n_out])?;
        let scale = self.alpha / r as f32;
        for i in 0..n_in {
            let ar = &a[i * r..(i + 1) * r];
            for o in 0..n_out {
                let d: f32 = ar
                    .iter()
                    .enumerate()
                    .map(|(k, x)| x * b[k * n_out + o])
                    .sum();
                w[o * n_in + i] += d * scale;
            }
        }
        Ok(())
    }

    /// The research head (`head.w`, `head.b`): logit = w·x + b.
    pub fn head(&self, dims: usize) -> Result<(Vec<f32>, f32), AdapterError> {
        Ok((self.vector("head.w", dims)?, self.vector("head.b", 1)?[0]))
    }
}

/// The tag of an adapter with this (hex) sha256.
pub fn tag_of(sha256: &str) -> String {
    format!("lora-{}", &sha256[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny safetensors file: layer 0, matrix q, in = 2, out = 3, rank 1.
    fn tiny() -> Vec<u8> {
        let a: [u16; 2] = [0x3c00, 0x4000]; // f16 1.0, 2.0
        let b: [u16; 3] = [0x3c00, 0x0000, 0xbc00]; // 1, 0, -1
        let mut data = Vec::new();
        a.iter()
            .chain(&b)
            .for_each(|h| data.extend(h.to_le_bytes()));
        let header = serde_json::json!({
            "__metadata__": {"first_layer": "0", "layers": "1", "rank": "1", "alpha": "2"},
            "l0.q.lora_a": {"dtype": "F16", "shape": [2, 1], "data_offsets": [0, 4]},
            "l0.q.lora_b": {"dtype": "F16", "shape": [1, 3], "data_offsets": [4, 10]},
        });
        let h = serde_json::to_vec(&header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(data);
        out
    }

    #[test]
    fn merges_scaled_low_rank_delta_in_out_in_orientation() {
        let a = Adapter::parse(&tiny()).unwrap();
        assert_eq!((a.first_layer, a.layers, a.rank), (0, 1, 1));
        // w is [out = 3, in = 2], zeros; delta[in][out] = a[in]·b[out]·2
        let mut w = vec![0f32; 6];
        a.merge_into(0, "q", &mut w, 3, 2).unwrap();
        assert_eq!(w, vec![2.0, 4.0, 0.0, 0.0, -2.0, -4.0]);
        // the wrong shape is named, not silently misread
        let err = a.merge_into(0, "q", &mut w, 2, 3).unwrap_err().to_string();
        assert!(
            err.contains("l0.q.lora_a") && err.contains("shape"),
            "{err}"
        );
        assert!(a.merge_into(0, "k", &mut w, 3, 2).is_err());
    }

    #[test]
    fn truncated_files_are_typed_errors() {
        let f = tiny();
        assert!(matches!(
            Adapter::parse(&f[..4]),
            Err(AdapterError::Format(_))
        ));
        assert!(Adapter::parse(&f[..f.len() - 2]).is_err());
    }

    #[test]
    fn shipped_adapter_covers_the_top_layers() {
        let a = Adapter::shipped().unwrap();
        assert_eq!(a.tag(), Adapter::shipped_tag());
        assert_eq!(
            a.first_layer + a.layers,
            12,
            "adapts the top layers of e5-small"
        );
        for l in a.layer_range() {
            for m in MATRICES {
                let (n_out, n_in) = match m {
                    "fi" => (1536, 384),
                    "fo" => (384, 1536),
                    _ => (384, 384),
                };
                let mut w = vec![0f32; n_out * n_in];
                a.merge_into(l, m, &mut w, n_out, n_in).unwrap();
                assert!(w.iter().any(|v| *v != 0.0), "l{l}.{m} is a zero delta");
            }
            for n in ["aln.w", "aln.b", "oln.w", "oln.b"] {
                a.vector(&format!("l{l}.{n}"), 384).unwrap();
            }
        }
        assert_eq!(a.head(384).unwrap().0.len(), 384);
    }
}
