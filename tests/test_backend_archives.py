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


# --- Bombs made of headers, and archives made by tar -C dir . ----------------------


def header_bomb(path, count: int) -> None:
    """A tar.gz of ``count`` empty files with distinct names, written header by
    header (tarfile would take minutes for two million)."""
    import zlib

    header = bytearray(tarfile.TarInfo("0" * 7).tobuf(format=tarfile.USTAR_FORMAT))
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    base = sum(header) - sum(b"0" * 7)
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    with open(path, "wb") as out:
        block = bytearray()
        for number in range(count):
            name = b"%07d" % number
            header[0:7] = name
            header[148:156] = b"%06o\0 " % (base + sum(name))
            block += header
            if len(block) >= 4 * 1024**2:
                out.write(squeeze.compress(bytes(block)))
                block.clear()
        out.write(squeeze.compress(bytes(block) + bytes(1024)))
        out.write(squeeze.flush())


def refusal_cost(archive, limits=LIMITS):
    """The refusal, with the peak Python memory and the tar headers read for it."""
    import tracemalloc

    reads = []
    original = tarfile.TarInfo.fromtarfile

    def counting_read(tarfile_, archive):  # each call reads one header block
        reads.append(1)
        return original.__func__(tarfile_, archive)

    tarfile.TarInfo.fromtarfile = classmethod(counting_read)
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRejected) as caught:
            extract(archive, archive.parent / "dest", limits, "tar")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        tarfile.TarInfo.fromtarfile = original
    return caught.value, peak, len(reads)


def test_two_million_tar_headers_are_refused_after_the_limit(tmp_path):
    archive = tmp_path / "headers.tar.gz"
    header_bomb(archive, 2_000_000)
    error, peak, headers = refusal_cost(archive)
    assert "more than 10,000 entries" in str(error)
    assert headers <= 2 * LIMITS.max_entries + 2  # not two million
    assert peak < 100 * 1024**2, f"{peak / 1024**2:.0f} MiB"
    assert not (tmp_path / "dest").exists()


def test_a_huge_declared_member_is_refused_at_its_header(tmp_path):
    import zlib

    # 1 GiB of zeros in about 1 MiB of gzip: the ratio shows in the first header.
    archive = tmp_path / "zeros.tar.gz"
    info = tarfile.TarInfo("zeros.bin")
    info.size = 1024**3
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(archive, "wb") as out:
        out.write(squeeze.compress(info.tobuf(format=tarfile.USTAR_FORMAT)))
        zeros = bytes(16 * 1024**2)
        for _ in range(64):
            out.write(squeeze.compress(zeros))
        out.write(squeeze.compress(bytes(1024)) + squeeze.flush())
    assert archive.stat().st_size < 8 * 1024**2
    error, _peak, headers = refusal_cost(archive)
    assert "expands more than 200 times its size" in str(error)
    assert headers <= 1  # refused before skipping over the gigabyte


def test_a_tar_made_with_tar_c_dir_dot_extracts(tmp_path):
    import subprocess

    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a\n")
    (source / "sub" / "b.txt").write_text("b\n")
    archive = tmp_path / "dot.tar.gz"
    subprocess.run(["tar", "-C", str(source), "-czf", str(archive), "."], check=True)
    assert "./a.txt" in tarfile.open(archive).getnames()
    result = extract(archive, tmp_path / "out", LIMITS, "tar")
    assert (tmp_path / "out" / "a.txt").read_text() == "a\n"
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "b\n"
    assert {e.path for e in result.entries} == {"a.txt", "sub", "sub/b.txt"}


def test_a_zip_declaring_too_many_entries_is_refused_before_reading_them(tmp_path):
    archive = make_zip(tmp_path / "many.zip", [(f"{n}.txt", b"") for n in range(30)])
    limits = ArchiveLimits(max_entries=10, max_total_bytes=1024**2, max_ratio=200)
    opened = []
    original = zipfile.ZipFile.__init__
    zipfile.ZipFile.__init__ = lambda self, *a, **k: (
        opened.append(1),
        original(self, *a, **k),
    )[1]
    try:
        error = rejected(tmp_path, archive, limits=limits)
    finally:
        zipfile.ZipFile.__init__ = original
    assert "more than 10 entries" in str(error)
    assert opened == []  # the central directory was never parsed
