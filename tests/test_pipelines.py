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


def run(client, tmp_path, name, values, analysis_id):
    pipeline = load_pipeline(PIPELINES_DIR / name)
    inputs = tmp_path / "input"
    shutil.copytree(DATA, inputs)
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
    assert ending.reason is None, spec.log_path.read_text()
    return spec.output_dir, watch.log.progress


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.docker
def test_table_profiler_on_an_expression_table(images, tmp_path):
    out, progress = run(
        images,
        tmp_path,
        "table-profiler",
        {"tables": ["expression.csv"], "bins": 12},
        9201,
    )
    summary = {r["column"]: r for r in rows(out / "summary.csv")}
    assert summary["ctrl_1"]["type"] == "numeric"
    assert summary["condition"]["type"] == "text"
    assert int(summary["gene"]["unique"]) == 40
    assert sum(int(r["missing"]) for r in summary.values()) > 0  # the NA cells
    assert is_png(out / "expression_histograms.png")
    assert is_png(out / "expression_correlation.png")
    assert (out / "expression_correlation.svg").read_text().startswith("<?xml")
    assert progress[0] == 100


@pytest.mark.docker
def test_seq_qc_on_fastq_and_fasta(images, tmp_path):
    out, progress = run(
        images,
        tmp_path,
        "seq-qc",
        {"sequences": ["reads.fastq.gz", "contigs.fa"]},
        9202,
    )
    summary = {r["file"]: r for r in rows(out / "qc_summary.csv")}
    assert summary["reads.fastq.gz"]["format"] == "FASTQ"
    assert int(summary["reads.fastq.gz"]["records"]) == 300
    assert float(summary["reads.fastq.gz"]["mean_quality"]) > 20
    assert int(summary["contigs.fa"]["records"]) == 12
    assert int(summary["contigs.fa"]["n50"]) > 500
    for name in ("reads_lengths", "reads_gc", "reads_quality", "contigs_lengths"):
        assert is_png(out / f"{name}.png"), name
    assert not (out / "contigs_quality.png").exists()  # FASTA has no qualities
    assert progress[0] == 100


def test_pipelines_cli_check_and_list(runner):
    result = runner.invoke(args=["pipelines", "check"])
    assert result.exit_code == 0
    assert "2 pipeline(s) OK: seq-qc, table-profiler" in result.output
    listing = runner.invoke(args=["pipelines", "list"]).output
    assert "labqueue/table-profiler:1.0.0" in listing


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
    missing = (tmp_path / "out" / "=cmd_missing.csv").read_text()
    assert "'=HYPERLINK" in missing and "\n=" not in missing
