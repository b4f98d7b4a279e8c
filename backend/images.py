"""Building images: pipeline images from their Dockerfiles, and, for machines
without a container registry, a Debian base image with Python made by debootstrap.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .manifest import Pipeline

DEFAULT_BASE_IMAGE = "python:3.12-slim"
LOCAL_BASE_IMAGE = "labqueue/python-base:bookworm"
# Python with the reference pipelines' libraries, from Debian's own packages.
BASE_PACKAGES = ("python3-minimal", "python3-matplotlib", "python3-numpy")
TRIM = ("var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale")


class ImageBuildError(RuntimeError):
    pass


def build_pipeline_image(client, pipeline: Pipeline, base_image: str) -> str:
    """Build ``pipeline``'s image on ``base_image``; returns the image id."""
    import docker.errors

    try:
        image, _logs = client.images.build(
            path=str(pipeline.folder),
            dockerfile=pipeline.dockerfile,
            tag=pipeline.image_tag,
            buildargs={"BASE_IMAGE": base_image},
            rm=True,
            network_mode="host",
        )
    except docker.errors.BuildError as exc:
        lines = [c.get("stream", c.get("error", "")) for c in exc.build_log]
        raise ImageBuildError(f"{pipeline.name}: {''.join(lines)[-2000:]}") from exc
    return image.id


def debootstrap_base_image(
    client,
    tag: str = LOCAL_BASE_IMAGE,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
) -> str:
    """Make ``tag`` from a minimal Debian with Python (needs root and debootstrap).

    About a minute and a half on a fresh machine; the image is about 1 GB.
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
        result = subprocess.run(command, capture_output=True, text=True)  # noqa: S603
        if result.returncode != 0:
            raise ImageBuildError(f"debootstrap failed: {result.stdout[-2000:]}")
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
