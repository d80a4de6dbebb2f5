#include "infer/infer_model.h"

#include <cstring>
#include <filesystem>
#include <iterator>
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

// The view each role binds to, by kind: 1-D norms (f32), matrices, stacked routed experts (one view per expert).
// What a role is (model-level or per layer, rank, stacked, how much a token reads) is the role table's
// (model/registry.h); these only name the fields.
template <typename Owner, typename Field>
struct Slot {
  TensorRole role;
  Field Owner::*field;
};
constexpr Slot<InferModel, const float*> kModelNorms[] = {{TensorRole::final_norm, &InferModel::final_norm}};
constexpr Slot<InferModel, QMatrix> kModelMatrices[] = {{TensorRole::embedding, &InferModel::embedding},
                                                        {TensorRole::lm_head, &InferModel::lm_head}};
constexpr Slot<InferLayer, const float*> kLayerNorms[] = {{TensorRole::attn_norm, &InferLayer::attn_norm},
                                                          {TensorRole::ffn_norm, &InferLayer::ffn_norm}};
constexpr Slot<InferLayer, QMatrix> kLayerMatrices[] = {
    {TensorRole::attn_q, &InferLayer::wq},
    {TensorRole::attn_k, &InferLayer::wk},
    {TensorRole::attn_v, &InferLayer::wv},
    {TensorRole::attn_o, &InferLayer::wo},
    {TensorRole::mlp_gate, &InferLayer::mlp_gate},
    {TensorRole::mlp_up, &InferLayer::mlp_up},
    {TensorRole::mlp_down, &InferLayer::mlp_down},
    {TensorRole::router, &InferLayer::router},
    {TensorRole::shared_gate, &InferLayer::shared_gate},
    {TensorRole::shared_up, &InferLayer::shared_up},
    {TensorRole::shared_down, &InferLayer::shared_down},
};
constexpr Slot<InferLayer, std::vector<QMatrix>> kLayerExperts[] = {
    {TensorRole::expert_gate, &InferLayer::expert_gate},
    {TensorRole::expert_up, &InferLayer::expert_up},
    {TensorRole::expert_down, &InferLayer::expert_down},
};

template <typename Owner, typename Field, size_t N>
Field Owner::*field_of(const Slot<Owner, Field> (&slots)[N], const TensorSpec& spec) {
  for (const Slot<Owner, Field>& slot : slots)
    if (slot.role == spec.role) return slot.field;
  fail("inference: unexpected tensor role for {}", spec.name);
}

// Point the view of registry tensor `spec` at `data` (stored as `type`).
void bind_tensor(InferModel& m, const TensorSpec& spec, QuantType type, const uint8_t* data) {
  const TensorRoleInfo& role = role_info(spec.role);
  const auto& s = spec.shape;
  if (!role.per_layer()) {
    if (role.rank() == 1) {
      m.*field_of(kModelNorms, spec) = as_f32(m, type, data, s[0]);
    } else {
      m.*field_of(kModelMatrices, spec) = QMatrix::view(type, data, s[0], s[1]);
    }
    return;
  }
  InferLayer& L = m.layers.at(static_cast<size_t>(spec.layer));
  if (role.rank() == 1) {
    L.*field_of(kLayerNorms, spec) = as_f32(m, type, data, s[0]);
  } else if (role.stacked) {  // [E, rows, cols] -> E views
    std::vector<QMatrix>& out = L.*field_of(kLayerExperts, spec);
    const QMatrix one = QMatrix::view(type, data, s[1], s[2]);
    out.clear();
    for (int64_t e = 0; e < s[0]; ++e) out.push_back(QMatrix::view(type, data + e * one.bytes(), s[1], s[2]));
  } else {
    L.*field_of(kLayerMatrices, spec) = QMatrix::view(type, data, s[0], s[1]);
  }
}

// Bytes of one layer: (all of it, the part one decoded token reads: by the role table's token_read, the whole of
// each tensor but the routed experts, of which k of E).
std::pair<size_t, size_t> layer_bytes(const InferLayer& L, const ModelConfig& c) {
  size_t all = 0, read = 0;
  auto add = [&](TensorRole role, size_t bytes, size_t n_experts) {
    all += bytes;
    switch (role_info(role).token_read) {
      case TokenRead::all: read += bytes; break;
      case TokenRead::one_row: break;  // (model-level only: the embedding)
      case TokenRead::top_k: read += n_experts ? bytes / n_experts * static_cast<size_t>(c.num_experts_per_tok) : 0;
    }
  };
  for (const auto& slot : kLayerNorms) add(slot.role, static_cast<size_t>(c.hidden_size) * 4, 0);  // f32 in memory
  for (const auto& slot : kLayerMatrices) add(slot.role, (L.*slot.field).bytes(), 0);
  for (const auto& slot : kLayerExperts) {
    size_t bytes = 0;
    for (const QMatrix& q : L.*slot.field) bytes += q.bytes();
    add(slot.role, bytes, (L.*slot.field).size());
  }
  return {all, read};
}

void summarize_types(InferModel& m) {
  std::map<std::string, size_t> by_type;
  auto add = [&](const QMatrix& q) {
    if (!q.empty()) by_type[quant_type_name(q.type)] += q.bytes();
  };
  for (const auto& slot : kModelMatrices) add(m.*slot.field);
  for (const InferLayer& L : m.layers) {
    for (const auto& slot : kLayerMatrices) add(L.*slot.field);
    for (const auto& slot : kLayerExperts)
      for (const QMatrix& q : L.*slot.field) add(q);
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
                 static_cast<size_t>(config.hidden_size) * 4 * std::size(kModelNorms);
  for (const InferLayer& L : layers) total += layer_bytes(L, config).first;
  return total;
}

size_t InferModel::active_bytes_per_token() const {
  // The model-level tensors a token reads whole (lm_head and the final norm; of the embedding, one row).
  size_t total = static_cast<size_t>(config.hidden_size) * 4 * std::size(kModelNorms);
  for (const auto& slot : kModelMatrices)
    if (role_info(slot.role).token_read == TokenRead::all) total += (this->*slot.field).bytes();
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
    const io::GgufTensorInfo* out = file->find_tensor(gguf_tensor_name(TensorRole::lm_head));
    m->lm_head =
        out ? QMatrix::view(out->type, where.at(out->name), m->config.vocab_size, m->config.hidden_size) : m->embedding;
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
  for (const auto& slot : kModelMatrices)  // not the embedding: a token reads one row of it
    if (role_info(slot.role).token_read != TokenRead::one_row) add(m.*slot.field);
  for (InferLayer& L : m.layers) {
    for (const auto& slot : kLayerMatrices) add(L.*slot.field);
    for (const auto& slot : kLayerExperts)
      for (QMatrix& q : L.*slot.field) add(q);
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
    check(posix_memalign(&mem, size_t{2} << 20, total) == 0, "out of memory packing {:.1f} GB of weights", total / 1e9);
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

std::unique_ptr<InferModel> infer_model_load(const std::string& path, const InferLoadOptions& options) {
  if (io::is_gguf_path(path)) {
    check(std::filesystem::is_regular_file(path), "model file {} does not exist", path);
    return infer_model_load_gguf(path, options);
  }
  auto m = infer_model_from_model(model_load_any(path));
  m->source = path;
  return m;
}

size_t infer_model_bytes_needed(const std::string& path) {
  if (io::is_gguf_path(path)) {
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
