"""Parsing and validation of definitions.json (SPEC §2, §2.4).

The whole document is validated and *every* problem is reported, each with a JSON path and a
1-based line and column (in characters). Where each kind of rule lives:

- ``issues``: what is reported (``Issue``, ``ValidationResult``) and how findings get their
  line and column; an issue's text is always printable, whatever the input held;
- ``primitives``: the ``Checker`` every section uses — typed values, did-you-mean hints, the
  memoized zone, cron, timestamp and path checks, the findings of one run;
- ``document``: decoding and size limits, the root object, duplicate keys and ids, unpaired
  surrogates, the entry points (and how a 100 000-routine file stays fast). The entry points
  never raise: a bug inside validation makes the document invalid with an issue saying so;
- ``routine``: one routine's keys, each dispatched to its section;
- one module per section: ``triggers``, ``schedules``, ``actions``, ``policies`` (concurrency,
  misfire, jitter, retry, quiet hours, approval, cooldown), ``delivery``.

A new section (webhooks, skills) is a new module plus one line where its parent dispatches:
``routine.py`` for a routine key, the ``*_KINDS`` table for a trigger or action kind.
"""

from routines.validate.document import decode_document, parse_routine, validate_text
from routines.validate.issues import (
    Issue,
    ValidationResult,
    file_issue,
    format_issue,
    format_path,
    internal_error,
    printable,
)

__all__ = [
    "Issue",
    "ValidationResult",
    "decode_document",
    "file_issue",
    "format_issue",
    "format_path",
    "internal_error",
    "parse_routine",
    "printable",
    "validate_text",
]
