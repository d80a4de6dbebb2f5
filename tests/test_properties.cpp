// Property tests: identities that must hold whatever the weights, checked on random models.
#include <algorithm>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "check.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "model/reference.h"
#include "model/routing.h"
#include "test_util.h"

using namespace dsmoe;
using namespace dsmoe::testing;

namespace {

std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t S) {
  Activations acts;
  model_forward(m, tokens.data(), B, S, acts, false);
  return std::vector<float>(acts.logits.data(), acts.logits.data() + B * S * m.config.vocab_size);
}

// Copy every tensor present in both models under the same HF name.
void copy_common(const Model& from, Model& to) {
  for (const TensorSpec& spec : to.params.registry) {
    const TensorSpec* src = from.params.find(spec.name);
    if (src != nullptr && src->shape == spec.shape)
      std::copy(from.params.ptr(*src), from.params.ptr(*src) + spec.numel(), to.params.ptr(spec));
  }
}

}  // namespace

TEST(Gemm, MatchesReferenceForAllTransposes) {
  const int64_t M = 7, N = 5, K = 9;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      std::vector<float> A = random_vector(M * K, 1, 1), Bm = random_vector(K * N, 1, 2);
      std::vector<float> C1 = random_vector(M * N, 1, 3), C2 = C1;
      gemm(ta, tb, M, N, K, 0.7f, A.data(), ta ? M : K, Bm.data(), tb ? K : N, 0.5f, C1.data(), N);
      gemm_reference(ta, tb, M, N, K, 0.7f, A.data(), ta ? M : K, Bm.data(), tb ? K : N, 0.5f, C2.data(), N);
      DSMOE_EXPECT_CLOSE("gemm", C1.data(), C2.data(), M * N, 1e-6);
    }
}

// The fast path (BLAS, routing plan, parallel heads/experts) equals the scalar reference forward.
class FastVsReference : public ::testing::TestWithParam<int> {};
TEST_P(FastVsReference, Logits) {
  ModelConfig c = tiny_config();
  switch (GetParam()) {
    case 0: break;
    case 1:
      c.norm_topk_prob = true;
      c.n_shared_experts = 0;
      c.first_k_dense_replace = 0;
      break;
    case 2:
      c.capacity_factor = 0.7;
      c.num_key_value_heads = 1;
      break;
    case 3:
      c.n_routed_experts = 0;
      c.n_shared_experts = 0;
      c.tie_word_embeddings = true;
      break;
    case 4:
      c.num_hidden_layers = 4;
      c.moe_layer_freq = 2;
      c.first_k_dense_replace = 0;
      break;
  }
  auto m = random_model(c, 40 + GetParam());
  const int64_t B = 3, S = 7;
  std::vector<int32_t> tokens = random_tokens(B * S, c.vocab_size, 41);
  std::vector<float> fast = logits_of(*m, tokens, B, S), ref = reference_forward(*m, tokens.data(), B, S);
  DSMOE_EXPECT_CLOSE("fast vs scalar reference logits", fast.data(), ref.data(), B * S * c.vocab_size, 1e-5);
}
INSTANTIATE_TEST_SUITE_P(Configs, FastVsReference, ::testing::Values(0, 1, 2, 3, 4));

// megablocks' property: one routed expert, top-1, no shared experts == the same dense SwiGLU (its gate
// probability is exactly 1). Logits and every shared gradient match.
TEST(Properties, OneExpertTop1EqualsDenseSwiGLU) {
  ModelConfig moe = tiny_config();
  moe.n_routed_experts = 1;
  moe.num_experts_per_tok = 1;
  moe.n_shared_experts = 0;
  moe.moe_intermediate_size = moe.intermediate_size;
  moe.first_k_dense_replace = 1;
  moe.aux_loss_alpha = 0;
  ModelConfig dense = moe;
  dense.n_routed_experts = 0;
  auto m_moe = random_model(moe, 50);
  Model m_dense(dense);
  copy_common(*m_moe, m_dense);
  // layer 1's expert 0 weights become the dense MLP of layer 1.
  const int64_t FD = moe.intermediate_size * moe.hidden_size;
  LayerWeights& e = m_moe->weights.layers[1];
  LayerWeights& dl = m_dense.weights.layers[1];
  std::copy(e.expert_gate, e.expert_gate + FD, dl.mlp_gate);
  std::copy(e.expert_up, e.expert_up + FD, dl.mlp_up);
  std::copy(e.expert_down, e.expert_down + FD, dl.mlp_down);
  const int64_t B = 2, S = 6;
  std::vector<int32_t> in = random_tokens(B * S, moe.vocab_size, 51), tg = random_tokens(B * S, moe.vocab_size, 52);
  std::vector<float> a = logits_of(*m_moe, in, B, S), b = logits_of(m_dense, in, B, S);
  DSMOE_EXPECT_CLOSE("moe(1 expert) vs dense logits", a.data(), b.data(), B * S * moe.vocab_size, 1e-6);
  Activations acts;
  Gradients g_moe(*m_moe), g_dense(m_dense);
  model_step(*m_moe, in.data(), tg.data(), B, S, acts, &g_moe);
  model_step(m_dense, in.data(), tg.data(), B, S, acts, &g_dense);
  DSMOE_EXPECT_CLOSE("expert vs dense gate grad", g_moe.weights.layers[1].expert_gate,
                     g_dense.weights.layers[1].mlp_gate, FD, 1e-5);
  DSMOE_EXPECT_CLOSE("expert vs dense down grad", g_moe.weights.layers[1].expert_down,
                     g_dense.weights.layers[1].mlp_down, FD, 1e-5);
  DSMOE_EXPECT_CLOSE("embedding grad", g_moe.weights.embedding, g_dense.weights.embedding,
                     moe.vocab_size * moe.hidden_size, 1e-5);
}

// Shared experts alone (routed experts contributing zero) == a dense SwiGLU of the shared width.
TEST(Properties, SharedOnlyEqualsDense) {
  ModelConfig moe = tiny_config();
  moe.n_shared_experts = 2;
  moe.intermediate_size = moe.shared_width();
  ModelConfig dense = moe;
  dense.n_routed_experts = 0;
  dense.n_shared_experts = 0;
  auto m_moe = random_model(moe, 60);
  LayerWeights& l = m_moe->weights.layers[1];
  std::fill(l.expert_down, l.expert_down + moe.n_routed_experts * moe.hidden_size * moe.moe_intermediate_size, 0.0f);
  Model m_dense(dense);
  copy_common(*m_moe, m_dense);
  const int64_t n = moe.shared_width() * moe.hidden_size;
  std::copy(l.shared_gate, l.shared_gate + n, m_dense.weights.layers[1].mlp_gate);
  std::copy(l.shared_up, l.shared_up + n, m_dense.weights.layers[1].mlp_up);
  std::copy(l.shared_down, l.shared_down + n, m_dense.weights.layers[1].mlp_down);
  std::vector<int32_t> in = random_tokens(12, moe.vocab_size, 61);
  std::vector<float> a = logits_of(*m_moe, in, 2, 6), b = logits_of(m_dense, in, 2, 6);
  DSMOE_EXPECT_CLOSE("shared-only vs dense logits", a.data(), b.data(), 12 * moe.vocab_size, 1e-6);
}

// Permuting the routed experts together with the router rows changes nothing (outputs, loss, gradients permuted).
TEST(Properties, ExpertPermutationInvariance) {
  ModelConfig c = tiny_config();
  c.n_expert_groups = 1;
  auto m = random_model(c, 70);
  Model p(c);
  std::copy(m->params.arena.data(), m->params.arena.data() + m->params.arena.size(), p.params.arena.data());
  const int64_t E = c.n_routed_experts, d = c.hidden_size, Fe = c.moe_intermediate_size;
  std::vector<int64_t> perm(E);
  std::iota(perm.begin(), perm.end(), 0);
  std::reverse(perm.begin(), perm.end());
  std::swap(perm[0], perm[2]);
  LayerWeights &src = m->weights.layers[1], &dst = p.weights.layers[1];
  for (int64_t e = 0; e < E; ++e) {
    const int64_t f = perm[e];  // new expert e is old expert f
    std::copy(src.router + f * d, src.router + (f + 1) * d, dst.router + e * d);
    std::copy(src.expert_gate + f * Fe * d, src.expert_gate + (f + 1) * Fe * d, dst.expert_gate + e * Fe * d);
    std::copy(src.expert_up + f * Fe * d, src.expert_up + (f + 1) * Fe * d, dst.expert_up + e * Fe * d);
    std::copy(src.expert_down + f * Fe * d, src.expert_down + (f + 1) * Fe * d, dst.expert_down + e * Fe * d);
  }
  const int64_t B = 2, S = 6;
  std::vector<int32_t> in = random_tokens(B * S, c.vocab_size, 71), tg = random_tokens(B * S, c.vocab_size, 72);
  Activations a1, a2;
  Gradients g1(*m), g2(p);
  LossReport r1 = model_step(*m, in.data(), tg.data(), B, S, a1, &g1);
  LossReport r2 = model_step(p, in.data(), tg.data(), B, S, a2, &g2);
  EXPECT_NEAR(r1.total(), r2.total(), 1e-6 * r1.total());
  for (int64_t e = 0; e < E; ++e) {
    const int64_t f = perm[e];
    DSMOE_EXPECT_CLOSE("permuted router grad", g2.weights.layers[1].router + e * d, g1.weights.layers[1].router + f * d,
                       d, 1e-5);
    DSMOE_EXPECT_CLOSE("permuted expert grad", g2.weights.layers[1].expert_down + e * Fe * d,
                       g1.weights.layers[1].expert_down + f * Fe * d, Fe * d, 1e-5);
  }
}

// With a capacity no expert can exceed, dropping equals dropless.
TEST(Properties, LargeCapacityEqualsDropless) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 80);
  const int64_t B = 2, S = 8;
  std::vector<int32_t> in = random_tokens(B * S, c.vocab_size, 81);
  std::vector<float> dropless = logits_of(*m, in, B, S);
  m->config.capacity_factor = static_cast<double>(c.n_routed_experts);  // capacity = T*k
  std::vector<float> capped = logits_of(*m, in, B, S);
  EXPECT_EQ(dropless, capped);
}

TEST(Routing, DroplessPlanKeepsEveryAssignmentOnceGroupedByExpert) {
  const int64_t T = 50, E = 7, k = 3;
  std::vector<float> probs = random_vector(T * E, 1.0f, 90);
  softmax_rows(probs.data(), T, E);
  RoutingPlan plan = routing_plan_build(probs.data(), T, E, k, false, 0.0);
  ASSERT_EQ(plan.rows(), T * k);
  std::vector<int> seen(T * k, 0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int32_t row = plan.slot_row[t * k + j];
      ASSERT_GE(row, 0);
      seen[row]++;
      EXPECT_EQ(plan.row_token[row], t);
      const int32_t e = plan.topk_expert[t * k + j];
      EXPECT_GE(row, plan.expert_offsets[e]);
      EXPECT_LT(row, plan.expert_offsets[e + 1]);
      if (j > 0) {
        EXPECT_GE(probs[t * E + plan.topk_expert[t * k + j - 1]], probs[t * E + e]);
      }
    }
  for (int v : seen) EXPECT_EQ(v, 1);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = plan.expert_offsets[e] + 1; r < plan.expert_offsets[e + 1]; ++r)
      EXPECT_LT(plan.row_token[r - 1], plan.row_token[r]) << "tokens ascending within an expert";
}

TEST(Routing, CapacityDropsLatestTokensFirst) {
  const int64_t T = 6, E = 2, k = 1;
  std::vector<float> probs(T * E);
  for (int64_t t = 0; t < T; ++t) {
    probs[t * E] = 0.9f;  // everyone wants expert 0
    probs[t * E + 1] = 0.1f;
  }
  RoutingPlan plan = routing_plan_build(probs.data(), T, E, k, false, 1.0);  // capacity ceil(6/2) = 3
  EXPECT_EQ(plan.capacity, 3);
  EXPECT_EQ(plan.n_dropped, 3);
  for (int64_t t = 0; t < T; ++t) EXPECT_EQ(plan.slot_row[t] >= 0, t < 3) << "token " << t;
}
