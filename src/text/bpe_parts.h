// Building blocks of the BPE tokenizer (src/text/tokenizer*.cpp), each self-contained: the merge table
// (PairMap), the added-token matcher (AddedMatcher) and the sharded BPE cache (BpeCache, hash_bytes).
//
// Private to src/text (namespace detail); src/text/tokenizer.h is the public interface. Everything is defined
// here, inline, because it sits on the per-piece encode path (Tokenizer::encode in tokenizer.cpp).
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dsmoe::text::detail {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

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

}  // namespace dsmoe::text::detail
