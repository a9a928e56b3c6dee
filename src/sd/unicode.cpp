#include "unicode.h"

#include <algorithm>
#include <iterator>

#include "dinv/core/error.h"

namespace dinv::sd::unicode {
namespace {

struct ClassRange {
  char32_t first, last;
  unsigned char cls;
};
struct LowerEntry {
  char32_t cp;
  char32_t lower[3];
};
struct CccRange {
  char32_t cp;
  unsigned char ccc;
};
struct DecompEntry {
  char32_t cp;
  unsigned offset, length;
};
struct ComposeEntry {
  char32_t first, second, composite;
};

#include "unicode_tables.inc"

// Hangul syllables compose and decompose by arithmetic (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

unsigned char combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it =
      std::lower_bound(std::begin(kCcc), std::end(kCcc), cp, [](const CccRange& e, char32_t c) { return e.cp < c; });
  return (it != std::end(kCcc) && it->cp == cp) ? it->ccc : 0;
}

void decompose_into(std::u32string& out, char32_t cp) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), cp,
                             [](const DecompEntry& e, char32_t c) { return e.cp < c; });
  if (it != std::end(kDecomp) && it->cp == cp) {
    out.append(kDecompData + it->offset, it->length);
  } else {
    out.push_back(cp);
  }
}

// 0 when the pair has no primary composite.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kCompose), std::end(kCompose), std::make_pair(a, b),
                             [](const ComposeEntry& e, const std::pair<char32_t, char32_t>& k) {
                               return std::make_pair(e.first, e.second) < k;
                             });
  return (it != std::end(kCompose) && it->first == a && it->second == b) ? it->composite : 0;
}

// Stable sort of every run of non-starters by combining class.
void canonical_order(std::u32string& s) {
  size_t i = 0;
  while (i < s.size()) {
    if (combining_class(s[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && combining_class(s[j]) != 0) ++j;
    std::stable_sort(s.begin() + i, s.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
}

std::u32string canonical_compose(const std::u32string& d) {
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  unsigned char last_ccc = 0;
  for (char32_t ch : d) {
    const unsigned char ccc = combining_class(ch);
    if (starter != std::u32string::npos) {
      const bool adjacent = out.size() - 1 == starter;
      if (adjacent || (last_ccc != 0 && last_ccc < ccc)) {
        if (char32_t c = compose_pair(out[starter], ch)) {
          out[starter] = c;
          continue;
        }
      }
    }
    if (ccc == 0) starter = out.size();
    last_ccc = ccc;
    out.push_back(ch);
  }
  return out;
}

}  // namespace

std::u32string decode_utf8(std::string_view text, const std::string& what) {
  std::u32string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto fail = [&](size_t at) {
    throw IoError(what + " is not valid UTF-8: invalid byte 0x" +
                  [](unsigned v) {
                    const char* h = "0123456789abcdef";
                    return std::string{h[v >> 4], h[v & 15]};
                  }(p[at]) +
                  " at byte offset " + std::to_string(at));
  };
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0, min = 0;
    if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
      min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
      min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
      min = 0x10000;
    } else
      fail(i);
    if (i + len > n) fail(i);
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) fail(i + k);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail(i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(out, cp);
  return out;
}

CharClass char_class(char32_t cp) {
  auto it = std::upper_bound(std::begin(kClassRanges), std::end(kClassRanges), cp,
                             [](char32_t c, const ClassRange& r) { return c < r.first; });
  if (it == std::begin(kClassRanges)) return CharClass::other;
  --it;
  return cp <= it->last ? static_cast<CharClass>(it->cls) : CharClass::other;
}

std::u32string nfc(std::u32string_view text) {
  // ASCII and the Latin-1 symbols below U+00C0 neither decompose nor combine.
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0xC0; })) return std::u32string(text);
  std::u32string d;
  d.reserve(text.size() + 8);
  for (char32_t cp : text) decompose_into(d, cp);
  canonical_order(d);
  return canonical_compose(d);
}

std::u32string lowercase(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) {
    if (cp < 0x80) {
      out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
      continue;
    }
    auto it = std::lower_bound(std::begin(kLower), std::end(kLower), cp,
                               [](const LowerEntry& e, char32_t c) { return e.cp < c; });
    if (it == std::end(kLower) || it->cp != cp) {
      out.push_back(cp);
      continue;
    }
    for (char32_t l : it->lower)
      if (l) out.push_back(l);
  }
  return out;
}

}  // namespace dinv::sd::unicode
