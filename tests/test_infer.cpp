// Cached decoding == the full forward: prefill in one pass, then token by token, every step's logits equal
// model_forward's row for that position (relative error <= 1e-5), for MoE, dense, GQA and tied models.
#include <vector>

#include <gtest/gtest.h>

#include "check.h"
#include "expect_error.h"
#include "infer/engine.h"
#include "test_util.h"

using namespace dsmoe;
using namespace dsmoe::testing;

class CachedDecode : public ::testing::TestWithParam<int> {};

TEST_P(CachedDecode, EqualsFullForward) {
  ModelConfig c = tiny_config();
  switch (GetParam()) {
    case 0: break;
    case 1:
      c.num_key_value_heads = 1;
      c.norm_topk_prob = true;
      c.n_shared_experts = 0;
      break;
    case 2:
      c.n_routed_experts = 0;
      c.n_shared_experts = 0;
      c.tie_word_embeddings = true;
      break;
    case 3:
      c.num_hidden_layers = 4;
      c.moe_layer_freq = 2;
      c.first_k_dense_replace = 0;
      break;
  }
  auto m = random_model(c, 100 + GetParam());
  const int64_t S = 14, V = c.vocab_size, prompt = 5;
  std::vector<int32_t> tokens = random_tokens(S, V, 7);
  Activations acts;
  model_forward(*m, tokens.data(), 1, S, acts, false);
  InferenceSession session(*m, 32);
  const std::vector<float>& first = session.forward(tokens.data(), prompt);  // batched prefill
  DSMOE_EXPECT_CLOSE("prefill logits", first.data(), acts.logits.data() + (prompt - 1) * V, V, 1e-5);
  for (int64_t p = prompt; p < S; ++p) {  // single-token decode against the cache
    const std::vector<float>& logits = session.forward(tokens.data() + p, 1);
    DSMOE_EXPECT_CLOSE("decode logits at position " + std::to_string(p), logits.data(), acts.logits.data() + p * V, V,
                       1e-5);
  }
  EXPECT_EQ(session.length(), S);
  // A second prefill chunk after decoding also agrees (multi-turn chat appends to the cache).
  session.reset();
  session.forward(tokens.data(), 3);
  const std::vector<float>& chunk = session.forward(tokens.data() + 3, S - 3);
  DSMOE_EXPECT_CLOSE("chunked prefill logits", chunk.data(), acts.logits.data() + (S - 1) * V, V, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Configs, CachedDecode, ::testing::Values(0, 1, 2, 3));

TEST(CachedDecode, ContextAndTokenErrors) {
  auto m = random_model(tiny_config(), 3);
  InferenceSession session(*m, 4);
  std::vector<int32_t> five = {1, 2, 3, 4, 5};
  expect_error([&] { session.forward(five.data(), 5); }, {"context full"});
  std::vector<int32_t> bad = {999};
  expect_error([&] { session.forward(bad.data(), 1); }, {"outside the vocabulary"});
  expect_error([&] { InferenceSession(*m, 10000); }, {"max_position_embeddings"});
}
