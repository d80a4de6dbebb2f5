#include "infer/logprob_file.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "core/error.h"

namespace dsmoe {

LogprobWriter::LogprobWriter(const std::string& path, int64_t tokens, int64_t vocab)
    : path_(path), tmp_(path + ".tmp"), tokens_(tokens), vocab_(vocab) {
  check(tokens > 0 && vocab > 0, "{}: a log-probability file needs tokens > 0 and vocab > 0", path);
  file_ = std::fopen(tmp_.c_str(), "wb");
  check(file_ != nullptr, "cannot write {}", tmp_);
  const uint32_t header[2] = {kLogprobMagic, kLogprobVersion};
  const bool ok = std::fwrite(header, 4, 2, file_) == 2 && std::fwrite(&tokens_, 8, 1, file_) == 1 &&
                  std::fwrite(&vocab_, 8, 1, file_) == 1;
  check(ok, "write failed for {}", tmp_);
}

LogprobWriter::~LogprobWriter() {
  if (file_ == nullptr) return;
  std::fclose(file_);
  std::error_code ignored;
  std::filesystem::remove(tmp_, ignored);
}

void LogprobWriter::write_row(const float* logp) {
  check(file_ != nullptr && rows_ < tokens_, "{}: more than the {} rows declared", path_, tokens_);
  check(std::fwrite(logp, 4, static_cast<size_t>(vocab_), file_) == static_cast<size_t>(vocab_),
        "write failed for {} (disk full?)", tmp_);
  ++rows_;
}

void LogprobWriter::finish() {
  check(file_ != nullptr, "{}: already finished", path_);
  check(rows_ == tokens_, "{}: {} rows written of the {} declared", path_, rows_, tokens_);
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  std::error_code ec;
  if (!closed) std::filesystem::remove(tmp_, ec);
  check(closed, "write failed for {} (disk full?)", tmp_);
  std::filesystem::rename(tmp_, path_, ec);
  check(!ec, "cannot rename {} to {}: {}", tmp_, path_, ec.message());
}

LogprobReader::LogprobReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  check(in_.good(), "cannot open {}", path);
  uint32_t header[2] = {0, 0};
  in_.read(reinterpret_cast<char*>(header), 8);
  in_.read(reinterpret_cast<char*>(&tokens_), 8);
  in_.read(reinterpret_cast<char*>(&vocab_), 8);
  check(in_.good() && header[0] == kLogprobMagic, "{}: not a dsmoe log-probability file", path);
  check(header[1] == kLogprobVersion, "{}: log-probability file version {}, this dsmoe reads version {}", path,
        header[1], kLogprobVersion);
  check(tokens_ > 0 && vocab_ > 0, "{}: header holds {} tokens x {} vocab", path, tokens_, vocab_);
  // The header must agree with the file's size before any row is trusted (a damaged header could claim anything).
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  check(!ec, "cannot read the size of {}", path);
  const auto need = static_cast<long double>(tokens_) * static_cast<long double>(vocab_) * 4 + 24;
  check(static_cast<long double>(size) == need, "{}: {} bytes, but its header's {} tokens x {} vocab need {}", path,
        static_cast<uint64_t>(size), tokens_, vocab_, static_cast<double>(need));
}

void LogprobReader::read_row(float* logp) {
  check(rows_ < tokens_, "{}: holds only {} rows", path_, tokens_);
  in_.read(reinterpret_cast<char*>(logp), vocab_ * 4);
  check(in_.good(), "{}: truncated", path_);
  ++rows_;
}

void KlDivergence::add_row(const float* base_logp, const float* model_logp, int64_t vocab) {
  double k = 0;
  for (int64_t v = 0; v < vocab; ++v) k += std::exp(static_cast<double>(base_logp[v])) * (base_logp[v] - model_logp[v]);
  sum += k;
  same_top += std::max_element(base_logp, base_logp + vocab) - base_logp ==
              std::max_element(model_logp, model_logp + vocab) - model_logp;
  ++rows;
}

double KlDivergence::mean() const { return rows > 0 ? std::max(0.0, sum / rows) : 0.0; }

}  // namespace dsmoe
