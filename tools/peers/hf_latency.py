#!/usr/bin/env python3
"""Batch-1 latency of Hugging Face transformers on a Llama shape, as a peer for `lathe bench latency`.

The model is built directly on the GPU in BF16 with random weights (no download): only the shape
matters for latency. Each mode is warmed up first, then timed with CUDA events around whole
`generate` calls:

  ttft_ms_<N>   generate(prompt of N random tokens, max_new_tokens=1): one forward pass over the
                prompt plus the greedy pick of the first token.
  decode        generate(prompt, max_new_tokens=M) minus the TTFT call of the same prompt, over the
                M-1 tokens after the first: decode_tok_s = (M-1) / that time, tpot_ms its inverse.

End-of-sequence is disabled, so every call produces exactly M tokens (checked).

Modes:
  eager          DynamicCache, no compilation.
  compile        static KV cache; transformers compiles the decode step itself with
                 torch.compile(mode="reduce-overhead", fullgraph=True) (CUDA graphs); the prefill
                 runs eagerly. This is the path transformers 5 takes for a static cache.
  compile-forward  static KV cache and the older documented recipe
                 `model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)`,
                 which compiles the prefill as well (one extra graph per prompt length). With
                 transformers 5.17 / torch 2.11 it fails: the compiled prefill initialises the static
                 cache inside the graph, so CUDA graphs overwrite it ("accessing tensor output of
                 CUDAGraphs that has been overwritten"). Kept to show that, not in the default modes.

Offline throughput (--throughput-modes, the peer of `lathe bench throughput`): one batch of
--throughput-batch random prompts of --throughput-input-len tokens, each generating exactly
--throughput-output-len tokens in one generate call; after the first (compiling) call and
--throughput-warmup more, --throughput-reps calls are timed and output_tok_s = batch * output_len /
median time (prefill included). Results go under "throughput" in the JSON; --skip-latency (or
--modes none) measures throughput only.

Compilation time (the extra time of the first call over a warm one) is reported as compile_s and
excluded from every timing. If a mode fails, its error is recorded and the next mode runs.

Usage:
  python3 hf_latency.py --preset llama-3-8b --input-len 128 --output-len 128 \\
      --ttft-input-len 2048 --modes eager,compile --json out.json
  python3 hf_latency.py --preset tiny --json tiny.json     # quick smoke run
  python3 hf_latency.py --preset llama-3-8b --skip-latency --throughput-batch 64 \\
      --throughput-input-len 128 --throughput-output-len 128 --throughput-modes compile --json tp.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import traceback

import torch

# Shapes of the presets. llama-3-8b is Meta-Llama-3-8B's config.json (16.06 GB of BF16 weights).
PRESETS = {
    "llama-3-8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
    ),
    "tiny": dict(
        vocab_size=32000,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
    ),
}

MODES = ("eager", "compile", "compile-forward")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def build_model(preset: str, seed: int):
    """Builds the preset's LlamaForCausalLM on the GPU in BF16 with N(0, 0.02) weights, norms at 1."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = dict(PRESETS[preset])
    rope_theta = shape.pop("rope_theta")
    config = LlamaConfig(
        **shape,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    try:  # transformers 5 keeps it here; skipping the default init saves a pass over the weights
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:  # the default init on the GPU takes seconds, not minutes
            from contextlib import nullcontext as no_init_weights

    with torch.device("cuda"), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # RMSNorm gains
                p.fill_(1.0)
            else:
                p.normal_(0.0, config.initializer_range, generator=gen)
    model.eval()
    for name, p in model.named_parameters():
        if p.dtype != torch.bfloat16 or p.device.type != "cuda":
            raise RuntimeError(f"parameter {name} is {p.dtype} on {p.device}; expected bfloat16 on cuda")
    inv_freq = model.model.rotary_emb.inv_freq
    if inv_freq.dtype != torch.float32 or not torch.isfinite(inv_freq).all() or inv_freq[0].item() != 1.0:
        raise RuntimeError(f"rotary inv_freq looks wrong: {inv_freq.dtype} first={inv_freq[0].item()}")

    # Never stop early: no end-of-sequence token, so every call yields exactly max_new_tokens.
    gc = model.generation_config
    gc.eos_token_id = None
    gc.pad_token_id = 0
    gc.bos_token_id = 1
    gc.do_sample = False
    return model, config


class Timer:
    """Times one call on the current CUDA stream with events, after draining earlier work."""

    def __init__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn):
        torch.cuda.synchronize()
        self.start.record()
        result = fn()
        self.end.record()
        torch.cuda.synchronize()
        return self.start.elapsed_time(self.end), result


def mode_setup(model, mode: str, fullgraph: bool):
    """The generate() keyword arguments of a mode, and the model's forward to restore afterwards (or None)."""
    original_forward = None
    if mode == "eager":
        extra = dict(disable_compile=True)
    elif mode == "compile":
        from transformers import CompileConfig

        extra = dict(
            cache_implementation="static",
            compile_config=CompileConfig(fullgraph=fullgraph, mode="reduce-overhead"),
        )
    elif mode == "compile-forward":
        extra = dict(cache_implementation="static", disable_compile=True)
        original_forward = model.forward
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=fullgraph)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return extra, original_forward


def timed_generate(model, mode: str, extra: dict, timer: "Timer"):
    """A function (ids, new_tokens) -> ms that times one greedy generate call and checks its length."""

    def generate(ids: torch.Tensor, new_tokens: int) -> float:
        def call():
            return model.generate(  # generate runs under torch.no_grad itself
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                **extra,
            )

        ms, out = timer(call)
        if out.shape != (ids.shape[0], ids.shape[1] + new_tokens):
            raise RuntimeError(
                f"{mode}: generate returned shape {tuple(out.shape)} for a prompt of {tuple(ids.shape)} "
                f"and {new_tokens} new tokens; expected exactly {new_tokens} new tokens"
            )
        return ms

    return generate


def measure_mode(model, mode: str, args, prompts: dict[int, torch.Tensor], fullgraph: bool = True) -> dict:
    extra, original_forward = mode_setup(model, mode, fullgraph)
    timer = Timer()
    generate = timed_generate(model, mode, extra, timer)

    res: dict = {"fullgraph": fullgraph} if mode != "eager" else {}
    if mode != "eager":
        torch._dynamo.reset()  # no graphs left over from an earlier mode
    t_mode = time.perf_counter()
    try:
        n_in, n_out, n_ttft = args.input_len, args.output_len, args.ttft_input_len
        short = prompts[n_in]

        # First calls: compile (where the mode compiles) and warm up allocator, kernels, CUDA graphs.
        first_full = generate(short, n_out)
        log(f"{mode}: first {n_in}+{n_out} call {first_full / 1e3:.2f} s")
        for _ in range(args.warmup):
            generate(short, 1)
            generate(short, n_out)

        ttft = [generate(short, 1) for _ in range(args.ttft_reps)]
        full = [generate(short, n_out) for _ in range(args.reps)]
        ttft_med = statistics.median(ttft)
        full_med = statistics.median(full)
        decode_ms = full_med - ttft_med
        if decode_ms <= 0:
            raise RuntimeError(f"{mode}: decode time {decode_ms:.3f} ms is not positive (full {full_med}, ttft {ttft_med})")
        res[f"ttft_ms_{n_in}"] = round(ttft_med, 3)
        res["e2e_ms"] = round(full_med, 3)
        res["decode_tok_s"] = round((n_out - 1) / (decode_ms / 1e3), 2)
        res["tpot_ms"] = round(decode_ms / (n_out - 1), 3)
        res["e2e_ms_all"] = [round(x, 3) for x in full]
        res[f"ttft_ms_{n_in}_all"] = [round(x, 3) for x in ttft]
        res["compile_s"] = round(max(0.0, (first_full - full_med) / 1e3), 2) if mode != "eager" else 0.0
        log(f"{mode}: decode {res['decode_tok_s']} tok/s, tpot {res['tpot_ms']} ms, ttft@{n_in} {res[f'ttft_ms_{n_in}']} ms")

        if n_ttft and n_ttft != n_in:
            long = prompts[n_ttft]
            first_long = generate(long, 1)
            for _ in range(args.warmup):
                generate(long, 1)
            ttft_long = [generate(long, 1) for _ in range(args.ttft_reps)]
            long_med = statistics.median(ttft_long)
            res[f"ttft_ms_{n_ttft}"] = round(long_med, 3)
            res[f"ttft_ms_{n_ttft}_all"] = [round(x, 3) for x in ttft_long]
            if mode == "compile-forward":  # the long prompt compiles another prefill graph
                res["compile_s_prefill_long"] = round(max(0.0, (first_long - long_med) / 1e3), 2)
            log(f"{mode}: ttft@{n_ttft} {res[f'ttft_ms_{n_ttft}']} ms")
    except Exception as e:  # record and go on with the next mode
        res["error"] = f"{type(e).__name__}: {e}"[:2000]
        log(f"{mode}: FAILED: {res['error'].splitlines()[0][:300]}")
        traceback.print_exc()
    finally:
        if original_forward is not None:
            del model.forward  # back to the class's forward
        res["mode_wall_s"] = round(time.perf_counter() - t_mode, 1)
    return res


def measure_throughput(model, mode: str, args, prompt: torch.Tensor, fullgraph: bool = True) -> dict:
    """Offline throughput: whole generate calls over a batch of prompts, each producing output_len tokens.

    prompt is [batch, input_len]. The first call compiles (where the mode compiles); then
    --throughput-warmup untimed calls; then --throughput-reps timed calls, whose median is e2e_s and
    output_tok_s = batch * output_len / e2e_s (prefill included, as in an offline batch run).
    """
    batch, n_in = prompt.shape
    n_out = args.throughput_output_len
    res: dict = {"batch": batch, "input_len": n_in, "output_len": n_out}
    if mode != "eager":
        res["fullgraph"] = fullgraph
    original_forward = None
    t_mode = time.perf_counter()
    try:
        extra, original_forward = mode_setup(model, mode, fullgraph)
        if mode != "eager":
            torch._dynamo.reset()  # no graphs left over from an earlier mode or batch size
        generate = timed_generate(model, f"throughput {mode}", extra, Timer())

        first = generate(prompt, n_out)
        log(f"throughput {mode}: first {batch}x({n_in}+{n_out}) call {first / 1e3:.2f} s")
        for _ in range(args.throughput_warmup):
            generate(prompt, n_out)
        runs = [generate(prompt, n_out) for _ in range(args.throughput_reps)]
        e2e_ms = statistics.median(runs)
        res["e2e_s"] = round(e2e_ms / 1e3, 4)
        res["output_tok_s"] = round(batch * n_out / (e2e_ms / 1e3), 2)
        res["e2e_s_all"] = [round(x / 1e3, 4) for x in runs]
        if mode != "eager":
            res["compile_s"] = round(max(0.0, (first - e2e_ms) / 1e3), 2)
        log(f"throughput {mode}: {res['output_tok_s']} output tok/s, e2e {res['e2e_s']} s")
    except Exception as e:  # record and go on with the next mode
        res["error"] = f"{type(e).__name__}: {e}"[:2000]
        log(f"throughput {mode}: FAILED: {res['error'].splitlines()[0][:300]}")
        traceback.print_exc()
    finally:
        if original_forward is not None:
            del model.forward  # back to the class's forward
        res["mode_wall_s"] = round(time.perf_counter() - t_mode, 1)
    return res


def _is_graph_break(error: str) -> bool:
    """Whether a mode failed because dynamo could not trace one graph (worth a fullgraph=False retry)."""
    return error.startswith("Unsupported") or "graph break" in error.lower()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="llama-3-8b")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--ttft-input-len", type=int, default=2048, help="0 skips the long-prompt TTFT")
    ap.add_argument("--modes", default="eager,compile",
                    help=f"latency modes, comma-separated, of {', '.join(MODES)}; 'none' skips latency")
    ap.add_argument("--skip-latency", action="store_true", help="measure throughput only (same as --modes none)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds after the first call of each shape")
    ap.add_argument("--reps", type=int, default=3, help="timed full generate calls per mode (median)")
    ap.add_argument("--ttft-reps", type=int, default=5, help="timed prompt-only calls per shape (median)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--throughput-modes", default="",
                    help=f"offline-throughput modes, comma-separated, of {', '.join(MODES)}; empty or 'none' skips")
    ap.add_argument("--throughput-batch", type=int, default=64)
    ap.add_argument("--throughput-input-len", type=int, default=128)
    ap.add_argument("--throughput-output-len", type=int, default=128)
    ap.add_argument("--throughput-warmup", type=int, default=1, help="untimed calls after the first (compiling) one")
    ap.add_argument("--throughput-reps", type=int, default=2, help="timed batch generate calls per mode (median)")
    ap.add_argument("--json", help="write the results here (rewritten after every mode)")
    args = ap.parse_args(argv)

    def parse_modes(text: str, flag: str) -> list[str]:
        names = [m.strip() for m in text.split(",") if m.strip() and m.strip() != "none"]
        for m in names:
            if m not in MODES:
                ap.error(f"{flag}: unknown mode {m!r}; expected one of {', '.join(MODES)} or none")
        return names

    modes = [] if args.skip_latency else parse_modes(args.modes, "--modes")
    throughput_modes = parse_modes(args.throughput_modes, "--throughput-modes")
    if not modes and not throughput_modes:
        ap.error("nothing to measure: give latency --modes or --throughput-modes")
    if modes and args.output_len < 2:
        ap.error("--output-len must be at least 2 to measure decoding")
    if throughput_modes and min(args.throughput_batch, args.throughput_input_len, args.throughput_output_len) < 1:
        ap.error("--throughput-batch, --throughput-input-len and --throughput-output-len must be at least 1")
    if not torch.cuda.is_available():
        print("hf_latency.py: no CUDA device visible to torch; this benchmark needs a GPU", file=sys.stderr)
        return 2

    import transformers

    torch.manual_seed(args.seed)
    record = {
        "peer": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(),
        "driver": driver_version(),
        "preset": args.preset,
        "dtype": "bfloat16",
        "batch": 1,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "ttft_input_len": args.ttft_input_len,
        "attn_implementation": "sdpa",
        "latency_modes": modes,
        "results": {},
        "throughput": {},
    }

    def write():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=2)
                f.write("\n")

    t0 = time.perf_counter()
    model, config = build_model(args.preset, args.seed)
    torch.cuda.synchronize()
    n_params = sum(p.numel() for p in model.parameters())
    record["params"] = n_params
    record["weight_bytes"] = n_params * 2
    record["build_s"] = round(time.perf_counter() - t0, 2)
    log(f"{args.preset}: {n_params / 1e9:.3f} B params on {record['gpu']}, built in {record['build_s']} s")

    # Random prompts (ids >= 1, so none is the pad id) generated on the GPU from a fixed seed.
    gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)
    prompts = {
        n: torch.randint(1, config.vocab_size, (1, n), device="cuda", generator=gen)
        for n in {args.input_len, args.ttft_input_len} if n
    } if modes else {}
    write()
    for mode in modes:
        log(f"mode {mode} ...")
        r = measure_mode(model, mode, args, prompts)
        if mode != "eager" and _is_graph_break(r.get("error", "")):
            # A graph break fails fullgraph=True; the peer number is still useful with graph breaks.
            log(f"mode {mode}: retrying with fullgraph=False")
            record["results"][mode] = r
            write()
            retry = measure_mode(model, mode, args, prompts, fullgraph=False)
            retry["error_fullgraph"] = r["error"]
            r = retry
        record["results"][mode] = r
        write()

    if throughput_modes:
        # One batch of random prompts (ids >= 1: no pad id, so no attention-mask padding), all of one length.
        tgen = torch.Generator(device="cuda").manual_seed(args.seed + 2)
        batch_prompt = torch.randint(
            1, config.vocab_size, (args.throughput_batch, args.throughput_input_len), device="cuda", generator=tgen)
    for mode in throughput_modes:
        log(f"throughput mode {mode} ...")
        r = measure_throughput(model, mode, args, batch_prompt)
        if mode != "eager" and _is_graph_break(r.get("error", "")):
            log(f"throughput mode {mode}: retrying with fullgraph=False")
            record["throughput"][mode] = r
            write()
            retry = measure_throughput(model, mode, args, batch_prompt, fullgraph=False)
            retry["error_fullgraph"] = r["error"]
            r = retry
        record["throughput"][mode] = r
        write()
    record["total_s"] = round(time.perf_counter() - t0, 1)
    write()

    print(f"\ntransformers {record['transformers_version']}, torch {record['torch_version']}, "
          f"{record['gpu']} (driver {record['driver']}), {args.preset} bf16, batch 1")
    for mode, r in record["results"].items():
        if "error" in r:
            print(f"  {mode:16s} FAILED: {r['error'].splitlines()[0][:200]}")
            continue
        long_key = f"ttft_ms_{args.ttft_input_len}"
        print(f"  {mode:16s} decode {r.get('decode_tok_s', float('nan')):8.2f} tok/s  "
              f"tpot {r.get('tpot_ms', float('nan')):7.3f} ms  "
              f"ttft@{args.input_len} {r.get(f'ttft_ms_{args.input_len}', float('nan')):8.2f} ms  "
              f"ttft@{args.ttft_input_len} {r.get(long_key, float('nan')):8.2f} ms  "
              f"compile {r.get('compile_s', 0.0):.1f} s")
    for mode, r in record["throughput"].items():
        head = f"  throughput {mode:12s} batch {r['batch']} ({r['input_len']}+{r['output_len']})"
        if "error" in r:
            print(f"{head} FAILED: {r['error'].splitlines()[0][:200]}")
            continue
        print(f"{head} {r['output_tok_s']:10.2f} output tok/s  e2e {r['e2e_s']:.3f} s  "
              f"compile {r.get('compile_s', 0.0):.1f} s")
    print(f"  total {record['total_s']} s")
    everything = list(record["results"].values()) + list(record["throughput"].values())
    return 0 if all("error" not in r for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
