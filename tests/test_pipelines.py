"""The reference pipelines, built and run in real containers on tests/data."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from backend.manifest import PIPELINES_DIR, load_pipeline
from backend.params import build_argv, validate_params
from backend.runners import DockerRunner, RunSpec
from backend.supervision import run_to_end

DATA = Path(__file__).parent / "data"


def run(client, tmp_path, name, values, analysis_id, extra=None, fails=False):
    """Run pipeline ``name`` on a copy of tests/data (and ``extra`` files, by
    path), the way the Docker runner runs it; returns its output folder and last
    progress (and with ``fails`` asserts that the run failed)."""
    pipeline = load_pipeline(PIPELINES_DIR / name)
    inputs = tmp_path / "input"
    shutil.copytree(DATA, inputs)
    for path, data in (extra or {}).items():
        (inputs / path).write_bytes(data)
    files = [p.relative_to(inputs).as_posix() for p in inputs.rglob("*") if p.is_file()]
    params = validate_params(pipeline, values, files)
    spec = RunSpec(
        analysis_id=analysis_id,
        argv=build_argv(pipeline, params),
        image=pipeline.image_tag,
        input_dir=inputs,
        output_dir=tmp_path / "output",
        log_path=tmp_path / "log.txt",
        memory_mb=pipeline.resources.memory_mb,
        cpus=pipeline.resources.cpus,
        pids=pipeline.resources.pids,
        timeout_s=300,
    )
    ending, watch = run_to_end(DockerRunner(client), spec)
    log = spec.log_path.read_text()
    if fails:
        assert ending.reason is not None, log
        return spec.output_dir, log
    assert ending.reason is None, log
    return spec.output_dir, watch.log.progress


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TABLES = [
    "tables/macrodata.csv",
    "tables/statecrime.csv",
    "tables/grunfeld.csv",
    "tables/fertility.csv",
    "expression.csv",
]
# summary.csv's columns and pandas describe()'s rows.
DESCRIBE = {
    "mean": "mean",
    "std": "std",
    "min": "min",
    "q1": "25%",
    "median": "50%",
    "q3": "75%",
    "max": "max",
}


@pytest.mark.docker
def test_table_profiler_numbers_equal_pandas_on_public_tables(images, tmp_path):
    import pandas as pd

    macro = (DATA / "tables/macrodata.csv").read_text().splitlines()
    macro.insert(120, macro[120] + ",1.5")  # one row with a field too many
    crime_lines = (DATA / "tables/statecrime.csv").read_text().splitlines()
    extra = {
        "tables/ragged.csv": ("\n".join(macro) + "\n").encode(),
        # Rows (not the header) ending with a delimiter: no column more.
        "tables/trailing.csv": "\n".join(
            [crime_lines[0]] + [f"{line}," for line in crime_lines[1:]] + [""]
        ).encode(),
    }
    given = [*TABLES, "tables/wine_data.csv", *extra]
    out, progress = run(
        images,
        tmp_path,
        "table-profiler",
        {"tables": given, "bins": 12},
        9201,
        extra=extra,
    )
    summary = rows(out / "summary.csv")
    assert list(dict.fromkeys(r["table"] for r in summary)) == given  # in order
    for name in TABLES:
        frame = pd.read_csv(DATA / name)
        ours = {r["column"]: r for r in summary if r["table"] == name}
        assert list(ours) == list(frame.columns), name
        described = frame.describe()
        for column in frame.columns:
            row = ours[column]
            assert int(row["count"]) == frame[column].count(), (name, column)
            assert int(row["missing"]) == frame[column].isna().sum(), (name, column)
            if not frame[column].count():  # pandas describes it with NaN
                assert row["type"] == "empty", (name, column)
                continue
            if column not in described:
                assert row["type"] == "text", (name, column)
                continue
            assert row["type"] == "numeric", (name, column)
            assert int(row["unique"]) == frame[column].nunique(), (name, column)
            assert row["quantile_method"] == "linear (R type 7)"
            for ours_name, theirs in DESCRIBE.items():
                expected = described[column][theirs]
                assert float(row[ours_name]) == pytest.approx(expected, rel=1e-12), (
                    name,
                    column,
                    ours_name,
                )
        assert is_png(out / f"{name}_histograms.png"), name
        assert (out / f"{name}_missing.csv").exists()
    # Exact in the CSV: quartiles print as pandas gives them, not 1.5750000000000002.
    crime = {r["column"]: r for r in summary if r["table"] == "tables/statecrime.csv"}
    trailing = {r["column"]: r for r in summary if r["table"] == "tables/trailing.csv"}
    assert list(trailing) == list(crime)
    for column, row in trailing.items():
        assert {**row, "table": ""} == {**crime[column], "table": ""}, column
    murder = pd.read_csv(DATA / "tables/statecrime.csv")["murder"]
    for column, q in (("q1", 0.25), ("median", 0.5), ("q3", 0.75)):
        assert crime["murder"][column] == repr(float(murder.quantile(q)))
    errors = {r["table"]: r["error"] for r in summary if r["error"]}
    assert errors["tables/wine_data.csv"].startswith(
        "line 2 has 14 fields, but the header (line 1) has 5"
    )
    assert errors["tables/ragged.csv"].startswith(
        "line 121 has 15 fields, but the header (line 1) has 14"
    )
    assert set(errors) == {"tables/wine_data.csv", "tables/ragged.csv"}
    assert is_png(out / "expression.csv_correlation.png")
    assert (out / "expression.csv_correlation.svg").read_text().startswith("<?xml")
    assert progress[0] == 100


@pytest.mark.docker
def test_table_profiler_fails_only_when_every_table_fails(images, tmp_path):
    given = ["tables/wine_data.csv", "empty.csv"]
    out, log = run(
        images,
        tmp_path,
        "table-profiler",
        {"tables": given},
        9204,
        extra={"empty.csv": b""},
        fails=True,
    )
    assert "no table could be profiled" in log
    assert "tables/wine_data.csv: line 2 has 14 fields" in log
    assert "empty.csv: the table is empty" in log
    assert "Traceback" not in log
    assert [r["table"] for r in rows(out / "summary.csv")] == given


SEQUENCES = [
    "sequences/NC_005816.fna",
    "sequences/NC_005816.ffn",
    "sequences/example.fastq",
    "sequences/example.fastq.gz",
    "sequences/example_dos.fastq",
    "sequences/tricky.fastq",
    "sequences/wrapping_original_sanger.fastq",
    "sequences/sanger_full_range_original_sanger.fastq",
    "sequences/longreads_original_sanger.fastq",
    "sequences/zero_length.fastq",
    "sequences/misc_rna_original_sanger.fastq",
    "reads.fastq.gz",
    "contigs.fa",
]
# A '+' line naming another read: seqkit reads it (as most tools do), so does seq-qc,
# with seqkit's numbers (Biopython refuses it, so it is no oracle here).
LENIENT = ["sequences/error_diff_ids.fastq"]
# What seq-qc says of the malformed files: the record, its first line, the fault.
MALFORMED = {
    "sequences/error_trunc_in_qual.fastq": "record 5 (from line 17): Lengths of "
    "sequence and quality values differs",
    "sequences/error_qual_space.fastq": "record 4 (from line 13): its quality has a "
    "character that is not a Phred+33 score",
    "sequences/error_short_qual.fastq": "record 3 (from line 9): Lengths of sequence "
    "and quality values differs",
    "cut.fastq.gz": "the gzip data is damaged or ends early",
    "empty.fastq": "the file is empty",
    "late.fastq": "record 110001 (from line 440001): its quality has a character "
    "that is not a Phred+33 score",
}


def late_fault() -> bytes:
    """120,000 reads (reads.fastq.gz again and again) with a space in the quality
    of read 110,001: found after the plots of the first reads were drawn."""
    import gzip

    records = gzip.decompress((DATA / "reads.fastq.gz").read_bytes()).splitlines()
    lines = records * (120_000 // (len(records) // 4))
    quality = 4 * 110_000 + 3
    lines[quality] = b" " + lines[quality][1:]
    return b"\n".join(lines) + b"\n"


# qc_summary.csv's columns and `seqkit stats -a -T`'s.
SEQKIT = {
    "records": "num_seqs",
    "bases": "sum_len",
    "min_length": "min_len",
    "mean_length": "avg_len",
    "max_length": "max_len",
    "n50": "N50",
    "gc_percent": "GC(%)",
    "q20_percent": "Q20(%)",
    "q30_percent": "Q30(%)",
}


def seqkit_stats(path: Path) -> dict:
    """What seqkit itself says of ``path``: the oracle."""
    import subprocess

    if shutil.which("seqkit") is None:
        from tests.services import unavailable

        unavailable("seqkit is not installed (apt-get install seqkit)")
    done = subprocess.run(
        ["seqkit", "stats", "-a", "-T", "-G", "Nn", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    header, values = done.stdout.splitlines()
    return dict(zip(header.split("\t"), values.split("\t"), strict=True))


def biopython_records(path: Path) -> tuple[list[int], list[int]]:
    """Record lengths and every base's Phred score, by Biopython's parsers."""
    import gzip

    from Bio import SeqIO

    opener = gzip.open if path.name.endswith(".gz") else open
    fmt = "fastq" if ".fastq" in path.name else "fasta"
    lengths, qualities = [], []
    with opener(path, "rt") as handle:
        for record in SeqIO.parse(handle, fmt):
            lengths.append(len(record))
            qualities += record.letter_annotations.get("phred_quality", [])
    return lengths, qualities


@pytest.mark.docker
def test_seq_qc_numbers_equal_seqkit_on_public_files(images, tmp_path):
    import numpy as np

    cut = (DATA / "reads.fastq.gz").read_bytes()
    out, progress = run(
        images,
        tmp_path,
        "seq-qc",
        {"sequences": SEQUENCES + LENIENT + list(MALFORMED), "vector_plots": True},
        9202,
        extra={
            "cut.fastq.gz": cut[: len(cut) // 2],
            "empty.fastq": b"",
            "late.fastq": late_fault(),
        },
    )
    summary = {r["file"]: r for r in rows(out / "qc_summary.csv")}
    assert list(summary) == SEQUENCES + LENIENT + list(MALFORMED)  # paths, in order
    for name in SEQUENCES + LENIENT:
        row, expected = summary[name], seqkit_stats(DATA / name)
        assert row["error"] == "", (name, row["error"])
        assert row["format"] == expected["format"]
        for column, theirs in SEQKIT.items():
            if expected["format"] == "FASTA" and column.startswith("q"):
                assert row[column] == "", (name, column)  # no qualities in FASTA
                continue
            assert row[column] == expected[theirs], (name, column)
        bases = int(expected["sum_len"])
        gaps = 100 * int(expected["sum_gap"]) / bases
        assert row["n_percent"] == f"{gaps:.2f}", name
        if name in LENIENT:
            continue
        lengths, qualities = biopython_records(DATA / name)
        for column, q in (("length_q1", 25), ("length_median", 50), ("length_q3", 75)):
            assert float(row[column]) == np.percentile(lengths, q), (name, column)
        if qualities:
            assert row["mean_quality"] == f"{np.mean(qualities):.2f}", name
    # The header line is not sequence: pPCP1 is 9,609 bp, GC 45.26 %.
    plasmid = summary["sequences/NC_005816.fna"]
    assert (plasmid["bases"], plasmid["n50"], plasmid["gc_percent"]) == (
        "9609",
        "9609",
        "45.26",
    )
    assert plasmid["n_percent"] == "0.00"
    for name, message in MALFORMED.items():
        assert summary[name]["error"].startswith(message), summary[name]["error"]
        assert summary[name]["records"] == ""
        assert not list(out.glob(f"{name}_*")), name  # no plots of a failed file
    # One set of plots per input, named after its whole path: none collide.
    for name in ("sequences/example.fastq", "sequences/example.fastq.gz"):
        for kind in ("lengths", "gc", "quality"):
            assert is_png(out / f"{name}_{kind}.png"), (name, kind)
    # Asked for: vector copies too (by default the plots are PNG only).
    assert (out / "sequences/example.fastq_quality.svg").read_text().count("<svg")
    assert is_png(out / "contigs.fa_lengths.png")
    assert not (out / "contigs.fa_quality.png").exists()  # FASTA has no qualities
    assert progress[0] == 100


@pytest.mark.docker
def test_seq_qc_fails_only_when_every_file_fails_and_says_why_for_each(
    images, tmp_path
):
    bad = ["sequences/error_short_qual.fastq", "samples.fastq"]
    sheet = {"samples.fastq": b"sample,condition\nA1,control\n"}
    out, log = run(
        images, tmp_path, "seq-qc", {"sequences": bad}, 9203, extra=sheet, fails=True
    )
    assert "no file could be summarised" in log
    assert "sequences/error_short_qual.fastq: record 3 (from line 9)" in log
    assert "samples.fastq: this is not a FASTA or FASTQ file" in log
    assert "Traceback" not in log
    summary = rows(out / "qc_summary.csv")
    assert [r["file"] for r in summary] == bad


def test_pipelines_cli_check_and_list(runner):
    result = runner.invoke(args=["pipelines", "check"])
    assert result.exit_code == 0
    assert "2 pipeline(s) OK: seq-qc, table-profiler" in result.output
    listing = runner.invoke(args=["pipelines", "list"]).output
    assert "labqueue/table-profiler:2.0.0" in listing


@pytest.mark.docker
def test_each_reference_pipeline_passes_its_own_tests(images, runner):
    result = runner.invoke(args=["pipelines", "test"])
    assert result.exit_code == 0, result.output
    assert "seq-qc: a plasmid, reads and a malformed file ... ok" in result.output
    assert "2 pipeline(s), 3 case(s): all passed" in result.output


@pytest.mark.docker
def test_pipelines_test_reports_each_mismatch(images, app, runner, tmp_path):
    root = tmp_path / "pipelines"
    shutil.copytree(PIPELINES_DIR / "seq-qc", root / "seq-qc")
    cases = root / "seq-qc" / "tests" / "cases.toml"
    text = cases.read_text().replace("gc_percent = 45.26", "gc_percent = 50.0")
    text = text.replace('outputs = ["NC_005816.fna_lengths.png"', 'outputs = ["x.png"')
    cases.write_text(text.replace("fails = true", "fails = false"))
    app.config["PIPELINES_DIR"] = str(root)
    result = runner.invoke(args=["pipelines", "test", "seq-qc"])
    assert result.exit_code == 1
    assert (
        "qc_summary.csv, row file=NC_005816.fna: gc_percent is '45.26' "
        "(expected 50.0)" in result.output
    )
    assert "no output x.png" in result.output
    assert "seq-qc: no file can be read ... FAILED" in result.output
    assert "the run failed: " in result.output
    assert "1 pipeline(s), 2 case(s): 2 failed" in result.output


def test_pipelines_check_reports_file_and_field(app, runner, tmp_path):
    root = tmp_path / "pipelines"
    shutil.copytree(PIPELINES_DIR / "_template", root / "mine")
    manifest = root / "mine" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('"{times}"', '"{count}"'))
    app.config["PIPELINES_DIR"] = str(root)
    result = runner.invoke(args=["pipelines", "check"])
    assert result.exit_code == 1
    assert f"{manifest}: command: {{count}} is not a parameter" in result.output


def test_table_profiler_escapes_spreadsheet_formulas(tmp_path):
    """Run the pipeline's own script (no container needed) on a hostile table."""
    import subprocess
    import sys

    table = tmp_path / "=cmd.csv"
    table.write_text(
        '=HYPERLINK("http://x"),+SUM(A1),@name,amount\n'
        "=1+1,-2,@x,-3.5\n"
        "-bad,+4,\tcell,7\n"
    )
    script = PIPELINES_DIR / "table-profiler" / "profile_tables.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "out"), str(table)],
        capture_output=True,
        text=True,
        env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    summary = rows(tmp_path / "out" / "summary.csv")
    columns = {r["column"]: r for r in summary}
    assert set(columns) == {'\'=HYPERLINK("http://x")', "'+SUM(A1)", "'@name", "amount"}
    assert {r["table"] for r in summary} == {"'=cmd.csv"}
    assert columns['\'=HYPERLINK("http://x")']["top"].startswith("'")
    assert columns["amount"]["min"] == "-3.5"  # numbers are left alone
    assert columns["'+SUM(A1)"]["type"] == "numeric"
    missing = (tmp_path / "out" / "=cmd.csv_missing.csv").read_text()
    assert "'=HYPERLINK" in missing and "\n=" not in missing
