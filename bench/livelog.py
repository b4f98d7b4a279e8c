"""Live-log latency: from a line printed in a running container to its appearance
in the status endpoint the analysis page polls (which reads the log from an offset).

A ticker pipeline prints ``tick <n> <unix time>`` every 0.25 s; the benchmark polls
the endpoint every 20 ms (as fast as a page could) and compares the time each line
first appears with the time printed in it (one clock: same host).

    python -m bench.livelog [--ticks 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import docker

from bench.common import app_with_user, bench_config, broker_url, targets

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "bench" / "pipelines"


def main() -> dict:
    from backend.images import LOCAL_BASE_IMAGE, build_pipeline_image
    from backend.manifest import load_pipeline
    from tests.workers import Worker

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=40)
    args = parser.parse_args()
    client = docker.from_env()
    build_pipeline_image(client, load_pipeline(PIPELINES / "ticker"), LOCAL_BASE_IMAGE)
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    config = bench_config(
        work,
        CELERY_BROKER_URL=broker_url(work),
        CELERY_QUEUE=f"bench-{uuid.uuid4().hex}",
        RUNNER="docker",
        PIPELINES_DIR=str(PIPELINES),
        WTF_CSRF_ENABLED=False,  # the benchmark posts the run form directly
    )
    app, _user_id, (project,), http = app_with_user(config)
    worker = None
    try:
        worker = Worker(config)
        worker.wait_ready()
        reply = http.post(
            f"/projects/{project}/run/ticker",
            data={"p_ticks": str(args.ticks), "p_interval": "0.25"},
        )
        status_url = (
            reply.headers["Location"].replace("/analyses/", "/analyses/") + "/status"
        )
        offset, seen, buffer = 0, {}, ""
        deadline = time.time() + 120
        while time.time() < deadline:
            status = http.get(f"{status_url}?offset={offset}").json
            now = time.time()
            buffer += status["log"]
            offset = status["offset"]
            *lines, buffer = buffer.split("\n")
            for line in lines:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "tick":
                    seen[int(parts[1])] = now - float(parts[2])
            if status["finished"]:
                break
            time.sleep(0.02)
    finally:
        if worker:
            worker.stop()
        app.extensions["celery"].close()
        shutil.rmtree(work, ignore_errors=True)
    latencies = sorted(seen.values())
    result = {
        "lines": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies)),
        "p95_ms": round(1000 * latencies[max(0, round(0.95 * len(latencies)) - 1)]),
        "max_ms": round(1000 * latencies[-1]),
    }
    result["targets"] = targets(
        (
            "p50 <= 1000 ms (the page itself polls every 1 s on top)",
            result["p50_ms"] <= 1000,
        )
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
