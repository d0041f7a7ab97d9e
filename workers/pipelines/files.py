"""Output files written whole or not at all.

A job's outputs are written before its completion is committed, and the delivery runner sends
whatever file an outputs row names. A job whose thread is abandoned at shutdown (its attempt
handed back, `workers.jobs.release`), or a node killed mid-write, must not leave a truncated
file under a name a later run's row (same UIDs: a re-run replaces its outputs) or a retry's
pending delivery would send. So each file is written under a temporary name beside it, flushed
to the disk, renamed over its final name, and the folder flushed: a reader finds the old whole
file or the new whole file. A leftover temporary file (`.<name>.<random>.partial`) is named by
no outputs row, so the orphan sweep removes it (docs/OPERATIONS.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset


def write_output(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes `path` whole or not at all with `write(file)`; raises what writing raised,
    leaving the earlier file at `path`, if any, as it was."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(partial, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_dataset(path: Path, ds: Dataset) -> None:
    """`ds` as a DICOM Part 10 file at `path`, whole or not at all (`write_output`)."""

    def save(out: BinaryIO) -> None:
        ds.save_as(out, enforce_file_format=True)

    write_output(path, save)
