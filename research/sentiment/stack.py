"""Stacked head over the outputs of lora_top.py (research).

Per fold: NB-weighted binary n-grams (char 1-3-grams, jieba words, word
pairs; exact vocabulary of the training texts; log-count ratios, alpha 1;
row L2-normalised, x2) next to an embedding (x3), liblinear logistic
regression (C = $CC, default 4, balanced). Prints balanced accuracy on all
texts, the hotel sentences and the hotel lines of >= 100 characters,
scored out of fold.

  python stack.py RUN_DIR [variant ...]
  variants: ngrams, frozen, adapted, own (fold head's logit),
            frozen:emb / adapted:emb (embedding alone),
            cat / mean (the adapted embeddings of RUN_DIR and of the runs
            in $ENSEMBLE, comma-separated run dirs with the same folds and
            other seeds: side by side, scaled by 1/sqrt(k), or averaged),
            ownmean (the fold heads' logits averaged over those runs)
  PAIR=a,b picks the two variants of the McNemar test (default frozen,adapted).
"""

import math
import os
import re
import sys
from pathlib import Path

import jieba
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import normalize

HOTEL = re.compile("酒店|宾馆|房间|前台|入住|客房|住宿|携程|服务员|早餐|大堂|床")
CC = float(os.environ.get("CC", 4))
EW = float(os.environ.get("EW", 3))
ENSEMBLE = [Path(p) for p in os.environ.get("ENSEMBLE", "").split(",") if p]
jieba.setLogLevel(60)


def grams(t):
    out = []
    for n in (1, 2, 3):
        out += ["c" + t[i : i + n] for i in range(len(t) - n + 1)]
    ws = [w for w in jieba.lcut(t) if w.strip()]
    out += ["w" + w for w in ws]
    out += ["p" + a + "\u0001" + b for a, b in zip(ws, ws[1:])]
    return out


def nb_block(docs, y, tr):
    vec = CountVectorizer(analyzer=lambda d: d, binary=True, min_df=1)
    vec.fit([docs[i] for i in tr])
    x = vec.transform(docs).astype(np.float64)
    xt, yt = x[tr], y[tr]
    p = np.asarray(xt[yt == 1].sum(0)).ravel() + 1.0
    q = np.asarray(xt[yt == 0].sum(0)).ravel() + 1.0
    r = np.log((p / p.sum()) / (q / q.sum()))
    return normalize(x @ sp.diags(r)) * 2.0


def score(name, y, pred, masks):
    cells = [f"{100 * balanced_accuracy_score(y[m], pred[m]):.1f}" for m in masks]
    print(f"{name:14s} all {cells[0]}  hotel {cells[1]}  long hotel {cells[2]}", flush=True)


def main():
    d = Path(sys.argv[1])
    variants = sys.argv[2:] or ["ngrams", "frozen", "adapted"]
    texts = (d / "texts.txt").read_text(encoding="utf-8").splitlines()
    y = np.load(d / "y.npy")
    fold = np.load(d / "fold.npy")
    folds = int(fold.max()) + 1
    hotel = np.array([bool(HOTEL.search(t)) for t in texts])
    long_hotel = hotel & np.array([len(t) >= 100 for t in texts])
    # neutral messages (NEUTRAL= runs, label -1) trained the adapter only
    labelled = y >= 0
    hotel &= labelled
    long_hotel &= labelled
    masks = [labelled, hotel, long_hotel]
    print(f"{len(y)} texts, {hotel.sum()} hotel, {long_hotel.sum()} long hotel", flush=True)
    need_ng = any(":" not in v and not v.startswith("own") for v in variants)
    docs = [grams(t) for t in texts] if need_ng else None
    need_ens = any(v.partition(":")[0] in ("cat", "mean") for v in variants)
    frozen = np.load(d / "frozen.npy")
    preds = {v: np.zeros(len(y), np.int64) for v in variants}
    for f in range(folds):
        tr, te = np.where((fold != f) & labelled)[0], np.where((fold == f) & labelled)[0]
        nb = nb_block(docs, y, tr) if need_ng else None
        adapted = np.load(d / f"adapted_f{f}.npy") if (d / f"adapted_f{f}.npy").exists() else None
        # the other runs' adapted embeddings, read once per fold
        embs = [adapted, *(np.load(r / f"adapted_f{f}.npy") for r in ENSEMBLE)] if need_ens else None
        for v in variants:
            if v == "own":
                preds[v][te] = np.load(d / f"logit_f{f}.npy")[te] > 0
                continue
            if v == "ownmean":
                logits = [np.load(r / f"logit_f{f}.npy")[te] for r in [d, *ENSEMBLE]]
                preds[v][te] = np.mean(logits, axis=0) > 0
                continue
            kind, _, alone = v.partition(":")
            if kind == "cat":
                emb = np.hstack(embs) / math.sqrt(len(embs))
            elif kind == "mean":
                emb = np.mean(embs, axis=0)
            else:
                emb = {"frozen": frozen, "adapted": adapted, "ngrams": None}[kind]
            if alone:
                x = sp.csr_matrix(emb * EW)
            elif emb is None:
                x = nb
            else:
                x = sp.hstack([nb, sp.csr_matrix(emb * EW)]).tocsr()
            m = LogisticRegression(C=CC, solver="liblinear", class_weight="balanced", max_iter=1000)
            m.fit(x[tr], y[tr])
            preds[v][te] = m.predict(x[te])
    for v in variants:
        score(v, y, preds[v], masks)
    a, _, b = os.environ.get("PAIR", "frozen,adapted").partition(",")
    if a in preds and b in preds:
        paired(y, preds[a], preds[b], long_hotel, a, b)


def paired(y, a, b, mask, name_a="frozen", name_b="adapted"):
    """Exact McNemar test of two classifiers on the same texts."""
    ra, rb = a[mask] == y[mask], b[mask] == y[mask]
    only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    print(f"long hotel: {only_a} right only {name_a}, {only_b} only {name_b}, exact McNemar p {p:.4f}")


if __name__ == "__main__":
    main()
