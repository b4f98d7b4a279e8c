"""Extraction benchmark: a 10,000-entry zip, our checked extraction against
Python's plain ``ZipFile.extractall`` in the same run.

    python -m bench.extract [--entries 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from backend.archives import ArchiveLimits, extract
from bench.common import targets


def build_zip(path: Path, entries: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(entries):
            folder = f"sample_{n // 100:03d}"
            archive.writestr(f"{folder}/reads_{n:05d}.txt", os.urandom(512).hex())


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labqueue-bench-"))
    try:
        archive = work / "many.zip"
        build_zip(archive, args.entries)
        limits = ArchiveLimits(max_entries=args.entries)
        plain, ours = [], []
        for run in range(args.repeat):
            # Alternate the order so neither side always gets a warm cache.
            order = ("plain", "ours") if run % 2 == 0 else ("ours", "plain")
            for side in order:
                dest = work / f"{side}-{run}"
                if side == "plain":
                    with zipfile.ZipFile(archive) as zf:
                        plain.append(timed(lambda zf=zf, d=dest: zf.extractall(d)))
                else:
                    ours.append(
                        timed(lambda d=dest: extract(archive, d, limits, "zip"))
                    )
                shutil.rmtree(dest)
        result = {
            "entries": args.entries,
            "extractall_median_s": round(statistics.median(plain), 3),
            "labqueue_median_s": round(statistics.median(ours), 3),
            "ratio": round(statistics.median(ours) / statistics.median(plain), 2),
        }
        result["targets"] = targets(("ratio <= 2.0", result["ratio"] <= 2.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
