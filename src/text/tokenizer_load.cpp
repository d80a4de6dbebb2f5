// Loading a Tokenizer: tokenizer.json's model (vocab, merges, options), added_tokens and decoder blocks, and
// tokenizer_config.json's BOS/EOS, into Tokenizer::Impl (tokenizer_impl.h); the per-token decoder run at load
// time to fill the id -> bytes table; the SHA-256 fingerprint; Tokenizer::from_json and Tokenizer::load.
// Encoding, decoding and the other public accessors are in tokenizer.cpp.
#include "text/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "text/pretokenizer.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

namespace dsmoe::text {

using detail::AddedToken;
using detail::DecodeStep;

namespace {

// ---------------------------------------------------------------------------------------------------------
// SHA-256 (for fingerprint())
// ---------------------------------------------------------------------------------------------------------

std::string sha256_hex(std::string_view data) {
  static constexpr uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  auto block = [&](const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t(p[4 * i]) << 24) | (uint32_t(p[4 * i + 1]) << 16) | (uint32_t(p[4 * i + 2]) << 8) | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  };
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const size_t n = data.size();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) block(p + i);
  unsigned char tail[128] = {};
  const size_t rem = n - i;
  std::memcpy(tail, p + i, rem);
  tail[rem] = 0x80;
  const size_t tail_len = rem + 9 <= 64 ? 64 : 128;
  const uint64_t bits = static_cast<uint64_t>(n) * 8;
  for (int b = 0; b < 8; ++b) tail[tail_len - 1 - b] = static_cast<unsigned char>(bits >> (8 * b));
  block(tail);
  if (tail_len == 128) block(tail + 64);
  std::string out;
  for (uint32_t v : h) out += fmt::format("{:08x}", v);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// tokenizer.json field helpers
// ---------------------------------------------------------------------------------------------------------

bool json_bool(const nlohmann::json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  check(it->is_boolean(), "field {:?} must be a boolean", key);
  return it->get<bool>();
}

// tokenizer.json without model.vocab and model.merges, copied piece by piece so the large parts are never copied.
nlohmann::json json_outline(const nlohmann::json& tj) {
  nlohmann::json out = nlohmann::json::object();
  for (auto it = tj.begin(); it != tj.end(); ++it) {
    if (it.key() != "model") {
      out[it.key()] = it.value();
      continue;
    }
    nlohmann::json& model = out["model"] = nlohmann::json::object();
    for (auto m = it->begin(); m != it->end(); ++m)
      if (m.key() != "vocab" && m.key() != "merges") model[m.key()] = m.value();
  }
  return out;
}

std::optional<std::string> json_opt_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  check(it->is_string(), "field {:?} must be a string or null", key);
  return it->get<std::string>();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Tokenizer::Impl: loading, and the decoder applied to one token
// ---------------------------------------------------------------------------------------------------------

void Tokenizer::Impl::load_model(const nlohmann::json& m) {
  check(m.is_object(), "\"model\" must be a JSON object");
  if (auto t = m.find("type"); t != m.end()) {
    check(t->is_string(), "model \"type\" must be a string");
    const std::string type = t->get<std::string>();
    check(type == "BPE", "model type {:?} is not supported (only BPE)", type);
  } else {
    check(m.contains("merges"), "model has no \"type\" (only BPE is supported)");
  }
  if (auto d = m.find("dropout"); d != m.end() && !d->is_null()) {
    check(d->is_number(), "model dropout must be a number or null");
    check(d->get<double>() == 0.0, "BPE dropout ({}) is not supported", d->get<double>());
  }
  fuse_unk = json_bool(m, "fuse_unk", false);
  byte_fallback = json_bool(m, "byte_fallback", false);
  ignore_merges = json_bool(m, "ignore_merges", false);
  prefix = json_opt_string(m, "continuing_subword_prefix").value_or("");
  suffix = json_opt_string(m, "end_of_word_suffix").value_or("");

  auto v = m.find("vocab");
  check(v != m.end() && v->is_object(), "model has no \"vocab\" object");
  vocab.reserve(v->size() * 2);
  int32_t max_id = -1;
  for (auto it = v->begin(); it != v->end(); ++it) {
    check(it.value().is_number_integer(), "vocab entry {:?} has a non-integer id", it.key());
    const int64_t id = it.value().get<int64_t>();
    check(id >= 0 && id < (int64_t{1} << 30), "vocab entry {:?} has an out-of-range id {}", it.key(), id);
    vocab.emplace(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  pieces.assign(static_cast<size_t>(max_id + 1), std::string());
  has_piece.assign(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [piece, id] : vocab) {
    check(!has_piece[id], "duplicate id {} in vocab ({:?} and {:?})", id, pieces[id], piece);
    pieces[id] = piece;
    has_piece[id] = 1;
  }

  if (auto u = json_opt_string(m, "unk_token")) {
    auto it = vocab.find(*u);
    check(it != vocab.end(), "unk_token {:?} is not in the vocab", *u);
    unk_id = it->second;
  }
  char_ids.assign(0x800, -1);
  for (char32_t c = 0; c < 0x800; ++c)
    if (auto it = vocab.find(unicode::to_utf8(c)); it != vocab.end()) char_ids[c] = it->second;
  fallback_ids.fill(-1);
  if (byte_fallback)
    for (int b = 0; b < 256; ++b)
      if (auto it = vocab.find(fmt::format("<0x{:02X}>", b)); it != vocab.end()) fallback_ids[b] = it->second;

  auto mg = m.find("merges");
  check(mg != m.end() && mg->is_array(), "model has no \"merges\" array");
  merges.reserve(mg->size());
  merge_list.reserve(mg->size());
  std::string a, b;
  for (size_t rank = 0; rank < mg->size(); ++rank) {
    const auto& e = (*mg)[rank];
    if (e.is_string()) {
      const std::string& line = e.get_ref<const std::string&>();
      const size_t sp = line.find(' ');
      check(sp != std::string::npos && line.find(' ', sp + 1) == std::string::npos,
            "merge #{} {:?} is not two tokens separated by one space", rank, line);
      a.assign(line, 0, sp);
      b.assign(line, sp + 1);
    } else {
      check(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
            "merge #{} must be \"a b\" or [\"a\", \"b\"]", rank);
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    auto ia = vocab.find(a);
    check(ia != vocab.end(), "merge #{} ({:?} {:?}) refers to a token missing from the vocab: {:?}", rank, a, b, a);
    auto ib = vocab.find(b);
    check(ib != vocab.end(), "merge #{} ({:?} {:?}) refers to a token missing from the vocab: {:?}", rank, a, b, b);
    check(b.size() >= prefix.size(), "merge #{} ({:?} {:?}): right token is shorter than the subword prefix", rank, a,
          b);
    const std::string merged = a + b.substr(prefix.size());
    auto im = vocab.find(merged);
    check(im != vocab.end(), "merge #{} ({:?} {:?}): the merged token {:?} is not in the vocab", rank, a, b, merged);
    merges.insert_or_assign(ia->second, ib->second, {static_cast<int32_t>(rank), im->second});
    merge_list.emplace_back(ia->second, ib->second);
  }
}

void Tokenizer::Impl::load_added(const nlohmann::json& arr) {
  if (arr.is_null()) return;
  check(arr.is_array(), "\"added_tokens\" must be an array");
  for (const auto& t : arr) {
    check(t.is_object() && t.contains("content") && t["content"].is_string() && t.contains("id") &&
              t["id"].is_number_integer(),
          "each added token needs a string \"content\" and an integer \"id\"");
    AddedToken at;
    at.content = t["content"].get<std::string>();
    check(!at.content.empty(), "added token with id {} has empty content", t["id"].get<int64_t>());
    const int64_t id = t["id"].get<int64_t>();
    check(id >= 0 && id < (int64_t{1} << 30), "added token {:?} has an out-of-range id {}", at.content, id);
    // HF: a content already in the model vocab keeps the model's id.
    auto v = vocab.find(at.content);
    at.id = v != vocab.end() ? v->second : static_cast<int32_t>(id);
    at.special = json_bool(t, "special", false);
    at.normalized = json_bool(t, "normalized", !at.special);
    at.lstrip = json_bool(t, "lstrip", false);
    at.rstrip = json_bool(t, "rstrip", false);
    at.single_word = json_bool(t, "single_word", false);
    if (added_by_content.count(at.content)) continue;
    if (auto dup = added_by_id.find(at.id); dup != added_by_id.end())
      fail("added tokens {:?} and {:?} share id {}", added[dup->second].content, at.content, at.id);
    added_by_id[at.id] = added.size();
    added_by_content[at.content] = added.size();
    added.push_back(std::move(at));
  }
}

void Tokenizer::Impl::load_decoder(const nlohmann::json& d) {
  if (d.is_null()) return;
  check(d.is_object() && d.contains("type") && d["type"].is_string(), "decoder has no \"type\"");
  const std::string t = d["type"].get<std::string>();
  if (t == "Sequence") {
    check(d.contains("decoders") && d["decoders"].is_array(), "decoder Sequence needs a \"decoders\" array");
    for (const auto& x : d["decoders"]) load_decoder(x);
  } else if (t == "ByteLevel") {
    decoder.emplace_back(DecodeStep::ByteLevel);
  } else if (t == "ByteFallback") {
    decoder.emplace_back(DecodeStep::ByteFallback);
  } else if (t == "Fuse") {
    // Joins the tokens into one string: nothing to do on bytes.
  } else if (t == "Replace") {
    check(d.contains("pattern") && d["pattern"].is_object() && d["pattern"].contains("String") &&
              d["pattern"]["String"].is_string(),
          "decoder Replace is supported with a {{\"String\": ...}} pattern only");
    decoder.emplace_back(DecodeStep::Replace, d["pattern"]["String"].get<std::string>(),
                         json_opt_string(d, "content").value_or(""));
  } else if (t == "Strip") {
    DecodeStep s(DecodeStep::Strip, json_opt_string(d, "content").value_or(" "));
    s.start = d.value("start", size_t{0});
    s.stop = d.value("stop", size_t{0});
    decoder.push_back(s);
  } else if (t == "Metaspace") {
    DecodeStep s(DecodeStep::Metaspace, json_opt_string(d, "replacement").value_or("\xE2\x96\x81"));
    const std::string scheme =
        json_opt_string(d, "prepend_scheme").value_or(json_bool(d, "add_prefix_space", true) ? "always" : "never");
    s.strip_first = scheme != "never";
    decoder.push_back(s);
  } else {
    fail(
        "decoder type {:?} is not supported (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, "
        "Sequence)",
        t);
  }
}

std::string Tokenizer::Impl::decode_token(int32_t id, bool first) const {
  if (auto it = added_by_id.find(id); it != added_by_id.end()) return added[it->second].content;
  std::string s = pieces[id];
  for (const DecodeStep& st : decoder) {
    switch (st.kind) {
      case DecodeStep::ByteLevel: {
        // HF: a token with a character outside the alphabet is passed through unchanged.
        static const auto inverse = [] {
          std::unordered_map<char32_t, unsigned char> inv;
          const auto& a = byte_level_alphabet();
          for (int b = 0; b < 256; ++b) {
            size_t i = 0;
            inv[unicode::next_cp(a[b], i)] = static_cast<unsigned char>(b);
          }
          return inv;
        }();
        std::string out;
        size_t i = 0;
        bool ok = true;
        while (i < s.size() && ok) {
          auto it = inverse.find(unicode::next_cp(s, i));
          if (it == inverse.end())
            ok = false;
          else
            out.push_back(static_cast<char>(it->second));
        }
        if (ok) s = std::move(out);
        break;
      }
      case DecodeStep::ByteFallback:
        if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') {
          unsigned v = 0;
          bool hex = true;
          for (int k = 3; k < 5; ++k) {
            const char c = s[k];
            const int d = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                 : -1;
            if (d < 0) hex = false;
            v = v * 16 + static_cast<unsigned>(std::max(d, 0));
          }
          if (hex) s = std::string(1, static_cast<char>(v));
        }
        break;
      case DecodeStep::Replace: {
        if (st.a.empty()) break;
        std::string out;
        size_t pos = 0, f;
        while ((f = s.find(st.a, pos)) != std::string::npos) {
          out.append(s, pos, f - pos);
          out += st.b;
          pos = f + st.a.size();
        }
        out.append(s, pos);
        s = std::move(out);
        break;
      }
      case DecodeStep::Strip: {
        size_t b = 0, e = s.size();
        for (size_t k = 0; k < st.start && b < e && s.compare(b, st.a.size(), st.a) == 0; ++k) b += st.a.size();
        for (size_t k = 0; k < st.stop && e >= b + st.a.size() && s.compare(e - st.a.size(), st.a.size(), st.a) == 0;
             ++k)
          e -= st.a.size();
        s = s.substr(b, e - b);
        break;
      }
      case DecodeStep::Metaspace: {
        std::string out;
        size_t pos = 0, f;
        while ((f = s.find(st.a, pos)) != std::string::npos) {
          out.append(s, pos, f - pos);
          if (!(first && st.strip_first)) out.push_back(' ');
          pos = f + st.a.size();
        }
        out.append(s, pos);
        s = std::move(out);
        break;
      }
    }
  }
  return s;
}

void Tokenizer::Impl::load_config() {
  if (config.is_null()) return;
  check(config.is_object(), "tokenizer_config must be a JSON object");
  add_bos = json_bool(config, "add_bos_token", false);
  add_eos = json_bool(config, "add_eos_token", false);
  auto resolve = [&](const char* key) -> int32_t {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return -1;
    std::string content;
    if (it->is_string())
      content = it->get<std::string>();
    else if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
      content = (*it)["content"].get<std::string>();
    else
      fail("tokenizer_config {} must be a string or an object with \"content\"", key);
    if (auto a = added_by_content.find(content); a != added_by_content.end()) return added[a->second].id;
    if (auto v = vocab.find(content); v != vocab.end()) return v->second;
    fail("tokenizer_config {} {:?} is not a token of the vocabulary", key, content);
  };
  bos = resolve("bos_token");
  eos = resolve("eos_token");
  check(!add_bos || bos >= 0, "tokenizer_config has add_bos_token but no bos_token");
  check(!add_eos || eos >= 0, "tokenizer_config has add_eos_token but no eos_token");
}

// ---------------------------------------------------------------------------------------------------------
// Public interface: loading
// ---------------------------------------------------------------------------------------------------------

Tokenizer Tokenizer::from_json(const nlohmann::json& tj, const nlohmann::json& cfg, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  try {
    check(tj.is_object(), "not a tokenizer.json (top level is not a JSON object)");
    check(tj.contains("model"), "no \"model\" in tokenizer.json");
    impl->load_model(tj["model"]);
    impl->load_added(tj.value("added_tokens", nlohmann::json()));
    impl->normalizers = detail::build_normalizers(tj.value("normalizer", nlohmann::json()));
    impl->pre = detail::PreTokenizer(detail::build_pre_tokenizer(tj.value("pre_tokenizer", nlohmann::json())));
    impl->load_decoder(tj.value("decoder", nlohmann::json()));
    impl->config = cfg;
    impl->load_config();

    // Added tokens: those not normalised are matched on the raw text, the others after normalisation.
    for (size_t k = 0; k < impl->added.size(); ++k) {
      const AddedToken& t = impl->added[k];
      if (!t.normalized) {
        impl->raw_matcher.add(t.content, static_cast<int32_t>(k));
      } else {
        std::string c = t.content;
        for (const auto& n : impl->normalizers) c = n->apply(c);
        impl->norm_matcher.add(c, static_cast<int32_t>(k));
      }
    }

    int64_t max_id = static_cast<int64_t>(impl->pieces.size()) - 1;
    for (const auto& t : impl->added) max_id = std::max<int64_t>(max_id, t.id);
    impl->vocab_size = max_id + 1;
    impl->pieces.resize(static_cast<size_t>(impl->vocab_size));
    impl->has_piece.resize(static_cast<size_t>(impl->vocab_size), 0);
    for (const auto& t : impl->added) {
      impl->pieces[t.id] = t.content;
      impl->has_piece[t.id] = 1;
    }
    impl->bytes.resize(static_cast<size_t>(impl->vocab_size));
    for (int64_t id = 0; id < impl->vocab_size; ++id)
      if (impl->has_piece[id]) impl->bytes[id] = impl->decode_token(static_cast<int32_t>(id), false);
    impl->fingerprint = sha256_hex(tj.dump());
    impl->outline = json_outline(tj);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed tokenizer: {}", source, e.what());
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
  return Tokenizer(std::move(impl));
}

namespace {
nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  check(f.good(), "{}: cannot open file", p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}
}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  check(fs::exists(p, ec), "{}: no such tokenizer file or directory", path);
  const fs::path file = fs::is_directory(p, ec) ? p / "tokenizer.json" : p;
  check(fs::exists(file, ec), "{}: no tokenizer.json in this directory", path);
  const nlohmann::json tj = read_json_file(file);
  nlohmann::json cfg;
  const fs::path cfg_file = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(cfg_file, ec)) cfg = read_json_file(cfg_file);
  return from_json(tj, cfg, file.string());
}

}  // namespace dsmoe::text
