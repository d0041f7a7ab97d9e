"""Logging without PHI, whatever the input (docs/OPERATIONS.md, "Logs and PHI").

Three sources would otherwise put patient data into log lines:

- pydicom's warnings and its logger quote the raw values they could not parse (a malformed
  PatientBirthDate, a PatientName in a bad character set). Their records are summarised: the
  text before the first colon with quoted parts removed and only the message's own words kept,
  plus any tags and VRs named; never a value.
- SQLAlchemy at INFO prints statements and parameters (patient IDs, accession numbers). Its
  loggers are held at WARNING and lower records are dropped whatever a handler allows; the
  engines also hide parameters (`workers.db.make_engine`).
- Exception messages of libraries quote the values they choked on. Every logged traceback keeps
  its frames (file, line, function, code) and exception types; a message is kept only when the
  node wrote it (`common.errors.NodeError`: UIDs and reasons).

`install()` puts this in place for the whole process: a log record factory (so it applies
whatever handlers exist or are added later, Celery's and uvicorn's included) and Python
warnings routed into logging. It is idempotent.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType
from typing import Any

from pydicom.datadict import keyword_dict

from common.errors import NodeError

SUMMARISED = ("pydicom", "py.warnings")
"""Loggers whose messages quote DICOM element values: only a summary is kept."""
QUIET = ("sqlalchemy.engine", "sqlalchemy.pool", "sqlalchemy.orm", "sqlalchemy.dialects")
"""Loggers that print SQL and its parameters below WARNING."""

_QUOTED = re.compile(r"""b?'[^']*'|b?"[^"]*"|\[[^\]]*\]""")
_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)")
_VR = re.compile(r"\bVR (?:of )?'?([A-Z]{2})\b")
_WARNING_PREFIX = re.compile(r"^.*?:\d+: (\w+(?:Warning|Error)): ", re.DOTALL)
_KEEP = re.compile(r"[^A-Za-z0-9 ,.()_\-]")

_installed = False


def summarise(message: str) -> str:
    """What may be said of a pydicom warning: its category, its words up to the first colon
    with quoted parts removed, and the tags and VRs it names. Never an element value."""
    category = ""
    prefix = _WARNING_PREFIX.match(message)
    if prefix is not None:
        category = prefix.group(1)
        message = message[prefix.end():]
    message = message.split("\n", 1)[0]
    tags = sorted({f"({g.upper()},{e.upper()})" for g, e in _TAG.findall(message)})
    vrs = sorted(set(_VR.findall(message)))
    head = _QUOTED.sub("…", message).split(":", 1)[0]
    head = _TAG.sub("", _KEEP.sub("", head))
    # an unquoted value could still sit in the words: only the message's own vocabulary stays
    # (its first word, lowercase words, VR codes, DICOM keywords, a few technical terms)
    tokens = head.split()
    words = [w if index == 0 and w.isalpha() or _ordinary(w) else "…"
             for index, w in enumerate(tokens)][:16]
    parts = [f"pydicom {category or 'message'}: {' '.join(words)}".rstrip()]
    if tags:
        parts.append("tags " + " ".join(tags))
    if vrs:
        parts.append("VR " + " ".join(vrs))
    return "; ".join(parts) + " (values withheld)"


_VRS = frozenset(
    "AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    "UR US UT UV".split())
_TERMS = frozenset({"VR", "UID", "DICOM", "ISO_IR", "JPEG", "RLE", "-", "(", ")", ",", "."})


def _ordinary(word: str) -> bool:
    """A word a pydicom message is made of, not a value: lowercase letters (with trailing
    punctuation), a VR code, a DICOM keyword, or one of a few technical terms."""
    bare = word.strip(".,()")
    if not bare:
        return True
    if bare.isalpha() and bare.islower():
        return True
    return bare in _VRS or bare in _TERMS or keyword_dict.get(bare) is not None


def scrubbed_traceback(exc_info: tuple[type[BaseException], BaseException,
                                       TracebackType | None]) -> str:
    """A traceback with frames and exception types, each message kept only when the node
    wrote it (NodeError), causes and contexts included."""
    _type, exc, _tb = exc_info
    lines: list[str] = []
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    for position, item in enumerate(reversed(chain)):
        if position:
            lines.append("\nThe above exception led to the following exception:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_list(traceback.extract_tb(item.__traceback__)))
        name = f"{type(item).__module__}.{type(item).__qualname__}"
        text = f": {item}" if isinstance(item, NodeError) and str(item) else " (message withheld)"
        lines.append(f"{name}{text}\n")
    return "".join(lines).rstrip("\n")


def _summarised(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in SUMMARISED)


def _make_factory(previous: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = previous(*args, **kwargs)
        if _summarised(record.name):
            try:
                text = record.getMessage()
            except (TypeError, ValueError):
                text = str(record.msg)
            record.msg, record.args = summarise(text), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrubbed_traceback(record.exc_info)
        if record.stack_info:
            record.stack_info = None
        return record

    factory.phi_free = True  # type: ignore[attr-defined]
    return factory


class _DropBelowWarning(logging.Filter):
    """Drops SQL-printing records below WARNING even when a logger level is lowered later."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def install() -> None:
    """Makes every log record of this process PHI-free (see the module docstring)."""
    global _installed
    current = logging.getLogRecordFactory()
    if not getattr(current, "phi_free", False):
        logging.setLogRecordFactory(_make_factory(current))
    logging.captureWarnings(True)
    for name in QUIET:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not _installed:
            logger.addFilter(_DropBelowWarning())
    _installed = True
