// The text library: tokenizers, BPE training, corpus preparation, chat templates and the synthetic corpus live in
// the other files of this folder. This file keeps the library non-empty while they are written.
namespace dsmoe::text {
const char* library_name() { return "dsmoe_text"; }
}  // namespace dsmoe::text
