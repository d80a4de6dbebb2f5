"""
pytorch_train_peer.py -- the PyTorch peer of the dsmoe training benchmark.

  /usr/bin/python3 bench/pytorch_train_peer.py --config bench/configs/bench-train-s.json \
      --batch 8 --seq 512 --steps 3 --threads 2 [--json]

float32 model from tools/reference/deepseek_ref.py (HF semantics, HF-style per-expert loop), random
init (normal(0, initializer_range)) and random tokens, torch.set_num_threads(threads). One training
step = forward + CE/balance losses + backward + clip_grad_norm_ + AdamW (the same train_step the
fixtures use). One warm-up step runs first and is not timed; then --steps steps are timed.
tokens/s = batch*seq*steps / (wall time of the timed steps).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import deepseek_ref as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after 1 untimed warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = ref.DeepseekConfig.from_json(args.config)
    model = ref.DeepseekForCausalLM(cfg, torch.float32)
    ref.init_weights(model, args.seed)
    model.train()
    opt = ref.make_optimizer(model, args.lr, (0.9, 0.95), 1e-8, 0.1)
    g = torch.Generator().manual_seed(args.seed + 1)
    shape = (args.batch, args.seq)
    ids = torch.randint(0, cfg.vocab_size, shape, generator=g)
    tgt = torch.randint(0, cfg.vocab_size, shape, generator=g)

    losses, _ = ref.train_step(model, opt, ids, tgt, args.lr, args.grad_clip)  # warm-up, untimed
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses, _ = ref.train_step(model, opt, ids, tgt, args.lr, args.grad_clip)
        times.append(time.perf_counter() - t0)
    total = sum(times)
    tok_s = args.batch * args.seq * args.steps / total
    step_ms = 1000.0 * total / args.steps
    print(f"pytorch: tokens/s={tok_s:.1f} step_ms={step_ms:.1f}")
    if args.json:
        print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": args.threads,
                          "batch": args.batch, "seq": args.seq, "steps": args.steps,
                          "tokens_per_s": round(tok_s, 2), "step_ms": round(step_ms, 2),
                          "step_ms_each": [round(1000.0 * t, 2) for t in times],
                          "final_loss": float(losses["loss"]),
                          "n_params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
