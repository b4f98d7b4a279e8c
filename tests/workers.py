"""Real Celery worker processes for integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from tests.smtp import _free_port

ROOT = Path(__file__).resolve().parent.parent
READY = "ready, consuming from"


def worker_env(config: dict) -> dict[str, str]:
    """The test app's config as LABQUEUE_* variables, as a deployment passes it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABQUEUE_")}
    env["LABQUEUE_CONFIG_FILE"] = os.devnull
    for key, value in config.items():
        if key == "TESTING":
            continue
        env[f"LABQUEUE_{key}"] = value if isinstance(value, str) else json.dumps(value)
    return env


class Worker:
    """``celery -A frontend.make_celery worker`` in its own process group."""

    def __init__(self, config: dict, concurrency: int = 1, beat: bool = False):
        self.log = Path(config["LOG_DIR"]) / "worker.log"
        self.ready_before = self._ready_count()
        self.output_path = (
            Path(config["LOG_DIR"]) / f"worker-{uuid.uuid4().hex[:6]}.out"
        )
        self.output = self.output_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "frontend.make_celery",
                "worker",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"test-{uuid.uuid4().hex[:6]}@%h",
                *(["--beat"] if beat else []),
            ],
            cwd=ROOT,
            env=worker_env(config),
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _ready_count(self) -> int:
        return self.log.read_text().count(READY) if self.log.exists() else 0

    def wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready_count() > self.ready_before:
                return self.log.read_text()
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"worker not ready:\n{self.output_path.read_text()}")

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.output.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self.output.closed:
            self.output.close()


class Gunicorn:
    """The app under gunicorn (one threaded worker, as in production), on the
    test's settings."""

    def __init__(self, config: dict):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
            + ["--no-control-socket", "frontend:create_app()"],
            cwd=ROOT,
            env=worker_env(config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                time.sleep(0.2)
        self.worker = psutil.Process(self.process.pid).children()[0]

    def peak_rss(self) -> int:
        """The worker's largest resident size so far (the kernel's high-water mark:
        a body read and freed again still shows)."""
        status = Path(f"/proc/{self.worker.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
