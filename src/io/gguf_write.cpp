// GGUF v3 writing (see gguf.h): the streaming writer (temporary file, fsync, rename) and llama-gguf-split's
// splitting of a file into NAME-0000k-of-0000N.gguf parts.
#include <cstdio>
#include <set>

#include <fmt/format.h>
#include <unistd.h>

#include "core/error.h"
#include "core/kquant.h"
#include "io/gguf.h"
#include "io/gguf_format.h"

namespace dsmoe::io {

using namespace gguf_format;

namespace {
class Out {
 public:
  explicit Out(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail("{}: cannot create {}: {}", path_, tmp_, errno_str());
  }
  ~Out() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) fail("{}: write failed: {}", tmp_, errno_str());
    pos_ += n;
  }
  template <typename T>
  void put(T v) {
    bytes(&v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(size_t alignment) {
    static const uint8_t zeros[256] = {};
    size_t pad = (alignment - pos_ % alignment) % alignment;
    while (pad) {
      const size_t k = std::min(pad, sizeof(zeros));
      bytes(zeros, k);
      pad -= k;
    }
  }
  size_t pos() const { return pos_; }
  void commit() {
    if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) fail("{}: cannot flush {}: {}", path_, tmp_, errno_str());
    if (std::fclose(f_) != 0) {
      f_ = nullptr;
      std::remove(tmp_.c_str());
      fail("{}: cannot close {}: {}", path_, tmp_, errno_str());
    }
    f_ = nullptr;
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      std::remove(tmp_.c_str());
      fail("{}: cannot rename {} onto it: {}", path_, tmp_, errno_str());
    }
  }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  size_t pos_ = 0;
};

void put_int(Out& o, GgufType t, int64_t v) {
  switch (t) {
    case GgufType::UINT8: o.put<uint8_t>(static_cast<uint8_t>(v)); break;
    case GgufType::INT8: o.put<int8_t>(static_cast<int8_t>(v)); break;
    case GgufType::UINT16: o.put<uint16_t>(static_cast<uint16_t>(v)); break;
    case GgufType::INT16: o.put<int16_t>(static_cast<int16_t>(v)); break;
    case GgufType::UINT32: o.put<uint32_t>(static_cast<uint32_t>(v)); break;
    case GgufType::INT32: o.put<int32_t>(static_cast<int32_t>(v)); break;
    case GgufType::UINT64: o.put<uint64_t>(static_cast<uint64_t>(v)); break;
    case GgufType::INT64: o.put<int64_t>(v); break;
    case GgufType::BOOL: o.put<uint8_t>(v ? 1 : 0); break;
    default: fail("GGUF write: {} is not an integer type", gguf_type_name(t));
  }
}

void put_value(Out& o, const GgufValue& v, const std::string& key) {
  o.put<uint32_t>(static_cast<uint32_t>(v.type));
  if (v.type == GgufType::BOOL)
    put_int(o, v.type, v.b || v.i);
  else if (is_int_type(v.type))
    put_int(o, v.type, v.i);
  else if (v.type == GgufType::FLOAT32)
    o.put<float>(static_cast<float>(v.f));
  else if (v.type == GgufType::FLOAT64)
    o.put<double>(v.f);
  else if (v.type == GgufType::STRING)
    o.str(v.s);
  else if (v.type == GgufType::ARRAY) {
    o.put<uint32_t>(static_cast<uint32_t>(v.elem));
    if (v.elem == GgufType::STRING) {
      o.put<uint64_t>(v.strings.size());
      for (const auto& s : v.strings) o.str(s);
    } else if (is_float_type(v.elem)) {
      o.put<uint64_t>(v.floats.size());
      for (double f : v.floats) {
        if (v.elem == GgufType::FLOAT32)
          o.put<float>(static_cast<float>(f));
        else
          o.put<double>(f);
      }
    } else if (is_int_type(v.elem)) {
      o.put<uint64_t>(v.ints.size());
      for (int64_t x : v.ints) put_int(o, v.elem, x);
    } else {
      fail("GGUF write: key {}: unsupported array element type {}", key, gguf_type_name(v.elem));
    }
  } else {
    fail("GGUF write: key {}: unknown value type {}", key, static_cast<uint32_t>(v.type));
  }
}
}  // namespace

void write_gguf(const std::string& path, const std::vector<GgufKV>& kvs, const std::vector<GgufTensorToWrite>& tensors,
                size_t alignment) {
  check(alignment > 0 && (alignment & (alignment - 1)) == 0, "{}: alignment {} is not a power of two", path, alignment);
  std::vector<GgufKV> all = kvs;
  bool has_alignment = false;
  std::set<std::string> keys;
  for (const auto& kv : all) {
    check(keys.insert(kv.key).second, "{}: duplicate key {}", path, kv.key);
    if (kv.key == "general.alignment") {
      has_alignment = true;
      check(kv.value.is_int() && kv.value.i == static_cast<int64_t>(alignment),
            "{}: key general.alignment disagrees with the alignment {}", path, alignment);
    }
  }
  if (alignment != 32 && !has_alignment)
    all.push_back(GgufKV{"general.alignment", GgufValue::u32(static_cast<uint32_t>(alignment))});

  std::vector<size_t> sizes, offsets;
  std::set<std::string> names;
  size_t off = 0;
  for (const auto& t : tensors) {
    check(names.insert(t.name).second, "{}: duplicate tensor {}", path, t.name);
    check(t.ne.size() <= kMaxDims, "{}: tensor {} has {} dims (at most {})", path, t.name, t.ne.size(), kMaxDims);
    if (!t.ne.empty() && t.ne[0] % quant_block_size(t.type) != 0)
      fail("{}: tensor {}: row length {} is not a multiple of the {} block size {}", path, t.name, t.ne[0],
           quant_type_name(t.type), quant_block_size(t.type));
    sizes.push_back(gguf_tensor_bytes(t.type, t.ne));
    offsets.push_back(off);
    off += (sizes.back() + alignment - 1) / alignment * alignment;
  }

  Out o(path);
  o.put<uint32_t>(kMagic);
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors.size());
  o.put<uint64_t>(all.size());
  for (const auto& kv : all) {
    o.str(kv.key);
    put_value(o, kv.value, kv.key);
  }
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    o.str(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) o.put<uint64_t>(static_cast<uint64_t>(d));
    o.put<uint32_t>(static_cast<uint32_t>(t.type));
    o.put<uint64_t>(offsets[k]);
  }
  o.pad_to(alignment);
  const size_t data_start = o.pos();
  std::vector<uint8_t> buf;
  for (size_t k = 0; k < tensors.size(); ++k) {
    buf.clear();
    tensors[k].produce(buf);
    check(buf.size() == sizes[k], "{}: tensor {}: produced {} bytes, expected {}", path, tensors[k].name, buf.size(),
          sizes[k]);
    check(o.pos() - data_start == offsets[k], "{}: tensor {}: internal offset mismatch", path, tensors[k].name);
    o.bytes(buf.data(), buf.size());
    o.pad_to(alignment);
  }
  o.commit();
}

std::string gguf_split_path(const std::string& prefix, int index, int count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, index + 1, count);
}

std::vector<std::string> gguf_split_file(const std::string& input, const std::string& prefix, int max_tensors,
                                         bool no_tensor_first_split) {
  check(max_tensors >= 1, "gguf split: at most {} tensors per split is not possible", max_tensors);
  const GgufFile in = GgufFile::open(input);
  // Tensors per split, as llama-gguf-split's split_strategy groups them (MODE_TENSOR).
  std::vector<std::vector<const GgufTensorInfo*>> groups(1);
  if (no_tensor_first_split) groups.emplace_back();
  for (size_t i = 0; i < in.tensors().size(); ++i) {
    if (i > 0 && i % static_cast<size_t>(max_tensors) == 0) groups.emplace_back();
    groups.back().push_back(&in.tensors()[i]);
  }
  const int count = static_cast<int>(groups.size());
  check(count <= 65535, "{}: {} splits are more than split.count (u16) can say", input, count);
  std::vector<std::string> paths;
  for (int k = 0; k < count; ++k) {
    std::vector<GgufKV> kvs;
    if (k == 0)  // all metadata in the first split, except the input's own split keys
      for (const GgufKV& kv : in.kvs())
        if (kv.key.rfind("split.", 0) != 0) kvs.push_back(kv);
    // In llama-gguf-split's order (split.count is set last, when the number of splits is known).
    kvs.push_back({"split.no", GgufValue::u16(static_cast<uint16_t>(k))});
    kvs.push_back({"split.tensors.count", GgufValue::i32(static_cast<int32_t>(in.tensors().size()))});
    kvs.push_back({"split.count", GgufValue::u16(static_cast<uint16_t>(count))});
    std::vector<GgufTensorToWrite> tensors;
    for (const GgufTensorInfo* t : groups[static_cast<size_t>(k)])
      tensors.push_back(
          {t->name, t->ne, t->type, [t](std::vector<uint8_t>& out) { out.assign(t->data, t->data + t->nbytes); }});
    paths.push_back(gguf_split_path(prefix, k, count));
    write_gguf(paths.back(), kvs, tensors, in.alignment());
  }
  return paths;
}

}  // namespace dsmoe::io
