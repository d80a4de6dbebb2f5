#include "text/corpus.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/progress.h"

namespace dsmoe::text {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxDocumentBytes = 64ull << 20;  // a blank-line-free stream is cut here to bound memory
constexpr size_t kBatchBytes = 8ull << 20;         // documents tokenized together (in parallel)

bool is_blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

void read_plain(const std::string& path, const std::function<void(std::string&&)>& fn) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open {}", path);
  std::string line, doc;
  bool has_doc = false;
  auto flush = [&]() {
    if (has_doc) fn(std::move(doc));
    doc.clear();
    has_doc = false;
  };
  while (std::getline(in, line)) {
    if (is_blank(line)) {
      flush();
      continue;
    }
    if (has_doc) doc += '\n';
    doc += line;
    has_doc = true;
    if (doc.size() > kMaxDocumentBytes) flush();
  }
  check(!in.bad(), "read error in {}", path);
  flush();
}

void read_jsonl(const std::string& path, const std::function<void(std::string&&)>& fn) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), "cannot open {}", path);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (is_blank(line)) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: invalid JSON: {}", path, line_no, e.what());
    }
    check(j.is_object() && j.contains("text") && j["text"].is_string(),
          "{}:{}: expected an object with a string field \"text\"", path, line_no);
    fn(j["text"].get<std::string>());
  }
  check(!in.bad(), "read error in {}", path);
}

// Buffered uint32 writer into PATH.tmp, renamed to PATH on commit (no half-written token file survives an error).
class TokenWriter {
 public:
  explicit TokenWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    file_ = std::fopen(tmp_.c_str(), "wb");
    check(file_ != nullptr, "cannot write {}", tmp_);
  }
  ~TokenWriter() {
    if (file_ != nullptr) {
      std::fclose(file_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const std::vector<int32_t>& ids) {
    buffer_.clear();
    for (int32_t id : ids) buffer_.push_back(static_cast<uint32_t>(id));  // little-endian hosts only (x86, arm)
    check(std::fwrite(buffer_.data(), 4, buffer_.size(), file_) == buffer_.size(), "write failed for {} (disk full?)",
          tmp_);
    count_ += static_cast<int64_t>(ids.size());
  }
  void commit() {
    const bool ok = std::fflush(file_) == 0 && std::fclose(file_) == 0;
    file_ = nullptr;
    check(ok, "write failed for {} (disk full?)", tmp_);
    std::error_code ec;
    fs::rename(tmp_, path_, ec);
    check(!ec, "cannot rename {} to {}: {}", tmp_, path_, ec.message());
  }
  int64_t count() const { return count_; }

 private:
  std::string path_, tmp_;
  FILE* file_ = nullptr;
  std::vector<uint32_t> buffer_;
  int64_t count_ = 0;
};

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& input : inputs) {
    check(fs::exists(input), "input {} does not exist", input);
    if (!fs::is_directory(input)) {
      files.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::recursive_directory_iterator(input))
      if (entry.is_regular_file()) found.push_back(entry.path().string());
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  check(!files.empty(), "no input files");
  return files;
}

bool is_jsonl_path(const std::string& path) { return fs::path(path).extension() == ".jsonl"; }

void for_each_document(const std::vector<std::string>& inputs, const std::function<void(std::string&&)>& fn) {
  for (const std::string& file : expand_inputs(inputs)) {
    if (is_jsonl_path(file))
      read_jsonl(file, fn);
    else
      read_plain(file, fn);
  }
}

PrepareStats prepare_corpus(const Tokenizer& tokenizer, const PrepareOptions& o) {
  check(o.val_fraction >= 0 && o.val_fraction < 1, "--val-fraction must be in [0, 1), got {}", o.val_fraction);
  check(!o.out_prefix.empty(), "--out is empty");
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> files = expand_inputs(o.inputs);
  int64_t total_bytes = 0;
  for (const std::string& f : files) total_bytes += static_cast<int64_t>(fs::file_size(f));
  const fs::path parent = fs::path(o.out_prefix).parent_path();
  if (!parent.empty()) fs::create_directories(parent);

  TokenWriter train(o.out_prefix + ".train.bin"), val(o.out_prefix + ".val.bin");
  PrepareStats stats;
  Progress progress("tokenizing", total_bytes, stderr);
  std::vector<std::string> batch;
  size_t batch_bytes = 0;
  int64_t read_bytes = 0;

  auto tokenize_batch = [&]() {
    std::vector<std::vector<int32_t>> ids(batch.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < batch.size(); ++i) {
      ids[i] = tokenizer.encode(batch[i], /*add_special=*/false);
      if (tokenizer.add_bos() && tokenizer.bos_id() >= 0) ids[i].insert(ids[i].begin(), tokenizer.bos_id());
      if (tokenizer.eos_id() >= 0) ids[i].push_back(tokenizer.eos_id());
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      // Document n goes to validation when floor((n+1) f) > floor(n f): exactly a fraction f, evenly spaced.
      const int64_t n = stats.documents++;
      const bool is_val = o.val_fraction > 0 &&
                          static_cast<int64_t>((n + 1) * o.val_fraction) > static_cast<int64_t>(n * o.val_fraction);
      (is_val ? val : train).write(ids[i]);
      (is_val ? stats.val_documents : stats.train_documents)++;
      stats.bytes += static_cast<int64_t>(batch[i].size());
    }
    if (o.progress) progress.update(read_bytes, fmt::format("{} docs", stats.documents));
    batch.clear();
    batch_bytes = 0;
  };

  for_each_document(o.inputs, [&](std::string&& doc) {
    read_bytes += static_cast<int64_t>(doc.size()) + 1;
    batch_bytes += doc.size();
    batch.push_back(std::move(doc));
    if (batch_bytes >= kBatchBytes) tokenize_batch();
  });
  tokenize_batch();
  check(stats.documents > 0, "no documents found in the inputs");
  train.commit();
  val.commit();
  stats.train_tokens = train.count();
  stats.val_tokens = val.count();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (o.progress) progress.finish(fmt::format("{} docs", stats.documents));

  nlohmann::json sidecar = {
      {"tokenizer_fingerprint", tokenizer.fingerprint()},
      {"vocab_size", tokenizer.vocab_size()},
      {"bos_id", tokenizer.bos_id()},
      {"eos_id", tokenizer.eos_id()},
      {"add_bos", tokenizer.add_bos()},
      {"documents", stats.documents},
      {"train",
       {{"file", fs::path(o.out_prefix + ".train.bin").filename().string()},
        {"documents", stats.train_documents},
        {"tokens", stats.train_tokens}}},
      {"val",
       {{"file", fs::path(o.out_prefix + ".val.bin").filename().string()},
        {"documents", stats.val_documents},
        {"tokens", stats.val_tokens}}},
      {"val_fraction", o.val_fraction},
      {"bytes", stats.bytes},
      {"sources", files},
      {"format", "flat little-endian uint32"},
  };
  const std::string sidecar_path = o.out_prefix + ".json";
  std::ofstream out(sidecar_path);
  out << sidecar.dump(2) << "\n";
  out.flush();
  check(out.good(), "write failed for {} (disk full?)", sidecar_path);
  return stats;
}

}  // namespace dsmoe::text
