"""Analysis list with 10,000 analyses: server time of the history page (first page,
a middle page, a filtered page) through the app in-process.

    python -m bench.history [--analyses 10000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.common import app_with_user, bench_config, targets


def main() -> dict:
    from frontend.core.extensions import db
    from frontend.core.models import Analysis, utcnow

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--analyses", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    app, user_id, projects, client = app_with_user(
        bench_config(work, TESTING=True), projects=20
    )
    rng = random.Random(3)
    try:
        with app.app_context():
            start = utcnow() - timedelta(days=365)
            rows = []
            for n in range(args.analyses):
                submitted = start + timedelta(minutes=n * 50)
                rows.append(
                    {
                        "owner_id": user_id,
                        "project_id": rng.choice(projects),
                        "pipeline": rng.choice(["table-profiler", "seq-qc"]),
                        "pipeline_version": "1.0.0",
                        "image": "x",
                        "params": {},
                        "state": rng.choice(
                            ["succeeded"] * 8 + ["failed", "cancelled"]
                        ),
                        "submitted_at": submitted,
                        "started_at": submitted,
                        "finished_at": submitted + timedelta(minutes=3),
                        "attempt": 1,
                        "progress_percent": 100.0,
                        "progress_message": "",
                        "cancel_requested": False,
                    }
                )
            db.session.execute(sa.insert(Analysis), rows)
            db.session.commit()
        pages = {
            "first page": "/analyses/history",
            "page 100": "/analyses/history?page=100",
            "failed, one project": "/analyses/history?state=failed&project="
            + str(projects[0]),
        }
        result = {"analyses": args.analyses}
        for label, url in pages.items():
            client.get(url)  # warm the caches once
            times = []
            for _ in range(args.repeat):
                begin = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - begin)
                assert response.status_code == 200
            times.sort()
            result[label] = {
                "median_ms": round(1000 * statistics.median(times), 1),
                "p95_ms": round(1000 * times[round(0.95 * len(times)) - 1], 1),
            }
        result["targets"] = targets(
            *(
                (f"{label}: p95 under 200 ms server time", timing["p95_ms"] < 200)
                for label, timing in list(result.items())
                if isinstance(timing, dict)
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
