"""Quality control of FASTA/FASTQ files (gzipped or not).

Outputs (in --out):
  qc_summary.csv            one row per file: records, bases, lengths, N50, GC, quality
  <file>_lengths.png/svg    length distribution
  <file>_gc.png/svg         per-record GC content distribution
  <file>_quality.png/svg    mean Phred quality per position (FASTQ only)

Progress is reported as ``##progress <percent> <message>`` lines.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from pathlib import Path

FIELDS = [
    "file",
    "format",
    "records",
    "bases",
    "min_length",
    "mean_length",
    "max_length",
    "n50",
    "gc_percent",
    "n_percent",
    "mean_quality",
    "q30_percent",
]


def progress(percent: float, message: str) -> None:
    print(f"##progress {percent:.0f} {message}", flush=True)


def open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="ascii", errors="replace")
    return open(path, encoding="ascii", errors="replace")


def records(path: Path):
    """Yield (sequence, quality or None); the format is read from the first byte."""
    with open_text(path) as handle:
        first = handle.read(1)
        if first == ">":
            sequence: list[str] = []
            for line in handle:
                if line.startswith(">"):
                    yield "".join(sequence), None
                    sequence = []
                else:
                    sequence.append(line.strip())
            yield "".join(sequence), None
        elif first == "@":
            while True:
                _header = handle.readline()  # the rest of the line after "@"
                sequence_line = handle.readline().strip()
                plus = handle.readline()
                quality = handle.readline().strip()
                if not plus.startswith("+") or len(quality) != len(sequence_line):
                    raise ValueError("malformed FASTQ record")
                yield sequence_line, quality
                marker = handle.read(1)
                if marker == "":
                    return
                if marker != "@":
                    raise ValueError("malformed FASTQ record")
        elif first == "":
            return
        else:
            raise ValueError("not a FASTA or FASTQ file")


def n50(lengths: list[int]) -> int:
    half, running = sum(lengths) / 2, 0
    for length in sorted(lengths, reverse=True):
        running += length
        if running >= half:
            return length
    return 0


def plot(stem: str, out: Path, lengths, gc, quality_sums, quality_counts) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(figure, name):
        figure.tight_layout()
        for suffix in ("png", "svg"):
            figure.savefig(out / f"{stem}_{name}.{suffix}", dpi=120)
        plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#3b6ea8")
    axis.set(xlabel="length (bp)", ylabel="records", title=f"{stem}: lengths")
    save(figure, "lengths")

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(gc, bins=40, range=(0, 100), color="#4c9a5b")
    axis.set(xlabel="GC (%)", ylabel="records", title=f"{stem}: GC content")
    save(figure, "gc")

    if quality_counts:
        means = [s / c for s, c in zip(quality_sums, quality_counts, strict=True)]
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.plot(range(1, len(means) + 1), means, color="#a83b3b")
        axis.axhline(30, linestyle="--", color="grey", linewidth=1)
        axis.set(
            xlabel="position (bp)",
            ylabel="mean Phred quality",
            title=f"{stem}: quality per position",
            ylim=(0, 45),
        )
        save(figure, "quality")


def analyse(path: Path, max_reads: int, out: Path) -> dict:
    lengths: list[int] = []
    gc_percent: list[float] = []
    gc_total = n_total = 0
    quality_sums: list[int] = []
    quality_counts: list[int] = []
    q30 = quality_total = 0
    fmt = "FASTA"
    for sequence, quality in records(path):
        upper = sequence.upper()
        gc = upper.count("G") + upper.count("C")
        lengths.append(len(upper))
        gc_total += gc
        n_total += upper.count("N")
        if upper:
            gc_percent.append(100 * gc / len(upper))
        if quality is not None:
            fmt = "FASTQ"
            for position, char in enumerate(quality):
                score = ord(char) - 33
                if position == len(quality_sums):
                    quality_sums.append(0)
                    quality_counts.append(0)
                quality_sums[position] += score
                quality_counts[position] += 1
                quality_total += score
                q30 += score >= 30
        if max_reads and len(lengths) >= max_reads:
            break
    bases = sum(lengths)
    stem = path.name.split(".")[0]
    if lengths:
        plot(stem, out, lengths, gc_percent, quality_sums, quality_counts)
    return {
        "file": path.name,
        "format": fmt,
        "records": len(lengths),
        "bases": bases,
        "min_length": min(lengths, default=0),
        "mean_length": round(bases / len(lengths), 2) if lengths else 0,
        "max_length": max(lengths, default=0),
        "n50": n50(lengths),
        "gc_percent": round(100 * gc_total / bases, 2) if bases else 0,
        "n_percent": round(100 * n_total / bases, 3) if bases else 0,
        "mean_quality": round(quality_total / bases, 2) if fmt == "FASTQ" else "",
        "q30_percent": round(100 * q30 / bases, 2) if fmt == "FASTQ" else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-reads", type=int, default=0)
    parser.add_argument("sequences", type=Path, nargs="+")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, path in enumerate(args.sequences):
        progress(100 * index / len(args.sequences), f"reading {path.name}")
        try:
            row = analyse(path, args.max_reads, args.out)
        except (OSError, ValueError, EOFError) as exc:
            print(f"error: {path.name}: {exc}", file=sys.stderr)
            return 2
        print(f"{path.name}: {row['records']} records, N50 {row['n50']}", flush=True)
        rows.append(row)
    with open(args.out / "qc_summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    progress(100, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
