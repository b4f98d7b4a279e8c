"""Archive extraction (backend.archives): the rules, checked before any write."""

import io
import os
import tarfile
import zipfile

import pytest

from backend.archives import (
    ArchiveLimits,
    ArchiveRejected,
    archive_kind,
    archive_stem,
    extract,
)

LIMITS = ArchiveLimits(max_entries=10_000, max_total_bytes=2 * 1024**3, max_ratio=200)


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            if isinstance(name, zipfile.ZipInfo):
                zf.writestr(name, data)
            else:
                zf.writestr(name, data)
    return path


def rejected(tmp_path, archive, kind="zip", limits=LIMITS) -> ArchiveRejected:
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveRejected) as caught:
        extract(archive, dest, limits, kind)
    # Nothing was written anywhere.
    leftovers = [p for p in tmp_path.rglob("*") if p not in (archive, dest)]
    assert leftovers == []
    return caught.value


def test_a_good_zip_extracts_with_folders(tmp_path):
    archive = make_zip(
        tmp_path / "good.zip",
        [("reads/r1.fq", b"@r1\nACGT\n+\nIIII\n"), ("notes.txt", "héllo".encode())],
    )
    result = extract(archive, tmp_path / "out", LIMITS, "zip")
    assert (tmp_path / "out" / "reads" / "r1.fq").read_bytes().startswith(b"@r1")
    assert {e.path for e in result.entries} == {"reads", "reads/r1.fq", "notes.txt"}


def test_zip_slip_is_refused_naming_the_entry(tmp_path):
    archive = make_zip(tmp_path / "slip.zip", [("ok.txt", b"x"), ("../../evil", b"x")])
    error = rejected(tmp_path, archive)
    assert error.entry == "../../evil"
    assert "paths with .. are not allowed" in str(error)
    assert not (tmp_path.parent / "evil").exists()


def test_absolute_paths_are_refused(tmp_path):
    archive = make_zip(tmp_path / "abs.zip", [("/etc/passwd", b"x")])
    assert "absolute" in str(rejected(tmp_path, archive))


def test_symlink_entries_are_refused(tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = 0o120777 << 16
    archive = make_zip(tmp_path / "link.zip", [(link, "/etc/passwd")])
    assert "symbolic links" in str(rejected(tmp_path, archive))


def test_zip_bomb_is_refused_before_writing(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("zeros.bin", "w", force_zip64=True) as entry:
            block = bytes(16 * 1024 * 1024)
            for _ in range(64):  # 1 GiB of zeros, about 1 MB compressed
                entry.write(block)
    assert archive.stat().st_size < 5 * 1024 * 1024
    assert "zip bomb" in str(rejected(tmp_path, archive))


def test_too_many_entries_are_refused(tmp_path):
    archive = make_zip(
        tmp_path / "many.zip", [(f"f{n}.txt", b"") for n in range(20_000)]
    )
    assert "more than 10,000 entries" in str(rejected(tmp_path, archive))


def test_more_than_the_space_left_is_refused(tmp_path):
    archive = make_zip(tmp_path / "big.zip", [("a.bin", os.urandom(4096))])
    small = ArchiveLimits(max_total_bytes=1000)
    assert "space you have left" in str(rejected(tmp_path, archive, limits=small))


def test_truncated_archive_is_refused(tmp_path):
    archive = make_zip(tmp_path / "t.zip", [("a.txt", os.urandom(50_000))])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert "damaged or truncated" in str(rejected(tmp_path, archive))


def test_duplicate_names_are_refused(tmp_path):
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", b"1")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("a.txt", b"2")
    assert "appears twice" in str(rejected(tmp_path, archive))


def test_file_and_folder_with_one_name_are_refused(tmp_path):
    archive = make_zip(tmp_path / "clash.zip", [("a", b"1"), ("a/b", b"2")])
    assert "both a file and a folder" in str(rejected(tmp_path, archive))


def test_mac_metadata_is_dropped_and_nested_archives_stored(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("inner.txt", b"x")
    archive = make_zip(
        tmp_path / "mac.zip",
        [
            ("data/table.csv", b"a,b\n1,2\n"),
            ("data/.DS_Store", b"junk"),
            ("__MACOSX/data/._table.csv", b"junk"),
            ("data/nested.zip", inner.getvalue()),
        ],
    )
    result = extract(archive, tmp_path / "out", LIMITS, "zip")
    names = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
    )
    assert names == ["data", "data/nested.zip", "data/table.csv"]
    assert result.dropped == 2


def make_tar(path, add):
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def test_tar_gz_extracts(tmp_path):
    def add(tf):
        data = b"x" * 100
        info = tarfile.TarInfo("dir/file.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))

    archive = make_tar(tmp_path / "a.tar.gz", add)
    extract(archive, tmp_path / "out", LIMITS, "tar")
    assert (tmp_path / "out" / "dir" / "file.txt").read_bytes() == b"x" * 100


def test_tar_hard_link_out_of_the_folder_is_refused(tmp_path):
    def add(tf):
        info = tarfile.TarInfo("passwd")
        info.type = tarfile.LNKTYPE
        info.linkname = "../../../etc/passwd"
        tf.addfile(info)

    archive = make_tar(tmp_path / "link.tgz", add)
    assert "links are not allowed" in str(rejected(tmp_path, archive, "tar"))


def test_tar_device_file_is_refused(tmp_path):
    def add(tf):
        info = tarfile.TarInfo("dev")
        info.type = tarfile.CHRTYPE
        tf.addfile(info)

    archive = make_tar(tmp_path / "dev.tgz", add)
    assert "device files" in str(rejected(tmp_path, archive, "tar"))


def test_truncated_tar_is_refused(tmp_path):
    def add(tf):
        data = os.urandom(100_000)
        info = tarfile.TarInfo("big.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))

    archive = make_tar(tmp_path / "t.tgz", add)
    archive.write_bytes(archive.read_bytes()[:30_000])
    assert "damaged or truncated" in str(rejected(tmp_path, archive, "tar"))


@pytest.mark.parametrize(
    ("name", "kind", "stem"),
    [
        ("a.zip", "zip", "a"),
        ("b.TAR.GZ", "tar", "b"),
        ("c.tgz", "tar", "c"),
        ("d.tar", "tar", "d"),
        ("e.gz", None, "e.gz"),
        ("f.csv", None, "f.csv"),
    ],
)
def test_archive_names(name, kind, stem):
    assert archive_kind(name) == kind
    assert archive_stem(name) == stem
