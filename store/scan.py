"""Listing a store: the segments each run's views read, and what they skip and why.

Writers keep publishing while a store is read, and a compaction publishes a merged
file and then deletes the segments it covers. Each stream directory is listed once,
so a listing sees a compaction either before or after it, never half-way: the
covered segments are left out (``store.compaction.split_covered``), and no row is
read twice. A file can still vanish between its listing and its reading; the reader
then lists that run again (see ``analysis.store``).

Nothing in a store is trusted for its name alone (``store.checks``). Only regular
files are opened: a FIFO named like a segment would block the reader forever, so the
type the directory listing reports is checked first (no extra system call). A run
directory that is a symbolic link is read only when it leads outside the store (a
link to a run of the same store would read its rows twice); link loops and dangling
links are named as such. Every skipped entry is listed with its reason.

A store on object storage (``store.location.RemotePath``) is listed the same way, one
listing per prefix: there every entry is an object or a prefix (no FIFO, no link),
and there is no run index (every run is listed from its files or digests).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import pyarrow as pa

from store.checks import Footer, Vanished, check_segment, not_regular
from store.compaction import claim_problem, claims, split_covered
from store.digest import DIGEST_DIR, DIGEST_ROWS, Digest, digest_name, read_digest
from store.index import IndexedRuns, indexed_runs
from store.layout import SegmentName, parse_segment_name
from store.location import RemoteEntry, RemotePath, StorePath
from store.schema import Stream

RESCANS = 8
"""Listings of one run taken at most while its files keep vanishing under the reader."""

REMOVED = "removed while the store was being read (by a compaction or a cleanup)"
EMPTY_RUN = (
    "an empty run directory: no segment published yet (a run starting now, or one "
    "killed before its first write)"
)


@dataclass(frozen=True)
class Unreadable:
    """An entry of the store that the views leave out (a file, a directory, or the
    malformed values of a run's rows), and why."""

    path: StorePath
    reason: str


_ALL = tuple(Stream)  # iterating an Enum class is slow: 10,000 listings make it count


@dataclass
class RunListing:
    """What one run directory holds: segments to read per stream, and what to skip."""

    path: StorePath
    segments: dict[Stream, list[StorePath]] = field(default_factory=lambda: {s: [] for s in _ALL})
    unreadable: list[Unreadable] = field(default_factory=list)
    # Writers listed by a current digest (only with trust_digests): their segments are
    # not in ``segments``.
    digests: list[Digest] = field(default_factory=list)
    # The footers read while checking ``segments`` (by str(path)): rows and columns.
    footers: dict[str, Footer] = field(default_factory=dict)

    def files(self) -> list[StorePath]:
        return [p for paths in self.segments.values() for p in paths]


@dataclass(frozen=True)
class StoreListing:
    """The run directories of a store listed from their files, the stray entries beside
    them, and the runs listed from the run index: their writers' digests
    (``DIGEST_ROWS``), no ``RunListing`` (they have no file to read)."""

    runs: list[RunListing]
    strays: list[Unreadable]
    indexed: pa.Table = field(default_factory=DIGEST_ROWS.empty_table)


def list_store(
    root: StorePath, *, trust_digests: bool = False, only: Collection[str] | None = None
) -> StoreListing:
    """Every run directory under ``root``, and the stray entries beside them
    (``only``: the entries of these names alone, nothing else looked at).

    ``trust_digests``: a writer whose digest matches its live segments
    (``store.digest``) is listed by its digest, and its segments are neither
    checked nor returned (listing runs only). A run whose state the run index
    records (``store.index``) is listed from the index without opening its
    directories: its digests are in ``StoreListing.indexed``."""
    names: list[str] = []  # strings, not Paths: 10,000 runs listed from the index
    strays: list[Unreadable] = []
    for entry in sorted(_scan(root, final=True), key=_NAME):
        if entry.name.startswith(".") or (only is not None and entry.name not in only):
            continue  # the run index (.index) among them
        if not _is_dir(entry):
            strays.append(Unreadable(root / entry.name, _not_regular(entry, _NO_RUN)))
        elif (
            isinstance(entry.path, str)
            and isinstance(root, Path)
            and entry.is_symlink()
            and (inside := _linked_inside(entry.path, root))
        ):
            strays.append(Unreadable(root / entry.name, inside))
        else:
            names.append(entry.name)
    indexed = IndexedRuns()  # object storage has no run index
    if trust_digests and isinstance(root, Path):
        indexed = indexed_runs(root, names)
    listings = [
        list_run(root / n, trust_digests=trust_digests) for n in names if n not in indexed.run_ids
    ]
    return StoreListing(listings, strays, indexed.digests)


_NO_RUN = "where a run directory belongs"
_NO_STREAM = "where a stream directory belongs"
_NOT_SEGMENT = "named like a segment (only regular files are read, never through a link)"


def _linked_inside(link: str, root: Path) -> str | None:
    """Why a run directory linked to ``link``'s target must not be read: it is the
    store, holds it, or lies inside it (its rows would be read twice)."""
    target, store = os.path.realpath(link), os.path.realpath(root)
    if target == store or store.startswith(target + os.sep):
        return f"a symbolic link to {target}, which holds this store (a loop)"
    if target.startswith(store + os.sep):
        return f"a symbolic link to {target} inside this store: read there, not twice"
    return None


def list_run(run_dir: StorePath, *, trust_digests: bool = False) -> RunListing:
    """List ``run_dir``, again while its files vanish; the last try skips what vanished."""
    for attempt in range(RESCANS):
        try:
            return _list_run(run_dir, final=attempt == RESCANS - 1, trust_digests=trust_digests)
        except Vanished:
            continue
    raise AssertionError("unreachable: the final listing does not raise")


_STREAMS = {s.value: s for s in Stream}


def _list_run(run_dir: StorePath, *, final: bool, trust_digests: bool) -> RunListing:
    # Names and strings, not Paths, until a file is kept: listing 10,000 runs is mostly
    # Python overhead per name (``benchmarks/store_scale.py``).
    listing = RunListing(run_dir)
    live_by_stream: dict[Stream, dict[str, SegmentName]] = {}
    try:
        entries = _scan(run_dir, final=final)
    except OSError as e:
        listing.unreadable.append(Unreadable(run_dir, f"cannot be listed ({e.strerror or e})"))
        return listing
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name == DIGEST_DIR:
            continue  # .attempts and the like; digests are read per writer below
        stream = _STREAMS.get(name)
        if stream is None:
            listing.unreadable.append(Unreadable(run_dir / name, "not a stream of this store"))
        elif not _is_dir(entry):
            what = _not_regular(entry, _NO_STREAM)
            listing.unreadable.append(Unreadable(run_dir / name, what))
        else:
            live_by_stream[stream] = _list_stream(run_dir, stream, entry.path, listing, final)
    covered = _current_digests(run_dir, live_by_stream, listing) if trust_digests else {}
    listing.digests = list(covered.values())
    for stream, live in live_by_stream.items():
        for file in sorted(live):
            if (live[file].rank, live[file].attempt) in covered:
                continue  # listed by its writer's digest
            path = run_dir / stream.value / file
            try:
                reason = check_segment(
                    path, stream, run_id=run_dir.name, seg=live[file], footers=listing.footers
                )
            except Vanished:
                if not final:
                    raise
                reason = REMOVED
            if reason:
                listing.unreadable.append(Unreadable(path, reason))
            else:
                listing.segments[stream].append(path)
    if not listing.files() and not listing.unreadable and not covered and run_dir.exists():
        listing.unreadable.append(Unreadable(run_dir, EMPTY_RUN))
    listing.unreadable.sort(key=_path_text)  # listed unsorted: sorting names costs more
    return listing


def _list_stream(
    run_dir: StorePath, stream: Stream, base: str | RemotePath, listing: RunListing, final: bool
) -> dict[str, SegmentName]:
    """The live segments of one stream directory (file name -> parsed name); what is
    skipped goes to ``listing.unreadable``."""
    named: dict[str, SegmentName] = {}
    try:
        entries = _scan(base, final=final)
    except OSError as e:
        reason = f"cannot be listed ({e.strerror or e})"
        listing.unreadable.append(Unreadable(run_dir / stream.value, reason))
        return named
    skipped: list[tuple[str, str]] = []  # (name, reason): a Path each only at the end
    for file in entries:
        name = file.name
        if name.startswith("."):
            continue  # a temporary file being written, or left by a crash
        seg = parse_segment_name(name)
        if seg is None:
            skipped.append((name, "not a segment file name"))
        elif not file.is_file(follow_symlinks=False):  # the listing's type: no stat
            skipped.append((name, _not_regular(file, _NOT_SEGMENT)))
        else:
            named[name] = seg
    if skipped:
        directory = run_dir / stream.value
        listing.unreadable += [Unreadable(directory / n, r) for n, r in skipped]
    if len(named) > 1:  # a claim needs two files; checked only in a crash or a look-alike
        for compacted, covered in claims(named).items():
            path = run_dir / stream.value / compacted
            try:
                problem = _claim_problem(run_dir, stream, compacted, covered, named)
            except Vanished:
                if not final:
                    raise
                problem = REMOVED
            if problem:
                listing.unreadable.append(Unreadable(path, problem))
                del named[compacted]
    live, _covered = split_covered(named)  # never half a compaction
    return live


def _claim_problem(
    run_dir: StorePath,
    stream: Stream,
    compacted: str,
    covered: list[str],
    named: dict[str, SegmentName],
) -> str | None:
    """Why ``compacted`` must not hide ``covered``: it is not a segment of this writer
    (its ``seq`` values would mean nothing), or it lacks the rows of one that is."""
    directory = run_dir / stream.value
    problem = check_segment(
        directory / compacted, stream, run_id=run_dir.name, seg=named[compacted]
    )
    if problem:
        return f"{problem}; it claims to merge {len(covered)} segment(s) beside it, read instead"
    evidence = []  # only the writer's own segments can prove a claim wrong
    for name in covered:
        try:
            own = check_segment(directory / name, stream, run_id=run_dir.name, seg=named[name])
        except Vanished:
            continue  # deleted by the compaction that published ``compacted``
        if own is None:
            evidence.append(directory / name)
    try:
        return claim_problem(directory / compacted, evidence)
    except FileNotFoundError as e:
        raise Vanished(directory / compacted) from e


def _current_digests(
    run_dir: StorePath, live: dict[Stream, dict[str, SegmentName]], listing: RunListing
) -> dict[tuple[int, int], Digest]:
    """The digests that still describe their writer: the live segments of that (rank,
    attempt) are exactly the ones the digest lists, in every stream. None for a resumed
    run: its views keep the latest attempt of each step, which takes the rows. Only the
    digests of writers with live segments are read (one open each, no listing); a
    digest of another run (a copied directory) is not trusted."""
    on_disk: dict[tuple[int, int], dict[str, list[str]]] = {}
    for stream, segments in live.items():
        for file, seg in segments.items():
            writer = on_disk.setdefault((seg.rank, seg.attempt), {})
            writer.setdefault(stream.value, []).append(file)
    if any(attempt for _, attempt in on_disk):
        return {}
    out: dict[tuple[int, int], Digest] = {}
    base = os.fspath(run_dir) if isinstance(run_dir, Path) else run_dir
    for (rank, attempt), found in on_disk.items():
        path: str | RemotePath
        if isinstance(base, str):
            path = os.path.join(base, DIGEST_DIR, digest_name(rank, attempt))  # no Path: speed
        else:
            path = base / DIGEST_DIR / digest_name(rank, attempt)
        try:
            d = read_digest(path)
        except FileNotFoundError:
            continue  # a writer still running, killed, or from before digests
        except ValueError as e:  # only a slower listing: the segments are read instead
            where = Path(path) if isinstance(path, str) else path
            listing.unreadable.append(Unreadable(where, str(e)))
            continue
        current = d.segments == {stream: sorted(files) for stream, files in found.items()}
        if current and (d.run_id, d.rank, d.attempt) == (run_dir.name, rank, attempt):
            out[(rank, attempt)] = d
    return out


Entry = os.DirEntry[str] | RemoteEntry


def _scan(directory: str | StorePath, *, final: bool) -> list[Entry]:
    """The entries of ``directory``, unsorted; each carries the type the listing
    reported, so telling a regular file from a FIFO costs no system call."""
    try:
        if isinstance(directory, RemotePath):
            return list(directory.scandir())
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError) as e:
        if final:
            return []  # gone for good: nothing to read there
        raise Vanished(directory) from e


_NAME = attrgetter("name")


def _path_text(item: Unreadable) -> str:
    return str(item.path)  # sorting by Path's own ordering is ten times slower


def _not_regular(entry: Entry, where: str) -> str:
    """``checks.not_regular`` for a listed entry: on object storage, only an object or
    a prefix can be where the other belongs."""
    if isinstance(entry, RemoteEntry):
        return f"{'a prefix' if entry.directory else 'an object'} {where}"
    return not_regular(entry.path, where=where)


def _is_dir(entry: Entry) -> bool:
    """``entry.is_dir()``, false for a link that loops (which it raises for)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
