"""Reference pipelines benchmark: seq-qc on a FASTQ of 300 MB or more against
``seqkit stats -a`` on one thread, both run in seq-qc's own image by the Docker
runner with the pipeline's limits, alternated and repeated in the same run.

    python -m bench.reference [--reads 1000000] [--repeat 3]

The FASTQ is synthetic (a fixed seed): 150-base reads whose qualities fall
along the read, as Illumina's do. Needs a Docker engine and the seq-qc image
(``make pipeline-images``).
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


def timed_run(runner, spec_for, argv: list[str]) -> float:
    spec = spec_for(argv)
    started = time.perf_counter()
    ending, _watch = run_to_end(runner, spec, poll_seconds=0.05)
    took = time.perf_counter() - started
    if ending.reason is not None:
        raise SystemExit(f"{argv[:2]} failed: {spec.log_path.read_text()[-2000:]}")
    return took


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pipeline = load_pipeline(PIPELINES_DIR / "seq-qc")
    client = docker_client()
    client.images.get(pipeline.image_tag)  # fails early, with the tag, if missing
    runner = DockerRunner(client)
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    inputs = work / "input"
    inputs.mkdir()
    runs = iter(range(9_000_000, 10_000_000))

    def spec_for(argv: list[str]) -> RunSpec:
        out = work / "output"
        shutil.rmtree(out, ignore_errors=True)
        return RunSpec(
            analysis_id=next(runs),
            argv=argv,
            image=pipeline.image_tag,
            input_dir=inputs,
            output_dir=out,
            log_path=work / "log.txt",
            memory_mb=pipeline.resources.memory_mb,
            cpus=pipeline.resources.cpus,
            pids=pipeline.resources.pids,
            timeout_s=1800,
        )

    try:
        size = write_fastq(inputs / "reads.fastq", args.reads)
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
        times: dict[str, list[float]] = {"seqkit": [], "seq-qc": []}
        for run in range(args.repeat):
            order = ("seqkit", "seq-qc") if run % 2 == 0 else ("seq-qc", "seqkit")
            for side in order:
                argv = seqkit if side == "seqkit" else seq_qc
                times[side].append(timed_run(runner, spec_for, argv))
        floor = statistics.median(times["seqkit"])
        ours = statistics.median(times["seq-qc"])
        result = {
            "fastq_mb": round(size / 1e6, 1),
            "reads": args.reads,
            "seqkit_stats_1_thread_median_s": round(floor, 2),
            "seq_qc_median_s": round(ours, 2),
            "ratio": round(ours / floor, 2),
            "runs_s": {side: [round(t, 2) for t in ts] for side, ts in times.items()},
        }
        result["targets"] = targets(
            (
                "seq-qc on a FASTQ of 300 MB or more: time <= 1.5 x seqkit stats -a "
                "on one thread",
                size >= 300e6 and result["ratio"] <= 1.5,
            )
        )
    finally:
        runner.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
