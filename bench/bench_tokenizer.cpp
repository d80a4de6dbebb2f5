// bench_tokenizer DIR FILE [--threads N]
// Load time of the tokenizer in DIR, then encode throughput of FILE (split into documents at blank lines) on one
// thread (cold and warm BPE cache) and on N threads, and decode throughput. Checks decode(encode(doc)) == doc.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "text/tokenizer.h"

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<std::string> split_documents(const std::string& text) {
  std::vector<std::string> docs;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos)
      end = text.size();
    else
      end += 2;
    docs.emplace_back(text.substr(start, end - start));
    start = end;
  }
  return docs;
}

int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_tokenizer DIR FILE [--threads N]\n");
    return 2;
  }
  const std::string dir = argv[1], file = argv[2];
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::max(1, std::atoi(argv[++i]));
    else
      dsmoe::fail("unknown argument {:?}", a);
  }

  double t0 = now_s();
  const auto tok = dsmoe::text::Tokenizer::load(dir);
  const double load_s = now_s() - t0;
  fmt::print("tokenizer   {} (vocab {}, fingerprint {}...)\n", tok.source(), tok.vocab_size(),
             tok.fingerprint().substr(0, 16));
  fmt::print("load        {:.3f} s\n", load_s);

  std::ifstream f(file, std::ios::binary);
  dsmoe::check(f.good(), "{}: cannot open file", file);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const auto docs = split_documents(text);
  const double mb = static_cast<double>(text.size()) / 1e6;
  fmt::print("input       {} ({:.2f} MB, {} documents)\n", file, mb, docs.size());

  std::vector<std::vector<int32_t>> ids(docs.size());
  size_t n_tokens = 0;
  t0 = now_s();
  for (size_t d = 0; d < docs.size(); ++d) ids[d] = tok.encode(docs[d]);
  const double cold_s = now_s() - t0;
  for (const auto& v : ids) n_tokens += v.size();
  t0 = now_s();
  for (size_t d = 0; d < docs.size(); ++d) ids[d] = tok.encode(docs[d]);
  const double warm_s = now_s() - t0;
  fmt::print("encode 1 thread   {:.2f} MB/s cold cache, {:.2f} MB/s warm ({} tokens, {:.2f} bytes/token)\n",
             mb / cold_s, mb / warm_s, n_tokens, static_cast<double>(text.size()) / static_cast<double>(n_tokens));

  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  t0 = now_s();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (size_t d; (d = next.fetch_add(1)) < docs.size();) ids[d] = tok.encode(docs[d]);
    });
  for (auto& th : pool) th.join();
  const double par_s = now_s() - t0;
  fmt::print("encode {} threads {:.2f} MB/s ({:.2f} MB/s per thread)\n", threads, mb / par_s, mb / par_s / threads);

  size_t out_bytes = 0;
  bool roundtrip = true;
  t0 = now_s();
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::string back = tok.decode(ids[d]);
    out_bytes += back.size();
    roundtrip &= back == docs[d];
  }
  const double dec_s = now_s() - t0;
  fmt::print("decode 1 thread   {:.2f} MB/s\n", static_cast<double>(out_bytes) / 1e6 / dec_s);
  fmt::print("round trip  {}\n", roundtrip ? "exact" : "MISMATCH");
  return roundtrip ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const dsmoe::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
