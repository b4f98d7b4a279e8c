"""The only way the server touches a folder a run could write.

A run's container, Slurm job or TES task may leave anything where it can write:
symbolic links to host files, links that swap while the server reads, FIFOs,
sockets, sparse giants, names with newlines. So the web app and the workers never
open a path in such a folder by name. They start from a folder the server made
(``root``: the run's output folder, a TES task's folder, a Slurm job's work
folder, opened once with ``O_NOFOLLOW``; its parents are the server's own) and go
beneath it by handles:

- ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS`` where the kernel has it (Linux 5.6 and later);
- else one ``openat(O_NOFOLLOW | O_DIRECTORY)`` per folder from the root's
  handle, and ``O_NOFOLLOW`` on the file itself.

Either way a link at any step is refused, never followed. Only regular files are
opened: the open is non-blocking (a FIFO cannot hold the server) and the handle's
own ``fstat`` decides. What a caller gets is that handle: it sends, copies,
hashes or links *it*, and never opens the path again after a check. Folders the
server makes inside such a folder are made with ``mkdirat`` and handed over with
``fchown`` on their handle; files it writes there replace whatever had the name
(a rename, which never follows a link).

Nothing here knows Flask or the models: callers pass plain paths.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# How deep a walk goes; a run that nests folders deeper gets the rest ignored.
MAX_DEPTH = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# What a link, a swapped folder or a special file makes the kernel answer.
_REFUSED_ERRNOS = {
    errno.ELOOP,  # a link where O_NOFOLLOW / RESOLVE_NO_SYMLINKS met it
    errno.ENOTDIR,  # a file (or a link) where a folder should be
    errno.EXDEV,  # openat2: the path would leave the root
    errno.ENXIO,  # a socket
    errno.EISDIR,
}


class Refused(FileNotFoundError):
    """What the path names is not a regular file reached without a link (or not
    a folder, for folders): to a caller, as good as missing."""


# --- openat2 ------------------------------------------------------------------------

_SYS_OPENAT2 = 437  # the same number on every architecture Linux added it for
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _openat2(dir_fd: int, relpath: str, flags: int) -> int:
    how = _OpenHow(
        flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
    )
    for _attempt in range(8):
        fd = _libc.syscall(
            _SYS_OPENAT2,
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(relpath)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        if code != errno.EAGAIN:  # EAGAIN: a rename raced the lookup; try again
            break
    raise OSError(code, os.strerror(code), relpath)


def _kernel_has_openat2() -> bool:
    try:
        fd = _openat2(-100, ".", _DIR_FLAGS)  # AT_FDCWD
    except OSError:  # ENOSYS (older kernel) or EPERM (a seccomp filter)
        return False
    os.close(fd)
    return True


# Whether openat2 is used; the tests switch it off to exercise the walk.
USE_OPENAT2 = _kernel_has_openat2()


# --- Opening ------------------------------------------------------------------------


def _parts(relpath: str) -> list[str]:
    """The names in ``relpath``: never empty, absolute, ``.`` or ``..``."""
    if not isinstance(relpath, str):
        raise Refused(errno.ENOENT, "not a path", relpath)
    parts = relpath.split("/")
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Refused(errno.ENOENT, "not a plain relative path", relpath)
    if any("\x00" in p for p in parts):
        raise Refused(errno.ENOENT, "not a plain relative path", relpath)
    return parts


def _refusal(exc: OSError, relpath: str) -> OSError:
    if exc.errno in _REFUSED_ERRNOS:
        return Refused(exc.errno, f"refused: {os.strerror(exc.errno)}", relpath)
    return exc


def _open_beneath(dir_fd: int, relpath: str, flags: int) -> int:
    """A handle on ``relpath`` beneath ``dir_fd``, no link followed at any step."""
    parts = _parts(relpath)
    if USE_OPENAT2:
        try:
            return _openat2(dir_fd, relpath, flags)
        except OSError as exc:
            raise _refusal(exc, relpath) from None
    current = dir_fd
    try:
        for part in parts[:-1]:
            following = os.open(part, _DIR_FLAGS, dir_fd=current)
            if current != dir_fd:
                os.close(current)
            current = following
        return os.open(parts[-1], flags, dir_fd=current)
    except OSError as exc:
        raise _refusal(exc, relpath) from None
    finally:
        if current != dir_fd:
            os.close(current)


def _open_root(root: Path | str) -> int:
    """The server's own folder ``root``, which must not itself be a link."""
    try:
        return os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise _refusal(exc, str(root)) from None


def _regular(fd: int, relpath: str) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(errno.ENOENT, "not a regular file", relpath)
    return info


def open_file(root: Path | str, relpath: str) -> BinaryIO:
    """The regular file ``relpath`` beneath ``root``, open for reading; raises
    FileNotFoundError (Refused for a link, a special file or a path that leaves
    ``root``). The caller closes it."""
    root_fd = _open_root(root)
    try:
        fd = _open_beneath(root_fd, relpath, _FILE_FLAGS)
    finally:
        os.close(root_fd)
    _regular(fd, relpath)
    # Reads of a regular file never block; a handle handed on should behave as
    # one opened plainly.
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def read_bytes(root: Path | str, relpath: str, limit: int | None = None) -> bytes:
    """Up to ``limit`` bytes (all, without one) of a file beneath ``root``."""
    with open_file(root, relpath) as handle:
        return handle.read() if limit is None else handle.read(limit)


def read_text(root: Path | str, relpath: str, limit: int | None = 1024**2) -> str:
    """A text file beneath ``root`` (at most ``limit`` bytes of it; None: all)."""
    return read_bytes(root, relpath, limit).decode("utf-8", "replace")


def tail(handle: BinaryIO, size: int) -> bytes:
    """The last ``size`` bytes of an open file."""
    end = handle.seek(0, os.SEEK_END)
    handle.seek(max(end - size, 0))
    return handle.read(size)


def sha256(root: Path | str, relpath: str) -> str | None:
    """The SHA-256 of a regular file beneath ``root``, read through the same safe
    open; None when there is no such file (a link, a folder, gone)."""
    digest = hashlib.sha256()
    try:
        with open_file(root, relpath) as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except FileNotFoundError:  # Refused is one too
        return None
    return digest.hexdigest()


def exists(root: Path | str, relpath: str) -> bool:
    """Whether ``relpath`` is a regular file reached beneath ``root`` without a
    link (for decisions only: a reader opens it and checks the handle)."""
    try:
        open_file(root, relpath).close()
    except OSError:
        return False
    return True


# --- Folders ------------------------------------------------------------------------


@contextmanager
def _folder(root: Path | str, relpath: str = "") -> Iterator[int]:
    """A handle on the folder ``relpath`` beneath ``root`` (``root`` itself for
    ""), closed on leaving."""
    root_fd = _open_root(root)
    if not relpath:
        try:
            yield root_fd
        finally:
            os.close(root_fd)
        return
    try:
        fd = _open_beneath(root_fd, relpath, _DIR_FLAGS)
    finally:
        os.close(root_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _walk(dir_fd: int, prefix: str, depth: int) -> Iterator[tuple[str, os.DirEntry]]:
    """(relative path, entry) of every regular file beneath ``dir_fd``; folders are
    entered by handle, links and special files passed over."""
    with os.scandir(dir_fd) as entries:
        listed = list(entries)
    for entry in listed:
        path = prefix + entry.name
        if entry.is_file(follow_symlinks=False):
            yield path, entry
        elif entry.is_dir(follow_symlinks=False) and depth < MAX_DEPTH:
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:  # swapped for a link, or removed, since listed
                continue
            try:
                yield from _walk(child, path + "/", depth + 1)
            finally:
                os.close(child)


def _nameable(path: str) -> bool:
    """Whether a path can be named in a URL and a download: valid UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_files(root: Path | str, relpath: str = "") -> list[tuple[str, int]]:
    """(path relative to the folder, size) of every regular file beneath folder
    ``relpath`` of ``root``, sorted; links, special files and names that are not
    UTF-8 are left out. A folder that is missing, or is a link, lists nothing."""
    try:
        with _folder(root, relpath) as fd:
            found = []
            for path, entry in _walk(fd, "", 0):
                if not _nameable(path):
                    continue
                try:
                    found.append((path, entry.stat(follow_symlinks=False).st_size))
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found)


def tree_size(root: Path | str, relpath: str = "") -> int:
    """Bytes of every regular file beneath folder ``relpath`` of ``root`` (links
    count for nothing, nor does anything they point to)."""
    total = 0
    try:
        with _folder(root, relpath) as fd:
            for _path, entry in _walk(fd, "", 0):
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return total


def make_folder(
    root: Path | str, relpath: str, owner: tuple[int, int] | None = None
) -> None:
    """Make the folders of ``relpath`` beneath ``root`` that are missing (each
    with ``mkdirat`` from its parent's handle), and give the last to ``owner``
    (uid, gid) with ``fchown`` on its handle. A link on the way is refused."""
    parts = _parts(relpath)
    current = _open_root(root)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=current)
            except FileExistsError:
                pass
            try:
                following = os.open(part, _DIR_FLAGS, dir_fd=current)
            except OSError as exc:
                raise _refusal(exc, relpath) from None
            os.close(current)
            current = following
        if owner is not None:
            os.fchown(current, *owner)
    finally:
        os.close(current)


def ensure_folder(path: Path, owner: tuple[int, int] | None = None) -> None:
    """``path``'s parents made as usual (they are the server's), ``path`` itself
    made or opened without following a link, and given to ``owner``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    make_folder(path.parent, path.name, owner)


def clear_folder(root: Path | str, relpath: str = "") -> None:
    """Remove everything inside folder ``relpath`` of ``root``; keep the folder.
    Links are removed, never followed."""
    try:
        with _folder(root, relpath) as fd:
            with os.scandir(fd) as entries:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for name, is_dir in names:
                try:
                    if is_dir:
                        shutil.rmtree(name, dir_fd=fd)
                    else:
                        os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError:  # swapped meanwhile: the other kind of removal
                    shutil.rmtree(name, dir_fd=fd, ignore_errors=True)
                    try:
                        os.unlink(name, dir_fd=fd)
                    except OSError:
                        pass
    except (FileNotFoundError, NotADirectoryError):
        return


def remove(root: Path | str, relpath: str) -> None:
    """Remove the entry ``relpath`` beneath ``root`` (a link itself, not what it
    points to); a missing one is fine."""
    parts = _parts(relpath)
    try:
        with _folder(root, "/".join(parts[:-1])) as fd:
            os.unlink(parts[-1], dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return


def write_file(root: Path | str, relpath: str, data: bytes) -> None:
    """Make ``relpath`` beneath ``root`` hold ``data``: written to a new file
    (``O_EXCL | O_NOFOLLOW``) and renamed over the name, so a link that stood
    there is replaced, never written through."""
    parts = _parts(relpath)
    with _folder(root, "/".join(parts[:-1])) as fd:
        temporary = f".{parts[-1]}.{uuid.uuid4().hex}.part"
        out = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=fd,
        )
        try:
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
            os.replace(temporary, parts[-1], src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=fd)
            except OSError:
                pass
            raise


def open_for_append(root: Path | str, relpath: str) -> BinaryIO:
    """A file beneath ``root`` opened for reading and writing (made when missing),
    unbuffered; a link or special file in its place is refused."""
    parts = _parts(relpath)
    with _folder(root, "/".join(parts[:-1])) as fd:
        try:
            out = os.open(
                parts[-1],
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                0o644,
                dir_fd=fd,
            )
        except OSError as exc:
            raise _refusal(exc, relpath) from None
    _regular(out, relpath)
    fcntl.fcntl(out, fcntl.F_SETFL, fcntl.fcntl(out, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(out, "r+b", buffering=0)


# --- Copies -------------------------------------------------------------------------

# Linux's ioctl that makes a file share another's blocks (btrfs, XFS, …).
_FICLONE = 0x40049409


_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_libc.linkat.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
]


def _link_handle(fd: int, target: Path) -> bool:
    """Give the open file ``fd`` (its own inode, whatever its name is now) the new
    name ``target``; False where that cannot be done here (another filesystem,
    not ours to link, or a process without CAP_DAC_READ_SEARCH on a kernel
    whose /proc will not link)."""
    if _libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(target), _AT_EMPTY_PATH) == 0:
        return True
    try:
        os.link(f"/proc/self/fd/{fd}", target, follow_symlinks=True)
    except OSError:
        return False
    return True


def link_or_copy(source: BinaryIO, target: Path) -> str:
    """Make ``target`` a new file with the bytes of the open file ``source``, the
    cheapest way the storage allows: a hard link to that very file (same
    filesystem, and the caller may link it), a reflink (blocks shared until one is
    written), else a copy. Returns "linked", "cloned" or "copied"."""
    if _link_handle(source.fileno(), target):
        return "linked"
    source.seek(0)
    with open(target, "xb") as out:
        try:
            fcntl.ioctl(out.fileno(), _FICLONE, source.fileno())
            return "cloned"
        except OSError:
            shutil.copyfileobj(source, out, 1024 * 1024)
            return "copied"


def copy_to(root: Path | str, relpath: str, target: Path) -> bool:
    """Copy the file ``relpath`` beneath ``root`` to the server's own path
    ``target`` (made anew); False when there is no such regular file."""
    try:
        source = open_file(root, relpath)
    except FileNotFoundError:
        return False
    with source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)
    return True
