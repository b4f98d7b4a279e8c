"""Write the .env file Docker Compose reads, once: ``make compose-env``.

It holds the deployment's secrets, made here: the secret key signs sessions and
forms, the salt is in every confirmation and reset link, the TOTP secret encrypts
users' two-factor keys. Made again, they would lock every user out, so an
existing .env is never rewritten: only settings it lacks are added (a newer
Labqueue may need one), each named on the terminal. Only the standard library is
used: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

DOCKER_SOCKET = Path("/var/run/docker.sock")


def _docker_gid() -> str:
    """The group of this host's Docker socket, which the workers join."""
    try:
        return str(DOCKER_SOCKET.stat().st_gid)
    except OSError:
        sys.exit(
            f"{DOCKER_SOCKET} is not here: install and start Docker first "
            "(apt-get install docker.io), then run this again."
        )


def settings(data_root: str, site_url: str) -> list[tuple[str, object, str]]:
    """(key, value, what it is) for every setting .env holds, in order. A value
    read from the host is a function, asked only when the setting is missing."""
    return [
        (
            "LABQUEUE_SECRET_KEY",
            secrets.token_hex(32),
            "Secrets: keep them, back them up, never change them (users would be "
            "locked out).",
        ),
        ("LABQUEUE_SECURITY_PASSWORD_SALT", secrets.token_hex(16), ""),
        ("LABQUEUE_TOTP_SECRET", secrets.token_hex(32), ""),
        (
            "POSTGRES_PASSWORD",
            secrets.token_hex(16),
            "The database and broker are created with these on their first start.",
        ),
        ("RABBITMQ_PASSWORD", secrets.token_hex(16), ""),
        (
            "LABQUEUE_DATA_ROOT",
            data_root,
            "userData/ lives here, at the same path on the host and in the "
            "containers (the workers hand it to the engine).",
        ),
        (
            "DOCKER_GID",
            _docker_gid,
            f"The group of {DOCKER_SOCKET} on this host: the workers join it.",
        ),
        (
            "LABQUEUE_WORKER_HOST",
            socket.gethostname,
            "The name of this host's engine on its runs, shared by its workers.",
        ),
        ("LABQUEUE_WORKERS", "1", "Worker containers on this host."),
        (
            "LABQUEUE_SITE_URL",
            site_url,
            "The address users type; every link in every mail starts with it.",
        ),
        ("LABQUEUE_HTTP_PORT", "8000", "The web app listens on 127.0.0.1:PORT."),
        (
            "LABQUEUE_MAIL_SERVER",
            "",
            "Mail (empty: written to files in the worker containers, /app/logs/mail).",
        ),
        ("LABQUEUE_MAIL_PORT", "25", ""),
        ("LABQUEUE_MAIL_DEFAULT_SENDER", "Labqueue <no-reply@localhost>", ""),
        ("LABQUEUE_ADMINS", "[]", 'Who hears of errors: ["ops@uni.example"]'),
        (
            "LABQUEUE_BASE_IMAGE",
            "python:3.12-slim",
            "What the app image is built on. Without a registry: sudo make "
            "pipeline-base, then labqueue/python-base:bookworm-3 here.",
        ),
        (
            "LABQUEUE_BUILD_NETWORK",
            "default",
            "host on engines started without a bridge (dockerd --bridge=none).",
        ),
    ]


def write(path: Path, data_root: str, site_url: str) -> list[str]:
    """Add to ``path`` the settings it lacks (all of them for a new file);
    returns their keys. Values already there are kept as they are."""
    present = set()
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, _ = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                present.add(key.strip())
    lines, added = [], []
    for key, value, about in settings(data_root, site_url):
        if key in present:
            continue
        if callable(value):
            value = value()
        if about:
            lines.append(f"\n# {about}")
        lines.append(f"{key}={value}")
        added.append(key)
    if added:
        new = not path.exists()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as env:
            if new:
                env.write(
                    "# Labqueue's Docker Compose settings, written by make "
                    "compose-env.\n# Edit values freely; the secrets, never.\n"
                )
            env.write("\n".join(lines).lstrip("\n") + "\n")
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make compose-env",
        description="Write .env for Docker Compose once; later, add what it lacks.",
    )
    parser.add_argument("--file", default=".env", type=Path)
    parser.add_argument("--data-root", default="/srv/labqueue")
    parser.add_argument("--site-url", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    existed = args.file.exists()
    added = write(args.file, os.path.abspath(args.data_root), args.site_url)
    if not existed:
        print(
            f"Wrote {args.file}: secrets, data root, the docker group. Set the mail "
            "server, admins and site URL in it, then: docker-compose up -d --build"
        )
    elif added:
        print(f"Kept {args.file} as it was, and added: {', '.join(added)}")
    else:
        print(f"{args.file} has every setting already; nothing was changed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
