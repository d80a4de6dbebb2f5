// The weights the inference engine runs on: one QMatrix view per matrix, in whatever type the file stores it,
// with the storage they point into kept alive here. Sources:
//   - an F32 Model (HF safetensors directory, trained checkpoints): views into its arena, no copy;
//   - a GGUF file: views straight into the read-only mapping (mmap, default) or into one owned copy (--no-mmap).
// GGUF files hold llama.cpp's layout: Q/K rows permuted within each head so that RoPE rotates adjacent pairs;
// `rope_adjacent_pairs` tells the engine to rotate that way instead of un-permuting (which would need a copy).
//
// Dimension legend: V vocab, d hidden, E routed experts, Fe expert width, Fs = Fe * n_shared, F dense width.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "infer/qmatmul.h"
#include "model/model.h"

namespace dsmoe {
namespace io {
class GgufFile;
}

struct InferLayer {
  const float* attn_norm = nullptr;                          // [d]
  const float* ffn_norm = nullptr;                           // [d]
  QMatrix wq, wk, wv, wo;                                    // [H*hd, d], [KVH*hd, d] x2, [d, H*hd]
  QMatrix mlp_gate, mlp_up, mlp_down;                        // dense layers: [F, d], [F, d], [d, F]
  QMatrix router;                                            // MoE layers: [E, d]
  std::vector<QMatrix> expert_gate, expert_up, expert_down;  // [E] x [Fe, d], [Fe, d], [d, Fe]
  QMatrix shared_gate, shared_up, shared_down;               // [Fs, d], [Fs, d], [d, Fs] (empty without shared experts)
};

struct InferModel {
  ModelConfig config;
  bool rope_adjacent_pairs = false;  // true for GGUF (llama.cpp's permuted Q/K)
  QMatrix embedding;                 // [V, d]
  QMatrix lm_head;                   // [V, d]
  const float* final_norm = nullptr;
  std::vector<InferLayer> layers;
  std::string source;        // path it came from
  std::string type_summary;  // e.g. "Q8_0 (+F32 norms)" — the most common matrix type and the others

  size_t weight_bytes() const;            // bytes of every tensor the views cover (tied lm_head counted once)
  size_t active_bytes_per_token() const;  // bytes read to decode one token: all but the embedding and the
                                          // unselected routed experts (k of E)

  // Storage (one of these is set).
  std::unique_ptr<Model> f32_model;
  std::shared_ptr<io::GgufFile> gguf;
  std::vector<uint8_t> owned;                  // --no-mmap copy of the GGUF tensor data
  std::vector<std::vector<float>> f32_copies;  // norms / router stored in a 16-bit type, widened once
  std::shared_ptr<uint8_t> packed_storage;     // Q8_0/Q4_0 matrices in the packed layout (core/qpack.h)
  size_t packed_bytes = 0;
};

struct InferLoadOptions {
  bool use_mmap = true;
  // Q8_0/Q4_0 matrices are copied once into the packed layout of core/qpack.h (same size; the mapped pages are
  // released): decoding then needs about half the instructions per weight byte. Off: the kernels read the file.
  bool pack = true;
};

// Packs every Q8_0/Q4_0 matrix but the embedding (read a row at a time) into one owned buffer; with mmap the source
// pages are dropped from the resident set as they are copied. Idempotent.
void infer_model_pack(InferModel& m);

// Views into an F32 model that the caller keeps alive.
std::unique_ptr<InferModel> infer_model_view(const Model& model);
// Views into an F32 model (takes ownership).
std::unique_ptr<InferModel> infer_model_from_model(std::unique_ptr<Model> model);
// A deepseek GGUF file (any mix of F32/F16/BF16/Q8_0/Q4_0 tensors); config and tensor shapes are checked first.
std::unique_ptr<InferModel> infer_model_load_gguf(const std::string& path, const InferLoadOptions& options = {});
// An HF directory / dsmoe checkpoint (loaded to F32) or a .gguf file.
std::unique_ptr<InferModel> infer_model_load(const std::string& path, const InferLoadOptions& options = {});
// Bytes the weights of `path` need in memory (the file's size for GGUF, the F32 arena for directories), without
// loading or mapping them.
size_t infer_model_bytes_needed(const std::string& path);

}  // namespace dsmoe
