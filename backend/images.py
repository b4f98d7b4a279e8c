"""Building images: pipeline images from their Dockerfiles, and, for machines
without a container registry, a Debian base image with Python made by debootstrap.

``ensure_images`` is what a fresh machine needs: it builds only the pipeline images
that are missing or whose folder changed (each image carries a digest of the folder
it was built from), on the configured base when it is there or can be pulled, else
on the local Debian base, which it makes when it can.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .manifest import Pipeline

DEFAULT_BASE_IMAGE = "python:3.12-slim"
# Its tag changes with BASE_PACKAGES, so that a machine with an older base makes
# the new one instead of building on what lacks a package.
LOCAL_BASE_IMAGE = "labqueue/python-base:bookworm-3"
# Python with the reference pipelines' tools and libraries, from Debian's own
# packages: seqkit for sequences, pandas for tables, Biopython's FASTQ parser; and
# venv and useradd, so that the app's own image can be built on it too.
BASE_PACKAGES = (
    "python3-minimal",
    "python3-venv",
    "passwd",
    "python3-matplotlib",
    "python3-numpy",
    "python3-pandas",
    "python3-biopython",
    "seqkit",
)
TRIM = ("var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale")
# Labels on pipeline images: what they were built from.
SOURCE_LABEL = "labqueue.source"
BASE_LABEL = "labqueue.base"
SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}

Say = Callable[[str], None]


class ImageBuildError(RuntimeError):
    pass


class NoBaseImage(ImageBuildError):
    """No base image can be had: ``pull_error`` says why the configured one could
    not be pulled, ``local_error`` why the local Debian base cannot be made."""

    def __init__(self, base: str, pull_error: str, local_base: str, local_error: str):
        self.base, self.pull_error = base, pull_error
        self.local_base, self.local_error = local_base, local_error
        super().__init__(
            f"{base} cannot be pulled ({pull_error}) and {local_base} cannot be "
            f"made ({local_error})"
        )


def source_digest(pipeline: Pipeline, base_image: str) -> str:
    """A digest of everything an image is built from: the files of the pipeline's
    folder (names and contents) and the name of the base it is meant for."""
    digest = hashlib.sha256(base_image.encode() + b"\0")
    folder = pipeline.folder
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or SKIPPED_PARTS & set(relative.parts):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def image_is_current(client, pipeline: Pipeline, base_image: str) -> bool:
    """Whether ``pipeline``'s image exists and was built from its folder as it is."""
    import docker.errors

    try:
        image = client.images.get(pipeline.image_tag)
    except docker.errors.ImageNotFound:
        return False
    labels = image.labels or {}
    return labels.get(SOURCE_LABEL) == source_digest(pipeline, base_image)


def build_pipeline_image(
    client, pipeline: Pipeline, base_image: str, meant_for: str | None = None
) -> str:
    """Build ``pipeline``'s image on ``base_image``; returns the image id.

    ``meant_for`` is the configured base the digest label refers to, when the image
    is built on a stand-in (the local Debian base on a machine without a registry).
    """
    import docker.errors

    labels = {
        SOURCE_LABEL: source_digest(pipeline, meant_for or base_image),
        BASE_LABEL: base_image,
    }
    try:
        image, _logs = client.images.build(
            path=str(pipeline.folder),
            dockerfile=pipeline.dockerfile,
            tag=pipeline.image_tag,
            buildargs={"BASE_IMAGE": base_image},
            labels=labels,
            rm=True,
            network_mode="host",
        )
    except docker.errors.BuildError as exc:
        lines = [c.get("stream", c.get("error", "")) for c in exc.build_log]
        raise ImageBuildError(f"{pipeline.name}: {''.join(lines)[-2000:]}") from exc
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"{pipeline.name}: {exc.explanation or exc}") from exc
    return image.id


def has_image(client, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def pull_error(client, name: str) -> str | None:
    """Pull ``name``; None when it worked, else the engine's reason in one line."""
    import docker.errors
    import requests

    try:
        client.images.pull(name)
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc)
    except requests.exceptions.RequestException as exc:
        reason = str(exc)
    else:
        return None
    return " ".join(reason.split())[:300]


def local_base_blocker() -> str | None:
    """Why the local Debian base cannot be made on this machine, or None."""
    if os.geteuid() != 0:
        return f"making it needs root, and this is user id {os.geteuid()}"
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "debootstrap is not installed, and there is no apt-get to install it"
    return None


def choose_base(
    client, base_image: str, say: Say, local_base: str = LOCAL_BASE_IMAGE
) -> str:
    """The base to build on: ``base_image`` when the engine has it or can pull it,
    else ``local_base``, made with debootstrap when missing. Raises NoBaseImage."""
    if has_image(client, base_image):
        return base_image
    say(f"Pulling {base_image}…")
    problem = pull_error(client, base_image)
    if problem is None:
        return base_image
    if has_image(client, local_base):
        say(f"{base_image} cannot be pulled ({problem}); building on {local_base}.")
        return local_base
    blocker = local_base_blocker()
    if blocker:
        raise NoBaseImage(base_image, problem, local_base, blocker)
    say(
        f"{base_image} cannot be pulled ({problem}). Making the local Debian base "
        f"{local_base} with debootstrap instead: about two minutes, once."
    )
    try:
        install_debootstrap(say)
    except ImageBuildError as exc:
        raise NoBaseImage(base_image, problem, local_base, str(exc)) from exc
    debootstrap_base_image(client, local_base, say=say)
    return local_base


def install_debootstrap(say: Say) -> None:
    """Install debootstrap with apt-get when it is missing (root)."""
    if shutil.which("debootstrap") is not None:
        return
    say("Installing debootstrap (apt-get install debootstrap)…")
    install = subprocess.run(
        ["apt-get", "install", "-y", "-q", "debootstrap"],  # noqa: S607
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if install.returncode != 0:
        detail = " ".join(install.stderr.split())[-300:]
        raise ImageBuildError(f"installing debootstrap failed: {detail}")


def ensure_images(
    client,
    pipelines: Iterable[Pipeline],
    base_image: str,
    say: Say,
    local_base: str = LOCAL_BASE_IMAGE,
) -> list[str]:
    """Build the images of ``pipelines`` that are missing or out of date; returns
    the names of those built (none when all are current: nothing is rebuilt)."""
    stale = [p for p in pipelines if not image_is_current(client, p, base_image)]
    if not stale:
        return []
    base = choose_base(client, base_image, say, local_base)
    for pipeline in stale:
        say(f"Building {pipeline.image_tag} on {base}…")
        build_pipeline_image(client, pipeline, base, meant_for=base_image)
    return [p.name for p in stale]


# debootstrap's step lines ("I: Retrieving …") name their phase in the first word;
# a phase can come back (it downloads and checks package by package): each is told
# once.
_PHASES = {
    "Retrieving": "downloading packages",
    "Extracting": "unpacking the base system",
    "Installing": "installing the base system",
    "Configuring": "configuring packages",
    "Base": "done",
}


def debootstrap_base_image(
    client,
    tag: str = LOCAL_BASE_IMAGE,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    say: Say | None = None,
) -> str:
    """Make ``tag`` from a minimal Debian with Python (needs root and debootstrap).

    About two minutes on a fresh machine; the image is about 1 GB. ``say`` hears
    each phase as debootstrap reaches it.
    """
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed (apt-get install debootstrap)"
        )
    with tempfile.TemporaryDirectory(prefix="labqueue-base-") as work:
        root = Path(work) / "root"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            suite,
            str(root),
            mirror,
        ]
        tail, told = [], set()
        with subprocess.Popen(  # noqa: S603 (fixed arguments)
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            for line in process.stdout:
                tail = [*tail[-40:], line]
                words = line.split()
                is_step = line.startswith("I: ") and len(words) > 1
                step = _PHASES.get(words[1]) if is_step else None
                if say and step and step not in told:
                    told.add(step)
                    say(f"  debootstrap: {step}")
        if process.returncode != 0:
            raise ImageBuildError(f"debootstrap failed: {''.join(tail)[-2000:]}")
        for path in TRIM:
            shutil.rmtree(root / path, ignore_errors=True)
        archive = Path(work) / "root.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=version or "latest"
        )
    return client.images.get(tag).id


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.images [TAG]``: make the local Debian base unless the
    engine has it, and nothing else (run it with sudo; it leaves the checkout
    alone)."""
    import argparse

    from .runners import EngineUnavailable, docker_client

    parser = argparse.ArgumentParser(
        prog="python -m backend.images",
        description="Make the local Debian base image with debootstrap (needs root),"
        " for machines that cannot pull the pipelines' base image.",
    )
    parser.add_argument("tag", nargs="?", default=LOCAL_BASE_IMAGE)
    tag = parser.parse_args(argv).tag
    try:
        client = docker_client(timeout=300)
        if has_image(client, tag):
            print(f"{tag} is here already; nothing to make.")
            return 0
        blocker = local_base_blocker()
        if blocker:
            raise ImageBuildError(blocker)
        install_debootstrap(print)
        print(f"Making {tag} with debootstrap (about two minutes)…")
        debootstrap_base_image(client, tag, say=print)
    except (ImageBuildError, EngineUnavailable) as exc:
        print(f"{tag} was not made: {exc}.", file=sys.stderr)
        return 1
    print(
        f"Made {tag}. Now: make run (with Docker Compose: docker-compose run "
        "--rm images)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
