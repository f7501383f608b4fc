"""Transcript normalisation shared by the corpus readers.

What :func:`normalize_text` does, in order:

1. Repairs the two usual kinds of mojibake: UTF-8 text that was decoded as cp1252 (``â€™`` for
   ``’``) and cp1252 bytes that were decoded as Latin-1 (C1 controls such as ``\\x92`` for ``’``).
2. Unicode NFC (``e`` + combining accent → ``é``); accented letters are kept.
3. Typographic punctuation to ASCII: ``‘ ’ ‚ ′`` → ``'``, ``“ ” „ ″`` → ``"``, ``– — ―`` → ``-``
   (an em dash between words keeps them apart: ``yeah—right`` → ``yeah - right``),
   ``…`` → ``...``, no-break and other odd spaces → space.
4. Drops what is left of control characters, zero-width characters and the replacement
   character ``�`` (stray bytes), then collapses runs of whitespace and strips the ends.

The encoders that follow were pretrained mostly on ASCII punctuation, and MELD mixes both kinds
(``It’s`` and ``It's``), so the same word would otherwise tokenize two ways.

>>> normalize_text("You must’ve had   your hands full…")
"You must've had your hands full..."
>>> normalize_text("It\\x92s \\u201cfine\\u201d")
'It\\'s "fine"'
>>> normalize_text("Oh\\u2014wait! Caf\\u00e9\\ufffd")
'Oh - wait! Café'
>>> normalize_text("It\\u00e2\\u20ac\\u2122s")
"It's"
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text"]

_PUNCT = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "\u00b4": "'", "\u0060": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2012": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u202f": " ", "\u3000": " ",
    "\t": " ", "\n": " ", "\r": " ",
})
_EM_DASH = re.compile(r"\s*[\u2014\u2015]\s*")
_C1 = re.compile(r"[\x80-\x9f]")
_DROP = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff\ufffd]")
_SPACES = re.compile(r"\s+")
_MOJIBAKE_HINT = re.compile(r"[\u00c2\u00c3\u00e2][\u0080-\u00bf\u20ac\u201a-\u2122\u0152-\u0178]")


def _repair_mojibake(text: str) -> str:
    if _MOJIBAKE_HINT.search(text):
        try:
            return text.encode("cp1252").decode("utf-8")
        except UnicodeError:
            pass
    if _C1.search(text):  # cp1252 bytes read as Latin-1: \x92 was a right quote
        return _C1.sub(lambda m: bytes([ord(m.group())]).decode("cp1252", errors="ignore"), text)
    return text


def normalize_text(text: str) -> str:
    """Normalise one transcript (see the module docstring for the exact rules)."""
    text = unicodedata.normalize("NFC", _repair_mojibake(text))
    text = _EM_DASH.sub(" - ", text.translate(_PUNCT))
    text = _DROP.sub("", text)
    return _SPACES.sub(" ", text).strip()
