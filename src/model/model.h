// The DeepSeekMoE model: forward over a batch of sequences, loss, and the hand-written backward pass.
//
// Dimension legend: B sequences, S positions, T = B*S tokens, d hidden, V vocabulary, F dense MLP width.
// Structure (HF DeepseekForCausalLM): h = embed[ids]; per layer
//   h = h + Attn(RMSNorm_in(h));  h = h + FFN(RMSNorm_post(h))   (FFN = dense SwiGLU or MoE, see is_moe_layer)
// logits = lm_head(RMSNorm(h)). Backward calls the same blocks' backward functions in exactly the reverse order;
// the Activations struct is the tape.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "model/attention.h"
#include "model/config.h"
#include "model/moe.h"
#include "model/parallel.h"
#include "model/params.h"

namespace dsmoe {

struct Model {
  ModelConfig config;
  ParamSet params;
  Weights weights;  // views into params

  // Zero parameters; with a slice (expert parallelism) only those routed experts are held.
  explicit Model(const ModelConfig& config, ExpertSlice slice = {});
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
};

// Gradients in the same layout as the model's parameters.
struct Gradients {
  ParamSet params;
  Weights weights;
  explicit Gradients(const Model& model);
  void zero() { params.arena.zero(); }
};

struct LayerActs {
  FloatBuffer x;           // [T,d] layer input (residual stream)
  FloatBuffer xn1, rstd1;  // [T,d], [T] input_layernorm
  AttentionActs attn;
  FloatBuffer x_mid;       // [T,d] residual stream after attention
  FloatBuffer xn2, rstd2;  // [T,d], [T] post_attention_layernorm
  FloatBuffer g, u;        // [T,F] dense MLP pre-activations (dense layers only)
  MoeActs moe;             // MoE layers only
};

struct Activations {
  int64_t B = 0, S = 0;
  std::vector<LayerActs> layers;
  FloatBuffer x_final;               // [T,d] residual stream after the last layer
  FloatBuffer xn_final, rstd_final;  // [T,d], [T]
  FloatBuffer logits;                // [T,V]; overwritten by dlogits in backward
  RopeTables rope;
  Workspace ws;
  // Data and expert parallelism (model/parallel.h): the other ranks' shares of the batch (losses and gradients
  // become this rank's share of the global batch's) and the exchange of routed rows. Empty: one process.
  Parallelism parallel;
  // Evaluation-time routing changes for the paper's analyses (model/routing.h), applied to every MoE layer by
  // model_forward; the default is the trained routing. Each MoE layer's moe.plan.selected_count then counts the
  // experts actually chosen per expert (masked experts excluded). Refused with training / gradients.
  RoutingOptions routing;
  size_t bytes() const;
};

struct LossReport {
  double ce = 0.0;                     // mean token cross-entropy over counted targets
  double balance = 0.0;                // sum over MoE layers of the balance losses (training only)
  int64_t tokens = 0;                  // counted targets (targets < 0 are ignored)
  std::vector<BalanceLoss> per_layer;  // one per layer (zero for dense layers)
  double total() const { return ce + balance; }
};

// Forward pass; fills acts.logits [B*S, V]. `training` computes the balance losses. Routes with acts.routing;
// active routing options with `training` are an error.
void model_forward(const Model& model, const int32_t* inputs, int64_t B, int64_t S, Activations& acts, bool training);
// Loss of targets [B*S] given a completed forward (acts.logits). Targets < 0 are ignored (no loss, no gradient). When
// `grads` is non-null, runs the backward pass and adds d(total loss)/d(params) into it; acts.logits is overwritten.
LossReport model_loss_backward(const Model& model, const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S,
                               Activations& acts, Gradients* grads);
// Convenience: forward + loss (+ backward when grads is given; training semantics when so).
LossReport model_step(const Model& model, const int32_t* inputs, const int32_t* targets, int64_t B, int64_t S,
                      Activations& acts, Gradients* grads);

// Training FLOPs per token of the real model (exact_flops_per_token in model/flops.h, no causal halving): 6 x active
// matmul parameters (embedding lookup and norms excluded, lm_head and router included) plus 12 x layers x d x S for
// QK^T and PV over the full sequence length. The paper's own count (nominal FFN sizes) is paper_flops_per_token.
double train_flops_per_token(const ModelConfig& config, int64_t S);

}  // namespace dsmoe
