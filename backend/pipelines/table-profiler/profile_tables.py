"""Profile CSV/TSV tables: per-column statistics, missing values, histograms and a
correlation heatmap.

Outputs (in --out):
  summary.csv                one row per table and column
  <table>_histograms.png/svg numeric columns' distributions
  <table>_correlation.png/svg Pearson correlations between numeric columns
  <table>_missing.csv        missing values per column

Progress is reported as ``##progress <percent> <message>`` lines.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import statistics
import sys
from pathlib import Path

MISSING = {"", "na", "nan", "null", "none", "n/a", "-"}
SUMMARY_FIELDS = [
    "table",
    "column",
    "type",
    "count",
    "missing",
    "missing_percent",
    "unique",
    "mean",
    "std",
    "min",
    "q1",
    "median",
    "q3",
    "max",
    "top",
    "top_count",
]


# A spreadsheet runs a cell starting with these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """What goes into an output CSV: text a spreadsheet would run as a formula gets
    a leading apostrophe (OWASP's advice); numbers, negative ones too, stay as they
    are."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_START)
        and as_number(value) is None
    ):
        return "'" + value
    return value


def progress(percent: float, message: str) -> None:
    print(f"##progress {percent:.0f} {message}", flush=True)


def open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def delimiter_for(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith(".tsv") else ","


def read_table(path: Path, max_rows: int) -> tuple[list[str], list[list[str]]]:
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter_for(path))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path.name} is empty")
        rows = []
        for row in reader:
            rows.append(row)
            if max_rows and len(rows) >= max_rows:
                break
    width = len(header)
    header = [name.strip() or f"column_{i + 1}" for i, name in enumerate(header)]
    return header, [row + [""] * (width - len(row)) for row in rows]


def as_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def profile_column(table: str, name: str, values: list[str]) -> dict:
    present = [v.strip() for v in values if v.strip().lower() not in MISSING]
    missing = len(values) - len(present)
    numbers = [as_number(v) for v in present]
    row = {
        "table": table,
        "column": name,
        "count": len(present),
        "missing": missing,
        "missing_percent": round(100 * missing / len(values), 2) if values else 0,
        "unique": len(set(present)),
    }
    if present and all(n is not None for n in numbers):
        q1, median, q3 = (
            statistics.quantiles(numbers, n=4)
            if len(numbers) > 1
            else (numbers[0],) * 3
        )
        row.update(
            type="numeric",
            mean=round(statistics.fmean(numbers), 6),
            std=round(statistics.stdev(numbers), 6) if len(numbers) > 1 else 0.0,
            min=min(numbers),
            q1=q1,
            median=median,
            q3=q3,
            max=max(numbers),
        )
    else:
        counts: dict[str, int] = {}
        for value in present:
            counts[value] = counts.get(value, 0) + 1
        top = max(counts.items(), key=lambda item: item[1]) if counts else ("", 0)
        row.update(type="text", top=top[0], top_count=top[1])
    return row


def numeric_columns(header, rows, summary) -> dict[str, list[float | None]]:
    numeric = [r["column"] for r in summary if r["type"] == "numeric"]
    index = {name: header.index(name) for name in numeric}
    return {
        name: [as_number(row[i].strip()) for row in rows] for name, i in index.items()
    }


def plot_histograms(stem: str, columns, bins: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns)
    if not names:
        return
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        values = [v for v in columns[name] if v is not None]
        axis.hist(values, bins=bins, color="#3b6ea8", edgecolor="white")
        axis.set_title(name, fontsize=10)
        axis.set_ylabel("count")
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    figure.suptitle(f"{stem}: distributions")
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(out / f"{stem}_histograms.{suffix}", dpi=120)
    plt.close(figure)


def pearson(xs: list[float | None], ys: list[float | None]) -> float:
    pairs = [
        (x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None
    ]
    if len(pairs) < 3:
        return float("nan")
    try:
        return statistics.correlation([p[0] for p in pairs], [p[1] for p in pairs])
    except statistics.StatisticsError:  # a constant column
        return float("nan")


def plot_correlation(stem: str, columns, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns)
    if len(names) < 2:
        return
    matrix = [[pearson(columns[a], columns[b]) for b in names] for a in names]
    size = max(4, 0.6 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if not math.isnan(value):
                axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=axis, label="Pearson r")
    axis.set_title(f"{stem}: correlations")
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(out / f"{stem}_correlation.{suffix}", dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bins", type=int, default=30)
    parser.add_argument("--max-rows", type=int, default=0)
    parser.add_argument("tables", type=Path, nargs="+")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: list[dict] = []
    steps = len(args.tables) * 3
    done = 0
    for path in args.tables:
        stem = path.name.split(".")[0]
        progress(100 * done / steps, f"reading {path.name}")
        try:
            header, rows = read_table(path, args.max_rows)
        except (OSError, ValueError, csv.Error) as exc:
            print(f"error: cannot read {path.name}: {exc}", file=sys.stderr)
            return 2
        print(f"{path.name}: {len(rows)} rows, {len(header)} columns", flush=True)
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(header)
        table_summary = [
            profile_column(path.name, name, list(values))
            for name, values in zip(header, columns, strict=True)
        ]
        summary.extend(table_summary)
        with open(args.out / f"{stem}_missing.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["column", "missing", "missing_percent"])
            for row in table_summary:
                writer.writerow(
                    [cell(row["column"]), row["missing"], row["missing_percent"]]
                )
        done += 1
        numeric = numeric_columns(header, rows, table_summary)
        progress(100 * done / steps, f"plotting histograms of {path.name}")
        plot_histograms(stem, numeric, args.bins, args.out)
        done += 1
        progress(100 * done / steps, f"computing correlations of {path.name}")
        plot_correlation(stem, numeric, args.out)
        done += 1
    with open(args.out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(
            {key: cell(value) for key, value in row.items()} for row in summary
        )
    progress(100, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
