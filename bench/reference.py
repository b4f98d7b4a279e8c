"""Reference pipelines benchmark, each side run in the pipeline's own image by the
Docker runner, alternated and repeated in the same run:

- seq-qc on a FASTQ of 300 MB or more against ``seqkit stats -a`` on one thread,
  both with seq-qc's limits;
- table-profiler on a CSV of 200 MiB or more, with its manifest's limits, against
  pandas' ``read_csv`` + ``describe()`` (given 4 GiB: pandas holds the whole table);
  the peak memory of both is printed.

    python -m bench.reference [--reads 1000000] [--rows 6600000] [--repeat 3]
                              [--only seq-qc|table-profiler]

The inputs are synthetic (fixed seeds): 150-base reads whose qualities fall along
the read, as Illumina's do; a table of six columns (integers, decimals, a text
column). Needs a Docker engine and the pipelines' images (``make pipeline-images``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.manifest import PIPELINES_DIR, load_pipeline
from backend.runners import DockerRunner, RunSpec, docker_client
from backend.supervision import run_to_end
from bench.common import targets

READ_LENGTH = 150
PANDAS_MEMORY_MB = 4096
PANDAS_DESCRIBE = (
    "import pandas as pd, sys; print(pd.read_csv(sys.argv[1]).describe(include='all'))"
)


def write_fastq(path: Path, reads: int, seed: int = 7) -> int:
    """Write ``reads`` four-line records to ``path``; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", np.uint8)
    # Phred 38 at the start down to about 20 at the end, with noise.
    slope = np.linspace(38, 20, READ_LENGTH)
    with open(path, "wb") as handle:
        for start in range(0, reads, 100_000):
            count = min(100_000, reads - start)
            sequence = bases[rng.integers(0, 4, (count, READ_LENGTH))]
            noise = rng.normal(0, 4, (count, READ_LENGTH))
            phred = np.clip(slope + noise, 2, 41).astype(np.uint8) + 33
            lines = []
            for n in range(count):
                lines += (
                    f"@bench_read_{start + n} length={READ_LENGTH}".encode(),
                    sequence[n].tobytes(),
                    b"+",
                    phred[n].tobytes(),
                )
            handle.write(b"\n".join(lines) + b"\n")
    return path.stat().st_size


def write_csv(path: Path, rows: int, seed: int = 11) -> int:
    """Write a table of ``rows`` rows (a block of 300,000 written again and again,
    which costs the readers the same as new rows); returns its size in bytes."""
    import pandas as pd

    block = min(rows, 300_000)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sample": np.arange(block),
            "expression": rng.normal(10, 3, block).round(4),
            "coverage": rng.exponential(2, block).round(4),
            "reads": rng.integers(0, 1000, block),
            "condition": rng.choice(["control", "treated", "knockout"], block),
            "score": rng.normal(0, 1, block).round(6),
        }
    )
    text = frame.to_csv(index=False)
    header, body = text.split("\n", 1)
    with open(path, "w") as handle:
        handle.write(header + "\n")
        for _ in range(rows // block):
            handle.write(body)
    return path.stat().st_size


class Bench:
    """Runs argv in a pipeline's image with its limits (or a given memory limit)."""

    def __init__(self, runner, work: Path):
        self.runner, self.work = runner, work
        self.inputs = work / "input"
        self.inputs.mkdir()
        self.ids = iter(range(9_000_000, 10_000_000))

    def run(self, pipeline, argv: list[str], memory_mb: int | None = None):
        """(seconds, peak memory in MiB) of one run."""
        out = self.work / "output"
        shutil.rmtree(out, ignore_errors=True)
        spec = RunSpec(
            analysis_id=next(self.ids),
            argv=argv,
            image=pipeline.image_tag,
            input_dir=self.inputs,
            output_dir=out,
            log_path=self.work / "log.txt",
            memory_mb=memory_mb or pipeline.resources.memory_mb,
            cpus=pipeline.resources.cpus,
            pids=pipeline.resources.pids,
            timeout_s=1800,
        )
        started = time.perf_counter()
        ending, watch = run_to_end(self.runner, spec, poll_seconds=0.05)
        took = time.perf_counter() - started
        if ending.reason is not None:
            log = spec.log_path.read_text()[-2000:]
            raise SystemExit(f"{argv[:3]} failed ({ending.reason}): {log}")
        peak = watch.usage.peak_memory_bytes
        return took, (round(peak / 2**20) if peak else None)

    def alternate(self, sides: dict, repeat: int) -> dict[str, list]:
        """Each side ``repeat`` times, in alternating order."""
        found: dict[str, list] = {name: [] for name in sides}
        names = list(sides)
        for turn in range(repeat):
            for name in names if turn % 2 == 0 else names[::-1]:
                found[name].append(sides[name]())
        return found


def seq_qc_part(bench: Bench, reads: int, repeat: int) -> tuple[dict, list]:
    pipeline = load_pipeline(PIPELINES_DIR / "seq-qc")
    size = write_fastq(bench.inputs / "reads.fastq", reads)
    seq_qc = [
        "python3",
        "/app/seq_qc.py",
        "--out",
        "/data/output",
        "--input-dir",
        "/data/input",
        "/data/input/reads.fastq",
    ]
    seqkit = ["seqkit", "stats", "-a", "-T", "-j", "1", "/data/input/reads.fastq"]
    runs = bench.alternate(
        {
            "seqkit": lambda: bench.run(pipeline, seqkit),
            "seq-qc": lambda: bench.run(pipeline, seq_qc),
        },
        repeat,
    )
    floor = statistics.median(t for t, _ in runs["seqkit"])
    ours = statistics.median(t for t, _ in runs["seq-qc"])
    (bench.inputs / "reads.fastq").unlink()
    result = {
        "fastq_mb": round(size / 1e6, 1),
        "seqkit_stats_1_thread_median_s": round(floor, 2),
        "seq_qc_median_s": round(ours, 2),
        "ratio": round(ours / floor, 2),
        "runs_s": {k: [round(t, 2) for t, _ in v] for k, v in runs.items()},
    }
    target = (
        "seq-qc on a FASTQ of 300 MB or more: time <= 1.5 x seqkit stats -a on one "
        "thread",
        size >= 300e6 and result["ratio"] <= 1.5,
    )
    return result, [target]


def table_profiler_part(bench: Bench, rows: int, repeat: int) -> tuple[dict, list]:
    pipeline = load_pipeline(PIPELINES_DIR / "table-profiler")
    size = write_csv(bench.inputs / "table.csv", rows)
    ours = [
        "python3",
        "/app/profile_tables.py",
        "--out",
        "/data/output",
        "--input-dir",
        "/data/input",
        "/data/input/table.csv",
    ]
    pandas = ["python3", "-c", PANDAS_DESCRIBE, "/data/input/table.csv"]
    runs = bench.alternate(
        {
            "pandas": lambda: bench.run(pipeline, pandas, PANDAS_MEMORY_MB),
            "table-profiler": lambda: bench.run(pipeline, ours),
        },
        repeat,
    )
    floor = statistics.median(t for t, _ in runs["pandas"])
    took = statistics.median(t for t, _ in runs["table-profiler"])
    (bench.inputs / "table.csv").unlink()
    peaks = {k: max((m for _, m in v if m), default=None) for k, v in runs.items()}
    result = {
        "csv_mib": round(size / 2**20, 1),
        "rows": rows,
        "memory_limit_mib": pipeline.resources.memory_mb,
        "pandas_read_csv_describe_median_s": round(floor, 2),
        "table_profiler_median_s": round(took, 2),
        "ratio": round(took / floor, 2),
        "peak_memory_mib": peaks,
        "runs_s": {k: [round(t, 2) for t, _ in v] for k, v in runs.items()},
    }
    limit = pipeline.resources.memory_mb
    return result, [
        (
            f"table-profiler on a CSV of 200 MiB or more succeeds within its "
            f"{limit} MiB limit",
            size >= 200 * 2**20,  # a run over its limit stops the benchmark
        ),
        (
            "table-profiler: time <= 2 x pandas read_csv + describe",
            result["ratio"] <= 2.0,
        ),
    ]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=6_600_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("seq-qc", "table-profiler"), default=None)
    args = parser.parse_args()
    client = docker_client()
    for name in ("seq-qc", "table-profiler"):  # fail early, naming a missing image
        client.images.get(load_pipeline(PIPELINES_DIR / name).image_tag)
    runner = DockerRunner(client)
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    try:
        bench = Bench(runner, work)
        result, found = {}, []
        if args.only in (None, "seq-qc"):
            result["seq_qc"], checks = seq_qc_part(bench, args.reads, args.repeat)
            found += checks
        if args.only in (None, "table-profiler"):
            result["table_profiler"], checks = table_profiler_part(
                bench, args.rows, args.repeat
            )
            found += checks
        result["targets"] = targets(*found)
    finally:
        runner.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
