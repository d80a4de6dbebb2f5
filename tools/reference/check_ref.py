"""
check_ref.py -- self-checks of the oracle deepseek_ref.py (float64). Exits non-zero on failure.

  1. gradients: torch.autograd.gradcheck (central finite differences) of the full training loss
     (CE + expert + device balance losses, with capacity dropping) w.r.t. several parameters;
  2. the HF-style expert loop == a naive per-token loop (own softmax/top-k/normalise/capacity);
  3. attention == a naive per-(head, position) loop with RoPE written as explicit pair rotations;
  4. balance losses == plain Python loops over the paper/HF formulas;
  5. one torch AdamW step == the written-out formula the C++ engine implements;
  6. LR schedule spot values.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.utils.stateless import functional_call

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_ref as ref  # noqa: E402
from make_fixtures import CONFIGS, build, make_batch  # noqa: E402

torch.set_num_threads(1)
FAILED = []


def check(what, ok, detail=""):
    print(f"[{'ok' if ok else 'FAIL'}] {what} {detail}")
    if not ok:
        FAILED.append(what)


def get(name):
    return next((c, fx) for n, c, fx in CONFIGS if n == name)


# ---- 1. gradcheck ------------------------------------------------------------------------------
def gradcheck_config(name, pnames):
    c, fx = get(name)
    _, model = build(c, fx)
    ids, tgt = make_batch(c, fx)
    params = dict(model.named_parameters())
    for pn in pnames:
        def f(w, pn=pn):
            return functional_call(model, {pn: w}, (ids, tgt))[1]["loss"]
        w0 = params[pn].detach().clone().requires_grad_(True)
        ok = torch.autograd.gradcheck(f, (w0,), eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
        check(f"gradcheck {name}: {pn} {tuple(w0.shape)}", ok)


# ---- 2. naive per-token MoE ---------------------------------------------------------------------
def naive_moe(moe, x):  # x [B,S,d]
    cfg = moe.cfg
    E, k = cfg.n_routed_experts, cfg.num_experts_per_tok
    xs = x.reshape(-1, x.shape[-1])
    T = xs.shape[0]
    C = math.ceil(cfg.capacity_factor * T * k / E) if cfg.capacity_factor > 0 else None
    used = [0] * E
    out = []
    for t in range(T):
        logits = [float(xs[t] @ moe.gate.weight[e]) for e in range(E)]
        m = max(logits)
        z = sum(math.exp(v - m) for v in logits)
        p = [math.exp(v - m) / z for v in logits]
        top = sorted(range(E), key=lambda e: -p[e])[:k]
        w = [p[e] for e in top]
        if k > 1 and cfg.norm_topk_prob:
            s = sum(w) + 1e-20
            w = [v / s for v in w]
        y = torch.zeros_like(xs[t])
        for e, we in zip(top, w):
            used[e] += 1
            if C is not None and used[e] > C:
                continue  # dropped: neither weight nor output
            y = y + we * moe.experts[e](xs[t:t + 1])[0]
        if moe.shared_experts is not None:
            y = y + moe.shared_experts(xs[t:t + 1])[0]
        out.append(y)
    return torch.stack(out).view_as(x)


# ---- 3. naive attention -------------------------------------------------------------------------
def naive_attention(attn, x, theta):
    B, S, d = x.shape
    H, KVH, hd = attn.H, attn.KVH, attn.hd
    q = attn.q_proj(x).view(B, S, H, hd)
    k = attn.k_proj(x).view(B, S, KVH, hd)
    v = attn.v_proj(x).view(B, S, KVH, hd)

    def rope(vec, pos):  # dim i pairs with i + hd/2, angle pos / theta^(2i/hd)
        r = vec.clone()
        for i in range(hd // 2):
            a = pos / theta ** (2 * i / hd)
            r[i] = vec[i] * math.cos(a) - vec[i + hd // 2] * math.sin(a)
            r[i + hd // 2] = vec[i + hd // 2] * math.cos(a) + vec[i] * math.sin(a)
        return r

    y = torch.zeros(B, S, H, hd, dtype=x.dtype)
    for b in range(B):
        for h in range(H):
            g = h // (H // KVH)
            for i in range(S):
                qi = rope(q[b, i, h], i)
                sc = torch.stack([qi @ rope(k[b, j, g], j) for j in range(i + 1)]) / math.sqrt(hd)
                y[b, i, h] = sc.softmax(0) @ v[b, :i + 1, g]
    return attn.o_proj(y.reshape(B, S, d))


# ---- 4. balance losses by loops -----------------------------------------------------------------
def naive_balance(cfg, scores, topk_idx, B, S):
    E, k = cfg.n_routed_experts, cfg.num_experts_per_tok
    sc, idx = scores.view(B, S, E), topk_idx.view(B, S, k).tolist()
    total = 0.0
    if cfg.aux_loss_alpha > 0:
        if cfg.seq_aux:
            acc = 0.0
            for b in range(B):
                for i in range(E):
                    cnt = sum(row.count(i) for row in idx[b])
                    acc += cnt / (S * k / E) * float(sc[b, :, i].mean())
            total += cfg.aux_loss_alpha * acc / B
        else:
            for i in range(E):
                cnt = sum(row.count(i) for seq in idx for row in seq)
                total += cfg.aux_loss_alpha * E * cnt / (B * S * k) * float(sc[:, :, i].mean())
    if cfg.device_aux_loss_alpha > 0:
        D = cfg.n_expert_groups
        G = E // D
        f = [E * sum(row.count(j) for seq in idx for row in seq) / (B * S * k) for j in range(E)]
        P = [float(sc[:, :, j].mean()) for j in range(E)]
        total += cfg.device_aux_loss_alpha * sum(
            sum(f[g * G:(g + 1) * G]) / G * sum(P[g * G:(g + 1) * G]) for g in range(D))
    return total


def forward_checks(name):
    c, fx = get(name)
    _, model = build(c, fx)
    ids, tgt = make_batch(c, fx)
    B, S = ids.shape
    captured = []
    hooks = []
    for layer in model.model.layers:
        hooks.append(layer.self_attn.register_forward_hook(
            lambda m, inp, out: captured.append(("attn", m, inp[0], out))))
        if isinstance(layer.mlp, ref.MoE):
            hooks.append(layer.mlp.register_forward_hook(
                lambda m, inp, out: captured.append(("moe", m, inp[0], out))))
    with torch.no_grad():
        _, L = model(ids, tgt)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        naive_aux = 0.0
        for kind, m, x, out in captured:
            if kind == "attn":
                err = (naive_attention(m, x, model.cfg.rope_theta) - out).abs().max().item()
                check(f"attention == naive loop   [{name}]", err < 1e-12, f"max|diff|={err:.1e}")
            else:
                err = (naive_moe(m, x) - out[0]).abs().max().item()
                check(f"expert loop == per-token  [{name}]", err < 1e-12,
                      f"max|diff|={err:.1e} dropped={m.stats['dropped']}")
                xs = x.reshape(B * S, -1)
                idx, _, scores = m.gate(xs)
                naive_aux += naive_balance(m.cfg, scores, idx, B, S)
        aux = float(L["aux"])
        check(f"balance losses == loops   [{name}]", abs(aux - naive_aux) < 1e-14 + 1e-12 * abs(aux),
              f"aux={aux:.12f} naive={naive_aux:.12f}")


# ---- 5. AdamW formula ---------------------------------------------------------------------------
def adamw_check():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    grads = [torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    lr, b1, b2, eps, wd = 3e-3, 0.9, 0.95, 1e-8, 0.1
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    x = w.clone()
    for t, gr in enumerate(grads, start=1):
        p.grad = gr.clone()
        opt.step()
        # the formula the C++ engine implements (torch AdamW, decoupled weight decay):
        x = x * (1 - lr * wd)
        m = b1 * m + (1 - b1) * gr
        v = b2 * v + (1 - b2) * gr * gr
        x = x - (lr / (1 - b1 ** t)) * m / (v.sqrt() / math.sqrt(1 - b2 ** t) + eps)
    err = (p.detach() - x).abs().max().item()
    check("torch AdamW == written formula", err < 1e-15, f"max|diff|={err:.1e}")


def schedule_check():
    N = 5
    got = {s: [ref.lr_multiplier(s, i, N, 0) for i in range(N)] for s in ("constant", "multistep", "cosine")}
    want = {"constant": [1, 1, 1, 1, 1], "multistep": [1, 1, 1, 1, 0.316 ** 2],
            "cosine": [0.1 + 0.45 * (1 + math.cos(math.pi * i / 5)) for i in range(5)]}
    ok = all(abs(a - b) < 1e-15 for s in got for a, b in zip(got[s], want[s]))
    ok &= [ref.lr_multiplier("constant", i, 5, 2) for i in range(3)] == [0.5, 1.0, 1.0]
    ok &= [ref.lr_multiplier("multistep", i, 10, 1) for i in (7, 8, 9)] == [1.0, 0.316, 0.316 ** 2]
    check("lr schedules", ok, str(got))


if __name__ == "__main__":
    gradcheck_config("moe_mixed", ["model.layers.2.mlp.gate.weight",
                                   "model.layers.2.mlp.experts.3.down_proj.weight",
                                   "model.layers.2.mlp.shared_experts.up_proj.weight",
                                   "model.layers.1.self_attn.k_proj.weight",
                                   "model.layers.2.post_attention_layernorm.weight",
                                   "model.norm.weight"])
    gradcheck_config("moe_device_loss", ["model.layers.1.mlp.gate.weight",
                                         "model.layers.0.input_layernorm.weight",
                                         "lm_head.weight"])
    gradcheck_config("moe_noshared_norm_gqa", ["model.layers.0.mlp.gate.weight"])
    for name, _, _ in CONFIGS:
        forward_checks(name)
    adamw_check()
    schedule_check()
    print("ALL PASSED" if not FAILED else f"{len(FAILED)} FAILED")
    sys.exit(1 if FAILED else 0)
