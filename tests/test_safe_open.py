"""backend.safe_open: what a run leaves in its folders is read, listed, counted,
removed and linked without ever reaching what a link points to, and without
blocking on a FIFO. Every test runs twice: with openat2, and with the O_NOFOLLOW
walk the module falls back to on kernels without it."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from backend import safe_open

SECRET = b"HOST-SECRET-do-not-serve\n"


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    if request.param == "openat2":
        if not safe_open.USE_OPENAT2:
            pytest.fail("this kernel has no openat2; the walk is tested alone")
    else:
        monkeypatch.setattr(safe_open, "USE_OPENAT2", False)
    return request.param


@pytest.fixture
def planted(tmp_path: Path, resolver) -> Path:
    """A run's output folder as a hostile run leaves it, beside a host folder
    holding a secret."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_bytes(SECRET)
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    (out / "plain.txt").write_bytes(b"mine\n")
    (out / "sub" / "deep.txt").write_bytes(b"deep\n")
    (out / "to-secret.txt").symlink_to(host / "secret.txt")
    (out / "to-host").symlink_to(host)  # a folder link
    (out / "relative.txt").symlink_to("../host/secret.txt")
    os.mkfifo(out / "pipe.txt")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(out / "sock.txt"))
    listener.close()
    (out / "new\nline.txt").write_bytes(b"odd name\n")
    (out / os.fsdecode(b"bad-\xff.txt")).write_bytes(b"not utf-8\n")
    return out


def test_regular_files_are_read(planted):
    assert safe_open.read_bytes(planted, "plain.txt") == b"mine\n"
    assert safe_open.read_bytes(planted, "sub/deep.txt") == b"deep\n"


@pytest.mark.parametrize(
    "relpath",
    [
        "to-secret.txt",
        "relative.txt",
        "to-host/secret.txt",  # a link as a parent folder
        "pipe.txt",
        "sock.txt",
        "../host/secret.txt",
        "sub/../../host/secret.txt",
        "/etc/hostname",
        "sub",
        "missing.txt",
    ],
)
def test_anything_but_a_regular_file_beneath_is_refused(planted, relpath):
    with pytest.raises(FileNotFoundError):
        safe_open.read_bytes(planted, relpath)


def test_a_fifo_never_blocks(planted):
    done = threading.Event()

    def read() -> None:
        try:
            safe_open.read_bytes(planted, "pipe.txt")
        except FileNotFoundError:
            done.set()

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert done.is_set(), "opening a FIFO blocked or was not refused"


def test_a_listing_holds_regular_files_only(planted):
    assert safe_open.list_files(planted) == [
        ("new\nline.txt", 9),
        ("plain.txt", 5),
        ("sub/deep.txt", 5),
    ]


def test_sizes_never_count_what_links_point_to(planted, tmp_path):
    giant = tmp_path / "host" / "giant.bin"
    with open(giant, "wb") as handle:
        handle.truncate(50 * 1024**2)
    (planted / "to-giant.bin").symlink_to(giant)
    assert safe_open.tree_size(planted) == 5 + 5 + 9 + 10


def test_a_root_that_is_a_link_lists_and_opens_nothing(planted, tmp_path):
    link = tmp_path / "output-link"
    link.symlink_to(planted)
    assert safe_open.list_files(link) == []
    with pytest.raises(FileNotFoundError):
        safe_open.open_file(link, "plain.txt")


def test_the_handle_checked_is_the_file_served_even_if_the_name_swaps(planted):
    handle = safe_open.open_file(planted, "plain.txt")
    os.unlink(planted / "plain.txt")
    (planted / "plain.txt").symlink_to(planted.parent / "host" / "secret.txt")
    with handle:
        assert handle.read() == b"mine\n"


def test_clearing_removes_links_not_their_targets(planted, tmp_path):
    safe_open.clear_folder(planted)
    assert list(planted.iterdir()) == []
    assert (tmp_path / "host" / "secret.txt").read_bytes() == SECRET


def test_folders_are_made_beneath_and_never_through_a_link(planted, tmp_path):
    safe_open.make_folder(planted, "volumes/0")
    assert (planted / "volumes" / "0").is_dir()
    with pytest.raises(FileNotFoundError):
        safe_open.make_folder(planted, "to-host/made-through-a-link")
    assert not (tmp_path / "host" / "made-through-a-link").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a folder over needs root")
def test_a_folder_is_handed_over_by_its_handle(planted, tmp_path):
    safe_open.make_folder(planted, "volumes/1", owner=(4242, 4242))
    assert (planted / "volumes" / "1").stat().st_uid == 4242
    # A planted link in the way: refused, and its target keeps its owner.
    (planted / "evil").symlink_to(tmp_path / "host")
    with pytest.raises(FileNotFoundError):
        safe_open.make_folder(planted, "evil", owner=(4242, 4242))
    assert (tmp_path / "host").stat().st_uid == 0


def test_writing_replaces_a_planted_link_instead_of_writing_through_it(
    planted, tmp_path
):
    safe_open.write_file(planted, "to-secret.txt", b"written by the server\n")
    assert (tmp_path / "host" / "secret.txt").read_bytes() == SECRET
    assert not (planted / "to-secret.txt").is_symlink()
    assert (planted / "to-secret.txt").read_bytes() == b"written by the server\n"


def test_appending_refuses_a_link_or_a_fifo(planted, tmp_path):
    for name in ("to-secret.txt", "pipe.txt"):
        with pytest.raises(FileNotFoundError):
            safe_open.open_for_append(planted, name)
    assert (tmp_path / "host" / "secret.txt").read_bytes() == SECRET


def test_a_copy_is_of_the_file_opened(planted, tmp_path):
    target = tmp_path / "copied"
    with safe_open.open_file(planted, "plain.txt") as handle:
        os.unlink(planted / "plain.txt")
        (planted / "plain.txt").symlink_to(tmp_path / "host" / "secret.txt")
        how = safe_open.link_or_copy(handle, target)
    assert how in ("linked", "cloned", "copied")
    assert target.read_bytes() == b"mine\n"


def test_a_link_shares_the_opened_inode(planted, tmp_path):
    target = tmp_path / "linked"
    with safe_open.open_file(planted, "sub/deep.txt") as handle:
        inode = os.fstat(handle.fileno()).st_ino
        how = safe_open.link_or_copy(handle, target)
    if os.geteuid() == 0:  # linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH
        assert how == "linked"
    if how == "linked":
        assert target.stat().st_ino == inode
