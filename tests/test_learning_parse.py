"""The pure part of learning (SPEC §6): ``::palyra-learn`` lines, the output scan, sampling.

The parse cases are tables of (line, expected); the scan cases write real files and read
them back with small chunks, so lines and markers cross chunk boundaries.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import orjson
import pytest

from palyrad.domain import learning
from palyrad.domain.learning import (
    KINDS,
    MARKER,
    MAX_LINE_BYTES,
    MAX_TEXT_BYTES,
    LearnLine,
    LearnProblem,
    parse_learn_line,
    sampled,
    scan_output,
)

pytestmark = pytest.mark.timeout(60)


def learn(
    kind: object = "fact", text: object = "the NAS is //nas", confidence: object = 0.9
) -> bytes:
    body = orjson.dumps({"kind": kind, "text": text, "confidence": confidence})
    return MARKER + b" " + body


# --- parse_learn_line ------------------------------------------------------------------

VALID = [
    (learn("fact", "a", 0.95), LearnLine(1, "fact", "a", 0.95)),
    (learn("preference", "b", 1), LearnLine(1, "preference", "b", 1.0)),
    (learn("procedure", "c", 0), LearnLine(1, "procedure", "c", 0.0)),
    (learn("fact", "  padded\t", 0.5), LearnLine(1, "fact", "padded", 0.5)),
    (b"   \t" + learn(), LearnLine(1, "fact", "the NAS is //nas", 0.9)),
    (learn() + b"\r", LearnLine(1, "fact", "the NAS is //nas", 0.9)),
    (learn() + b"  \t\r", LearnLine(1, "fact", "the NAS is //nas", 0.9)),
    (learn() + b"\n", LearnLine(1, "fact", "the NAS is //nas", 0.9)),
    (MARKER + b'\t\t{"confidence":1.0,"text":"x","kind":"fact"}', LearnLine(1, "fact", "x", 1.0)),
    (learn("fact", "Grüße, 日本", 0.7), LearnLine(1, "fact", "Grüße, 日本", 0.7)),
    (learn("fact", "x" * MAX_TEXT_BYTES, 0.7), LearnLine(1, "fact", "x" * MAX_TEXT_BYTES, 0.7)),
]


@pytest.mark.parametrize(("line", "expected"), VALID)
def test_valid_lines(line: bytes, expected: LearnLine) -> None:
    assert parse_learn_line(line, 1) == expected


def test_every_kind_is_accepted() -> None:
    for kind in KINDS:
        found = parse_learn_line(learn(kind), 3)
        assert isinstance(found, LearnLine)
        assert (found.line_no, found.kind) == (3, kind)


def test_confidence_is_a_float() -> None:
    found = parse_learn_line(learn(confidence=1), 1)
    assert isinstance(found, LearnLine)
    assert type(found.confidence) is float


NOT_MARKER = [
    b"",
    b"   ",
    b"hello world",
    b"::palyra",
    b"  ::palyra-lear",
    b"+ echo '" + learn() + b"'",
    b"echo " + learn(),
    b"x" + learn(),
    b"::palyra-learnX " + learn()[len(MARKER) + 1 :],
    b"::palyra-learned something",
    b"::palyra-learn-more {}",
    b"::palyra-learn_2 {}",
    b"::PALYRA-LEARN " + learn()[len(MARKER) + 1 :],
    b"\xff\xfe not utf-8 at all",
]


@pytest.mark.parametrize("line", NOT_MARKER)
def test_not_marker_lines(line: bytes) -> None:
    assert parse_learn_line(line, 1) is None


OBJ = b'{"kind": "fact", "text": "t", "confidence": 0.5}'
MALFORMED = [
    # (line, a fragment the message must hold)
    (MARKER, "expected a JSON object"),
    (MARKER + b"   \r", "expected a JSON object"),
    (MARKER + OBJ, "expected a space"),
    (MARKER + b":" + OBJ, "expected a space"),
    (MARKER + b" hello", "not valid JSON"),
    (MARKER + b" [1, 2]", "expected a JSON object, got an array"),
    (MARKER + b' "text"', "expected a JSON object, got a string"),
    (MARKER + b" 3", "expected a JSON object, got a number"),
    (MARKER + b" null", "expected a JSON object, got null"),
    (MARKER + b' {"kind": "fact", "text": "t"', "not valid JSON"),
    (MARKER + b" " + OBJ + b" trailing", "not valid JSON"),
    (MARKER + b" {'kind': 'fact'}", "not valid JSON"),
    (
        MARKER + b' {"kind": "fact", "text": "t", "confidence": 0.5, "tags": []}',
        'unknown key "tags" (known keys: kind, text, confidence)',
    ),
    (
        MARKER + b' {"kind": "fact", "text": "t", "confidence": 0.5, "a": 1, "b": 2, "c": 3}',
        'unknown keys "a", "b" and 1 more (known keys: kind, text, confidence)',
    ),
    (MARKER + b' {"kind": "fact", "text": "t"}', 'missing key "confidence"'),
    (MARKER + b' {"kind": "fact"}', 'missing keys "text", "confidence"'),
    (MARKER + b" {}", 'missing keys "kind", "text", "confidence"'),
    (learn(kind="opinion"), '"kind" must be one of fact, preference, procedure (got "opinion")'),
    (learn(kind="FACT"), '"kind" must be one of'),
    (learn(kind=3), '"kind" must be one of fact, preference, procedure (got 3)'),
    (learn(text=""), '"text" is empty'),
    (learn(text=" \t\n "), '"text" is empty'),
    (MARKER + b' {"kind": "fact", "text": null, "confidence": 1}', '"text" must be a string'),
    (learn(text="x" * (MAX_TEXT_BYTES + 1)), f'"text" is longer than {MAX_TEXT_BYTES} bytes'),
    (learn(text="é" * (MAX_TEXT_BYTES // 2 + 1)), f'"text" is longer than {MAX_TEXT_BYTES} bytes'),
    (learn(text="a\0b"), '"text" contains a NUL character'),
    (learn(confidence=True), '"confidence" must be a number from 0 to 1 (got true)'),
    (learn(confidence=False), '"confidence" must be a number from 0 to 1 (got false)'),
    (learn(confidence="0.9"), '"confidence" must be a number from 0 to 1 (got "0.9")'),
    (learn(confidence=None), '"confidence" must be a number from 0 to 1 (got null)'),
    (learn(confidence=1.5), '"confidence" must be a number from 0 to 1 (got 1.5)'),
    (learn(confidence=-0.1), '"confidence" must be a number from 0 to 1 (got -0.1)'),
    (learn(confidence=2), '"confidence" must be a number from 0 to 1 (got 2)'),
    # orjson refuses NaN and infinities outright: they are not JSON.
    (MARKER + b' {"kind": "fact", "text": "t", "confidence": NaN}', "not valid JSON"),
    (MARKER + b' {"kind": "fact", "text": "t", "confidence": Infinity}', "not valid JSON"),
    (MARKER + b' {"kind": "fact", "text": "t", "confidence": 1e999}', "not valid JSON"),
    (MARKER + b' {"kind": "fact", "text": "caf\xe9", "confidence": 1}', "not valid UTF-8"),
    (MARKER + b' {"kind": "fact", "text": "\xed\xa0\x80", "confidence": 1}', "not valid UTF-8"),
    (b"  " + MARKER + b" {", "not valid JSON"),
]


@pytest.mark.parametrize(("line", "fragment"), MALFORMED)
def test_malformed_lines(line: bytes, fragment: str) -> None:
    found = parse_learn_line(line, 12)
    assert isinstance(found, LearnProblem), found
    assert found.line_no == 12
    assert found.message.startswith("line 12: ")
    assert fragment in found.message, found.message


@pytest.mark.parametrize(
    "line",
    [
        learn(kind="k" * 5000),
        learn(confidence="9" * 5000),
        MARKER + b' {"' + b"k" * 5000 + b'": 1, "kind": "fact", "text": "t", "confidence": 1}',
        MARKER + b" " + orjson.dumps({"kind": ["x" * 3000] * 5, "text": "t", "confidence": 1}),
    ],
)
def test_messages_quote_little_of_the_line(line: bytes) -> None:
    found = parse_learn_line(line, 1)
    assert isinstance(found, LearnProblem)
    assert len(found.message) < 200, found.message


def test_an_overlong_marker_line_is_a_problem() -> None:
    line = learn(text="x" * MAX_LINE_BYTES)
    found = parse_learn_line(line, 4)
    assert found == LearnProblem(4, f"line 4: longer than {MAX_LINE_BYTES} bytes")
    assert parse_learn_line(b"y" * (MAX_LINE_BYTES + 1), 4) is None


# --- scan_output -----------------------------------------------------------------------


def write(path: Path, lines: list[bytes], final_newline: bool = True) -> Path:
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    return path


@pytest.mark.parametrize("chunk_size", [1, 7, 13, 14, 15, 64, 1 << 16])
def test_scan_finds_lines_with_their_numbers(tmp_path: Path, chunk_size: int) -> None:
    lines = [
        b"starting",
        learn("fact", "one", 0.9),  # 2
        b"+ echo '" + learn() + b"'",
        b"\xff\xfe\x00 garbage",
        b"   " + learn("preference", "two", 1) + b"\r",  # 5
        b"",
        MARKER + b" {oops",  # 7
        b"x" * 100,
        learn("procedure", "three", 0),  # 9
    ]
    path = write(tmp_path / "out.log", lines, final_newline=False)
    scan = scan_output(path, 8, chunk_size=chunk_size)
    assert scan.lines == (
        LearnLine(2, "fact", "one", 0.9),
        LearnLine(5, "preference", "two", 1.0),
        LearnLine(9, "procedure", "three", 0.0),
    )
    assert [p.line_no for p in scan.problems] == [7]
    assert scan.problems[0].message.startswith("line 7: not valid JSON")
    assert (scan.malformed, scan.over_limit) == (1, 0)


def test_scan_counts_the_lines_over_max_lines(tmp_path: Path) -> None:
    lines = [learn(text=f"item {i}") for i in range(12)]
    scan = scan_output(write(tmp_path / "out.log", lines), 8)
    assert [ln.text for ln in scan.lines] == [f"item {i}" for i in range(8)]
    assert [ln.line_no for ln in scan.lines] == list(range(1, 9))
    assert scan.over_limit == 4
    assert scan_output(tmp_path / "out.log", 0).over_limit == 12


def test_scan_keeps_twenty_problems_and_counts_all(tmp_path: Path) -> None:
    lines = [b"noise", *(MARKER + b" [" + str(i).encode() + b"]" for i in range(30))]
    scan = scan_output(write(tmp_path / "out.log", lines), 8, chunk_size=50)
    assert len(scan.problems) == 20
    assert scan.malformed == 30
    assert [p.line_no for p in scan.problems] == list(range(2, 22))
    assert scan.lines == ()


def test_line_numbers_across_many_chunks(tmp_path: Path) -> None:
    lines: list[bytes] = []
    expected: list[int] = []
    for i in range(2000):
        if i % 97 == 5:
            lines.append(learn(text=f"t{i}"))
            expected.append(i + 1)
        else:
            lines.append(b"line %d " % i + b"." * (i % 31))
    path = write(tmp_path / "out.log", lines)
    for chunk_size in (16, 100, 1000, 1 << 16):
        scan = scan_output(path, 1000, chunk_size=chunk_size)
        assert [ln.line_no for ln in scan.lines] == expected, chunk_size
        assert [ln.text for ln in scan.lines] == [f"t{n - 1}" for n in expected]


def test_a_marker_split_across_chunks_is_found(tmp_path: Path) -> None:
    prefix = b"a" * 10 + b"\n"
    path = write(tmp_path / "out.log", [prefix[:-1], learn(text="split")])
    for cut in range(len(prefix), len(prefix) + len(MARKER) + 2):
        # chunk boundary at every byte of the marker and just after it
        scan = scan_output(path, 8, chunk_size=cut)
        assert scan.lines == (LearnLine(2, "fact", "split", 0.9),), cut


def test_a_final_line_without_newline_counts(tmp_path: Path) -> None:
    path = write(tmp_path / "out.log", [b"x", learn(text="last")], final_newline=False)
    assert scan_output(path, 8).lines == (LearnLine(2, "fact", "last", 0.9),)
    cut = tmp_path / "cut.log"  # truncated mid-line: reported, not fatal
    cut.write_bytes(b"x\n" + learn(text="last")[:-10])
    scan = scan_output(cut, 8)
    assert scan.lines == ()
    assert [p.line_no for p in scan.problems] == [2]


def test_an_empty_file_and_a_missing_file_hold_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_bytes(b"")
    for path in (tmp_path / "empty.log", tmp_path / "missing.log"):
        scan = scan_output(path, 8)
        assert (scan.lines, scan.problems, scan.malformed, scan.over_limit) == ((), (), 0, 0)


def test_other_os_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        scan_output(tmp_path, 8)


def test_invalid_utf8_elsewhere_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"\xff\xfe\xfd\n\x80abc\xc3\n" + learn(text="ok") + b"\n\xe2\x82\n")
    scan = scan_output(path, 8, chunk_size=5)
    assert scan.lines == (LearnLine(3, "fact", "ok", 0.9),)
    assert scan.malformed == 0


def test_crlf_output(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    path.write_bytes(b"hello\r\n" + learn(text="crlf") + b"\r\n" + b"bye\r\n")
    assert scan_output(path, 8, chunk_size=3).lines == (LearnLine(2, "fact", "crlf", 0.9),)


@pytest.mark.parametrize("chunk_size", [1000, 1 << 16, 1 << 20])
def test_overlong_lines(tmp_path: Path, chunk_size: int) -> None:
    big = b"x" * (MAX_LINE_BYTES + 10)
    lines = [
        learn(text="before"),  # 1
        learn(text="y" * MAX_LINE_BYTES),  # 2: marker line, too long
        big,  # 3: not a marker line, ignored
        b" " * (MAX_LINE_BYTES + 10) + learn(),  # 4: whitespace made it too long
        b"::paly" + big,  # 5: not the marker
        MARKER + b"ed" + big,  # 6: another word
        b" " * (MAX_LINE_BYTES + 10) + b"::paly",  # 7: never became the marker
        learn(text="after"),  # 8
        b"\t" * (MAX_LINE_BYTES + 10) + MARKER,  # 9: the marker, then the line ended
    ]
    path = write(tmp_path / "out.log", lines, final_newline=False)
    scan = scan_output(path, 8, chunk_size=chunk_size)
    assert scan.lines == (
        LearnLine(1, "fact", "before", 0.9),
        LearnLine(8, "fact", "after", 0.9),
    )
    assert scan.problems == tuple(
        LearnProblem(n, f"line {n}: longer than {MAX_LINE_BYTES} bytes") for n in (2, 4, 9)
    )


def test_an_overlong_line_is_not_buffered(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    with path.open("wb") as f:
        f.write(b"first\n" + MARKER + b' {"kind": "fact", "text": "')
        f.write(b"z" * (5 << 20))
        f.write(b'", "confidence": 1}\n' + learn(text="next"))
    tracemalloc.start()
    try:
        scan = scan_output(path, 8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert scan.problems == (LearnProblem(2, f"line 2: longer than {MAX_LINE_BYTES} bytes"),)
    assert scan.lines == (LearnLine(3, "fact", "next", 0.9),)


def test_a_long_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "out.log"
    noise = b"".join(b"output line %d with some words in it\n" % i for i in range(1000))
    with path.open("wb") as f:
        for _ in range(10):
            f.write(noise)
        f.write(b"q" * (3 << 20))  # and an unterminated 3 MiB line at the end
    tracemalloc.start()
    try:
        scan = scan_output(path, 8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert (scan.lines, scan.problems) == ((), ())


def test_only_lines_holding_the_marker_are_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path: lines without the marker never reach the per-line parser."""
    calls: list[int] = []
    real = learning.parse_learn_line

    def counting(line: bytes, line_no: int) -> LearnLine | LearnProblem | None:
        calls.append(line_no)
        return real(line, line_no)

    monkeypatch.setattr(learning, "parse_learn_line", counting)
    lines = [b"noise %d" % i for i in range(5000)]
    lines[100] = learn(text="a")
    lines[2500] = b"+ echo '" + learn(text="b") + b"'"
    lines[4999] = learn(text="c")
    scan = scan_output(write(tmp_path / "out.log", lines), 8, chunk_size=4096)
    assert [ln.line_no for ln in scan.lines] == [101, 5000]
    assert calls == [101, 2501, 5000]


# --- sampled ---------------------------------------------------------------------------


def test_sampling_extremes() -> None:
    ids = [f"01J{i:023d}" for i in range(200)]
    assert not any(sampled(run_id, 0) for run_id in ids)
    assert all(sampled(run_id, 100) for run_id in ids)


def test_sampling_half_is_roughly_half_and_deterministic() -> None:
    ids = [f"run-{i}" for i in range(1000)]
    first = [sampled(run_id, 50) for run_id in ids]
    assert 430 <= sum(first) <= 570
    assert first == [sampled(run_id, 50) for run_id in ids]


def test_sampling_follows_the_digest() -> None:
    import hashlib

    for run_id in ("a", "01HZZZZZZZZZZZZZZZZZZZZZZZ", "ü"):
        bucket = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") % 100
        assert sampled(run_id, bucket + 1)
        assert not sampled(run_id, bucket)


def test_a_log_swapped_for_a_symlink_or_fifo_is_not_read(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.log"
    target.write_bytes(b'::palyra-learn {"kind": "fact", "text": "x", "confidence": 1}\n')
    link = tmp_path / "run.log"
    link.symlink_to(target)
    assert scan_output(link, 8).lines == ()
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    assert scan_output(fifo, 8).lines == ()  # neither blocks nor reads


def test_reading_stops_at_max_bytes(tmp_path: Path) -> None:
    line = b'::palyra-learn {"kind": "fact", "text": "x", "confidence": 1}\n'
    path = tmp_path / "run.log"
    path.write_bytes(line * 10)
    assert len(scan_output(path, 100, max_bytes=len(line) * 3).lines) == 3
    assert len(scan_output(path, 100, max_bytes=len(line) * 3 + 5, chunk_size=7).lines) == 3
