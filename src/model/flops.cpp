#include "model/flops.h"

#include <cmath>

#include "core/error.h"

namespace dsmoe {

ParamBreakdown param_breakdown(const ModelConfig& c) {
  const int64_t d = c.hidden_size, L = c.num_hidden_layers;
  ParamBreakdown p;
  p.lm_head = c.vocab_size * d;
  p.embedding = c.tie_word_embeddings ? 0 : c.vocab_size * d;
  p.attention = L * (2 * d * d + 2 * d * c.kv_dim());  // q, o [d, d]; k, v [kv_dim, d]
  p.norms = d * (2 * L + 1);
  const int64_t expert = 3 * d * c.moe_intermediate_size;  // gate, up [w, d] + down [d, w]
  for (int64_t i = 0; i < L; ++i) {
    if (c.is_moe_layer(i)) {
      p.router += c.n_routed_experts * d;
      p.ffn += (c.n_shared_experts + c.n_routed_experts) * expert;
      p.ffn_activated += (c.n_shared_experts + c.num_experts_per_tok) * expert;
    } else {
      p.ffn += 3 * d * c.intermediate_size;
      p.ffn_activated += 3 * d * c.intermediate_size;
    }
  }
  return p;
}

double nominal_ffn_size(double width, int64_t hidden_size) {
  // width / (8d/3) in eighths: round(8 · 3·width / (8d)) / 8 = round(3·width / d) / 8.
  return std::round(3.0 * width / static_cast<double>(hidden_size)) / 8.0;
}

PaperFfn paper_ffn(const ModelConfig& c) {
  PaperFfn f;
  f.dense_size = nominal_ffn_size(static_cast<double>(c.intermediate_size), c.hidden_size);
  if (c.n_routed_experts == 0) {
    f.activated = f.dense_size;
    return f;
  }
  // A real width is counted as it is: 3·d·w parameters = w / (8d/3) standard FFNs.
  f.expert_size = c.paper_expert_width > 0
                      ? 3.0 * c.paper_expert_width / (8.0 * static_cast<double>(c.hidden_size))
                      : nominal_ffn_size(static_cast<double>(c.moe_intermediate_size), c.hidden_size);
  // Applied to every layer, dense first layers included: that is what reproduces the paper's numbers (§4).
  f.activated = static_cast<double>(c.n_shared_experts + c.num_experts_per_tok) * f.expert_size;
  return f;
}

double paper_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  check(seq_len > 0, "sequence length must be > 0, got {}", seq_len);
  const double d = static_cast<double>(c.hidden_size), L = static_cast<double>(c.num_hidden_layers);
  const double a_ffn = paper_ffn(c).activated * 8.0 * d * d;
  return 6.0 * L * (4.0 * d * d + a_ffn)                 // projections (MHA assumed) and FFNs
         + 12.0 * L * d * static_cast<double>(seq_len)   // QK^T and PV over the full length
         + 6.0 * d * static_cast<double>(c.vocab_size);  // lm_head
}

double exact_flops_per_token(const ModelConfig& c, int64_t seq_len, bool causal) {
  check(seq_len > 0, "sequence length must be > 0, got {}", seq_len);
  // QK^T and PV: 2 matmuls × 2 FLOPs per multiply-add × l keys × heads·head_dim, ×3 for forward + backward.
  // A causal mask leaves each query on average half the keys.
  const double attention = 12.0 * static_cast<double>(c.num_hidden_layers) * static_cast<double>(seq_len) *
                           static_cast<double>(c.num_attention_heads * c.head_dim());
  return 6.0 * static_cast<double>(param_breakdown(c).activated_matmul()) + (causal ? attention / 2 : attention);
}

FlopsReport flops_report(const ModelConfig& c, int64_t seq_len, int64_t tokens) {
  check(seq_len > 0, "sequence length must be > 0, got {}", seq_len);
  check(tokens > 0, "token count must be > 0, got {}", tokens);
  FlopsReport r;
  r.params = param_breakdown(c);
  r.ffn = paper_ffn(c);
  r.seq_len = seq_len;
  r.tokens = tokens;
  const double n = static_cast<double>(tokens);
  r.paper_flops = paper_flops_per_token(c, seq_len) * n;
  r.exact_flops = exact_flops_per_token(c, seq_len, false) * n;
  r.exact_flops_causal = exact_flops_per_token(c, seq_len, true) * n;
  return r;
}

}  // namespace dsmoe
