"""Partner search, with no I/O: a shop is found by its Russian or Latin name, by transliteration
(«озон» ↔ ozon, «алиэкспресс» ↔ aliexpress) and with a typo or two, best match first.

Every name is folded into one Latin spelling of how it sounds (`fold`): accents go (é → e; й and ё
fold like и and е anyway), Cyrillic is transliterated, Latin spellings that sound alike are made
equal (x → ks, w → v, y → i, c → k or s, doubled letters once…), an apostrophe goes («Л'Этуаль» is
"letual") and other punctuation becomes a space. A partner's `search_text` column holds the folded
keys of its name, its aliases (the catalogue's other spellings: «Алиэкспресс», «Али») and its slug,
one per line, written when the partner is stored (`search_text`). A query is folded the same way
and each partner is scored by its best key (`rank`): the whole key equal to the query, then a key
or one of its words starting with it, then a key or word one or two typos away, then rapidfuzz's
weighted ratio (parts of names, word order); ties go to the shorter name, then the name. The ~800
partners are ranked in memory: about 2 ms.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

MIN_SCORE = 78  # a weighted-ratio match below this is noise
# Above any weighted ratio (0-100), best first: the whole key, a key or word starting with the query,
# a key or word one or two typos away (a letter wrong, missing, extra, or two swapped).
EXACT, PREFIX, TYPO = 200.0, 150.0, 120.0

_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
    "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sch", "ъ": "", "ы": "i", "ь": "",
    "э": "e", "ю": "iu", "я": "ia", "і": "i", "ї": "i", "є": "e",
}
# In order: Cyrillic transliterated (so both scripts meet here), then Latin spellings that sound alike.
_LATIN = [
    (re.compile(r"дж"), "j"),
    (re.compile(r"[а-яёіїє]"), lambda m: _CYRILLIC[m.group()]),
    (re.compile(r"shch"), "sch"),
    (re.compile(r"kh"), "h"),
    (re.compile(r"ph"), "f"),
    (re.compile(r"th"), "t"),
    (re.compile(r"ck"), "k"),
    (re.compile(r"x"), "ks"),
    (re.compile(r"c(?=[eiy])"), "s"),
    (re.compile(r"c(?!h)"), "k"),
    (re.compile(r"q"), "k"),
    (re.compile(r"w"), "v"),
    (re.compile(r"y"), "i"),
    (re.compile(r"oo|ou"), "u"),
    (re.compile(r"ee|ea"), "i"),
    (re.compile(r"([a-z])\1+"), r"\1"),
]
_APOSTROPHES = re.compile(r"['’`ʼ]")
_PUNCTUATION = re.compile(r"[^0-9a-zа-яёіїє]+")


def fold(text: str) -> str:
    """Any spelling of a name → its folded key: «М.Видео» → "m video", "AliExpress" → "aliekspres"."""
    key = "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(ch))
    key = _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", key))
    for pattern, replacement in _LATIN:
        key = pattern.sub(replacement, key)
    return " ".join(key.split())


def search_text(name: str, slug: str, aliases: Iterable[str] = ()) -> str:
    """The stored search keys of a partner: each spelling folded, and without its spaces too
    ("m video" and "mvideo"), one per line, no repeats."""
    keys: list[str] = []
    for spelling in (name, *aliases, slug.replace("-", " ")):
        folded = fold(spelling)
        for key in (folded, folded.replace(" ", "")):
            if key and key not in keys:
                keys.append(key)
    return "\n".join(keys)


@dataclass(frozen=True)
class Candidate:
    slug: str
    name: str
    search_text: str


def typos_allowed(query: str) -> int:
    """A short name has room for one typo, a long one for two (a 3-letter query for none)."""
    return 0 if len(query) < 4 else 1 if len(query) < 8 else 2


def rank(query: str, candidates: Iterable[Candidate]) -> list[str]:
    """The slugs of the candidates that match the query, best match first. Each candidate scores
    its best key: EXACT, PREFIX, TYPO (a key or word within `typos_allowed`), else the weighted
    ratio when at least MIN_SCORE; the fuzzy scores of all keys come from rapidfuzz in one pass."""
    folded = fold(query)
    if not folded:
        return []
    found = list(candidates)
    keys, key_owner, words, word_owner = [], [], [], []
    for i, candidate in enumerate(found):
        for key in candidate.search_text.split("\n"):
            keys.append(key)
            key_owner.append(i)
            for word in {key, *key.split(" ")}:
                words.append(word)
                word_owner.append(i)
    best = [0.0] * len(found)
    compact = folded.replace(" ", "")
    for key, i in zip(keys, key_owner, strict=True):
        if key == folded or key == compact:
            best[i] = EXACT
        elif (" " + folded) in (" " + key):  # the key, or one of its words, starts with the query
            best[i] = max(best[i], PREFIX - len(key) / 100)
    if typos := typos_allowed(folded):
        for _, distance, j in process.extract_iter(folded, words, scorer=OSA.distance, score_cutoff=typos):
            best[word_owner[j]] = max(best[word_owner[j]], TYPO - distance)
    for _, points, j in process.extract_iter(folded, keys, scorer=fuzz.WRatio, score_cutoff=MIN_SCORE):
        best[key_owner[j]] = max(best[key_owner[j]], points)
    scored = sorted((-points, len(c.name), c.name, c.slug) for points, c in zip(best, found, strict=True) if points)
    return [slug for *_, slug in scored]
