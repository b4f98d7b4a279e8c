"""A pipeline's own tests: small inputs and the values they must give, run in the
pipeline's image the way the Docker runner runs an analysis.

A pipeline folder may hold ``tests/cases.toml`` and ``tests/inputs/``::

    [[case]]
    name = "one plasmid"
    params = { sequences = ["NC_005816.fna"] }   # checked by the schema
    outputs = ["NC_005816.fna_lengths.png"]        # files that must be written
    log = ["1 records"]                            # text the log must contain
    fails = false                                  # true: the run must fail

    [[case.rows]]                                  # a row of an output CSV
    output = "qc_summary.csv"
    where = { file = "NC_005816.fna" }             # which row
    equal = { bases = "9609", gc_percent = 45.26 } # text exactly, numbers to 1e-9

``run_cases`` returns, for each case, the mismatches in words (none: it passed).
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import safe_open
from .manifest import Pipeline
from .params import ParamsInvalid, build_argv, validate_params
from .runners import RunSpec
from .supervision import run_to_end

CASES_FILE = Path("tests") / "cases.toml"
INPUTS_DIR = Path("tests") / "inputs"
CASE_TIMEOUT_S = 600


@dataclass
class CaseResult:
    pipeline: str
    name: str
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def load_cases(pipeline: Pipeline) -> list[dict]:
    """The pipeline's cases ([] when it has none); ValueError naming the file."""
    path = pipeline.folder / CASES_FILE
    if not path.exists():
        return []
    try:
        cases = tomllib.loads(path.read_text()).get("case", [])
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    for number, case in enumerate(cases, 1):
        if not isinstance(case.get("params"), dict):
            raise ValueError(f"{path}: case {number} has no params table")
        case.setdefault("name", f"case {number}")
    return cases


def run_cases(pipeline: Pipeline, runner, say=lambda line: None) -> list[CaseResult]:
    """Run every case of ``pipeline`` with ``runner``; ``say`` hears each result."""
    results = []
    for case in load_cases(pipeline):
        result = CaseResult(pipeline.name, case["name"])
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="labqueue-case-") as work:
            result.problems = _run_case(pipeline, case, runner, Path(work))
        result.seconds = time.monotonic() - started
        say(result)
        results.append(result)
    return results


def _run_case(pipeline: Pipeline, case: dict, runner, work: Path) -> list[str]:
    inputs, outputs = work / "input", work / "output"
    source = pipeline.folder / INPUTS_DIR
    if source.is_dir():
        shutil.copytree(source, inputs)
    else:
        inputs.mkdir()
    files = [p.relative_to(inputs).as_posix() for p in inputs.rglob("*") if p.is_file()]
    try:
        params = validate_params(pipeline, case["params"], files)
    except ParamsInvalid as invalid:
        return [f"params: {key or 'form'}: {m}" for key, m in invalid.errors.items()]
    resources = pipeline.resources
    spec = RunSpec(
        analysis_id=time.time_ns() % 10**9,  # a container name of its own
        argv=build_argv(pipeline, params),
        image=pipeline.image_tag,
        input_dir=inputs,
        output_dir=outputs,
        log_path=work / "log.txt",
        memory_mb=resources.memory_mb,
        cpus=resources.cpus,
        pids=resources.pids,
        timeout_s=min(resources.timeout_minutes * 60, CASE_TIMEOUT_S),
    )
    ending, _watch = run_to_end(runner, spec)
    try:
        log = safe_open.read_text(work, "log.txt", limit=None)
    except FileNotFoundError:
        log = ""
    problems = []
    if case.get("fails", False):
        if ending.reason is None:
            problems.append("the run succeeded, but this case expects it to fail")
    elif ending.reason is not None:
        tail = "\n    ".join(log.splitlines()[-10:])
        problems.append(f"the run failed: {ending.reason}\n    {tail}")
    for text in case.get("log", []):
        if text not in log:
            problems.append(f"the log does not contain {text!r}")
    for name in case.get("outputs", []):
        if not safe_open.exists(outputs, name):
            problems.append(f"no output {name}")
    for expected in case.get("rows", []):
        problems += _check_row(outputs, expected)
    return problems


def _check_row(outputs: Path, expected: dict) -> list[str]:
    name, where = expected.get("output", ""), expected.get("where", {})
    # What the pipeline wrote is read like any run's outputs: safely.
    try:
        text = safe_open.read_text(outputs, name, limit=None) if name else None
    except FileNotFoundError:
        text = None
    if text is None:
        return [f"no output {name or '(a row needs output = ...)'}"]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    chosen = ", ".join(f"{k}={v}" for k, v in where.items())
    found = [r for r in rows if all(r.get(k) == str(v) for k, v in where.items())]
    if len(found) != 1:
        return [f"{name}: {len(found)} rows where {chosen} (expected one)"]
    row, problems = found[0], []
    for column, value in expected.get("equal", {}).items():
        got = row.get(column)
        if got is None:
            problems.append(f"{name}, row {chosen}: no column {column}")
        elif not _same(got, value):
            problems.append(
                f"{name}, row {chosen}: {column} is {got!r} (expected {value!r})"
            )
    return problems


def _same(got: str, expected) -> bool:
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        return got == str(expected)
    try:
        return math.isclose(float(got), expected, rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return False
