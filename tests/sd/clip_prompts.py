"""Varied prompts for the CLIP tokenizer parity tests (deterministic)."""
import random

WORDS = ("a photo of an astronaut riding a horse on mars, highly detailed, 8k, trending on artstation "
         "portrait of the queen's cat wearing sunglasses oil painting by greg rutkowski and alphonse mucha "
         "cinematic lighting ultra-realistic 4K HDR matte painting cyberpunk city at night neon lights").split()
SCRIPTS = [
    "café", "cafe\u0301", "naïve", "Ångström", "\u212b", "A\u030a", "résumé", "Straße", "İstanbul", "ΣΑΣ σας",
    "Привет мир", "日本語の文章", "中文字符测试", "한국어 텍스트", "\u1112\u1161\u11ab", "עברית", "العربية", "हिन्दी",
    "ภาษาไทย", "🙂", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "ﬁne", "Ｆｕｌｌｗｉｄｔｈ", "½", "x²", "٣٤٥", "Ⅻ", "①",
    "q\u0323\u0307", "q\u0307\u0323", "o\u031b\u0323", "\u1e0b\u0323", "e\u0301\u0301", "\u0301start",
]
PUNCT = ["!", "?", "...", ",", ";", "--", "(", ")", "[", "]", "{", "}", "\"", "'", "''", "`", "~", "@", "#", "$",
         "%", "^", "&", "*", "_", "+", "=", "<", ">", "/", "\\", "|", "…", "—", "«", "»", "¿", "¡", "·"]
CONTRACTIONS = ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "O'Neil", "'sup", "rock'n'roll"]
SPACES = [" ", "  ", "\t", "\n", " \n\t ", "\u00a0", "\u3000", "\u2009", "\u200b", "\u001c", "\u0085", "\r\n"]
SPECIAL = ["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|endoftext", "!<|startoftext|>!"]


def random_code_point(rng):
    while True:
        cp = rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f), rng.randint(0x300, 0x36f),
                         rng.randint(0x370, 0x52f), rng.randint(0x1100, 0x11ff), rng.randint(0x1e00, 0x1fff),
                         rng.randint(0x2000, 0x2bff), rng.randint(0x3000, 0x30ff), rng.randint(0x4e00, 0x9fff),
                         rng.randint(0xac00, 0xd7a3), rng.randint(0xf900, 0xffef), rng.randint(0x1f300, 0x1faff),
                         rng.randint(0x10000, 0x10ffff), rng.randint(0, 0x1f)])
        if not 0xd800 <= cp <= 0xdfff:
            return chr(cp)


def random_piece(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(WORDS).capitalize() if rng.random() < 0.2 else rng.choice(WORDS)
    if kind == 1:
        return rng.choice(SCRIPTS)
    if kind == 2:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 3)))
    if kind == 3:
        return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if kind == 4:
        return rng.choice(CONTRACTIONS)
    if kind == 5:
        return "".join(random_code_point(rng) for _ in range(rng.randint(1, 6)))
    if kind == 6:
        return rng.choice(SPECIAL) if rng.random() < 0.3 else rng.choice(WORDS).upper()
    return rng.choice(WORDS) + rng.choice(PUNCT)


def prompts(count=1200, seed=0):
    rng = random.Random(seed)
    out = ["", " ", "a", "!", "!!!", "wow!", "A photo of a cat", "   leading and trailing   ",
           " ".join(WORDS * 3), "word" * 200, "supercalifragilisticexpialidocious" * 5]
    while len(out) < count:
        n = rng.choice([1, 2, 5, 10, 20, 40, 120])
        text = ""
        for _ in range(n):
            text += random_piece(rng)
            if rng.random() < 0.8:
                text += rng.choice(SPACES) if rng.random() < 0.3 else " "
        out.append(text)
    return out
