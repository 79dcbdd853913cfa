"""A start or restart that cannot succeed changes nothing and says why (issue 9, items 7-8):
``daemon restart`` with a broken palyra.toml leaves the running daemon alone, and ``daemon
start`` on a journal that is not a database exits with the reason instead of leaving a
supervisor whose services all crash-loop."""

from __future__ import annotations

from tests.daemon_harness import Daemon, palyra, wait_until


def test_restart_with_a_broken_config_keeps_the_running_daemon(daemon: Daemon) -> None:
    before = daemon.start()
    daemon.home.config.write_text("[daemon\nstop_timeout_ms = 'x'\n")
    proc = palyra(daemon.root, "daemon", "restart", check=False)
    assert proc.returncode == 2
    assert "palyra.toml" in proc.stderr and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    after = daemon.status()
    assert after.running and after.pid == before.pid


def test_start_on_a_corrupt_journal_exits_with_the_reason(daemon: Daemon) -> None:
    daemon.home.journal.write_bytes(b"this is not an SQLite database" * 100)
    proc = palyra(daemon.root, "daemon", "start", check=False, timeout=30)
    assert proc.returncode == 1
    assert "journal" in proc.stderr and "Traceback" not in proc.stderr
    assert "move it aside" in proc.stderr
    wait_until(lambda: not daemon.status().running, timeout=5)
