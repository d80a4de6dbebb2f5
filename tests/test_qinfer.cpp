// The quantized inference path: integer dot kernels (scalar == AVX2, bit for bit), every qmatmul path against a
// double-precision reference, and the engine on GGUF files (mmap and --no-mmap, adjacent-pair RoPE, F16 KV cache,
// Q8_0/Q4_0 weights) against the F32 training forward.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/qpack.h"
#include "infer/engine.h"
#include "infer/infer_model.h"
#include "infer/qmatmul.h"
#include "model/gguf_model.h"
#include "test_util.h"

using namespace dsmoe;
using namespace dsmoe::testing;
namespace fs = std::filesystem;

namespace {
std::vector<uint8_t> quantized(QuantType t, const std::vector<float>& w, int64_t rows, int64_t cols) {
  std::vector<uint8_t> q(quant_row_bytes(t, cols) * rows);
  for (int64_t r = 0; r < rows; ++r)
    quantize_row(t, w.data() + r * cols, q.data() + r * quant_row_bytes(t, cols), cols);
  return q;
}

ModelConfig block_config() { return block_quant_config_3layers(); }

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("dsmoe_test_qinfer_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

// Logits of every position: prefill of 5 tokens, then one token at a time.
std::vector<float> decode_logits(InferenceSession& s, const std::vector<int32_t>& tokens, int64_t V) {
  std::vector<float> out;
  const std::vector<float>* l = &s.forward(tokens.data(), 5);
  out.insert(out.end(), l->begin(), l->end());
  for (size_t p = 5; p < tokens.size(); ++p) {
    l = &s.forward(tokens.data() + p, 1);
    out.insert(out.end(), l->begin(), l->end());
  }
  EXPECT_EQ(static_cast<int64_t>(out.size()), static_cast<int64_t>(tokens.size() - 4) * V);
  return out;
}

std::vector<float> reference_logits(const Model& m, const std::vector<int32_t>& tokens) {
  Activations acts;
  model_forward(m, tokens.data(), 1, static_cast<int64_t>(tokens.size()), acts, false);
  const int64_t V = m.config.vocab_size;
  return std::vector<float>(acts.logits.data() + 4 * V, acts.logits.data() + tokens.size() * V);
}
}  // namespace

TEST(IntegerDot, ActivationQuantizationErrorBound) {
  // Both activation formats: int8 in [-127, 127], sums per 32, and x within half a step of q * d (Q8_0's fp16 scale
  // is the rounded amax/127 while q used 127/amax: up to 127 * 2^-11 steps more). Q8_K: one scale per 256 with the
  // sign that maps the largest-magnitude value to -127.
  for (const ActFormat f : {ActFormat::Q8_0, ActFormat::Q8_K}) {
    const std::vector<float> x = random_vector(512, 3.0f, 1);
    std::vector<int8_t> q(512);
    std::vector<float> d(16);
    std::vector<int32_t> sum(16);
    quantize_act(f, x.data(), q.data(), d.data(), sum.data(), 512);
    const float slack = f == ActFormat::Q8_0 ? 0.5f + 127.0f / 2048.0f : 0.5f;
    for (int64_t b = 0; b < 16; ++b) {
      int32_t want = 0;
      for (int j = 0; j < 32; ++j) want += q[b * 32 + j];
      EXPECT_EQ(sum[b], want);
      if (f == ActFormat::Q8_K) {
        EXPECT_EQ(d[b], d[b / 8 * 8]) << "one scale per 256";
      }
    }
    for (int64_t i = 0; i < 512; ++i) {
      EXPECT_LE(std::fabs(x[i] - q[i] * d[i / 32]), slack * std::fabs(d[i / 32]) * 1.0001f) << i;
      EXPECT_LE(std::abs(static_cast<int>(q[i])), 127);
    }
    for (int64_t sb = 0; sb < 2; ++sb) {  // the value of largest magnitude lands on +-127 exactly
      int64_t top = sb * 256;
      for (int64_t i = sb * 256; i < sb * 256 + 256; ++i)
        if (std::fabs(x[i]) > std::fabs(x[top])) top = i;
      EXPECT_EQ(std::abs(static_cast<int>(q[top])), 127);
      if (f == ActFormat::Q8_K) {
        EXPECT_EQ(q[top], -127) << "whatever its sign";
      }
    }
  }
  std::vector<int8_t> q(256);
  std::vector<float> d(8);
  std::vector<int32_t> sum(8);
  std::vector<float> zeros(256, 0.0f);
  quantize_act(ActFormat::Q8_K, zeros.data(), q.data(), d.data(), sum.data(), 256);
  for (int64_t i = 0; i < 256; ++i) EXPECT_EQ(q[i], 0);
  EXPECT_EQ(d[0], 0.0f);
  EXPECT_EQ(act_format(QuantType::Q4_K), ActFormat::Q8_K);
  EXPECT_EQ(act_format(QuantType::IQ4_NL), ActFormat::Q8_0);
}

TEST(IntegerDot, ScalarEqualsSimdBitForBit) {
  if (!quant_have_avx2()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C: only the scalar path runs";
  std::printf("integer dot kernel: %s\n", quant_dot_q8act_kernel());
  for (QuantType t : {QuantType::Q8_0, QuantType::Q4_0})
    for (int64_t n : {32, 64, 256, 288, 1024, 1408, 2816}) {
      const std::vector<float> w = random_vector(n, 1.0f, 10 + n), x = random_vector(n, 2.0f, 20 + n);
      const std::vector<uint8_t> row = quantized(t, w, 1, n);
      std::vector<int8_t> xq(n);
      std::vector<float> xd(n / 32);
      std::vector<int32_t> xs(n / 32);
      quantize_act_q8(x.data(), xq.data(), xd.data(), xs.data(), n);
      const float a = quant_dot_q8act_scalar(t, row.data(), xq.data(), xd.data(), xs.data(), n);
      const float b = quant_dot_q8act(t, row.data(), xq.data(), xd.data(), xs.data(), n);
      const float c = quant_dot_q8act_avx2(t, row.data(), xq.data(), xd.data(), xs.data(), n);
      EXPECT_EQ(std::memcmp(&a, &b, 4), 0) << quant_type_name(t) << " n=" << n << ": " << a << " vs " << b;
      EXPECT_EQ(std::memcmp(&a, &c, 4), 0) << quant_type_name(t) << " n=" << n << " (AVX2): " << a << " vs " << c;
      // And the integer dot is the dot of the dequantized operands (exact up to f32 rounding).
      std::vector<float> wd(n);
      dequantize_row(t, row.data(), wd.data(), n);
      double want = 0;
      for (int64_t i = 0; i < n; ++i) want += static_cast<double>(wd[i]) * xq[i] * xd[i / 32];
      EXPECT_NEAR(a, want, 1e-4 * (std::fabs(want) + 1)) << quant_type_name(t) << " n=" << n;
    }
}

// Every path of qmatmul: against the dequantized matrix in double. Float-activation paths must agree to f32
// rounding; the 8-bit-activation path (block types, every n) within the activation rounding.
TEST(Qmatmul, AllPathsMatchReference) {
  const int64_t rows = 70, cols = 128;
  const std::vector<float> w = random_vector(rows * cols, 1.0f, 3);
  for (QuantType t : {QuantType::F32, QuantType::F16, QuantType::BF16, QuantType::Q8_0, QuantType::Q4_0})
    for (int64_t n : {int64_t{1}, int64_t{2}, kXBlock, kXBlock + 1, int64_t{37}}) {
      const std::vector<uint8_t> q = quantized(t, w, rows, cols);
      const QMatrix m = QMatrix::view(t, q.data(), rows, cols);
      const std::vector<float> x = random_vector(n * cols, 1.0f, 5 + n);
      std::vector<float> got(n * rows), want(n * rows);
      qmatmul(m, x.data(), n, got.data());
      qmatmul_reference(m, x.data(), n, want.data());
      const bool int8_path = quant_is_block(t);
      DSMOE_EXPECT_CLOSE(fmt::format("{} n={}", quant_type_name(t), n), got.data(), want.data(), n * rows,
                         int8_path ? 1e-2 : 1e-5);
    }
}

TEST(Qmatmul, StridedOutput) {
  const int64_t rows = 40, cols = 64, n = 3, ldy = 50;
  const std::vector<float> w = random_vector(rows * cols, 1.0f, 8), x = random_vector(n * cols, 1.0f, 9);
  const QMatrix m = QMatrix::f32(w.data(), rows, cols);
  std::vector<float> dense(n * rows), strided(n * ldy, -7.0f);
  qmatmul(m, x.data(), n, dense.data());
  qmatmul(m, x.data(), n, strided.data(), ldy);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(std::memcmp(dense.data() + i * rows, strided.data() + i * ldy, rows * 4), 0);
    EXPECT_EQ(strided[i * ldy + rows], -7.0f);  // untouched past the row
  }
}

// HF dir -> GGUF F32 -> the engine on the mapped file (adjacent-pair RoPE on permuted Q/K) == the F32 forward.
// A batch of products (shared and distinct inputs, 1 to 37 rows of x, packed and stored layouts, K-quants and
// 32-blocks) gives every output the bits that the same row of x gets alone: the integer path is the same for every
// n and every batch, so prefill equals token-by-token decoding and the expert batches equal single products.
TEST(Qmatmul, BatchEqualsRowByRowBitForBit) {
  const int64_t cols = 512;
  struct Spec {
    QuantType type;
    int64_t rows;
    bool pack;
    int64_t n;
    int input;  // index into the shared inputs
  };
  const std::vector<Spec> specs = {{QuantType::Q4_0, 70, true, 37, 0}, {QuantType::Q8_0, 33, true, 37, 0},
                                   {QuantType::Q8_0, 40, false, 5, 1}, {QuantType::Q4_K, 50, false, 12, 2},
                                   {QuantType::Q5_0, 20, false, 1, 3}, {QuantType::Q6_K, 65, false, 9, 4},
                                   {QuantType::Q4_0, 31, true, 1, 3}};
  const std::vector<int64_t> input_rows = {37, 5, 12, 1, 9};
  std::vector<std::vector<float>> inputs;
  for (size_t i = 0; i < input_rows.size(); ++i) inputs.push_back(random_vector(input_rows[i] * cols, 1.0f, 40 + i));
  std::vector<std::vector<uint8_t>> storage;
  std::vector<QMatrix> mats;
  for (size_t j = 0; j < specs.size(); ++j) {
    const Spec& sp = specs[j];
    std::vector<uint8_t> q = quantized(sp.type, random_vector(sp.rows * cols, 1.0f, 60 + j), sp.rows, cols);
    if (sp.pack) {
      std::vector<uint8_t> packed(q.size());
      const size_t rb = quant_row_bytes(sp.type, cols);
      for (int64_t r = 0; r < sp.rows; ++r) qpack_row(sp.type, q.data() + r * rb, packed.data() + r * rb, cols);
      q = packed;
    }
    storage.push_back(std::move(q));
  }
  for (size_t j = 0; j < specs.size(); ++j) {
    mats.push_back(QMatrix::view(specs[j].type, storage[j].data(), specs[j].rows, cols));
    mats.back().packed = specs[j].pack;
  }
  std::vector<std::vector<float>> batched(specs.size());
  std::vector<QProduct> jobs;
  for (size_t j = 0; j < specs.size(); ++j) {
    batched[j].assign(specs[j].n * specs[j].rows, -1.0f);
    jobs.push_back({&mats[j], inputs[specs[j].input].data(), batched[j].data(), specs[j].n});
  }
  qmatmul_many(jobs.data(), jobs.size());
  for (size_t j = 0; j < specs.size(); ++j) {
    std::vector<float> one(specs[j].rows);
    for (int64_t i = 0; i < specs[j].n; ++i) {
      qmatmul(mats[j], inputs[specs[j].input].data() + i * cols, 1, one.data());
      EXPECT_EQ(std::memcmp(one.data(), batched[j].data() + i * specs[j].rows, one.size() * 4), 0)
          << "product " << j << " (" << quant_type_name(specs[j].type) << ") row " << i;
    }
  }
  // Products that share an input must agree on its shape.
  std::vector<float> y(70 * 2);
  const QProduct bad[] = {{&mats[0], inputs[0].data(), y.data(), 2}, {&mats[1], inputs[0].data(), y.data(), 1}};
  EXPECT_THROW(qmatmul_many(bad, 2), Error);
}

TEST(GgufEngine, F32FileEqualsTrainingForward) {
  TempDir tmp;
  const ModelConfig c = block_config();
  auto m = random_model(c, 11);
  model_save_gguf(*m, tmp.file("m.gguf"), QuantType::F32);
  const std::vector<int32_t> tokens = random_tokens(16, c.vocab_size, 4);
  const std::vector<float> want = reference_logits(*m, tokens);
  for (bool mmap : {true, false}) {
    auto im = infer_model_load(tmp.file("m.gguf"), InferLoadOptions{mmap});
    EXPECT_TRUE(im->rope_adjacent_pairs);
    EXPECT_EQ(im->owned.empty(), mmap);
    InferenceSession s(*im, 32);
    const std::vector<float> got = decode_logits(s, tokens, c.vocab_size);
    DSMOE_EXPECT_CLOSE(mmap ? "mmap" : "no-mmap", got.data(), want.data(), want.size(), 1e-5);
    // forward_all's last row == forward's logits; its rows == the training forward.
    InferenceSession s2(*im, 32);
    std::vector<float> all;
    s2.forward_all(tokens.data(), 16, all);
    DSMOE_EXPECT_CLOSE("forward_all", all.data() + 4 * c.vocab_size, want.data(), want.size(), 1e-5);
  }
}

// Quantized weights stay quantized in memory; their logits stay close to F32 (bounds as in test_gguf, where the
// same model dequantized to F32 is checked) and every step of decoding agrees with a fresh prefill.
TEST(GgufEngine, QuantizedWeightsStayQuantized) {
  TempDir tmp;
  const ModelConfig c = block_config();
  auto m = random_model(c, 12);
  const std::vector<int32_t> tokens = random_tokens(16, c.vocab_size, 5);
  const std::vector<float> want = reference_logits(*m, tokens);
  for (auto [type, bound] : {std::pair{QuantType::Q8_0, 0.03}, std::pair{QuantType::Q4_0, 0.4},
                             std::pair{QuantType::F16, 2e-3}, std::pair{QuantType::BF16, 2e-2}}) {
    const std::string path = tmp.file(fmt::format("m_{}.gguf", quant_type_name(type)));
    model_save_gguf(*m, path, type);
    auto im = infer_model_load(path);
    EXPECT_EQ(im->layers[1].expert_up[0].type, type);
    EXPECT_EQ(im->layers[1].wq.type, type);
    EXPECT_LT(im->weight_bytes(), m->params.arena.size() * 4 / (type == QuantType::Q4_0 ? 4 : 1.5));
    InferenceSession s(*im, 32);
    const std::vector<float> got = decode_logits(s, tokens, c.vocab_size);
    const Diff d = compare(got.data(), want.data(), static_cast<int64_t>(want.size()));
    EXPECT_LT(d.rel, bound) << quant_type_name(type);
    EXPECT_GT(d.rel, 0.0) << quant_type_name(type);
    std::printf("%s engine: logits relative L2 error %.4g\n", quant_type_name(type), d.rel);
  }
}

// The F16 KV cache: same logits as the F32 cache up to the rounding of K and V to 11 bits (measured ~3e-4).
TEST(KvCacheF16, CloseToF32Cache) {
  const ModelConfig c = block_config();
  auto m = random_model(c, 13);
  const std::vector<int32_t> tokens = random_tokens(20, c.vocab_size, 6);
  InferenceSession f32(*m, 32, QuantType::F32), f16(*m, 32, QuantType::F16);
  EXPECT_EQ(f16.cache().bytes() * 2, f32.cache().bytes());
  const std::vector<float> a = decode_logits(f32, tokens, c.vocab_size);
  const std::vector<float> b = decode_logits(f16, tokens, c.vocab_size);
  const Diff d = compare(b.data(), a.data(), static_cast<int64_t>(a.size()));
  EXPECT_LT(d.rel, 2e-3);
  EXPECT_GT(d.rel, 0.0);
  EXPECT_THROW(InferenceSession(*m, 32, QuantType::Q8_0), dsmoe::Error);
}

// truncate() keeps a prefix: re-running the rest gives the same logits as a single pass (chat KV reuse).
TEST(InferenceSessionTruncate, ReusesPrefix) {
  const ModelConfig c = block_config();
  auto m = random_model(c, 14);
  const std::vector<int32_t> tokens = random_tokens(12, c.vocab_size, 7);
  InferenceSession s(*m, 32);
  const std::vector<float> whole = s.forward(tokens.data(), 12);
  s.truncate(7);
  EXPECT_EQ(s.length(), 7);
  const std::vector<float> again = s.forward(tokens.data() + 7, 5);
  DSMOE_EXPECT_CLOSE("after truncate", again.data(), whole.data(), c.vocab_size, 1e-5);
  EXPECT_THROW(s.truncate(13), Error);
}

// Streaming conversion: a GGUF source re-written to Q8_0 with the 8-bit default keeps embeddings, lm_head and shared
// experts at Q8_0 under a 4-bit type; --all-same-type makes them Q4_0.
TEST(StreamingQuantize, TypePolicyAndRoundTrip) {
  TempDir tmp;
  const ModelConfig c = block_config();
  auto m = random_model(c, 15);
  model_save_gguf(*m, tmp.file("f32.gguf"), QuantType::F32);
  StreamingModelSource src = open_streaming_source(tmp.file("f32.gguf"));
  EXPECT_TRUE(src.gguf_layout);
  for (bool keep : {true, false}) {
    GgufWriteOptions o;
    o.type = QuantType::Q4_0;
    o.keep_8bit = keep;
    o.source_in_gguf_layout = true;
    const std::string out = tmp.file(keep ? "keep.gguf" : "all.gguf");
    gguf_write_model(src.config, src.source, out, o);
    auto im = infer_model_load(out);
    const QuantType every_token = keep ? QuantType::Q8_0 : QuantType::Q4_0;
    EXPECT_EQ(im->embedding.type, every_token);
    EXPECT_EQ(im->lm_head.type, every_token);
    EXPECT_EQ(im->layers[1].shared_up.type, every_token);
    EXPECT_EQ(im->layers[1].expert_up[0].type, QuantType::Q4_0);
    EXPECT_EQ(im->layers[1].router.type, QuantType::F32);
  }
  // F32 -> F32 through the streaming path is bit-exact with the direct writer.
  GgufWriteOptions o;
  o.source_in_gguf_layout = true;
  gguf_write_model(src.config, src.source, tmp.file("again.gguf"), o);
  auto a = model_load_gguf(tmp.file("f32.gguf")), b = model_load_gguf(tmp.file("again.gguf"));
  EXPECT_EQ(std::memcmp(a->params.arena.data(), b->params.arena.data(), a->params.arena.size() * 4), 0);
}

// Packing Q8_0/Q4_0 matrices at load changes the layout the kernels read, never the numbers: logits of prefill
// (every path: packed dot rows for short prompts, dequantized panels for long ones) and of cached decoding are
// identical bit for bit with and without it, mmap and --no-mmap.
TEST(QuantInfer, PackedWeightsGiveIdenticalLogits) {
  TempDir tmp;
  ModelConfig c = block_config();
  c.hidden_size = 320;  // 10 blocks per row: one whole packed group and a partial one
  c.moe_intermediate_size = 64;
  c.intermediate_size = 96;
  c.validate();
  auto m = random_model(c, 16);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 7 + 3) % static_cast<int>(c.vocab_size));
  for (QuantType type : {QuantType::Q4_0, QuantType::Q8_0}) {
    const std::string path = tmp.file(std::string("m-") + quant_type_name(type) + ".gguf");
    model_save_gguf(*m, path, type);
    std::vector<std::vector<float>> runs;
    for (bool pack : {false, true})
      for (bool mmap : {true, false}) {
        InferLoadOptions o;
        o.pack = pack;
        o.use_mmap = mmap;
        auto im = infer_model_load_gguf(path, o);
        EXPECT_EQ(im->lm_head.packed, pack);
        InferenceSession s(*im, 64);
        std::vector<float> out = decode_logits(s, tokens, c.vocab_size);  // 5-token prefill + decode
        s.reset();
        std::vector<float> all;
        s.forward_all(tokens.data(), 24, all);  // a 24-token prefill: panels
        out.insert(out.end(), all.begin(), all.end());
        runs.push_back(std::move(out));
      }
    for (size_t r = 1; r < runs.size(); ++r)
      EXPECT_EQ(std::memcmp(runs[0].data(), runs[r].data(), runs[0].size() * 4), 0)
          << quant_type_name(type) << " run " << r;
  }
}
