#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (moved here in newer fmt)
#include <nlohmann/json.hpp>

#include "core/error.h"

// The format is little-endian and we copy bytes straight into host integers/floats.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace dsmoe::io {

namespace fs = std::filesystem;
// ordered_json keeps the header's key order, so tensors with equal offsets keep their header order.
using Json = nlohmann::ordered_json;

namespace {

// Same limit as the reference Rust implementation: a bigger header is corruption, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2}, {DType::F64, "F64", 8},
    {DType::I32, "I32", 4},   {DType::I64, "I64", 8}, {DType::U8, "U8", 1},     {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::U16, "U16", 2}, {DType::U32, "U32", 4},   {DType::U64, "U64", 8},
    {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& dtype_entry(DType t) {
  for (const auto& e : kDTypes)
    if (e.dtype == t) return e;
  fail("invalid DType value {}", static_cast<int>(t));
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.dtype;
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// numel of a shape, or nullopt on negative dims or int64 overflow.
std::optional<int64_t> checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  }
  return n;
}

// numel * dtype_size, or nullopt when it does not fit in size_t.
std::optional<size_t> checked_nbytes(int64_t numel, DType t) {
  size_t bytes;
  if (__builtin_mul_overflow(static_cast<size_t>(numel), dtype_size(t), &bytes)) return std::nullopt;
  return bytes;
}

std::string errno_str() { return std::strerror(errno); }

// A JSON integer as int64; floats, strings and values beyond int64 give nullopt.
std::optional<int64_t> json_int(const Json& j) {
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<int64_t>();
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// DType and scalar conversions

const char* dtype_name(DType t) { return dtype_entry(t).name; }
size_t dtype_size(DType t) { return dtype_entry(t).size; }

DType dtype_from_name(const std::string& name) {
  auto t = parse_dtype(name);
  if (!t) fail("unknown dtype '{}'", name);
  return *t;
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  // NaN must be handled first: rounding could carry a low-payload NaN into the exponent and make it inf.
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  // Round to nearest even on the 16 dropped bits; a carry into the exponent is the correct rounding (up to inf).
  const uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));  // inf / NaN (payload kept)
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 127 - 15) << 23) | (mant << 13));
  // Zero or subnormal: mant * 2^-24 is exact in float.
  const float magnitude = static_cast<float>(mant) * 0x1p-24f;
  return sign ? -magnitude : magnitude;
}

uint16_t f32_to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t x = bits & 0x7FFFFFFFu;
  if (x > 0x7F800000u) return sign | 0x7E00u | static_cast<uint16_t>((x >> 13) & 0x3FFu);  // quiet NaN
  // 65520 is the midpoint between 65504 (max half, odd mantissa) and 65536: ties-to-even goes to inf.
  if (x >= 0x477FF000u) return sign | 0x7C00u;
  if (x >= 0x38800000u) {  // >= 2^-14: a normal half. Rebias the exponent, then round away 13 mantissa bits.
    const uint32_t h = (x - ((127u - 15u) << 23)) >> 13;
    const uint32_t rest = x & 0x1FFFu;
    const bool up = rest > 0x1000u || (rest == 0x1000u && (h & 1u));
    return sign | static_cast<uint16_t>(h + up);  // a carry into the exponent is correct rounding
  }
  // Subnormal half: result = round(value / 2^-24) = round(m >> shift) with m the 24-bit significand.
  const uint32_t e = x >> 23;
  if (e < 102) return sign;  // value < 2^-25 (the smallest tie): rounds to zero
  const uint32_t m = (x & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;  // may become 0x400, the smallest normal: correct
  return sign | static_cast<uint16_t>(h);
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated on open: no negative dims, no overflow
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

namespace detail {

// A whole file mapped read-only. MAP_PRIVATE + PROT_READ: pages come from the page cache on demand, nothing is
// copied, and the process can never write through to the file.
class MappedFile {
 public:
  explicit MappedFile(std::string path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open: {}", path_, errno_str());
    try {
      map(fd);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);  // the mapping keeps its own reference to the file
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void map(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("{}: cannot stat: {}", path_, errno_str());
    check(S_ISREG(st.st_mode), "{}: not a regular file", path_);
    size_ = static_cast<size_t>(st.st_size);
    check(size_ >= 8, "{}: file is {} bytes, shorter than the 8-byte header length", path_, size_);
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) fail("{}: cannot mmap {} bytes: {}", path_, size_, errno_str());
    data_ = static_cast<const uint8_t*>(p);
  }

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace detail

namespace {

// One header entry, with where it sits in the data section and in the header (to order tensors).
struct Entry {
  TensorInfo info;
  uint64_t begin, end;
  size_t header_pos;
};

// The JSON header of a mapped file; the data section is everything after it.
struct Header {
  Json json;
  const uint8_t* data;
  uint64_t data_size;
};

Header parse_header(const detail::MappedFile& f) {
  uint64_t n;
  std::memcpy(&n, f.data(), 8);
  const uint64_t available = f.size() - 8;
  check(n != 0, "{}: header length is 0", f.path());
  check(n <= kMaxHeaderBytes, "{}: header length {} exceeds the {}-byte limit (corrupt file?)", f.path(), n,
        kMaxHeaderBytes);
  check(n <= available, "{}: header length {} goes beyond the end of the file ({} bytes after the length)", f.path(), n,
        available);
  const char* text = reinterpret_cast<const char*>(f.data() + 8);
  Header h{Json(), f.data() + 8 + n, available - n};
  try {
    h.json = Json::parse(text, text + n);
  } catch (const Json::exception& e) {
    fail("{}: header is not valid JSON: {}", f.path(), e.what());
  }
  check(h.json.is_object(), "{}: header must be a JSON object, got {}", f.path(), h.json.type_name());
  return h;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const Json& j) {
  check(j.is_object(), "{}: __metadata__ must be an object of strings, got {}", file, j.type_name());
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.items()) {
    check(v.is_string(), "{}: __metadata__ field '{}' must be a string, got {}", file, k, v.type_name());
    out[k] = v.get<std::string>();
  }
  return out;
}

std::vector<int64_t> parse_shape(const std::string& file, const std::string& name, const Json& j) {
  check(j.is_array(), "{}: tensor {}: shape must be an array of integers, got {}", file, name, j.dump());
  std::vector<int64_t> shape;
  for (const auto& d : j) {
    auto v = json_int(d);
    check(v.has_value(), "{}: tensor {}: shape must be an array of integers, got {}", file, name, j.dump());
    check(*v >= 0, "{}: tensor {}: negative dimension in shape {}", file, name, j.dump());
    shape.push_back(*v);
  }
  return shape;
}

Entry parse_entry(const std::string& file, const std::string& name, const Json& j, const Header& h, size_t pos) {
  check(j.is_object(), "{}: tensor {}: entry must be an object, got {}", file, name, j.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    check(j.contains(field), "{}: tensor {}: missing field '{}'", file, name, field);

  const Json& jd = j["dtype"];
  check(jd.is_string(), "{}: tensor {}: dtype must be a string, got {}", file, name, jd.dump());
  const auto dtype = parse_dtype(jd.get<std::string>());
  check(dtype.has_value(), "{}: tensor {}: unknown dtype '{}'", file, name, jd.get<std::string>());

  std::vector<int64_t> shape = parse_shape(file, name, j["shape"]);
  const auto numel = checked_numel(shape);
  const auto need = numel ? checked_nbytes(*numel, *dtype) : std::nullopt;
  check(need.has_value(), "{}: tensor {}: shape {} is too large", file, name, shape_str(shape));

  const Json& jo = j["data_offsets"];
  std::optional<int64_t> b, e;
  if (jo.is_array() && jo.size() == 2) {
    b = json_int(jo[0]);
    e = json_int(jo[1]);
  }
  check(b && e && *b >= 0 && *b <= *e,
        "{}: tensor {}: data_offsets must be [begin, end] with 0 <= begin <= end, got {}", file, name, jo.dump());
  const uint64_t begin = static_cast<uint64_t>(*b), end = static_cast<uint64_t>(*e);
  check(end - begin == *need, "{}: tensor {}: shape {} {} needs {} bytes but data_offsets span {}", file, name,
        shape_str(shape), jd.get<std::string>(), *need, end - begin);
  check(end <= h.data_size, "{}: truncated file: tensor {} ends at byte {} but the data section has {} bytes", file,
        name, end, h.data_size);

  return Entry{TensorInfo{name, *dtype, std::move(shape), h.data + begin, *need, file}, begin, end, pos};
}

// Sort by data offset and reject tensors sharing bytes. Empty tensors own no bytes, so they never overlap.
void order_and_check_overlap(const std::string& file, std::vector<Entry>& entries) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.header_pos < b.header_pos;
  });
  const Entry* prev = nullptr;  // the non-empty tensor reaching furthest so far
  for (const Entry& e : entries) {
    if (e.begin == e.end) continue;
    if (prev && e.begin < prev->end)
      fail("{}: tensors {} and {} overlap (bytes [{}, {}) and [{}, {}) of the data section)", file, prev->info.name,
           e.info.name, prev->begin, prev->end, e.begin, e.end);
    if (!prev || e.end > prev->end) prev = &e;
  }
}

// weight_map of a sharded checkpoint index: tensor name -> shard file name, in index order.
std::vector<std::pair<std::string, std::string>> read_weight_map(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  check(in.good(), "{}: cannot open: {}", index_path, errno_str());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check(!in.bad(), "{}: read failed: {}", index_path, errno_str());
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    fail("{}: not valid JSON: {}", index_path, e.what());
  }
  check(j.is_object() && j.contains("weight_map"), "{}: index must be a JSON object with a \"weight_map\" field",
        index_path);
  const Json& wm = j["weight_map"];
  check(wm.is_object(), "{}: weight_map must be an object, got {}", index_path, wm.type_name());
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, shard] : wm.items()) {
    check(shard.is_string(), "{}: weight_map entry for tensor {} must be a file name string, got {}", index_path, name,
          shard.dump());
    out.emplace_back(name, shard.get<std::string>());
  }
  check(!out.empty(), "{}: weight_map is empty", index_path);
  return out;
}

}  // namespace

SafetensorsArchive::SafetensorsArchive(SafetensorsArchive&&) noexcept = default;
SafetensorsArchive& SafetensorsArchive::operator=(SafetensorsArchive&&) noexcept = default;
SafetensorsArchive::~SafetensorsArchive() = default;

SafetensorsArchive SafetensorsArchive::open(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  check(fs::exists(st), "{}: no such file or directory", path);
  SafetensorsArchive a;
  a.path_ = path;
  if (!fs::is_directory(st)) {
    a.add_file(path);
    return a;
  }
  const fs::path single = fs::path(path) / kSingleFile, index = fs::path(path) / kIndexFile;
  if (fs::exists(single, ec)) {
    a.add_file(single.string());
  } else if (fs::exists(index, ec)) {
    a.add_shards(index.string());
  } else {
    fail("{}: directory holds neither {} nor {}", path, kSingleFile, kIndexFile);
  }
  return a;
}

void SafetensorsArchive::add_file(const std::string& file) {
  auto mapped = std::make_unique<detail::MappedFile>(file);
  const Header h = parse_header(*mapped);
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  for (const auto& [name, value] : h.json.items()) {
    if (name == "__metadata__")
      metadata = parse_metadata(file, value);
    else
      entries.push_back(parse_entry(file, name, value, h, entries.size()));
  }
  order_and_check_overlap(file, entries);

  for (const Entry& e : entries) {
    if (const TensorInfo* other = find(e.info.name))
      fail("{}: tensor {} is also in {} (duplicate across shards)", file, e.info.name, other->file);
  }
  if (files_.empty()) metadata_ = std::move(metadata);
  for (Entry& e : entries) {
    by_name_[e.info.name] = tensors_.size();
    tensors_.push_back(std::move(e.info));
  }
  files_.push_back(std::move(mapped));
}

void SafetensorsArchive::add_shards(const std::string& index_path) {
  const auto weight_map = read_weight_map(index_path);
  const fs::path dir = fs::path(index_path).parent_path();
  std::set<std::string> shards;  // file-name order: model-00001-of-N first
  for (const auto& [name, shard] : weight_map) shards.insert(shard);
  for (const std::string& shard : shards) {
    const std::string file = (dir / shard).string();
    check(fs::is_regular_file(file), "{}: shard {} does not exist", index_path, file);
  }
  for (const std::string& shard : shards) add_file((dir / shard).string());

  std::unordered_map<std::string, std::string> expected;  // tensor -> shard path
  for (const auto& [name, shard] : weight_map) {
    const std::string file = (dir / shard).string();
    const TensorInfo* t = find(name);
    check(t && t->file == file, "{}: tensor {} is mapped to {} but that shard does not hold it", index_path, name,
          file);
    expected[name] = file;
  }
  for (const TensorInfo& t : tensors_)
    check(expected.count(t.name) != 0, "{}: tensor {} is in shard {} but not in the weight_map", index_path, t.name,
          t.file);
}

const TensorInfo* SafetensorsArchive::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsArchive::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail("missing tensor {} in {}", name, path_);
  return *t;
}

namespace {

// Convert n 16-bit values (possibly unaligned) with `to_f32`.
template <typename Convert>
void convert_u16(const uint8_t* src, size_t n, float* dst, Convert to_f32) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, src + 2 * i, 2);
    dst[i] = to_f32(v);
  }
}

}  // namespace

void SafetensorsArchive::read_f32(const TensorInfo& t, float* dst) const {
  const size_t n = static_cast<size_t>(t.numel());
  switch (t.dtype) {
    case DType::F32:
      if (n > 0) std::memcpy(dst, t.data, n * sizeof(float));  // dst may be null for an empty tensor
      return;
    case DType::F16: convert_u16(t.data, n, dst, f16_to_f32); return;
    case DType::BF16: convert_u16(t.data, n, dst, bf16_to_f32); return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, t.data + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    default:
      fail("{}: tensor {} has dtype {}, expected a float dtype (F32, F16, BF16 or F64)", t.file, t.name,
           dtype_name(t.dtype));
  }
}

std::vector<float> SafetensorsArchive::read_f32(const std::string& name) const {
  const TensorInfo& t = get(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  read_f32(t, out.data());
  return out;
}

std::vector<int32_t> SafetensorsArchive::read_i32(const std::string& name) const {
  const TensorInfo& t = get(name);
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<int32_t> out(n);
  if (t.dtype == DType::I32) {
    if (n > 0) std::memcpy(out.data(), t.data, n * sizeof(int32_t));
    return out;
  }
  check(t.dtype == DType::I64, "{}: tensor {} has dtype {}, expected I32 or I64", t.file, t.name, dtype_name(t.dtype));
  for (size_t i = 0; i < n; ++i) {
    int64_t v;
    std::memcpy(&v, t.data + 8 * i, 8);
    check(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(),
          "{}: tensor {}: element {} = {} does not fit in int32", t.file, t.name, i, v);
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

namespace {

// Writes PATH.tmp and renames it onto PATH on commit(); if destroyed before commit (an error was thrown), the
// temporary is removed, so PATH is either the old file or the complete new one.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot create {}: {}", path_, tmp_, errno_str());
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {  // write() may write less than asked (signals, large sizes); loop until done
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, 1u << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("{}: write failed: {}", path_, w < 0 ? errno_str() : "no progress");
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  void commit() {
    // fsync before rename: otherwise a crash could leave PATH pointing at a file whose data never hit the disk.
    if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, errno_str());
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) fail("{}: close failed: {}", path_, errno_str());
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("{}: cannot rename {} onto it: {}", path_, tmp_, errno_str());
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// One tensor as it will be written: float data converted to `dtype`, or I32 data as is.
struct OutTensor {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype;
  const float* f32 = nullptr;
  const int32_t* i32 = nullptr;
  size_t numel = 0, nbytes = 0;
};

void check_out_dtype(const std::string& path, DType dtype) {
  check(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
        "{}: cannot write float tensors as {}; use F32, F16 or BF16", path, dtype_name(dtype));
}

OutTensor make_out(const std::string& path, const std::string& name, const std::vector<int64_t>& shape, DType dtype,
                   const void* data) {
  check(!name.empty() && name != "__metadata__", "{}: invalid tensor name '{}'", path, name);
  const auto numel = checked_numel(shape);
  const auto nbytes = numel ? checked_nbytes(*numel, dtype) : std::nullopt;
  check(nbytes.has_value(), "{}: tensor {}: invalid shape {}", path, name, shape_str(shape));
  check(data != nullptr || *numel == 0, "{}: tensor {}: data is null", path, name);
  return OutTensor{name, shape, dtype, nullptr, nullptr, static_cast<size_t>(*numel), *nbytes};
}

std::vector<OutTensor> collect(const std::string& path, const std::vector<TensorToWrite>& f32s, DType dtype,
                               const std::vector<IntTensorToWrite>& i32s) {
  check_out_dtype(path, dtype);
  std::vector<OutTensor> out;
  std::set<std::string> names;
  auto add = [&](OutTensor t) {
    check(names.insert(t.name).second, "{}: duplicate tensor name {}", path, t.name);
    out.push_back(std::move(t));
  };
  for (const auto& t : f32s) {
    OutTensor o = make_out(path, t.name, t.shape, dtype, t.data);
    o.f32 = t.data;
    add(std::move(o));
  }
  for (const auto& t : i32s) {
    OutTensor o = make_out(path, t.name, t.shape, DType::I32, t.data);
    o.i32 = t.data;
    add(std::move(o));
  }
  return out;
}

// The header JSON, padded with spaces so the data section starts 8-byte aligned (as the reference writer does).
std::string build_header(const std::string& path, const std::vector<OutTensor>& tensors,
                         const std::map<std::string, std::string>& extra_metadata) {
  Json meta = Json::object();
  meta["format"] = "pt";  // HF transformers refuses safetensors files without it
  for (const auto& [k, v] : extra_metadata) meta[k] = v;
  Json h = Json::object();
  h["__metadata__"] = std::move(meta);
  uint64_t offset = 0;
  for (const OutTensor& t : tensors) {
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const Json::exception& e) {  // invalid UTF-8 in a name or metadata
    fail("{}: cannot encode header: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void write_data(AtomicFile& out, const OutTensor& t) {
  if (t.i32) return out.write(t.i32, t.nbytes);
  if (t.dtype == DType::F32) return out.write(t.f32, t.nbytes);
  // Convert in chunks: bounded memory however big the tensor is.
  const auto convert = t.dtype == DType::F16 ? f32_to_f16 : f32_to_bf16;
  constexpr size_t kChunk = 1 << 16;
  std::vector<uint16_t> buf(std::min(kChunk, t.numel));
  for (size_t i = 0; i < t.numel; i += kChunk) {
    const size_t n = std::min(kChunk, t.numel - i);
    for (size_t j = 0; j < n; ++j) buf[j] = convert(t.f32[i + j]);
    out.write(buf.data(), n * sizeof(uint16_t));
  }
}

void write_file(const std::string& path, const std::vector<OutTensor>& tensors,
                const std::map<std::string, std::string>& metadata) {
  const std::string header = build_header(path, tensors, metadata);
  AtomicFile out(path);
  const uint64_t n = header.size();
  out.write(&n, 8);
  out.write(header.data(), header.size());
  for (const OutTensor& t : tensors) write_data(out, t);
  out.commit();
}

void write_text_file(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

// Greedy packing in the given order (keeps related tensors together, like HF): start a new shard when the next
// tensor would push the current one past max_bytes. A tensor bigger than max_bytes gets a shard of its own.
std::vector<std::vector<const OutTensor*>> plan_shards(const std::vector<OutTensor>& tensors, size_t max_bytes) {
  std::vector<std::vector<const OutTensor*>> shards(1);
  size_t used = 0;
  for (const OutTensor& t : tensors) {
    if (!shards.back().empty() && used + t.nbytes > max_bytes) {
      shards.emplace_back();
      used = 0;
    }
    shards.back().push_back(&t);
    used += t.nbytes;
  }
  return shards;
}

// "model-00001-of-00004.safetensors": the shard names write_safetensors_dir (and HF) produce.
bool is_shard_name(const std::string& name) {
  const std::string pattern = "model-#####-of-#####.safetensors";  // # = a digit
  if (name.size() != pattern.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const bool ok = pattern[i] == '#' ? (name[i] >= '0' && name[i] <= '9') : name[i] == pattern[i];
    if (!ok) return false;
  }
  return true;
}

// Remove what an earlier write of the other layout left in dir, so open(dir) cannot pick up stale weights.
void remove_stale(const fs::path& dir, const std::set<std::string>& keep) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool ours = name == kSingleFile || name == kIndexFile || is_shard_name(name);
    if (!ours || keep.count(name)) continue;
    if (!fs::remove(entry.path(), ec) && ec) fail("{}: cannot remove stale {}: {}", dir.string(), name, ec.message());
  }
  if (ec) fail("{}: cannot list directory: {}", dir.string(), ec.message());
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors, DType dtype,
                       const std::map<std::string, std::string>& extra_metadata) {
  write_file(path, collect(path, tensors, dtype, {}), extra_metadata);
}

void write_safetensors_mixed(const std::string& path, const std::vector<TensorToWrite>& f32s, DType dtype,
                             const std::vector<IntTensorToWrite>& i32s) {
  write_file(path, collect(path, f32s, dtype, i32s), {});
}

void write_safetensors_dir(const std::string& dir, const std::vector<TensorToWrite>& tensors, DType dtype,
                           size_t max_shard_bytes) {
  const std::vector<OutTensor> all = collect(dir, tensors, dtype, {});
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec, "{}: cannot create directory: {}", dir, ec.message());
  const fs::path d(dir);

  const auto shards = plan_shards(all, max_shard_bytes);
  if (shards.size() == 1) {
    write_file((d / kSingleFile).string(), all, {});
    remove_stale(d, {kSingleFile});
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();  // std::map based: sorted by tensor name, as HF writes it
  std::set<std::string> written;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    std::vector<OutTensor> part;
    for (const OutTensor* t : shards[i]) {
      part.push_back(*t);
      weight_map[t->name] = name;
    }
    write_file((d / name).string(), part, {});
    written.insert(name);
  }
  size_t total = 0;
  for (const OutTensor& t : all) total += t.nbytes;
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_text_file((d / kIndexFile).string(), index.dump(2) + "\n");
  written.insert(kIndexFile);
  remove_stale(d, written);
}

}  // namespace dsmoe::io
