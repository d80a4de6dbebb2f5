// GGUF v3 format constants and value-type facts shared by the reader (gguf.cpp) and the writer (gguf_write.cpp).
// Private to src/io.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "io/gguf.h"

namespace dsmoe::io::gguf_format {

inline constexpr uint32_t kMagic = 0x46554747u;  // "GGUF" little-endian
inline constexpr size_t kMaxDims = 4;            // GGML_MAX_DIMS
inline constexpr uint64_t kMaxStringBytes = 1ull << 30;

inline std::string errno_str() { return std::strerror(errno); }

// Bytes of one scalar of type t; 0 for strings and arrays.
inline size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8:
    case GgufType::INT8:
    case GgufType::BOOL: return 1;
    case GgufType::UINT16:
    case GgufType::INT16: return 2;
    case GgufType::UINT32:
    case GgufType::INT32:
    case GgufType::FLOAT32: return 4;
    case GgufType::UINT64:
    case GgufType::INT64:
    case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}
inline bool is_int_type(GgufType t) {
  return t == GgufType::UINT8 || t == GgufType::INT8 || t == GgufType::UINT16 || t == GgufType::INT16 ||
         t == GgufType::UINT32 || t == GgufType::INT32 || t == GgufType::UINT64 || t == GgufType::INT64 ||
         t == GgufType::BOOL;
}
inline bool is_float_type(GgufType t) { return t == GgufType::FLOAT32 || t == GgufType::FLOAT64; }

}  // namespace dsmoe::io::gguf_format
