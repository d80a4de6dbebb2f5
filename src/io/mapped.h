// Helpers for read-only file mappings (safetensors, GGUF).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace dsmoe::io {

// Drop the pages of [data, data + nbytes) from this process's resident set once they have been read (streaming
// conversions touch every byte of a file larger than the memory they may use). The file stays intact and the
// pages stay in the page cache; a later read maps them back in.
inline void release_pages(const void* data, size_t nbytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data) + nbytes;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace dsmoe::io
