// GGUF v3 (llama.cpp / ggml single-file format) reading (mmap) and writing.
//
// Layout (ggml docs/gguf.md), all little-endian: magic "GGUF", u32 version (3), u64 tensor count, u64 KV count;
// KV pairs (gguf string key, u32 value type, value; strings are u64 length + bytes, arrays u32 element type + u64
// count + elements); tensor infos (name, u32 n_dims, u64 ne[n_dims] fastest-varying first, u32 ggml type, u64 offset
// relative to the data section); padding to `general.alignment` (default 32); the data section.
//
// Reading validates everything and ends any malformed input in one dsmoe::Error naming the file and the key or
// tensor at fault. Tensor types are those of core/quant.h (floats, the 32-weight blocks and the K-quants); others
// (IQ2_XXS, Q8_1, repacked Q4_0_4_4, unknown ids) are rejected naming the tensor and ggml's type name.
//
// Split models (llama-gguf-split): PREFIX-00001-of-0000N.gguf ... PREFIX-0000N-of-0000N.gguf. Every split holds the
// keys split.no (u16, 0-based), split.count (u16) and split.tensors.count (i32, the total over all splits); the
// first split holds all other metadata; each split's tensor data lies in that split (offsets relative to its own
// data section). GgufFile::open of any split opens them all: kvs() are the first split's, tensors() the union (in
// split order), each tensor's data pointing into its own split's mapping.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/quant.h"

namespace dsmoe::io {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars keep their declared type; integers live in `i` (u64 values above INT64_MAX are
// rejected on read), floats in `f`. Arrays hold scalars or strings (arrays of arrays are not supported).
struct GgufValue {
  GgufType type = GgufType::UINT32;
  GgufType elem = GgufType::UINT32;  // arrays: element type
  int64_t i = 0;
  double f = 0.0;
  bool b = false;
  std::string s;
  std::vector<int64_t> ints;         // integer / bool arrays
  std::vector<double> floats;        // float arrays
  std::vector<std::string> strings;  // string arrays

  static GgufValue u16(uint16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue str_array(std::vector<std::string> v);
  static GgufValue int_array(GgufType elem, std::vector<int64_t> v);
  static GgufValue f32_array(std::vector<float> v);

  bool is_int() const;    // an integer or bool scalar
  bool is_float() const;  // FLOAT32 / FLOAT64 scalar
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] varies fastest (reverse of the numpy shape)
  QuantType type = QuantType::F32;
  uint64_t offset = 0;            // relative to the data section
  const uint8_t* data = nullptr;  // into the mapping of its split (reader only)
  size_t nbytes = 0;
  int split = 0;           // index of the split file holding the data (reader only; 0 for a single file)
  size_t file_offset = 0;  // where the data starts in that file (reader only)
  int64_t numel() const;
  std::vector<int64_t> shape() const;  // numpy order (reverse of ne)
};

namespace detail {
class GgufMapping;
}

class GgufFile {
 public:
  // A single file, or every split of a split model given any of its splits' paths.
  static GgufFile open(const std::string& path);
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }                             // the first split of a split model
  const std::vector<std::string>& split_paths() const { return split_paths_; }  // split order; one for a single file
  const std::string& file_of(const GgufTensorInfo& t) const { return split_paths_.at(static_cast<size_t>(t.split)); }
  size_t file_bytes() const;                                               // the sizes of all its files together
  const std::vector<GgufKV>& kvs() const { return kvs_; }                  // file order
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // file order

  const GgufValue* find(const std::string& key) const;  // nullptr if absent
  const GgufValue& get(const std::string& key) const;   // throws "PATH: missing key KEY"
  // Typed getters: throw naming the key when absent or of the wrong kind.
  int64_t get_int(const std::string& key) const;   // any integer type
  double get_float(const std::string& key) const;  // FLOAT32 / FLOAT64
  std::string get_string(const std::string& key) const;
  const std::vector<std::string>& get_strings(const std::string& key) const;
  int64_t get_int_or(const std::string& key, int64_t fallback) const;
  double get_float_or(const std::string& key, double fallback) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const GgufTensorInfo& tensor(const std::string& name) const;  // throws "PATH: missing tensor NAME"
  // Dequantize a whole tensor to f32 (numel floats).
  void read_f32(const GgufTensorInfo& t, float* dst) const;
  std::vector<float> read_f32(const std::string& name) const;

 private:
  GgufFile() = default;
  std::string path_;
  std::vector<std::string> split_paths_;
  std::vector<std::unique_ptr<detail::GgufMapping>> maps_;  // one per split
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::vector<GgufKV> kvs_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// A tensor to write: its data is produced on demand (streaming) as exactly
// quant_row_bytes(type, ne[0]) * (numel / ne[0]) bytes.
struct GgufTensorToWrite {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  QuantType type = QuantType::F32;
  std::function<void(std::vector<uint8_t>& out)> produce;  // fills `out` (resized by the callee)
};

// Whether `path` names a GGUF file rather than an HF model directory: the one rule every loader, writer and command
// uses (the extension, as llama.cpp's tools decide it; a GGUF file's magic is checked when it is opened).
bool is_gguf_path(const std::string& path);

// The files of the model at `path` (every split of a split model, in order; else just `path`), found by reading the
// metadata of `path` (and of the first split) without mapping anything. Missing splits are errors naming them; a
// file whose metadata cannot be read is returned alone (GgufFile::open reports what is wrong with it).
std::vector<std::string> gguf_model_files(const std::string& path);

// Every block-quantized tensor's block scales (fp16 d / dmin) are finite (core/kquant.h quant_validate_row), checked
// in parallel: NaN/Inf scales from a corrupt file would otherwise spread silently through the logits. Throws one
// line naming the file, the tensor and the row / block. release_pages: drop each checked piece from the resident set
// again (streaming conversions, which read a file larger than the memory they may use one tensor at a time).
void gguf_validate_block_scales(const GgufFile& file, bool release_pages = false);

// Bytes of a tensor of `type` with ggml dims ne (ne[0] must be a multiple of the block size).
size_t gguf_tensor_bytes(QuantType type, const std::vector<int64_t>& ne);

// Write a GGUF v3 file: KVs in the given order, then tensor infos, then the data, each tensor aligned to
// `alignment` (written as general.alignment when it is not 32). Writes PATH.tmp, then renames it onto PATH.
void write_gguf(const std::string& path, const std::vector<GgufKV>& kvs, const std::vector<GgufTensorToWrite>& tensors,
                size_t alignment = 32);

// The name llama.cpp gives split `index` (0-based) of `count`: PREFIX-%05d-of-%05d.gguf.
std::string gguf_split_path(const std::string& prefix, int index, int count);
// Split a GGUF file as llama-gguf-split --split-max-tensors does: at most max_tensors tensors per split, in file
// order (with no_tensor_first_split, the first split holds only the metadata); writes PREFIX-0000i-of-0000N.gguf and
// returns their paths. A file needing one split is still written as PREFIX-00001-of-00001.gguf.
std::vector<std::string> gguf_split_file(const std::string& input, const std::string& prefix, int max_tensors,
                                         bool no_tensor_first_split = false);

}  // namespace dsmoe::io
