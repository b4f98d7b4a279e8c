"""Execution benchmark: N trivial analyses through the app against the same N
containers started directly with the Docker SDK in a loop (the physical floor).

Through the app: submitted with the web form (test client), carried by RabbitMQ
(the embedded broker when none answers) to 2 worker processes, run by the Docker
runner. Reported: p50/p95 latency from submission to container start (the
engine's start events), measured one submission at a time into idle workers, and
the throughput ratio app/direct with all N submitted at once.

    python -m bench.execution [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import docker

from bench.common import app_with_user, bench_config, broker_url, targets
from tests.images import BUSYBOX_IMAGE, build_busybox_image

ROOT = Path(__file__).resolve().parent.parent
TEST_PIPELINES = ROOT / "tests" / "pipelines"


def build_images(client) -> str:
    from backend.images import build_pipeline_image
    from backend.manifest import load_pipeline

    build_busybox_image(client, BUSYBOX_IMAGE)
    pipeline = load_pipeline(TEST_PIPELINES / "sleeper")
    build_pipeline_image(client, pipeline, BUSYBOX_IMAGE)
    return pipeline.image_tag


def direct_loop(client, image: str, runs: int, work: Path) -> float:
    """Seconds to run ``runs`` containers one after the other, same sandbox."""
    out = work / "direct"
    out.mkdir()
    start = time.perf_counter()
    for _ in range(runs):
        client.containers.run(
            image,
            ["sh", "-c", "echo run >> /data/output/runs.txt; sleep 0"],
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user="0:0",
            mem_limit="64m",
            pids_limit=16,
            volumes={str(out): {"bind": "/data/output", "mode": "rw"}},
            remove=True,
        )
    return time.perf_counter() - start


def watch_starts(client, seen: dict[int, float], stop: threading.Event) -> None:
    events = client.events(
        decode=True, filters={"event": "start", "label": "labqueue.analysis"}
    )
    for event in events:
        analysis = int(event["Actor"]["Attributes"]["labqueue.analysis"])
        seen[analysis] = event["timeNano"] / 1e9
        if stop.is_set():
            break
    events.close()


def through_the_app(runs: int, image_client, work: Path) -> dict:
    from frontend.extensions import db
    from frontend.models import Analysis
    from tests.workers import Worker

    config = bench_config(
        work,
        CELERY_BROKER_URL=broker_url(work),
        CELERY_QUEUE=f"bench-{uuid.uuid4().hex}",
        RUNNER="docker",
        PIPELINES_DIR=str(TEST_PIPELINES),
        MAX_RUNNING_PER_USER=runs,
        WTF_CSRF_ENABLED=False,  # the benchmark posts the run form directly
    )
    app, _user_id, (project,), client = app_with_user(config)
    workers = [Worker(config) for _ in range(2)]
    for worker in workers:
        worker.wait_ready()
    seen: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_starts, args=(image_client, seen, stop), daemon=True
    )
    watcher.start()

    def submit() -> int:
        reply = client.post(
            f"/projects/{project}/run/sleeper",
            data={"p_seconds": "0", "p_exit_code": "0"},
        )
        return int(reply.headers["Location"].rsplit("/", 1)[1])

    def wait_all(ids: list[int]) -> list:
        deadline = time.time() + 600
        with app.app_context():
            while time.time() < deadline:
                rows = db.session.scalars(
                    db.select(Analysis).where(
                        Analysis.id.in_(ids),
                        Analysis.state.in_(["succeeded", "failed"]),
                    )
                ).all()
                if len(rows) == len(ids):
                    return rows
                db.session.expire_all()
                time.sleep(0.05)
        raise RuntimeError("analyses did not finish")

    # Latency: one submission at a time, into idle workers.
    submitted: dict[int, float] = {}
    for _ in range(runs):
        stamp = time.time()
        analysis_id = submit()
        submitted[analysis_id] = stamp
        wait_all([analysis_id])
    # Throughput: all submitted at once, 2 workers draining the queue.
    first = time.time()
    batch = [submit() for _ in range(runs)]
    done = wait_all(batch)
    failed = [a.id for a in done if a.state.value != "succeeded"]
    last = max(a.finished_at for a in done).replace(tzinfo=UTC).timestamp()
    stop.set()
    for worker in workers:
        worker.stop()
    app.extensions["celery"].close()
    latencies = [seen[a] - submitted[a] for a in submitted if a in seen]
    return {
        "broker": config["CELERY_BROKER_URL"].split(":")[0],
        "failed": failed,
        "latencies": latencies,
        "seconds": last - first,
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    client = docker.from_env()
    try:
        image = build_images(client)
        direct_seconds = direct_loop(client, image, args.runs, work)
        app = through_the_app(args.runs, client, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latencies = sorted(app["latencies"])
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)] if latencies else None
    result = {
        "runs": args.runs,
        "broker": app["broker"],
        "failed_runs": app["failed"],
        "latency_p50_ms": round(1000 * statistics.median(latencies))
        if latencies
        else None,
        "latency_p95_ms": round(1000 * p95) if p95 is not None else None,
        "direct_runs_per_s": round(args.runs / direct_seconds, 2),
        "app_runs_per_s_2_workers": round(args.runs / app["seconds"], 2),
        "throughput_ratio": round(direct_seconds / app["seconds"], 2),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    result["targets"] = targets(
        ("no run failed", not app["failed"]),
        (
            "latency_p50_ms <= 300",
            result["latency_p50_ms"] is not None and result["latency_p50_ms"] <= 300,
        ),
        ("throughput_ratio >= 0.8", result["throughput_ratio"] >= 0.8),
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
