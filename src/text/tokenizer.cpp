// Encoding and decoding with a loaded Tokenizer: the BPE merge loop, the added-token split and the
// normalise/pre-tokenize pipeline (the per-piece hot path, kept in one translation unit with Tokenizer::encode),
// then the public accessors and the embedded DeepSeek pre_tokenizer block. Loading is in tokenizer_load.cpp;
// Tokenizer::Impl is in tokenizer_impl.h, its building blocks (merge table, matcher, cache) in bpe_parts.h.
#include "text/tokenizer.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <queue>

#include "core/error.h"
#include "text/pretokenizer.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

namespace dsmoe::text {

using detail::AddedMatcher;
using detail::AddedToken;
using detail::DecodeStep;
using detail::FunctionRef;

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
    auto lower_priority = [](const Merge& a, const Merge& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
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
    split_added(norm_matcher, g, on_added,
                [&](std::string_view sub, size_t sub_offset) { pretokenize(sub, gap_offset == 0 && sub_offset == 0); });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Public interface (from_json and load are in tokenizer_load.cpp)
// ---------------------------------------------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& m = *impl_;
  m.check_utf8(text, "encode");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special && m.add_bos) ids.push_back(m.bos);
  m.segments(
      text, [&](int32_t id) { ids.push_back(id); }, [&](std::string_view piece) { m.bpe(piece, ids); });
  if (add_special && m.add_eos) ids.push_back(m.eos);
  return ids;
}

void Tokenizer::pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& fn) const {
  const Impl& m = *impl_;
  m.check_utf8(text, "pre_tokenize");
  m.segments(
      text, [](int32_t) {}, [&](std::string_view piece) { fn(piece); });
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  std::string out;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    check(id >= 0 && id < m.vocab_size && m.has_piece[id], "{}: decode: token id {} is not in the vocabulary", m.source,
          id);
    const bool first_rule = k == 0 && std::any_of(m.decoder.begin(), m.decoder.end(), [](const DecodeStep& s) {
                              return s.kind == DecodeStep::Metaspace && s.strip_first;
                            });
    if (first_rule)
      out += m.decode_token(id, true);
    else
      out += m.bytes[id];
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
