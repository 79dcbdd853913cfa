"""The built-in embedder and the vector codec (SPEC §6 "Memory"): deterministic across
processes, near for related texts and typos, far for unrelated ones, and a codec whose int8
cosine and sign-bit Hamming distance track the float cosine."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from palyrad.domain.memory_embedding import (
    BUILTIN_DIM,
    BUILTIN_NAME,
    MAX_DIM,
    BuiltinEmbedder,
    Embedder,
    builtin_vector,
    code_int,
    encode_vector,
    similarity,
    words,
)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]

# Pairwise unrelated: no two share a topic (they may share stop words and letters).
UNRELATED = [
    "deploying the servers",
    "bake a chocolate cake",
    "restart the kubernetes cluster",
    "water the plants on the balcony",
    "pay the electricity bill",
    "the weekly grocery list: milk, eggs, bread",
    "remind me to call mom on sunday",
    "my favourite colour is blue",
    "the train leaves at 7:45 from platform 3",
    "python virtual environments and pip",
    "book a dentist appointment",
    "the cat sleeps on the sofa",
    "quarterly tax return is due in april",
]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.hypot(*a) * math.hypot(*b)
    return dot / norms if norms else 0.0


def test_words_are_casefolded_unicode_letters_and_digits() -> None:
    assert words("Deploy the API-Server v2, NOW!") == [
        "deploy",
        "the",
        "api",
        "server",
        "v2",
        "now",
    ]
    assert words("Straße über_alles 42") == ["strasse", "über", "alles", "42"]
    assert words("  ...!?  ") == []


def test_vectors_are_normalized_and_of_the_builtin_dimension() -> None:
    embedder: Embedder = BuiltinEmbedder()
    assert embedder.name == BUILTIN_NAME == "builtin-hash-v1"
    texts = ["deploying the servers", "bake a chocolate cake", "x"]
    vectors = embedder.embed(texts)
    assert vectors == [builtin_vector(t) for t in texts]  # one per text, same order
    for vector in vectors:
        assert len(vector) == BUILTIN_DIM
        assert math.hypot(*vector) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["", "   ", "...!?", "-- // ~~", "\n\t"])
def test_a_text_without_words_is_the_zero_vector(text: str) -> None:
    assert builtin_vector(text) == [0.0] * BUILTIN_DIM


def test_the_same_text_gives_the_same_vector_in_other_processes() -> None:
    # Python's hash() is salted per process (PYTHONHASHSEED); the embedder must not use it.
    text = "Deploying the servers: kubernetes, TLS certificates and the nightly backup"
    program = (
        "import json, sys; from palyrad.domain.memory_embedding import builtin_vector;"
        " print(json.dumps(builtin_vector(sys.argv[1])))"
    )
    here = builtin_vector(text)
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", program, text],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert json.loads(out) == here


def test_the_algorithm_is_pinned_to_its_name() -> None:
    # A change of these bytes is a change of the algorithm: change BUILTIN_NAME with it (the
    # store re-embeds everything stored under the old name), then update the digest.
    digest = hashlib.sha256()
    for text in ["deploying the servers", "Kubernetes TLS certificates 2024", "über alles"]:
        digest.update(encode_vector(builtin_vector(text))[0])
    assert (BUILTIN_NAME, digest.hexdigest()[:16]) == ("builtin-hash-v1", "fc891488ab79f4ff")


def test_a_morphological_variant_is_nearer_than_an_unrelated_text() -> None:
    query = builtin_vector("deploying the servers")
    related = cosine(query, builtin_vector("server deployment"))
    unrelated = cosine(query, builtin_vector("bake a chocolate cake"))
    assert related > 0.5
    assert related > unrelated + 0.3


def test_a_one_letter_typo_stays_close() -> None:
    assert cosine(builtin_vector("kubernetes"), builtin_vector("kubernets")) > 0.5
    sentence = cosine(
        builtin_vector("restart the kubernetes cluster"),
        builtin_vector("restart the kubernets cluster"),
    )
    assert sentence > 0.8


def test_unrelated_texts_are_far_apart() -> None:
    vectors = [builtin_vector(t) for t in UNRELATED]
    worst = max(
        (cosine(vectors[i], vectors[j]), UNRELATED[i], UNRELATED[j])
        for i, j in itertools.combinations(range(len(vectors)), 2)
    )
    assert worst[0] < 0.3, worst


def test_sharing_only_stop_words_is_not_similarity() -> None:
    a = builtin_vector("the report is on the desk")
    b = builtin_vector("the dog is in the garden")
    assert cosine(a, b) < 0.3


def test_embedding_is_fast() -> None:
    # 64 texts of 200 characters in well under 50 ms on a normal machine; the bound here is
    # loose so a loaded CI box does not flake, and still catches an accidental O(n^2).
    rnd = random.Random(5)
    letters = "abcdefghijklmnopqrstuvwxyz"
    texts = [
        " ".join(
            "".join(rnd.choice(letters) for _ in range(rnd.randint(2, 10))) for _ in range(40)
        )[:200]
        for _ in range(64)
    ]
    start = time.perf_counter()
    BuiltinEmbedder().embed(texts)
    assert time.perf_counter() - start < 1.0


# --- the codec ---------------------------------------------------------------------------


def test_encoding_quantizes_the_normalized_vector_and_packs_sign_bits() -> None:
    quantized, code = encode_vector([3.0, -4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-9])
    assert len(quantized) == 9 and len(code) == 2
    values = [b - 256 if b > 127 else b for b in quantized]
    assert values == [round(0.6 * 127), round(-0.8 * 127), 0, 0, 0, 0, 0, 0, 0]
    # bit i set iff v[i] > 0, little-endian: index 0 and index 8 (a tiny positive value)
    assert code_int(code) == (1 << 0) | (1 << 8)
    assert code == bytes([0b00000001, 0b00000001])


def test_encoding_renormalizes() -> None:
    vector = [0.5, -0.25, 2.0, 0.0]
    assert encode_vector(vector) == encode_vector([x * 1000 for x in vector])
    assert encode_vector([1e308, 1e308]) == encode_vector([1.0, 1.0])  # no overflow
    assert encode_vector([5e-324, 0.0]) == encode_vector([1.0, 0.0])  # no underflow


def test_a_zero_vector_encodes_as_zeros() -> None:
    assert encode_vector([0.0] * 256) == (bytes(256), bytes(32))
    assert encode_vector([0.0] * 9) == (bytes(9), bytes(2))
    zero = encode_vector([0.0] * 256)[0]
    assert similarity(zero, zero) == 0.0
    assert similarity(zero, encode_vector(builtin_vector("server"))[0]) == 0.0


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([], "empty"),
        ([1.0, math.nan], "nan at index 1"),
        ([math.inf, 1.0], "inf at index 0"),
        ([1.0, -math.inf], "-inf at index 1"),
        ([0.1] * (MAX_DIM + 1), "4097 dimensions"),
    ],
)
def test_encoding_refuses_what_the_store_cannot_hold(vector: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_vector(vector)


def test_the_largest_dimension_is_accepted() -> None:
    quantized, code = encode_vector([1.0] * MAX_DIM)
    assert len(quantized) == MAX_DIM and len(code) == MAX_DIM // 8
    assert code_int(code) == (1 << MAX_DIM) - 1


def test_a_vector_is_similar_to_itself() -> None:
    for text in ["deploying the servers", "x", "a much longer text " * 20]:
        quantized = encode_vector(builtin_vector(text))[0]
        assert similarity(quantized, quantized) == pytest.approx(1.0, abs=1e-9)


def test_quantized_similarity_tracks_the_float_cosine() -> None:
    rnd = random.Random(11)
    pairs: list[tuple[list[float], list[float]]] = []
    for _ in range(100):
        a = [rnd.gauss(0.0, 1.0) for _ in range(256)]
        noise = rnd.choice([0.1, 0.5, 1.0, 3.0, 100.0])
        pairs.append((a, [x + rnd.gauss(0.0, noise) for x in a]))
    texts = [builtin_vector(t) for t in [*UNRELATED, "server deployment", "kubernets"]]
    pairs += list(itertools.combinations(texts, 2))
    for a, b in pairs:
        quantized = similarity(encode_vector(a)[0], encode_vector(b)[0])
        assert quantized == pytest.approx(cosine(a, b), abs=0.02)


def test_vectors_of_different_lengths_are_not_similar() -> None:
    assert similarity(encode_vector([1.0, 2.0])[0], encode_vector([1.0, 2.0, 0.0])[0]) == 0.0
    assert similarity(b"", b"") == 0.0


def test_hamming_distance_of_codes_follows_similarity() -> None:
    def code(text: str) -> int:
        return code_int(encode_vector(builtin_vector(text))[1])

    query = code("deploying the servers")
    near = (query ^ code("server deployment")).bit_count()
    middle = (query ^ code("deploy the web server to production")).bit_count()
    far = [(query ^ code(t)).bit_count() for t in UNRELATED[1:]]
    assert (query ^ query).bit_count() == 0
    assert near < middle < min(far)
