"""The eval/generate/train contract on HF directories written by other software (BF16 sharded with an index and
tied embeddings; F16 single file, untied): `dsmoe` output must match the float64 PyTorch reference computed from
the same half-precision weights (tools/reference/make_interop.py).

usage: interop_check.py DSMOE INTEROP_DIR
"""
import json
import os
import re
import subprocess
import sys

dsmoe, root = sys.argv[1], sys.argv[2]
failures, checks = 0, 0


def check(ok, what):
    global failures, checks
    checks += 1
    print(("ok   " if ok else "FAIL ") + what)
    failures += 0 if ok else 1


def run(*args):
    r = subprocess.run([dsmoe, *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"dsmoe {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


names = sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "expected.json")))
if len(names) < 2:
    raise SystemExit(f"expected >= 2 interop directories under {root}")
for name in names:
    d = os.path.join(root, name)
    exp = json.load(open(os.path.join(d, "expected.json")))
    model, tokens = os.path.join(d, "model"), os.path.join(d, "tokens.bin")
    seq = str(exp["seq_len"])

    ev = json.loads(run("eval", "--model", model, "--data", tokens, "--seq-len", seq, "--batch", "4", "--json"))
    check(abs(ev["nll"] - exp["nll"]) <= 1e-4 * exp["nll"] and ev["tokens"] == exp["tokens"],
          f"{name}: eval nll {ev['nll']:.7f} vs reference {exp['nll']:.7f}, tokens {ev['tokens']}")

    prompt = ",".join(map(str, exp["prompt"]))
    n_new = len(exp["greedy"]) - len(exp["prompt"])
    ids = [int(t) for t in run("generate", "--model", model, "--prompt-ids", prompt, "--max-new-tokens", str(n_new),
                               "--temperature", "0", "--ids").split()]
    check(ids == exp["greedy"], f"{name}: greedy ids {ids} vs reference {exp['greedy']}")

    t = exp["train"]
    out_dir = os.path.join(d, "trained")
    log = run("train", "--model", model, "--data", tokens, "--seq-len", seq, "--batch", str(exp["batch"]),
              "--steps", str(t["steps"]), "--lr", str(t["lr"]), "--schedule", "constant", "--no-shuffle",
              "--out", out_dir, "--save-dtype", "bf16")
    losses = [float(m) for m in re.findall(r"^step .*? loss ([0-9.]+)", log, re.M)]
    close = len(losses) == len(t["losses"]) and all(abs(a - b) <= 1e-4 * b for a, b in zip(losses, t["losses"]))
    check(close, f"{name}: train losses {losses} vs reference {[round(v, 6) for v in t['losses']]}")
    ev2 = json.loads(run("eval", "--model", out_dir, "--data", tokens, "--seq-len", seq, "--json"))
    check(ev2["tokens"] == exp["tokens"], f"{name}: the trained bf16 output directory loads and evaluates")

print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
