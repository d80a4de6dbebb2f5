// Finite-difference gradient checks, one per operator and one end to end. Each backward pass is compared with
// central differences of a scalar loss L = sum(r * y) (r random) at sampled coordinates.
#include <cmath>
#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops.h"
#include "model/attention.h"
#include "model/moe.h"
#include "model/routing.h"
#include "test_util.h"

using namespace dsmoe;
using namespace dsmoe::testing;

namespace {

// Checks analytic[i] against (f(x_i + h) - f(x_i - h)) / 2h on up to `samples` coordinates of x.
// `skip(i)` lets a caller exclude coordinates where the function is not differentiable (a top-k flip).
void fd_check(const char* what, std::vector<float>& x, const std::vector<float>& analytic,
              const std::function<double()>& f, int samples = 24, double h = 1e-2,
              const std::function<bool()>& unstable = nullptr) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  Rng rng(static_cast<uint64_t>(x.size()) * 31 + 5);
  double max_grad = 0;
  for (float g : analytic) max_grad = std::max(max_grad, static_cast<double>(std::fabs(g)));
  int checked = 0;
  for (int s = 0; s < samples; ++s) {
    const size_t i = samples >= static_cast<int>(x.size()) ? s % x.size() : rng.next_u64() % x.size();
    const float saved = x[i];
    x[i] = saved + static_cast<float>(h);
    const double fp = f();
    const bool flip_p = unstable && unstable();
    x[i] = saved - static_cast<float>(h);
    const double fm = f();
    const bool flip_m = unstable && unstable();
    x[i] = saved;
    if (flip_p || flip_m) continue;
    const double fd = (fp - fm) / (2 * h);
    EXPECT_NEAR(analytic[i], fd, 2e-3 * max_grad + 2e-2 * std::fabs(fd) + 1e-5)
        << what << " coordinate " << i << " analytic " << analytic[i] << " numeric " << fd;
    ++checked;
  }
  EXPECT_GT(checked, samples / 2) << what << ": too many coordinates skipped";
}

double dot(const float* a, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < r.size(); ++i) s += static_cast<double>(a[i]) * r[i];
  return s;
}

}  // namespace

TEST(GradCheck, RmsNorm) {
  const int64_t T = 3, d = 8;
  std::vector<float> x = random_vector(T * d, 1.0f, 1), w = random_vector(d, 1.0f, 2), r = random_vector(T * d, 1, 3);
  std::vector<float> y(T * d), rstd(T), dx(T * d), dw(d, 0.0f);
  auto f = [&]() {
    rmsnorm_forward(x.data(), w.data(), 1e-6f, y.data(), rstd.data(), T, d);
    return dot(y.data(), r);
  };
  f();
  rmsnorm_backward(r.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), T, d);
  fd_check("rmsnorm dx", x, dx, f);
  fd_check("rmsnorm dw", w, dw, f);
}

TEST(GradCheck, SwiGLU) {
  const int64_t n = 20;
  std::vector<float> g = random_vector(n, 2.0f, 1), u = random_vector(n, 1.0f, 2), r = random_vector(n, 1, 3);
  std::vector<float> act(n), dg(n), du(n);
  auto f = [&]() {
    swiglu_forward(g.data(), u.data(), act.data(), n);
    return dot(act.data(), r);
  };
  swiglu_backward(g.data(), u.data(), r.data(), dg.data(), du.data(), n);
  fd_check("swiglu dg", g, dg, f, 20);
  fd_check("swiglu du", u, du, f, 20);
}

TEST(GradCheck, RopeIsOrthogonalAndItsTransposeIsTheGradient) {
  const int64_t S = 5, hd = 8;
  std::vector<float> cs(S * hd / 2), sn(S * hd / 2);
  rope_tables(S, hd, 10000.0, cs.data(), sn.data());
  std::vector<float> x = random_vector(hd, 1.0f, 4), r = random_vector(hd, 1.0f, 5);
  const int64_t pos = 3;
  auto f = [&]() {
    std::vector<float> y = x;
    rope_rotate(y.data(), hd, cs.data() + pos * hd / 2, sn.data() + pos * hd / 2, 1.0f);
    return dot(y.data(), r);
  };
  std::vector<float> dx = r;
  rope_rotate(dx.data(), hd, cs.data() + pos * hd / 2, sn.data() + pos * hd / 2, -1.0f);
  fd_check("rope dx", x, dx, f, 8);
}

TEST(GradCheck, CrossEntropy) {
  const int64_t T = 3, V = 7;
  std::vector<float> logits = random_vector(T * V, 2.0f, 6);
  std::vector<int32_t> targets = {1, 6, 0};
  std::vector<float> grad = logits;
  cross_entropy(grad.data(), targets.data(), T, V, true, 1.0f / T);
  auto f = [&]() {
    std::vector<float> tmp = logits;
    return cross_entropy(tmp.data(), targets.data(), T, V, false, 0) / T;
  };
  fd_check("cross-entropy dlogits", logits, grad, f, 21);
}

TEST(GradCheck, AttentionLayer) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 11);
  const int64_t B = 2, S = 5, T = B * S, d = c.hidden_size;
  RopeTables rope;
  rope_tables_build(rope, S, c.head_dim(), c.rope_theta);
  std::vector<float> x = random_vector(T * d, 1.0f, 12), r = random_vector(T * d, 1.0f, 13), y(T * d), dx(T * d);
  AttentionActs acts;
  Workspace ws;
  LayerWeights& w = m->weights.layers[0];
  auto f = [&]() {
    attention_forward(c, w, rope, x.data(), B, S, acts, y.data(), ws);
    return dot(y.data(), r);
  };
  f();
  Gradients g(*m);
  attention_backward(c, w, g.weights.layers[0], rope, x.data(), B, S, acts, r.data(), dx.data(), ws);
  fd_check("attention dx", x, dx, f);
  for (const TensorSpec& spec : m->params.registry) {
    if (spec.layer != 0 || spec.shape.size() != 2 || spec.name.find("self_attn") == std::string::npos) continue;
    std::vector<float> wv(m->params.ptr(spec), m->params.ptr(spec) + spec.numel());
    std::vector<float> gv(g.params.ptr(spec), g.params.ptr(spec) + spec.numel());
    auto fw = [&]() {
      std::copy(wv.begin(), wv.end(), m->params.ptr(spec));
      return f();
    };
    fd_check(spec.name.c_str(), wv, gv, fw);
    std::copy(wv.begin(), wv.end(), m->params.ptr(spec));
  }
}

// The MoE layer, router and balance losses included (expert-level per sequence and per batch, device-level,
// renormalised top-k, capacity dropping).
class MoeGradCheck : public ::testing::TestWithParam<int> {};

TEST_P(MoeGradCheck, Layer) {
  ModelConfig c = tiny_config();
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 3;
  c.device_aux_loss_alpha = 0.1;
  c.n_expert_groups = 4;
  c.aux_loss_alpha = 0.1;
  switch (GetParam()) {
    case 0: break;
    case 1:
      c.norm_topk_prob = true;
      c.seq_aux = false;
      break;
    case 2:
      c.capacity_factor = 0.8;
      c.n_shared_experts = 0;
      break;
    case 3:
      c.capacity_factor = 0.8;
      c.norm_topk_prob = true;
      break;
  }
  auto m = random_model(c, 21);
  const int64_t B = 2, S = 6, T = B * S, d = c.hidden_size;
  std::vector<float> x = random_vector(T * d, 1.0f, 22), r = random_vector(T * d, 1.0f, 23), y(T * d), dx(T * d);
  MoeActs acts;
  Workspace ws;
  LayerWeights& w = m->weights.layers[1];
  std::vector<int32_t> base_experts, base_rows;
  auto f = [&]() {
    moe_forward(c, w, x.data(), B, S, acts, y.data(), ws, true);
    return dot(y.data(), r) + acts.balance.total();
  };
  f();
  if (c.capacity_factor > 0) {
    EXPECT_GT(acts.plan.n_dropped, 0) << "capacity case must actually drop";
  }
  base_experts = acts.plan.topk_expert;
  base_rows = acts.plan.slot_row;
  auto unstable = [&]() { return acts.plan.topk_expert != base_experts || acts.plan.slot_row != base_rows; };
  Gradients g(*m);
  f();
  moe_backward(c, w, g.weights.layers[1], x.data(), B, S, acts, r.data(), dx.data(), ws);
  fd_check("moe dx", x, dx, f, 24, 1e-2, unstable);
  for (const TensorSpec& spec : m->params.registry) {
    if (spec.layer != 1 || spec.name.find("mlp") == std::string::npos) continue;
    std::vector<float> wv(m->params.ptr(spec), m->params.ptr(spec) + spec.numel());
    std::vector<float> gv(g.params.ptr(spec), g.params.ptr(spec) + spec.numel());
    auto fw = [&]() {
      std::copy(wv.begin(), wv.end(), m->params.ptr(spec));
      return f();
    };
    fd_check(spec.name.c_str(), wv, gv, fw, 24, 1e-2, unstable);
    std::copy(wv.begin(), wv.end(), m->params.ptr(spec));
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, MoeGradCheck, ::testing::Values(0, 1, 2, 3));

// End to end: total loss (cross-entropy + balance losses) of a whole model against finite differences.
TEST(GradCheck, WholeModel) {
  ModelConfig c = tiny_config();
  c.num_hidden_layers = 3;
  c.tie_word_embeddings = true;
  auto m = random_model(c, 31);
  const int64_t B = 2, S = 5;
  std::vector<int32_t> in = random_tokens(B * S, c.vocab_size, 32), tg = random_tokens(B * S, c.vocab_size, 33);
  Activations acts;
  Gradients g(*m);
  model_step(*m, in.data(), tg.data(), B, S, acts, &g);
  std::vector<int32_t> experts;
  auto routing = [&]() {
    std::vector<int32_t> all;
    for (auto& l : acts.layers) all.insert(all.end(), l.moe.plan.topk_expert.begin(), l.moe.plan.topk_expert.end());
    return all;
  };
  experts = routing();
  std::vector<float> p(m->params.arena.data(), m->params.arena.data() + m->params.arena.size());
  std::vector<float> gp(g.params.arena.data(), g.params.arena.data() + g.params.arena.size());
  auto f = [&]() {
    std::copy(p.begin(), p.end(), m->params.arena.data());
    model_forward(*m, in.data(), B, S, acts, true);
    return model_loss_backward(*m, in.data(), tg.data(), B, S, acts, nullptr).total();
  };
  fd_check("whole model", p, gp, f, 60, 1e-2, [&]() { return routing() != experts; });
}
