"""
deepseek_ref.py -- a plain-PyTorch DeepSeekMoE (HF `DeepseekForCausalLM`, model_type "deepseek").

This is the oracle the C++ engine (dsmoe) is checked against, and the PyTorch peer of the training
benchmark. It follows the HF remote code (see /work/shared/reference/deepseekmoe.md section 1)
operation for operation, plus extensions of ours that HF does not have:
  * capacity dropping   (config key `capacity_factor`, default 0 = dropless, i.e. HF behaviour)
  * device-level balance loss (`device_aux_loss_alpha`, `n_expert_groups`, defaults 0 / 1)
  * evaluation-time routing options (RoutingOptions: no shared experts, masked top experts, another k;
    the paper's section 4.5 analyses), a forward argument, off by default

Parameter names are exactly the HF checkpoint names (model.layers.{i}.mlp.experts.{e}.up_proj.weight,
...), so a state_dict of this module is a valid HF-layout checkpoint.

Dimension legend (used in comments and shape annotations):
  B   batch size                    S   sequence length          T = B*S tokens of a batch
  d   hidden_size                   V   vocab_size               L   num_hidden_layers
  H   num_attention_heads           KVH num_key_value_heads      hd  head_dim = d / H
  F   intermediate_size (dense MLP) Fe  moe_intermediate_size    Fs  Fe * n_shared_experts
  E   n_routed_experts              k   num_experts_per_tok      D   n_expert_groups
  C   per-expert capacity (tokens) of one MoE layer for one batch

Deliberate precision differences from HF (none change the maths): HF computes RMSNorm and the RoPE
tables in float32 even for a bf16/f64 model; here everything runs in the model dtype (float64 for
fixtures, so the oracle is as exact as possible; float32 for the benchmark peer).
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------------
# Config


class DeepseekConfig:
    """HF config.json -> attributes. Defaults are the HF `DeepseekConfig` class defaults, so an
    absent key means what it means for HF. Unknown generic keys (architectures, torch_dtype,
    transformers_version, auto_map, bos/eos ids, ...) are accepted and ignored."""

    DEFAULTS = dict(
        vocab_size=102400, hidden_size=4096, intermediate_size=11008, moe_intermediate_size=1407,
        num_hidden_layers=30, num_attention_heads=32, num_key_value_heads=None,
        n_shared_experts=None, n_routed_experts=None, num_experts_per_tok=None,
        moe_layer_freq=1, first_k_dense_replace=0, norm_topk_prob=False, scoring_func="softmax",
        aux_loss_alpha=0.001, seq_aux=True, hidden_act="silu", rms_norm_eps=1e-6,
        rope_theta=10000.0, rope_scaling=None, attention_bias=False, attention_dropout=0.0,
        max_position_embeddings=2048, tie_word_embeddings=False, initializer_range=0.02,
        # --- our extensions ---
        capacity_factor=0.0,         # > 0: C = ceil(cf * T * k / E) per expert per MoE layer
        device_aux_loss_alpha=0.0,   # alpha2 of the paper's device-level balance loss
        n_expert_groups=1,           # D contiguous equal groups of routed experts ("devices")
    )

    def __init__(self, d):
        for key, val in self.DEFAULTS.items():
            setattr(self, key, d.get(key, val))
        if self.num_key_value_heads is None:  # HF: None means MHA
            self.num_key_value_heads = self.num_attention_heads
        # Guard the options we do not implement rather than silently computing something else.
        assert self.hidden_act == "silu", self.hidden_act
        assert self.scoring_func == "softmax", self.scoring_func
        assert self.rope_scaling is None, "rope_scaling not supported"
        assert not self.attention_bias, "attention_bias not supported"
        assert self.hidden_size % self.num_attention_heads == 0
        assert self.num_attention_heads % self.num_key_value_heads == 0
        if self.has_moe:
            assert self.n_routed_experts % self.n_expert_groups == 0
        self.head_dim = self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    @property
    def has_moe(self):
        return bool(self.n_routed_experts)  # null and 0 both mean "dense model"

    def is_moe_layer(self, i):
        # HF DeepseekDecoderLayer: MoE iff n_routed_experts and i >= first_k_dense_replace
        # and i % moe_layer_freq == 0; every other layer is a dense SwiGLU of width F.
        return self.has_moe and i >= self.first_k_dense_replace and i % self.moe_layer_freq == 0


# --------------------------------------------------------------------------------------------------
# Blocks


class RMSNorm(nn.Module):
    def __init__(self, d, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, dtype=dtype))
        self.eps = eps

    def forward(self, x):  # x*rsqrt(mean(x^2)+eps)*w, mean over the hidden dim
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(S, hd, theta, dtype):
    """cos, sin [S, hd] for positions 0..S-1. inv_freq[i] = 1/theta^(2i/hd), i < hd/2; the table is
    cat(freqs, freqs) because HF pairs dim i with dim i + hd/2 (split-half / NeoX rotation)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(S, dtype=torch.float64), inv_freq)  # [S, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)                               # [S, hd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        d, H, KVH, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.H, self.KVH, self.hd = H, KVH, hd
        self.q_proj = nn.Linear(d, H * hd, bias=False, dtype=dtype)
        self.k_proj = nn.Linear(d, KVH * hd, bias=False, dtype=dtype)
        self.v_proj = nn.Linear(d, KVH * hd, bias=False, dtype=dtype)
        self.o_proj = nn.Linear(H * hd, d, bias=False, dtype=dtype)

    def forward(self, x, cos, sin):  # x [B,S,d]
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.H, self.hd).transpose(1, 2)    # [B,H,S,hd]
        k = self.k_proj(x).view(B, S, self.KVH, self.hd).transpose(1, 2)  # [B,KVH,S,hd]
        v = self.v_proj(x).view(B, S, self.KVH, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # GQA (HF repeat_kv): query head h reads kv head h // (H/KVH).
        rep = self.H // self.KVH
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)              # [B,H,S,S]
        causal = torch.ones(S, S, dtype=torch.bool).triu(1)
        att = att.masked_fill(causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, S, self.H * self.hd)
        return self.o_proj(y)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)). Used for dense layers, routed and shared experts."""

    def __init__(self, d, width, dtype):
        super().__init__()
        self.gate_proj = nn.Linear(d, width, bias=False, dtype=dtype)
        self.up_proj = nn.Linear(d, width, bias=False, dtype=dtype)
        self.down_proj = nn.Linear(width, d, bias=False, dtype=dtype)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class RoutingOptions:
    """Evaluation-time routing changes for the paper's section 4.5 analyses (not in HF; dsmoe's
    RoutingOptions in src/model/routing.h means the same):
      disable_shared  leave the shared experts' output out
      top_k           routed experts per token (None or 0: the config's num_experts_per_tok)
      mask_top        m: per token the m highest-probability experts are excluded before the top-k
    The gate softmax stays over all E experts; the combine weights are the chosen experts' softmax
    probabilities (renormalised over the chosen k when norm_topk_prob and k > 1). Evaluation only."""

    def __init__(self, disable_shared=False, top_k=None, mask_top=0):
        self.disable_shared, self.top_k, self.mask_top = bool(disable_shared), top_k or None, int(mask_top)

    def active(self):
        return self.disable_shared or self.top_k is not None or self.mask_top != 0


class MoEGate(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size, dtype=dtype))
        self.k, self.norm_topk_prob = cfg.num_experts_per_tok, cfg.norm_topk_prob

    def forward(self, x, routing=None):  # x [T,d]
        """-> topk_idx [T,k], topk_w [T,k], scores [T,E]; k and the masked experts from `routing`."""
        k = self.k if routing is None or routing.top_k is None else routing.top_k
        m = 0 if routing is None else routing.mask_top
        E = self.weight.shape[0]
        if not (k >= 1 and m >= 0 and m + k <= E):
            raise ValueError(f"routing options: top_k {k}, mask_top {m} with {E} experts")
        scores = (x @ self.weight.t()).softmax(dim=-1)  # [T,E]; softmax over the routed experts only
        select = scores
        if m > 0:  # the m best experts of each token lose for the selection only: -inf, weights untouched
            masked = torch.topk(scores, k=m, dim=-1, sorted=False).indices           # [T,m]
            select = scores.scatter(1, masked, float("-inf"))
        topk_idx = torch.topk(select, k=k, dim=-1, sorted=True).indices           # [T,k], descending
        topk_w = scores.gather(1, topk_idx)                                       # unmasked probabilities
        if k > 1 and self.norm_topk_prob:  # HF: only when k > 1
            topk_w = topk_w / (topk_w.sum(dim=-1, keepdim=True) + 1e-20)
        return topk_idx, topk_w, scores


def capacity_keep_mask(topk_idx, E, C):
    """[T,k] bool: assignment (t, slot) survives iff it is among the first C assignments of its
    expert in flattened token order t = b*S + s. A token picks k distinct experts, so the order of
    slots inside one token does not matter."""
    onehot = F.one_hot(topk_idx, E).sum(dim=1)                  # [T,E] 0/1: token t chose expert e
    position = onehot.cumsum(dim=0)                             # [T,E] 1-based rank of t within e
    return position.gather(1, topk_idx) <= C                    # [T,k]


def capacity(cfg, T, k=None):
    """C = ceil(capacity_factor * T * k / E), evaluated in double left to right, i.e.
    ceil(((cf * T) * k) / E); T = B*S tokens of the batch, k the experts per token (default: the
    config's). None when dropless (cf <= 0)."""
    if cfg.capacity_factor <= 0:
        return None
    k = cfg.num_experts_per_tok if k is None else k
    return math.ceil(cfg.capacity_factor * T * k / cfg.n_routed_experts)


def balance_losses(cfg, scores, topk_idx, B, S):
    """(expert-level, device-level) balance losses of one MoE layer; plain floats 0.0 when off.
    scores [T,E] is the full softmax (differentiated); topk_idx [T,k] is the routing BEFORE capacity
    dropping. Counts are integers, hence not differentiated."""
    E, k = cfg.n_routed_experts, cfg.num_experts_per_tok
    T = B * S
    exp_loss, dev_loss = 0.0, 0.0
    counts = F.one_hot(topk_idx, E).sum(dim=1).to(scores.dtype)           # [T,E] 0/1
    if cfg.aux_loss_alpha > 0:
        if cfg.seq_aux:  # per-sequence f and P, averaged over sequences (HF seq_aux=True)
            ce = counts.view(B, S, E).sum(dim=1) / (S * k / E)             # [B,E]
            P = scores.view(B, S, E).mean(dim=1)                           # [B,E]
            exp_loss = cfg.aux_loss_alpha * (ce * P).sum(dim=1).mean()
        else:            # f_i = E*count_i/(T*k), P_i = mean over all T tokens
            f = counts.sum(dim=0) * E / (T * k)                            # [E]
            exp_loss = cfg.aux_loss_alpha * (f * scores.mean(dim=0)).sum()
    if cfg.device_aux_loss_alpha > 0:  # paper eq. for L_DevBal, groups of E/D contiguous experts
        D = cfg.n_expert_groups
        f = counts.sum(dim=0) * E / (T * k)                                # [E]
        P = scores.mean(dim=0)                                             # [E]
        f_g = f.view(D, E // D).mean(dim=1)                                # [D] mean of f over group
        P_g = P.view(D, E // D).sum(dim=1)                                 # [D] sum of P over group
        dev_loss = cfg.device_aux_loss_alpha * (f_g * P_g).sum()
    return exp_loss, dev_loss


class MoE(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.gate = MoEGate(cfg, dtype)
        self.experts = nn.ModuleList(MLP(d, cfg.moe_intermediate_size, dtype)
                                     for _ in range(cfg.n_routed_experts))
        if cfg.n_shared_experts:  # one SwiGLU of width Fe * n_shared (== n separate experts summed)
            self.shared_experts = MLP(d, cfg.moe_intermediate_size * cfg.n_shared_experts, dtype)
        else:
            self.shared_experts = None
        self.stats = {}  # routing diagnostics of the last forward (for fixtures)

    def forward(self, x, routing=None):  # x [B,S,d] -> y [B,S,d], (expert loss, device loss)
        B, S, d = x.shape
        cfg = self.cfg
        x = x.reshape(B * S, d)                                            # [T,d]
        topk_idx, topk_w, scores = self.gate(x, routing)
        k = topk_idx.shape[1]
        if routing is not None and routing.active():  # evaluation only: no balance losses
            losses = (0.0, 0.0)
        else:
            losses = balance_losses(cfg, scores, topk_idx, B, S)           # uses pre-drop routing
        keep = torch.ones_like(topk_idx, dtype=torch.bool)
        C = capacity(cfg, B * S, k)
        if C is not None:  # dropped slots just vanish; surviving weights are NOT renormalised
            keep = capacity_keep_mask(topk_idx, cfg.n_routed_experts, C)
        # HF-style expert loop: gather the tokens routed to each expert, run it, scatter-add back.
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where((topk_idx == e) & keep)
            if tok.numel() == 0:
                continue
            y.index_add_(0, tok, expert(x[tok]) * topk_w[tok, slot].unsqueeze(-1))
        if self.shared_experts is not None and not (routing is not None and routing.disable_shared):
            y = y + self.shared_experts(x)
        with torch.no_grad():  # diagnostics: drops, the smallest decision margin and the chosen experts
            srt = scores.sort(dim=-1, descending=True).values
            m, E = (0 if routing is None else routing.mask_top), cfg.n_routed_experts
            # log-probability gaps at the selection's edges: ranks m-1|m (masking) and m+k-1|m+k (top-k)
            gaps = [srt[:, b - 1].log() - srt[:, b].log() for b in (m, m + k) if 0 < b < E]
            gap = torch.stack(gaps).min() if gaps else torch.tensor(float("inf"))
            counts = F.one_hot(topk_idx, E).sum(dim=(0, 1))              # [E] selections before drops
            self.stats = dict(capacity=C, dropped=int((~keep).sum()), min_logit_gap=float(gap),
                              selected_count=counts.tolist())
        return y.view(B, S, d), losses


class DecoderLayer(nn.Module):
    def __init__(self, cfg, i, dtype):
        super().__init__()
        self.self_attn = Attention(cfg, dtype)
        self.mlp = MoE(cfg, dtype) if cfg.is_moe_layer(i) else \
            MLP(cfg.hidden_size, cfg.intermediate_size, dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)

    def forward(self, h, cos, sin, routing=None):  # pre-norm residual block
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        xn = self.post_attention_layernorm(h)
        out = self.mlp(xn, routing) if isinstance(self.mlp, MoE) else self.mlp(xn)
        if isinstance(self.mlp, MoE):
            out, losses = out
        else:
            losses = (0.0, 0.0)
        return h + out, losses


class DeepseekModel(nn.Module):  # the `model.` prefix of the HF names
    def __init__(self, cfg, dtype):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, dtype) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)


class DeepseekForCausalLM(nn.Module):
    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        self.cfg, self.dtype = cfg, dtype
        self.model = DeepseekModel(cfg, dtype)
        # Tied: no lm_head parameter at all, logits use embed_tokens.weight (HF ties the tensors).
        self.lm_head = None if cfg.tie_word_embeddings else \
            nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False, dtype=dtype)

    def forward(self, input_ids, targets=None, routing=None):
        """input_ids [B,S] -> logits [B,S,V]; with targets [B,S] also a dict of losses:
        ce = mean token cross-entropy over the B*S targets (given, not shifted; -1 = ignored, as SFT masks use),
        aux = sum over MoE layers of expert-level + device-level balance losses, loss = ce + aux.
        routing: RoutingOptions for every MoE layer (evaluation only: not with targets)."""
        B, S = input_ids.shape
        cfg = self.cfg
        if routing is not None and routing.active() and targets is not None:
            raise ValueError("routing options are evaluation-only "
                             "(the balance losses assume the trained routing)")
        cos, sin = rope_tables(S, cfg.head_dim, cfg.rope_theta, self.dtype)
        h = self.model.embed_tokens(input_ids)                             # [B,S,d], no scaling
        exp_aux, dev_aux = 0.0, 0.0
        for layer in self.model.layers:
            h, (e_loss, d_loss) = layer(h, cos, sin, routing)
            exp_aux, dev_aux = exp_aux + e_loss, dev_aux + d_loss
        h = self.model.norm(h)
        W = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = h @ W.t()                                                 # [B,S,V]
        if targets is None:
            return logits, None
        ce = F.cross_entropy(logits.reshape(B * S, -1), targets.reshape(B * S).long(), ignore_index=-1)
        aux = exp_aux + dev_aux
        return logits, dict(ce=ce, aux=aux, exp_aux=exp_aux, dev_aux=dev_aux, loss=ce + aux)

    def moe_layers(self):
        return [i for i, l in enumerate(self.model.layers) if isinstance(l.mlp, MoE)]


@torch.no_grad()
def init_weights(model, seed):
    """Matrices ~ normal(0, initializer_range) drawn in float32 (so a float64 model holds exactly the
    F32-rounded values), norm weights = 1. One generator, consumed in named_parameters() order."""
    g = torch.Generator().manual_seed(seed)
    std = model.cfg.initializer_range
    for _, p in model.named_parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std)
        else:
            p.fill_(1.0)


# --------------------------------------------------------------------------------------------------
# Training: LR schedules, optimizer, one step. The C++ engine implements the same formulas.


def lr_multiplier(schedule, s, N, W):
    """LR multiplier at step s (0-based) of N total steps with W warm-up steps; lr_s = lr * mult.

      warm-up (all schedules): s < W          -> (s + 1) / W
      "constant":              s >= W         -> 1
      "multistep" (paper):     s >= W         -> 1, times 0.316 once s >= floor(0.8 N) and
                                                 0.316^2 (instead) once s >= floor(0.9 N);
                                                 floor(0.8 N) = (8 N) div 10, floor(0.9 N) = (9 N) div 10
                                                 (integer division, no float rounding)
      "cosine":                s >= W         -> 0.1 + 0.9 * 0.5 * (1 + cos(pi * (s - W) / (N - W)))
                                                 (lr_min_ratio 0.1; 1 at s = W, -> 0.1 at s = N)
    """
    if s < W:
        return (s + 1) / W
    if schedule == "constant":
        return 1.0
    if schedule == "multistep":
        if s >= (9 * N) // 10:
            return 0.316 * 0.316
        if s >= (8 * N) // 10:
            return 0.316
        return 1.0
    if schedule == "cosine":
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * (s - W) / (N - W)))
    raise ValueError(schedule)


def make_optimizer(model, lr, betas, eps, weight_decay):
    """torch AdamW (decoupled decay p *= 1 - lr*wd, then Adam with bias correction); decay on the
    >=2-dim parameters (all matrices, embeddings, gates), none on the 1-dim norm weights."""
    params = [p for p in model.parameters()]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([dict(params=decay, weight_decay=weight_decay),
                              dict(params=no_decay, weight_decay=0.0)],
                             lr=lr, betas=betas, eps=eps)


def train_step(model, opt, input_ids, targets, lr, grad_clip):
    """One step: forward, backward, clip_grad_norm_, AdamW at learning rate lr. Returns (losses
    dict, total grad norm before clipping). A parameter that got no gradient (an expert with no
    tokens) gets a zero gradient, so every parameter is decayed/updated every step, as in an engine
    that keeps dense gradient buffers. clip: coef = grad_clip / (norm + 1e-6), applied iff < 1."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    _, losses = model(input_ids, targets)
    losses["loss"].backward()
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), grad_clip)
    opt.step()
    return losses, norm
