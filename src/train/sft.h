// Supervised fine-tuning data: chat conversations (JSONL) -> token ids + a loss mask -> padded [B, S] batches whose
// targets are -1 wherever nothing is trained on (the cross-entropy ignores -1, like torch's ignore_index=-1).
//
// Input: one conversation per line, {"messages": [{"role": "user"|"assistant"|"system", "content": "..."}, ...]}
// (other keys ignored; blank lines skipped). Every bad line is a dsmoe::Error naming FILE:LINE: invalid JSON, no
// "messages" array, a bad message or unknown role, and a conversation without an assistant message (it would train
// on nothing, which in an SFT file is almost certainly a data bug, so it is an error rather than a silent skip).
//
// What is trained on (loss mask). The conversation is rendered by the chat template with the tokenizer's BOS/EOS
// strings and tokenized ONCE as a whole (encode(text, add_special = false): the template writes BOS itself), so the
// ids are exactly what tokenizing the full conversation in one go gives. For each assistant message i the trained
// text is what render(messages[:i+1]) adds beyond render(messages[:i], add_generation_prompt = true): the reply and
// its end-of-turn marker, not the role header. With the DeepSeek template that is " " + reply + EOS (the prompt
// ends in "Assistant:" without a space, so the space before the reply is part of what the model must generate).
// The renders must be prefixes of one another and of the full render, else "template not incremental" errors.
// These byte spans are mapped onto the tokens through the tokens' byte offsets (the concatenated token_bytes of
// the ids must reproduce the rendered text byte for byte; tokenizers with a text-changing normalizer error out):
//   RULE: a token is trained on iff its bytes lie entirely inside an assistant span.
// A token that straddles a span boundary (byte-level BPE merged header and reply bytes into one token) is NOT
// trained on; such tokens are counted in SftLoadStats::boundary_tokens (with the DeepSeek tokenizer and template
// there are none: EOS is an atomic special token and "Assistant:" | " reply" is a pre-token boundary).
// Special-token strings inside message content are matched as special tokens, as HF tokenizers do.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsmoe {

struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // mask[i] = 1: token i is trained on (predicted from tokens < i)
};

struct SftLoadStats {
  int64_t conversations = 0;
  int64_t tokens = 0;           // all tokens of all examples
  int64_t trained_tokens = 0;   // tokens with mask 1
  int64_t boundary_tokens = 0;  // tokens straddling an assistant span boundary (left untrained, see the rule)
  int64_t with_system = 0;      // conversations with a system message (DeepSeekMoE chat was trained without)
  int64_t blank_lines = 0;      // skipped
};

// One conversation -> ids + mask, by the rule above. `where` prefixes error messages (e.g. "data.jsonl:7").
// boundary_tokens (optional) receives the number of straddling tokens.
SftExample sft_example(const std::vector<text::ChatMessage>& messages, const text::Tokenizer& tok,
                       const text::ChatTemplate& tpl, const std::string& where = "conversation",
                       int64_t* boundary_tokens = nullptr);

// Every conversation of a JSONL file, in file order (tokenized in parallel; the first bad line in file order is
// the error reported). The tokenizer must have an EOS token; BOS is used when it has one ("" otherwise).
std::vector<SftExample> sft_load(const std::string& jsonl_path, const text::Tokenizer& tok,
                                 const text::ChatTemplate& tpl, SftLoadStats* stats = nullptr);

// Padding, not packing: every example gets its own row of S+1 tokens, so no conversation can attend to another
// (no cross-example attention mask is needed). A longer example is truncated to its first S+1 tokens (counted in
// `truncated`); a shorter one is padded with pad_id (normally EOS) whose targets are -1.
//   inputs[b, j]  = row_b[j]                                  j = 0..S-1
//   targets[b, j] = row_b[j+1] if token j+1 is trained on (mask 1, not padding), else -1
struct SftBatch {
  std::vector<int32_t> inputs, targets;  // [B*S] each
  int64_t B = 0, S = 0;
  int64_t trained_tokens = 0;     // targets != -1
  int64_t truncated = 0;          // examples longer than S+1 tokens
  int64_t truncated_trained = 0;  // trained tokens cut off by truncation
};

SftBatch sft_batch(const std::vector<SftExample>& examples, const std::vector<int64_t>& indices, int64_t S,
                   int32_t pad_id);

}  // namespace dsmoe
