#include "infer/infer_model.h"

#include <cstring>
#include <filesystem>
#include <map>

#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/qpack.h"
#include "io/gguf.h"
#include "model/checkpoint.h"
#include "model/gguf_model.h"

namespace dsmoe {
namespace {

// A 1-D tensor (norm) as f32: used in place when stored as F32, widened once otherwise.
const float* as_f32(InferModel& m, QuantType type, const uint8_t* data, int64_t n) {
  if (type == QuantType::F32) return reinterpret_cast<const float*>(data);
  std::vector<float>& copy = m.f32_copies.emplace_back(static_cast<size_t>(n));
  dequantize_row(type, data, copy.data(), n);
  return copy.data();
}

// Point the view of registry tensor `spec` at `data` (stored as `type`).
void bind_tensor(InferModel& m, const TensorSpec& spec, QuantType type, const uint8_t* data) {
  const auto& s = spec.shape;
  auto mat = [&] { return QMatrix::view(type, data, s[0], s[1]); };
  auto stacked = [&](std::vector<QMatrix>& out) {  // [E, rows, cols] -> E views
    const QMatrix one = QMatrix::view(type, data, s[1], s[2]);
    out.clear();
    for (int64_t e = 0; e < s[0]; ++e) out.push_back(QMatrix::view(type, data + e * one.bytes(), s[1], s[2]));
  };
  if (spec.role == TensorRole::embedding) { m.embedding = mat(); return; }
  if (spec.role == TensorRole::lm_head) { m.lm_head = mat(); return; }
  if (spec.role == TensorRole::final_norm) { m.final_norm = as_f32(m, type, data, s[0]); return; }
  InferLayer& L = m.layers.at(static_cast<size_t>(spec.layer));
  switch (spec.role) {
    case TensorRole::attn_norm: L.attn_norm = as_f32(m, type, data, s[0]); return;
    case TensorRole::ffn_norm: L.ffn_norm = as_f32(m, type, data, s[0]); return;
    case TensorRole::attn_q: L.wq = mat(); return;
    case TensorRole::attn_k: L.wk = mat(); return;
    case TensorRole::attn_v: L.wv = mat(); return;
    case TensorRole::attn_o: L.wo = mat(); return;
    case TensorRole::mlp_gate: L.mlp_gate = mat(); return;
    case TensorRole::mlp_up: L.mlp_up = mat(); return;
    case TensorRole::mlp_down: L.mlp_down = mat(); return;
    case TensorRole::router: L.router = mat(); return;
    case TensorRole::expert_gate: stacked(L.exp_gate); return;
    case TensorRole::expert_up: stacked(L.exp_up); return;
    case TensorRole::expert_down: stacked(L.exp_down); return;
    case TensorRole::shared_gate: L.sh_gate = mat(); return;
    case TensorRole::shared_up: L.sh_up = mat(); return;
    case TensorRole::shared_down: L.sh_down = mat(); return;
    default: fail("inference: unexpected tensor role for {}", spec.name);
  }
}

size_t sum_bytes(const std::vector<QMatrix>& v) {
  size_t total = 0;
  for (const QMatrix& q : v) total += q.bytes();
  return total;
}

// Bytes of one layer: (all of it, the part one decoded token reads).
std::pair<size_t, size_t> layer_bytes(const InferLayer& L, const ModelConfig& c) {
  const size_t d4 = static_cast<size_t>(c.hidden_size) * 4 * 2;  // two norms (f32 in memory)
  const size_t dense = L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + L.mlp_gate.bytes() +
                       L.mlp_up.bytes() + L.mlp_down.bytes() + L.router.bytes() + L.sh_gate.bytes() +
                       L.sh_up.bytes() + L.sh_down.bytes() + d4;
  const size_t experts = sum_bytes(L.exp_gate) + sum_bytes(L.exp_up) + sum_bytes(L.exp_down);
  const size_t E = L.exp_gate.size();
  return {dense + experts, dense + (E ? experts / E * static_cast<size_t>(c.num_experts_per_tok) : 0)};
}

void summarize_types(InferModel& m) {
  std::map<std::string, size_t> by_type;
  auto add = [&](const QMatrix& q) { if (!q.empty()) by_type[quant_type_name(q.type)] += q.bytes(); };
  add(m.embedding);
  add(m.lm_head);
  for (const InferLayer& L : m.layers) {
    for (const QMatrix* q : {&L.wq, &L.wk, &L.wv, &L.wo, &L.mlp_gate, &L.mlp_up, &L.mlp_down, &L.router, &L.sh_gate,
                             &L.sh_up, &L.sh_down})
      add(*q);
    for (const auto* v : {&L.exp_gate, &L.exp_up, &L.exp_down})
      for (const QMatrix& q : *v) add(q);
  }
  std::string main_type;
  size_t most = 0;
  for (const auto& [t, b] : by_type)
    if (b > most) most = b, main_type = t;
  m.type_summary = main_type;
  for (const auto& [t, b] : by_type)
    if (t != main_type) m.type_summary += fmt::format(" +{}", t);
}
}  // namespace

size_t InferModel::weight_bytes() const {
  size_t total = embedding.bytes() + (lm_head.data != embedding.data ? lm_head.bytes() : 0) +
                 static_cast<size_t>(config.hidden_size) * 4;
  for (const InferLayer& L : layers) total += layer_bytes(L, config).first;
  return total;
}

size_t InferModel::active_bytes_per_token() const {
  size_t total = lm_head.bytes() + static_cast<size_t>(config.hidden_size) * 4;
  for (const InferLayer& L : layers) total += layer_bytes(L, config).second;
  return total;
}

std::unique_ptr<InferModel> infer_model_view(const Model& model) {
  auto m = std::make_unique<InferModel>();
  m->config = model.config;
  m->layers.resize(static_cast<size_t>(m->config.num_hidden_layers));
  for (const TensorSpec& spec : model.params.registry)
    bind_tensor(*m, spec, QuantType::F32, reinterpret_cast<const uint8_t*>(model.params.ptr(spec)));
  if (m->config.tie_word_embeddings) m->lm_head = m->embedding;
  summarize_types(*m);
  return m;
}

std::unique_ptr<InferModel> infer_model_from_model(std::unique_ptr<Model> model) {
  auto m = infer_model_view(*model);
  m->f32_model = std::move(model);
  return m;
}

std::unique_ptr<InferModel> infer_model_load_gguf(const std::string& path, const InferLoadOptions& options) {
  auto file = std::make_shared<io::GgufFile>(io::GgufFile::open(path));
  auto m = std::make_unique<InferModel>();
  m->config = gguf_read_config(*file);
  gguf_check_tensors(*file, m->config);
  m->source = path;
  m->rope_adjacent_pairs = true;
  m->layers.resize(static_cast<size_t>(m->config.num_hidden_layers));
  // --no-mmap: one owned copy of every tensor (64-byte aligned), then the mapping is released.
  std::map<std::string, const uint8_t*> where;
  if (!options.use_mmap) {
    size_t total = 64;
    for (const io::GgufTensorInfo& t : file->tensors()) total += (t.nbytes + 63) / 64 * 64;
    m->owned.resize(total);
    uint8_t* p = m->owned.data() + (64 - reinterpret_cast<uintptr_t>(m->owned.data()) % 64) % 64;
    for (const io::GgufTensorInfo& t : file->tensors()) {
      std::memcpy(p, t.data, t.nbytes);
      where[t.name] = p;
      p += (t.nbytes + 63) / 64 * 64;
    }
  } else {
    for (const io::GgufTensorInfo& t : file->tensors()) where[t.name] = t.data;
  }
  for (const TensorSpec& spec : build_registry(m->config)) {
    const std::string name = gguf_tensor_name(spec);
    bind_tensor(*m, spec, file->tensor(name).type, where.at(name));
  }
  if (m->config.tie_word_embeddings) {
    const io::GgufTensorInfo* out = file->find_tensor("output.weight");
    m->lm_head = out ? QMatrix::view(out->type, where.at(out->name), m->config.vocab_size, m->config.hidden_size)
                     : m->embedding;
  }
  if (options.use_mmap) m->gguf = std::move(file);
  if (options.pack) infer_model_pack(*m);
  summarize_types(*m);
  return m;
}

void infer_model_pack(InferModel& m) {
  // Every distinct matrix (a tied lm_head shares the embedding's bytes and is packed with it).
  std::vector<QMatrix*> mats;
  auto add = [&](QMatrix& q) {
    if (!q.empty() && !q.packed && qpack_supported(q.type)) mats.push_back(&q);
  };
  const bool tied = m.lm_head.data == m.embedding.data;
  add(m.lm_head);
  for (InferLayer& L : m.layers) {
    for (QMatrix* q : {&L.wq, &L.wk, &L.wv, &L.wo, &L.mlp_gate, &L.mlp_up, &L.mlp_down, &L.router, &L.sh_gate,
                       &L.sh_up, &L.sh_down})
      add(*q);
    for (auto* v : {&L.exp_gate, &L.exp_up, &L.exp_down})
      for (QMatrix& q : *v) add(q);
  }
  if (mats.empty()) return;
  if (!m.owned.empty()) {  // --no-mmap: the bytes are ours already; pack each row in place
    for (QMatrix* q : mats) {
#pragma omp parallel
      {
        std::vector<uint8_t> tmp(q->row_bytes);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < q->rows; ++r) {
          uint8_t* row = const_cast<uint8_t*>(q->row(r));
          qpack_row(q->type, row, tmp.data(), q->cols);
          std::memcpy(row, tmp.data(), q->row_bytes);
        }
      }
      q->packed = true;
    }
  } else {
    size_t total = 0;
    for (const QMatrix* q : mats) total += (q->bytes() + 63) / 64 * 64;
    void* mem = nullptr;
    check(posix_memalign(&mem, size_t{2} << 20, total) == 0, "out of memory packing {:.1f} GB of weights",
          total / 1e9);
    m.packed_storage = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(mem), [](uint8_t* p) { std::free(p); });
    m.packed_bytes = total;
    madvise(mem, total, MADV_HUGEPAGE);  // fewer page faults and TLB misses over gigabytes of weights
    const bool mapped = m.gguf != nullptr;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uint8_t* dst = m.packed_storage.get();
    for (QMatrix* q : mats) {
      const QMatrix src = *q;
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < src.rows; ++r) qpack_row(src.type, src.row(r), dst + r * src.row_bytes, src.cols);
      if (mapped) {  // the mapped pages wholly inside this matrix are not needed any more
        const uintptr_t lo = (reinterpret_cast<uintptr_t>(src.data) + page - 1) / page * page;
        const uintptr_t hi = (reinterpret_cast<uintptr_t>(src.data) + src.bytes()) / page * page;
        if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
      }
      q->data = dst;
      q->packed = true;
      dst += (src.bytes() + 63) / 64 * 64;
    }
  }
  if (tied) m.embedding = m.lm_head;
}

namespace {
// Same rule as model_load_any: a .gguf path is a GGUF file (a missing one is an error there), else a directory.
bool is_gguf_path(const std::string& path) { return std::filesystem::path(path).extension() == ".gguf"; }
}  // namespace

std::unique_ptr<InferModel> infer_model_load(const std::string& path, const InferLoadOptions& options) {
  if (is_gguf_path(path)) {
    check(std::filesystem::is_regular_file(path), "model file {} does not exist", path);
    return infer_model_load_gguf(path, options);
  }
  auto m = infer_model_from_model(model_load_any(path));
  m->source = path;
  return m;
}

size_t infer_model_bytes_needed(const std::string& path) {
  if (is_gguf_path(path)) {
    // The files' sizes (tensor data plus a little metadata; every split of a split model), known without mapping
    // them: mapping is what may fail.
    check(std::filesystem::is_regular_file(path), "model file {} does not exist", path);
    size_t total = 0;
    for (const std::string& file : io::gguf_model_files(path)) total += std::filesystem::file_size(file);
    return total;
  }
  const ModelConfig c = config_from_file((std::filesystem::path(path) / "config.json").string());
  size_t total = 0;
  for (const TensorSpec& spec : build_registry(c)) total += static_cast<size_t>(spec.numel()) * 4;
  return total;
}

}  // namespace dsmoe
