"""The built-in memory embedder (SPEC §6 "Memory") and the vector codec the memory store keeps.

Why built in: memory search must find "server deployment" for "deploying the servers" on a
fresh install, with no model to download and no dependency beyond the standard library. A
learned model is better; ``[memory] embedder = ["cmd", ...]`` plugs one in
(``palyrad.runtime.command_embedder``). What is stored with every vector is the embedder's
``name``, so changing the algorithm below means changing ``BUILTIN_NAME``: the store
re-embeds every item whose name differs.

The builtin algorithm (``builtin-hash-v1``), feature hashing ("the hashing trick"):

1. Words: ``words(text)`` — the casefolded text's runs of Unicode letters and digits
   (``_`` splits, so ``snake_case`` is two words).
2. Each distinct word contributes, weighted ``1 + ln(tf)`` (tf = its count in the text):
   the word itself (weight 1.0); a crude stem (weight 1.0): the longest of a short list of
   English suffixes (``-ation(s)`` → ``-at``, ``-ment(s)``, ``-ing(s)``, ``-ies``/``-ied`` →
   ``-y``, ``-ers``, ``-edly``, ``-ly``, ``-ed``, ``-er``, ``-es``, ``-s``, ``-e``; ``-ss``
   stays) that leaves at least 3 characters is stripped, so "deploying", "deployed" and
   "deployment" share ``deploy``, "servers" and "server" share ``serv``; and the character
   trigrams of the stem padded with ``<`` and ``>`` (0.6 each: ``<deploy>`` → ``<de dep epl
   plo loy oy>``), so a typo or another inflection still shares most of them while a whole
   word outweighs any single trigram. Trigrams of the stem rather than the word keep common
   endings (``ing``, ``ent``, ``ers``) from making unrelated texts look alike.
3. Stop words (a short English list: "the", "a", "to", ...) count a quarter as much, so two
   texts are not alike for sharing "the"; a text of stop words only still has features.
4. Bigrams of consecutive content-word stems (stop words skipped; 0.5, ``1 + ln(tf)``) add
   a little word order: "restart the cluster" is nearer "restart cluster" than "cluster
   restart".
5. Every feature is a string with a kind prefix (``w:`` ``s:`` ``t:`` ``b:``, which cannot
   occur inside a word), hashed with CRC-32 and Fibonacci-multiplied (CRC is linear over
   GF(2); the multiplication breaks up its structured collisions): the top 8 bits pick one
   of ``BUILTIN_DIM`` = 256 dimensions, the next bit the sign (signed hashing: collisions
   cancel on average instead of adding up). The vector is then L2-normalized; a text without
   words is the zero vector.

CRC-32, not Python's ``hash()``, which is salted per process (the vector must be the same in
every process and release), and not BLAKE2b, which measured 4x slower per feature. A word's
features and each trigram's slot are cached (bounded LRUs), so a repeated word costs one
dictionary hit: 64 texts of 200 characters took 6-12 ms with warm caches and 22-28 ms
cold on a busy two-core machine.

The codec: a vector is stored as int8 per dimension (``round(v * 127)`` of the normalized
vector; a cosine of two such vectors is within about 0.01 of the float one) plus a sign-bit
code, so a search can scan every item with a Hamming distance
(``(code_int(x) ^ q).bit_count()``) and compute the exact ``similarity`` only for the
closest few hundred.
"""

from __future__ import annotations

import math
import re
import zlib
from array import array
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Protocol

BUILTIN_NAME: str = "builtin-hash-v1"
BUILTIN_DIM: int = 256
MAX_DIM = 4096  # what the store accepts from any embedder (a command's too)

_WORD = re.compile(r"[^\W_]+")
# (suffix, replacement), longest first: the first that leaves a stem of _MIN_STEM wins.
# "-sses"/"-ss" come before "-es"/"-s" so "class" and "classes" agree; "-ation" becomes
# "-at" so "rotation", "rotate" and "rotated" all stem to "rotat".
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ations", "at"),
    ("ation", "at"),
    ("ments", ""),
    ("ment", ""),
    ("ings", ""),
    ("ing", ""),
    ("sses", "ss"),
    ("ies", "y"),
    ("ied", "y"),
    ("ers", ""),
    ("edly", ""),
    ("ss", "ss"),
    ("ly", ""),
    ("ed", ""),
    ("er", ""),
    ("es", ""),
    ("s", ""),
    ("e", ""),
)
_SUFFIXES_BY_LAST: dict[str, tuple[tuple[str, str], ...]] = {
    last: tuple(rule for rule in _SUFFIXES if rule[0].endswith(last))
    for last in {suffix[-1] for suffix, _ in _SUFFIXES}
}
_MIN_STEM = 3
# Words too common to tell items apart: down-weighted here, left out of a search's FTS query.
STOP_WORDS = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "do", "for"),
        *("from", "has", "have", "i", "in", "is", "it", "its", "me", "my", "of", "on"),
        *("or", "so", "that", "the", "their", "this", "to", "was", "we", "were", "will"),
        *("with", "you", "your"),
    }
)

_W_WORD = 1.0
_W_STEM = 1.0
_W_TRIGRAM = 0.6
_W_BIGRAM = 0.5
_STOP_FACTOR = 0.25

_INDEX_SHIFT = 32 - 8  # top 8 bits of the mixed hash: 2**8 == BUILTIN_DIM
_SIGN_BIT = 1 << (_INDEX_SHIFT - 1)
_FIBONACCI = 0x9E3779B1  # 2**32 / golden ratio, odd
# CRC-32 of each kind's prefix, the starting value of its features' CRCs: crc32(b"t:" + x)
# without building the concatenation.
_KIND_WORD = zlib.crc32(b"w:")
_KIND_STEM = zlib.crc32(b"s:")
_KIND_TRIGRAM = zlib.crc32(b"t:")
_KIND_BIGRAM = zlib.crc32(b"b:")
# Bounded caches (a few MB together): memory items repeat most of their words, and far more
# of their trigrams.
_WORD_CACHE_SIZE = 8192
_TRIGRAM_CACHE_SIZE = 16384


class Embedder(Protocol):
    """Text to vectors; ``name`` is stored with every vector (a new name means re-embed)."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in the same order, all of one dimension."""
        ...


class BuiltinEmbedder:
    """The dependency-free, deterministic embedder described in the module docstring."""

    name: str = BUILTIN_NAME

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """``builtin_vector`` of each text."""
        return [builtin_vector(text) for text in texts]


def words(text: str) -> list[str]:
    """The casefolded runs of Unicode letters and digits of ``text``, in order."""
    return _WORD.findall(text.casefold())


def _stem(word: str) -> str:
    for suffix, replacement in _SUFFIXES_BY_LAST.get(word[-1:], ()):
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: len(word) - len(suffix)] + replacement
    return word


def _slot(kind: int, feature: str) -> tuple[int, float]:
    """(dimension, sign) of a feature: CRC-32 of kind prefix + feature, Fibonacci-mixed."""
    mixed = (zlib.crc32(feature.encode(), kind) * _FIBONACCI) & 0xFFFFFFFF
    return mixed >> _INDEX_SHIFT, (-1.0 if mixed & _SIGN_BIT else 1.0)


@lru_cache(maxsize=_TRIGRAM_CACHE_SIZE)
def _trigram_slot(trigram: str) -> tuple[int, float]:
    return _slot(_KIND_TRIGRAM, trigram)


@lru_cache(maxsize=_WORD_CACHE_SIZE)
def _word_features(word: str) -> tuple[str, tuple[tuple[int, float], ...]]:
    """(stem, (dimension, signed weight) of its unigram, stem and stem trigrams)."""
    stem = _stem(word)
    factor = _STOP_FACTOR if word in STOP_WORDS else 1.0
    dim, sign = _slot(_KIND_WORD, word)
    features = [(dim, sign * _W_WORD * factor)]
    dim, sign = _slot(_KIND_STEM, stem)
    features.append((dim, sign * _W_STEM * factor))
    trigram_weight = _W_TRIGRAM * factor
    padded = "<" + stem + ">"
    for i in range(len(padded) - 2):
        dim, sign = _trigram_slot(padded[i : i + 3])
        features.append((dim, sign * trigram_weight))
    return stem, tuple(features)


def builtin_vector(text: str) -> list[float]:
    """The ``BUILTIN_DIM`` floats of ``text``, L2-normalized; all zeros without features."""
    vec = [0.0] * BUILTIN_DIM
    tokens = words(text)
    for word, count in Counter(tokens).items():
        tf = 1.0 + math.log(count)
        for dim, weight in _word_features(word)[1]:
            vec[dim] += tf * weight
    content_stems = [_word_features(word)[0] for word in tokens if word not in STOP_WORDS]
    bigrams = Counter(pairwise(content_stems))
    for (first, second), count in bigrams.items():
        dim, sign = _slot(_KIND_BIGRAM, first + " " + second)
        vec[dim] += sign * _W_BIGRAM * (1.0 + math.log(count))
    norm = math.hypot(*vec)
    if norm == 0.0:
        return vec
    return [x / norm for x in vec]


def encode_vector(vec: Sequence[float]) -> tuple[bytes, bytes]:
    """(int8 per dimension of the L2-normalized ``vec``, its sign bits) for the store.

    The code's bit ``i`` (little-endian, ``ceil(dim / 8)`` bytes) is set iff ``vec[i] > 0``.
    A zero vector encodes as zeros. Raises ValueError for an empty vector, a NaN or infinite
    value, or more than ``MAX_DIM`` dimensions.
    """
    dim = len(vec)
    if dim == 0:
        raise ValueError("cannot encode an empty vector (dimension 0)")
    if dim > MAX_DIM:
        raise ValueError(f"cannot encode a vector of {dim} dimensions: at most {MAX_DIM}")
    values = [float(x) for x in vec]
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise ValueError(f"cannot encode a vector with {value} at index {i}")
    # Scaling by the largest magnitude first keeps hypot from overflowing (1e308s) or
    # losing precision to subnormals.
    largest = max(map(abs, values))
    if largest == 0.0:
        return bytes(dim), bytes((dim + 7) // 8)
    scaled = [value / largest for value in values]
    scale = 127.0 / math.hypot(*scaled)
    quantized = array("b", [max(-127, min(127, round(x * scale))) for x in scaled])
    bits = "".join("1" if value > 0 else "0" for value in reversed(values))
    return quantized.tobytes(), int(bits, 2).to_bytes((dim + 7) // 8, "little")


def code_int(code: bytes) -> int:
    """The sign-bit code as an int, for Hamming distances: ``(code_int(x) ^ q).bit_count()``."""
    return int.from_bytes(code, "little")


def similarity(a: bytes, b: bytes) -> float:
    """Cosine of two int8-quantized vectors; 0.0 when either is zero or their lengths differ."""
    if len(a) != len(b) or not a:
        return 0.0
    # C loops only (this runs a few hundred times per search): hypot for the norms and
    # dist for |a - b|, then the law of cosines; exact enough for int8 components
    # (|error| < 1e-12), and three times faster than summing products with map().
    x = tuple(memoryview(a).cast("b"))
    y = tuple(memoryview(b).cast("b"))
    norm_x = math.hypot(*x)
    norm_y = math.hypot(*y)
    if norm_x == 0.0 or norm_y == 0.0:
        return 0.0
    distance = math.dist(x, y)
    cosine = (norm_x * norm_x + norm_y * norm_y - distance * distance) / (2.0 * norm_x * norm_y)
    return max(-1.0, min(1.0, cosine))
