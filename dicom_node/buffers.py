"""The types of received bytes on the receive path."""

from __future__ import annotations

import mmap
from typing import TypeAlias

Received: TypeAlias = bytes | mmap.mmap
"""A received instance (File Meta + data set) as the receive path reads it: bytes, or the spool
slot it was streamed into, mapped read-only (slicing either gives bytes)."""

Writable: TypeAlias = bytes | bytearray | memoryview | mmap.mmap
"""Anything written to a file as it is."""
