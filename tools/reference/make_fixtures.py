#!/usr/bin/env python3
"""Build the golden fixtures under fixtures/golden/ with Hugging Face transformers as the reference.

For every variant this script
  1. builds a tiny random-weight model (hidden 64, intermediate 160, 2 layers) of one architecture /
     RoPE flavour, with weights drawn from a fixed seed,
  2. saves it with `save_pretrained` in the variant's storage dtype (F32, BF16 or F16, one variant sharded),
     next to a byte-level BPE tokenizer trained here on the small corpus below,
  3. loads the saved checkpoint back in float32 with eager attention on the CPU, so the reference math is
     float32 on exactly the stored weight values, and records for three prompts
       - the logits of one forward pass over the whole prompt (every position) -> reference.safetensors,
       - a 32-token greedy continuation computed with an explicit loop over the KV cache, with the margin
         between the two largest logits at every step -> reference.json. greedy_text is transformers'
         decode(skip_special_tokens=True): the tokens' bytes joined and decoded as lossy UTF-8, so a random
         model's stray byte tokens show up as U+FFFD and control characters.
     A variant whose smallest greedy margin is below MIN_MARGIN is rebuilt with the next seed, so a
     re-implementation that is correct to float32 rounding cannot pick a different token.

Everything it needs is in this file: no network, no downloads. CPU only.

    python3 make_fixtures.py --out ../../fixtures/golden

Requires torch, transformers (5.x), tokenizers and safetensors.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here; never reach for a hub

import torch
import tokenizers
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [BOS, EOS, IM_START, IM_END]
TOKENIZER_VOCAB = 384  # including the four special tokens

HIDDEN = 64
INTERMEDIATE = 160
LAYERS = 2
MAX_POSITIONS = 256
GREEDY_STEPS = 32
MIN_MARGIN = 1e-3
SEED_TRIES = 50

MATRIX_STD = 0.2  # large enough that logits spread over several units
NORM_JITTER = 0.1  # norm weights are 1 + NORM_JITTER * N(0, 1)
BIAS_STD = 0.1

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Training text for the tokenizer, written for this project.
CORPUS = """\
The river ran slowly past the old mill, and the miller sat by the door and watched the water turn the wheel.
Every morning he walked to the village to buy bread, and every evening he walked back along the same narrow road.
The road was lined with tall trees, and in the autumn their leaves fell on the stones and made them red and gold.

In the village there was a small school with a bell that rang at nine o'clock. The children came running from
the farms and the houses, carrying their books and their lunches, and the teacher waited for them at the gate.
She taught them to read and to write, to count the stars and to name the rivers of the country, one by one.

A traveller came to the village one winter night. He was tired and cold, and he asked at the inn for a room
and a warm meal. The innkeeper gave him soup and bread and a place near the fire. The traveller told stories
of the cities he had seen, of ships in the harbour and of markets where people sold spices, silk and silver.

The children listened with open eyes. Some of them wanted to leave the village and see the world, and some of
them wanted to stay by the river and the mill. The miller said that the world was wide, but that a good home was
worth more than a hundred cities. The traveller laughed and said that both of them might be right.

In the spring the snow melted and the river rose. The water covered the fields near the mill, and the farmers
worked together to build a wall of earth and stone. They carried sand in baskets and sang while they worked.
When the water went down again, the fields were green, and the wheat grew taller than it had grown for years.

Numbers are useful too: one, two, three, four, five, six, seven, eight, nine and ten. The mill had 12 windows,
the school had 3 rooms, and the road to the city was 27 miles long. On the 1st of May the village held a fair.
"""

# About 6, 20 and 60 tokens with BOS. The long one passes every threshold below (sliding window 16, the
# llama3 / dynamic original context 32) and has digits and a two-byte character for the tokenizer.
PROMPTS = [
    "The old mill by",
    "In the spring, the children walked to the river.",
    "The traveller told the teacher about the ships and the markets of the city. "
    "She asked him why he had walked 27 miles to our café.",
]


# ---------------------------------------------------------------------------------------------- tokenizer

def build_tokenizer(directory):
    """Train the byte-level BPE, wrap it in PreTrainedTokenizerFast and save it the way transformers does."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # BOS is added by the post-processor, so encode(text, add_special_tokens=True) starts with it.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0",
        pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
        special_tokens=[(BOS, bos_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        extra_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_POSITIONS,
        chat_template=CHAT_TEMPLATE,
    )
    # save_jinja_files=False keeps the chat template inside tokenizer_config.json (transformers 5 would
    # otherwise write it to a separate chat_template.jinja).
    fast.save_pretrained(directory, save_jinja_files=False)
    return fast


# ------------------------------------------------------------------------------------------------ variants

def llama(vocab, heads, kv_heads, rope, **extra):
    return LlamaConfig(
        vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=extra.pop("max_pos", MAX_POSITIONS),
        rms_norm_eps=1e-5, rope_parameters=rope, **extra)


LLAMA31_THETA = 50.0
LLAMA31_ROPE = {"rope_type": "llama3", "rope_theta": LLAMA31_THETA, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}


def variants(vocab, bos_id, eos_id):
    ids = dict(bos_token_id=bos_id, eos_token_id=eos_id)
    llama3_shape = lambda: llama(vocab, 4, 2, {"rope_type": "default", "rope_theta": 500000.0}, **ids)
    return [
        dict(name="llama2-f32", dtype=torch.float32, cls=LlamaForCausalLM,
             description="Llama, 4 heads = 4 kv heads (MHA), rope_theta 10000, no RoPE scaling, F32",
             config=lambda: llama(vocab, 4, 4, {"rope_type": "default", "rope_theta": 10000.0}, **ids)),
        dict(name="llama3-bf16", dtype=torch.bfloat16, cls=LlamaForCausalLM,
             description="Llama, 4 heads / 2 kv heads (GQA), rope_theta 500000, BF16",
             config=llama3_shape),
        dict(name="llama31-llama3-rope", dtype=torch.bfloat16, cls=LlamaForCausalLM,
             description="Llama with llama3 RoPE scaling (factor 8, low 1, high 4, original context 32), "
                         f"rope_theta {LLAMA31_THETA:g}, head_dim 16, BF16; " + llama3_bands(16),
             config=lambda: llama(vocab, 4, 2, dict(LLAMA31_ROPE), **ids),
             ablation=("plain RoPE", without_rope_scaling, lambda n, pos: pos == 0)),
        dict(name="llama32-tied", dtype=torch.float16, cls=LlamaForCausalLM,
             description="Llama, 4 heads / 2 kv heads, tie_word_embeddings (no lm_head tensor), rope_theta 500000, F16",
             config=lambda: llama(vocab, 4, 2, {"rope_type": "default", "rope_theta": 500000.0},
                                  tie_word_embeddings=True, **ids)),
        dict(name="llama-linear-rope", dtype=torch.float32, cls=LlamaForCausalLM,
             description="Llama, 4 heads / 2 kv heads, linear RoPE scaling factor 2.5, rope_theta 10000, F32",
             config=lambda: llama(vocab, 4, 2, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5}, **ids),
             ablation=("plain RoPE", without_rope_scaling, lambda n, pos: pos == 0)),
        dict(name="llama-dynamic-rope", dtype=torch.float32, cls=LlamaForCausalLM, fresh_model_per_run=True,
             description="Llama, 4 heads / 2 kv heads, dynamic NTK RoPE factor 2, rope_theta 10000, "
                         "max_position_embeddings 32 (prompts and generation go past it), F32. transformers "
                         "recomputes inv_freq whenever a forward pass reaches a position beyond the largest seen so "
                         "far (base scaled for seq_len = max position + 1) and rotates only that pass's new "
                         "queries/keys with it: cached keys keep the rotation they were written with",
             config=lambda: llama(vocab, 4, 2, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
                                  max_pos=32, **ids),
             ablation=("plain RoPE", without_rope_scaling, lambda n, pos: n <= 32)),
        dict(name="mistral-window", dtype=torch.bfloat16, cls=MistralForCausalLM,
             description="Mistral, 4 heads / 1 kv head, sliding_window 16 (a query attends to itself and the 15 "
                         "keys before it), rope_theta 10000, BF16",
             config=lambda: MistralConfig(
                 vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
                 num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=MAX_POSITIONS,
                 rms_norm_eps=1e-5, sliding_window=16, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                 **ids),
             ablation=("no sliding window", without_sliding_window, lambda n, pos: pos < 16)),
        dict(name="qwen2-bias", dtype=torch.bfloat16, cls=Qwen2ForCausalLM,
             description="Qwen2, 4 heads / 2 kv heads, non-zero q/k/v biases, tie_word_embeddings, "
                         "rope_theta 1000000, BF16",
             config=lambda: Qwen2Config(
                 vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
                 rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **ids)),
        dict(name="qwen3-qknorm", dtype=torch.bfloat16, cls=Qwen3ForCausalLM,
             description="Qwen3, 4 heads / 2 kv heads, explicit head_dim 32 (hidden/heads would be 16), "
                         "q/k RMSNorm weights 1 + 0.1 N(0,1), rope_theta 1000000, BF16",
             config=lambda: Qwen3Config(
                 vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=MAX_POSITIONS,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False, attention_bias=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **ids)),
        dict(name="llama3-sharded", dtype=torch.float32, cls=LlamaForCausalLM, max_shard_size="250KB",
             description="the llama3-bf16 shape (4 heads / 2 kv heads, rope_theta 500000) saved F32 in several "
                         "safetensors shards with model.safetensors.index.json",
             config=llama3_shape),
    ]


def without_rope_scaling(config):
    config.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_parameters["rope_theta"]}


def without_sliding_window(config):
    config.sliding_window = None


def llama3_bands(head_dim):
    """Which rotary frequencies of the llama31 variant fall in each band of the llama3 scaling rule."""
    p = LLAMA31_ROPE
    low_wavelen = p["original_max_position_embeddings"] / p["low_freq_factor"]
    high_wavelen = p["original_max_position_embeddings"] / p["high_freq_factor"]
    bands = {"high (kept)": [], "interpolated": [], "low (divided by factor)": []}
    for i in range(head_dim // 2):
        wavelen = 2 * math.pi * LLAMA31_THETA ** (2 * i / head_dim)
        if wavelen < high_wavelen:
            bands["high (kept)"].append(i)
        elif wavelen > low_wavelen:
            bands["low (divided by factor)"].append(i)
        else:
            bands["interpolated"].append(i)
    if any(not v for v in bands.values()):
        raise SystemExit(f"llama31 RoPE bands must all be non-empty, got {bands}; change LLAMA31_THETA")
    return "frequency indices per band: " + "; ".join(f"{k} {v}" for k, v in bands.items())


# ----------------------------------------------------------------------------------------------- weights

def randomize(model, seed):
    """Overwrite every parameter from one generator, in name order, so the weights depend on the seed alone."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_JITTER * noise)
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * noise)
            else:
                p.copy_(MATRIX_STD * noise)


# --------------------------------------------------------------------------------------------- reference

def load(variant, directory):
    model = variant["cls"].from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def top2_margin(row):
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


@torch.no_grad()
def prompt_logits(model, ids):
    out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].to(torch.float32).contiguous()


@torch.no_grad()
def greedy(model, ids, steps):
    """Greedy decoding as an explicit loop: the prompt in one pass, then one token per pass over the KV cache."""
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    past = out.past_key_values
    row = out.logits[0, -1]
    tokens, margins = [], []
    for step in range(steps):
        nxt = int(torch.argmax(row))
        tokens.append(nxt)
        margins.append(top2_margin(row))
        if step + 1 == steps:
            break
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        row = out.logits[0, -1]
    return tokens, margins


@torch.no_grad()
def recompute_agrees(model, ids, tokens):
    """Whether a full no-cache forward over prompt + continuation picks the same tokens (a check, not a fixture)."""
    seq = list(ids) + tokens
    logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0]
    picked = torch.argmax(logits[len(ids) - 1: len(seq) - 1], dim=-1).tolist()
    return picked == tokens


def check_feature_active(variant, directory, tokenizer, logits):
    """Reload the checkpoint with the variant's special feature switched off and check that the prompt logits
    are unchanged exactly where the feature cannot matter and changed where it must: proof that the
    reference really exercises it (a sliding window that never cuts, a RoPE scaling that is ignored)."""
    if "ablation" not in variant:
        return
    label, switch_off, unaffected = variant["ablation"]
    for i, prompt in enumerate(PROMPTS):
        config = AutoConfig.from_pretrained(directory)
        switch_off(config)
        plain = variant["cls"].from_pretrained(directory, config=config, dtype=torch.float32,
                                               attn_implementation="eager").eval()
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        diff = (prompt_logits(plain, ids) - logits[f"logits.{i}"]).abs().amax(dim=-1)
        same = [p for p in range(len(ids)) if unaffected(len(ids), p)]
        changed = [p for p in range(len(ids)) if not unaffected(len(ids), p)]
        same_diff = float(diff[same].max()) if same else 0.0
        changed_diff = float(diff[changed].max()) if changed else None
        print(f"  vs {label}, case {i}: max |dlogit| {same_diff:.2e} over {len(same)} positions it cannot affect, "
              f"{'-' if changed_diff is None else f'{changed_diff:.2e}'} over {len(changed)} it must affect", flush=True)
        if same_diff > 1e-5 or (changed_diff is not None and changed_diff < 1e-3):
            raise SystemExit(f"{variant['name']}: the feature checked against {label} is not active as expected")


def reference(variant, directory, tokenizer):
    """Reference outputs of the checkpoint saved in directory. Dynamic-RoPE models keep the largest position
    they have seen in the module (inv_freq is updated in place), so every pass that must start from the
    saved state gets a freshly loaded model; that is done for every variant, it is cheap at this size."""
    cases, logits = [], {}
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        logits[f"logits.{i}"] = prompt_logits(load(variant, directory), ids)
        model = load(variant, directory)
        tokens, margins = greedy(model, ids, GREEDY_STEPS)
        first = logits[f"logits.{i}"][-1]
        agree = recompute_agrees(load(variant, directory), ids, tokens)
        cases.append({
            "prompt": prompt,
            "input_ids": ids,
            "greedy_ids": tokens,
            "greedy_text": tokenizer.decode(tokens, skip_special_tokens=True),
            "min_margin": min(margins),
            "margins": margins,
            "no_cache_recompute_agrees": agree,
        })
        if int(torch.argmax(first)) != tokens[0]:
            raise SystemExit(f"{variant['name']} case {i}: the cached prompt pass and the logits pass disagree")
    return cases, logits


# ---------------------------------------------------------------------------------------------- building

def save_variant(variant, seed, directory, tokenizer_dir):
    config = variant["config"]()
    torch.manual_seed(seed)
    model = variant["cls"](config)
    randomize(model, seed)
    model = model.to(variant["dtype"])
    kwargs = {}
    if "max_shard_size" in variant:
        kwargs["max_shard_size"] = variant["max_shard_size"]
    model.save_pretrained(directory, **kwargs)
    for name in os.listdir(tokenizer_dir):
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(directory, name))


def build_variant(variant, index, out_root, tokenizer_dir, tokenizer):
    directory = os.path.join(out_root, variant["name"])
    for attempt in range(SEED_TRIES):
        seed = 1000 * (index + 1) + attempt
        if os.path.exists(directory):
            shutil.rmtree(directory)
        save_variant(variant, seed, directory, tokenizer_dir)
        cases, logits = reference(variant, directory, tokenizer)
        check_feature_active(variant, directory, tokenizer, logits)
        worst = min(c["min_margin"] for c in cases)
        print(f"  seed {seed}: min greedy margin {worst:.5f}", flush=True)
        if worst >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{variant['name']}: no seed in {SEED_TRIES} tries gave a greedy margin >= {MIN_MARGIN}")
    ref = {
        "variant": variant["name"],
        "description": variant["description"],
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "seed": seed,
        "cases": cases,
    }
    with open(os.path.join(directory, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    save_file(logits, os.path.join(directory, "reference.safetensors"))
    for i, c in enumerate(cases):
        print(f"  case {i}: {len(c['input_ids'])} prompt tokens, min margin {c['min_margin']:.5f}, "
              f"no-cache recompute agrees: {c['no_cache_recompute_agrees']}, "
              f"logit range [{float(logits[f'logits.{i}'].min()):.2f}, {float(logits[f'logits.{i}'].max()):.2f}]; "
              f"{c['greedy_text']!r}", flush=True)
    return ref


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory; one sub-directory per variant is recreated")
    parser.add_argument("--only", nargs="*", help="build only these variants (default: all)")
    args = parser.parse_args()

    torch.set_num_threads(min(8, os.cpu_count() or 1))
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
    os.makedirs(args.out, exist_ok=True)  # each variant's own directory is recreated; other files are kept
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        built = build_tokenizer(tokenizer_dir)
        # Everything below uses the tokenizer as read back from the saved files, as a user would load it.
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        for prompt in PROMPTS:
            if built(prompt)["input_ids"] != tokenizer(prompt)["input_ids"]:
                raise SystemExit(f"the saved tokenizer encodes {prompt!r} differently from the trained one")
        vocab_tokens = len(tokenizer)
        vocab = (vocab_tokens + 7) // 8 * 8
        bos_id, eos_id = tokenizer.convert_tokens_to_ids([BOS, EOS])
        print(f"tokenizer: {vocab_tokens} tokens (model vocab {vocab}), BOS {bos_id}, EOS {eos_id}, "
              f"files {sorted(os.listdir(tokenizer_dir))}")
        for prompt in PROMPTS:
            ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
            if ids[0] != bos_id or ids.count(bos_id) != 1:
                raise SystemExit(f"expected exactly one leading BOS for {prompt!r}, got {ids}")
            print(f"  {len(ids):3d} tokens: {prompt!r}")
        print(llama3_bands(16))
        summary = []
        for index, variant in enumerate(variants(vocab, bos_id, eos_id)):
            if args.only and variant["name"] not in args.only:
                continue
            print(f"{variant['name']}: {variant['description']}", flush=True)
            ref = build_variant(variant, index, args.out, tokenizer_dir, tokenizer)
            summary.append((variant["name"], ref["seed"], min(c["min_margin"] for c in ref["cases"])))
    print("variant, seed, min greedy margin:")
    for name, seed, margin in summary:
        print(f"  {name:22s} {seed:6d} {margin:.5f}")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"total size {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
