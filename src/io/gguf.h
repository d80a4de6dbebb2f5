// GGUF v3 (llama.cpp / ggml single-file format) reading (mmap) and writing.
//
// Layout (ggml docs/gguf.md), all little-endian: magic "GGUF", u32 version (3), u64 tensor count, u64 KV count;
// KV pairs (gguf string key, u32 value type, value; strings are u64 length + bytes, arrays u32 element type + u64
// count + elements); tensor infos (name, u32 n_dims, u64 ne[n_dims] fastest-varying first, u32 ggml type, u64 offset
// relative to the data section); padding to `general.alignment` (default 32); the data section.
//
// Reading validates everything and ends any malformed input in one dsmoe::Error naming the file and the key or
// tensor at fault. Tensor types are the five of core/quant.h (F32, F16, BF16, Q8_0, Q4_0); others are rejected.
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
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
  ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
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
  std::vector<int64_t> ints;          // integer / bool arrays
  std::vector<double> floats;         // float arrays
  std::vector<std::string> strings;   // string arrays

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
  uint64_t offset = 0;      // relative to the data section
  const uint8_t* data = nullptr;  // into the mapping (reader only)
  size_t nbytes = 0;
  int64_t numel() const;
  std::vector<int64_t> shape() const;  // numpy order (reverse of ne)
};

namespace detail {
class GgufMapping;
}

class GgufFile {
 public:
  static GgufFile open(const std::string& path);
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  const std::vector<GgufKV>& kvs() const { return kvs_; }  // file order
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // file order

  const GgufValue* find(const std::string& key) const;  // nullptr if absent
  const GgufValue& get(const std::string& key) const;   // throws "PATH: missing key KEY"
  // Typed getters: throw naming the key when absent or of the wrong kind.
  int64_t get_int(const std::string& key) const;                 // any integer type
  double get_float(const std::string& key) const;                // FLOAT32 / FLOAT64
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
  std::unique_ptr<detail::GgufMapping> map_;
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

// Bytes of a tensor of `type` with ggml dims ne (ne[0] must be a multiple of the block size).
size_t gguf_tensor_bytes(QuantType type, const std::vector<int64_t>& ne);

// Write a GGUF v3 file: KVs in the given order, then tensor infos, then the data, each tensor aligned to
// `alignment` (written as general.alignment when it is not 32). Writes PATH.tmp, then renames it onto PATH.
void write_gguf(const std::string& path, const std::vector<GgufKV>& kvs, const std::vector<GgufTensorToWrite>& tensors,
                size_t alignment = 32);

}  // namespace dsmoe::io
