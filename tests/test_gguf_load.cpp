// Loading every deepseek GGUF llama.cpp writes: split files (llama-gguf-split's layout, through the library, the
// inference model and the CLI), convert_hf_to_gguf.py's key set with optional keys absent (llama.cpp's defaults),
// every tensor type of core/quant.h with its block sizes and unsupported types named, truncated data and non-finite
// block scales (one error naming file, tensor and row), and a model whose matrices are all of the newer block types.
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <gtest/gtest.h>

#include "core/kquant.h"
#include "core/quant.h"
#include "expect_error.h"
#include "infer/engine.h"
#include "infer/infer_model.h"
#include "io/gguf.h"
#include "model/gguf_model.h"
#include "temp_dir.h"
#include "test_util.h"
#include "text/gguf_vocab.h"
#include "text_util.h"

using namespace dsmoe;
namespace fs = std::filesystem;

namespace {

class GgufLoad : public dsmoe::testing::TempDirTest {};
using dsmoe::testing::slurp;
using dsmoe::testing::spit;

// A tensor copied byte for byte from an open file.
io::GgufTensorToWrite copy_of(const io::GgufTensorInfo& t) {
  return {t.name, t.ne, t.type, [&t](std::vector<uint8_t>& out) { out.assign(t.data, t.data + t.nbytes); }};
}
std::vector<io::GgufTensorToWrite> copies_of(const io::GgufFile& g) {
  std::vector<io::GgufTensorToWrite> ts;
  for (const io::GgufTensorInfo& t : g.tensors()) ts.push_back(copy_of(t));
  return ts;
}

// Raw bytes of a tensor: `fill` per byte, so zero-filled blocks have finite (zero) scales.
io::GgufTensorToWrite raw_tensor(const std::string& name, std::vector<int64_t> ne, QuantType type, uint8_t fill = 0) {
  io::GgufTensorToWrite t{name, std::move(ne), type, nullptr};
  const size_t bytes = io::gguf_tensor_bytes(type, t.ne);
  t.produce = [bytes, fill](std::vector<uint8_t>& out) { out.assign(bytes, fill); };
  return t;
}

std::vector<float> infer_logits(const InferModel& m, const std::vector<int32_t>& tokens) {
  InferenceSession s(m, 32);
  std::vector<float> logits;
  s.forward_all(tokens.data(), static_cast<int64_t>(tokens.size()), logits);
  return logits;
}

std::vector<float> model_logits(const Model& m, const std::vector<int32_t>& tokens) {
  Activations acts;
  model_forward(m, tokens.data(), 1, static_cast<int64_t>(tokens.size()), acts, false);
  return std::vector<float>(acts.logits.data(), acts.logits.data() + acts.logits.size());
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

void expect_same_params(const Model& a, const Model& b) {
  ASSERT_EQ(a.params.registry.size(), b.params.registry.size());
  for (const TensorSpec& spec : a.params.registry)
    EXPECT_EQ(std::memcmp(a.params.ptr(spec), b.params.ptr(spec), spec.numel() * sizeof(float)), 0) << spec.name;
}

// A split written by hand, for the inconsistent splits llama-gguf-split never writes: the given tensors of `src`,
// `src`'s metadata when `with_metadata`, and the three split keys.
void write_split(const std::string& path, const io::GgufFile& src, const std::vector<std::string>& names,
                 bool with_metadata, int no, int count, int total) {
  std::vector<io::GgufKV> kvs;
  if (with_metadata) kvs = src.kvs();
  kvs.push_back({"split.no", io::GgufValue::u16(static_cast<uint16_t>(no))});
  kvs.push_back({"split.count", io::GgufValue::u16(static_cast<uint16_t>(count))});
  kvs.push_back({"split.tensors.count", io::GgufValue::i32(total)});
  std::vector<io::GgufTensorToWrite> ts;
  for (const std::string& n : names) ts.push_back(copy_of(src.tensor(n)));
  io::write_gguf(path, kvs, ts);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Split files

TEST_F(GgufLoad, SplitOpensAsOneFile) {
  const ModelConfig c = dsmoe::testing::block_quant_config();
  auto m = dsmoe::testing::random_model(c, 3);
  const std::string single = file("m.gguf");
  model_save_gguf(*m, single, QuantType::Q8_0);
  const io::GgufFile one = io::GgufFile::open(single);
  const std::vector<std::string> paths = io::gguf_split_file(single, file("m"), 10);
  const size_t n_split = (one.tensors().size() + 9) / 10;
  ASSERT_EQ(paths.size(), n_split);
  EXPECT_EQ(paths[0], file(fmt::format("m-00001-of-{:05d}.gguf", n_split)));
  EXPECT_EQ(paths.back(), file(fmt::format("m-{:05d}-of-{:05d}.gguf", n_split, n_split)));

  for (const std::string& given : {paths[0], paths[1], paths.back()}) {  // any split opens the whole model
    const io::GgufFile g = io::GgufFile::open(given);
    EXPECT_EQ(g.path(), paths[0]);
    EXPECT_EQ(g.split_paths(), paths);
    size_t bytes = 0;
    for (const std::string& p : paths) bytes += fs::file_size(p);
    EXPECT_EQ(g.file_bytes(), bytes);
    // The first split's metadata: the original keys, then the split keys.
    ASSERT_EQ(g.kvs().size(), one.kvs().size() + 3);
    for (size_t k = 0; k < one.kvs().size(); ++k) EXPECT_EQ(g.kvs()[k].key, one.kvs()[k].key);
    EXPECT_EQ(g.get("split.no").type, io::GgufType::UINT16);
    EXPECT_EQ(g.get_int("split.count"), static_cast<int64_t>(n_split));
    EXPECT_EQ(g.get("split.tensors.count").type, io::GgufType::INT32);
    EXPECT_EQ(g.get_int("split.tensors.count"), static_cast<int64_t>(one.tensors().size()));
    // Every tensor, in order, its data in its own split's mapping.
    ASSERT_EQ(g.tensors().size(), one.tensors().size());
    for (size_t k = 0; k < one.tensors().size(); ++k) {
      const io::GgufTensorInfo &a = one.tensors()[k], &b = g.tensors()[k];
      EXPECT_EQ(b.name, a.name);
      EXPECT_EQ(b.ne, a.ne);
      EXPECT_EQ(b.type, a.type);
      EXPECT_EQ(b.split, static_cast<int>(k / 10));
      EXPECT_EQ(g.file_of(b), paths[k / 10]);
      ASSERT_EQ(b.nbytes, a.nbytes);
      EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << a.name;
    }
    EXPECT_EQ(g.read_f32("output.weight"), one.read_f32("output.weight"));
  }
  EXPECT_EQ(io::gguf_model_files(paths[1]), paths);
  EXPECT_EQ(io::gguf_model_files(single), std::vector<std::string>{single});

  // The model reads the same from the splits.
  auto a = model_load_gguf(single);
  auto b = model_load_gguf(paths[0]);
  EXPECT_TRUE(a->config == b->config);
  expect_same_params(*a, *b);
}

TEST_F(GgufLoad, SplitWithMetadataOnlyFirstSplit) {  // llama-gguf-split --no-tensor-first-split
  auto m = dsmoe::testing::random_model(dsmoe::testing::tiny_config(), 4);
  const std::string single = file("m.gguf");
  model_save_gguf(*m, single, QuantType::F32);
  const std::vector<std::string> paths = io::gguf_split_file(single, file("m"), 1000, true);
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_EQ(io::GgufFile::open(paths[0]).tensors().size(), io::GgufFile::open(single).tensors().size());
  expect_same_params(*model_load_gguf(paths[0]), *m);
  // One split only: split.count = 1 is a single file.
  const std::vector<std::string> whole = io::gguf_split_file(single, file("w"), 1000);
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0], file("w-00001-of-00001.gguf"));
  expect_same_params(*model_load_gguf(whole[0]), *m);
}

TEST_F(GgufLoad, InferModelOnSplits) {
  const ModelConfig c = dsmoe::testing::block_quant_config();
  auto m = dsmoe::testing::random_model(c, 5);
  const std::string single = file("m.gguf");
  model_save_gguf(*m, single, QuantType::Q4_0);
  const std::vector<std::string> paths = io::gguf_split_file(single, file("m"), 7);
  ASSERT_GT(paths.size(), 2u);
  const auto tokens = dsmoe::testing::random_tokens(9, c.vocab_size, 1);
  const std::vector<float> want = infer_logits(*infer_model_load_gguf(single), tokens);
  for (bool mmap : {true, false}) {
    auto im = infer_model_load_gguf(paths[0], InferLoadOptions{mmap});
    EXPECT_EQ(infer_logits(*im, tokens), want) << "mmap " << mmap;
    EXPECT_EQ(im->weight_bytes(), infer_model_load_gguf(single)->weight_bytes());
  }
  size_t bytes = 0;
  for (const std::string& p : paths) bytes += fs::file_size(p);
  EXPECT_EQ(infer_model_bytes_needed(paths[0]), bytes);
  EXPECT_EQ(infer_model_bytes_needed(paths[1]), bytes);
  EXPECT_EQ(infer_model_bytes_needed(single), fs::file_size(single));
  // Not a GGUF file: its size (loading it then says what is wrong), as before splits were known.
  spit(file("junk.gguf"), std::vector<uint8_t>(100, 'x'));
  EXPECT_EQ(io::gguf_model_files(file("junk.gguf")), std::vector<std::string>{file("junk.gguf")});
  EXPECT_EQ(infer_model_bytes_needed(file("junk.gguf")), 100u);
}

TEST_F(GgufLoad, SplitErrors) {
  auto m = dsmoe::testing::random_model(dsmoe::testing::tiny_config(), 6);
  const std::string single = file("m.gguf");
  model_save_gguf(*m, single, QuantType::F32);
  const io::GgufFile src = io::GgufFile::open(single);
  std::vector<std::string> names;
  for (const io::GgufTensorInfo& t : src.tensors()) names.push_back(t.name);
  const int total = static_cast<int>(names.size());
  const std::vector<std::string> part0(names.begin(), names.begin() + 10),
      part1(names.begin() + 10, names.begin() + 20), part2(names.begin() + 20, names.end());
  const std::string p0 = file("s-00001-of-00003.gguf"), p1 = file("s-00002-of-00003.gguf"),
                    p2 = file("s-00003-of-00003.gguf");
  auto write_good = [&] {
    write_split(p0, src, part0, true, 0, 3, total);
    write_split(p1, src, part1, false, 1, 3, total);
    write_split(p2, src, part2, false, 2, 3, total);
  };
  write_good();
  expect_same_params(*model_load_gguf(p0), *m);

  fs::remove(p1);
  expect_error([&] { io::GgufFile::open(p0); }, {p0, "split 2 of 3 is missing", p1});
  expect_error([&] { io::gguf_model_files(p0); }, {"split 2 of 3 is missing", p1});
  expect_error([&] { model_load_gguf(p0); }, {"split 2 of 3 is missing"});
  write_split(p1, src, part1, false, 2, 3, total);  // split.no disagrees with its place
  expect_error([&] { io::GgufFile::open(p0); }, {p1, "split.no = 2", "split 2 of 3"});
  write_split(p1, src, part1, false, 1, 3, total);
  write_split(p2, src, part2, false, 2, 4, total);  // split.count disagrees with the first split's
  expect_error([&] { io::GgufFile::open(p0); }, {p2, "split.count = 4", "says 3"});
  std::vector<std::string> dup = part2;
  dup.push_back(part1.front());
  write_split(p2, src, dup, false, 2, 3, total + 1);
  expect_error([&] { io::GgufFile::open(p0); }, {"tensor " + part1.front() + " is in two splits", p1, p2});
  write_split(p2, src, {part2.begin(), part2.end() - 1}, false, 2, 3, total);  // one tensor short
  expect_error([&] { io::GgufFile::open(p0); }, {p0, "split.tensors.count = " + std::to_string(total), "hold"});
  write_good();

  // A later split given: the model opens from its first split; without that first split, a clear error.
  EXPECT_EQ(io::GgufFile::open(p2).path(), p0);
  fs::copy_file(p2, file("renamed.gguf"));
  expect_error([&] { io::GgufFile::open(file("renamed.gguf")); }, {"renamed.gguf", "split 3 of 3", "pass the first"});
  fs::rename(p0, file("first.gguf"));
  expect_error([&] { io::GgufFile::open(p1); }, {p1, "split 2 of 3", p0, "missing", "pass the first split"});
  // The first split renamed: its other splits cannot be named.
  expect_error([&] { io::GgufFile::open(file("first.gguf")); }, {"first.gguf", "-00001-of-00003.gguf"});
}

// The real llama-gguf-split, when its binary is given (DSMOE_LLAMA_GGUF_SPLIT=/path/to/llama-gguf-split): dsmoe
// reads the splits it writes exactly like the single file.
TEST_F(GgufLoad, SplitByLlamaGgufSplit) {
  const char* tool = std::getenv("DSMOE_LLAMA_GGUF_SPLIT");
  if (tool == nullptr || !fs::exists(tool)) GTEST_SKIP() << "set DSMOE_LLAMA_GGUF_SPLIT to llama-gguf-split's path";
  const ModelConfig c = dsmoe::testing::block_quant_config();
  auto m = dsmoe::testing::random_model(c, 8);
  const std::string single = file("m.gguf");
  model_save_gguf(*m, single, QuantType::Q8_0);
  const std::string cmd =
      fmt::format("'{}' --split-max-tensors 9 '{}' '{}' > '{}' 2>&1", tool, single, file("ll"), file("split.log"));
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const size_t n_split = (io::GgufFile::open(single).tensors().size() + 8) / 9;
  const io::GgufFile g = io::GgufFile::open(file(fmt::format("ll-00001-of-{:05d}.gguf", n_split)));
  EXPECT_EQ(g.split_paths().size(), n_split);
  EXPECT_GE(n_split, 3u);
  // Our splitter writes the same bytes.
  const std::vector<std::string> ours = io::gguf_split_file(single, file("ours"), 9);
  ASSERT_EQ(ours.size(), n_split);
  for (size_t k = 0; k < n_split; ++k) EXPECT_TRUE(slurp(ours[k]) == slurp(g.split_paths()[k])) << ours[k];
  expect_same_params(*model_load_gguf(g.path()), *model_load_gguf(single));
  const auto tokens = dsmoe::testing::random_tokens(9, c.vocab_size, 1);
  EXPECT_EQ(infer_logits(*infer_model_load_gguf(g.path()), tokens),
            infer_logits(*infer_model_load_gguf(single), tokens));
}

// The inference commands on a split model print what they print on the single file.
TEST_F(GgufLoad, CliOnSplits) {
  ModelConfig c = dsmoe::testing::block_quant_config();
  c.vocab_size = 320;
  c.max_position_embeddings = 128;
  c.validate();
  auto m = dsmoe::testing::random_model(c, 9);
  GgufWriteOptions options;
  options.type = QuantType::Q8_0;
  options.extra_kvs = text::tokenizer_to_gguf(dsmoe::testing::byte_tokenizer({{"h", "e"}, {"l", "l"}}), c.vocab_size);
  const std::string single = file("m.gguf");
  gguf_write_model(c, model_tensor_source(*m), single, options);
  const std::vector<std::string> paths = io::gguf_split_file(single, file("m"), 8);
  ASSERT_GT(paths.size(), 2u);
  { std::ofstream(file("text.txt")) << "hello hello, the little model reads this text once more and again.\n"; }
  auto run = [&](const std::string& args, const std::string& out) {
    const std::string cmd = fmt::format("cd '{}' && {} {} > {} 2> {}.err", dir.string(), DSMOE_BIN, args, out, out);
    const int rc = std::system(cmd.c_str());
    EXPECT_EQ(rc, 0) << cmd << "\n" << std::string(slurp(file(out + ".err")).begin(), slurp(file(out + ".err")).end());
    const std::vector<uint8_t> b = slurp(file(out));
    return std::string(b.begin(), b.end());
  };
  const std::string first = paths[0];
  const std::string gen = "generate --temperature 0 -n 8 --ignore-eos --prompt hello --model ";
  const std::string want = run(gen + single, "g0.out");
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(run(gen + first, "g1.out"), want);
  EXPECT_EQ(run(gen + first + " --no-mmap", "g2.out"), want);
  EXPECT_EQ(run(gen + paths[1], "g3.out"), want);  // a later split names the same model
  const std::string ppl = " --text text.txt --ctx 16";
  EXPECT_EQ(run("perplexity -m " + first + ppl, "p1.out"), run("perplexity -m " + single + ppl, "p0.out"));
  EXPECT_NE(run("bench -m " + first + " -p 8 -n 2 -r 1", "b1.out").find("tg2"), std::string::npos);
  EXPECT_FALSE(run("chat --temperature 0 -n 4 --model " + first + " < text.txt", "c1.out").empty());
  run("quantize --type f16 --model " + first + " --out q.gguf", "q1.out");
  run("quantize --type f16 --model " + single + " --out q0.gguf", "q0.out");
  EXPECT_EQ(run(gen + "q.gguf", "g4.out"), run(gen + "q0.gguf", "g5.out"));
}

// ---------------------------------------------------------------------------------------------------------------
// convert_hf_to_gguf.py's metadata

namespace {
// The keys convert_hf_to_gguf.py writes for a DeepSeekMoE checkpoint (Model.set_gguf_parameters, then
// DeepseekModel.set_gguf_parameters, general.* metadata, tokenizer, quantization version), with their GGUF types.
std::vector<io::GgufKV> converter_kvs(const ModelConfig& c) {
  using io::GgufValue;
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  std::vector<io::GgufKV> kvs = {
      {"general.architecture", GgufValue::str("deepseek")},
      {"general.type", GgufValue::str("model")},
      {"general.name", GgufValue::str("Deepseek Moe 16b Base")},
      {"general.basename", GgufValue::str("deepseek-moe")},
      {"general.size_label", GgufValue::str("64x1.1B")},
      {"general.license", GgufValue::str("other")},
      {"general.license.name", GgufValue::str("deepseek")},
      {"deepseek.block_count", u32(c.num_hidden_layers)},
      {"deepseek.context_length", u32(c.max_position_embeddings)},
      {"deepseek.embedding_length", u32(c.hidden_size)},
      {"deepseek.feed_forward_length", u32(c.intermediate_size)},
      {"deepseek.attention.head_count", u32(c.num_attention_heads)},
      {"deepseek.attention.head_count_kv", u32(c.num_key_value_heads)},
      {"deepseek.rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta))},
      {"deepseek.attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps))},
      {"deepseek.expert_used_count", u32(c.num_experts_per_tok)},
      {"general.file_type", u32(0)},
      {"deepseek.rope.dimension_count", u32(c.head_dim())},
      {"deepseek.rope.scaling.type", GgufValue::str("none")},
      {"deepseek.leading_dense_block_count", u32(c.first_k_dense_replace)},
      {"deepseek.vocab_size", u32(c.vocab_size)},
      {"deepseek.expert_feed_forward_length", u32(c.moe_intermediate_size)},
      {"deepseek.expert_weights_scale", GgufValue::f32(1.0f)},
      {"deepseek.expert_count", u32(c.n_routed_experts)},
      {"deepseek.expert_shared_count", u32(c.n_shared_experts)},
  };
  for (io::GgufKV& kv : text::tokenizer_to_gguf(dsmoe::testing::byte_tokenizer(), c.vocab_size)) kvs.push_back(kv);
  kvs.push_back({"general.quantization_version", u32(2)});
  return kvs;
}

std::vector<io::GgufKV> without(std::vector<io::GgufKV> kvs, const std::vector<std::string>& keys) {
  std::erase_if(kvs, [&](const io::GgufKV& kv) { return std::find(keys.begin(), keys.end(), kv.key) != keys.end(); });
  return kvs;
}

// The architecture fields a converter file describes (the others keep their defaults).
void expect_same_architecture(const ModelConfig& got, const ModelConfig& want) {
  EXPECT_EQ(got.vocab_size, want.vocab_size);
  EXPECT_EQ(got.hidden_size, want.hidden_size);
  if (want.first_k_dense_replace > 0) {
    EXPECT_EQ(got.intermediate_size, want.intermediate_size);
  }
  EXPECT_EQ(got.moe_intermediate_size, want.moe_intermediate_size);
  EXPECT_EQ(got.num_hidden_layers, want.num_hidden_layers);
  EXPECT_EQ(got.num_attention_heads, want.num_attention_heads);
  EXPECT_EQ(got.num_key_value_heads, want.num_key_value_heads);
  EXPECT_EQ(got.n_shared_experts, want.n_shared_experts);
  EXPECT_EQ(got.n_routed_experts, want.n_routed_experts);
  EXPECT_EQ(got.num_experts_per_tok, want.num_experts_per_tok);
  EXPECT_EQ(got.first_k_dense_replace, want.first_k_dense_replace);
  EXPECT_EQ(got.moe_layer_freq, 1);
  EXPECT_FALSE(got.norm_topk_prob);
  EXPECT_FALSE(got.tie_word_embeddings);
  EXPECT_EQ(got.rms_norm_eps, want.rms_norm_eps);
  EXPECT_EQ(got.rope_theta, want.rope_theta);
  EXPECT_EQ(got.max_position_embeddings, want.max_position_embeddings);
  EXPECT_EQ(got.bos_token_id, 256);  // byte_tokenizer's <s>, </s>
  EXPECT_EQ(got.eos_token_id, 257);
}

// Tensors of `m` in llama.cpp's layout, as the converter writes them (our writer's tensors, its keys replaced).
class ConverterFiles : public GgufLoad {
 protected:
  void write(const std::string& name, const ModelConfig& c, const std::vector<io::GgufKV>& kvs, uint64_t seed = 11) {
    model = dsmoe::testing::random_model(c, seed);
    const std::string tmp = file("ours_" + name);
    model_save_gguf(*model, tmp, QuantType::F32);
    const io::GgufFile ours = io::GgufFile::open(tmp);
    io::write_gguf(file(name), kvs, copies_of(ours));
  }
  std::unique_ptr<Model> model;
};

ModelConfig converter_config() {  // tiny_config with the fields HF DeepSeekMoE sets the way the converter reads them
  ModelConfig c = dsmoe::testing::tiny_config();
  c.vocab_size = 300;  // >= byte_tokenizer's 258 ids
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.validate();
  return c;
}
}  // namespace

TEST_F(ConverterFiles, ConverterKeySetLoads) {
  const ModelConfig c = converter_config();
  write("conv.gguf", c, converter_kvs(c));
  const io::GgufFile g = io::GgufFile::open(file("conv.gguf"));
  EXPECT_EQ(g.find("dsmoe.config"), nullptr);
  expect_same_architecture(gguf_read_config(g), c);
  auto r = model_load_gguf(file("conv.gguf"));
  expect_same_params(*r, *model);
  const auto tokens = dsmoe::testing::random_tokens(8, c.vocab_size, 2);
  EXPECT_EQ(model_logits(*r, tokens), model_logits(*model, tokens));
  auto im = infer_model_load_gguf(file("conv.gguf"));
  EXPECT_LT(rel_err(model_logits(*model, tokens), infer_logits(*im, tokens)), 1e-4);
}

TEST_F(ConverterFiles, OptionalKeysTakeLlamaCppDefaults) {
  ModelConfig c = converter_config();
  c.num_key_value_heads = c.num_attention_heads;  // head_count_kv defaults to head_count
  c.first_k_dense_replace = 0;                    // no dense layer: feed_forward_length unused
  c.validate();
  const std::vector<std::string> optional = {"deepseek.attention.head_count_kv",
                                             "deepseek.rope.freq_base",
                                             "deepseek.attention.key_length",
                                             "deepseek.attention.value_length",
                                             "deepseek.vocab_size",
                                             "deepseek.rope.dimension_count",
                                             "deepseek.rope.scaling.type",
                                             "deepseek.feed_forward_length",
                                             "general.file_type",
                                             "general.name"};
  write("opt.gguf", c, without(converter_kvs(c), optional));
  const ModelConfig got = gguf_read_config(io::GgufFile::open(file("opt.gguf")));
  expect_same_architecture(got, c);
  expect_same_params(*model_load_gguf(file("opt.gguf")), *model);
  // Without a vocab_size key or token list, the vocabulary is token_embd's rows; without tokenizer ids, no BOS/EOS.
  std::vector<io::GgufKV> bare = without(converter_kvs(c), optional);
  std::erase_if(bare, [](const io::GgufKV& kv) { return kv.key.rfind("tokenizer.", 0) == 0; });
  write("bare.gguf", c, bare);
  const ModelConfig got2 = gguf_read_config(io::GgufFile::open(file("bare.gguf")));
  EXPECT_EQ(got2.vocab_size, c.vocab_size);
  EXPECT_EQ(got2.bos_token_id, -1);
  EXPECT_EQ(got2.eos_token_id, -1);
  expect_same_params(*model_load_gguf(file("bare.gguf")), *model);
  // Per-layer arrays (get_key_or_arr) with one value for every layer read like the scalar.
  std::vector<io::GgufKV> arrays = converter_kvs(c);
  for (io::GgufKV& kv : arrays)
    if (kv.key == "deepseek.attention.head_count" || kv.key == "deepseek.feed_forward_length")
      kv.value = io::GgufValue::int_array(io::GgufType::UINT32, std::vector<int64_t>(c.num_hidden_layers, kv.value.i));
  write("arr.gguf", c, arrays);
  expect_same_architecture(gguf_read_config(io::GgufFile::open(file("arr.gguf"))), c);
}

TEST_F(ConverterFiles, MissingRequiredKeyIsNamed) {
  const ModelConfig c = converter_config();  // one dense layer, then MoE layers
  for (const std::string k :
       {"general.architecture", "deepseek.context_length", "deepseek.embedding_length", "deepseek.block_count",
        "deepseek.attention.layer_norm_rms_epsilon", "deepseek.leading_dense_block_count",
        "deepseek.expert_feed_forward_length", "deepseek.expert_shared_count", "deepseek.expert_weights_scale",
        "deepseek.expert_count", "deepseek.expert_used_count", "deepseek.attention.head_count",
        "deepseek.feed_forward_length"}) {
    write("k.gguf", c, without(converter_kvs(c), {k}));
    expect_error([&] { model_load_gguf(file("k.gguf")); }, {"k.gguf", "missing key " + k});
  }
}

TEST_F(ConverterFiles, UnsupportedValuesAreErrors) {
  const ModelConfig c = converter_config();
  auto with = [&](const std::string& k, io::GgufValue v) {
    std::vector<io::GgufKV> kvs = without(converter_kvs(c), {k});
    kvs.push_back({k, std::move(v)});
    write("v.gguf", c, kvs);
  };
  auto load = [&] { model_load_gguf(file("v.gguf")); };
  with("general.architecture", io::GgufValue::str("deepseek2"));
  expect_error(load, {"general.architecture", "deepseek2"});
  with("deepseek.rope.dimension_count", io::GgufValue::u32(static_cast<uint32_t>(c.head_dim() / 2)));
  expect_error(load, {"deepseek.rope.dimension_count", "partial RoPE"});
  with("deepseek.attention.key_length", io::GgufValue::u32(static_cast<uint32_t>(c.head_dim() * 2)));
  expect_error(load, {"deepseek.attention.key_length"});
  with("deepseek.rope.scaling.type", io::GgufValue::str("yarn"));
  expect_error(load, {"deepseek.rope.scaling.type", "yarn"});
  with("deepseek.rope.scaling.factor", io::GgufValue::f32(4.0f));
  expect_error(load, {"deepseek.rope.scaling.factor", "4"});
  with("deepseek.attention.head_count", io::GgufValue::int_array(io::GgufType::UINT32, {4, 2}));
  expect_error(load, {"deepseek.attention.head_count", "differs between layers"});
  with("deepseek.expert_used_count", io::GgufValue::u32(99));
  expect_error(load, {"v.gguf", "num_experts_per_tok"});
  with("deepseek.block_count", io::GgufValue::u32(1000000));
  expect_error(load, {"v.gguf", "deepseek.block_count"});
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor types

TEST_F(GgufLoad, EveryQuantTypeReadsWithItsBlockSize) {
  // ggml-common.h: weights and bytes per block.
  const std::map<QuantType, std::pair<int64_t, size_t>> blocks = {
      {QuantType::F32, {1, 4}},      {QuantType::F16, {1, 2}},      {QuantType::BF16, {1, 2}},
      {QuantType::Q4_0, {32, 18}},   {QuantType::Q4_1, {32, 20}},   {QuantType::Q5_0, {32, 22}},
      {QuantType::Q5_1, {32, 24}},   {QuantType::Q8_0, {32, 34}},   {QuantType::IQ4_NL, {32, 18}},
      {QuantType::Q2_K, {256, 84}},  {QuantType::Q3_K, {256, 110}}, {QuantType::Q4_K, {256, 144}},
      {QuantType::Q5_K, {256, 176}}, {QuantType::Q6_K, {256, 210}}};
  ASSERT_EQ(blocks.size(), std::size(kAllQuantTypes));
  std::vector<io::GgufTensorToWrite> ts;
  for (const auto& [t, b] : blocks) ts.push_back(raw_tensor(quant_type_name(t), {2 * 256, 3, 2}, t));
  io::write_gguf(file("all.gguf"), {}, ts);
  const io::GgufFile g = io::GgufFile::open(file("all.gguf"));
  for (const auto& [t, b] : blocks) {
    const io::GgufTensorInfo& info = g.tensor(quant_type_name(t));
    EXPECT_EQ(info.type, t);
    EXPECT_EQ(quant_block_size(t), b.first) << quant_type_name(t);
    EXPECT_EQ(info.nbytes, (2 * 256 / b.first) * b.second * 6) << quant_type_name(t);
  }
  io::gguf_validate_block_scales(g);  // zero scales are finite

  // Rows that are not whole blocks, and data cut short by one byte, are errors naming the tensor.
  for (QuantType t : {QuantType::Q4_K, QuantType::Q6_K, QuantType::Q2_K}) {
    io::write_gguf(file("k.gguf"), {}, {raw_tensor("a", {256, 2}, t), raw_tensor("b", {256, 2}, t)});
    std::vector<uint8_t> bytes = slurp(file("k.gguf"));
    // ne[0] of tensor a (24-byte header, name 8 + 1, n_dims 4): 256 -> 128.
    ASSERT_EQ(bytes[32], 'a');
    bytes[37] = 128;
    bytes[38] = 0;
    spit(file("bad.gguf"), bytes);
    expect_error([&] { io::GgufFile::open(file("bad.gguf")); },
                 {"bad.gguf", "tensor a", "row length 128", quant_type_name(t), "block size 256"});
    bytes = slurp(file("k.gguf"));
    const io::GgufFile k = io::GgufFile::open(file("k.gguf"));
    bytes.resize(k.tensor("b").file_offset + k.tensor("b").nbytes -
                 1);  // the last byte of b's data (before any padding) is missing
    spit(file("bad.gguf"), bytes);
    expect_error([&] { io::GgufFile::open(file("bad.gguf")); }, {"bad.gguf", "tensor b", "beyond the end"});
  }
}

TEST_F(GgufLoad, UnsupportedTypeIsNamed) {
  io::write_gguf(file("t.gguf"), {}, {raw_tensor("blk.0.attn_q.weight", {64, 2}, QuantType::Q8_0)});
  const std::vector<uint8_t> bytes = slurp(file("t.gguf"));
  // Type id of the only tensor: 24-byte header, name (8 + 19), n_dims (4), ne (2 x 8).
  const size_t at = 24 + 8 + 19 + 4 + 16;
  uint32_t id;
  std::memcpy(&id, &bytes[at], 4);
  ASSERT_EQ(id, 8u);
  for (auto [type, name] : {std::pair<uint32_t, std::string>{16, "IQ2_XXS"},
                            {9, "Q8_1"},
                            {31, "Q4_0_4_4"},
                            {23, "IQ4_XS"},
                            {99, "unknown ggml type 99"}}) {
    std::vector<uint8_t> b = bytes;
    std::memcpy(&b[at], &type, 4);
    spit(file("bad.gguf"), b);
    expect_error([&] { io::GgufFile::open(file("bad.gguf")); }, {"bad.gguf", "blk.0.attn_q.weight", name});
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Corrupt block scales

namespace {
// Byte offsets of the fp16 scales (d, and dmin / m where the type has one) inside one block (ggml-common.h).
std::vector<size_t> scale_offsets(QuantType t) {
  switch (t) {
    case QuantType::Q4_0:
    case QuantType::Q5_0:
    case QuantType::Q8_0:
    case QuantType::IQ4_NL: return {0};
    case QuantType::Q4_1:
    case QuantType::Q5_1:
    case QuantType::Q4_K:
    case QuantType::Q5_K: return {0, 2};
    case QuantType::Q2_K: return {80, 82};
    case QuantType::Q3_K: return {108};
    case QuantType::Q6_K: return {208};
    default: return {};
  }
}
}  // namespace

TEST_F(GgufLoad, NonFiniteBlockScalesAreNamed) {
  for (QuantType t : kAllQuantTypes) {
    if (!quant_is_block(t)) continue;
    io::write_gguf(file("ok.gguf"), {},
                   {raw_tensor("x", {2 * 256, 4}, QuantType::F32), raw_tensor("y", {2 * 256, 5, 3}, t)});
    const io::GgufFile ok = io::GgufFile::open(file("ok.gguf"));
    io::gguf_validate_block_scales(ok);
    for (size_t off : scale_offsets(t)) {
      for (uint16_t bad : {uint16_t{0x7e00}, uint16_t{0xfc00}}) {  // NaN, -Inf
        std::vector<uint8_t> bytes = slurp(file("ok.gguf"));
        // Row 7 (expert 1, row 2), its second block.
        const size_t at = ok.tensor("y").file_offset + 7 * quant_row_bytes(t, 2 * 256) + quant_block_bytes(t) + off;
        std::memcpy(&bytes[at], &bad, 2);
        spit(file("bad.gguf"), bytes);
        const io::GgufFile g = io::GgufFile::open(file("bad.gguf"));
        expect_error([&] { io::gguf_validate_block_scales(g); }, {"bad.gguf", "tensor y", quant_type_name(t), "row 7"});
      }
    }
  }
}

TEST_F(GgufLoad, NonFiniteScaleStopsModelLoading) {
  const ModelConfig c = dsmoe::testing::block_quant_config();
  auto m = dsmoe::testing::random_model(c, 12);
  const std::string good = file("m.gguf");
  model_save_gguf(*m, good, QuantType::Q8_0);
  const io::GgufFile g = io::GgufFile::open(good);
  const io::GgufTensorInfo& t = g.tensor("blk.1.ffn_up_exps.weight");
  std::vector<uint8_t> bytes = slurp(good);
  ASSERT_EQ(t.ne[0], 64);
  const size_t row5_block1 = t.file_offset + 5 * quant_row_bytes(t.type, t.ne[0]) + 34;
  const uint16_t inf = 0x7c00;
  std::memcpy(&bytes[row5_block1], &inf, 2);
  spit(file("bad.gguf"), bytes);
  expect_error([&] { model_load_gguf(file("bad.gguf")); }, {"bad.gguf", "blk.1.ffn_up_exps.weight", "row 5"});
  expect_error([&] { infer_model_load_gguf(file("bad.gguf")); }, {"bad.gguf", "blk.1.ffn_up_exps.weight", "row 5"});
  // In a split model, the error names the split holding the tensor.
  const std::vector<std::string> paths = io::gguf_split_file(file("bad.gguf"), file("s"), 5);
  const io::GgufFile s = io::GgufFile::open(paths[0]);
  const std::string holder = s.file_of(s.tensor("blk.1.ffn_up_exps.weight"));
  EXPECT_NE(holder, paths[0]);
  expect_error([&] { infer_model_load_gguf(paths[0]); }, {holder, "blk.1.ffn_up_exps.weight", "row 5"});
}

// ---------------------------------------------------------------------------------------------------------------
// A model whose matrices all have the newer block types

namespace {
ModelConfig kquant_config() {  // every matrix width a multiple of 256
  ModelConfig c = dsmoe::testing::tiny_config();
  c.vocab_size = 64;
  c.hidden_size = 256;
  c.intermediate_size = 256;
  c.moe_intermediate_size = 256;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.n_routed_experts = 4;
  c.initializer_range = 0.05;
  c.validate();
  return c;
}
}  // namespace

// Each newer block type alone, then all of them mixed in one file (tensor k gets type k mod 9), through the F32
// loader, InferModel and `dsmoe generate`.
TEST_F(GgufLoad, ModelsOfTheNewTypesLoadAndRun) {
  const ModelConfig c = kquant_config();
  auto m = dsmoe::testing::random_model(c, 13);
  model_save_gguf(*m, file("f32.gguf"), QuantType::F32);
  const io::GgufFile f32 = io::GgufFile::open(file("f32.gguf"));
  const auto tokens = dsmoe::testing::random_tokens(9, c.vocab_size, 4);
  const std::vector<float> ref = model_logits(*m, tokens);
  std::vector<QuantType> types;
  for (QuantType t : kAllQuantTypes)
    if (quant_is_block(t) && t != QuantType::Q8_0 && t != QuantType::Q4_0) types.push_back(t);
  ASSERT_EQ(types.size(), 9u);
  // The F32 file's matrices re-stored with the types type_of(k) picks (norms stay F32): the writer given the types
  // directly, each row quantized with quantize_row.
  auto write_typed = [&](const std::string& path, const std::function<QuantType(size_t)>& type_of) {
    std::vector<io::GgufTensorToWrite> ts;
    for (size_t k = 0; k < f32.tensors().size(); ++k) {
      const io::GgufTensorInfo& src = f32.tensors()[k];
      if (src.ne.size() < 2) {
        ts.push_back(copy_of(src));
        continue;
      }
      const QuantType t = type_of(k);
      ts.push_back({src.name, src.ne, t, [&src, &f32, t](std::vector<uint8_t>& out) {
                      const std::vector<float> v = f32.read_f32(src.name);
                      const int64_t n = src.ne[0], rows = src.numel() / n;
                      const size_t rb = quant_row_bytes(t, n);
                      out.resize(rb * static_cast<size_t>(rows));
                      for (int64_t r = 0; r < rows; ++r) quantize_row(t, v.data() + r * n, out.data() + r * rb, n);
                    }});
    }
    io::write_gguf(path, f32.kvs(), ts);
  };
  // Logits error of the file's dequantized model against F32, and InferModel's against that dequantized model.
  auto errors = [&](const std::string& path) {
    auto r = model_load_gguf(path);
    const std::vector<float> deq = model_logits(*r, tokens);
    return std::pair{rel_err(ref, deq), rel_err(deq, infer_logits(*infer_model_load_gguf(path), tokens))};
  };
  for (QuantType t : types) {
    const std::string path = file(fmt::format("m_{}.gguf", quant_type_name(t)));
    write_typed(path, [t](size_t) { return t; });
    EXPECT_EQ(infer_model_load_gguf(path)->type_summary, quant_type_name(t));  // no F16 fallback anywhere
    const auto [err_model, err_infer] = errors(path);
    std::printf("%s: logits vs F32 %.3g; InferModel vs dequantized model %.3g\n", quant_type_name(t), err_model,
                err_infer);
    EXPECT_LT(err_model, t == QuantType::Q2_K ? 0.9 : 0.5) << quant_type_name(t);
    EXPECT_LT(err_infer, 0.05) << quant_type_name(t);
  }
  const std::string mixed = file("mixed.gguf");
  write_typed(mixed, [&](size_t k) { return types[k % types.size()]; });
  const auto [err_model, err_infer] = errors(mixed);
  std::printf("all nine mixed: logits vs F32 %.3g; InferModel vs dequantized model %.3g\n", err_model, err_infer);
  EXPECT_LT(err_infer, 0.05);
  const std::string cmd = fmt::format(
      "{} generate --model {} --prompt-ids 1,2,3 --ids -n 6 --temperature 0 "
      "--ignore-eos > {} 2>&1",
      DSMOE_BIN, mixed, file("gen.out"));
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::vector<uint8_t> out = slurp(file("gen.out"));
  std::printf("dsmoe generate on the mixed file: %s", std::string(out.begin(), out.end()).c_str());
}
