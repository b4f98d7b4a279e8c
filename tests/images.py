"""Test images that need no registry: busybox (Debian's static binary) from scratch."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

BUSYBOX_IMAGE = "labqueue-test/busybox:1"


def build_busybox_image(client, tag: str = BUSYBOX_IMAGE) -> str:
    """Build ``tag`` from scratch with busybox's applets; returns the tag."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox (Debian's busybox-static) is needed")
    with tempfile.TemporaryDirectory(prefix="labqueue-busybox-") as folder:
        context = Path(folder)
        shutil.copy(busybox, context / "busybox")
        (context / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        )
        client.images.build(path=str(context), tag=tag, rm=True)
    return tag
