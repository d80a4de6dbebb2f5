// Tokenizer metadata of GGUF files, as llama.cpp writes and reads it for DeepSeek LLM/MoE (byte-level BPE).
//
// Keys (see ../shared/reference/gguf-deepseek.md, "Tokenizer metadata"):
//   tokenizer.ggml.model            STRING  "gpt2" (llama.cpp's name for byte-level BPE)
//   tokenizer.ggml.pre              STRING  "deepseek-llm" (llama.cpp's built-in copy of the pre-tokenizer regexes)
//   tokenizer.ggml.tokens           STRING[vocab_size]  vocab pieces by id, byte-level spelling; added tokens as
//                                   their content; ids without a token are "[PAD{id}]" fillers
//   tokenizer.ggml.token_type       INT32[vocab_size]   1 normal, 3 control (special added tokens: BOS/EOS),
//                                   4 user-defined (other added tokens), 5 unused (the fillers)
//   tokenizer.ggml.merges           STRING[]  "left right" in rank order
//   tokenizer.ggml.bos_token_id / eos_token_id / padding_token_id   UINT32 (each only when the tokenizer has it)
//   tokenizer.ggml.add_bos_token / add_eos_token                     BOOL
//   tokenizer.chat_template         STRING  (only when tokenizer_config has a string chat_template)
//
// Fillers are written as type 5 (UNUSED), as the llama.cpp converter does today (convert_hf_to_gguf.py,
// get_vocab_base); older converters wrote 4 (USER_DEFINED), which makes llama.cpp match the literal text
// "[PAD{id}]" as that token. Reading accepts both.
#pragma once
#include <cstdint>
#include <vector>

#include "io/gguf.h"
#include "text/tokenizer.h"

namespace dsmoe::text {

// The tokenizer.* KVs for a model whose embedding has vocab_size rows (>= tok.vocab_size()). Throws
// dsmoe::Error naming the tokenizer when llama.cpp's "gpt2" tokenizer would not tokenize the same way: a
// pre-tokenizer other than DeepSeek LLM's, a normalizer, a non-ByteLevel decoder, BPE options llama.cpp lacks.
std::vector<io::GgufKV> tokenizer_to_gguf(const Tokenizer& tok, int64_t vocab_size);

// Rebuilds the tokenizer from those KVs (same ids, same encodings; vocab_size() is the token count, fillers
// included). Missing or ill-typed keys end in one dsmoe::Error naming the file and the key. Optional keys:
// bos/eos/padding ids (absent: none), add_bos/add_eos (absent: false, as llama.cpp for "deepseek-llm"),
// the chat template.
Tokenizer tokenizer_from_gguf(const io::GgufFile& file);

// Whether the file carries a tokenizer (tokenizer.ggml.model is present).
bool gguf_has_tokenizer(const io::GgufFile& file);

}  // namespace dsmoe::text
