"""The admin home with 10,000 analyses: server time of the dashboard through the
app in-process, against the same dashboard over 100 analyses (the page's own
cost), the two measured in alternating rounds.

    python -m bench.dashboard [--analyses 10000] [--rounds 5] [--repeat 10]
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


def site(work: Path, analyses: int):
    """An app whose admin owns 20 projects and ``analyses`` analyses of the last
    months, in every state, a tenth failed for one of five reasons."""
    from frontend.core.extensions import db
    from frontend.core.models import Analysis, User, utcnow
    from frontend.core.security import security

    app, user_id, projects, client = app_with_user(
        bench_config(work, TESTING=True), projects=20
    )
    rng = random.Random(5)
    with app.app_context():
        user = db.session.get(User, user_id)
        security.datastore.add_role_to_user(
            user, security.datastore.find_or_create_role("admin")
        )
        now = utcnow()
        rows = []
        for n in range(analyses):
            submitted = now - timedelta(minutes=rng.randrange(60 * 24 * 90))
            state = rng.choice(["succeeded"] * 8 + ["failed", "cancelled"])
            rows.append(
                {
                    "owner_id": user_id,
                    "project_id": rng.choice(projects),
                    "pipeline": rng.choice(["table-profiler", "seq-qc"]),
                    "pipeline_version": "1.0.0",
                    "image": "x",
                    "params": {},
                    "state": state,
                    "error_summary": f"Reason {n % 5}." if state == "failed" else None,
                    "submitted_at": submitted,
                    "started_at": submitted,
                    "finished_at": submitted + timedelta(seconds=rng.randrange(600)),
                    "attempt": 1,
                    "progress_percent": 100.0,
                    "progress_message": "",
                    "cancel_requested": False,
                    "output_bytes": rng.randrange(10**6),
                    "runner": "docker",
                }
            )
        db.session.execute(sa.insert(Analysis), rows)
        db.session.commit()
    return client


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--analyses", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    try:
        sides = {
            "measured": site(work / "big", args.analyses),
            "baseline": site(work / "small", args.baseline),
        }
        times: dict[str, list[float]] = {side: [] for side in sides}
        for client in sides.values():
            assert client.get("/admin/").status_code == 200  # warm, and seen today
        for _ in range(args.rounds):
            for side, client in sides.items():  # alternated, round after round
                for _ in range(args.repeat):
                    begin = time.perf_counter()
                    response = client.get("/admin/")
                    times[side].append(time.perf_counter() - begin)
                    assert response.status_code == 200
        result: dict = {"analyses": args.analyses, "baseline_analyses": args.baseline}
        for side, measured in times.items():
            measured.sort()
            result[side] = {
                "median_ms": round(1000 * statistics.median(measured), 1),
                "p95_ms": round(1000 * measured[round(0.95 * len(measured)) - 1], 1),
            }
        ratio = result["measured"]["median_ms"] / result["baseline"]["median_ms"]
        result["ratio_to_baseline"] = round(ratio, 2)
        result["targets"] = targets(
            (
                f"admin home with {args.analyses:,} analyses: p95 under 200 ms server "
                "time (issue 13)",
                result["measured"]["p95_ms"] < 200,
            ),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
