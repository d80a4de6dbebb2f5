// safetensors reading (mmap) and writing for dsmoe.
//
// Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, then N bytes of JSON
// {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...},
// then the data section; offsets are relative to the start of the data section.
//
// Reading maps each file read-only and never copies it whole: TensorInfo::data points into the mapping, which lives
// as long as the SafetensorsArchive. Every malformed input ends in one dsmoe::Error naming the file and the
// tensor/field at fault.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace dsmoe::io {

enum class DType { F32, F16, BF16, F64, I32, I64, U8, I8, I16, U16, U32, U64, BOOL };

const char* dtype_name(DType);              // safetensors spelling: "F32", "BF16", ...
size_t dtype_size(DType);                   // bytes per element
DType dtype_from_name(const std::string&);  // throws dsmoe::Error on an unknown name

// Scalar conversions. f32 -> bf16/f16 round to nearest, ties to even; overflow gives inf; subnormals, inf and NaN
// (sign kept, always quiet) are handled exactly.
float bf16_to_f32(uint16_t);
uint16_t f32_to_bf16(float);
float f16_to_f32(uint16_t);
uint16_t f32_to_f16(float);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  // Points into the mapped file. NOT necessarily aligned for the dtype (safetensors does not promise it): read
  // through memcpy or read_f32/read_i32, never by casting to float*.
  const uint8_t* data;
  size_t nbytes;
  std::string file;  // path of the file holding it (for messages)
  int64_t numel() const;
};

namespace detail {
class MappedFile;  // one read-only mapping; defined in safetensors.cpp
}

// One or many mmapped safetensors files seen as one set of tensors.
class SafetensorsArchive {
 public:
  // path = a .safetensors file, or a directory holding model.safetensors, or a directory holding
  // model.safetensors.index.json (sharded). When a directory holds both, model.safetensors wins (as in HF
  // transformers).
  static SafetensorsArchive open(const std::string& path);

  SafetensorsArchive(SafetensorsArchive&&) noexcept;
  SafetensorsArchive& operator=(SafetensorsArchive&&) noexcept;
  SafetensorsArchive(const SafetensorsArchive&) = delete;
  SafetensorsArchive& operator=(const SafetensorsArchive&) = delete;
  ~SafetensorsArchive();  // unmaps

  // File order: shards in file-name order, and within a file by data offset (header order breaks ties).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  const TensorInfo& get(const std::string& name) const;   // throws "missing tensor NAME in PATH"
  // __metadata__ of the first file (the first shard when sharded); empty when the file has none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

  // Convert a float tensor (F32/F16/BF16/F64) to f32 into dst (numel floats). Throws for other dtypes.
  void read_f32(const TensorInfo& t, float* dst) const;
  std::vector<float> read_f32(const std::string& name) const;
  // From I32 or I64; I64 values outside the int32 range throw.
  std::vector<int32_t> read_i32(const std::string& name) const;

 private:
  SafetensorsArchive() = default;
  void add_file(const std::string& file);          // map, parse and append one file's tensors
  void add_shards(const std::string& index_path);  // every shard an index names, cross-checked with it

  std::string path_;
  std::vector<std::unique_ptr<detail::MappedFile>> files_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;  // index into tensors_
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // numel f32 values, converted to the output dtype on write
};

struct IntTensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const int32_t* data;  // written as I32
};

// Write one safetensors file with all tensors in dtype (F32, F16 or BF16), data in the given order.
// __metadata__ always holds "format": "pt" (HF transformers requires it) plus extra_metadata. The header is padded
// with spaces to a multiple of 8. Writes PATH.tmp, then renames: no half-written PATH on error.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors, DType dtype,
                       const std::map<std::string, std::string>& extra_metadata = {});

// Same, split into shards of at most max_shard_bytes of tensor data each (a tensor larger than that gets a shard of
// its own): DIR/model-00001-of-0000N.safetensors plus DIR/model.safetensors.index.json, as HF save_pretrained does.
// If everything fits in one shard, writes DIR/model.safetensors and no index. Creates DIR if needed and removes
// stale model.safetensors / index / model-*-of-*.safetensors files left there by an earlier write of the other form.
void write_safetensors_dir(const std::string& dir, const std::vector<TensorToWrite>& tensors, DType dtype,
                           size_t max_shard_bytes = 5ull << 30);

// Float tensors in dtype, then integer tensors as I32 (for test fixtures).
void write_safetensors_mixed(const std::string& path, const std::vector<TensorToWrite>& f32s, DType dtype,
                             const std::vector<IntTensorToWrite>& i32s);

}  // namespace dsmoe::io
