// Parameter and training-FLOPs accounting of a ModelConfig: the one place that counts them.
//
// Two FLOPs counts, side by side:
//  - paper: the DeepSeekMoE paper's own count (reference deepseekmoe.md §4), which reproduces its printed tables:
//      F_tok = 6·L·(4d² + A_ffn) + 12·L·d·l + 6·d·V,   F = F_tok × N tokens,
//    with MHA assumed (4d²), attention over the full length l, the lm_head counted and the embedding lookup, norms
//    and gate not, and A_ffn in NOMINAL sizes: a standard FFN is 8d² parameters (SwiGLU of width 8d/3), any FFN
//    counts as its width in standard FFNs rounded to the nearest 1/8 (undoing the real models' rounding of widths
//    up to multiples of 64), and a MoE model's (shared + top-k) experts are applied to every layer, its dense
//    first layers included. ModelConfig::paper_expert_width replaces the nominal expert size by a real width (the
//    paper counts 145B and 142B at their aligned 1408).
//  - exact: 6 FLOPs (forward + backward) per activated matmul weight at its real width, layer by layer (dense
//    layers, shared + top-k experts, the router, attention with its real KV width, the lm_head), plus attention
//    scores and PV, 12·L·(heads·head_dim)·l per token over the full length, or half that with causal masking.
#pragma once
#include <cstdint>

#include "model/config.h"

namespace dsmoe {

// Parameters by kind. Matrices are [out, in] as in the checkpoint; "activated" = what one token uses.
struct ParamBreakdown {
  int64_t embedding = 0;      // embed_tokens [V, d]; 0 when tied (the lm_head counts the shared table)
  int64_t lm_head = 0;        // [V, d]
  int64_t attention = 0;      // L·(q [d,d] + o [d,d] + k, v [kv_dim, d])
  int64_t norms = 0;          // d·(2L + 1): two RMSNorms per layer and the final one
  int64_t router = 0;         // d·E per MoE layer (every token scores every routed expert)
  int64_t ffn = 0;            // every FFN weight: dense layers + all shared and routed experts (3·d·width each)
  int64_t ffn_activated = 0;  // dense layers + shared + top-k routed experts

  int64_t total() const { return embedding + lm_head + attention + norms + router + ffn; }
  int64_t total_no_embedding() const { return total() - embedding; }
  // With the embedding table, as the paper counts activated parameters (16B: ≈ 2.8B).
  int64_t activated() const { return activated_no_embedding() + embedding; }
  int64_t activated_no_embedding() const { return lm_head + attention + norms + router + ffn_activated; }
  // What the exact FLOPs count multiplies: activated matmul weights (no embedding lookup, no norms).
  int64_t activated_matmul() const { return lm_head + attention + router + ffn_activated; }
};
ParamBreakdown param_breakdown(const ModelConfig& c);

// The paper's FFN term, in standard FFNs (8d² parameters each).
struct PaperFfn {
  double dense_size = 0;   // nominal size of a dense FFN layer (intermediate_size)
  double expert_size = 0;  // nominal size of one expert, or paper_expert_width's exact size; 0 for a dense model
  double activated = 0;    // A_ffn / 8d²: (n_shared + top-k) × expert_size for MoE, dense_size for dense models
};
// width / (8d/3) rounded to the nearest 1/8: 1408 at d = 2048 -> 0.25, 10944 -> 2, 3413 at d = 1280 -> 1.
double nominal_ffn_size(double width, int64_t hidden_size);
PaperFfn paper_ffn(const ModelConfig& c);

// Training FLOPs per token at sequence length l (forward + backward).
double paper_flops_per_token(const ModelConfig& c, int64_t seq_len);
double exact_flops_per_token(const ModelConfig& c, int64_t seq_len, bool causal);

// Everything `dsmoe flops` reports, for N tokens of sequences of length l.
struct FlopsReport {
  ParamBreakdown params;
  PaperFfn ffn;
  int64_t seq_len = 0;
  int64_t tokens = 0;
  double paper_flops = 0;         // paper_flops_per_token × tokens
  double exact_flops = 0;         // full-length attention
  double exact_flops_causal = 0;  // causal halving of the attention term
};
FlopsReport flops_report(const ModelConfig& c, int64_t seq_len, int64_t tokens);

}  // namespace dsmoe
