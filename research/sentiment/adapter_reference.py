"""Writes worker/src/ml/e5_sentiment_reference.json: a few "query: " texts
through e5-small with the shipped adapter merged (PyTorch, fp32), the
fixture `lingxi-models verify` compares the converted graph's
`sentiment_embedding` with.

    /tmp/ft/bin/python research/sentiment/adapter_reference.py \
        worker/assets/sentiment/e5-sentiment-lora.safetensors \
        worker/src/ml/e5_sentiment_reference.json
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import e5_torch as e5  # noqa: E402
import lora_top as lt  # noqa: E402

TEXTS = [
    "这家酒店的服务非常好，房间干净，下次还会再来。",
    "等了一个多小时才送到，饭菜都凉了，再也不点了。",
    "怎么退货？",
    "物流很快，包装完好，和描述的一样。",
    "前台态度冷淡，隔音太差，整晚没睡好，不推荐。",
    "今天天气不错",
    "The room was clean and the staff were friendly.",
    "性价比一般吧，说不上好也说不上坏，凑合住一晚还行，早餐品种少了点。",
]


def main(adapter_path, out_path):
    raw = Path(adapter_path).read_bytes()
    w, eps = e5.load(str(lt.graph_path()))
    w, _, _ = lt.merge_adapter(adapter_path, w)
    enc = e5.Encoder(w, eps, 0, e5.LAYERS, embed=True).eval()
    tok = lt.Tokenizer.from_file(str(lt.tokenizer_path()))
    items = []
    with torch.no_grad():
        for text in TEXTS:
            ids, m = e5.pad(e5.encode_ids(tok, [text], 512))
            v = e5.pool(enc(ids, m), m)[0].numpy()
            items.append({"text": text, "embedding": [round(float(x), 6) for x in v]})
    out = {
        "adapter_sha256": hashlib.sha256(raw).hexdigest(),
        "prefix": "query: ",
        "source": "research/sentiment/adapter_reference.py (PyTorch fp32, adapter merged)",
        "items": items,
    }
    Path(out_path).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(items)} reference embeddings to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
