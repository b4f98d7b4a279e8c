"""The dependency locks: every package pinned with hashes, and each lock still
what its requirements/*.in file asks for (edit the .in, then `make lock`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {
    "requirements/runtime.in": "requirements.txt",
    "requirements/local-runner.in": "requirements-local.txt",
    "requirements/dev.in": "requirements-dev.txt",
}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, list[str]]:
    """Package → its hash lines, from a pip-compile output."""
    found: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = (normal(match.group(1)), match.group(2))
            found[current] = []
        elif current and line.strip().startswith("--hash=sha256:"):
            found[current].append(line.strip())
    return found


@pytest.mark.parametrize(("source", "lock"), LOCKS.items())
def test_every_locked_package_has_hashes_and_every_pin_is_locked(source, lock):
    packages = locked(ROOT / lock)
    assert packages, lock
    assert all(hashes for hashes in packages.values()), lock
    for line in (ROOT / source).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            wanted = (normal(match.group(1)), match.group(2))
            assert wanted in packages, f"{source} asks for {line}: run make lock"


def test_the_locks_agree_on_shared_packages():
    versions: dict[str, str] = {}
    for lock in LOCKS.values():
        for name, version in locked(ROOT / lock):
            assert versions.setdefault(name, version) == version, (lock, name)
