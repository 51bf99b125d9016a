"""Durable append-only segments: each write's rows as one Arrow IPC file, synced before the write
returns, kept until the engine has merged them into its table.

Acknowledging an export costs one sequential file write and a sync here, instead of the
engine's own insert (DuckDB's insert and checkpoint cost more per span than decoding does). A
segment is written under a temporary name and renamed once synced, so a crash mid-write leaves
only a temporary file, which `open` removes (its write was never acknowledged). Segments are
numbered in write order; the engine records the last one it merged in the same commit as their
rows, so replay after a crash skips exactly those and never stores a span twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator

import pyarrow as pa

from threadline.server.storage.layout import ARROW_SCHEMA

log = logging.getLogger("threadline.server")

_NAME = re.compile(r"(\d{12})\.arrow")


class Segments:
    """The segment files of one store, in `directory`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".tmp"):
                os.remove(os.path.join(directory, name))  # a write cut short, never acknowledged
        self.last = max(self.numbers(), default=0)

    def numbers(self) -> list[int]:
        """The segments on disk, in write order."""
        found = (_NAME.fullmatch(n) for n in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def _path(self, number: int) -> str:
        return os.path.join(self.directory, f"{number:012d}.arrow")

    def append(self, table: pa.Table, after: int = 0) -> int:
        """Write `table` as the next segment and sync it; returns its number (above `after`, the
        last number the engine has merged). Not thread-safe: the engine serializes appends."""
        number = max(self.last, after) + 1
        path = self._path(number)
        with open(path + ".tmp", "wb") as f:
            with pa.ipc.new_file(f, ARROW_SCHEMA) as writer:
                writer.write_table(table)
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + ".tmp", path)
        _sync_dir(self.directory)  # the rename itself survives a crash
        self.last = number
        return number

    def read(self, number: int) -> pa.Table:
        with pa.memory_map(self._path(number)) as source:
            return pa.ipc.open_file(source).read_all()

    def unmerged(self, merged: int) -> Iterator[tuple[int, pa.Table]]:
        """(number, rows) of every segment after `merged`; those up to it are removed (their
        rows were merged, a crash came before their files were)."""
        self.remove(merged)
        for number in self.numbers():
            yield number, self.read(number)

    def remove(self, upto: int) -> None:
        """Remove the segments numbered up to `upto` (merged into the engine's table)."""
        for number in self.numbers():
            if number <= upto:
                os.remove(self._path(number))

    def bytes(self) -> int:
        total = 0
        for number in self.numbers():
            with contextlib.suppress(FileNotFoundError):  # merged meanwhile
                total += os.path.getsize(self._path(number))
        return total


def _sync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
