"""Download benchmark: one large output of an analysis through the real app (the
API's output route: opened through safe_open, sent from the checked handle),
against a bare WSGI app that hands the same file to gunicorn's sendfile.

Both run under the same gunicorn settings on loopback; curl fetches the file from
each, alternately, in the same run. Reported: throughput of each and their ratio.

    python -m bench.download [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import targets, transfer_args
from bench.upload import ROOT, Gunicorn, prepare_app


def curl_get(url: str, headers: dict[str, str]) -> tuple[float, int]:
    """Seconds curl takes to fetch ``url``, and the bytes it got."""
    command = ["curl", "-sS", "-f", "-o", "/dev/null"]
    command += ["-w", "%{time_total} %{size_download}"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    result = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    seconds, size = result.stdout.split()
    return float(seconds), int(size)


def make_output(env: dict[str, str], size_mib: int) -> tuple[int, str, Path]:
    """An analysis of the bench user with a ``size_mib`` MiB output, and a token;
    returns the analysis id, the token and the output's path."""
    script = f"""
import os
from frontend import create_app
from frontend.extensions import db
from frontend.security import security
from frontend.core.models import Analysis, AnalysisState
from frontend.projects.services import create_project
from frontend.analyses.services import output_dir
app = create_app()
with app.app_context():
    user = security.datastore.find_user(email="bench@example.org")
    project = create_project(user, "downloads")
    analysis = Analysis(owner=user, project=project, pipeline="seq-qc",
        pipeline_version="1", image="x", params={{}}, state=AnalysisState.SUCCEEDED)
    db.session.add(analysis)
    db.session.commit()
    folder = output_dir(analysis)
    folder.mkdir(parents=True)
    with open(folder / "big.bin", "wb") as out:
        for _ in range({size_mib}):
            out.write(os.urandom(1024 * 1024))
    print(analysis.id, folder / "big.bin")
"""
    made = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    analysis, path = made.stdout.split()[-2:]
    token = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "frontend", "tokens", "create"]
        + ["--email", "bench@example.org", "--name", "bench"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return int(analysis), token, Path(path)


def main() -> dict:
    args = transfer_args(__doc__)
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    servers = []
    try:
        env = prepare_app(work)
        analysis, token, path = make_output(env, args.size_mib)
        env["BARE_SEND_FILE"] = str(path)
        app = Gunicorn("frontend:create_app()", env, work / "app.log")
        servers.append(app)
        bare = Gunicorn("bench.bare_wsgi:send", env, work / "bare.log")
        servers.append(bare)
        sides = [
            (
                [],
                f"{app.url}/api/v1/analyses/{analysis}/outputs/big.bin",
                {"Authorization": f"Bearer {token}"},
            ),
            ([], bare.url + "/file", {}),
        ]
        size = path.stat().st_size
        for run in range(args.repeat):
            # Alternate who goes first: the page cache warms for whoever follows.
            for times, url, headers in sides[:: 1 if run % 2 == 0 else -1]:
                seconds, got = curl_get(url, headers)
                if got != size:
                    raise RuntimeError(f"{url} sent {got} bytes, not {size}")
                times.append(seconds)
        size_mb = size / 1e6
        app_rate = size_mb / statistics.median(sides[0][0])
        bare_rate = size_mb / statistics.median(sides[1][0])
        result = {
            "size_mib": args.size_mib,
            "app_MBps": round(app_rate, 1),
            "bare_sendfile_MBps": round(bare_rate, 1),
            "throughput_ratio": round(app_rate / bare_rate, 2),
        }
        result["targets"] = targets(
            ("throughput_ratio >= 0.5", result["throughput_ratio"] >= 0.5),
        )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
