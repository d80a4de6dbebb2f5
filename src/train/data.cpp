#include "train/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "core/error.h"

namespace dsmoe {

TokenFile TokenFile::open(const std::string& path) {
  TokenFile f;
  f.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  check(fd >= 0, "cannot open token file {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat token file {}", path);
  }
  if (st.st_size % 4 != 0) {
    ::close(fd);
    fail("token file {} has {} bytes, not a multiple of 4 (expected flat little-endian uint32)", path, st.st_size);
  }
  f.n_tokens_ = st.st_size / 4;
  if (st.st_size > 0) {
    void* p = mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail("cannot mmap token file {}", path);
    }
    f.map_ = p;
    f.map_bytes_ = st.st_size;
    f.tokens_ = static_cast<const uint32_t*>(p);
  }
  ::close(fd);
  return f;
}

TokenFile::TokenFile(TokenFile&& o) noexcept { *this = std::move(o); }

TokenFile& TokenFile::operator=(TokenFile&& o) noexcept {
  std::swap(path_, o.path_);
  std::swap(tokens_, o.tokens_);
  std::swap(n_tokens_, o.n_tokens_);
  std::swap(map_, o.map_);
  std::swap(map_bytes_, o.map_bytes_);
  return *this;
}

TokenFile::~TokenFile() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

void TokenFile::check_vocab(int64_t vocab_size) const {
  for (int64_t i = 0; i < n_tokens_; ++i)
    check(tokens_[i] < vocab_size, "{}: token {} at index {} is >= vocab_size {}", path_, tokens_[i], i, vocab_size);
}

void load_windows(const TokenFile& file, int64_t seq_len, const std::vector<int64_t>& window_ids,
                  std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  const int64_t B = static_cast<int64_t>(window_ids.size());
  inputs.resize(B * seq_len);
  targets.resize(B * seq_len);
  for (int64_t b = 0; b < B; ++b) {
    const uint32_t* w = file.data() + window_ids[b] * seq_len;
    for (int64_t s = 0; s < seq_len; ++s) {
      inputs[b * seq_len + s] = static_cast<int32_t>(w[s]);
      targets[b * seq_len + s] = static_cast<int32_t>(w[s + 1]);
    }
  }
}

}  // namespace dsmoe
