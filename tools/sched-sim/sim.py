#!/usr/bin/env python3
"""A model of Lathe's scheduler (lathe-core Scheduler) over `bench throughput` workloads, to weigh admission
policies before spending GPU time on them.

It follows the scheduler's rules: running sequences first, oldest first, each taking min(tokens left, budget);
when a running sequence cannot get its next block the youngest running one is preempted (its blocks freed, its
prompt and output recomputed later); waiting sequences are admitted in arrival order while budget, sequence slots
and blocks last, none in a step that preempted; --no-evict admits only while every running sequence's whole
length fits; a watermark keeps a share of the blocks free when admitting beside running sequences. It does not
model the prefix cache (a preempted sequence that finds its blocks still cached recomputes less), nor the step
overlap.

A step costs W + PF * (prompt tokens) + KV * (context tokens read) + ROW * (rows), in ms. The defaults were fitted
to the H100 records of bench/results (Llama-3-8B, BF16, 25,047 blocks of 16): they give 16,556 tok/s for 128/128 x
3000 (measured 16,683), 1,601 preemptions for 128/2048 x 1000 (measured 1,598) and, with PF lowered 3%, 1,819
tok/s for 2048/128 x 1000 under no-evict (measured 1,818.7).

  python3 tools/sched-sim/sim.py 2048/2048:1000 --watermark 0.01
"""
import argparse
import collections


def simulate(inp, out, n, blocks=25047, bs=16, budget=8192, max_seqs=1024, no_evict=False, watermark=0.0,
             w=5.7, pf=0.0255, kv=4.68e-5, row=0.02):
    waiting = collections.deque(range(n))
    running = []
    computed = [0] * n
    tokens = [inp] * n
    held = [0] * n
    free = blocks
    mark = int(watermark * blocks)
    ms = 0.0
    done = preemptions = steps = generated = 0

    def need(upto):
        return (upto + bs - 1) // bs

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
            req = need(computed[s] + k) - held[s]
            ok = True
            while req > free:
                v = running.pop()
                free += held[v]
                held[v] = 0
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
            free -= req
            held[s] += req
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
            if mark and running and free - need(tokens[s]) < mark:
                break
            k = min(tokens[s] - computed[s], left)
            req = need(computed[s] + k) - held[s]
            if req > free:
                break
            waiting.popleft()
            free -= req
            held[s] += req
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
            free += held[s]
            held[s] = 0
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
    p.add_argument("--prefill-scale", type=float, default=1.0, help="multiplies the per-prompt-token cost")
    a = p.parse_args()
    for spec in a.pairs:
        lens, n = spec.split(":")
        inp, out = (int(x) for x in lens.split("/"))
        r = simulate(inp, out, int(n), a.blocks, a.block_size, a.budget, a.max_num_seqs, a.no_evict, a.watermark,
                     pf=0.0255 * a.prefill_scale)
        print(f"{spec}: {r['tok_s']:.0f} tok/s, {r['seconds']:.1f} s, {r['preemptions']} preemptions, {r['steps']} steps")


if __name__ == "__main__":
    main()
