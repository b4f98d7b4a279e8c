"""Slurm benchmark: submission to "job running" through Labqueue's Slurm runner,
against ``sbatch`` of the same job script directly, alternated round after round.

"Running" is the moment the job's container starts (the engine's start event):
on both sides the same script, the same cluster, the same container command. The
app's side is the web form's submission, the dispatch, the start task and the
runner's ``sbatch``, one run at a time into an idle worker; the floor writes the
job script with the same runner and calls ``sbatch --parsable`` itself.

Needs a Slurm cluster (``tests/slurm/start``) and Docker.

    python -m bench.slurm [--runs 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from backend.runners import RunSpec, docker_client
from backend.runners.slurm import SlurmRunner
from bench.common import targets
from bench.execution import App, build_images


class ContainerStarts:
    """The engine's start events, by container name."""

    def __init__(self, client):
        self.seen: dict[str, float] = {}
        self.events = client.events(decode=True, filters={"event": "start"})
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self.events:
                name = event["Actor"]["Attributes"].get("name", "")
                self.seen[name] = event["timeNano"] / 1e9
        except Exception:  # noqa: S110 (closed at the end)
            pass

    def wait(self, name: str, timeout: float = 60) -> float:
        deadline = time.time() + timeout
        while name not in self.seen:
            if time.time() > deadline:
                raise TimeoutError(f"{name} did not start")
            time.sleep(0.01)
        return self.seen[name]

    def close(self) -> None:
        self.events.close()


class Floor:
    """The same job script, submitted with sbatch directly."""

    def __init__(self, image: str, work: Path):
        self.runner = SlurmRunner(site=f"floor{uuid.uuid4().hex[:6]}")
        self.image, self.work, self.number = image, work, 0

    def submit(self) -> tuple[str, float]:
        self.number += 1
        folder = self.work / f"floor-{self.number}"
        (folder / "input").mkdir(parents=True)
        spec = RunSpec(
            analysis_id=self.number,
            argv=["sh", "-c", "echo run >> /data/output/runs.txt"],
            image=self.image,
            input_dir=folder / "input",
            output_dir=folder / "output",
            log_path=folder / "log.txt",
            cpus=0.25,
            memory_mb=64,
            pids=16,
            timeout_s=600,
        )
        spec.work_dir.mkdir(parents=True)
        spec.output_dir.mkdir(parents=True)
        script = spec.work_dir / "job.sh"
        script.write_text(self.runner.job_script(spec))
        stamp = time.time()
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                f"--job-name={self.runner.job_name(spec.analysis_id)}",
                f"--output={spec.work_dir / 'output.log'}",
                f"--chdir={spec.work_dir}",
                "--cpus-per-task=1",
                "--mem=64M",
                "--time=10",
                "--no-requeue",
                str(script),
            ],
            check=True,
            capture_output=True,
        )
        return self.runner.job_name(spec.analysis_id), stamp

    def wait_done(self, name: str) -> None:
        while subprocess.run(
            ["squeue", "--noheader", "--name", name], capture_output=True, text=True
        ).stdout.strip():
            time.sleep(0.1)


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-slurm-"))
    client = docker_client()
    app_latency, floor_latency = [], []
    try:
        image = build_images(client)
        starts = ContainerStarts(client)
        floor = Floor(image, work / "floor")
        app = App(work / "app", client, many=args.runs, runner="slurm")
        with app.app.app_context():
            from frontend.core.runners import make_runner

            names = make_runner()
        try:
            for _round in range(args.rounds):  # the two sides alternate
                for _ in range(args.runs):
                    name, stamp = floor.submit()
                    floor_latency.append(starts.wait(name) - stamp)
                    floor.wait_done(name)
                for _ in range(args.runs):
                    analysis_id, stamp = app.submit()
                    name = names.job_name(analysis_id)
                    app_latency.append(starts.wait(name) - stamp)
                    app.wait_finished([analysis_id])
        finally:
            app.close()
            starts.close()
    finally:
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    ratio = p50(app_latency) / p50(floor_latency)
    result = {
        "runs_per_round": args.runs,
        "rounds": args.rounds,
        "app_submit_to_running_p50_ms": round(1000 * p50(app_latency)),
        "sbatch_to_running_p50_ms": round(1000 * p50(floor_latency)),
        "latency_ratio": round(ratio, 2),
        "app_extra_p50_ms": round(1000 * (p50(app_latency) - p50(floor_latency))),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    result["targets"] = targets(
        ("submit -> job running p50 <= 1.5 x sbatch directly", ratio <= 1.5),
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
