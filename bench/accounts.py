"""Whether account requests tell which addresses have an account, by their time:
reset, resend-confirmation and registration for an address with an account and one
without, alternated request by request, in rounds, through the app in-process
(RabbitMQ as the broker when it answers).

    python -m bench.accounts [--rounds 6] [--per-round 10]

The security review found reset at 212 ms median for a registered address and 137 ms
for an unknown one, with no overlap in 6 interleaved rounds. The target: the rounds'
medians of the two sides overlap, and the medians differ by less than the spread of
either side's round medians (the measurement noise).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import bench_config, broker_url, targets

PASSWORD = "bench password, long enough"


def csrf(html: str) -> str:
    marker = 'name="csrf_token" type="hidden" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def timed_post(client, path: str, email: str) -> float:
    data = {"email": email, "csrf_token": csrf(client.get(path).text)}
    if path == "/register":
        data.update(
            first_name="Bench",
            last_name="Mark",
            password=PASSWORD,
            password_confirm=PASSWORD,
        )
    begin = time.perf_counter()
    response = client.post(path, data=data)
    elapsed = time.perf_counter() - begin
    assert response.status_code in (200, 302), (path, response.status_code)
    return elapsed


def main() -> dict:
    import flask_migrate
    from flask_security import hash_password

    from frontend import create_app
    from frontend.core.extensions import db
    from frontend.core.models import utcnow
    from frontend.core.security import security

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    config = bench_config(
        work,
        CELERY_BROKER_URL=broker_url(work),
        MAIL_BACKEND="file",
        TESTING=True,
        # Hundreds of requests from one client: no waits, or they would be 429s.
        RATE_LIMIT_FREE_ATTEMPTS=10**6,
        RATE_LIMIT_FREE_PER_IP=10**6,
    )
    app = create_app(config)
    with app.app_context():
        flask_migrate.upgrade()
        for email, confirmed in (
            ("known@cs.ox.ac.uk", True),
            ("new@cs.ox.ac.uk", False),
        ):
            security.datastore.create_user(
                email=email,
                password=hash_password(PASSWORD),
                confirmed_at=utcnow() if confirmed else None,
            )
        db.session.commit()
    client = app.test_client()
    # Whose mail each request is about: the account each flow would mail.
    known = {"/reset": "known@cs.ox.ac.uk", "/confirm": "new@cs.ox.ac.uk"}
    result: dict = {"broker": config["CELERY_BROKER_URL"].split(":")[0]}
    checks = []
    serial = 0
    try:
        for path in ("/reset", "/confirm", "/register"):
            sides: dict[str, list[float]] = {"account": [], "no account": []}
            timed_post(client, path, "warm@cs.ox.ac.uk")
            for _ in range(args.rounds):
                rounds = {side: [] for side in sides}
                for _ in range(args.per_round):
                    serial += 1
                    with_account = known.get(path, "known@cs.ox.ac.uk")
                    without = f"nobody{serial}@cs.ox.ac.uk"
                    rounds["account"].append(timed_post(client, path, with_account))
                    rounds["no account"].append(timed_post(client, path, without))
                for side, times in rounds.items():
                    sides[side].append(statistics.median(times))
            medians = {side: statistics.median(v) for side, v in sides.items()}
            spread = min(max(v) - min(v) for v in sides.values())
            difference = abs(medians["account"] - medians["no account"])
            overlap = min(max(v) for v in sides.values()) >= max(
                min(v) for v in sides.values()
            )
            result[path] = {
                "median_ms": {s: round(1000 * m, 1) for s, m in medians.items()},
                "round_medians_ms": {
                    s: [round(1000 * x, 1) for x in v] for s, v in sides.items()
                },
                "difference_ms": round(1000 * difference, 1),
                "noise_ms": round(1000 * spread, 1),
            }
            checks.append(
                (
                    f"{path}: the two sides' round medians overlap and differ by "
                    "less than the noise",
                    overlap and difference <= spread,
                )
            )
        result["targets"] = targets(*checks)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
