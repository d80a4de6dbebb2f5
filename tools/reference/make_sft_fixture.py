"""
make_sft_fixture.py --out DIR : the masked-loss (SFT) golden fixture for the dsmoe C++ engine.

Writes DIR/sft_masked/{model/config.json, model/model.safetensors, fixture.safetensors, fixture.json} in exactly
the format of make_fixtures.py (see its docstring), so tests/test_fixtures.cpp checks it with the other fixtures.
The difference is the targets: about half of them are -1 (ignored), laid out like SFT batches (see make_batch):
  ce_loss = F.cross_entropy(logits, targets, ignore_index=-1)  -- mean over the non-ignored targets only
  aux_loss = balance losses over ALL B*S tokens (routing does not look at targets), loss = ce_loss + aux_loss
and the 5 AdamW steps (ref.make_optimizer, clipping, schedule) minimise that masked loss.
deepseek_ref.py's forward ignores -1 targets (ignore_index=-1) and its train_step is reused unchanged.

Float64 from the F32-rounded initial weights, stored as F32; one CPU thread, fixed seeds -> identical bytes every run.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref as ref  # noqa: E402
from make_fixtures import BASE, OPT, build, f32, i32, moe_stats, write_safetensors  # noqa: E402

NAME = "sft_masked"
# MoE with a shared expert, a dense first layer, seq-level balance loss, GQA 4/2; cosine with warm-up.
CONFIG = dict(BASE, num_key_value_heads=2, initializer_range=0.06)
FX = dict(batch=3, seq_len=16, seed=48, schedule="cosine", warmup=1, grad_clip=1.0)
PAD = CONFIG["eos_token_id"]


def make_batch(cfg_dict, fx):
    """SFT-shaped batch [B,S]: random ids, targets = the next input (a causal LM row), then -1 where untrained.
      row 0: a two-turn conversation: masked prompt stretches, trained reply stretches (ends with a trained token)
      row 1: a short conversation padded with EOS: everything masked except ONE trained target
      row 2: a random per-token mask (p = 0.7) and a masked padded tail of 3
    About half of all targets are -1.
    """
    B, S, V = fx["batch"], fx["seq_len"], cfg_dict["vocab_size"]
    assert (B, S) == (3, 16)
    g = torch.Generator().manual_seed(2000 + fx["seed"])
    row = torch.randint(3, V, (B, S + 1), generator=g)     # ids >= 3: no accidental BOS/EOS/pad in content
    trained = torch.zeros(B, S, dtype=torch.bool)          # trained[b, j]: target j (= row[b, j+1]) is trained
    trained[0, 2:9] = True                                  # reply 1
    trained[0, 11:16] = True                                # reply 2 (to the end of the row)
    row[1, 7:] = PAD                                        # short conversation: 7 tokens, then padding
    trained[1, 5] = True                                    # the only trained target of row 1
    trained[2, :13] = torch.rand(13, generator=g) < 0.7
    row[2, 14:] = PAD                                       # padded tail: targets 13..15 masked
    ids = row[:, :S].clone()
    tgt = torch.where(trained, row[:, 1:], torch.full_like(row[:, 1:], -1))
    return ids, tgt


def run(out):
    cfg_dict, fx = CONFIG, FX
    m32, model = build(cfg_dict, fx)
    ids, tgt = make_batch(cfg_dict, fx)
    names = [n for n, _ in model.named_parameters()]

    logits, L = model(ids, tgt)  # deepseek_ref ignores -1 targets (ignore_index=-1)
    L["loss"].backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    model.zero_grad(set_to_none=True)

    N, W = OPT["steps"], fx["warmup"]
    opt = ref.make_optimizer(model, OPT["lr"], (OPT["beta1"], OPT["beta2"]), OPT["eps"], OPT["weight_decay"])
    step_loss, step_norm, step_lr, gaps = [], [], [], []
    for s in range(N):
        lr = OPT["lr"] * ref.lr_multiplier(fx["schedule"], s, N, W)
        losses, norm = ref.train_step(model, opt, ids, tgt, lr, fx["grad_clip"])
        step_loss.append(float(losses["loss"]))
        step_norm.append(float(norm))
        step_lr.append(lr)
        gaps.extend(st["min_logit_gap"] for st in moe_stats(model).values())
    assert step_loss[0] == float(L["loss"]), "step-0 loss must equal the fixture loss"

    d = os.path.join(out, NAME)
    os.makedirs(os.path.join(d, "model"), exist_ok=True)
    with open(os.path.join(d, "model", "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(d, "model", "model.safetensors"), [(n, f32(p)) for n, p in m32.named_parameters()])

    scalar = lambda v: f32(torch.as_tensor(float(v), dtype=torch.float64).reshape(1))  # noqa: E731
    tensors = [("input_ids", i32(ids)), ("targets", i32(tgt)), ("logits", f32(logits)),
               ("ce_loss", scalar(L["ce"])), ("aux_loss", scalar(L["aux"])), ("loss", scalar(L["loss"]))]
    tensors += [("grad." + n, f32(g)) for n, g in zip(names, grads)]
    tensors += [("step_loss", f32(torch.tensor(step_loss, dtype=torch.float64))),
                ("step_grad_norm", f32(torch.tensor(step_norm, dtype=torch.float64))),
                ("step_lr", f32(torch.tensor(step_lr, dtype=torch.float64)))]
    tensors += [("final." + n, f32(p)) for n, p in model.named_parameters()]
    write_safetensors(os.path.join(d, "fixture.safetensors"), tensors)

    # The unmasked mean over all targets (what a loss without ignore_index would give on clamped targets) differs:
    # recorded so that a C++ loss that ignores the mask is visibly wrong, not accidentally close.
    with torch.no_grad():
        V = logits.shape[-1]
        per_token = F.cross_entropy(logits.reshape(-1, V), tgt.clamp(min=0).reshape(-1).long(), reduction="none")
    trained_per_row = (tgt != -1).sum(dim=1).tolist()
    info = {"config": NAME, "batch": fx["batch"], "seq_len": fx["seq_len"], "lr": OPT["lr"],
            "beta1": OPT["beta1"], "beta2": OPT["beta2"], "eps": OPT["eps"],
            "weight_decay": OPT["weight_decay"], "grad_clip": fx["grad_clip"],
            "schedule": fx["schedule"], "warmup": W, "steps": N,
            # --- informational (not needed to run the test) ---
            "seed": fx["seed"], "moe_layers": m32.moe_layers(), "ignore_index": -1,
            "trained_targets_per_row": trained_per_row, "trained_targets": int(sum(trained_per_row)),
            "clip_active": [n > fx["grad_clip"] for n in step_norm],
            "min_topk_logit_gap": min(gaps) if gaps else None,
            "ce_loss": float(L["ce"]), "ce_loss_if_unmasked": float(per_token.mean()),
            "aux_expert_loss": float(L["exp_aux"]), "aux_device_loss": float(L["dev_aux"]), "loss": float(L["loss"]),
            "step_loss": step_loss, "step_grad_norm": step_norm, "step_lr": step_lr,
            "n_params": sum(p.numel() for p in m32.parameters())}
    with open(os.path.join(d, "fixture.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)  # bit-reproducible reductions
    torch.use_deterministic_algorithms(True)
    info = run(args.out)
    B, S = info["batch"], info["seq_len"]
    assert 0.4 * B * S <= info["trained_targets"] <= 0.6 * B * S, info["trained_targets_per_row"]
    # A near-tie in some top-k routing decision could flip between float64 and the engine's float32.
    assert info["min_topk_logit_gap"] > 2e-4, info["min_topk_logit_gap"]
    assert 1 in info["trained_targets_per_row"], "one row must train on exactly one target"
    print(f"{NAME:24s} loss={info['loss']:.6f} ce={info['ce_loss']:.6f} (unmasked {info['ce_loss_if_unmasked']:.6f}) "
          f"trained={info['trained_targets']}/{B * S} {info['trained_targets_per_row']} "
          f"norms={['%.3f' % n for n in info['step_grad_norm']]} gap={info['min_topk_logit_gap']}")


if __name__ == "__main__":
    main()
