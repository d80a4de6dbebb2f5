// UTF-8 and Unicode helpers for the tokenizer: decoding, validation, the GPT-2 byte-level alphabet, character
// classes (from utf8proc's tables, never hand-written ones) and normalisation forms.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsmoe::text {

// GPT-2 byte<->unicode alphabet used by ByteLevel: byte -> UTF-8 of its stand-in code point.
const std::array<std::string, 256>& byte_level_alphabet();

namespace unicode {

// Decodes the code point starting at s[i] (s must be valid UTF-8) and advances i past it.
inline char32_t next_cp(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    char32_t c = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    i += 2;
    return c;
  }
  if (b0 < 0xF0) {
    char32_t c = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                 (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
    i += 3;
    return c;
  }
  char32_t c = ((b0 & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
               ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) | (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
  i += 4;
  return c;
}

// Byte length of the UTF-8 sequence whose lead byte is b (1 for stray continuation bytes).
inline size_t char_len(unsigned char b) { return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(char32_t cp);

// Offset of the first byte that is not part of well-formed UTF-8 (no surrogates, no overlongs, <= U+10FFFF),
// or std::string_view::npos when s is valid.
size_t find_invalid_utf8(std::string_view s);
// Bytes -> valid UTF-8: each byte of an invalid sequence becomes U+FFFD. For final strings (decoded text shown or
// fed back to the tokenizer); token streams themselves may split a character across tokens.
std::string replace_invalid_utf8(std::string_view s);

// Character classes, all from utf8proc's tables.
bool is_numeric(char32_t c);     // Rust char::is_numeric: general category Nd, Nl or No
bool is_whitespace(char32_t c);  // White_Space: \t..\r, U+0085 and the Z categories
bool is_word(char32_t c);        // Unicode \w: letters, marks, Nd, Nl, Pc, ZWNJ/ZWJ
bool is_cased_letter(char32_t c);
bool is_nonspacing_mark(char32_t c);  // general category Mn

enum class NormForm { NFC, NFD, NFKC, NFKD };
std::string normalize(std::string_view s, NormForm form);  // s must be valid UTF-8
std::string lowercase(std::string_view s);                 // full lowercase mapping (Rust str::to_lowercase)

// The code point c with NFC(c) == target and lo <= c < hi, if exactly one exists (canonical singletons such as
// U+212A KELVIN SIGN -> 'K'); 0 otherwise.
char32_t unique_nfc_preimage(char32_t target, char32_t lo, char32_t hi);

}  // namespace unicode
}  // namespace dsmoe::text
