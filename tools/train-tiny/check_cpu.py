#!/usr/bin/env python3
"""Recomputes kjv-tiny's reference numbers on a CPU with NumPy alone, as an independent check.

    python3 tools/train-tiny/check_cpu.py [models/kjv-tiny] [--full]

Needs numpy and the `tokenizers` package (no PyTorch, no transformers). A plain Llama forward pass in
float64 over the BF16 weights (widened exactly) is compared with what transformers computed on the GPU
in float32 (reference.json / reference.safetensors):
  - the prompt ids of every reference case, and the logits of the first case at every position;
  - the valid-slice perplexity: valid.txt encoded without special tokens, its first 4 windows of 256
    tokens, each run as [BOS] + window, all 1024 window tokens scored (`lathe eval --window 256
    --max-windows 4`).
Exits non-zero when a number is off by more than its tolerance.
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

BOS_ID = 0


def read_safetensors(path: Path):
    """name -> float64 array; BF16 is widened by shifting its 16 bits into the top of a float32."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = raw[base + start:base + end]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(buf, dtype="<f4")
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {info['dtype']}; only BF16 and F32 are read")
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out


class Llama:
    def __init__(self, model_dir: Path):
        self.cfg = json.loads((model_dir / "config.json").read_text())
        self.w = read_safetensors(model_dir / "model.safetensors")
        c = self.cfg
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        rope = c.get("rope_parameters") or {}
        self.theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
        self.eps = c["rms_norm_eps"]

    def norm(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, positions):
        # HF "rotate half" layout: dimension i pairs with i + head_dim/2.
        half = self.head_dim // 2
        inv = 1.0 / (self.theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        ang = positions[:, None] * inv[None, :]  # [T, half]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def logits(self, ids):
        w, T, hd = self.w, len(ids), self.head_dim
        x = w["model.embed_tokens.weight"][ids]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        group = self.heads // self.kv_heads
        for l in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.norm(x, w[p + "input_layernorm.weight"])
            q = self.rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, self.heads, hd), pos)
            k = self.rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, self.kv_heads, hd), pos)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, self.kv_heads, hd)
            att = np.empty((T, self.heads, hd))
            for head in range(self.heads):
                kv = head // group
                s = q[:, head] @ k[:, kv].T / math.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                att[:, head] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, kv]
            x = x + att.reshape(T, -1) @ w[p + "self_attn.o_proj.weight"].T
            h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            g = h @ w[p + "mlp.gate_proj.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = self.norm(x, w["model.norm.weight"])
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])  # tied when lm_head is absent
        return x @ head.T


def slice_ppl(model, ids, window, windows):
    nll, count = 0.0, 0
    for s in range(0, min(len(ids), window * windows), window):
        seq = [BOS_ID] + ids[s:s + window]
        z = model.logits(seq)[:-1]
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        nll -= logp[np.arange(len(seq) - 1), seq[1:]].sum()
        count += len(seq) - 1
    return nll / count, count


def main():
    args = [a for a in sys.argv[1:] if a != "--full"]
    model_dir = Path(args[0] if args else "models/kjv-tiny")
    ref = json.loads((model_dir / "reference.json").read_text())
    ref_logits = read_safetensors(model_dir / "reference.safetensors")
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = Llama(model_dir)
    ok = True

    for i, case in enumerate(ref["cases"]):
        ids = tok.encode(case["prompt"]).ids
        same = ids == case["input_ids"]
        ok &= same
        verdict = "match" if same else f"DIFFER: {ids} vs {case['input_ids']}"
        print(f"case {i} {case['prompt']!r}: ids {verdict}")
    first = ref["cases"][0]["input_ids"]
    got = model.logits(first)
    want = ref_logits["logits.0"]
    err = np.abs(got - want).max()
    print(f"logits.0 {want.shape}: max |numpy float64 - transformers float32| = {err:.2e}")
    ok &= bool(err < 1e-3)

    text = (model_dir / "valid.txt").read_text(encoding="utf-8")
    ids = tok.encode(text, add_special_tokens=False).ids
    s = ref["valid_slice"]
    ok &= ids[:len(s["input_ids"])] == s["input_ids"]
    mean, count = slice_ppl(model, ids, s["window"], s["windows"])
    rel = abs(math.exp(mean) / s["perplexity"] - 1)
    print(f"valid slice: {count} tokens, mean NLL {mean:.6f}, perplexity {math.exp(mean):.4f} "
          f"(transformers {s['perplexity']:.4f}, relative difference {rel:.1e})")
    ok &= count == s["scored_tokens"] and rel < 1e-4
    if "--full" in sys.argv:
        f = ref["valid_full"]
        mean, count = slice_ppl(model, ids, f["window"], len(ids))
        rel = abs(math.exp(mean) / f["perplexity"] - 1)
        print(f"valid full: {count} tokens, mean NLL {mean:.6f}, perplexity {math.exp(mean):.4f} "
              f"(transformers {f['perplexity']:.4f}, relative difference {rel:.1e})")
        ok &= count == f["scored_tokens"] and rel < 1e-4
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
