# The prefill shapes of Llama-3-8B at 2048 tokens through torch (cuBLAS GEMMs, SDPA attention): the per-op
# reference the `bench latency --profile` rows are read against. Usage: python3 tools/peers/prefill_shapes.py
import torch, torch.nn.functional as F
torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
M = 2048
shapes = {"qkv": (4096, 6144), "o": (4096, 4096), "gate_up": (4096, 28672), "down": (14336, 4096)}
def bench(fn, iters=50):
    for _ in range(5): fn()
    torch.cuda.synchronize()
    s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / iters
total = 0
for name, (k, n) in shapes.items():
    x = torch.randn(M, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    ms = bench(lambda: F.linear(x, w))
    total += ms
    print(f"{name:8s} {M}x{k}x{n}: {ms*1000:.1f} us  {2*M*k*n/ms/1e9:.0f} TFLOP/s  x32 {ms*32:.2f} ms")
print(f"four GEMMs x32 layers: {total*32:.2f} ms")
q = torch.randn(1, 32, M, 128, device="cuda", dtype=torch.bfloat16)
kk = torch.randn(1, 8, M, 128, device="cuda", dtype=torch.bfloat16); v = torch.randn_like(kk)
for label, fn in [("sdpa gqa", lambda: F.scaled_dot_product_attention(q, kk, v, is_causal=True, enable_gqa=True))]:
    try:
        ms = bench(fn)
        print(f"{label}: {ms*1000:.1f} us  x32 {ms*32:.2f} ms  {4*M*M/2*128*32/ms/1e9:.0f} TFLOP/s")
    except Exception as ex:
        print(label, "failed", ex)
print(torch.__version__, torch.version.cuda)
