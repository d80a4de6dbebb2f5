// Log-probability files: what `dsmoe perplexity --save-logits` writes and `--kld-base` reads back, so a quantized
// model can be compared token by token with its source (mean KL divergence, same top token), as llama.cpp's
// `llama-perplexity --kl-divergence-base` does.
//
// Format (little-endian): "DSLP" magic (u32 0x504C5344), u32 version 1, i64 tokens, i64 vocab, then float32
// log-softmax rows [tokens, vocab] in evaluation order.
#pragma once
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace dsmoe {

inline constexpr uint32_t kLogprobMagic = 0x504C5344u;  // "DSLP"
inline constexpr uint32_t kLogprobVersion = 1;

// Writes to PATH.tmp and renames on finish(), so an interrupted run never leaves a short file under the final name.
class LogprobWriter {
 public:
  LogprobWriter(const std::string& path, int64_t tokens, int64_t vocab);
  ~LogprobWriter();  // without finish(): the temporary file is removed
  LogprobWriter(const LogprobWriter&) = delete;
  LogprobWriter& operator=(const LogprobWriter&) = delete;
  void write_row(const float* logp);  // vocab floats
  void finish();                      // every row written: flush, close, rename into place

 private:
  std::string path_, tmp_;
  int64_t tokens_, vocab_, rows_ = 0;
  FILE* file_ = nullptr;
};

class LogprobReader {
 public:
  explicit LogprobReader(const std::string& path);
  int64_t tokens() const { return tokens_; }
  int64_t vocab() const { return vocab_; }
  void read_row(float* logp);  // vocab floats; a short file is an error naming it

 private:
  std::string path_;
  std::ifstream in_;
  int64_t tokens_ = 0, vocab_ = 0, rows_ = 0;
};

// KL(base || model) summed over rows of log-probabilities, and how often both put the same token on top.
struct KlDivergence {
  double sum = 0;
  int64_t same_top = 0, rows = 0;
  void add_row(const float* base_logp, const float* model_logp, int64_t vocab);
  // Mean KL per row; KL is >= 0, but between two nearly identical models the f32 log-probs can make the sum a hair
  // negative, which is reported as 0.
  double mean() const;
  double same_top_percent() const { return rows > 0 ? 100.0 * same_top / rows : 0.0; }
};

}  // namespace dsmoe
