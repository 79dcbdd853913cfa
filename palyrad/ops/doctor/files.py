"""Checks of the files the operator owns: the home's folders (``home``), palyra.toml
(``config``), definitions.json (``definitions``) and the skills index (``skills_index``)."""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import orjson

from palyrad.journal import STATE_DEFINITIONS_APPLIED, STATE_DEFINITIONS_ERROR
from palyrad.ops.doctor.check import DoctorCheck, plural
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn
from palyrad.runtime.home_safety import (
    HOME_DIRS,
    chmod_private_dir,
    chmod_private_file,
    home_findings,
    judge_dir,
)
from routines.validate import format_issue, validate_text

SHOWN_ERRORS = 3  # validation errors shown under the message


class HomeCheck(DoctorCheck):
    """The home and its folders: present, ours, written by no one else (the daemon refuses
    to start otherwise: ``runtime.home_safety``, the one judgement of both)."""

    check_id = "home"

    def run(self, ctx: DoctorContext) -> CheckResult:
        root = ctx.home.root
        if not os.path.lexists(root):
            return warn(
                self.check_id,
                f"no home at {root} yet (created 0700 at the first daemon start)",
                "palyra daemon start",
            )
        findings = home_findings(ctx.home)
        top = next((f for f in findings if f.path == root), None)
        if top is not None and not top.chmod_fixes:  # not a directory, or not ours
            return fail(self.check_id, f"{root} {top.problem}", top.fix)
        missing = [d for d in HOME_DIRS if not os.path.lexists(root / d)]
        lines = [f"{f.path} {f.problem}" for f in findings]
        lines += [f"{root / d}/ is missing" for d in missing]
        if not lines:
            mode = stat.S_IMODE(os.stat(root).st_mode)
            return ok(self.check_id, f"{root} (mode {mode:04o}, yours; folders private)")
        repairable = any(f.chmod_fixes for f in findings) or bool(missing)
        fixes = [f.fix for f in findings]
        if missing:
            fixes.append("palyra doctor --repair creates the missing folders (0700)")
        elif repairable:
            fixes.append("or run: palyra doctor --repair")
        message = lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")
        refused = [f for f in findings if f.refused]
        if refused:
            message += "; palyrad refuses to start on it"
        result = fail if refused else warn
        return result(
            self.check_id, message, "; ".join(fixes), repairable=repairable, details=lines
        )

    def repair(self, ctx: DoctorContext) -> list[str]:
        """chmod 700 what others can write (or read), chmod 600 a protected file others can
        write; create missing folders 0700 — only
        inside a home that exists and is ours (never the home itself)."""
        root = ctx.home.root
        done: list[str] = []
        for finding in home_findings(ctx.home):
            if finding.chmod_fixes and finding.is_file:
                chmod_private_file(finding.path)
                done.append(f"chmod 600 {finding.path}")
            elif finding.chmod_fixes:
                # Never through a symlink inside the home (the home itself: as named).
                chmod_private_dir(finding.path, follow=finding.path == root)
                done.append(f"chmod 700 {finding.path}")
        if judge_dir(root, protected=True) is None and os.path.isdir(root):
            for d in HOME_DIRS:
                path = root / d
                if not os.path.lexists(path):
                    path.mkdir(mode=0o700)
                    chmod_private_dir(path, follow=False)  # whatever the umask
                    done.append(f"created {path}/ (0700)")
        return done


class ConfigCheck(DoctorCheck):
    """palyra.toml parses and every key is known and in range (the daemon refuses to start
    otherwise)."""

    check_id = "config"

    def run(self, ctx: DoctorContext) -> CheckResult:
        if ctx.config_error is not None:
            return fail(
                self.check_id,
                str(ctx.config_error),
                ctx.config_error.hint
                or f"edit {ctx.home.config}, then: palyra doctor --only config",
            )
        if not ctx.home.config.exists():
            return ok(self.check_id, "no palyra.toml: every default applies")
        return ok(self.check_id, f"{ctx.home.config} is valid")


_POSITION = re.compile(r"^(.*?:\d+:\d+)(?=: )")


def _position(line: str, path: str) -> str:
    """``file:line:col`` of a formatted issue (the file alone for file-level issues)."""
    m = _POSITION.match(line)
    return m.group(1) if m else path


def _state_json(ctx: DoctorContext, key: str) -> dict[str, Any] | None:
    journal = ctx.journal
    raw = journal.state.get(key) if journal is not None else None
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class DefinitionsCheck(DoctorCheck):
    """definitions.json is valid. Fast path: when its hash is the one the daemon journaled
    when it applied the file, those exact bytes were validated already (validating 10 000
    routines again would cost most of doctor's one-second budget)."""

    check_id = "definitions"

    def run(self, ctx: DoctorContext) -> CheckResult:
        defs = ctx.definitions
        path = str(defs.path)
        if defs.missing:
            if ctx.home.last_good_definitions.exists():
                return fail(
                    self.check_id,
                    f"{path} is missing; palyrad keeps running the last good definitions",
                    f"restore it (palyra keeps {path}.bak), or write"
                    ' {"schema_version": 1, "routines": []} to remove every routine',
                )
            return ok(self.check_id, f"no routines yet ({path} does not exist)")
        if defs.data is None:
            line = format_issue(path, defs.issue) if defs.issue else f"{path}: cannot read"
            return fail(self.check_id, line, "fix it, then run: palyra routines validate")
        refused = _state_json(ctx, STATE_DEFINITIONS_ERROR)
        if refused is not None and refused.get("file_hash") == defs.digest:
            errors = [str(e) for e in refused.get("errors") or []]
            first = errors[0] if errors else f"{path} is invalid"
            runs = "it runs" if ctx.running else "at its next start it runs"
            return fail(
                self.check_id,
                f"palyrad refused to apply {path} ({plural(len(errors), 'error')}; {runs}"
                f" the last good definitions): {first}",
                f"fix {_position(first, path)}, then run: palyra routines validate",
                details=errors[:SHOWN_ERRORS],
            )
        applied = _state_json(ctx, STATE_DEFINITIONS_APPLIED)
        if applied is not None and applied.get("file_hash") == defs.digest:
            count = applied.get("count")
            return ok(
                self.check_id,
                f"{path}: {plural(int(count or 0), 'routine')}, valid and applied",
            )
        result = validate_text(
            defs.data,
            filename=path,
            now_ms=ctx.now_ms,
            env=ctx.env,
            default_timezone=ctx.config.scheduler_timezone,
        )
        if result.definitions is None:
            lines = [format_issue(path, e) for e in result.errors]
            return fail(
                self.check_id,
                f"{path} is invalid ({plural(len(lines), 'error')}): {lines[0]}",
                f"fix {_position(lines[0], path)}, then run: palyra routines validate",
                details=lines[:SHOWN_ERRORS],
            )
        n = len(result.definitions.routines)
        when = (
            "applied by the running daemon within seconds"
            if ctx.running
            else "applied at the next daemon start"
        )
        notes = f"; {plural(len(result.warnings), 'warning')}" if result.warnings else ""
        return ok(self.check_id, f"{path}: {plural(n, 'routine')}, valid ({when}){notes}")


class SkillsIndexCheck(DoctorCheck):
    """skills/installed-index.json and trust-store.json validate (the daemon applies neither
    otherwise), and no installed skill is quarantined."""

    check_id = "skills_index"

    def run(self, ctx: DoctorContext) -> CheckResult:
        from palyrad.ops.skills import trust_store_path, views
        from routines.skills_files import load_index, load_trust

        index_path, trust_path = ctx.home.installed_index, trust_store_path(ctx.home)
        index, trust = load_index(index_path), load_trust(trust_path)
        for path, result in ((index_path, index), (trust_path, trust)):
            if result.errors:
                lines = [format_issue(str(path), e) for e in result.errors]
                return fail(
                    self.check_id,
                    f"{path} is invalid: the daemon keeps the last good one ({lines[0]})",
                    "fix it (the position is in the message), then: palyra skills list",
                    details=lines[:SHOWN_ERRORS],
                )
        if index.value is None or not index.value.skills:
            return ok(self.check_id, "no skills installed")
        n = plural(len(index.value.skills), "installed skill version")
        journal = ctx.journal
        if journal is None:
            return ok(self.check_id, f"{n}; states not checked (no readable journal)")
        bad = [v for v in views(index.value, journal) if v.current and v.state != "active"]
        if bad:
            first = bad[0]
            return warn(
                self.check_id,
                f"{n}; {plural(len(bad), 'current skill')} quarantined: {first.skill_id}"
                f" {first.version} ({first.reason})",
                "palyra skills list; a restored artifact or trusted key passes"
                " palyra skills audit, an operator's quarantine ends with palyra skills release",
            )
        return ok(self.check_id, f"{n}, every current one active")
