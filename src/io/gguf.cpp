// GGUF v3 reading (see gguf.h); writing and splitting are in gguf_write.cpp.
#include "io/gguf.h"
#include "io/gguf_format.h"
#include "io/mapped.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/kquant.h"

namespace dsmoe::io {

using namespace gguf_format;

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

namespace {
// A scalar integer value of type t (every GGUF integer type is held in the int64 field).
GgufValue int_value(GgufType t, int64_t v) {
  GgufValue x;
  x.type = t;
  x.i = v;
  return x;
}
}  // namespace

GgufValue GgufValue::u16(uint16_t v) { return int_value(GgufType::UINT16, v); }
GgufValue GgufValue::u32(uint32_t v) { return int_value(GgufType::UINT32, v); }
GgufValue GgufValue::i32(int32_t v) { return int_value(GgufType::INT32, v); }
GgufValue GgufValue::u64(uint64_t v) {
  check(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "GGUF u64 value {} too large", v);
  return int_value(GgufType::UINT64, static_cast<int64_t>(v));
}
GgufValue GgufValue::f32(float v) {
  GgufValue x;
  x.type = GgufType::FLOAT32;
  x.f = v;
  return x;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue x = int_value(GgufType::BOOL, v);
  x.b = v;
  return x;
}
GgufValue GgufValue::str(std::string v) {
  GgufValue x;
  x.type = GgufType::STRING;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::str_array(std::vector<std::string> v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem = GgufType::STRING;
  x.strings = std::move(v);
  return x;
}
GgufValue GgufValue::int_array(GgufType elem, std::vector<int64_t> v) {
  check(is_int_type(elem), "GGUF int_array: element type {} is not an integer type", gguf_type_name(elem));
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem = elem;
  x.ints = std::move(v);
  return x;
}
GgufValue GgufValue::f32_array(std::vector<float> v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem = GgufType::FLOAT32;
  x.floats.assign(v.begin(), v.end());
  return x;
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
// Bounds-checked little-endian cursor over a file's bytes: a whole mapping, or (metadata-only reads) a buffer that
// `fetch` extends on demand. `size` is always the file's size, so truncation is reported the same way for both.
struct Cursor {
  const uint8_t* base;
  size_t size;
  size_t pos = 0;
  const std::string& path;
  size_t avail = size;                                        // bytes at base
  std::function<const uint8_t*(size_t end)> fetch = nullptr;  // make [0, end) available; returns the new base

  void need(size_t n, const std::string& what) {
    if (n > size - pos)
      fail("{}: truncated file: {} needs {} bytes at offset {}, file has {}", path, what, n, pos, size);
    if (pos + n > avail) base = fetch(pos + n);  // sets avail
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

std::string supported_types() {
  std::string s;
  for (QuantType t : kAllQuantTypes) s += fmt::format("{}{}", s.empty() ? "" : ", ", quant_type_name(t));
  return s;
}

// One file's header: its KVs and tensor infos (tensor data not located yet).
struct Header {
  uint32_t version = 0;
  size_t alignment = 32;
  std::vector<GgufKV> kvs;
  std::map<std::string, size_t> kv_index;
  uint64_t n_tensors = 0;
  std::vector<GgufTensorInfo> tensors;
  size_t data_start = 0;

  const GgufValue* find(const std::string& key) const {
    auto it = kv_index.find(key);
    return it == kv_index.end() ? nullptr : &kvs[it->second].value;
  }
};

// Magic, version, counts and the KV pairs.
Header read_kvs(Cursor& c) {
  const std::string& path = c.path;
  Header h;
  if (c.size < 4) fail("{}: truncated file: {} bytes, not a GGUF file", path, c.size);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) fail("{}: bad magic (not a GGUF file): expected 'GGUF'", path);
  h.version = c.read<uint32_t>("version");
  if (h.version != 3) fail("{}: unsupported GGUF version {} (only version 3 is supported)", path, h.version);
  h.n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("KV count");
  // A KV pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least 8 + 4 + 4 + 8.
  if (n_kv > (c.size - c.pos) / 13)
    fail("{}: KV count {} is implausible for a file of {} bytes (corrupt or truncated file)", path, n_kv, c.size);
  if (h.n_tensors > (c.size - c.pos) / 24)
    fail("{}: tensor count {} is implausible for a file of {} bytes (corrupt or truncated file)", path, h.n_tensors,
         c.size);
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str(fmt::format("key of KV pair {}", k));
    const GgufType type = check_value_type(c.read<uint32_t>(key), path, "key " + key);
    GgufValue value = read_value(c, type, "key " + key);
    if (h.kv_index.count(key)) fail("{}: duplicate key {}", path, key);
    h.kv_index.emplace(key, h.kvs.size());
    h.kvs.push_back(GgufKV{std::move(key), std::move(value)});
  }
  if (const GgufValue* a = h.find("general.alignment")) {
    if (!a->is_int() || a->i <= 0 || (a->i & (a->i - 1)) != 0)
      fail("{}: key general.alignment must be a positive power of two", path);
    h.alignment = static_cast<size_t>(a->i);
  }
  return h;
}

// The tensor infos that follow the KVs, and where the data section starts.
void read_tensor_infos(Cursor& c, Header& h) {
  const std::string& path = c.path;
  std::map<std::string, size_t> index;
  for (uint64_t k = 0; k < h.n_tensors; ++k) {
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
    if (!quant_type_known(type)) {
      const std::string name = ggml_type_name(type);
      if (name.rfind("type ", 0) == 0)
        fail("{}: tensor {} has unknown ggml type {} (supported: {})", path, t.name, type, supported_types());
      fail("{}: tensor {} has ggml type {} (id {}), which dsmoe does not read (supported: {})", path, t.name, name,
           type, supported_types());
    }
    t.type = static_cast<QuantType>(type);
    t.offset = c.read<uint64_t>(what);
    if (t.offset % h.alignment != 0)
      fail("{}: tensor {} offset {} is not a multiple of the alignment {}", path, t.name, t.offset, h.alignment);
    int64_t numel = 1;
    for (int64_t d : t.ne) {
      if (d != 0 && numel > (int64_t{1} << 50) / d) fail("{}: tensor {} is implausibly large", path, t.name);
      numel *= d;
    }
    const int64_t row = t.ne.empty() ? 1 : t.ne[0];
    if (row % quant_block_size(t.type) != 0)
      fail("{}: tensor {} row length {} is not a multiple of the {} block size {}", path, t.name, row,
           quant_type_name(t.type), quant_block_size(t.type));
    t.nbytes = gguf_tensor_bytes(t.type, t.ne);
    if (index.count(t.name)) fail("{}: duplicate tensor {}", path, t.name);
    index.emplace(t.name, h.tensors.size());
    h.tensors.push_back(std::move(t));
  }
  h.data_start = (c.pos + h.alignment - 1) / h.alignment * h.alignment;
}

// Metadata of `path` read with pread into a buffer that grows as the parser needs (nothing mapped: mapping a
// file larger than the address-space limit is what a memory check must not do).
Header read_metadata_only(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, errno_str());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("{}: cannot stat: {}", path, errno_str());
  std::vector<uint8_t> buf;
  Cursor c{nullptr, static_cast<size_t>(st.st_size), 0, path, 0};
  c.fetch = [&](size_t end) {
    const size_t want = std::min<size_t>(c.size, std::max<size_t>(end, std::max<size_t>(buf.size() * 2, 1 << 20)));
    const size_t have = buf.size();
    buf.resize(want);
    size_t got = have;
    while (got < want) {
      const ssize_t r = ::pread(fd, buf.data() + got, want - got, static_cast<off_t>(got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail("{}: cannot read: {}", path, r < 0 ? errno_str() : std::string("unexpected end of file"));
      got += static_cast<size_t>(r);
    }
    c.avail = want;
    return buf.data();
  };
  return read_kvs(c);
}

// split.no / split.count of one file: {0, 1} for a file that is not split.
struct SplitKeys {
  int64_t no = 0, count = 1;
  bool has_no = false;
};
SplitKeys split_keys(const Header& h, const std::string& path) {
  SplitKeys k;
  if (const GgufValue* v = h.find("split.count")) {
    if (!v->is_int() || v->i < 0 || v->i > 65535) fail("{}: key split.count must be an integer in [0, 65535]", path);
    k.count = std::max<int64_t>(1, v->i);
  }
  if (const GgufValue* v = h.find("split.no")) {
    if (!v->is_int() || v->i < 0) fail("{}: key split.no must be a non-negative integer", path);
    k.no = v->i;
    k.has_no = true;
  }
  if (k.count > 1) {
    if (!k.has_no) fail("{}: key split.count = {} but key split.no is missing", path, k.count);
    if (k.no >= k.count) fail("{}: key split.no = {} is not below split.count = {}", path, k.no, k.count);
  }
  return k;
}

// The PREFIX of PREFIX-%05d-of-%05d.gguf for split `no` of `count`, or "" when the name is not spelled so.
std::string split_prefix(const std::string& path, int64_t no, int64_t count) {
  const std::string tail = fmt::format("-{:05d}-of-{:05d}.gguf", no + 1, count);
  if (path.size() <= tail.size() || path.compare(path.size() - tail.size(), tail.size(), tail) != 0) return "";
  return path.substr(0, path.size() - tail.size());
}

// The first split of a split model whose split `k.no` is `path`: the file llama-gguf-split named with index 1.
std::string first_split_path(const std::string& path, const SplitKeys& k) {
  const std::string prefix = split_prefix(path, k.no, k.count);
  if (prefix.empty())
    fail(
        "{}: this is split {} of {} of a split model (key split.no) but its name does not end in -{:05d}-of-{:05d}"
        ".gguf: pass the first split (PREFIX-00001-of-{:05d}.gguf)",
        path, k.no + 1, k.count, k.no + 1, k.count, k.count);
  const std::string first = gguf_split_path(prefix, 0, static_cast<int>(k.count));
  if (!std::filesystem::is_regular_file(first))
    fail("{}: this is split {} of {} of a split model and its first split {} is missing: pass the first split", path,
         k.no + 1, k.count, first);
  return first;
}

// Every split's path, given the first split's path and its keys.
std::vector<std::string> all_split_paths(const std::string& first, const SplitKeys& k) {
  if (k.count <= 1) return {first};
  const std::string prefix = split_prefix(first, 0, k.count);
  if (prefix.empty())
    fail(
        "{}: key split.count = {} but the name does not end in -00001-of-{:05d}.gguf, so the other splits cannot be "
        "found (llama-gguf-split names them PREFIX-00001-of-{:05d}.gguf, PREFIX-00002-of-{:05d}.gguf, ...)",
        first, k.count, k.count, k.count, k.count);
  std::vector<std::string> paths;
  for (int64_t i = 0; i < k.count; ++i) {
    paths.push_back(gguf_split_path(prefix, static_cast<int>(i), static_cast<int>(k.count)));
    if (!std::filesystem::is_regular_file(paths.back()))
      fail("{}: split {} of {} is missing: no file {}", first, i + 1, k.count, paths.back());
  }
  return paths;
}
}  // namespace

namespace detail {
// One mapped, parsed file of a (possibly split) model.
struct GgufPart {
  std::string path;
  std::unique_ptr<GgufMapping> map;
  Header header;
  SplitKeys split;
};
}  // namespace detail

namespace {
detail::GgufPart open_part(const std::string& path) {
  detail::GgufPart p;
  p.path = path;
  p.map = std::make_unique<detail::GgufMapping>(path);
  Cursor c{p.map->data(), p.map->size(), 0, p.path};
  p.header = read_kvs(c);
  read_tensor_infos(c, p.header);
  const size_t size = c.size, start = p.header.data_start;
  for (GgufTensorInfo& t : p.header.tensors) {
    if (start > size || t.offset > size - start || t.nbytes > size - start - t.offset)
      fail("{}: tensor {} data [{}, {}) lies beyond the end of the file ({} bytes): truncated file", path, t.name,
           start + t.offset, start + t.offset + t.nbytes, size);
    t.file_offset = start + t.offset;
    t.data = p.map->data() + t.file_offset;
  }
  p.split = split_keys(p.header, path);
  return p;
}
}  // namespace

GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
  detail::GgufPart first = open_part(path);
  if (first.split.no != 0) {  // a later split was named: open the model from its first split
    const SplitKeys given = first.split;
    first = open_part(first_split_path(path, given));
    if (first.split.no != 0 || first.split.count != given.count)
      fail("{}: key split.no = {}, split.count = {}, but {} says it is split {} of {}", first.path, first.split.no,
           first.split.count, path, given.no + 1, given.count);
  }
  const SplitKeys keys = first.split;
  GgufFile g;
  g.path_ = first.path;
  g.version_ = first.header.version;
  g.alignment_ = first.header.alignment;
  g.kvs_ = std::move(first.header.kvs);
  g.kv_index_ = std::move(first.header.kv_index);
  g.split_paths_ = all_split_paths(g.path_, keys);

  auto add_tensors = [&g](detail::GgufPart& part, int split) {
    for (GgufTensorInfo& t : part.header.tensors) {
      if (auto it = g.tensor_index_.find(t.name); it != g.tensor_index_.end())
        fail("{}: tensor {} is in two splits: {} and {}", g.path_, t.name, g.split_paths_[g.tensors_[it->second].split],
             part.path);
      t.split = split;
      g.tensor_index_.emplace(t.name, g.tensors_.size());
      g.tensors_.push_back(std::move(t));
    }
    g.maps_.push_back(std::move(part.map));
  };
  add_tensors(first, 0);
  for (int64_t i = 1; i < keys.count; ++i) {
    detail::GgufPart part = open_part(g.split_paths_[static_cast<size_t>(i)]);
    if (!part.split.has_no) fail("{}: not a split of {}: key split.no is missing", part.path, g.path_);
    if (part.split.no != i)
      fail("{}: key split.no = {} but this is split {} of {} (split.no {} expected)", part.path, part.split.no, i + 1,
           keys.count, i);
    if (part.split.count != keys.count)
      fail("{}: key split.count = {} but the first split {} says {}", part.path, part.split.count, g.path_, keys.count);
    add_tensors(part, static_cast<int>(i));
  }
  if (const GgufValue* n = g.find("split.tensors.count")) {
    if (!n->is_int() || n->i != static_cast<int64_t>(g.tensors_.size()))
      fail("{}: key split.tensors.count = {} but the {} split(s) hold {} tensors", g.path_, n->is_int() ? n->i : -1,
           keys.count, g.tensors_.size());
  } else if (keys.count > 1) {
    fail("{}: missing key split.tensors.count (a split model must say how many tensors its splits hold)", g.path_);
  }
  return g;
}

size_t GgufFile::file_bytes() const {
  size_t total = 0;
  for (const auto& m : maps_) total += m->size();
  return total;
}

bool is_gguf_path(const std::string& path) { return std::filesystem::path(path).extension() == ".gguf"; }

std::vector<std::string> gguf_model_files(const std::string& path) {
  SplitKeys keys;
  try {
    keys = split_keys(read_metadata_only(path), path);
  } catch (const Error&) {
    return {path};  // not a readable GGUF file: opening it will say why
  }
  std::string first = path;
  if (keys.no != 0) {
    first = first_split_path(path, keys);
    keys = split_keys(read_metadata_only(first), first);
  }
  return all_split_paths(first, keys);
}

void gguf_validate_block_scales(const GgufFile& file, bool release_pages) {
  // Work in pieces of about 1 MiB so that a few huge expert tensors still spread over every thread.
  struct Piece {
    const GgufTensorInfo* t;
    int64_t row0, row1;
  };
  std::vector<Piece> pieces;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (!quant_is_block(t.type) || t.numel() == 0) continue;
    const int64_t n = t.ne[0], rows = t.numel() / n;
    const int64_t per = std::max<int64_t>(1, static_cast<int64_t>((size_t{1} << 20) / quant_row_bytes(t.type, n)));
    for (int64_t r = 0; r < rows; r += per) pieces.push_back({&t, r, std::min(rows, r + per)});
  }
  // The first bad row in file order is reported, whatever thread finds it.
  size_t bad_piece = pieces.size();
  int64_t bad_row = 0;
  const int64_t n_pieces = static_cast<int64_t>(pieces.size());
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < n_pieces; ++i) {
    size_t known;
#pragma omp atomic read
    known = bad_piece;
    if (static_cast<size_t>(i) > known) continue;
    const Piece& p = pieces[static_cast<size_t>(i)];
    const int64_t n = p.t->ne[0];
    const size_t row_bytes = quant_row_bytes(p.t->type, n);
    for (int64_t r = p.row0; r < p.row1; ++r) {
      if (quant_validate_row(p.t->type, p.t->data + static_cast<size_t>(r) * row_bytes, n)) continue;
#pragma omp critical(gguf_validate)
      if (static_cast<size_t>(i) < bad_piece) {
        bad_row = r;
#pragma omp atomic write
        bad_piece = static_cast<size_t>(i);
      }
      break;
    }
    if (release_pages)
      io::release_pages(p.t->data + static_cast<size_t>(p.row0) * row_bytes,
                        static_cast<size_t>(p.row1 - p.row0) * row_bytes);
  }
  if (bad_piece == pieces.size()) return;
  const GgufTensorInfo& t = *pieces[bad_piece].t;
  const size_t row_bytes = quant_row_bytes(t.type, t.ne[0]);
  std::string why;
  quant_validate_row(t.type, t.data + static_cast<size_t>(bad_row) * row_bytes, t.ne[0], &why);
  fail("{}: tensor {} ({}) row {} of {}: {} (corrupt file)", file.file_of(t), t.name, quant_type_name(t.type), bad_row,
       t.numel() / t.ne[0], why);
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
void GgufFile::read_f32(const GgufTensorInfo& t, float* dst) const { dequantize_row(t.type, t.data, dst, t.numel()); }
std::vector<float> GgufFile::read_f32(const std::string& name) const {
  const GgufTensorInfo& t = tensor(name);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  read_f32(t, v.data());
  return v;
}

}  // namespace dsmoe::io
