"""
make_fixtures.py --out DIR : golden fixtures for the dsmoe C++ engine, computed by deepseek_ref.py.

For every config NAME below it writes
  DIR/NAME/model/config.json          HF-style config (+ our extension keys where used)
  DIR/NAME/model/model.safetensors    initial weights, F32, HF names, one tensor per expert
  DIR/NAME/fixture.safetensors        inputs, logits, losses, gradients, 5 AdamW steps (see below)
  DIR/NAME/fixture.json               batch/optimizer/schedule settings + diagnostics
Everything is computed in float64 from the F32-rounded initial weights and stored as F32.

fixture.safetensors, in this order:
  input_ids I32 [B,S], targets I32 [B,S]
  logits F32 [B,S,V]; ce_loss, aux_loss, loss F32 [1]       (forward with targets, capacity if any)
  grad.<hf name> F32 (param shape): d loss / d param at the initial weights (before clipping)
  step_loss, step_grad_norm, step_lr F32 [steps]            (loss before update s; clip norm; lr)
  final.<hf name> F32: weights after `steps` AdamW updates on the same batch

Routing-option fixtures (the paper's section 4.5 analyses; evaluation only, no training): for every
ROUTING_CONFIGS entry NAME
  DIR/routing/NAME/model/config.json, model.safetensors   as above
  DIR/routing/NAME/routing.safetensors   input_ids I32 [B,S]; then per option set SET, in ROUTING_SETS order:
                                         logits.SET F32 [B,S,V], selected_count.SET I32 [n MoE layers, E]
                                         (per layer, how often each routed expert was chosen)
  DIR/routing/NAME/routing.json          batch, seq_len, moe_layers, option sets (name, disable_shared,
                                         top_k (0 = config's), mask_top) + the smallest decision margin
(in a folder of their own, so that the training-fixture scan, which looks for fixture.safetensors, skips them).

Deterministic: one CPU thread, fixed seeds, fixed tensor/key order -> identical bytes every run.
"""
import argparse
import copy
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref as ref  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Minimal safetensors writer (format: u64 LE header length, JSON header, raw LE data in header order)

_ST_DTYPE = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32", np.dtype("<f8"): "F64"}


def write_safetensors(path, tensors):
    """tensors: list of (name, numpy array) -- written contiguously in list order."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        data = arr.tobytes()
        header[name] = {"dtype": _ST_DTYPE[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)  # pad with spaces so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def f32(t):
    return t.detach().to(torch.float32).numpy().astype("<f4")


def i32(t):
    return t.detach().to(torch.int32).numpy().astype("<i4")


# --------------------------------------------------------------------------------------------------
# Configs. Tiny, but each exercises a feature the engine must get exactly right.

BASE = dict(
    model_type="deepseek", architectures=["DeepseekForCausalLM"], vocab_size=96, hidden_size=48,
    intermediate_size=96, moe_intermediate_size=24, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8, num_experts_per_tok=2,
    first_k_dense_replace=1, moe_layer_freq=1, norm_topk_prob=False, scoring_func="softmax",
    aux_loss_alpha=0.05, seq_aux=True, rms_norm_eps=1e-6, rope_theta=10000.0,
    max_position_embeddings=64, tie_word_embeddings=False, hidden_act="silu",
    initializer_range=0.05, bos_token_id=1, eos_token_id=2, torch_dtype="float32",
)


def cfg(**kw):
    c = dict(BASE)
    c.update(kw)
    return c


# name, config, fixture settings (batch, seq_len, seed, schedule, warmup, grad_clip)
CONFIGS = [
    # shared experts (2 -> width 48), norm_topk off, layer 0 dense, seq_aux on, constant LR
    ("moe_shared_seqaux", cfg(n_shared_experts=2),
     dict(batch=2, seq_len=12, seed=11, schedule="constant", warmup=0, grad_clip=1.0)),
    # no shared experts (null), norm_topk on, all layers MoE, GQA 4/2, batch-level aux, cosine
    ("moe_noshared_norm_gqa", cfg(vocab_size=128, hidden_size=64, moe_intermediate_size=32,
                                  intermediate_size=128, n_shared_experts=None, norm_topk_prob=True,
                                  first_k_dense_replace=0, num_key_value_heads=2, seq_aux=False,
                                  aux_loss_alpha=0.1, initializer_range=0.04),
     dict(batch=3, seq_len=8, seed=12, schedule="cosine", warmup=1, grad_clip=0.5)),
    # moe_layer_freq 2 (layers 0,2 MoE, 1,3 dense), tied embeddings, MQA (1 kv head), k=3, multistep
    ("moe_freq2_tied_mqa", cfg(num_hidden_layers=4, hidden_size=32, intermediate_size=64,
                               moe_intermediate_size=16, first_k_dense_replace=0, moe_layer_freq=2,
                               tie_word_embeddings=True, num_key_value_heads=1, n_routed_experts=6,
                               num_experts_per_tok=3, initializer_range=0.08, aux_loss_alpha=0.02),
     dict(batch=2, seq_len=16, seed=13, schedule="multistep", warmup=1, grad_clip=1.0)),
    # first_k_dense_replace 2 (layers 0,1 dense, 2 MoE), n_shared_experts 0, k=1 with
    # norm_topk_prob on (HF skips the normalisation when k == 1), constant LR with warm-up 2
    ("moe_dense2_top1", cfg(first_k_dense_replace=2, n_shared_experts=0, n_routed_experts=4,
                            num_experts_per_tok=1, norm_topk_prob=True, aux_loss_alpha=0.1),
     dict(batch=2, seq_len=10, seed=14, schedule="constant", warmup=2, grad_clip=100.0)),
    # device-level balance loss: 16 experts in D=4 groups, alpha2 0.1, alpha1 0.02 batch-level, cosine
    ("moe_device_loss", cfg(num_hidden_layers=2, n_routed_experts=16, num_experts_per_tok=4,
                            moe_intermediate_size=12, seq_aux=False, aux_loss_alpha=0.02,
                            device_aux_loss_alpha=0.1, n_expert_groups=4),
     dict(batch=3, seq_len=12, seed=15, schedule="cosine", warmup=2, grad_clip=1.0)),
    # capacity dropping: cf 1.0 -> C = ceil(48*2/8) = 12, norm_topk on (before dropping), GQA, multistep
    ("moe_capacity", cfg(capacity_factor=1.0, norm_topk_prob=True, num_key_value_heads=2,
                         initializer_range=0.1),
     dict(batch=3, seq_len=16, seed=16, schedule="multistep", warmup=0, grad_clip=1.0)),
    # dense model (n_routed_experts null), GQA, tied embeddings
    ("dense_gqa_tied", dict(model_type="deepseek", architectures=["DeepseekForCausalLM"],
                            vocab_size=64, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, n_routed_experts=None,
                            rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=64,
                            tie_word_embeddings=True, hidden_act="silu", initializer_range=0.05,
                            torch_dtype="float32"),
     dict(batch=2, seq_len=8, seed=17, schedule="constant", warmup=1, grad_clip=1.0)),
    # everything at once: capacity 1.1 (C = ceil(13.2) = 14) + device loss D=2 + seq_aux +
    # norm_topk + tied + GQA, first_k_dense 1 with freq 2 over 4 layers (only layer 2 is MoE),
    # k=3, rope_theta 500
    ("moe_mixed", cfg(num_hidden_layers=4, moe_layer_freq=2, capacity_factor=1.1,
                      device_aux_loss_alpha=0.05, n_expert_groups=2, norm_topk_prob=True,
                      tie_word_embeddings=True, num_key_value_heads=2, num_experts_per_tok=3,
                      rope_theta=500.0, initializer_range=0.1),
     dict(batch=2, seq_len=16, seed=18, schedule="cosine", warmup=0, grad_clip=0.5)),
]

# Routing options (RoutingOptions in deepseek_ref.py): name, config, batch settings, option sets.
# Option set: (name, disable_shared, top_k (0 = config's k), mask_top).
ROUTING_CONFIGS = [
    # 2 shared + 16 routed (k = 3), layer 0 dense, 2 MoE layers; norm_topk_prob off (the released models)
    ("shared2_e16_k3", cfg(n_shared_experts=2, n_routed_experts=16, num_experts_per_tok=3,
                           moe_intermediate_size=12, initializer_range=0.1),
     dict(batch=2, seq_len=12, seed=21),
     [("default", False, 0, 0),
      ("no_shared", True, 0, 0),
      ("no_shared_top5", True, 5, 0),     # remove the shared experts, activate k + n_shared routed ones
      ("mask1", False, 0, 1),
      ("mask2", False, 0, 2),
      ("top1", False, 1, 0),
      ("top2", False, 2, 0),              # k - 1
      ("top16", False, 16, 0),            # every routed expert
      ("mask3_top4_no_shared", True, 4, 3)]),
    # norm_topk_prob on: the renormalisation runs over the chosen (unmasked) experts only; at k = 1 HF skips it
    ("norm_shared2_e8_k2", cfg(n_shared_experts=2, n_routed_experts=8, num_experts_per_tok=2,
                               norm_topk_prob=True, initializer_range=0.1),
     dict(batch=3, seq_len=8, seed=22),
     [("default", False, 0, 0),
      ("mask1", False, 0, 1),
      ("mask2", False, 0, 2),
      ("mask2_top3", False, 3, 2),
      ("top1", False, 1, 0),
      ("mask1_top1", False, 1, 1),
      ("no_shared_top4", True, 4, 0)]),
]

OPT = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=5)


def make_batch(cfg_dict, fx):
    g = torch.Generator().manual_seed(1000 + fx["seed"])
    shape = (fx["batch"], fx["seq_len"])
    ids = torch.randint(0, cfg_dict["vocab_size"], shape, generator=g)
    tgt = torch.randint(0, cfg_dict["vocab_size"], shape, generator=g)
    return ids, tgt


def build(cfg_dict, fx):
    """Initial model (float32 init) and its exact float64 copy."""
    c = ref.DeepseekConfig(cfg_dict)
    m32 = ref.DeepseekForCausalLM(c, torch.float32)
    ref.init_weights(m32, fx["seed"])
    m64 = copy.deepcopy(m32).to(torch.float64)
    m64.dtype = torch.float64
    return m32, m64


def moe_stats(model):
    return {i: model.model.layers[i].mlp.stats for i in model.moe_layers()}


def run_config(name, cfg_dict, fx, out):
    m32, model = build(cfg_dict, fx)
    ids, tgt = make_batch(cfg_dict, fx)
    names = [n for n, _ in model.named_parameters()]

    # Forward + gradient at the initial weights.
    logits, L = model(ids, tgt)
    L["loss"].backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    stats0 = moe_stats(model)
    model.zero_grad(set_to_none=True)

    # `steps` AdamW updates on the same batch.
    N, W = OPT["steps"], fx["warmup"]
    opt = ref.make_optimizer(model, OPT["lr"], (OPT["beta1"], OPT["beta2"]), OPT["eps"],
                             OPT["weight_decay"])
    step_loss, step_norm, step_lr, dropped, gaps = [], [], [], [], []
    for s in range(N):
        lr = OPT["lr"] * ref.lr_multiplier(fx["schedule"], s, N, W)
        losses, norm = ref.train_step(model, opt, ids, tgt, lr, fx["grad_clip"])
        step_loss.append(float(losses["loss"]))
        step_norm.append(float(norm))
        step_lr.append(lr)
        st = moe_stats(model)
        dropped.append([st[i]["dropped"] for i in sorted(st)])
        gaps.extend(st[i]["min_logit_gap"] for i in st)
    assert step_loss[0] == float(L["loss"]), "step-0 loss must equal the fixture loss"

    # ---- write model/
    os.makedirs(os.path.join(out, name, "model"), exist_ok=True)
    with open(os.path.join(out, name, "model", "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out, name, "model", "model.safetensors"),
                      [(n, f32(p)) for n, p in m32.named_parameters()])

    # ---- write fixture.safetensors
    scalar = lambda v: f32(torch.as_tensor(float(v), dtype=torch.float64).reshape(1))  # noqa: E731
    tensors = [("input_ids", i32(ids)), ("targets", i32(tgt)), ("logits", f32(logits)),
               ("ce_loss", scalar(L["ce"])), ("aux_loss", scalar(L["aux"])), ("loss", scalar(L["loss"]))]
    tensors += [("grad." + n, f32(g)) for n, g in zip(names, grads)]
    tensors += [("step_loss", f32(torch.tensor(step_loss, dtype=torch.float64))),
                ("step_grad_norm", f32(torch.tensor(step_norm, dtype=torch.float64))),
                ("step_lr", f32(torch.tensor(step_lr, dtype=torch.float64)))]
    tensors += [("final." + n, f32(p)) for n, p in model.named_parameters()]
    write_safetensors(os.path.join(out, name, "fixture.safetensors"), tensors)

    moe = m32.moe_layers()
    info = {"config": name, "batch": fx["batch"], "seq_len": fx["seq_len"], "lr": OPT["lr"],
            "beta1": OPT["beta1"], "beta2": OPT["beta2"], "eps": OPT["eps"],
            "weight_decay": OPT["weight_decay"], "grad_clip": fx["grad_clip"],
            "schedule": fx["schedule"], "warmup": W, "steps": N,
            # --- informational (not needed to run the test) ---
            "seed": fx["seed"], "moe_layers": moe,
            "capacity": [stats0[i]["capacity"] for i in moe],
            "dropped_per_step": dropped,
            "clip_active": [n > fx["grad_clip"] for n in step_norm],
            "min_topk_logit_gap": min(gaps) if gaps else None,
            "ce_loss": float(L["ce"]), "aux_expert_loss": float(L["exp_aux"]),
            "aux_device_loss": float(L["dev_aux"]), "loss": float(L["loss"]),
            "step_loss": step_loss, "step_grad_norm": step_norm, "step_lr": step_lr,
            "n_params": sum(p.numel() for p in m32.parameters())}
    with open(os.path.join(out, name, "fixture.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def run_routing(name, cfg_dict, fx, sets, out):
    """Logits and expert counts of the initial model under each option set (float64, no grad)."""
    _, model = build(cfg_dict, fx)
    ids, _ = make_batch(cfg_dict, fx)
    d = os.path.join(out, "routing", name)
    os.makedirs(os.path.join(d, "model"), exist_ok=True)
    with open(os.path.join(d, "model", "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(d, "model", "model.safetensors"),
                      [(n, f32(p.to(torch.float32))) for n, p in model.named_parameters()])
    tensors, info_sets = [("input_ids", i32(ids))], []
    moe = model.moe_layers()
    with torch.no_grad():
        for set_name, disable_shared, top_k, mask_top in sets:
            opts = ref.RoutingOptions(disable_shared=disable_shared, top_k=top_k, mask_top=mask_top)
            logits, _ = model(ids, routing=opts)
            st = moe_stats(model)
            counts = torch.tensor([st[i]["selected_count"] for i in moe], dtype=torch.int64)  # [layers, E]
            tensors += [("logits." + set_name, f32(logits)), ("selected_count." + set_name, i32(counts))]
            gap = min(st[i]["min_logit_gap"] for i in moe)  # inf when nothing is left out (k = E): null
            info_sets.append(dict(name=set_name, disable_shared=disable_shared, top_k=top_k, mask_top=mask_top,
                                  min_logit_gap=gap if math.isfinite(gap) else None))
    write_safetensors(os.path.join(d, "routing.safetensors"), tensors)
    info = {"config": name, "batch": fx["batch"], "seq_len": fx["seq_len"], "seed": fx["seed"],
            "moe_layers": moe, "option_sets": info_sets}
    with open(os.path.join(d, "routing.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)  # bit-reproducible reductions
    torch.use_deterministic_algorithms(True)
    for name, c, fx in CONFIGS:
        info = run_config(name, c, fx, args.out)
        if c.get("capacity_factor", 0) > 0:
            assert sum(info["dropped_per_step"][0]) > 0, f"{name}: capacity config drops nothing"
        aux = info["aux_expert_loss"] + info["aux_device_loss"]
        print(f"{name:24s} loss={info['loss']:.6f} aux={aux:.6f} "
              f"norms={['%.3f' % n for n in info['step_grad_norm']]} clip={info['grad_clip']} "
              f"drop0={info['dropped_per_step'][0]} gap={info['min_topk_logit_gap']}")
    for name, c, fx, sets in ROUTING_CONFIGS:
        info = run_routing(name, c, fx, sets, args.out)
        gaps = {s["name"]: round(s["min_logit_gap"], 5) for s in info["option_sets"] if s["min_logit_gap"]}
        # A near-tie at a selection edge would let float32 and float64 choose different experts.
        assert min(gaps.values()) > 1e-4, f"{name}: a routing decision is a near-tie: {gaps}"
        print(f"routing/{name:21s} min log-prob gap per option set: {gaps}")


if __name__ == "__main__":
    main()
