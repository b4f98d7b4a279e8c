"""Name safety (backend.files): what may become a file under a project."""

import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.archives import ArchiveLimits, ArchiveRejected, extract
from backend.files import UnsafeName, clean_name, clean_relpath, inside, numbered_name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("..", "not allowed"),
        ("a\x00b", "control characters"),
        ("a/b", "not allowed in names"),
        ("con", "reserved device name"),
        ("LPT1.txt", "reserved device name"),
        ("x" * 300, "too long"),
        ("trailing ", "ends with a space"),
        ("dots.", "ends with a dot"),
    ],
)
def test_unsafe_names_are_refused_with_a_reason(name, reason):
    with pytest.raises(UnsafeName, match=reason):
        clean_name(name)


@pytest.mark.parametrize(
    "name", ["résumé.csv", "sample 1.fastq.gz", "日本語.txt", ".hidden", "a (1).tsv"]
)
def test_unicode_and_spaces_are_kept(name):
    assert clean_name(name) == name


def test_names_are_normalised_to_nfc():
    assert clean_name("re\u0301sume\u0301") == "résumé"


@pytest.mark.parametrize(
    "path", ["../../x", "/etc/passwd", "a/../../b", "a\\b", "a/./b", ""]
)
def test_paths_that_could_escape_are_refused(path):
    with pytest.raises(UnsafeName):
        clean_relpath(path)


def test_clean_relpath_drops_empty_parts_only():
    assert clean_relpath("reads//lane 1/r1.fq") == "reads/lane 1/r1.fq"


def test_inside_refuses_a_symlink_that_leads_out(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeName):
        inside(tmp_path / "root", "link/secret")


def test_numbered_names_for_keep_both():
    taken = {"data.tar.gz", "data (1).tar.gz", "README"}
    assert numbered_name("data.tar.gz", taken) == "data (2).tar.gz"
    assert numbered_name("README", taken) == "README (1)"
    assert numbered_name("new.txt", taken) == "new.txt"


@settings(max_examples=150, deadline=None)
@given(name=st.text(min_size=1, max_size=60))
def test_any_entry_name_lands_inside_or_is_rejected(tmp_path_factory, name):
    work = tmp_path_factory.mktemp("prop")
    archive = work / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), b"payload")
    dest = work / "dest"
    try:
        result = extract(archive, dest, ArchiveLimits(), "zip")
    except ArchiveRejected:
        assert not dest.exists() or not any(dest.rglob("*"))
        return
    root = dest.resolve()
    written = [p for p in work.rglob("*") if p.is_file() and p != archive]
    for path in written:
        assert root in path.resolve().parents
    assert len(written) == sum(not e.is_dir for e in result.entries)
