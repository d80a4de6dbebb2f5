// GGUF v3 reading and writing (see gguf.h).
#include "io/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

namespace dsmoe::io {

namespace {
constexpr uint32_t kMagic = 0x46554747u;  // "GGUF" little-endian
constexpr size_t kMaxDims = 4;            // GGML_MAX_DIMS
constexpr uint64_t kMaxStringBytes = 1ull << 30;

std::string errno_str() { return std::strerror(errno); }

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}
bool is_int_type(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::INT8 || t == GgufType::UINT16 || t == GgufType::INT16 ||
         t == GgufType::UINT32 || t == GgufType::INT32 || t == GgufType::UINT64 || t == GgufType::INT64 ||
         t == GgufType::BOOL;
}
bool is_float_type(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }
}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "u8";
    case GgufType::INT8: return "i8";
    case GgufType::UINT16: return "u16";
    case GgufType::INT16: return "i16";
    case GgufType::UINT32: return "u32";
    case GgufType::INT32: return "i32";
    case GgufType::FLOAT32: return "f32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "u64";
    case GgufType::INT64: return "i64";
    case GgufType::FLOAT64: return "f64";
  }
  return "?";
}

GgufValue GgufValue::u32(uint32_t v) { GgufValue x; x.type = GgufType::UINT32; x.i = v; return x; }
GgufValue GgufValue::i32(int32_t v) { GgufValue x; x.type = GgufType::INT32; x.i = v; return x; }
GgufValue GgufValue::u64(uint64_t v) {
  check(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "GGUF u64 value {} too large", v);
  GgufValue x; x.type = GgufType::UINT64; x.i = static_cast<int64_t>(v); return x;
}
GgufValue GgufValue::f32(float v) { GgufValue x; x.type = GgufType::FLOAT32; x.f = v; return x; }
GgufValue GgufValue::boolean(bool v) { GgufValue x; x.type = GgufType::BOOL; x.b = v; x.i = v; return x; }
GgufValue GgufValue::str(std::string v) { GgufValue x; x.type = GgufType::STRING; x.s = std::move(v); return x; }
GgufValue GgufValue::str_array(std::vector<std::string> v) {
  GgufValue x; x.type = GgufType::ARRAY; x.elem = GgufType::STRING; x.strings = std::move(v); return x;
}
GgufValue GgufValue::int_array(GgufType elem, std::vector<int64_t> v) {
  check(is_int_type(elem), "GGUF int_array: element type {} is not an integer type", gguf_type_name(elem));
  GgufValue x; x.type = GgufType::ARRAY; x.elem = elem; x.ints = std::move(v); return x;
}
GgufValue GgufValue::f32_array(std::vector<float> v) {
  GgufValue x; x.type = GgufType::ARRAY; x.elem = GgufType::FLOAT32; x.floats.assign(v.begin(), v.end()); return x;
}
bool GgufValue::is_int() const { return is_int_type(type); }
bool GgufValue::is_float() const { return is_float_type(type); }

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}
std::vector<int64_t> GgufTensorInfo::shape() const { return std::vector<int64_t>(ne.rbegin(), ne.rend()); }

size_t gguf_tensor_bytes(QuantType type, const std::vector<int64_t>& ne) {
  if (ne.empty()) return quant_row_bytes(type, 1);
  int64_t rows = 1;
  for (size_t k = 1; k < ne.size(); ++k) rows *= ne[k];
  return quant_row_bytes(type, ne[0]) * static_cast<size_t>(rows);
}

namespace detail {
class GgufMapping {
 public:
  explicit GgufMapping(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("{}: cannot open: {}", path, errno_str());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      ::close(fd_);
      fail("{}: cannot stat: {}", path, errno_str());
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        ::close(fd_);
        fail("{}: cannot mmap: {}", path, errno_str());
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~GgufMapping() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};
}  // namespace detail

namespace {
// Bounds-checked little-endian cursor over the mapping.
struct Cursor {
  const uint8_t* base;
  size_t size;
  size_t pos = 0;
  const std::string& path;

  void need(size_t n, const std::string& what) {
    if (n > size - pos)
      fail("{}: truncated file: {} needs {} bytes at offset {}, file has {}", path, what, n, pos, size);
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > kMaxStringBytes) fail("{}: {}: string length {} is implausible", path, what, n);
    need(static_cast<size_t>(n), what);
    std::string s(reinterpret_cast<const char*>(base + pos), static_cast<size_t>(n));
    pos += static_cast<size_t>(n);
    return s;
  }
  int64_t int_of(GgufType t, const std::string& what) {
    switch (t) {
      case GgufType::UINT8: return read<uint8_t>(what);
      case GgufType::INT8: return read<int8_t>(what);
      case GgufType::UINT16: return read<uint16_t>(what);
      case GgufType::INT16: return read<int16_t>(what);
      case GgufType::UINT32: return read<uint32_t>(what);
      case GgufType::INT32: return read<int32_t>(what);
      case GgufType::INT64: return read<int64_t>(what);
      case GgufType::UINT64: {
        const uint64_t v = read<uint64_t>(what);
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          fail("{}: {}: u64 value {} is too large", path, what, v);
        return static_cast<int64_t>(v);
      }
      case GgufType::BOOL: {
        const uint8_t b = read<uint8_t>(what);
        if (b > 1) fail("{}: {}: bool value {} is neither 0 nor 1", path, what, b);
        return b;
      }
      default: fail("{}: {}: not an integer type", path, what);
    }
  }
};

GgufType check_value_type(uint32_t raw, const std::string& path, const std::string& what) {
  if (raw > static_cast<uint32_t>(GgufType::FLOAT64)) fail("{}: {}: unknown value type {}", path, what, raw);
  return static_cast<GgufType>(raw);
}

GgufValue read_value(Cursor& c, GgufType type, const std::string& what) {
  GgufValue v;
  v.type = type;
  if (is_int_type(type)) {
    v.i = c.int_of(type, what);
    v.b = v.i != 0;
  } else if (type == GgufType::FLOAT32) {
    v.f = c.read<float>(what);
  } else if (type == GgufType::FLOAT64) {
    v.f = c.read<double>(what);
  } else if (type == GgufType::STRING) {
    v.s = c.str(what);
  } else {  // ARRAY
    v.elem = check_value_type(c.read<uint32_t>(what), c.path, what);
    const uint64_t n = c.read<uint64_t>(what);
    if (v.elem == GgufType::ARRAY) fail("{}: {}: arrays of arrays are not supported", c.path, what);
    // Each element takes at least one byte (strings at least 8): reject counts the rest of the file cannot hold.
    const size_t min_elem = v.elem == GgufType::STRING ? 8 : scalar_size(v.elem);
    if (n > (c.size - c.pos) / min_elem)
      fail("{}: truncated file: {} claims {} array elements, more than the file holds", c.path, what, n);
    if (v.elem == GgufType::STRING) {
      v.strings.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.strings.push_back(c.str(what));
    } else if (is_float_type(v.elem)) {
      v.floats.reserve(n);
      for (uint64_t k = 0; k < n; ++k)
        v.floats.push_back(v.elem == GgufType::FLOAT32 ? c.read<float>(what) : c.read<double>(what));
    } else {
      v.ints.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.ints.push_back(c.int_of(v.elem, what));
    }
  }
  return v;
}
}  // namespace

GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.path_ = path;
  g.map_ = std::make_unique<detail::GgufMapping>(path);
  Cursor c{g.map_->data(), g.map_->size(), 0, g.path_};
  if (c.size < 4) fail("{}: truncated file: {} bytes, not a GGUF file", path, c.size);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) fail("{}: bad magic (not a GGUF file): expected 'GGUF'", path);
  g.version_ = c.read<uint32_t>("version");
  if (g.version_ != 3) fail("{}: unsupported GGUF version {} (only version 3 is supported)", path, g.version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("KV count");
  // A KV pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least 8 + 4 + 4 + 8.
  if (n_kv > (c.size - c.pos) / 13)
    fail("{}: KV count {} is implausible for a file of {} bytes (corrupt or truncated file)", path, n_kv, c.size);
  if (n_tensors > (c.size - c.pos) / 24)
    fail("{}: tensor count {} is implausible for a file of {} bytes (corrupt or truncated file)", path, n_tensors,
         c.size);

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str(fmt::format("key of KV pair {}", k));
    const GgufType type = check_value_type(c.read<uint32_t>(key), path, "key " + key);
    GgufValue value = read_value(c, type, "key " + key);
    if (g.kv_index_.count(key)) fail("{}: duplicate key {}", path, key);
    g.kv_index_.emplace(key, g.kvs_.size());
    g.kvs_.push_back(GgufKV{std::move(key), std::move(value)});
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!a->is_int() || a->i <= 0 || (a->i & (a->i - 1)) != 0)
      fail("{}: key general.alignment must be a positive power of two", path);
    g.alignment_ = static_cast<size_t>(a->i);
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = c.str(fmt::format("name of tensor info {}", k));
    const std::string what = "tensor " + t.name;
    const uint32_t n_dims = c.read<uint32_t>(what);
    if (n_dims > kMaxDims) fail("{}: tensor {} has {} dims (at most {})", path, t.name, n_dims, kMaxDims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t ne = static_cast<int64_t>(c.read<uint64_t>(what));
      if (ne < 0 || ne > (int64_t{1} << 40)) fail("{}: tensor {} has implausible dimension {}", path, t.name, ne);
      t.ne.push_back(ne);
    }
    const uint32_t type = c.read<uint32_t>(what);
    if (!quant_type_known(type))
      fail("{}: tensor {} has unsupported or unknown ggml type {} (supported: F32, F16, BF16, Q8_0, Q4_0)", path,
           t.name, type);
    t.type = static_cast<QuantType>(type);
    t.offset = c.read<uint64_t>(what);
    if (t.offset % g.alignment_ != 0)
      fail("{}: tensor {} offset {} is not a multiple of the alignment {}", path, t.name, t.offset, g.alignment_);
    int64_t numel = 1;
    for (int64_t d : t.ne) {
      if (d != 0 && numel > (int64_t{1} << 50) / d) fail("{}: tensor {} is implausibly large", path, t.name);
      numel *= d;
    }
    if (!t.ne.empty() && t.ne[0] % quant_block_size(t.type) != 0)
      fail("{}: tensor {} row length {} is not a multiple of the {} block size {}", path, t.name, t.ne[0],
           quant_type_name(t.type), quant_block_size(t.type));
    t.nbytes = gguf_tensor_bytes(t.type, t.ne);
    if (g.tensor_index_.count(t.name)) fail("{}: duplicate tensor {}", path, t.name);
    g.tensor_index_.emplace(t.name, g.tensors_.size());
    g.tensors_.push_back(std::move(t));
  }
  const size_t data_start = (c.pos + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  for (GgufTensorInfo& t : g.tensors_) {
    if (data_start > c.size || t.offset > c.size - data_start || t.nbytes > c.size - data_start - t.offset)
      fail("{}: tensor {} data [{}, {}) lies beyond the end of the file ({} bytes): truncated file", path, t.name,
           data_start + t.offset, data_start + t.offset + t.nbytes, c.size);
    t.data = c.base + data_start + t.offset;
  }
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}
const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: missing key {}", path_, key);
  return *v;
}
int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!v.is_int()) fail("{}: key {} is {}, expected an integer", path_, key, gguf_type_name(v.type));
  return v.i;
}
double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!v.is_float()) fail("{}: key {} is {}, expected a float", path_, key, gguf_type_name(v.type));
  return v.f;
}
std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::STRING) fail("{}: key {} is {}, expected a string", path_, key, gguf_type_name(v.type));
  return v.s;
}
const std::vector<std::string>& GgufFile::get_strings(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::ARRAY || v.elem != GgufType::STRING)
    fail("{}: key {} is not an array of strings", path_, key);
  return v.strings;
}
int64_t GgufFile::get_int_or(const std::string& key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}
double GgufFile::get_float_or(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}
const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail("{}: missing tensor {}", path_, name);
  return *t;
}
void GgufFile::read_f32(const GgufTensorInfo& t, float* dst) const {
  dequantize_row(t.type, t.data, dst, t.numel());
}
std::vector<float> GgufFile::read_f32(const std::string& name) const {
  const GgufTensorInfo& t = tensor(name);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  read_f32(t, v.data());
  return v;
}

// ---- writing ----

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
  void put(T v) { bytes(&v, sizeof(T)); }
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
  if (v.type == GgufType::BOOL) put_int(o, v.type, v.b || v.i);
  else if (is_int_type(v.type)) put_int(o, v.type, v.i);
  else if (v.type == GgufType::FLOAT32) o.put<float>(static_cast<float>(v.f));
  else if (v.type == GgufType::FLOAT64) o.put<double>(v.f);
  else if (v.type == GgufType::STRING) o.str(v.s);
  else if (v.type == GgufType::ARRAY) {
    o.put<uint32_t>(static_cast<uint32_t>(v.elem));
    if (v.elem == GgufType::STRING) {
      o.put<uint64_t>(v.strings.size());
      for (const auto& s : v.strings) o.str(s);
    } else if (is_float_type(v.elem)) {
      o.put<uint64_t>(v.floats.size());
      for (double f : v.floats) {
        if (v.elem == GgufType::FLOAT32) o.put<float>(static_cast<float>(f));
        else o.put<double>(f);
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
  check(alignment > 0 && (alignment & (alignment - 1)) == 0, "{}: alignment {} is not a power of two", path,
        alignment);
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

}  // namespace dsmoe::io
