"""Upload benchmark: a large file through the real app, against a bare WSGI endpoint.

Both run under the same gunicorn settings on loopback, and curl posts the same file
to each, alternately, in the same run. Reported: throughput of each, their ratio,
and the app worker's peak memory growth (VmHWM after the upload minus VmRSS before).

    python -m bench.upload [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests

from bench.common import targets, transfer_args

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))


class Gunicorn:
    """One gunicorn master with one threaded worker, the production settings."""

    def __init__(self, app: str, env: dict[str, str], log: Path):
        self.port = free_port()
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "120",
                "--no-control-socket",
                app,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/", timeout=5)
                return
            except requests.RequestException:  # not listening yet, or still busy
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: see {log}")

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(children.read_text().split()[0])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self.log.close()


def curl_post(url: str, path: Path, headers: dict[str, str], cookie: str) -> float:
    """Seconds curl takes to stream ``path`` as the request body."""
    command = [
        "curl",
        "-sS",
        "-f",
        "-o",
        "/dev/null",
        "-w",
        "%{time_total}",
        "-X",
        "POST",
        "-T",
        str(path),
        "-H",
        "Expect:",
        "-H",
        "Content-Type: application/octet-stream",
    ]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    if cookie:
        command += ["-b", cookie]
    result = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    return float(result.stdout)


def prepare_app(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABQUEUE_")}
    env.update(
        LABQUEUE_CONFIG_FILE=os.devnull,
        LABQUEUE_SECRET_KEY="bench",
        LABQUEUE_SECURITY_PASSWORD_SALT="bench",
        LABQUEUE_SQLALCHEMY_DATABASE_URI=f"sqlite:///{work / 'bench.sqlite'}",
        LABQUEUE_USER_DATA_DIR=str(work / "userData"),
        LABQUEUE_FAILED_ANALYSES_DIR=str(work / "failedAnalyses"),
        LABQUEUE_LOG_DIR=str(work / "logs"),
        LABQUEUE_CELERY_BROKER_URL=f"sqla+sqlite:///{work / 'broker.sqlite'}",
        LABQUEUE_STORAGE_QUOTA_BYTES=str(1024**4),
        LABQUEUE_SECURITY_EMAIL_VALIDATOR_ARGS='{"check_deliverability": false}',
        BARE_WSGI_DIR=str(work),
    )
    flask = [sys.executable, "-m", "flask", "--app", "frontend"]
    subprocess.run(
        flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    subprocess.run(
        flask
        + ["create-admin", "--email", "bench@example.org", "--password", PASSWORD],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def log_in(base: str) -> tuple[requests.Session, str]:
    session = requests.Session()

    def token(html: str) -> str:
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)

    page = session.get(base + "/login").text
    session.post(
        base + "/login",
        data={
            "email": "bench@example.org",
            "password": PASSWORD,
            "csrf_token": token(page),
        },
    )
    page = session.get(base + "/projects/new").text
    reply = session.post(
        base + "/projects/new", data={"name": "bench", "csrf_token": token(page)}
    )
    project_url = reply.url
    return session, project_url


def main() -> dict:
    args = transfer_args(__doc__)
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    servers = []
    try:
        env = prepare_app(work)
        payload = work / "payload.bin"
        with payload.open("wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1024 * 1024))
        app = Gunicorn("frontend:create_app()", env, work / "app.log")
        servers.append(app)
        bare = Gunicorn("bench.bare_wsgi:app", env, work / "bare.log")
        servers.append(bare)

        session, project_url = log_in(app.url)
        page = session.get(project_url).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        upload_url = project_url.rstrip("/") + "/upload"

        pid = app.worker_pid()
        # Reset the high-water mark: logging in (argon2 uses 64 MiB) already set it.
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        rss_before = proc_kib(pid, "VmRSS")
        app_times, bare_times = [], []
        for run in range(args.repeat):
            query = urllib.parse.urlencode({"path": f"run{run}.bin"})
            sides = [
                (app_times, f"{upload_url}?{query}", {"X-CSRFToken": token}, cookie),
                (bare_times, bare.url + "/", {}, ""),
            ]
            # Alternate who goes first: the second otherwise pays for the first's
            # dirty pages being written back.
            for times, url, headers, cookies in sides[:: 1 if run % 2 == 0 else -1]:
                times.append(curl_post(url, payload, headers, cookies))
        peak_growth_mib = (proc_kib(pid, "VmHWM") - rss_before) / 1024
        stored = list((work / "userData").rglob("run0.bin"))
        if not stored or stored[0].stat().st_size != payload.stat().st_size:
            raise RuntimeError("the app did not store the upload")
        size_mb = args.size_mib * 1024 * 1024 / 1e6
        app_rate = size_mb / statistics.median(app_times)
        bare_rate = size_mb / statistics.median(bare_times)
        result = {
            "size_mib": args.size_mib,
            "app_MBps": round(app_rate, 1),
            "bare_wsgi_MBps": round(bare_rate, 1),
            "throughput_ratio": round(app_rate / bare_rate, 2),
            "app_worker_peak_growth_MiB": round(peak_growth_mib, 1),
        }
        result["targets"] = targets(
            ("throughput_ratio >= 0.5", result["throughput_ratio"] >= 0.5),
            ("peak growth < 64 MiB", peak_growth_mib < 64),
        )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
