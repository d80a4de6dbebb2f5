// Model <-> GGUF (llama.cpp `deepseek` layout); see gguf_model.h.
#include "model/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/mapped.h"
#include "io/safetensors.h"

namespace dsmoe {

namespace {
using io::GgufKV;
using io::GgufType;
using io::GgufValue;

const char* kArch = "deepseek";

// The double whose shortest decimal spelling is that of the float: 1e-6 -> (float) -> 1e-6 again.
double float_to_double_shortest(float f) { return std::stod(fmt::format("{}", f)); }

std::string key(const std::string& k) { return std::string(kArch) + "." + k; }

}  // namespace

std::string gguf_tensor_name(const TensorSpec& spec) { return gguf_tensor_name(spec.role, spec.layer); }

void gguf_permute_qk(const float* src, float* dst, int64_t n_head, int64_t hd, int64_t cols) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(dst + (h * hd + 2 * i + j) * cols, src + (h * hd + j * half + i) * cols,
                    static_cast<size_t>(cols) * sizeof(float));
}

void gguf_unpermute_qk(const float* src, float* dst, int64_t n_head, int64_t hd, int64_t cols) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(dst + (h * hd + j * half + i) * cols, src + (h * hd + 2 * i + j) * cols,
                    static_cast<size_t>(cols) * sizeof(float));
}

FileType gguf_file_type(const GgufWriteOptions& options) {
  return options.ftype ? *options.ftype : file_type_of(options.type);
}

QuantType gguf_tensor_type(const TensorSpec& spec, const ModelConfig& config, const GgufWriteOptions& options) {
  const TensorRoleInfo& role = role_info(spec.role);
  if (role.always_f32 || spec.shape.size() < 2) return QuantType::F32;
  const QuantType base = options.ftype ? file_type_base(*options.ftype) : options.type;
  // llama.cpp's recipes for the file types dsmoe did not define before (K-quant mixes, Q4_1, Q5_0, Q5_1, IQ4_NL).
  const bool llama_recipe = options.ftype && quant_is_block(base) && base != QuantType::Q4_0 && base != QuantType::Q8_0;
  if (llama_recipe) {
    const std::vector<int64_t> ne(spec.shape.rbegin(), spec.shape.rend());
    return recipe_tensor_type(*options.ftype, gguf_tensor_name(spec), ne, config, /*pure=*/!options.keep_8bit);
  }
  QuantType t = base;
  // Below 8 bits, the tensors every token uses (embeddings, lm_head, shared experts: the role table's keep_8bit)
  // keep 8 bits by default: they are a small share of the bytes of a fine-grained MoE and carry the largest share of
  // its quality.
  if (options.keep_8bit && role.keep_8bit && t == QuantType::Q4_0) t = QuantType::Q8_0;
  // A row length that is not a whole number of blocks falls back (F16 for the 32-weight types, as llama.cpp's
  // converter does).
  return row_width_fallback(t, spec.shape.back());
}

std::vector<GgufTensorPlan> gguf_tensor_plan(const ModelConfig& c, const GgufWriteOptions& options) {
  // Every registry tensor under its llama.cpp name; a tied lm_head is written again as `output` (llama.cpp's
  // deepseek needs it).
  const std::vector<TensorSpec> registry = build_registry(c);
  std::vector<TensorSpec> specs = registry;
  if (c.tie_word_embeddings) {
    TensorSpec out = registry.front();
    check(out.role == TensorRole::embedding, "registry does not start with the embedding");
    out.role = TensorRole::lm_head;
    specs.push_back(out);
  }
  std::vector<GgufTensorPlan> plan;
  plan.reserve(specs.size());
  for (const TensorSpec& spec : specs) {
    GgufTensorPlan p{
        spec, gguf_tensor_name(spec), {spec.shape.rbegin(), spec.shape.rend()}, gguf_tensor_type(spec, c, options), 0};
    p.bytes = io::gguf_tensor_bytes(p.type, p.ne);
    plan.push_back(std::move(p));
  }
  return plan;
}

void gguf_write_model(const ModelConfig& c, const GgufTensorSource& source, const std::string& path,
                      const GgufWriteOptions& options) {
  check(c.moe_layer_freq == 1 || c.n_routed_experts == 0,
        "{}: llama.cpp's deepseek layout cannot represent moe_layer_freq = {} (every layer after the leading dense "
        "ones is MoE)",
        path, c.moe_layer_freq);
  check(!c.norm_topk_prob || c.n_routed_experts == 0,
        "{}: llama.cpp's deepseek layout cannot represent norm_topk_prob = true (top-k weights are not renormalized)",
        path);
  const int64_t hd = c.head_dim();
  const int64_t lead =
      c.n_routed_experts > 0 ? std::min(c.first_k_dense_replace, c.num_hidden_layers) : c.num_hidden_layers;

  std::vector<GgufKV> kvs;
  auto add = [&](std::string k, GgufValue v) { kvs.push_back(GgufKV{std::move(k), std::move(v)}); };
  auto u32 = [&](const char* k, int64_t v) {
    check(v >= 0 && v <= 0xffffffffll, "{}: {} = {} does not fit a u32", path, k, v);
    add(key(k), GgufValue::u32(static_cast<uint32_t>(v)));
  };
  add("general.architecture", GgufValue::str(kArch));
  add("general.name", GgufValue::str(options.name));
  const FileType ftype = gguf_file_type(options);
  add("general.file_type", GgufValue::u32(static_cast<uint32_t>(ftype)));
  if (quant_is_block(file_type_base(ftype))) add("general.quantization_version", GgufValue::u32(2));
  u32("context_length", c.max_position_embeddings);
  u32("embedding_length", c.hidden_size);
  u32("block_count", c.num_hidden_layers);
  u32("feed_forward_length", c.intermediate_size);
  u32("attention.head_count", c.num_attention_heads);
  u32("attention.head_count_kv", c.num_key_value_heads);
  add(key("rope.freq_base"), GgufValue::f32(static_cast<float>(c.rope_theta)));
  add(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(static_cast<float>(c.rms_norm_eps)));
  u32("expert_used_count", c.num_experts_per_tok);
  u32("leading_dense_block_count", lead);
  u32("expert_feed_forward_length", c.moe_intermediate_size);
  u32("expert_count", c.n_routed_experts);
  u32("expert_shared_count", c.n_shared_experts);
  add(key("expert_weights_scale"), GgufValue::f32(1.0f));
  u32("rope.dimension_count", hd);
  add(key("rope.scaling.type"), GgufValue::str("none"));
  u32("vocab_size", c.vocab_size);
  u32("attention.key_length", hd);
  u32("attention.value_length", hd);
  bool has_tokenizer = false;
  for (const GgufKV& kv : options.extra_kvs) has_tokenizer |= kv.key.rfind("tokenizer.", 0) == 0;
  if (!has_tokenizer) {  // the ids alone, so BOS/EOS survive without a tokenizer
    if (c.bos_token_id >= 0) add("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(c.bos_token_id)));
    if (c.eos_token_id >= 0) add("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(c.eos_token_id)));
  }
  for (const GgufKV& kv : options.extra_kvs) kvs.push_back(kv);
  add("dsmoe.config", GgufValue::str(config_to_json(c).dump()));

  // Every tensor to write (a tied lm_head again as `output`). The produce callbacks point into this vector.
  const std::vector<GgufTensorPlan> plan = gguf_tensor_plan(c, options);
  size_t total_bytes = 0, done_bytes = 0;
  for (const GgufTensorPlan& p : plan) total_bytes += p.bytes;
  std::vector<io::GgufTensorToWrite> tensors;
  for (const GgufTensorPlan& p : plan) {
    const TensorSpec* sp = &p.spec;
    io::GgufTensorToWrite t;
    t.name = p.name;
    t.ne = p.ne;
    t.type = p.type;
    const QuantType tt = t.type;
    t.produce = [&source, &options, &done_bytes, &total_bytes, sp, tt, hd](std::vector<uint8_t>& out) {
      const TensorSpec& s = *sp;
      // The source fills HF layout (for a tied `output`, the embedding); Q/K rows are then permuted.
      std::vector<float> src(static_cast<size_t>(s.numel()));
      source(s, src.data());
      if (!options.source_in_gguf_layout && role_info(s.role).qk_permuted) {
        std::vector<float> permuted(src.size());
        gguf_permute_qk(src.data(), permuted.data(), s.shape[0] / hd, hd, s.shape[1]);
        src.swap(permuted);
      }
      const int64_t cols = s.shape.back();
      const int64_t rows = s.numel() / cols;
      const size_t row_bytes = quant_row_bytes(tt, cols);
      out.resize(row_bytes * static_cast<size_t>(rows));
      // Row 0 outside the parallel loop: an error for the type (e.g. no quantizer) is thrown here as an Error
      // rather than escaping an OpenMP region (which terminates the program).
      if (rows > 0) quantize_row(tt, src.data(), out.data(), cols);
#pragma omp parallel for schedule(static)
      for (int64_t r = 1; r < rows; ++r) quantize_row(tt, src.data() + r * cols, out.data() + r * row_bytes, cols);
      done_bytes += out.size();
      if (options.progress) options.progress(done_bytes, total_bytes);
    };
    tensors.push_back(std::move(t));
  }
  io::write_gguf(path, kvs, tensors);
}

void model_save_gguf(const Model& model, const std::string& path, QuantType type, const std::string& name) {
  GgufWriteOptions options;
  options.type = type;
  options.keep_8bit = false;  // exactly the type asked for (tests, round trips)
  options.name = name;
  gguf_write_model(model.config, model_tensor_source(model), path, options);
}

GgufTensorSource model_tensor_source(const Model& model) {
  return [&model](const TensorSpec& spec, float* dst) {
    const TensorSpec* own = model.params.find(spec.name);
    // A tied model has no lm_head tensor: `output` is the embedding.
    if (spec.role == TensorRole::lm_head && own == nullptr) own = &model.params.registry.front();
    check(own != nullptr, "model has no tensor {}", spec.name);
    std::copy(model.params.ptr(*own), model.params.ptr(*own) + own->numel(), dst);
  };
}

namespace {
// An integer hyperparameter llama.cpp reads with get_key_or_arr (head counts, dense width): a scalar, or one entry
// per layer. Per-layer values must all be equal here (the engine has one width per kind of layer).
std::optional<int64_t> layer_uniform_int(const io::GgufFile& g, const std::string& k, int64_t n_layer) {
  const GgufValue* v = g.find(k);
  if (!v) return std::nullopt;
  if (v->is_int()) return v->i;
  if (v->type != GgufType::ARRAY || !v->strings.empty() || !v->floats.empty() || v->elem == GgufType::STRING ||
      v->elem == GgufType::FLOAT32 || v->elem == GgufType::FLOAT64)
    fail("{}: key {} is {}, expected an integer or an array of one integer per layer", g.path(), k,
         io::gguf_type_name(v->type));
  check(static_cast<int64_t>(v->ints.size()) == n_layer, "{}: key {} has {} entries, expected one per layer ({})",
        g.path(), k, v->ints.size(), n_layer);
  for (size_t l = 1; l < v->ints.size(); ++l)
    check(v->ints[l] == v->ints[0],
          "{}: key {} differs between layers ({} in layer 0, {} in layer {}): per-layer "
          "values are not supported",
          g.path(), k, v->ints[0], v->ints[l], l);
  return v->ints.empty() ? 0 : v->ints[0];
}
}  // namespace

ModelConfig gguf_read_config(const io::GgufFile& g) {
  const std::string& path = g.path();
  const std::string arch = g.get_string("general.architecture");
  check(arch == kArch, "{}: general.architecture is '{}', expected '{}' (DeepSeekMoE)", path, arch, kArch);

  // Files written by dsmoe carry the HF config (training-only fields); files from llama.cpp's converter do not:
  // then the fields the deepseek.* keys do not describe take the values llama.cpp's graph implies.
  const bool has_dsmoe_config = g.find("dsmoe.config") != nullptr;
  ModelConfig c;
  if (has_dsmoe_config) {
    const GgufValue* v = g.find("dsmoe.config");
    check(v->type == GgufType::STRING, "{}: key dsmoe.config is not a string", path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(v->s);
    } catch (const std::exception& e) {
      fail("{}: key dsmoe.config is not valid JSON: {}", path, e.what());
    }
    try {
      c = config_from_json(j, path + " (key dsmoe.config)");
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail("{}: key dsmoe.config: {}", path, e.what());
    }
  } else {
    c.tie_word_embeddings = false;  // llama.cpp's deepseek always reads `output`
    c.norm_topk_prob = false;       // top-k probabilities are not renormalized
    c.moe_layer_freq = 1;           // every layer after the leading dense ones is MoE
  }
  // The deepseek.* keys are authoritative for the architecture. Required as in llama.cpp's loader (get_key):
  // a missing one is "PATH: missing key deepseek.KEY".
  c.max_position_embeddings = g.get_int(key("context_length"));
  c.hidden_size = g.get_int(key("embedding_length"));
  c.num_hidden_layers = g.get_int(key("block_count"));
  c.rms_norm_eps = float_to_double_shortest(static_cast<float>(g.get_float(key("attention.layer_norm_rms_epsilon"))));
  const int64_t lead = g.get_int(key("leading_dense_block_count"));
  c.moe_intermediate_size = g.get_int(key("expert_feed_forward_length"));
  c.n_shared_experts = g.get_int(key("expert_shared_count"));
  g.get_float(key("expert_weights_scale"));  // required by llama.cpp's loader; not applied by its deepseek graph
  // Optional in the loader, needed by the graph: expert counts when there are MoE layers, the dense width when there
  // are dense layers, the head count always.
  const bool has_moe_layers = lead < c.num_hidden_layers;
  c.n_routed_experts = has_moe_layers ? g.get_int(key("expert_count")) : g.get_int_or(key("expert_count"), 0);
  c.num_experts_per_tok =
      has_moe_layers ? g.get_int(key("expert_used_count")) : g.get_int_or(key("expert_used_count"), 0);
  const std::optional<int64_t> n_ff = layer_uniform_int(g, key("feed_forward_length"), c.num_hidden_layers);
  if (n_ff)
    c.intermediate_size = *n_ff;
  else if (lead > 0 || c.n_routed_experts == 0)
    g.get_int(key("feed_forward_length"));  // "missing key ..."
  const std::optional<int64_t> n_head = layer_uniform_int(g, key("attention.head_count"), c.num_hidden_layers);
  if (!n_head) g.get_int(key("attention.head_count"));  // "missing key ..."
  c.num_attention_heads = *n_head;
  // llama.cpp's defaults for the rest.
  c.num_key_value_heads =
      layer_uniform_int(g, key("attention.head_count_kv"), c.num_hidden_layers).value_or(c.num_attention_heads);
  c.rope_theta = float_to_double_shortest(static_cast<float>(g.get_float_or(key("rope.freq_base"), 10000.0)));
  if (c.n_routed_experts > 0) c.first_k_dense_replace = lead;
  if (const GgufValue* v = g.find(key("vocab_size"))) {
    check(v->is_int(), "{}: key {} is not an integer", path, key("vocab_size"));
    c.vocab_size = v->i;
  } else if (g.find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(g.get_strings("tokenizer.ggml.tokens").size());
  } else if (const io::GgufTensorInfo* t = g.find_tensor(gguf_tensor_name(TensorRole::embedding));
             t && t->ne.size() == 2) {
    c.vocab_size = t->ne[1];
  } else {
    fail("{}: missing key {} (and neither tokenizer.ggml.tokens nor {} say the vocabulary size)", path,
         key("vocab_size"), gguf_tensor_name(TensorRole::embedding));
  }
  // Token ids: the tokenizer's; without dsmoe.config or tokenizer keys, none (not HF DeepSeek's 100000/100001).
  const int64_t no_token = -1;
  c.bos_token_id = g.get_int_or("tokenizer.ggml.bos_token_id", has_dsmoe_config ? c.bos_token_id : no_token);
  c.eos_token_id = g.get_int_or("tokenizer.ggml.eos_token_id", has_dsmoe_config ? c.eos_token_id : no_token);
  // Every layer has at least 7 tensors: a corrupt block_count must not make us build a huge registry.
  check(c.num_hidden_layers <= static_cast<int64_t>(g.tensors().size()),
        "{}: key {} = {} but the file holds only {} tensors", path, key("block_count"), c.num_hidden_layers,
        g.tensors().size());
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: the deepseek.* keys describe an invalid model: {}", path, e.what());
  }
  const int64_t hd = c.head_dim();
  for (const char* k : {"rope.dimension_count", "attention.key_length", "attention.value_length"}) {
    const int64_t v = g.get_int_or(key(k), hd);
    check(v == hd, "{}: key {} = {} but head_dim (embedding_length / head_count) is {}: {}", path, key(k), v, hd,
          std::string(k) == "rope.dimension_count" ? "partial RoPE is not supported"
                                                   : "head sizes other than embedding_length / head_count are not "
                                                     "supported");
  }
  if (const GgufValue* v = g.find(key("rope.scaling.type")))
    check(v->type == GgufType::STRING && (v->s == "none" || v->s == "linear"),
          "{}: key {} = '{}' is not supported (none, or linear with factor 1)", path, key("rope.scaling.type"), v->s);
  // Linear scaling by a factor other than 1 (llama.cpp: rope.scaling.factor, older files rope.scale_linear) would
  // change positions; 0 means unset there.
  for (const char* k : {"rope.scaling.factor", "rope.scale_linear"}) {
    const double f = g.get_float_or(key(k), 1.0);
    check(f == 0.0 || f == 1.0, "{}: key {} = {} is not supported (RoPE scaling factor 1 only)", path, key(k), f);
  }
  return c;
}

void gguf_check_tensors(const io::GgufFile& g, const ModelConfig& c, bool release_pages) {
  // Names and shapes first: a model built from the file then cannot be larger than its tensors.
  for (const TensorSpec& spec : build_registry(c)) {
    const std::string gname = gguf_tensor_name(spec);
    const io::GgufTensorInfo& t = g.tensor(gname);
    check(t.shape() == spec.shape, "{}: tensor {} has shape {}, expected {}", g.file_of(t), gname, shape_str(t.shape()),
          shape_str(spec.shape));
  }
  const std::string output = gguf_tensor_name(TensorRole::lm_head);
  std::set<std::string> expected;
  for (const TensorSpec& spec : build_registry(c)) expected.insert(gguf_tensor_name(spec));
  if (c.tie_word_embeddings) expected.insert(output);  // the tied copy written for llama.cpp
  for (const io::GgufTensorInfo& t : g.tensors())
    check(expected.count(t.name) > 0, "{}: unexpected tensor {} (not part of a deepseek model with this config)",
          g.file_of(t), t.name);
  if (c.tie_word_embeddings)
    if (const io::GgufTensorInfo* out = g.find_tensor(output))
      check(out->shape() == std::vector<int64_t>{c.vocab_size, c.hidden_size},
            "{}: tensor {} has shape {}, "
            "expected {}",
            g.file_of(*out), output, shape_str(out->shape()), shape_str({c.vocab_size, c.hidden_size}));
  // Block scales last: it reads every block of the file (in parallel).
  io::gguf_validate_block_scales(g, release_pages);
}

std::unique_ptr<Model> model_load_gguf(const std::string& path) {
  io::GgufFile g = io::GgufFile::open(path);
  const ModelConfig c = gguf_read_config(g);
  gguf_check_tensors(g, c);
  const int64_t hd = c.head_dim();
  auto model = std::make_unique<Model>(c);
  std::vector<float> tmp;
  for (const TensorSpec& spec : model->params.registry) {
    const std::string gname = gguf_tensor_name(spec);
    const io::GgufTensorInfo& t = g.tensor(gname);
    float* dst = model->params.ptr(spec);
    if (role_info(spec.role).qk_permuted) {
      tmp.resize(static_cast<size_t>(spec.numel()));
      g.read_f32(t, tmp.data());
      gguf_unpermute_qk(tmp.data(), dst, spec.shape[0] / hd, hd, spec.shape[1]);
    } else {
      g.read_f32(t, dst);
    }
  }
  return model;
}

StreamingModelSource open_streaming_source(const std::string& path) {
  StreamingModelSource src;
  namespace fs = std::filesystem;
  if (io::is_gguf_path(path)) {
    check(fs::is_regular_file(path), "model file {} does not exist", path);
    auto file = std::make_shared<io::GgufFile>(io::GgufFile::open(path));
    src.config = gguf_read_config(*file);
    gguf_check_tensors(*file, src.config, /*release_pages=*/true);  // streaming: keep the resident set small
    src.gguf_layout = true;
    const io::GgufValue* name = file->find("general.name");
    src.name = name != nullptr && name->type == io::GgufType::STRING ? name->s : fs::path(path).filename().string();
    for (const GgufKV& kv : file->kvs())
      if (kv.key.rfind("tokenizer.", 0) == 0) src.tokenizer_kvs.push_back(kv);
    src.source = [file](const TensorSpec& spec, float* dst) {
      const io::GgufTensorInfo& t = file->tensor(gguf_tensor_name(spec));  // a tied lm_head: the file's `output`
      file->read_f32(t, dst);
      io::release_pages(t.data, t.nbytes);
    };
    return src;
  }
  const std::string config_path = (fs::path(path) / "config.json").string();
  check(fs::exists(config_path), "{} is neither a .gguf file nor a directory with config.json", path);
  src.config = config_from_file(config_path);
  src.name = fs::path(path).lexically_normal().filename().string();
  if (src.name.empty()) src.name = fs::path(path).lexically_normal().parent_path().filename().string();  // "dir/"
  auto archive = std::make_shared<io::SafetensorsArchive>(io::SafetensorsArchive::open(path));
  // Every tensor present with its shape before anything is written.
  for (const TensorSpec& spec : build_registry(src.config))
    for (int64_t e = 0; e < std::max<int64_t>(1, spec.n_stacked); ++e) {
      const std::string name = spec.n_stacked ? spec.hf_name(e) : spec.hf_name();
      const io::TensorInfo& t = archive->get(name);
      check(t.shape == spec.hf_shape(), "{}: tensor {} has shape {}, expected {}", t.file, name, shape_str(t.shape),
            shape_str(spec.hf_shape()));
    }
  src.source = [archive](const TensorSpec& spec, float* dst) {
    const int64_t n = std::max<int64_t>(1, spec.n_stacked);
    const int64_t slice = spec.numel() / n;
    for (int64_t e = 0; e < n; ++e) {
      const io::TensorInfo& t = archive->get(spec.n_stacked ? spec.hf_name(e) : spec.hf_name());
      archive->read_f32(t, dst + e * slice);
      io::release_pages(t.data, t.nbytes);
    }
  };
  return src;
}

GgufTensorSource random_tensor_source(const ModelConfig& config, uint64_t seed) {
  // Each tensor draws from its own streams (seed, tensor, chunk of 64K values) so chunks fill in parallel and the
  // result does not depend on the thread count. Values: the sum of four 16-bit uniforms, centred and scaled to
  // unit variance (Irwin-Hall, close to normal), times initializer_range; norms are 1.
  auto index = std::make_shared<std::map<std::string, uint64_t>>();
  const std::vector<TensorSpec> registry = build_registry(config);
  for (size_t i = 0; i < registry.size(); ++i) (*index)[registry[i].name] = i;
  const float scale = static_cast<float>(config.initializer_range) * std::sqrt(3.0f) / 65536.0f;
  return [index, seed, scale](const TensorSpec& spec, float* dst) {
    const int64_t n = spec.numel();
    if (spec.shape.size() == 1) {
      std::fill(dst, dst + n, 1.0f);
      return;
    }
    const uint64_t tensor = index->at(spec.name) + (spec.role == TensorRole::lm_head ? 1000003 : 0);
    constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      Rng rng((seed * 0x9E3779B97F4A7C15ull) ^ (tensor << 40) ^ static_cast<uint64_t>(c0 / kChunk));
      for (int64_t j = c0; j < std::min(n, c0 + kChunk); ++j) {
        const uint64_t r = rng.next_u64();
        const float sum = static_cast<float>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
        dst[j] = (sum - 2.0f * 65535.0f) * scale;
      }
    }
  };
}

}  // namespace dsmoe
