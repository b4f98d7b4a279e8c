"""Safe extraction of .zip, .tar, .tar.gz and .tgz archives.

Every entry is checked before anything is written: no absolute paths, no ``..``, no
links or device files, no duplicates, and limits on the number of entries, the
total size and the compression ratio. The limits apply as the headers are read, so
an archive of millions of headers or of huge declared sizes is refused after the
first ones past a limit, not after reading them all. Bytes are counted again while
extracting, since headers can lie. Extraction goes into an empty folder the caller
then moves into place; on any error the caller deletes that folder.
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .files import UnsafeName, clean_relpath, inside

CHUNK = 1024 * 1024
# Below this total size the ratio rule does not apply: small files of repeated
# bytes compress extremely well and are harmless.
RATIO_FLOOR_BYTES = 1024 * 1024
DROPPED_NAMES = {".DS_Store", "Thumbs.db"}
DROPPED_FOLDERS = {"__MACOSX"}


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 20 * 1024**3
    max_ratio: float = 200.0


class ArchiveRejected(ValueError):
    """The archive breaks a rule; ``entry`` names the offending entry, if any."""

    def __init__(self, rule: str, entry: str | None = None):
        self.rule = rule
        self.entry = entry
        super().__init__(f"“{entry}”: {rule}" if entry else rule)


@dataclass(frozen=True)
class Entry:
    path: str  # cleaned relative path
    is_dir: bool
    size: int  # as declared in the archive


@dataclass
class Extracted:
    entries: list[Entry] = field(default_factory=list)
    total_bytes: int = 0
    dropped: int = 0


def archive_kind(name: str) -> str | None:
    """'zip' or 'tar' when ``name`` looks like an archive we can extract."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def archive_stem(name: str) -> str:
    """The folder name an archive extracts into: ``data.tar.gz`` → ``data``."""
    lower = name.lower()
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


class _Reader:
    """One archive format behind a common interface."""

    def members(self) -> Iterator[tuple[str, object]]:
        raise NotImplementedError

    def check_member(self, name: str, member) -> tuple[bool, int]:
        raise NotImplementedError

    def open(self, member) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _zip_entry_count(path: Path) -> int | None:
    """The number of entries the zip's end record declares, read before the
    central directory is parsed (ZipFile loads all of it at once)."""
    with open(path, "rb") as handle:
        record = zipfile._EndRecData(handle)  # the stdlib's own reader of that record
    return record[zipfile._ECD_ENTRIES_TOTAL] if record else None


class _ZipReader(_Reader):
    def __init__(self, path: Path, limits: ArchiveLimits):
        count = _zip_entry_count(path)
        if count is not None and count > _header_limit(limits):
            raise ArchiveRejected(
                f"the archive has more than {limits.max_entries:,} entries"
            )
        self.archive = zipfile.ZipFile(path)

    def members(self):
        for info in self.archive.infolist():
            yield info.filename, info

    def check_member(self, name, info: zipfile.ZipInfo):
        # Unix zips keep the file type in the high bits; others leave them zero.
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type == stat.S_IFLNK:
            raise ArchiveRejected("symbolic links are not allowed", name)
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveRejected("only files and folders are allowed", name)
        if info.flag_bits & 0x1:
            raise ArchiveRejected("encrypted entries are not supported", name)
        return info.is_dir(), info.file_size

    def open(self, info):
        return self.archive.open(info)

    def close(self):
        self.archive.close()


class _TarReader(_Reader):
    def __init__(self, path: Path, limits: ArchiveLimits):
        self.archive = tarfile.open(path, mode="r:*")

    def members(self):
        # One header at a time (getmembers() would read them all before any limit
        # could apply). The first pass, plan(), reads them all, so a truncated
        # archive still fails before anything is written; later passes reuse them.
        for member in self.archive:
            yield member.name, member

    def check_member(self, name, member: tarfile.TarInfo):
        if member.issym() or member.islnk():
            raise ArchiveRejected("links are not allowed", name)
        if not (member.isfile() or member.isdir()):
            raise ArchiveRejected("device files and pipes are not allowed", name)
        return member.isdir(), member.size

    def open(self, member):
        handle = self.archive.extractfile(member)
        if handle is None:  # only non-files lack data, and plan() refused those
            raise ArchiveRejected("the entry has no data", member.name)
        return handle

    def close(self):
        self.archive.close()


_DAMAGED = (
    zipfile.BadZipFile,
    tarfile.TarError,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
)


def _open(path: Path, kind: str, limits: ArchiveLimits) -> _Reader:
    try:
        reader = _ZipReader if kind == "zip" else _TarReader
        return reader(path, limits)
    except _DAMAGED as exc:
        raise ArchiveRejected(f"the archive is damaged or truncated ({exc})") from exc


def _dropped(path: str) -> bool:
    parts = path.split("/")
    return parts[-1] in DROPPED_NAMES or parts[0] in DROPPED_FOLDERS


def _header_limit(limits: ArchiveLimits) -> int:
    """Headers read at most: every kept entry, and as many again for the ones that
    are skipped (macOS metadata twins, folders listed twice, "./")."""
    return 2 * limits.max_entries + 1


def _entry_name(raw_name: str) -> str:
    """The entry's path without "./" parts and trailing "/": ``tar -C dir .``
    writes "./a.txt"."""
    return "/".join(part for part in raw_name.split("/") if part not in ("", "."))


def plan(reader: _Reader, archive_size: int, limits: ArchiveLimits) -> Extracted:
    """Check every entry against the rules; nothing is written."""
    result = Extracted()
    files: set[str] = set()
    dirs: set[str] = set()
    declared = headers = 0
    try:
        for raw_name, member in reader.members():
            headers += 1
            if headers > _header_limit(limits):
                raise ArchiveRejected(
                    f"the archive has more than {limits.max_entries:,} entries"
                )
            if raw_name.startswith("/") or (len(raw_name) > 1 and raw_name[1] == ":"):
                raise ArchiveRejected("absolute paths are not allowed", raw_name)
            if ".." in raw_name.replace("\\", "/").split("/"):
                raise ArchiveRejected("paths with .. are not allowed", raw_name)
            name = _entry_name(raw_name)
            if not name:
                continue
            is_dir, size = reader.check_member(raw_name, member)
            try:
                path = clean_relpath(name)
            except UnsafeName as exc:
                raise ArchiveRejected(str(exc), raw_name) from exc
            if _dropped(path):
                result.dropped += 1
                continue
            if path in files or (path in dirs and not is_dir):
                raise ArchiveRejected("the name appears twice in the archive", raw_name)
            parents = path.split("/")[:-1]
            for depth in range(1, len(parents) + 1):
                parent = "/".join(parents[:depth])
                if parent in files:
                    raise ArchiveRejected(
                        f"“{parent}” is both a file and a folder", raw_name
                    )
                dirs.add(parent)
            if is_dir:
                if path in dirs:
                    continue  # a folder listed twice, or after its contents: harmless
                dirs.add(path)
            else:
                files.add(path)
                declared += size
            result.entries.append(Entry(path, is_dir, size))
            if len(result.entries) > limits.max_entries:
                raise ArchiveRejected(
                    f"the archive has more than {limits.max_entries:,} entries"
                )
            if declared > limits.max_total_bytes:
                raise ArchiveRejected(_size_rule(limits.max_total_bytes), raw_name)
            _check_ratio(declared, archive_size, limits, raw_name)
    except _DAMAGED as exc:
        raise ArchiveRejected(f"the archive is damaged or truncated ({exc})") from exc
    _check_ratio(declared, archive_size, limits, None)
    # Folders implied by file paths but without their own entry.
    listed = {e.path for e in result.entries if e.is_dir}
    result.entries[:0] = [Entry(d, True, 0) for d in sorted(dirs - listed)]
    return result


def _size_rule(limit: int) -> str:
    return f"it unpacks to more than {limit:,} bytes, more than the space you have left"


def _check_ratio(total: int, archive_size: int, limits: ArchiveLimits, entry) -> None:
    if total > RATIO_FLOOR_BYTES and total > limits.max_ratio * max(archive_size, 1):
        raise ArchiveRejected(
            f"it expands more than {limits.max_ratio:g} times its size "
            "(a possible zip bomb)",
            entry,
        )


def extract(archive: Path, dest: Path, limits: ArchiveLimits, kind: str) -> Extracted:
    """Check ``archive``, then extract it into the empty folder ``dest``."""
    archive_size = archive.stat().st_size
    reader = _open(archive, kind, limits)
    try:
        result = plan(reader, archive_size, limits)
        wanted = {e.path: e for e in result.entries}
        dest.mkdir(parents=True, exist_ok=True)
        for entry in result.entries:
            if entry.is_dir:
                inside(dest, entry.path).mkdir(parents=True, exist_ok=True)
        written = 0
        for raw_name, member in reader.members():
            try:
                path = clean_relpath(_entry_name(raw_name))
            except UnsafeName:
                continue  # only "." style entries get here; plan refused the rest
            entry = wanted.get(path)
            if entry is None or entry.is_dir:
                continue
            target = inside(dest, path)
            count = 0
            with reader.open(member) as source, open(target, "xb") as out:
                while chunk := source.read(CHUNK):
                    count += len(chunk)
                    written += len(chunk)
                    if count > entry.size:
                        raise ArchiveRejected(
                            "it holds more data than its header declares", raw_name
                        )
                    if written > limits.max_total_bytes:
                        raise ArchiveRejected(_size_rule(limits.max_total_bytes))
                    _check_ratio(written, archive_size, limits, raw_name)
                    out.write(chunk)
        result.total_bytes = written
        return result
    except _DAMAGED as exc:
        raise ArchiveRejected(f"the archive is damaged or truncated ({exc})") from exc
    finally:
        reader.close()
