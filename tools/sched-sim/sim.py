#!/usr/bin/env python3
"""A model of Lathe's scheduler (lathe-core Scheduler, KvCacheManager, BlockPool) over `bench throughput`
workloads, to weigh admission policies before spending GPU time on them.

It follows the scheduler's rules: running sequences first, oldest first, each taking min(tokens left, budget);
when a running sequence cannot get its next block the youngest running one is preempted (its blocks freed, its
prompt and output recomputed later); waiting sequences are admitted in arrival order while budget, sequence slots
and blocks last, none in a step that preempted; --no-evict admits only while every running sequence's whole
length fits; otherwise a watermark keeps a share of the blocks free when admitting beside running sequences. Freed blocks
go to the tail of a least-recently-freed list, a sequence's last block first, and keep their prefix-cache entry
until handed out again: a preempted sequence that comes back takes its leading blocks that are still cached and
recomputes from there. It does not model the step overlap.

A step costs W + PF * (prompt tokens) + KV * (context tokens read) + ROW * (rows), in ms. The defaults were fitted
to the H100 records of bench/results (Llama-3-8B, BF16, 25,047 blocks of 16): 16,768 tok/s for 128/128 x 3000
(measured 16,683), 1,602 preemptions for 128/2048 x 1000 (measured 1,598; 9,238 tok/s against a measured 9,751)
and 1,819 tok/s for 2048/128 x 1000 under no-evict (measured 1,818.7), all with --prefill-scale 0.97.

  python3 tools/sched-sim/sim.py 2048/2048:1000 --watermark 0.01 --prefill-scale 0.97
"""
import argparse
import collections


def simulate(inp, out, n, blocks=25047, bs=16, budget=8192, max_seqs=1024, no_evict=False, watermark=0.0,
             prefix_cache=True, w=5.7, pf=0.0255, kv=4.68e-5, row=0.02):
    waiting = collections.deque(range(n))
    running = []
    computed = [0] * n
    tokens = [inp] * n
    held = [[] for _ in range(n)]  # block ids in token order
    free = collections.OrderedDict((b, None) for b in range(blocks))  # head: least recently freed
    tag = {}  # block -> (sequence, index) of a cached full block
    where = {}  # (sequence, index) -> block
    mark = int(watermark * blocks)
    ms = 0.0
    done = preemptions = steps = generated = 0

    def need(upto):
        return (upto + bs - 1) // bs

    def take():
        b, _ = free.popitem(last=False)
        t = tag.pop(b, None)
        if t is not None:
            del where[t]
        return b

    def release(s, keep_cached):
        full = computed[s] // bs
        for idx in range(len(held[s]) - 1, -1, -1):
            b = held[s][idx]
            if keep_cached and prefix_cache and idx < full:
                tag[b] = (s, idx)
                where[(s, idx)] = b
            free[b] = None
        held[s] = []

    def cached_prefix(s):
        k = 0
        while k < (tokens[s] - 1) // bs and (s, k) in where:
            k += 1
        return k

    while done < n:
        left = budget
        sched = []
        preempted = False
        i = 0
        while i < len(running) and left > 0:
            s = running[i]
            k = min(tokens[s] - computed[s], left)
            if k == 0:
                i += 1
                continue
            req = need(computed[s] + k) - len(held[s])
            ok = True
            while req > len(free):
                v = running.pop()
                release(v, True)
                computed[v] = 0
                waiting.appendleft(v)
                preemptions += 1
                preempted = True
                sched = [x for x in sched if x[0] != v]
                if v == s:
                    ok = False
                    break
            if not ok:
                break
            held[s].extend(take() for _ in range(req))
            sched.append((s, k))
            left -= k
            i += 1
        reserved = sum(need(inp + out) for s in running) if no_evict else 0
        while not preempted and left > 0 and waiting:
            s = waiting[0]
            if len(running) + 1 > max_seqs:
                break
            if no_evict and running and reserved + need(inp + out) > blocks:
                break
            hit = cached_prefix(s) if prefix_cache else 0
            # the blocks past the cached prefix and the revived prefix blocks (which leave the free list too): need(tokens)
            if mark and not no_evict and running and len(free) - need(tokens[s]) < mark:
                break
            k = min(tokens[s] - hit * bs, left)
            req = need(hit * bs + k) - hit
            if req > len(free) - hit:
                break
            waiting.popleft()
            revived = [where.pop((s, x)) for x in range(hit)]
            for b in revived:
                del free[b]
                del tag[b]
            held[s] = revived + [take() for _ in range(req)]
            computed[s] = hit * bs
            running.append(s)
            sched.append((s, k))
            left -= k
            reserved += need(inp + out) if no_evict else 0
        prompt_tokens = sum(k for s, k in sched if k > 1 or computed[s] < inp)
        context = sum(computed[s] + k for s, k in sched)
        ms += w + pf * prompt_tokens + kv * context + row * len(sched)
        steps += 1
        finished = []
        for s, k in sched:
            computed[s] += k
            if computed[s] == tokens[s]:
                tokens[s] += 1
                generated += 1
                if tokens[s] - inp >= out:
                    finished.append(s)
        for s in finished:
            running.remove(s)
            release(s, False)
            done += 1
    return {"tok_s": generated / (ms / 1000), "seconds": ms / 1000, "preemptions": preemptions, "steps": steps}


def main():
    p = argparse.ArgumentParser(description="simulate bench throughput under the scheduler's admission rules")
    p.add_argument("pairs", nargs="+", help="IN/OUT:REQUESTS, e.g. 2048/2048:1000")
    p.add_argument("--blocks", type=int, default=25047)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--budget", type=int, default=8192, help="max-num-batched-tokens")
    p.add_argument("--max-num-seqs", type=int, default=1024)
    p.add_argument("--no-evict", action="store_true")
    p.add_argument("--watermark", type=float, default=0.0)
    p.add_argument("--no-prefix-cache", action="store_true", help="preempted sequences recompute everything")
    p.add_argument("--prefill-scale", type=float, default=1.0, help="multiplies the per-prompt-token cost")
    a = p.parse_args()
    for spec in a.pairs:
        lens, n = spec.split(":")
        inp, out = (int(x) for x in lens.split("/"))
        r = simulate(inp, out, int(n), a.blocks, a.block_size, a.budget, a.max_num_seqs, a.no_evict, a.watermark,
                     not a.no_prefix_cache, pf=0.0255 * a.prefill_scale)
        print(f"{spec}: {r['tok_s']:.0f} tok/s, {r['seconds']:.1f} s, {r['preemptions']} preemptions, {r['steps']} steps")


if __name__ == "__main__":
    main()
