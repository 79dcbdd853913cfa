"""The command embedder (SPEC §7 ``[memory] embedder = ["cmd", ...]``) against real processes:
the JSON-lines protocol, and every way a command can fail surfacing as an ``EmbedderError``
that names the command — never a hang, a flood or a stray process."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from palyrad.domain.memory_embedding import BuiltinEmbedder
from palyrad.runtime import command_embedder
from palyrad.runtime.command_embedder import (
    MAX_BATCH,
    CommandEmbedder,
    EmbedderError,
    make_embedder,
)
from tests.daemon_harness import wait_until

pytestmark = pytest.mark.timeout(60)

# A correct embedder: [length, words, 1] per text; appends its pid to PIDS if given.
GOOD = """
import json, os, sys
if len(sys.argv) > 1:
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
for line in sys.stdin:
    text = json.loads(line)
    print(json.dumps([len(text), len(text.split()), 1]))
"""


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def embedder(path: Path, *args: str, timeout_s: float = 30.0) -> CommandEmbedder:
    return CommandEmbedder([sys.executable, str(path), *args], timeout_s=timeout_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (waiting for init to reap it) has exited for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError):  # gone while we looked
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
    return members


def test_vectors_come_back_in_order(tmp_path: Path) -> None:
    texts = ["one", "two words", "", "three\nline\ntext", 'quotes " and \\ and ünïcode ✓']
    vectors = embedder(script(tmp_path, "good", GOOD)).embed(texts)
    assert vectors == [[float(len(t)), float(len(t.split())), 1.0] for t in texts]
    assert all(isinstance(x, float) for v in vectors for x in v)


def test_no_texts_start_no_process(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    assert embedder(script(tmp_path, "good", GOOD), str(pids)).embed([]) == []
    assert not pids.exists()


def test_a_process_per_batch_of_at_most_64(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    texts = [f"text {i}" for i in range(MAX_BATCH + 6)]
    vectors = embedder(script(tmp_path, "good", GOOD), str(pids)).embed(texts)
    assert vectors == [[float(len(t)), 2.0, 1.0] for t in texts]
    assert len(set(pids.read_text().split())) == 2


def test_large_input_and_output_do_not_deadlock(tmp_path: Path) -> None:
    # Answers each line as it reads it, with 4096 numbers: neither side's pipe buffer could
    # hold the other's data, so feeding and reading must be concurrent.
    eager = script(
        tmp_path,
        "eager",
        """
        import json, sys
        for line in sys.stdin:
            n = len(json.loads(line))
            sys.stdout.write(json.dumps([n / 7.0] * 4096) + "\\n")
            sys.stdout.flush()
        """,
    )
    texts = [chr(0x41 + i % 26) * 16384 for i in range(MAX_BATCH)]
    vectors = embedder(eager).embed(texts)
    assert len(vectors) == MAX_BATCH
    assert all(len(v) == 4096 and v[0] == pytest.approx(16384 / 7.0) for v in vectors)


def test_a_text_with_lone_surrogates_is_still_sent(tmp_path: Path) -> None:
    vectors = embedder(script(tmp_path, "good", GOOD)).embed(["bad \udcff byte"])
    assert vectors == [[10.0, 3.0, 1.0]]


def test_the_name_follows_the_command() -> None:
    a = CommandEmbedder(["embed", "--model", "small"])
    assert a.name.startswith("command:") and len(a.name) == len("command:") + 12
    assert a.name == CommandEmbedder(("embed", "--model", "small")).name
    assert a.name != CommandEmbedder(["embed", "--model", "large"]).name
    # NUL-joined: the split between arguments matters
    assert CommandEmbedder(["embed", "ab"]).name != CommandEmbedder(["embed", "a", "b"]).name


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "import sys\nfor line in sys.stdin:\n    print('hello')\n",
            r"not a JSON array of finite numbers \(line 1: 'hello'\)",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print('{\"vector\": [1, 2]}')\n",
            "not a JSON array of finite numbers",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print('[1, \"2\"]')\n",
            "not a JSON array of finite numbers",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print('[1, true]')\n",
            "not a JSON array of finite numbers",
        ),
        (
            "import json, sys\nfor line in sys.stdin:\n"
            "    print(json.dumps([float('nan'), 1.0]))\n",
            "not a JSON array of finite numbers.*no NaN or Infinity",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print('[1e999, 1.0]')\n",
            "not a JSON array of finite numbers",
        ),
        (
            "import sys\nlines = sys.stdin.readlines()\nfor line in lines[1:]:\n    print('[1]')\n",
            "printed 2 lines for 3 texts",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print('[1]')\nprint('[2]')\n",
            "printed 4 lines for 3 texts",
        ),
        (
            "import sys\nfor i, line in enumerate(sys.stdin):\n    print([1.0] * (2 + i % 2))\n",
            r"different dimensions in one batch \(line 1: 2, line 2: 3\)",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print('[]')\n",
            "0 dimensions",
        ),
        (
            "import sys\nfor line in sys.stdin:\n    print([0.5] * 4097)\n",
            "4097 dimensions",
        ),
        (
            "import sys\nsys.stderr.write('x' * 5000 + 'model file /m.bin is missing\\n')\n"
            "sys.exit(3)\n",
            "exited with status 3; stderr: 'x+model file /m.bin is missing'",
        ),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            "was killed by SIGKILL",
        ),
    ],
    ids=[
        "garbage",
        "object",
        "string-element",
        "boolean-element",
        "nan",
        "infinite",
        "too-few-lines",
        "too-many-lines",
        "mixed-dimensions",
        "dimension-0",
        "dimension-4097",
        "exit-3",
        "killed",
    ],
)
def test_a_misbehaving_command_is_an_embedder_error(
    tmp_path: Path, body: str, message: str
) -> None:
    path = script(tmp_path, "bad", body)
    with pytest.raises(EmbedderError, match=message) as raised:
        embedder(path).embed(["one", "two", "three"])
    text = str(raised.value)
    assert str(path) in text  # names the command
    assert "; fix: " in text


def test_only_the_tail_of_stderr_is_reported(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "noisy",
        "import sys\nsys.stderr.write('HEAD' + 'x' * 100000 + 'TAIL')\nsys.exit(1)\n",
    )
    with pytest.raises(EmbedderError, match="TAIL") as raised:
        embedder(path).embed(["one"])
    assert "HEAD" not in str(raised.value)
    assert len(str(raised.value)) < 1000


def test_a_command_that_reads_nothing_and_exits(tmp_path: Path) -> None:
    # Its stdin closes under the writer (EPIPE): reported as what it printed, not raised.
    path = script(tmp_path, "deaf", "pass\n")
    with pytest.raises(EmbedderError, match="printed 0 lines for 64 texts"):
        embedder(path).embed(["y" * 16384] * MAX_BATCH)


def test_a_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    sleeper = script(
        tmp_path,
        "sleeper",
        f"""
        import os, subprocess, sys, time
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{helper.pid}}\\n")
        time.sleep(120)
        """,
    )
    with pytest.raises(EmbedderError, match=r"did not finish within 1 s.*process group"):
        embedder(sleeper, timeout_s=1).embed(["one"])
    leader, helper = (int(p) for p in pids.read_text().split())
    assert not _alive(leader)
    wait_until(lambda: not _alive(helper), timeout=5)
    assert not [pid for pid in _group_members(leader) if _alive(pid)]


def test_output_beyond_the_limit_stops_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command_embedder, "MAX_OUTPUT_BYTES", 1024 * 1024)
    flood = script(
        tmp_path,
        "flood",
        "import sys\nwhile True:\n    sys.stdout.write('[' + '1,' * 10000 + '1]\\n')\n",
    )
    with pytest.raises(EmbedderError, match="more than 1 MiB"):
        embedder(flood).embed(["one"])


def test_a_missing_command_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-embedder"
    with pytest.raises(EmbedderError, match=re.escape(f"'{missing}' was not found")):
        CommandEmbedder([str(missing)]).embed(["one"])
    with pytest.raises(EmbedderError, match="'palyra-no-such-embedder-xyz' was not found"):
        CommandEmbedder(["palyra-no-such-embedder-xyz", "--x"]).embed(["one"])


def test_a_command_that_is_not_executable_is_named(tmp_path: Path) -> None:
    path = script(tmp_path, "plain", GOOD)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(EmbedderError, match=r"is not executable.*fix: chmod"):
        CommandEmbedder([str(path)]).embed(["one"])


def test_an_executable_script_runs_by_its_shebang(tmp_path: Path) -> None:
    path = script(tmp_path, "shebang", f"#!{sys.executable}\n" + GOOD)
    path.chmod(0o700)
    assert CommandEmbedder([str(path)]).embed(["a b"]) == [[3.0, 2.0, 1.0]]


def test_make_embedder_reads_the_setting() -> None:
    assert isinstance(make_embedder("builtin"), BuiltinEmbedder)
    command = make_embedder(("my-embedder", "--flag"))
    assert isinstance(command, CommandEmbedder)
    assert command.argv == ("my-embedder", "--flag")
    assert isinstance(make_embedder(["my-embedder"]), CommandEmbedder)
    with pytest.raises(ValueError, match='"builtin" or a command list'):
        make_embedder("my-embedder --flag")


@pytest.mark.parametrize("argv", [[], [""], "embed"])
def test_an_empty_command_is_refused(argv: list[str] | str) -> None:
    with pytest.raises(ValueError, match="embedder"):
        CommandEmbedder(argv)
