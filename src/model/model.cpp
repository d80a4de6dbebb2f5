#include "model/model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/profile.h"
#include "model/flops.h"

namespace dsmoe {

Model::Model(const ModelConfig& c, ExpertSlice slice)
    : config(c), params(build_registry(c, slice)), weights(bind_weights(params)) {}

Gradients::Gradients(const Model& model) : params(model.params.registry), weights(bind_weights(params)) {}

size_t Activations::bytes() const {
  size_t total = ws.bytes() + (x_final.size() + xn_final.size() + rstd_final.size() + logits.size()) * 4;
  for (const LayerActs& l : layers) {
    for (const FloatBuffer* b : {&l.x,      &l.xn1,    &l.rstd1,  &l.x_mid,  &l.xn2,        &l.rstd2,    &l.g,
                                 &l.u,      &l.attn.q, &l.attn.k, &l.attn.v, &l.attn.probs, &l.attn.out, &l.moe.probs,
                                 &l.moe.xs, &l.moe.g,  &l.moe.u,  &l.moe.ye, &l.moe.sg,     &l.moe.su})
      total += b->size() * sizeof(float);
  }
  return total;
}

void model_forward(const Model& model, const int32_t* inputs, int64_t B, int64_t S, Activations& acts, bool training) {
  const ModelConfig& c = model.config;
  const Weights& w = model.weights;
  const int64_t T = B * S, d = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  check(S <= c.max_position_embeddings, "sequence length {} exceeds max_position_embeddings {}", S,
        c.max_position_embeddings);
  acts.routing.validate(c, training);  // before any work (moe_forward checks again per layer)
  for (int64_t t = 0; t < T; ++t)
    check(inputs[t] >= 0 && inputs[t] < V, "token id {} at position {} is outside the vocabulary [0, {})", inputs[t], t,
          V);
  acts.B = B;
  acts.S = S;
  acts.layers.resize(L);
  rope_tables_build(acts.rope, S, c.head_dim(), c.rope_theta);

  // h = embed_tokens[ids]   [T,d]
  acts.layers[0].x.reserve(T * d);
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(acts.layers[0].x.data() + t * d, w.embedding + static_cast<int64_t>(inputs[t]) * d, d * 4);

  float* y = acts.ws.get("block.y", T * d);
  for (int64_t l = 0; l < L; ++l) {
    LayerActs& a = acts.layers[l];
    const LayerWeights& lw = w.layers[l];
    for (FloatBuffer* b : {&a.xn1, &a.x_mid, &a.xn2}) b->reserve(T * d);
    a.rstd1.reserve(T);
    a.rstd2.reserve(T);
    {  // h = h + Attn(RMSNorm_in(h))
      PROFILE_SCOPE("fwd.attention");
      rmsnorm_forward(a.x.data(), lw.attn_norm, c.rms_norm_eps, a.xn1.data(), a.rstd1.data(), T, d);
      attention_forward(c, lw, acts.rope, a.xn1.data(), B, S, a.attn, y, acts.ws);
      for (int64_t i = 0; i < T * d; ++i) a.x_mid[i] = a.x[i] + y[i];
    }
    {  // h = h + FFN(RMSNorm_post(h))
      PROFILE_SCOPE("fwd.ffn");
      rmsnorm_forward(a.x_mid.data(), lw.ffn_norm, c.rms_norm_eps, a.xn2.data(), a.rstd2.data(), T, d);
      if (c.is_moe_layer(l)) {
        moe_forward(c, lw, a.xn2.data(), B, S, a.moe, y, acts.ws, training, acts.parallel, acts.routing);
      } else {
        const int64_t F = c.intermediate_size;
        a.g.reserve(T * F);
        a.u.reserve(T * F);
        swiglu_mlp_forward(a.xn2.data(), lw.mlp_gate, lw.mlp_up, lw.mlp_down, T, d, F, a.g.data(), a.u.data(),
                           acts.ws.get("mlp.act", T * F), y, 0.0f);
      }
      FloatBuffer& next = l + 1 < L ? acts.layers[l + 1].x : acts.x_final;
      next.reserve(T * d);
      for (int64_t i = 0; i < T * d; ++i) next[i] = a.x_mid[i] + y[i];
    }
  }

  // logits = lm_head(RMSNorm(h))   [T,V]
  PROFILE_SCOPE("fwd.head");
  acts.xn_final.reserve(T * d);
  acts.rstd_final.reserve(T);
  acts.logits.reserve(T * V);
  rmsnorm_forward(acts.x_final.data(), w.final_norm, c.rms_norm_eps, acts.xn_final.data(), acts.rstd_final.data(), T,
                  d);
  linear_forward(acts.xn_final.data(), w.lm_head, acts.logits.data(), T, d, V);
}

LossReport model_loss_backward(const Model& model, const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S,
                               Activations& acts, Gradients* grads) {
  const ModelConfig& c = model.config;
  const Weights& w = model.weights;
  const int64_t T = B * S, d = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  // The backward pass differentiates the trained routing only (k from the config, shared experts present).
  if (grads != nullptr) acts.routing.validate(c, true);
  int64_t counted = 0;  // targets < 0 are ignored (SFT masks), like PyTorch's ignore_index
  for (int64_t t = 0; t < T; ++t) {
    check(targets[t] < V, "target id {} at position {} is outside the vocabulary [0, {})", targets[t], t, V);
    counted += targets[t] >= 0;
  }

  LossReport report;
  report.tokens = counted;
  report.per_layer.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    report.per_layer[l] = acts.layers[l].moe.balance;
    if (c.is_moe_layer(l)) report.balance += acts.layers[l].moe.balance.total();
  }
  const bool backward = grads != nullptr;
  // The mean is over every rank's counted targets (data parallelism): each rank's gradient is its share.
  double count_all = static_cast<double>(counted), ce_sum = 0;
  {
    PROFILE_SCOPE("loss");  // cross-entropy and, when training, its gradient d(loss)/d(logits) in place
    batch_sum(acts.parallel.reduce, &count_all, 1);
    const float scale = count_all > 0 ? 1.0f / static_cast<float>(count_all) : 0.0f;
    ce_sum = counted > 0 ? cross_entropy(acts.logits.data(), targets, T, V, backward, scale) : 0.0;
    batch_sum(acts.parallel.reduce, &ce_sum, 1);
  }
  report.ce = count_all > 0 ? ce_sum / count_all : 0.0;
  report.tokens = static_cast<int64_t>(count_all);
  if (counted == 0 && backward) std::fill(acts.logits.data(), acts.logits.data() + T * V, 0.0f);
  if (!backward) return report;

  Weights& gw = grads->weights;
  float* dlogits = acts.logits.data();
  float* dres = acts.ws.get("grad.residual", T * d);  // d(loss)/d(residual stream)
  float* dtmp = acts.ws.get("grad.tmp", T * d);
  float* dnorm = acts.ws.get("grad.norm", T * d);

  // lm_head and the final norm.
  {
    PROFILE_SCOPE("bwd.head");
    linear_backward(acts.xn_final.data(), w.lm_head, dlogits, dnorm, gw.lm_head, T, d, V);
    rmsnorm_backward(dnorm, acts.x_final.data(), w.final_norm, acts.rstd_final.data(), dres, gw.final_norm, T, d);
  }

  for (int64_t l = L - 1; l >= 0; --l) {
    LayerActs& a = acts.layers[l];
    const LayerWeights& lw = w.layers[l];
    LayerWeights& lg = gw.layers[l];
    {  // h_out = x_mid + FFN(RMSNorm_post(x_mid))
      PROFILE_SCOPE("bwd.ffn");
      if (c.is_moe_layer(l)) {
        moe_backward(c, lw, lg, a.xn2.data(), B, S, a.moe, dres, dnorm, acts.ws, acts.parallel);
      } else {
        const int64_t F = c.intermediate_size;
        swiglu_mlp_backward(a.xn2.data(), lw.mlp_gate, lw.mlp_up, lw.mlp_down, a.g.data(), a.u.data(), dres, T, d, F,
                            dnorm, 0.0f, lg.mlp_gate, lg.mlp_up, lg.mlp_down, acts.ws.get("mlp.act", T * F),
                            acts.ws.get("mlp.dact", T * F), acts.ws.get("mlp.dg", T * F), acts.ws.get("mlp.du", T * F));
      }
      rmsnorm_backward(dnorm, a.x_mid.data(), lw.ffn_norm, a.rstd2.data(), dtmp, lg.ffn_norm, T, d);
      for (int64_t i = 0; i < T * d; ++i) dres[i] += dtmp[i];
    }
    {  // x_mid = x + Attn(RMSNorm_in(x))
      PROFILE_SCOPE("bwd.attention");
      attention_backward(c, lw, lg, acts.rope, a.xn1.data(), B, S, a.attn, dres, dnorm, acts.ws);
      rmsnorm_backward(dnorm, a.x.data(), lw.attn_norm, a.rstd1.data(), dtmp, lg.attn_norm, T, d);
      for (int64_t i = 0; i < T * d; ++i) dres[i] += dtmp[i];
    }
  }

  // Embedding rows receive their tokens' gradients (serial: repeated ids must not race).
  PROFILE_SCOPE("bwd.embedding");
  for (int64_t t = 0; t < T; ++t) axpy(1.0f, dres + t * d, gw.embedding + static_cast<int64_t>(inputs[t]) * d, d);
  return report;
}

LossReport model_step(const Model& model, const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S,
                      Activations& acts, Gradients* grads) {
  model_forward(model, inputs, B, S, acts, grads != nullptr);
  return model_loss_backward(model, inputs, targets, B, S, acts, grads);
}

double train_flops_per_token(const ModelConfig& c, int64_t S) { return exact_flops_per_token(c, S, /*causal=*/false); }

}  // namespace dsmoe
