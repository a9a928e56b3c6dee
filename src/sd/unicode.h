// The Unicode operations of the CLIP tokenizer's normaliser and pre-tokeniser,
// on UTF-32 code points: UTF-8 decoding with the offset of a bad byte, NFC,
// lower-casing, and the \p{L} / \p{N} / \s classes of the reference regexes.
// Tables come from scripts/gen_unicode_tables.py (read from `tokenizers`).
#pragma once

#include <string>
#include <string_view>

namespace dinv::sd::unicode {

enum class CharClass : unsigned char { other = 0, letter = 1, number = 2, space = 3 };

// Throws IoError naming `what` and the byte offset of the first invalid byte.
std::u32string decode_utf8(std::string_view text, const std::string& what);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view text);

CharClass char_class(char32_t cp);
std::u32string nfc(std::u32string_view text);
// Per code point, as Rust's char::to_lowercase (no context rules).
std::u32string lowercase(std::u32string_view text);

}  // namespace dinv::sd::unicode
