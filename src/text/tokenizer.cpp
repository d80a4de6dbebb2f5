#include "text/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "text/pretokenizer.h"
#include "text/unicode.h"

namespace dsmoe::text {
namespace {

using detail::FunctionRef;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// ---------------------------------------------------------------------------------------------------------
// SHA-256 (for fingerprint())
// ---------------------------------------------------------------------------------------------------------

std::string sha256_hex(std::string_view data) {
  static constexpr uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
      0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
      0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
      0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
      0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
      0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
      0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
      0xc67178f2};
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
      hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
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
// Merge table: (left id, right id) -> (rank, merged id), open addressing.
// ---------------------------------------------------------------------------------------------------------

class PairMap {
 public:
  struct Value {
    int32_t rank;
    int32_t new_id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, {0, 0}});
    mask_ = cap - 1;
  }
  // HF builds a HashMap from the merges in order: a repeated pair keeps the last rank.
  void insert_or_assign(int32_t a, int32_t b, Value v) {
    const uint64_t key = pack(a, b);
    size_t i = slot(key);
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i] = Slot{key, v};
  }
  const Value* find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    size_t i = slot(key);
    for (;;) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key;
    Value value;
  };
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 17) & mask_; }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Added-token matcher: leftmost-longest over a byte trie (HF uses Aho-Corasick with LeftmostLongest).
// ---------------------------------------------------------------------------------------------------------

class AddedMatcher {
 public:
  void add(std::string_view pattern, int32_t token_index) {
    if (pattern.empty()) return;
    int32_t n = 0;
    for (unsigned char b : pattern) {
      int32_t c = child(n, b);
      if (c < 0) {
        c = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& kids = nodes_[n].kids;
        kids.insert(std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{-1})), {b, c});
      }
      n = c;
    }
    if (nodes_[n].token < 0) nodes_[n].token = token_index;  // first definition wins
    first_[static_cast<unsigned char>(pattern[0])] = true;
    any_ = true;
  }
  bool empty() const { return !any_; }
  bool find(std::string_view s, size_t from, size_t& ms, size_t& me, int32_t& token_index) const {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (size_t i = from; i < s.size(); ++i) {
      if (!first_[p[i]]) continue;
      int32_t n = 0, best = -1;
      size_t best_end = 0;
      for (size_t j = i; j < s.size(); ++j) {
        n = child(n, p[j]);
        if (n < 0) break;
        if (nodes_[n].token >= 0) {
          best = nodes_[n].token;
          best_end = j + 1;
        }
      }
      if (best >= 0) {
        ms = i;
        me = best_end;
        token_index = best;
        return true;
      }
    }
    return false;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> kids;
    int32_t token = -1;
  };
  int32_t child(int32_t n, unsigned char b) const {
    for (const auto& [k, c] : nodes_[n].kids)
      if (k == b) return c;
    return -1;
  }
  std::vector<Node> nodes_{1};
  std::array<bool, 256> first_{};
  bool any_ = false;
};

// ---------------------------------------------------------------------------------------------------------
// BPE cache: piece -> ids. Sharded (one mutex each) so that many threads can encode at once; each shard is a
// flat open-addressing table of one-cache-line entries (pieces up to 22 bytes and 8 ids, i.e. nearly all), with
// a small map beside it for longer ones. Full tables evict; memory stays bounded (~17 MB).
// ---------------------------------------------------------------------------------------------------------

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0x100000001B3ull);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t w = 0;
  std::memcpy(&w, s.data() + i, s.size() - i);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  return h | 1;  // 0 marks an empty slot
}

class BpeCache {
 public:
  static constexpr size_t kMaxKeyBytes = 256;  // longer pieces are not cached (HF caches words < 256 chars)

  BpeCache() = default;
  BpeCache(const BpeCache&) = delete;
  BpeCache& operator=(const BpeCache&) = delete;
  ~BpeCache() {
    for (auto& sh : shards_) delete[] sh.slots.load(std::memory_order_relaxed);
  }

  // Short keys: lock-free (a per-shard sequence lock), so that readers on different cores never write a shared
  // cache line. Long keys: under the shard's mutex.
  bool lookup(std::string_view key, uint64_t h, std::vector<int32_t>& out) const {
    Shard& sh = shard(h);
    if (key.size() <= kKeyCap) {
      const Entry* slots = sh.slots.load(std::memory_order_acquire);
      if (!slots) return false;
      const size_t home = (h >> 8) & (kSlots - 1);
      for (int attempt = 0; attempt < 8; ++attempt) {
        const uint32_t v1 = sh.version.load(std::memory_order_acquire);
        if (v1 & 1) continue;  // a writer is in the shard
        Entry copy;
        bool found = false;
        for (size_t p = 0; p < kProbe && !found; ++p) {
          read_entry(slots[(home + p) & (kSlots - 1)], copy);
          if (copy.hash == 0) break;
          found = copy.hash == h && copy.key_len == key.size() && copy.n_ids <= kIdCap &&
                  std::memcmp(copy.key, key.data(), key.size()) == 0;
        }
        std::atomic_thread_fence(std::memory_order_acquire);
        if (sh.version.load(std::memory_order_relaxed) != v1) continue;  // torn read: retry
        if (found) out.insert(out.end(), copy.ids, copy.ids + copy.n_ids);
        return found;
      }
      return false;  // persistent writer activity: treat as a miss
    }
    std::lock_guard<std::mutex> lock(sh.m);
    auto it = sh.big.find(key);
    if (it == sh.big.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }

  void insert(std::string_view key, uint64_t h, const int32_t* ids, size_t n) const {
    Shard& sh = shard(h);
    std::lock_guard<std::mutex> lock(sh.m);
    if (key.size() <= kKeyCap && n <= kIdCap) {
      Entry* slots = sh.slots.load(std::memory_order_relaxed);
      if (!slots) {
        slots = new Entry[kSlots];
        sh.slots.store(slots, std::memory_order_release);
      }
      const size_t home = (h >> 8) & (kSlots - 1);
      size_t target = home;
      for (size_t p = 0; p < kProbe; ++p) {
        const size_t i = (home + p) & (kSlots - 1);
        if (slots[i].hash == 0 || slots[i].hash == h) {
          target = i;
          break;
        }
      }
      Entry e;
      e.hash = h;
      e.key_len = static_cast<uint8_t>(key.size());
      e.n_ids = static_cast<uint8_t>(n);
      std::memcpy(e.key, key.data(), key.size());
      std::memcpy(e.ids, ids, n * sizeof(int32_t));
      const uint32_t v = sh.version.load(std::memory_order_relaxed);
      sh.version.store(v + 1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
      write_entry(slots[target], e);
      sh.version.store(v + 2, std::memory_order_release);
      return;
    }
    if (sh.big.size() >= kMaxBig) sh.big.clear();
    sh.big.emplace(std::string(key), std::vector<int32_t>(ids, ids + n));
  }

 private:
  static constexpr size_t kKeyCap = 22, kIdCap = 8, kShards = 64, kSlots = 4096, kProbe = 4, kMaxBig = 2048;
  struct alignas(64) Entry {
    uint64_t hash = 0;
    uint8_t key_len = 0, n_ids = 0;
    char key[kKeyCap] = {};
    int32_t ids[kIdCap] = {};
  };
  static_assert(sizeof(Entry) == 64 && std::is_trivially_copyable_v<Entry>);
  static constexpr size_t kWords = sizeof(Entry) / sizeof(uint64_t);
  // Word-wise relaxed atomic copies: the sequence lock detects torn reads, without a data race.
  static void read_entry(const Entry& src, Entry& dst) {
    uint64_t w[kWords];
    auto* s = reinterpret_cast<uint64_t*>(const_cast<Entry*>(&src));
    for (size_t k = 0; k < kWords; ++k) w[k] = std::atomic_ref<uint64_t>(s[k]).load(std::memory_order_relaxed);
    std::memcpy(&dst, w, sizeof w);
  }
  static void write_entry(Entry& dst, const Entry& src) {
    uint64_t w[kWords];
    std::memcpy(w, &src, sizeof w);
    auto* d = reinterpret_cast<uint64_t*>(&dst);
    for (size_t k = 0; k < kWords; ++k) std::atomic_ref<uint64_t>(d[k]).store(w[k], std::memory_order_relaxed);
  }
  struct alignas(64) Shard {
    std::atomic<uint32_t> version{0};
    std::atomic<Entry*> slots{nullptr};  // allocated on first insert
    std::mutex m;                        // writers and the long-key map
    StringMap<std::vector<int32_t>> big;
  };
  Shard& shard(uint64_t h) const { return shards_[(h >> 1) & (kShards - 1)]; }  // bit 0 is always set
  mutable std::array<Shard, kShards> shards_;
};

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

// Decoder steps (per token; Metaspace's first-token rule is applied by decode()).
struct DecodeStep {
  enum Kind { ByteLevel, ByteFallback, Replace, Strip, Metaspace } kind;
  explicit DecodeStep(Kind k, std::string a_ = {}, std::string b_ = {}) : kind(k), a(std::move(a_)), b(std::move(b_)) {}
  std::string a, b;  // Replace: pattern -> content; Strip/Metaspace: the character
  size_t start = 0, stop = 0;
  bool strip_first = false;  // Metaspace: drop the replacement from the first token
};

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
// Tokenizer state
// ---------------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string source;
  nlohmann::json config;
  std::string fingerprint;

  // BPE model
  StringMap<int32_t> vocab;
  std::vector<std::string> pieces;  // id -> vocab string ("" where has_piece is false)
  std::vector<uint8_t> has_piece;
  std::vector<std::string> bytes;   // id -> decoded bytes
  PairMap merges;
  std::vector<std::pair<int32_t, int32_t>> merge_list;  // rank order, for merges()
  nlohmann::json outline;                               // for outline_json()
  int32_t unk_id = -1;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::array<int32_t, 256> fallback_ids{};
  std::vector<int32_t> char_ids;  // code point < 0x800 -> vocab id of that single character (-1: none)

  // Added tokens
  std::vector<AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  StringMap<size_t> added_by_content;
  AddedMatcher raw_matcher, norm_matcher;

  std::vector<std::unique_ptr<detail::Normalizer>> normalizers;
  detail::PreTokenizer pre;
  std::vector<DecodeStep> decoder;

  int32_t bos = -1, eos = -1;
  bool add_bos = false, add_eos = false;
  int64_t vocab_size = 0;

  BpeCache cache;

  // --- loading ---
  void load_model(const nlohmann::json& m);
  void load_added(const nlohmann::json& a);
  void load_decoder(const nlohmann::json& d);
  void load_config();
  std::string decode_token(int32_t id, bool first) const;

  // --- encoding ---
  void merge_word(std::string_view w, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (ignore_merges) {
      if (auto it = vocab.find(piece); it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    if (piece.size() > BpeCache::kMaxKeyBytes) {
      merge_word(piece, out);
      return;
    }
    const uint64_t h = hash_bytes(piece);
    if (cache.lookup(piece, h, out)) return;
    const size_t before = out.size();
    merge_word(piece, out);
    cache.insert(piece, h, out.data() + before, out.size() - before);
  }
  // Runs the added-token split / normalisation / pre-tokenization; on_added(id) for added tokens,
  // on_piece(pre-token) for the rest, in text order.
  void segments(std::string_view text, FunctionRef<void(int32_t)> on_added,
                FunctionRef<void(std::string_view)> on_piece) const;
  void split_added(const AddedMatcher& m, std::string_view s, FunctionRef<void(int32_t)> on_added,
                   FunctionRef<void(std::string_view, size_t)> on_gap) const;
  void check_utf8(std::string_view text, const char* what) const {
    const size_t bad = unicode::find_invalid_utf8(text);
    check(bad == std::string_view::npos, "{}: {}: input is not valid UTF-8 (byte offset {})", source, what, bad);
  }
};

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
    check(b.size() >= prefix.size(), "merge #{} ({:?} {:?}): right token is shorter than the subword prefix", rank, a, b);
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
    const std::string scheme = json_opt_string(d, "prepend_scheme").value_or(json_bool(d, "add_prefix_space", true) ? "always" : "never");
    s.strip_first = scheme != "never";
    decoder.push_back(s);
  } else {
    fail("decoder type {:?} is not supported (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, "
         "Sequence)", t);
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
          if (it == inverse.end()) ok = false;
          else out.push_back(static_cast<char>(it->second));
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
            const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
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
        for (size_t k = 0; k < st.stop && e >= b + st.a.size() && s.compare(e - st.a.size(), st.a.size(), st.a) == 0; ++k)
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
    if (it->is_string()) content = it->get<std::string>();
    else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) content = (*it)["content"].get<std::string>();
    else fail("tokenizer_config {} must be a string or an object with \"content\"", key);
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
// Encoding
// ---------------------------------------------------------------------------------------------------------

// HF BPE::merge_word + Word::merge_all, step for step (including how stale queue entries are recognised).
void Tokenizer::Impl::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id, prev, next;
    uint32_t len;
  };
  std::vector<Sym> syms;
  syms.reserve(w.size());
  auto add = [&](int32_t id, size_t len) {
    const auto n = static_cast<int32_t>(syms.size());
    if (n > 0) syms.back().next = n;
    syms.push_back({id, n - 1, -1, static_cast<uint32_t>(len)});
  };
  int32_t unk_pending = -1;
  size_t unk_len = 0;
  std::string tmp;
  size_t i = 0;
  while (i < w.size()) {
    const size_t start = i;
    i += unicode::char_len(static_cast<unsigned char>(w[i]));
    const size_t byte_len = i - start;
    std::string_view s = w.substr(start, byte_len);
    const bool affixed = (!prefix.empty() && start > 0) || (!suffix.empty() && i == w.size());
    if (!affixed && byte_len <= 2) {
      size_t k = start;
      const int32_t id = char_ids[unicode::next_cp(w, k)];
      if (id >= 0) {
        if (unk_pending >= 0) {
          add(unk_pending, unk_len);
          unk_pending = -1;
        }
        add(id, byte_len);
        continue;
      }
    }
    if (affixed) {
      tmp.clear();
      if (start > 0) tmp += prefix;
      tmp.append(s);
      if (i == w.size()) tmp += suffix;
      s = tmp;
    }
    if (auto it = vocab.find(s); it != vocab.end()) {
      if (unk_pending >= 0) {
        add(unk_pending, unk_len);
        unk_pending = -1;
      }
      add(it->second, byte_len);
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (unsigned char c : s) all &= fallback_ids[c] >= 0;
      if (all) {
        for (unsigned char c : s) add(fallback_ids[c], 1);
        continue;
      }
    }
    if (unk_id >= 0) {
      if (unk_pending >= 0 && fuse_unk) {
        unk_len += byte_len;
      } else {
        if (unk_pending >= 0) add(unk_pending, unk_len);
        unk_pending = unk_id;
        unk_len = byte_len;
      }
    }
  }
  if (unk_pending >= 0) add(unk_pending, unk_len);

  if (syms.size() > 1) {
    struct Merge {
      int32_t pos, rank, new_id;
    };
    auto lower_priority = [](const Merge& a, const Merge& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
    std::priority_queue<Merge, std::vector<Merge>, decltype(lower_priority)> queue(lower_priority);
    for (size_t k = 0; k + 1 < syms.size(); ++k)
      if (const auto* m = merges.find(syms[k].id, syms[k + 1].id))
        queue.push({static_cast<int32_t>(k), m->rank, m->new_id});
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Sym& cur = syms[top.pos];
      if (cur.len == 0 || cur.next == -1) continue;
      const int32_t next_pos = cur.next;
      const Sym right = syms[next_pos];
      const auto* target = merges.find(cur.id, right.id);
      if (!target || target->new_id != top.new_id) continue;  // stale entry
      cur.id = top.new_id;
      cur.len += right.len;
      cur.next = right.next;
      syms[next_pos].len = 0;
      if (right.next > -1 && static_cast<size_t>(right.next) < syms.size()) syms[right.next].prev = top.pos;
      if (cur.prev >= 0)
        if (const auto* m = merges.find(syms[cur.prev].id, cur.id)) queue.push({cur.prev, m->rank, m->new_id});
      if (cur.next > -1 && static_cast<size_t>(cur.next) < syms.size())
        if (const auto* m = merges.find(cur.id, syms[cur.next].id)) queue.push({top.pos, m->rank, m->new_id});
    }
  }
  for (const Sym& s : syms)
    if (s.len != 0) out.push_back(s.id);
}

// HF AddedVocabulary::find_matches.
void Tokenizer::Impl::split_added(const AddedMatcher& m, std::string_view s, FunctionRef<void(int32_t)> on_added,
                                  FunctionRef<void(std::string_view, size_t)> on_gap) const {
  if (m.empty()) {
    if (!s.empty()) on_gap(s, 0);
    return;
  }
  auto char_before = [&](size_t pos) {
    size_t k = pos - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    size_t t = k;
    return std::make_pair(unicode::next_cp(s, t), k);
  };
  size_t start_offset = 0, pos = 0, ms, me;
  int32_t ti;
  while (pos < s.size() && m.find(s, pos, ms, me, ti)) {
    pos = me;
    if (ms < start_offset) continue;  // inside whitespace taken by a previous rstrip
    const AddedToken& t = added[static_cast<size_t>(ti)];
    if (t.single_word) {
      const bool start_space = ms == 0 || !unicode::is_word(char_before(ms).first);
      size_t k = me;
      const bool stop_space = me == s.size() || !unicode::is_word(unicode::next_cp(s, k));
      if (!start_space || !stop_space) continue;
    }
    size_t st = ms, sp = me;
    if (t.lstrip) {
      size_t b = ms;
      while (b > 0) {
        auto [c, k] = char_before(b);
        if (!unicode::is_whitespace(c)) break;
        b = k;
      }
      st = std::max(b, start_offset);
    }
    if (t.rstrip) {
      while (sp < s.size()) {
        size_t k = sp;
        if (!unicode::is_whitespace(unicode::next_cp(s, k))) break;
        sp = k;
      }
      pos = sp;
    }
    if (start_offset < st) on_gap(s.substr(start_offset, st - start_offset), start_offset);
    on_added(t.id);
    start_offset = sp;
  }
  if (start_offset < s.size()) on_gap(s.substr(start_offset), start_offset);
}

void Tokenizer::Impl::segments(std::string_view text, FunctionRef<void(int32_t)> on_added,
                               FunctionRef<void(std::string_view)> on_piece) const {
  auto pretokenize = [&](std::string_view seg, bool at_start) {
    if (pre.empty()) {
      if (!seg.empty()) on_piece(seg);
    } else {
      pre.run(seg, at_start, on_piece);
    }
  };
  split_added(raw_matcher, text, on_added, [&](std::string_view gap, size_t gap_offset) {
    std::string normalized;
    std::string_view g = gap;
    if (!normalizers.empty()) {
      normalized.assign(gap);
      for (const auto& n : normalizers) normalized = n->apply(normalized);
      g = normalized;
    }
    split_added(norm_matcher, g, on_added, [&](std::string_view sub, size_t sub_offset) {
      pretokenize(sub, gap_offset == 0 && sub_offset == 0);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Public interface
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

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& m = *impl_;
  m.check_utf8(text, "encode");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special && m.add_bos) ids.push_back(m.bos);
  m.segments(text, [&](int32_t id) { ids.push_back(id); }, [&](std::string_view piece) { m.bpe(piece, ids); });
  if (add_special && m.add_eos) ids.push_back(m.eos);
  return ids;
}

void Tokenizer::pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& fn) const {
  const Impl& m = *impl_;
  m.check_utf8(text, "pre_tokenize");
  m.segments(text, [](int32_t) {}, [&](std::string_view piece) { fn(piece); });
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  std::string out;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    check(id >= 0 && id < m.vocab_size && m.has_piece[id], "{}: decode: token id {} is not in the vocabulary", m.source, id);
    const bool first_rule = k == 0 && std::any_of(m.decoder.begin(), m.decoder.end(), [](const DecodeStep& s) {
      return s.kind == DecodeStep::Metaspace && s.strip_first;
    });
    if (first_rule) out += m.decode_token(id, true);
    else out += m.bytes[id];
  }
  return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  const Impl& m = *impl_;
  check(id >= 0 && id < m.vocab_size && m.has_piece[id], "{}: token id {} is not in the vocabulary", m.source, id);
  return m.bytes[id];
}

const std::string& Tokenizer::token_piece(int32_t id) const {
  const Impl& m = *impl_;
  check(id >= 0 && id < m.vocab_size && m.has_piece[id], "{}: token id {} is not in the vocabulary", m.source, id);
  return m.pieces[id];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view piece) const {
  const Impl& m = *impl_;
  if (auto a = m.added_by_content.find(piece); a != m.added_by_content.end()) return m.added[a->second].id;
  if (auto v = m.vocab.find(piece); v != m.vocab.end()) return v->second;
  return std::nullopt;
}

Tokenizer::TokenKind Tokenizer::token_kind(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || id >= m.vocab_size || !m.has_piece[id]) return TokenKind::Missing;
  auto it = m.added_by_id.find(id);
  if (it == m.added_by_id.end()) return TokenKind::Normal;
  return m.added[it->second].special ? TokenKind::Special : TokenKind::Added;
}

const std::vector<std::pair<int32_t, int32_t>>& Tokenizer::merges() const { return impl_->merge_list; }
const nlohmann::json& Tokenizer::outline_json() const { return impl_->outline; }

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
const nlohmann::json& Tokenizer::config() const { return impl_->config; }
const std::string& Tokenizer::fingerprint() const { return impl_->fingerprint; }
const std::string& Tokenizer::source() const { return impl_->source; }

const nlohmann::json& deepseek_pre_tokenizer_json() {
  // Generated from the DeepSeek LLM tokenizer.json with regex 2's class restored (see tokenizer.h).
  static const nlohmann::json j = nlohmann::json::parse(
    R"json({"type": "Sequence", "pretokenizers": [)json"
    R"json({"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": false},)json"
    R"json({"type": "Split", "pattern": {"Regex": "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\)json"
    R"json(u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u03)json"
    R"json(8e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c)json"
    R"json(90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f)json"
    R"json(48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6)json"
    R"json(-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\)json"
    R"json(u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u21)json"
    R"json(84\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua78)json"
    R"json(7\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\ud801\udc00-\ud801\udc4f)json"
    R"json(\ud801\udcb0-\ud801\udcd3\ud801\udcd8-\ud801\udcfb\ud803\udc80-\ud803\udcb2\ud803\udcc0-\ud803\udcf2\ud8)json"
    R"json(06\udca0-\ud806\udcdf\ud83a\udd00-\ud83a\udd43]+"}, "behavior": "Isolated", "invert": false},)json"
    R"json({"type": "Split", "pattern": {"Regex": "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002])json"
    R"json(+"}, "behavior": "Isolated", "invert": false},)json"
    R"json({"type": "Split", "pattern": {"Regex": "\\s+$"}, "behavior": "Isolated", "invert": false},)json"
    R"json({"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"}, "behavior": "Isola)json"
    R"json(ted", "invert": false},)json"
    R"json({"type": "Digits", "individual_digits": true},)json"
    R"json({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false})json"
    R"json(]})json");
  return j;
}

}  // namespace dsmoe::text
