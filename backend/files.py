"""File-name safety: what may be written under a project folder.

Names keep their Unicode and spaces; they are normalised to NFC and refused, with a
reason a user can act on, when they could escape their folder or break a filesystem
or a download on another operating system.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4000
MAX_DEPTH = 32

# Device names Windows refuses, with or without an extension: a project downloaded
# as a zip must unpack on a colleague's laptop.
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{kind}{n}" for kind in ("COM", "LPT") for n in range(1, 10)
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FORBIDDEN_CHARS = set('/\\:*?"<>|')


class UnsafeName(ValueError):
    """A file or folder name that cannot be stored, with the reason."""


def clean_name(name: str) -> str:
    """Return ``name`` as stored (NFC), or raise UnsafeName saying why not."""
    if not isinstance(name, str):
        raise UnsafeName("A name must be text.")
    name = unicodedata.normalize("NFC", name)
    shown = name if len(name) <= 40 else name[:37] + "…"
    if name.strip() == "":
        raise UnsafeName("A name cannot be empty.")
    if name in (".", ".."):
        raise UnsafeName(f"“{name}” is not allowed as a name.")
    if _CONTROL.search(name):
        raise UnsafeName(f"“{shown!r}” contains control characters (such as NUL).")
    bad = sorted(set(name) & _FORBIDDEN_CHARS)
    if bad:
        raise UnsafeName(f"“{shown}” contains {' '.join(bad)}, not allowed in names.")
    if name != name.strip() or name.endswith("."):
        raise UnsafeName(f"“{shown}” starts or ends with a space, or ends with a dot.")
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        raise UnsafeName(f"“{shown}” is a reserved device name on Windows.")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafeName(
            f"“{shown}” is too long ({len(name.encode('utf-8'))} bytes; "
            f"the limit is {MAX_NAME_BYTES})."
        )
    return name


def clean_relpath(path: str) -> str:
    """Return a relative POSIX path whose every part passes clean_name.

    Absolute paths, backslashes and ``..`` are refused, never silently rewritten.
    """
    if not isinstance(path, str) or path.strip() == "":
        raise UnsafeName("A path cannot be empty.")
    if "\\" in path:
        raise UnsafeName(f"“{path}” contains a backslash; use / between folders.")
    if path.startswith("/"):
        raise UnsafeName(
            f"“{path}” is an absolute path; give a path inside the project."
        )
    parts = [part for part in path.split("/") if part != ""]
    if any(part in (".", "..") for part in parts):
        raise UnsafeName(f"“{path}” goes outside its folder (contains . or ..).")
    if len(parts) > MAX_DEPTH:
        raise UnsafeName(f"“{path}” is nested more than {MAX_DEPTH} folders deep.")
    cleaned = "/".join(clean_name(part) for part in parts)
    if len(cleaned.encode("utf-8")) > MAX_PATH_BYTES:
        raise UnsafeName(f"The path is longer than {MAX_PATH_BYTES} bytes.")
    return cleaned


def inside(root: Path, relpath: str) -> Path:
    """``root / relpath``, checked to stay inside ``root`` once links are resolved."""
    root = root.resolve()
    target = (root / PurePosixPath(relpath)).resolve()
    if target != root and root not in target.parents:
        raise UnsafeName(f"“{relpath}” resolves outside its folder.")
    return target


def numbered_name(name: str, taken: set[str]) -> str:
    """The first of ``name``, ``stem (1).ext``, ``stem (2).ext`` … not in ``taken``."""
    if name not in taken:
        return name
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    n = 1
    while True:
        candidate = f"{stem} ({n}){dot}{ext}"
        if candidate not in taken:
            return candidate
        n += 1
