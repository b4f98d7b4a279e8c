"""Profile CSV/TSV tables with pandas: per-column statistics, missing values,
histograms and a correlation heatmap.

Each table is read by pandas' parser in chunks, so a table many times larger
than the memory limit can be profiled: a numeric column's values wait on disk
(in a scratch folder removed at the end) until its quantiles are taken, one
column at a time. The numbers are those of pandas' ``describe()``: count, mean,
std (n - 1), min, quartiles by linear interpolation (R's type 7, numpy's and
pandas' default), max; missing cells are what pandas reads as missing.

Outputs (in --out), each input's folders kept so that no two inputs collide:

  summary.csv                   one row per table and column, full precision
  <path>_histograms.png/.svg    numeric columns' distributions
  <path>_correlation.png/.svg   Pearson correlations between numeric columns
  <path>_missing.csv            missing values per column

Each table is profiled on its own: one that cannot be read (a row with more
fields than the header, say) gets a message naming the line, the others still
get their results. The run fails only when no table could be read.
Progress is reported as ``##progress <percent> <message>`` lines.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import numpy as np
import pandas as pd

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
    "quantile_method",
    "error",
]
QUANTILE_METHOD = "linear (R type 7)"
CHUNK_ROWS = 500_000
MAX_DISTINCT = 1_000_000  # distinct text values counted per column, at most
MAX_HEATMAP = 40  # numeric columns in a correlation heatmap, at most
MAX_HISTOGRAMS = 30  # numeric columns drawn as histograms, at most
# A spreadsheet runs a cell starting with these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """What goes into an output CSV: text a spreadsheet would run as a formula gets
    a leading apostrophe (OWASP's advice); numbers, negative ones too, stay as they
    are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def progress(percent: float, message: str) -> None:
    print(f"##progress {percent:.0f} {message}", flush=True)


class BadTable(ValueError):
    """A table pandas cannot read, in words for the researcher."""


@dataclass
class Column:
    """What is known of one column so far, chunk after chunk."""

    name: str
    spill: Path
    numeric: bool = True
    rows: int = 0
    missing: int = 0
    values: int = 0  # numbers written to ``spill``
    distinct: Counter = field(default_factory=Counter)
    distinct_capped: bool = False
    histogram: tuple | None = None  # counts and bin edges, once summarised

    def add(self, series: pd.Series) -> None:
        self.rows += len(series)
        present = series.dropna()
        self.missing += len(series) - len(present)
        if self.numeric and is_number(series):
            numbers = present.to_numpy(dtype=np.float64)
            with open(self.spill, "ab") as handle:
                numbers.tofile(handle)
            self.values += len(numbers)
            return
        if self.numeric:  # text from here on: the numbers so far become text
            self.numeric = False
            if self.values:
                self.count_text(pd.Series(np.fromfile(self.spill)).map(repr))
            self.spill.unlink(missing_ok=True)
            self.values = 0
        self.count_text(present.astype(str))

    def count_text(self, present: pd.Series) -> None:
        if self.distinct_capped:
            return
        self.distinct.update(present.value_counts().to_dict())
        if len(self.distinct) > MAX_DISTINCT:
            self.distinct_capped = True

    def numbers(self) -> np.ndarray:
        if not self.values:
            return np.empty(0)
        return np.fromfile(self.spill)


def is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(
        series
    )


def delimiter_for(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "\t" if name.endswith(".tsv") else ","


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


FIELDS_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def too_many_fields(line: int | str, saw: int | str, expected: int | str) -> str:
    return (
        f"line {line} has {saw} fields, but the header (line 1) has {expected}. If "
        "the first lines are notes rather than the column names, remove them; if a "
        "field holds the delimiter, quote it"
    )


def check_first_rows(path: Path, delimiter: str, rows: int = 100) -> None:
    """Refuse a table whose first rows have more fields than its header (pandas
    would silently take the extra ones for an index); later rows like that are
    refused by pandas' own parser, with their line. An empty last field (rows
    that end with a delimiter) is not one: pandas drops it."""
    import gzip

    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as text:
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        for _ in range(rows):
            row = next(reader, None)
            if row is None:
                return
            trailing = len(row) == len(header) + 1 and not row[-1]
            if len(row) > len(header) and not trailing:
                raise BadTable(too_many_fields(reader.line_num, len(row), len(header)))


def explain(exc: Exception) -> str:
    """pandas' parser errors in the researcher's words, naming the line."""
    text = str(exc)
    found = FIELDS_ERROR.search(text)
    if found:
        expected, line, saw = found.groups()
        return too_many_fields(line, saw, expected)
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the table is empty (no header row)"
    return text.strip() or type(exc).__name__


@dataclass
class Table:
    name: str
    rows: int
    columns: list[Column]
    correlations: np.ndarray | None = None


def read_table(path: Path, name: str, scratch: Path, max_rows: int) -> Table:
    """Read ``path`` chunk by chunk; raises BadTable."""
    try:
        check_first_rows(path, delimiter_for(path))
    except (OSError, EOFError, csv.Error) as exc:
        raise BadTable(f"the file cannot be read ({exc})") from exc
    reader_args = {
        "sep": delimiter_for(path),
        "index_col": False,
        "compression": "gzip" if is_gzip(path) else None,
        "encoding_errors": "replace",
        "chunksize": CHUNK_ROWS,
        "nrows": max_rows or None,
    }
    columns: list[Column] = []
    pairs = None  # sums for the correlations, over rows where both are numbers
    try:
        with pd.read_csv(path, **reader_args) as chunks:
            for chunk in chunks:
                if not columns:
                    columns = [
                        Column(str(label), scratch / f"{index}.f64")
                        for index, label in enumerate(chunk.columns)
                    ]
                for column, label in zip(columns, chunk.columns, strict=True):
                    column.add(chunk[label])
                pairs = add_pairs(pairs, chunk, columns)
                rows = columns[0].rows
                print(f"{name}: {rows:,} rows read", flush=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise BadTable(explain(exc)) from exc
    except (OSError, EOFError) as exc:
        raise BadTable(f"the file cannot be read ({exc})") from exc
    if not columns:  # a header and no rows
        header = pd.read_csv(path, **{**reader_args, "chunksize": None, "nrows": 0})
        columns = [Column(str(c), scratch / f"{i}.f64") for i, c in enumerate(header)]
    table = Table(name, columns[0].rows if columns else 0, columns)
    table.correlations = correlations(pairs, columns)
    return table


def add_pairs(pairs, chunk: pd.DataFrame, columns: list[Column]):
    """Add this chunk's sums for Pearson's r between the numeric columns."""
    numeric = [i for i, c in enumerate(columns) if c.numeric][:MAX_HEATMAP]
    if pairs is None:
        pairs = {}
    if len(numeric) < 2:
        return pairs
    values = chunk.iloc[:, numeric].to_numpy(dtype=np.float64, na_value=np.nan)
    key = tuple(numeric)
    if key not in pairs:
        pairs.clear()  # a column turned to text: counted from here on
        # Sums are taken around a column's first mean: no cancellation for
        # large values that vary little.
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            shift = np.nan_to_num(np.nanmean(values, axis=0))
        pairs[key] = {"shift": shift}
    values = values - pairs[key]["shift"]
    present = ~np.isnan(values)
    if present.all():  # no missing cell: each column's sums serve every pair
        ones = np.ones((1, values.shape[1]))
        sums = {
            "n": np.full((values.shape[1],) * 2, float(len(values))),
            "x": values.sum(axis=0)[:, None] * ones,
            "xx": (values**2).sum(axis=0)[:, None] * ones,
            "xy": values.T @ values,
        }
        for name, value in sums.items():
            pairs[key][name] = pairs[key].get(name, 0) + value
        return pairs
    filled = np.where(present, values, 0.0)
    weight = present.astype(np.float64)
    sums = {
        "n": weight.T @ weight,  # rows where both are numbers
        "x": filled.T @ weight,  # sum of column i over those rows
        "xx": (filled**2).T @ weight,
        "xy": filled.T @ filled,
    }
    for name, value in sums.items():
        pairs[key][name] = pairs[key].get(name, 0) + value
    return pairs


def correlations(pairs, columns: list[Column]) -> np.ndarray | None:
    numeric = [i for i, c in enumerate(columns) if c.numeric][:MAX_HEATMAP]
    if not pairs or tuple(numeric) not in pairs:
        return None
    sums = pairs[tuple(numeric)]
    n, x, xx, xy = sums["n"], sums["x"], sums["xx"], sums["xy"]
    y, yy = x.T, xx.T
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = xy - x * y / n
        r = cov / np.sqrt((xx - x**2 / n) * (yy - y**2 / n))
    r[n < 3] = np.nan
    return np.clip(r, -1, 1)


def quantile(ordered: np.ndarray, q: float) -> float:
    """The ``q`` quantile of sorted values by linear interpolation (R's type 7),
    computed as numpy's (and so pandas') default method does, to the last bit."""
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    a, b = ordered[low], ordered[min(low + 1, len(ordered) - 1)]
    t = h - low
    return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)


def describe(values: np.ndarray, bins: int) -> tuple[dict, tuple]:
    """pandas' describe() of one numeric column, its number of distinct values and
    its histogram, from one sort."""
    n = len(values)
    mean = values.sum() / n  # as pandas: a sum, then a division
    std = math.sqrt(((values - mean) ** 2).sum() / (n - 1)) if n > 1 else ""
    values.sort()
    low, high = float(values[0]), float(values[-1])
    stats = {
        "unique": int(np.count_nonzero(np.diff(values))) + 1,
        "mean": float(mean),
        "std": std,
        "min": low,
        "q1": quantile(values, 0.25),
        "median": quantile(values, 0.5),
        "q3": quantile(values, 0.75),
        "max": high,
        "quantile_method": QUANTILE_METHOD,
    }
    # np.histogram's bins, counted on the sorted values.
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    ends = np.searchsorted(values, edges, side="left")
    ends[-1] = n  # the last bin holds its right edge too
    return stats, (np.diff(ends), edges)


def summarise(table: Table, bins: int) -> list[dict]:
    summary = []
    for column in table.columns:
        row = {
            "table": table.name,
            "column": column.name,
            "count": column.rows - column.missing,
            "missing": column.missing,
            "missing_percent": round(100 * column.missing / column.rows, 2)
            if column.rows
            else 0,
        }
        if column.numeric and column.values:
            stats, column.histogram = describe(column.numbers(), bins)
            row.update(type="numeric", **stats)
        else:
            top = column.distinct.most_common(1)
            row.update(
                type="text" if column.distinct or not column.numeric else "empty",
                unique=f"more than {MAX_DISTINCT:,}"
                if column.distinct_capped
                else len(column.distinct),
                top=top[0][0] if top else "",
                top_count=top[0][1] if top else "",
            )
        summary.append(row)
    return summary


def shown(value) -> str:
    """A number rounded for the log (the CSV keeps every digit)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# --- plots -------------------------------------------------------------------------


# matplotlib takes about a second to import: it is imported in the background while
# the inputs are read (``start_pyplot``), and the plots wait for it (``pyplot``).
_PYPLOT: list = []


def start_pyplot() -> None:
    def load() -> None:
        import matplotlib

        matplotlib.use("Agg")
        # SVG text stays text (selectable, and far quicker than drawing each glyph).
        matplotlib.rcParams["svg.fonttype"] = "none"
        import_module("matplotlib.pyplot")

    thread = threading.Thread(target=load, daemon=True)
    _PYPLOT.append(thread)
    thread.start()


def pyplot():
    """matplotlib.pyplot, once the background import is done."""
    for thread in _PYPLOT:
        thread.join()
    return import_module("matplotlib.pyplot")


def plot_histograms(target: str, table: Table) -> None:
    plt = pyplot()

    numeric = [c for c in table.columns if c.histogram is not None]
    if not numeric:
        return
    scope = ""
    if len(numeric) > MAX_HISTOGRAMS:
        scope = f" (the first {MAX_HISTOGRAMS} of {len(numeric)} numeric columns)"
        numeric = numeric[:MAX_HISTOGRAMS]
    cols = min(3, len(numeric))
    rows = math.ceil(len(numeric) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for axis, column in zip(axes.flat, numeric, strict=False):
        counts, edges = column.histogram
        axis.stairs(counts, edges, fill=True, color="#3b6ea8")
        axis.set_title(column.name, fontsize=10)
        axis.set_ylabel("count")
    for axis in list(axes.flat)[len(numeric) :]:
        axis.set_visible(False)
    figure.suptitle(f"{Path(table.name).name}: distributions{scope}")
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(f"{target}_histograms.{suffix}", dpi=120)
    plt.close(figure)


def plot_correlation(target: str, table: Table) -> None:
    plt = pyplot()

    matrix = table.correlations
    if matrix is None or len(matrix) < 2:
        return
    names = [c.name for c in table.columns if c.numeric][:MAX_HEATMAP]
    size = max(4, 0.6 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    if len(names) <= 15:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    axis.text(
                        j, i, f"{value:.2f}", ha="center", va="center", fontsize=8
                    )
    figure.colorbar(image, ax=axis, label="Pearson r")
    axis.set_title(f"{Path(table.name).name}: correlations")
    figure.tight_layout()
    for suffix in ("png", "svg"):
        figure.savefig(f"{target}_correlation.{suffix}", dpi=120)
    plt.close(figure)


# --- the run -----------------------------------------------------------------------


def display_name(path: Path, input_dir: Path | None) -> str:
    """The file's path in the project (its name when given from elsewhere)."""
    if input_dir is not None:
        try:
            return path.resolve().relative_to(input_dir.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def write_missing(target: str, summary: list[dict]) -> None:
    with open(f"{target}_missing.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["column", "missing", "missing_percent"])
        for row in summary:
            writer.writerow(
                [cell(row["column"]), row["missing"], row["missing_percent"]]
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--input-dir", type=Path, default=None)
    parser.add_argument("--bins", type=int, default=30)
    parser.add_argument("--max-rows", type=int, default=0)
    parser.add_argument("tables", type=Path, nargs="+")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start_pyplot()
    summary: list[dict] = []
    problems: dict[str, str] = {}
    total = len(args.tables)
    for number, path in enumerate(args.tables):
        name = display_name(path, args.input_dir)
        progress(100 * number / total, f"reading {name}")
        scratch = Path(tempfile.mkdtemp(prefix=".profile-", dir=args.out))
        try:
            try:
                table = read_table(path, name, scratch, args.max_rows)
            except BadTable as exc:
                problems[name] = str(exc)
                print(f"{name}: not profiled: {exc}", flush=True)
                summary.append({"table": name, "error": str(exc)})
                continue
            print(
                f"{name}: {table.rows} rows, {len(table.columns)} columns", flush=True
            )
            table_summary = summarise(table, args.bins)
            for row in table_summary:
                print(
                    f"  {row['column']}: {row['type']}, "
                    + ", ".join(
                        f"{key} {shown(row[key])}"
                        for key in ("count", "missing", "mean", "std", "median")
                        if row.get(key) not in (None, "")
                    ),
                    flush=True,
                )
            summary.extend(table_summary)
            target = str(args.out / name)
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            write_missing(target, table_summary)
            progress(100 * (number + 0.6) / total, f"plotting {name}")
            plot_histograms(target, table)
            plot_correlation(target, table)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    with open(args.out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(
            {key: cell(value) for key, value in row.items()} for row in summary
        )
    if len(problems) == total:
        print("error: no table could be profiled:", file=sys.stderr)
        for name, problem in problems.items():
            print(f"  {name}: {problem}", file=sys.stderr)
        return 1
    if problems:
        print(f"warning: {len(problems)} of {total} tables could not be profiled")
    progress(100, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
