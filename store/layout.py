"""Where things live in a store: run ids, stream directories and segment names.

A segment is ``<rank>-<attempt>-<seq>.parquet`` where ``seq`` is the writer's segment
number (zero padded so names sort). Compaction publishes
``<rank>-<attempt>-<first>_<last>.parquet``, which *covers* every plain segment of the
same rank and attempt numbered first..last; readers ignore covered segments, so a
crash between publishing the merged file and deleting the originals never
duplicates a row. Temporary files start with ``.`` and are never read.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import re
import secrets
import stat
from dataclasses import dataclass

from store.location import StorePath
from store.schema import Stream

SEGMENT_SUFFIX = ".parquet"
TMP_PREFIX = "."
_SEQ_WIDTH = 6

_SEGMENT_RE = re.compile(r"(\d+)-(\d+)-(\d+)(?:_(\d+))?\.parquet")
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
"""What every run id looks like: safe as a directory name on any filesystem."""


@dataclass(frozen=True, order=True)
class SegmentName:
    """A parsed segment file name. ``last`` equals ``first`` for a plain segment."""

    rank: int
    attempt: int
    first: int
    last: int

    @property
    def compacted(self) -> bool:
        return self.last != self.first

    def filename(self) -> str:
        head = f"{self.rank}-{self.attempt}-{self.first:0{_SEQ_WIDTH}d}"
        if self.compacted:
            head += f"_{self.last:0{_SEQ_WIDTH}d}"
        return head + SEGMENT_SUFFIX

    def covers(self, other: SegmentName) -> bool:
        return (
            self.compacted
            and (self.rank, self.attempt) == (other.rank, other.attempt)
            and self.first <= other.first
            and other.last <= self.last
            and self != other
        )


def parse_segment_name(name: str) -> SegmentName | None:
    """The parsed name, or None for anything that is not a published segment."""
    m = _SEGMENT_RE.fullmatch(name)
    if m is None:
        return None
    rank, attempt, first = int(m[1]), int(m[2]), int(m[3])
    last = int(m[4]) if m[4] is not None else first
    if last < first:
        return None
    return SegmentName(rank, attempt, first, last)


def new_run_id(name: str | None, *, now: _dt.datetime | None = None) -> str:
    """A fresh, sortable, filesystem-safe run id: ``<name>-<UTC time>-<random>``.

    The random suffix keeps ids unique when many jobs start in the same second.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    stem = _NAME_OK.sub("-", name).strip("-._")[:64] if name else ""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    suffix = secrets.token_hex(4)
    return f"{stem}-{stamp}-{suffix}" if stem else f"run-{stamp}-{suffix}"


def run_dir(root: StorePath, run_id: str) -> StorePath:
    return root / run_id


def stream_dir(root: StorePath, run_id: str, stream: Stream | str) -> StorePath:
    return root / run_id / Stream(stream).value


def read_regular(path: str, max_bytes: int, *, what: str, grown: int = 0) -> bytes:
    """The bytes of the regular file ``path``: its size at open, plus up to ``grown``
    bytes appended since (one more byte cuts a JSON file that grew: the parser says so).
    ``OSError`` for a FIFO, device or directory, and for a file over ``max_bytes`` (not
    ``what`` it should be, and not read into memory whole).

    stat before open: open() on a FIFO blocks until a writer comes. O_NONBLOCK and the
    fstat close the gap of a file swapped in between."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if st.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"over {max_bytes} bytes: not {what}", path)
        return fh.read(st.st_size + grown)
