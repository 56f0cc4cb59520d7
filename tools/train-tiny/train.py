#!/usr/bin/env python3
"""Trains kjv-tiny: a small Llama on the King James Bible, Lathe's built-in default model.

One command, fixed seed; prints the validation loss:

    python3 tools/train-tiny/train.py --data .train-data --out OUT_DIR [--archive kjv-tiny.tar.gz]

The defaults are the settings models/kjv-tiny was trained with (chosen with --dev; see README.md).

--data holds train.txt and valid.txt from prepare_data.sh. Steps:
  1. a byte-level BPE tokenizer (4096 ids incl. 4 special tokens) trained on train.txt only;
  2. a LlamaForCausalLM (GQA, tied embeddings) trained on train.txt: every chapter becomes
     [BOS] + tokens(chapter + "\\n\\n"), the chapters are concatenated into one stream, and each
     training sequence is [BOS] + 512 contiguous tokens of that stream;
  3. the model saved with save_pretrained in bfloat16, reloaded from disk in float32 (eager attention)
     and evaluated on valid.txt (see window_nll for the exact definition), plus the golden reference
     cases (reference.json / reference.safetensors) and sample generations;
  4. with --archive, the whole work folder packed into one .tar.gz.
With --dev, 5% of the training chapters are held out as a development set instead, the model is
scored on them during and after training, and valid.txt is not read: that is for choosing settings.
"""
import argparse
import hashlib
import json
import math
import random
import sys
import tarfile
import time
from pathlib import Path

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
BOS_ID, EOS_ID = 0, 1
# ChatML; the model was never trained on chat turns, the template is there so chat front ends work.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PROMPTS = ["And God said", "In the beginning", "The LORD is my shepherd"]
MODEL_NAME = "kjv-tiny"


LOG_FILE = None


def log(*args):
    line = " ".join([f"[{time.strftime('%H:%M:%S')}]"] + [str(a) for a in args])
    print(line, flush=True)
    if LOG_FILE is not None:
        with open(LOG_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def read_chapters(path: Path):
    """train.txt / valid.txt: chapters separated by one blank line, one verse a line."""
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n\n")


# ---------------------------------------------------------------- tokenizer

def train_tokenizer(chapters, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([c + "\n\n" for c in chapters], trainer=trainer)
    bos = SPECIALS[BOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, BOS_ID)])
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, f"special token {s} got id {tok.token_to_id(s)}, expected {i}"
    assert tok.get_vocab_size() == vocab_size, f"vocab {tok.get_vocab_size()} != {vocab_size}"
    return tok


def save_tokenizer(tok, out_dir: Path, max_len: int):
    """Writes tokenizer.json + tokenizer_config.json (with the chat template) the way transformers does."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[BOS_ID], eos_token=SPECIALS[EOS_ID],
                                 model_max_length=max_len, chat_template=CHAT_TEMPLATE,
                                 clean_up_tokenization_spaces=False)
    try:
        hf.save_pretrained(out_dir, save_jinja_files=False)
    except TypeError:  # older transformers: the template always goes into tokenizer_config.json
        hf.save_pretrained(out_dir)
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    jinja = out_dir / "chat_template.jinja"
    if "chat_template" not in cfg and jinja.exists():
        cfg["chat_template"] = jinja.read_text(encoding="utf-8")
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if jinja.exists():
        jinja.unlink()
    assert json.loads(cfg_path.read_text(encoding="utf-8")).get("chat_template") == CHAT_TEMPLATE
    return hf


# ---------------------------------------------------------------- evaluation

def window_nll(model, ids, window, max_windows=0, batch=32):
    """Perplexity as `lathe eval` computes it (dev.lathe.core.generate.Perplexity).

    `ids` is the whole text encoded without special tokens. Window w is ids[w*window:(w+1)*window]
    (the last one may be shorter); each runs as its own sequence [BOS] + window, and every token of
    the window is scored given BOS and the tokens before it in the window (`window` scored tokens per
    full window). Returns (sum of NLL in nats as a Python float, scored tokens, windows).
    """
    import torch
    import torch.nn.functional as F

    starts = list(range(0, len(ids), window))
    if max_windows:
        starts = starts[:max_windows]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    groups = {}
    for s in starts:
        groups.setdefault(len(ids[s:s + window]), []).append(s)
    with torch.no_grad():
        for length, group in groups.items():
            for i in range(0, len(group), batch):
                rows = [[BOS_ID] + ids[s:s + length] for s in group[i:i + batch]]
                x = torch.tensor(rows, dtype=torch.long, device=device)
                logits = model(input_ids=x).logits.float()
                logp = F.log_softmax(logits[:, :-1], dim=-1)
                nll = -logp.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)
                total += float(nll.double().sum())
                count += nll.numel()
    return total, count, len(starts)


def ppl_record(total, count, windows, window):
    mean = total / count
    return {"window": window, "windows": windows, "scored_tokens": count, "mean_nll": mean,
            "perplexity": math.exp(mean)}


def greedy(model, input_ids, steps):
    """Argmax continuation, full recompute each step, no EOS stop (as Lathe's golden test decodes)."""
    import torch

    ids = list(input_ids)
    device = next(model.parameters()).device
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1]
            ids.append(int(torch.argmax(logits)))
    return ids[len(input_ids):]


# ---------------------------------------------------------------- training

def build_model(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                      num_hidden_layers=args.layers, num_attention_heads=args.heads,
                      num_key_value_heads=args.kv_heads, max_position_embeddings=args.max_positions,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.02,
                      bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=None)
    return LlamaForCausalLM(cfg)


def add_dropout(model, p):
    """Training-time dropout on the embeddings and on each attention / MLP output before the residual add.

    Forward hooks only: they do nothing in eval mode and leave no trace in the saved model.
    """
    import torch.nn.functional as F

    if p <= 0:
        return

    def plain(module, inputs, output):
        return F.dropout(output, p, module.training)

    def first(module, inputs, output):
        return (F.dropout(output[0], p, module.training),) + tuple(output[1:])

    model.model.embed_tokens.register_forward_hook(plain)
    for layer in model.model.layers:
        layer.self_attn.register_forward_hook(first)
        layer.mlp.register_forward_hook(plain)


def train(args, model, stream, dev_ids):
    import torch
    import torch.nn.functional as F

    device = torch.device("cuda")
    model.to(device)
    model.train()
    add_dropout(model, args.dropout)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    L, B = args.seq_len, args.batch
    data = torch.tensor(stream, dtype=torch.long, device=device)
    offsets = torch.arange(L, device=device).unsqueeze(0)
    steps_per_epoch = (len(stream) - L) // L // B
    total_steps = int(round(args.epochs * steps_per_epoch))
    warmup = min(args.warmup, total_steps // 10)
    log(f"train stream {len(stream)} tokens; {steps_per_epoch} steps/epoch of {B}x[BOS]+{L}; "
        f"{total_steps} steps planned ({args.epochs} epochs), budget {args.budget_s}s")

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))

    rng = random.Random(args.seed)
    bos_col = torch.full((B, 1), BOS_ID, dtype=torch.long, device=device)
    step, tokens_seen, t0 = 0, 0, time.time()
    curve = []
    stopped_early = False
    while step < total_steps:
        shift = rng.randrange(L)
        starts = list(range(shift, len(stream) - L, L))
        rng.shuffle(starts)
        for b in range(0, len(starts) - B + 1, B):
            if step >= total_steps:
                break
            if time.time() - t0 > args.budget_s:
                stopped_early = True
                break
            idx = torch.tensor(starts[b:b + B], device=device)
            x = torch.cat([bos_col, data[idx.unsqueeze(1) + offsets]], dim=1)  # [B, 1 + L]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(input_ids=x[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tokens_seen += B * L
            if step % args.log_every == 0 or step == total_steps:
                msg = f"step {step}/{total_steps} loss {loss.item():.4f} lr {lr_at(step - 1):.2e} " \
                      f"{tokens_seen / (time.time() - t0):,.0f} tok/s elapsed {time.time() - t0:.0f}s"
                if dev_ids is not None and (step % args.eval_every == 0 or step == total_steps):
                    model.eval()
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        tot, cnt, _ = window_nll(model, dev_ids, 512)
                    model.train()
                    curve.append((step, tot / cnt))
                    msg += f" | dev loss {tot / cnt:.4f} ppl {math.exp(tot / cnt):.2f}"
                log(msg)
        if stopped_early:
            log(f"wall-clock budget of {args.budget_s}s reached at step {step}; stopping")
            break
    torch.cuda.synchronize()
    return {"steps": step, "planned_steps": total_steps, "tokens": tokens_seen, "seconds": time.time() - t0,
            "stopped_on_budget": stopped_early, "dev_curve": curve}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(".train-data"))
    ap.add_argument("--out", type=Path, default=Path("out"), help="work folder: model, reference files, log")
    ap.add_argument("--archive", type=Path, help="also pack the work folder into this .tar.gz")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=320)
    ap.add_argument("--intermediate", type=int, default=864)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--max-positions", type=int, default=1024)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=float, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.3)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--budget-s", type=float, default=420, help="wall-clock limit of the training loop")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--dev", action="store_true", help="hold out 5%% of train.txt, score on it, skip valid.txt")
    ap.add_argument("--tokenizer-only", action="store_true", help="train and save the tokenizer, then stop")
    args = ap.parse_args()

    global LOG_FILE
    t_start = time.time()
    random.seed(args.seed)
    model_dir = args.out / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    LOG_FILE = args.out / "train.log"
    log("train.py " + " ".join(sys.argv[1:]))

    chapters = read_chapters(args.data / "train.txt")
    dev_chapters = None
    if args.dev:  # training-chapter index % 20 == 9 -> dev (disjoint from valid.txt's chapters)
        dev_chapters = [c for i, c in enumerate(chapters) if i % 20 == 9]
        chapters = [c for i, c in enumerate(chapters) if i % 20 != 9]
    log(f"{len(chapters)} training chapters" + (f", {len(dev_chapters)} dev chapters" if args.dev else ""))

    tok = train_tokenizer(chapters, args.vocab)
    save_tokenizer(tok, model_dir, args.max_positions)
    log(f"tokenizer: {tok.get_vocab_size()} ids, trained in {time.time() - t_start:.1f}s")
    if args.tokenizer_only:
        return

    import torch
    import transformers

    torch.manual_seed(args.seed)
    torch.cuda.manual_seed_all(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    stream = []
    for enc in tok.encode_batch([c + "\n\n" for c in chapters], add_special_tokens=False):
        stream.append(BOS_ID)
        stream.extend(enc.ids)
    dev_ids = None
    if args.dev:
        dev_ids = tok.encode("\n\n".join(dev_chapters) + "\n", add_special_tokens=False).ids

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.cuda.get_device_name()}")
    stats = train(args, model, stream, dev_ids)
    log(f"trained {stats['steps']} steps, {stats['tokens']:,} tokens in {stats['seconds']:.1f}s")

    # Save in bfloat16 exactly as transformers writes it, then evaluate what was saved, in float32.
    model = model.to(torch.bfloat16).eval()
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.8
    model.generation_config.top_p = 0.95
    model.save_pretrained(model_dir)
    del model
    torch.cuda.empty_cache()
    from transformers import AutoTokenizer, LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").cuda().eval()
    hf_tok = AutoTokenizer.from_pretrained(model_dir)

    result = {"params": n_params, "train": {k: v for k, v in stats.items() if k != "dev_curve"},
              "dev_curve": stats["dev_curve"], "args": {k: str(v) for k, v in vars(args).items()},
              "train_stream_tokens": len(stream), "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "transformers": transformers.__version__}
    if args.dev:
        tot, cnt, w = window_nll(model, dev_ids, 512)
        result["dev"] = ppl_record(tot, cnt, w, 512)
        log(f"DEV loss {result['dev']['mean_nll']:.4f} ppl {result['dev']['perplexity']:.3f}")
    else:
        valid_text = (args.data / "valid.txt").read_text(encoding="utf-8")
        valid_ids = hf_tok(valid_text, add_special_tokens=False)["input_ids"]
        assert valid_ids == tok.encode(valid_text, add_special_tokens=False).ids
        tot, cnt, w = window_nll(model, valid_ids, 512)
        result["valid_full"] = ppl_record(tot, cnt, w, 512)
        tot, cnt, w = window_nll(model, valid_ids, 256, max_windows=4)
        result["valid_slice"] = ppl_record(tot, cnt, w, 256)
        result["valid_tokens"] = len(valid_ids)
        result["valid_sha256"] = hashlib.sha256(valid_text.encode("utf-8")).hexdigest()
        log(f"VALID loss {result['valid_full']['mean_nll']:.4f} ppl {result['valid_full']['perplexity']:.3f} "
            f"({result['valid_full']['scored_tokens']} tokens) | slice (4 x [BOS]+256) loss {result['valid_slice']['mean_nll']:.4f} "
            f"ppl {result['valid_slice']['perplexity']:.3f}")

    # Golden reference: float32 eager logits of every prompt position and 32 greedy tokens per prompt.
    from safetensors.torch import save_file
    cases, tensors = [], {}
    for i, prompt in enumerate(PROMPTS):
        ids = hf_tok(prompt)["input_ids"]
        assert ids[0] == BOS_ID, f"BOS was not added to {prompt!r}: {ids}"
        with torch.no_grad():
            tensors[f"logits.{i}"] = model(input_ids=torch.tensor([ids], device="cuda")).logits[0].float().cpu().contiguous()
        g = greedy(model, ids, 32)
        cases.append({"prompt": prompt, "input_ids": ids, "greedy_ids": g,
                      "greedy_text": hf_tok.decode(g, skip_special_tokens=False)})
        log(f"greedy {prompt!r} -> {cases[-1]['greedy_text']!r}")
    reference = {"model": MODEL_NAME, "dtype_weights": "bfloat16", "dtype_compute": "float32",
                 "attention": "eager", "cases": cases}
    if not args.dev:
        reference["valid_slice"] = dict(result["valid_slice"], file="valid.txt", bos_per_window=True,
                                        input_ids=valid_ids[:4 * 256])
        reference["valid_full"] = dict(result["valid_full"], file="valid.txt", bos_per_window=True)
    ref_dir = args.out / "reference"
    ref_dir.mkdir(exist_ok=True)
    (ref_dir / "reference.json").write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
    save_file(tensors, str(ref_dir / "reference.safetensors"))

    # Sampled generations (seeded; not reproducible bit-for-bit elsewhere, they only show the style).
    samples = []
    for i, prompt in enumerate(PROMPTS):
        torch.manual_seed(args.seed + i)
        enc = hf_tok(prompt, return_tensors="pt").to("cuda")
        out = model.generate(**enc, do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=64)
        samples.append({"prompt": prompt, "text": hf_tok.decode(out[0], skip_special_tokens=True)})
        log(f"sample {samples[-1]['text']!r}")
    result["samples"] = samples
    result["total_seconds"] = time.time() - t_start
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")

    log(f"done in {time.time() - t_start:.0f}s")
    if args.archive:
        args.archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.archive, "w:gz") as tar:
            for name in [MODEL_NAME, "reference", "result.json", "train.log"]:
                tar.add(args.out / name, arcname=name)
        print(f"wrote {args.archive} ({args.archive.stat().st_size / 2**20:.2f} MiB)", flush=True)


if __name__ == "__main__":
    main()
