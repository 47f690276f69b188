"""Where a store lives: a local directory (a ``Path``) or a URL (a ``RemotePath``).

A store root given as ``s3://bucket/prefix`` (or any other fsspec URL:
``gs://``, ``az://``, ``memory://``...) is a ``RemotePath``: the URL and the fsspec
filesystem that reaches it, with credentials and endpoint from the environment (for
S3 the standard AWS variables: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible service). It
answers the part of ``pathlib.Path``'s interface the store uses (``/``, ``name``,
``parent``, ``exists``, ``is_dir``, ``iterdir``, ``unlink``, ``stat``...), so the
listing, compaction and claims code reads both kinds of root; what differs lives
here:

- An object store has no directories: ``mkdir`` does nothing, a "directory" exists
  while an object lies under it.
- There is no rename: an object is published by one whole-object PUT
  (``write_bytes``), which is atomic (a reader sees the old object, the new one, or
  none), retried ``UPLOAD_TRIES`` times before the error reaches the caller.
- Exclusive creation (a claim) is a conditional PUT (``If-None-Match: *``), which
  S3 and S3-compatible services honour.
- Nothing there is a FIFO or a symbolic link: every entry is a regular object or a
  prefix.
- A run "directory" removed under a live run is not noticed by its writer: its next
  segment recreates the prefix (on disk the rows would be counted as dropped).
- Errors of the filesystem's client that are no ``OSError`` (botocore's connection
  errors) are raised as ``OSError``: the store's callers, written for a disk, name them
  and skip what they skip for an unreadable file.

Listings are never cached (``use_listings_cache=False``): a reader that lists a run
again must see what was published since.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from store.errors import StoreError

UPLOAD_TRIES = 3
"""PUTs of one object before its error reaches the caller (the writer then counts
the rows as dropped); waits of ``RETRY_WAIT_S`` times 1, 2, 4... in between."""
RETRY_WAIT_S = 0.5

T = TypeVar("T")


def is_url(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` names a store by URL (``scheme://...``) rather than a path."""
    text = os.fspath(root)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isascii() and scheme.replace("+", "").isalnum()


def store_path(root: str | os.PathLike[str] | RemotePath) -> Path | RemotePath:
    """The store root ``root`` names: a ``Path``, or a ``RemotePath`` for a URL
    (``file://`` URLs are paths). ``StoreError`` when no filesystem serves the URL's
    scheme (for ``s3://``: the ``s3fs`` package, ``pip install 'telemetry[s3]'``)."""
    if isinstance(root, RemotePath | Path):
        return root
    text = os.fspath(root)
    if not is_url(text):
        return Path(text)
    protocol = text.partition("://")[0]
    if protocol == "file":
        return Path(text.partition("://")[2])
    return RemotePath(filesystem(protocol), text)


def filesystem(protocol: str) -> Any:
    """The fsspec filesystem for ``protocol``, listings uncached."""
    try:
        import fsspec

        return fsspec.filesystem(protocol, use_listings_cache=False)
    except ImportError as e:
        raise StoreError(
            f"a store at a {protocol}:// URL needs a filesystem package for it ({e}); "
            "for s3:// install s3fs: pip install 'telemetry[s3]'"
        ) from e
    except ValueError as e:  # fsspec knows no such protocol
        raise StoreError(f"no filesystem serves {protocol}:// URLs: {e}") from e


@dataclass(frozen=True)
class RemoteStat:
    """What ``RemotePath.stat`` knows of an object: its size, and a number that
    changes when the object is replaced (its modification time, else its ETag)."""

    st_size: int
    st_mtime_ns: int


@dataclass(frozen=True)
class RemoteEntry:
    """An entry of a ``RemotePath.scandir`` listing, as ``os.DirEntry`` answers."""

    name: str
    path: RemotePath
    directory: bool

    def is_dir(self) -> bool:
        return self.directory

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return not self.directory

    def is_symlink(self) -> bool:
        return False


class RemotePath:
    """A file or prefix of a store on object storage: its URL and its filesystem."""

    def __init__(self, fs: Any, url: str) -> None:
        self.fs = fs
        self.url = url.rstrip("/") if not url.endswith("://") else url

    # -- the path --------------------------------------------------------------------

    def __truediv__(self, part: str) -> RemotePath:
        return RemotePath(self.fs, f"{self.url}/{part}")

    @property
    def name(self) -> str:
        return self.url.rpartition("/")[2]

    @property
    def parent(self) -> RemotePath:
        head, _, _ = self.url.rpartition("/")
        return RemotePath(self.fs, head) if not head.endswith(":/") else self

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def resolve(self) -> RemotePath:
        return self

    @cached_property
    def key(self) -> str:
        """The path the filesystem's methods take (the URL without its scheme)."""
        return str(self.fs._strip_protocol(self.url))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __lt__(self, other: RemotePath) -> bool:
        return self.url < other.url

    def __hash__(self) -> int:
        return hash(self.url)

    # -- what is there ---------------------------------------------------------------

    def exists(self) -> bool:
        return bool(_os_errors(self.fs.exists, self.key))

    def is_dir(self) -> bool:
        return bool(_os_errors(self.fs.isdir, self.key))

    def stat(self) -> RemoteStat:
        return _stat(_os_errors(self.fs.info, self.key))

    def scandir(self) -> list[RemoteEntry]:
        """The entries directly under this prefix; ``FileNotFoundError`` if none. A
        "folder" marker (an empty object named ``prefix/``, as consoles and Hadoop's S3A
        make them) is the prefix itself, not an entry."""
        out = []
        own = self.key.rstrip("/")
        for info in _os_errors(self.fs.ls, self.key, detail=True):
            full = str(info["name"])
            name = full.rstrip("/").rpartition("/")[2]
            if name and full.rstrip("/") != own and not full.endswith("/"):
                out.append(RemoteEntry(name, self / name, info["type"] == "directory"))
        return out

    def iterdir(self) -> list[RemotePath]:
        return [self / e.name for e in self.scandir()]

    def find(self) -> dict[str, RemoteStat]:
        """Every object under this prefix (by path relative to it), in one listing."""
        base = self.key.rstrip("/") + "/"
        found = _os_errors(self.fs.find, self.key, detail=True)
        return {
            name[len(base) :]: _stat(info)
            for name, info in found.items()
            if name.startswith(base) and info.get("type") != "directory"
        }

    # -- bytes -----------------------------------------------------------------------

    def read_bytes(self, max_bytes: int | None = None, *, what: str = "a file") -> bytes:
        """The object's bytes; ``OSError`` for one over ``max_bytes`` (not read)."""
        if max_bytes is not None:
            size = self.stat().st_size
            if size > max_bytes:
                raise OSError(f"over {max_bytes} bytes: not {what}: {self.url}")
        return bytes(_os_errors(self.fs.cat_file, self.key))

    def write_bytes(self, data: bytes, *, exclusive: bool = False) -> None:
        """Publish ``data`` as this object in one PUT (retried); ``exclusive``: only if
        no object has this name (``FileExistsError`` otherwise).

        A PUT whose answer was lost may have landed: after the last failed try, an
        object of this size under this name means it did (a segment's name is written
        once, by one writer), and the write succeeded. An exclusive PUT is told from
        another writer's by its bytes: a claim holds a random token."""
        mode = "create" if exclusive else "overwrite"
        try:
            _retried(lambda: _os_errors(self.fs.pipe_file, self.key, data, mode=mode))
        except FileExistsError:
            if exclusive and data and self._holds(data):
                return  # our own PUT landed; its answer was lost and a retry refused
            raise
        except OSError as e:
            if self._holds(data):
                return
            if exclusive and self.exists():  # refused without saying why (no condition named)
                raise FileExistsError(f"{self.url} exists") from e
            raise

    def _holds(self, data: bytes) -> bool:
        """Whether the object holds ``data``: its size, and its bytes when small (a
        claim's token; a segment's name is written once, by one writer: size suffices)."""
        try:
            if self.stat().st_size != len(data):
                return False
            return len(data) > 4096 or self.read_bytes() == data
        except OSError:
            return False

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object (S3 answers a DELETE of a missing key as done: then
        ``missing_ok=False`` cannot tell either)."""
        try:
            _os_errors(self.fs.rm_file, self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing: a prefix exists while an object lies under it."""


def _stat(info: dict[str, Any]) -> RemoteStat:
    modified: Any = info.get("LastModified") or info.get("mtime")
    if hasattr(modified, "timestamp"):
        version = int(modified.timestamp() * 1e9)
    elif isinstance(modified, int | float):
        version = int(modified * 1e9)
    else:
        version = hash(str(info.get("ETag", "")))
    return RemoteStat(int(info.get("size") or 0), version)


def _retried(put: Callable[[], T]) -> T:
    for attempt in range(UPLOAD_TRIES):
        try:
            return put()
        except (FileExistsError, FileNotFoundError, PermissionError):
            raise  # an answer, not a failure: another try says the same
        except Exception:
            if attempt == UPLOAD_TRIES - 1:
                raise
            time.sleep(RETRY_WAIT_S * 2**attempt)
    raise AssertionError("unreachable")


StorePath = Path | RemotePath
"""A store root, or a file or directory in one."""


def read_metadata(path: StorePath) -> pq.FileMetaData:
    """A Parquet file's footer. On object storage through fsspec's file directly: the
    real error (a network one is no ``FileNotFoundError``; pyarrow's fsspec handler
    would say the file is missing), and one request less than through pyarrow."""
    if isinstance(path, RemotePath):
        with _os_errors(path.fs.open, path.key, "rb") as fh:
            return _os_errors(pq.read_metadata, fh)
    return pq.read_metadata(path)


def read_table(path: StorePath, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file's rows (``columns`` only, if given)."""
    if isinstance(path, RemotePath):
        with _os_errors(path.fs.open, path.key, "rb") as fh:
            return _os_errors(pq.read_table, fh, columns=columns)
    return pq.read_table(path, columns=columns)


def _os_errors(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call``'s result; an error of the filesystem's client that is no ``OSError``
    (botocore's ``EndpointConnectionError``, a read timeout...) raised as one, so the
    store's callers, written for a disk, name it and go on where they skip a file."""
    try:
        return call(*args, **kwargs)
    except (OSError, ValueError, TypeError, pa.ArrowException):
        raise  # already what the callers expect (ArrowInvalid: not Parquet)
    except Exception as e:
        raise OSError(f"{type(e).__name__}: {e}") from e


def parquet_bytes(table: pa.Table, **options: Any) -> bytes:
    """``table`` as the bytes of a Parquet file (``pq.write_table`` options)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return bytes(sink.getvalue().to_pybytes())
