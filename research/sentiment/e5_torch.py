"""PyTorch port of the project's fp32 multilingual-e5-small ONNX graph
(worker/src/ml/e5.rs), for research on adapting the encoder. Not product
code: the product runs the ONNX graph through ONNX Runtime.

The weights are read from the graph's initializers, so the port computes
exactly what the shipped graph computes (checked by `check()` against ONNX
Runtime). Optional LoRA adapters sit on the six matrices of chosen layers.
"""

import math

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

HIDDEN, HEADS, LAYERS = 384, 12, 12


def load(path):
    """Initializers by name, and the LayerNormalization epsilon."""
    m = onnx.load(path)
    w = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    eps = next(
        a.f
        for n in m.graph.node
        if n.op_type == "LayerNormalization"
        for a in n.attribute
        if a.name == "epsilon"
    )
    return w, eps


def word_table(w):
    """The 4-bit word embeddings dequantised as the graph does: per block,
    16 low nibbles then 16 high nibbles, minus 8, times the fp16 scale."""
    nib = w["word.nibbles"]
    lo, hi = nib & 0x0F, nib >> 4
    q = np.concatenate([lo, hi], -1).astype(np.float32) - 8.0
    return (q * w["word.scales"].astype(np.float32)).reshape(nib.shape[0], -1)


class Linear(nn.Module):
    """y = x·W + b with W [in, out] frozen, plus an optional LoRA delta
    x·A·B·(alpha/rank) (A random, B zero, so training starts at the base)."""

    def __init__(self, wt, b, rank=0, alpha=16.0):
        super().__init__()
        self.register_buffer("w", torch.tensor(wt))
        self.register_buffer("b", torch.tensor(b))
        self.rank = rank
        if rank:
            n_in, n_out = wt.shape
            self.a = nn.Parameter(torch.empty(n_in, rank).uniform_(-1, 1) / math.sqrt(n_in))
            self.bb = nn.Parameter(torch.zeros(rank, n_out))
            self.scale = alpha / rank

    def forward(self, x):
        y = x @ self.w + self.b
        if self.rank:
            y = y + (x @ self.a) @ self.bb * self.scale
        return y


class Layer(nn.Module):
    MATS = ("q", "k", "v", "ao", "fi", "fo")

    def __init__(self, w, l, eps, rank=0, alpha=16.0, train_ln=False):
        super().__init__()
        self.eps = eps
        for m in self.MATS:
            setattr(self, m, Linear(w[f"l{l}.{m}.w"], w[f"l{l}.{m}.b"], rank, alpha))
        for n in ("aln", "oln"):
            for p in ("w", "b"):
                t = torch.tensor(w[f"l{l}.{n}.{p}"])
                if train_ln:
                    setattr(self, f"{n}_{p}", nn.Parameter(t))
                else:
                    self.register_buffer(f"{n}_{p}", t)

    def forward(self, x, bias):
        bsz, n, h = x.shape
        d = h // HEADS

        def heads(t):
            return t.view(bsz, n, HEADS, d).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        s = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(d)) + bias
        ctx = (s.softmax(-1) @ v).transpose(1, 2).reshape(bsz, n, h)
        x = F.layer_norm(x + self.ao(ctx), (h,), self.aln_w, self.aln_b, self.eps)
        f = self.fo(F.gelu(self.fi(x)))
        return F.layer_norm(x + f, (h,), self.oln_w, self.oln_b, self.eps)


class Embeddings(nn.Module):
    def __init__(self, w, eps):
        super().__init__()
        self.eps = eps
        self.register_buffer("word", torch.tensor(word_table(w)))
        self.register_buffer("pos", torch.tensor(w["emb.pos_plus_type"]))
        self.register_buffer("ln_w", torch.tensor(w["emb.ln.w"]))
        self.register_buffer("ln_b", torch.tensor(w["emb.ln.b"]))

    def forward(self, ids):
        x = self.word[ids] + self.pos[: ids.shape[1]]
        return F.layer_norm(x, (HIDDEN,), self.ln_w, self.ln_b, self.eps)


def mask_bias(mask):
    """[B, L] 0/1 → the graph's additive bias [B, 1, 1, L]."""
    return (1.0 - mask.float())[:, None, None, :] * -10000.0


def pool(x, mask):
    """Mean over the unmasked tokens, L2-normalised (the graph's output)."""
    m = mask.float()[:, :, None]
    mean = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class Encoder(nn.Module):
    """Layers [start, end) of e5-small; `embed=True` adds the embeddings."""

    def __init__(self, w, eps, start=0, end=LAYERS, embed=True, rank=0, alpha=16.0, train_ln=False):
        super().__init__()
        self.emb = Embeddings(w, eps) if embed else None
        self.layers = nn.ModuleList(
            Layer(w, l, eps, rank, alpha, train_ln) for l in range(start, end)
        )

    def forward(self, x, mask):
        if self.emb is not None:
            x = self.emb(x)
        bias = mask_bias(mask)
        for layer in self.layers:
            x = layer(x, bias)
        return x


def check(onnx_path, tokenizer_path, texts):
    """Max |torch − ONNX Runtime| over the embeddings of `texts`."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    w, eps = load(onnx_path)
    enc = Encoder(w, eps).eval()
    tok = Tokenizer.from_file(tokenizer_path)
    ids, mask = pad(encode_ids(tok, texts, 128))
    with torch.no_grad():
        mine = pool(enc(ids, mask), mask).numpy()
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    return float(np.abs(mine - theirs).max())


def encode_ids(tok, texts, max_len):
    """Token ids per text ('query: ' prefix, truncated to max_len)."""
    out = []
    for e in tok.encode_batch(["query: " + t for t in texts]):
        ids = e.ids
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + [ids[-1]]
        out.append(ids)
    return out


def pad(rows):
    n = max(len(r) for r in rows)
    ids = torch.ones(len(rows), n, dtype=torch.long)  # pad id 1
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask
