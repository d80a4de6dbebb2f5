// Token streams: a flat little-endian uint32 file (what numpy's tofile writes), memory-mapped, cut into windows.
// Window i covers tokens [i*N, i*N + N] (N+1 tokens, stride N, incomplete tail dropped); it predicts its last N.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsmoe {

class TokenFile {
 public:
  static TokenFile open(const std::string& path);
  TokenFile(TokenFile&&) noexcept;
  TokenFile& operator=(TokenFile&&) noexcept;
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;

  int64_t size() const { return n_tokens_; }
  const uint32_t* data() const { return tokens_; }
  const std::string& path() const { return path_; }
  int64_t n_windows(int64_t seq_len) const { return n_tokens_ > seq_len ? (n_tokens_ - 1) / seq_len : 0; }
  // Check every id is < vocab_size (one pass; clear error naming the first offender).
  void check_vocab(int64_t vocab_size) const;

 private:
  TokenFile() = default;
  std::string path_;
  const uint32_t* tokens_ = nullptr;
  int64_t n_tokens_ = 0;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
};

// Fill inputs/targets [B, S] from windows `window_ids` (B of them).
void load_windows(const TokenFile& file, int64_t seq_len, const std::vector<int64_t>& window_ids,
                  std::vector<int32_t>& inputs, std::vector<int32_t>& targets);

}  // namespace dsmoe
