// llama-quantize's per-tensor type recipes (model/quant_recipe.h) against the types llama-quantize itself chose.
//
// tests/data/recipes/<name>.txt: a deepseek model written by `dsmoe synth --config ... --type f32`, quantized by
// llama.cpp's llama-quantize (commit c392e50) to each file type; one line per tensor: name, ggml ne, then the type
// per file type. Header lines: `config {json}`, `file_types name=llama_ftype ...`, `tensor ne name ...`.
// The configs cover: the 16B's layer and expert counts (28 layers, 64 experts, 2 shared, expert width not a multiple
// of 256), expert width 352 with two leading dense layers, 8 experts + GQA 4 + tied embeddings (the n_expert == 8 and
// n_gqa >= 4 rules) with every width a multiple of 256, and hidden size 160 (every tensor falls back).
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "expect_error.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/gguf_model.h"
#include "model/quant_recipe.h"
#include "train/run_config.h"

using namespace dsmoe;
namespace fs = std::filesystem;

namespace {

struct RecipeTable {
  std::string file;
  ModelConfig config;
  std::vector<std::pair<std::string, uint32_t>> file_types;  // CLI name, llama_ftype id llama-quantize wrote
  struct Row {
    std::string name;
    std::vector<int64_t> ne;
    std::vector<std::string> types;  // one per file type
  };
  std::vector<Row> rows;
};

RecipeTable read_table(const fs::path& path) {
  RecipeTable t;
  t.file = path.filename().string();
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string head;
    s >> head;
    if (head == "config") {
      std::string json;
      std::getline(s, json);
      t.config = config_from_json(nlohmann::json::parse(json), t.file);
    } else if (head == "file_types") {
      std::string item;
      while (s >> item) {
        const size_t eq = item.find('=');
        t.file_types.emplace_back(item.substr(0, eq), static_cast<uint32_t>(std::stoul(item.substr(eq + 1))));
      }
    } else if (head == "tensor") {
      continue;  // column titles
    } else {
      RecipeTable::Row r;
      r.name = head;
      std::string ne, type;
      s >> ne;
      std::istringstream dims(ne);
      for (std::string d; std::getline(dims, d, ',');) r.ne.push_back(std::stoll(d));
      while (s >> type) r.types.push_back(type);
      EXPECT_EQ(r.types.size(), t.file_types.size()) << t.file << ": " << line;
      t.rows.push_back(std::move(r));
    }
  }
  return t;
}

std::vector<RecipeTable> all_tables() {
  std::vector<RecipeTable> tables;
  for (const auto& entry : fs::directory_iterator(DSMOE_RECIPE_DIR))
    if (entry.path().extension() == ".txt") tables.push_back(read_table(entry.path()));
  return tables;
}

}  // namespace

TEST(QuantRecipe, FileTypeNamesAndIds) {
  EXPECT_EQ(file_type_from_name("Q4_K_M"), FileType::Q4_K_M);
  EXPECT_EQ(file_type_from_name("q2_k"), FileType::Q2_K);
  EXPECT_EQ(file_type_from_name("q4_k"), FileType::Q4_K_M);  // llama-quantize's aliases
  EXPECT_EQ(file_type_from_name("Q3_K"), FileType::Q3_K_M);
  EXPECT_EQ(file_type_from_name("q5_k"), FileType::Q5_K_M);
  EXPECT_EQ(file_type_from_name("F16"), FileType::F16);
  EXPECT_EQ(static_cast<uint32_t>(FileType::Q4_K_M), 15u);
  EXPECT_EQ(static_cast<uint32_t>(FileType::Q6_K), 18u);
  EXPECT_EQ(static_cast<uint32_t>(FileType::BF16), 32u);
  for (FileType f : kAllFileTypes) EXPECT_EQ(file_type_from_name(file_type_name(f)), f);
  EXPECT_EQ(file_type_base(FileType::Q3_K_L), QuantType::Q3_K);
  EXPECT_EQ(file_type_base(FileType::Q5_K_S), QuantType::Q5_K);
  EXPECT_EQ(file_type_of(QuantType::Q8_0), FileType::Q8_0);
  EXPECT_EQ(file_type_of(QuantType::Q4_K), FileType::Q4_K_S);
  expect_error([] { file_type_from_name("q4_k_x"); }, {"unknown type 'q4_k_x'", "q2_k", "q6_k", "iq4_nl"});
}

TEST(QuantRecipe, RowWidthFallback) {
  // llama.cpp's convert_incompatible_tensor, e.g. the 16B's expert width 1408 = 5.5 super-blocks.
  EXPECT_EQ(row_width_fallback(QuantType::Q2_K, 1408), QuantType::IQ4_NL);
  EXPECT_EQ(row_width_fallback(QuantType::Q3_K, 1408), QuantType::IQ4_NL);
  EXPECT_EQ(row_width_fallback(QuantType::Q4_K, 1408), QuantType::Q5_0);
  EXPECT_EQ(row_width_fallback(QuantType::Q5_K, 1408), QuantType::Q5_1);
  EXPECT_EQ(row_width_fallback(QuantType::Q6_K, 1408), QuantType::Q8_0);
  EXPECT_EQ(row_width_fallback(QuantType::Q4_K, 2048), QuantType::Q4_K);
  EXPECT_EQ(row_width_fallback(QuantType::Q4_K, 100), QuantType::F16);  // not a multiple of 32 either
  EXPECT_EQ(row_width_fallback(QuantType::Q4_0, 100), QuantType::F16);
  EXPECT_EQ(row_width_fallback(QuantType::Q8_0, 96), QuantType::Q8_0);
  EXPECT_EQ(row_width_fallback(QuantType::F32, 7), QuantType::F32);
}

TEST(QuantRecipe, QuantizedTensors) {
  EXPECT_TRUE(recipe_quantizes("blk.3.ffn_down_exps.weight", 3));
  EXPECT_TRUE(recipe_quantizes("token_embd.weight", 2));
  EXPECT_FALSE(recipe_quantizes("blk.3.ffn_gate_inp.weight", 2));  // the router
  EXPECT_FALSE(recipe_quantizes("blk.3.attn_norm.weight", 1));
  EXPECT_FALSE(recipe_quantizes("output_norm.weight", 1));
}

// --pure (our --all-same-type): the base type everywhere, except where rows do not fit its blocks.
TEST(QuantRecipe, Pure) {
  const ModelConfig c = config_from_json(model_preset_config("deepseek-moe-16b-base"), "preset");
  EXPECT_EQ(recipe_tensor_type(FileType::Q4_K_M, "output.weight", {2048, 102400}, c, true), QuantType::Q4_K);
  EXPECT_EQ(recipe_tensor_type(FileType::Q4_K_M, "blk.0.attn_v.weight", {2048, 2048}, c, true), QuantType::Q4_K);
  EXPECT_EQ(recipe_tensor_type(FileType::Q4_K_M, "blk.5.ffn_down_exps.weight", {1408, 2048, 64}, c, true),
            QuantType::Q5_0);
  EXPECT_EQ(recipe_tensor_type(FileType::Q4_K_M, "blk.5.ffn_gate_inp.weight", {2048, 64}, c, true), QuantType::F32);
}

// Every tensor of every table: recipe_tensor_type gives the type llama-quantize chose.
TEST(QuantRecipe, MatchesLlamaQuantize) {
  const std::vector<RecipeTable> tables = all_tables();
  ASSERT_EQ(tables.size(), 4u) << DSMOE_RECIPE_DIR;
  std::map<std::string, int> compared;  // per file type
  for (const RecipeTable& t : tables) {
    ASSERT_FALSE(t.rows.empty()) << t.file;
    for (size_t k = 0; k < t.file_types.size(); ++k) {
      const auto& [name, id] = t.file_types[k];
      const FileType f = file_type_from_name(name);
      EXPECT_EQ(static_cast<uint32_t>(f), id) << t.file << ": general.file_type of " << name;
      for (const RecipeTable::Row& r : t.rows) {
        const QuantType got = recipe_tensor_type(f, r.name, r.ne, t.config);
        EXPECT_EQ(quant_type_name(got), r.types[k]) << t.file << " " << name << " " << r.name;
        ++compared[name];
      }
    }
  }
  // 15 file types, each over the four models' tensors (363 + 151 + 129 + 77).
  EXPECT_EQ(compared.size(), 15u);
  for (const auto& [name, n] : compared) EXPECT_EQ(n, 720) << name;
}

// The GGUF writer's plan (the tensors dsmoe writes, a tied lm_head included as `output`) is the tensor list of the
// llama-quantize output, with its types, for every file type but q4_0 (dsmoe keeps embeddings, lm_head and shared
// experts at Q8_0 there unless --all-same-type; llama.cpp gives `output` Q6_K and the rest Q4_0).
TEST(QuantRecipe, WriterPlanMatchesLlamaQuantize) {
  for (const RecipeTable& t : all_tables()) {
    for (size_t k = 0; k < t.file_types.size(); ++k) {
      GgufWriteOptions o;
      o.ftype = file_type_from_name(t.file_types[k].first);
      std::map<std::string, std::string> planned;
      for (const GgufTensorPlan& p : gguf_tensor_plan(t.config, o)) planned[p.name] = quant_type_name(p.type);
      ASSERT_EQ(planned.size(), t.rows.size()) << t.file;
      for (const RecipeTable::Row& r : t.rows) {
        ASSERT_TRUE(planned.count(r.name)) << t.file << ": dsmoe does not write " << r.name;
        if (*o.ftype == FileType::Q4_0) {
          const bool every_token =
              r.name == "output.weight" || r.name == "token_embd.weight" || r.name.find("_shexp") != std::string::npos;
          const std::string dsmoe_q4_0 = r.types[k] == "F32" ? "F32" : every_token ? "Q8_0" : "Q4_0";
          EXPECT_EQ(planned[r.name], dsmoe_q4_0) << t.file << " q4_0 " << r.name;
        } else {
          EXPECT_EQ(planned[r.name], r.types[k]) << t.file << " " << t.file_types[k].first << " " << r.name;
        }
      }
    }
  }
}

// The recipes on the real DeepSeekMoE 16B (28 layers, 64 experts of width 1408 = 5.5 super-blocks, dense width
// 10944, n_gqa 1): tensors per type. From recipe_tensor_type (the 16B is too large to run llama-quantize on here; the
// tables above exercise the same rules with the same layer and expert counts). 363 tensors, 84 of them F32 (57 norms,
// 27 routers). E.g. Q4_K_M: Q6_K for output, 14 attn_v and 13 ffn_down_shexp (use_more_bits layers); their ffn_down
// and ffn_down_exps fall back from Q6_K to Q8_0 (14), the other ffn_down_exps from Q4_K to Q5_0 (14).
TEST(QuantRecipe, DeepSeekMoE16B) {
  const ModelConfig c = config_from_json(model_preset_config("deepseek-moe-16b-base"), "preset");
  using Counts = std::map<std::string, int>;
  auto counts = [&](FileType f) {
    GgufWriteOptions o;
    o.ftype = f;
    Counts n;
    for (const GgufTensorPlan& p : gguf_tensor_plan(c, o)) ++n[quant_type_name(p.type)];
    return n;
  };
  const std::vector<std::pair<FileType, Counts>> expected = {
      {FileType::Q2_K, {{"F32", 84}, {"IQ4_NL", 28}, {"Q2_K", 167}, {"Q3_K", 83}, {"Q6_K", 1}}},
      {FileType::Q3_K_S, {{"F32", 84}, {"IQ4_NL", 28}, {"Q3_K", 250}, {"Q6_K", 1}}},
      {FileType::Q3_K_M,
       {{"F32", 84}, {"Q3_K", 167}, {"Q4_K", 81}, {"Q5_0", 27}, {"Q5_1", 1}, {"Q5_K", 2}, {"Q6_K", 1}}},
      {FileType::Q3_K_L, {{"F32", 84}, {"Q3_K", 167}, {"Q5_1", 28}, {"Q5_K", 83}, {"Q6_K", 1}}},
      {FileType::Q4_K_S, {{"F32", 84}, {"Q4_K", 244}, {"Q5_0", 25}, {"Q5_1", 3}, {"Q5_K", 6}, {"Q6_K", 1}}},
      {FileType::Q4_K_M, {{"F32", 84}, {"Q4_K", 223}, {"Q5_0", 14}, {"Q6_K", 28}, {"Q8_0", 14}}},
      {FileType::Q5_K_S, {{"F32", 84}, {"Q5_1", 28}, {"Q5_K", 250}, {"Q6_K", 1}}},
      {FileType::Q5_K_M, {{"F32", 84}, {"Q5_1", 14}, {"Q5_K", 223}, {"Q6_K", 28}, {"Q8_0", 14}}},
      {FileType::Q6_K, {{"F32", 84}, {"Q6_K", 251}, {"Q8_0", 28}}},
  };
  for (const auto& [f, n] : expected) EXPECT_EQ(counts(f), n) << file_type_name(f);
}

// A written file holds what the plan says: general.file_type = the llama_ftype id, each tensor with its planned
// type (random weights; 256 wide with 96-wide experts, so K-quants and fallbacks both occur).
TEST(QuantRecipe, WrittenFileTypes) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("dsmoe_recipe_{}", ::getpid());
  fs::create_directories(dir);
  const ModelConfig c =
      config_from_json(nlohmann::json::parse(R"({"vocab_size": 300, "hidden_size": 256, "intermediate_size": 512,
        "moe_intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "n_shared_experts": 1,
        "n_routed_experts": 4, "num_experts_per_tok": 2, "first_k_dense_replace": 1})"),
                       "test config");
  for (FileType f : {FileType::Q4_K_M, FileType::Q2_K, FileType::Q6_K}) {
    GgufWriteOptions o;
    o.ftype = f;
    const std::string path = (dir / fmt::format("{}.gguf", file_type_name(f))).string();
    gguf_write_model(c, random_tensor_source(c, 3), path, o);
    io::GgufFile g = io::GgufFile::open(path);
    EXPECT_EQ(g.get_int("general.file_type"), static_cast<int64_t>(f));
    std::map<std::string, QuantType> written;
    for (const io::GgufTensorInfo& ti : g.tensors()) written[ti.name] = ti.type;
    for (const GgufTensorPlan& p : gguf_tensor_plan(c, o)) EXPECT_EQ(written.at(p.name), p.type) << p.name;
  }
  fs::remove_all(dir);
}
