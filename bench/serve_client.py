#!/usr/bin/env python3
"""Concurrent streaming clients against an OpenAI-compatible server (dsmoe serve or llama-server).

After one untimed warm-up request, each client sends its own prompt of --prompt-tokens token ids (different per client, so no prefix is shared) to
/v1/completions with stream=true, max_tokens=--gen and ignore_eos (both servers honour it), and records the time to
the first streamed token and to the end. Prints one JSON object:
  clients, aggregate_tps (all generated tokens / wall time from the first request to the last end),
  ttft_ms (median over clients), per-client figures,
  and with --busy-ttft: the TTFT of one more request sent while --clients - 1 long streams are generating
  (busy_ttft_ms) beside the TTFT of the same request on an idle server (idle_ttft_ms).
Only the standard library: runs with any python3.
"""
import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time


def stream_completion(host, port, prompt_ids, max_tokens, started_event=None):
    """Returns (t_first_token, t_end, n_chunks) in perf_counter seconds."""
    body = json.dumps({"prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True})
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    first = None
    chunks = 0
    buf = b""
    while True:
        data = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
        if not data:
            break
        buf += data
        while b"\n\n" in buf:
            line, buf = buf.split(b"\n\n", 1)
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            obj = json.loads(line[6:])
            choices = obj.get("choices") or []
            if choices and (choices[0].get("text") or choices[0].get("finish_reason") is None):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
                    if started_event is not None:
                        started_event.set()
    conn.close()
    return first, time.perf_counter(), chunks


def run_clients(host, port, prompts, max_tokens):
    results = [None] * len(prompts)
    errors = []
    t0 = time.perf_counter()

    def worker(i):
        try:
            start = time.perf_counter()
            first, end, chunks = stream_completion(host, port, prompts[i], max_tokens)
            results[i] = {"ttft_ms": (first - start) * 1e3, "seconds": end - start, "chunks": chunks,
                          "decode_tps": (max_tokens - 1) / (end - first) if end > first else 0.0}
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    wall = time.perf_counter() - t0
    return {"aggregate_tps": len(prompts) * max_tokens / wall, "wall_s": wall,
            "ttft_ms": statistics.median(r["ttft_ms"] for r in results), "per_client": results}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--vocab", type=int, required=True, help="prompt ids are drawn from [100, vocab - 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--busy-ttft", action="store_true", help="also measure TTFT with clients - 1 busy streams")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    prompt = lambda: [rng.randrange(100, a.vocab - 100) for _ in range(a.prompt_tokens)]  # noqa: E731
    # One untimed request first (as llama-bench warms up): the first forward after start-up pays for page faults on
    # the mapped weights and thread creation, which belong to neither engine's serving speed.
    run_clients(a.host, a.port, [[rng.randrange(100, a.vocab - 100) for _ in range(8)]], 4)
    out = {"clients": a.clients, "prompt_tokens": a.prompt_tokens, "gen": a.gen}
    out.update(run_clients(a.host, a.port, [prompt() for _ in range(a.clients)], a.gen))
    if a.busy_ttft:
        # Fresh prompts each time: a repeated one would be served from the prompt cache.
        idle = [run_clients(a.host, a.port, [prompt()], 4)["ttft_ms"] for _ in range(3)]
        out["idle_ttft_ms"] = statistics.median(idle)
        # clients - 1 long streams; once all of them are generating, the probe request.
        events = [threading.Event() for _ in range(a.clients - 1)]
        busy = [threading.Thread(target=stream_completion, args=(a.host, a.port, prompt(), 4 * a.gen, e))
                for e in events]
        for t in busy:
            t.start()
        for e in events:
            e.wait(600)
        out["busy_ttft_ms"] = run_clients(a.host, a.port, [prompt()], 4)["ttft_ms"]
        for t in busy:
            t.join()
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
