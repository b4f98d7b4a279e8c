"""The app's own CPU per run, in one process: the web form's submit (the test
client, no server), the worker's ``start`` (claim, plan, launch, launch record) and
the watcher's ticks until every run has ended (its queries, the engine's answers
read, ``finalize``). Real containers of the sleeper test pipeline, no profiler.

It measures no target: it says where the app's share of a run's cost sits, the
part `bench.execution` cannot separate from the engine's.

    python -m bench.app_cpu [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from backend.runners import docker_client
from bench.common import app_with_user, bench_config, broker_url
from bench.execution import TEST_PIPELINES, build_images


def cpu_ms_per_run(action, count: int) -> float:
    begin = time.process_time()
    action()
    return round((time.process_time() - begin) * 1000 / count, 1)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    engine = docker_client()
    try:
        build_images(engine)
        config = bench_config(
            work,
            CELERY_BROKER_URL=broker_url(work),
            CELERY_QUEUE=f"bench-{uuid.uuid4().hex}",  # no worker consumes it
            RUNNER="docker",
            PIPELINES_DIR=str(TEST_PIPELINES),
            MAX_RUNNING=args.runs + 1,
            MAX_RUNNING_PER_USER=args.runs + 1,
            WTF_CSRF_ENABLED=False,
        )
        app, _user, (project,), client = app_with_user(config)

        def submit() -> int:
            reply = client.post(
                f"/projects/{project}/run/sleeper",
                data={"p_seconds": "0", "p_exit_code": "0"},
            )
            return int(reply.headers["Location"].rsplit("/", 1)[1])

        first = submit()  # the first of each step makes its caches and connections
        ids: list[int] = []
        submit_ms = cpu_ms_per_run(
            lambda: ids.extend(submit() for _ in range(args.runs)), args.runs
        )
        result = {"runs": args.runs, "submit_cpu_ms": submit_ms}
        result.update(_worker_side(app, first, ids))
    finally:
        engine.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


def _worker_side(app, first: int, ids: list[int]) -> dict:
    from frontend.core.extensions import db
    from frontend.core.models import Analysis, AnalysisState
    from frontend.worker.start import start
    from frontend.worker.watcher import Watcher

    with app.app_context():
        start(first)
        start_ms = cpu_ms_per_run(lambda: [start(i) for i in ids], len(ids))

    watcher = Watcher(app)

    def watch_until_ended() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with app.app_context():
                watcher.tick()
                running = db.session.scalar(
                    db.select(db.func.count(Analysis.id)).where(
                        Analysis.state == AnalysisState.RUNNING
                    )
                )
                db.session.remove()
            if not running:
                return
            time.sleep(0.05)
        raise RuntimeError("the runs did not end within 5 minutes")

    try:
        watcher_ms = cpu_ms_per_run(watch_until_ended, len(ids) + 1)
    finally:
        watcher.cleaner.shutdown(wait=True)
        for runner in watcher.runners.values():
            runner.close()
    with app.app_context():
        states = db.session.execute(
            db.select(Analysis.state, db.func.count(Analysis.id)).group_by(
                Analysis.state
            )
        ).all()
    return {
        "start_cpu_ms": start_ms,
        "watcher_cpu_ms": watcher_ms,
        "ended": {state.value: count for state, count in states},
    }


if __name__ == "__main__":
    main()
