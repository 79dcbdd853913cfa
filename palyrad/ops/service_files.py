"""Service-manager files that run ``palyrad`` in the foreground (systemd, launchd)."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from palyrad.runtime.home import Home


def _palyrad_command() -> list[str]:
    exe = shutil.which("palyrad")
    return [exe] if exe else [sys.executable, "-m", "palyrad"]


def _palyrad_argv(home: Home) -> list[str]:
    return [*_palyrad_command(), "--home", str(home.root), "--no-log-stderr"]


# Bytes that make systemd split, expand or unescape a word of ExecStart= (systemd.service(5)
# "Command lines"; systemd.unit(5) "Specifiers" for %): such a word is double-quoted.
_SYSTEMD_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@"
)


def systemd_word(arg: str) -> str:
    """One ExecStart= argument as systemd reads it back exactly: ``%`` doubled (specifiers),
    ``$`` doubled (environment expansion), and anything but plain path characters
    double-quoted with C-style escapes (a home with spaces, quotes or backslashes)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and set(arg) <= _SYSTEMD_PLAIN | {"%", "$"}:
        return arg
    out = []
    for ch in arg:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def systemd_unit(home: Home, *, user: bool) -> str:
    cmd = " ".join(systemd_word(a) for a in _palyrad_argv(home))
    return (
        "[Unit]\n"
        "Description=Palyra automation daemon\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={cmd}\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
        "KillMode=mixed\n"
        "TimeoutStopSec=30\n"
        "Restart=on-failure\n"
        "RestartSec=2\n\n"
        "[Install]\n"
        f"WantedBy={'default.target' if user else 'multi-user.target'}\n"
    )


def launchd_plist(home: Home) -> str:
    # ProgramArguments is an array, so spaces need nothing; XML's own &, < and > do.
    args = "".join(f"    <string>{escape(a)}</string>\n" for a in _palyrad_argv(home))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
        '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        '<plist version="1.0">\n<dict>\n'
        "  <key>Label</key><string>dev.palyra.palyrad</string>\n"
        f"  <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n"
        "  <key>RunAtLoad</key><true/>\n"
        "  <key>KeepAlive</key><true/>\n"
        "</dict>\n</plist>\n"
    )


def install_service(home: Home, *, user: bool, write: bool = True) -> tuple[Path, str, str]:
    """Write (or just render) the unit; returns (path, text, how to enable it)."""
    if platform.system() == "Darwin":
        path = Path("~/Library/LaunchAgents/dev.palyra.palyrad.plist").expanduser()
        text = launchd_plist(home)
        hint = f"load it with: launchctl load -w {path}"
    else:
        if user:
            base = Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser()
            path = base / "systemd" / "user" / "palyrad.service"
            hint = (
                "enable it with: systemctl --user daemon-reload && "
                "systemctl --user enable --now palyrad"
            )
        else:
            path = Path("/etc/systemd/system/palyrad.service")
            hint = "enable it with: systemctl daemon-reload && systemctl enable --now palyrad"
        text = systemd_unit(home, user=user)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path, text, hint
