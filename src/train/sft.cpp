// SFT data: conversations -> ids + loss mask (assistant spans mapped onto tokens by byte offsets), padded batches.
#include "train/sft.h"

#include <algorithm>
#include <fstream>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsmoe {

namespace {

bool is_blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && std::string_view(s).substr(0, prefix.size()) == prefix;
}

std::string special_string(const text::Tokenizer& tok, int32_t id) { return id >= 0 ? tok.token_bytes(id) : ""; }

}  // namespace

SftExample sft_example(const std::vector<text::ChatMessage>& messages, const text::Tokenizer& tok,
                       const text::ChatTemplate& tpl, const std::string& where, int64_t* boundary_tokens) {
  check(tok.eos_id() >= 0, "{}: SFT needs a tokenizer with an EOS token ({} has none)", where, tok.source());
  const std::string bos = special_string(tok, tok.bos_id()), eos = special_string(tok, tok.eos_id());
  check(std::any_of(messages.begin(), messages.end(), [](const text::ChatMessage& m) { return m.role == "assistant"; }),
        "{}: conversation has no assistant message (nothing to train on)", where);

  // Assistant byte spans [begin, end) of the full render, from the incremental renders.
  const std::string full = tpl.render(messages, false, bos, eos);
  std::vector<std::pair<size_t, size_t>> spans;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const std::vector<text::ChatMessage> before(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i));
    const std::vector<text::ChatMessage> upto(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    const std::string prompt = tpl.render(before, true, bos, eos);
    const std::string with_reply = tpl.render(upto, false, bos, eos);
    check(starts_with(with_reply, prompt),
          "{}: chat template not incremental: the render up to assistant message {} does not start with the render "
          "of the messages before it plus the generation prompt",
          where, i);
    check(starts_with(full, with_reply),
          "{}: chat template not incremental: the full render does not start with the render up to assistant "
          "message {}",
          where, i);
    check(spans.empty() || starts_with(prompt, full.substr(0, spans.back().second)),
          "{}: chat template not incremental: the prompt for assistant message {} does not start with the render "
          "up to the previous assistant message",
          where, i);
    spans.emplace_back(prompt.size(), with_reply.size());
  }

  SftExample ex;
  ex.ids = tok.encode(full, false);
  ex.loss_mask.assign(ex.ids.size(), 0);
  // Token byte offsets; the tokens must spell the rendered text exactly for the spans to be mapped.
  size_t pos = 0, span = 0;
  int64_t straddling = 0;
  for (size_t t = 0; t < ex.ids.size(); ++t) {
    const std::string bytes = tok.token_bytes(ex.ids[t]);
    check(full.compare(pos, bytes.size(), bytes) == 0,
          "{}: tokenizer {} does not reproduce the rendered conversation byte for byte (token {} at byte {}): "
          "assistant spans cannot be mapped onto tokens",
          where, tok.source(), t, pos);
    const size_t b = pos, e = pos + bytes.size();
    pos = e;
    // Spans are sorted and disjoint: skip those that end at or before this token.
    while (span < spans.size() && spans[span].second <= b) ++span;
    if (span == spans.size() || bytes.empty()) continue;
    const auto [sb, se] = spans[span];
    if (b >= sb && e <= se)
      ex.loss_mask[t] = 1;
    else if (b < se && e > sb)
      ++straddling;  // overlaps an assistant span without lying inside it: not trained on
  }
  check(pos == full.size(), "{}: tokenizer {} does not reproduce the rendered conversation byte for byte", where,
        tok.source());
  if (boundary_tokens) *boundary_tokens = straddling;
  return ex;
}

std::vector<SftExample> sft_load(const std::string& jsonl_path, const text::Tokenizer& tok,
                                 const text::ChatTemplate& tpl, SftLoadStats* stats) {
  check(tok.eos_id() >= 0, "{}: SFT needs a tokenizer with an EOS token ({} has none)", jsonl_path, tok.source());
  std::ifstream in(jsonl_path, std::ios::binary);
  check(in.good(), "cannot open {}", jsonl_path);
  std::vector<std::string> lines;
  std::vector<int64_t> line_nos;
  SftLoadStats st;
  {
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (is_blank(line)) {
        ++st.blank_lines;
        continue;
      }
      lines.push_back(std::move(line));
      line_nos.push_back(line_no);
    }
    check(!in.bad(), "read error in {}", jsonl_path);
  }

  const int64_t n = static_cast<int64_t>(lines.size());
  std::vector<SftExample> examples(n);
  std::vector<std::string> errors(n);
  std::vector<int64_t> boundary(n, 0);
  std::vector<uint8_t> system(n, 0);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t k = 0; k < n; ++k) {
    const std::string where = jsonl_path + ":" + std::to_string(line_nos[k]);
    try {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(lines[k]);
      } catch (const nlohmann::json::exception& e) {
        fail("{}: invalid JSON: {}", where, e.what());
      }
      check(j.is_object() && j.contains("messages") && j["messages"].is_array(),
            "{}: expected an object with a \"messages\" array", where);
      std::vector<text::ChatMessage> messages;
      try {
        messages = text::chat_messages_from_json(j["messages"]);
      } catch (const Error& e) {
        fail("{}: {}", where, e.what());
      }
      system[k] = text::chat_has_system_message(messages) ? 1 : 0;
      try {
        examples[k] = sft_example(messages, tok, tpl, where, &boundary[k]);
      } catch (const Error& e) {
        const std::string msg = e.what();
        if (starts_with(msg, where)) throw;
        fail("{}: {}", where, msg);  // tokenizer/template errors do not know the line
      }
    } catch (const std::exception& e) {
      errors[k] = e.what();
    }
  }
  for (int64_t k = 0; k < n; ++k)
    if (!errors[k].empty()) throw Error(errors[k]);

  st.conversations = n;
  for (int64_t k = 0; k < n; ++k) {
    st.tokens += static_cast<int64_t>(examples[k].ids.size());
    st.trained_tokens += std::count(examples[k].loss_mask.begin(), examples[k].loss_mask.end(), uint8_t{1});
    st.boundary_tokens += boundary[k];
    st.with_system += system[k];
  }
  if (stats) *stats = st;
  return examples;
}

SftBatch sft_batch(const std::vector<SftExample>& examples, const std::vector<int64_t>& indices, int64_t S,
                   int32_t pad_id) {
  check(S >= 1, "sft_batch: sequence length must be >= 1, got {}", S);
  check(pad_id >= 0, "sft_batch: pad id must be >= 0, got {}", pad_id);
  check(!indices.empty(), "sft_batch: empty batch");
  SftBatch batch;
  batch.B = static_cast<int64_t>(indices.size());
  batch.S = S;
  batch.inputs.assign(batch.B * S, pad_id);
  batch.targets.assign(batch.B * S, -1);
  for (int64_t b = 0; b < batch.B; ++b) {
    const int64_t idx = indices[b];
    check(idx >= 0 && idx < static_cast<int64_t>(examples.size()), "sft_batch: example index {} out of range [0, {})",
          idx, examples.size());
    const SftExample& ex = examples[idx];
    check(ex.ids.size() == ex.loss_mask.size(), "sft_batch: example {} has {} ids but {} mask entries", idx,
          ex.ids.size(), ex.loss_mask.size());
    const int64_t len = static_cast<int64_t>(ex.ids.size());
    const int64_t kept = std::min(len, S + 1);
    if (len > S + 1) {
      ++batch.truncated;
      batch.truncated_trained += std::count(ex.loss_mask.begin() + (S + 1), ex.loss_mask.end(), uint8_t{1});
    }
    int32_t* in = batch.inputs.data() + b * S;
    int32_t* tg = batch.targets.data() + b * S;
    for (int64_t j = 0; j < std::min(kept, S); ++j) in[j] = ex.ids[j];
    for (int64_t j = 1; j < kept; ++j) {
      if (!ex.loss_mask[j]) continue;
      tg[j - 1] = ex.ids[j];
      ++batch.trained_tokens;
    }
  }
  return batch;
}

}  // namespace dsmoe
