"""Quality control of FASTA and FASTQ files (gzipped or not), built on seqkit.

For each input file, on its own:

- ``seqkit stats -a -T -j 1 -G Nn`` gives the summary numbers (records, bases,
  min/mean/max length, N50, GC, N, Q20 and Q30): they are seqkit's own;
- at the same time, ``seqkit seq -q`` streams every read's qualities (one line
  per read, whatever the file's wrapping) into numpy: the exact mean Phred
  quality, every read's length (for the length quartiles, by the linear method
  of R's type 7 and numpy's default: seqkit 2.3 gets them wrong for a handful of
  records) and, for the first reads, the quality at each position; ``seqkit
  fx2tab`` gives their GC content. FASTA lengths and GC come from fx2tab too;
- a file seqkit refuses, or with a quality outside Phred+33, is read again with
  Biopython's parser to say which record and which line are wrong; the other
  files still get their results.

Outputs (in --out), each input's folders kept so that no two inputs collide:

  qc_summary.csv                one row per input file (``file`` is its path in the
                                project; ``error`` says why a file has no numbers)
  <path>_lengths.png            length distribution (every record)
  <path>_gc.png                 GC content per record (the first records)
  <path>_quality.png            Phred quality per position, FASTQ only (the first
                                reads): mean, quartiles and 10th-90th percentiles
  (each also as .svg with --vector-plots=true)

The run fails only when every file failed. Progress is reported as
``##progress <percent> <message>`` lines.
"""

from __future__ import annotations

import argparse
import csv
import gc as garbage_collector
import gzip
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path

import numpy as np

FIELDS = [
    "file",
    "format",
    "type",
    "records",
    "bases",
    "min_length",
    "mean_length",
    "max_length",
    "length_q1",
    "length_median",
    "length_q3",
    "n50",
    "gc_percent",
    "n_percent",
    "mean_quality",
    "q20_percent",
    "q30_percent",
    "sampled_records",
    "error",
]
# seqkit stats -a -T columns, and the summary's names for them.
SEQKIT_COLUMNS = {
    "format": "format",
    "type": "type",
    "num_seqs": "records",
    "sum_len": "bases",
    "min_len": "min_length",
    "avg_len": "mean_length",
    "max_len": "max_length",
    "N50": "n50",
    "GC(%)": "gc_percent",
    "Q20(%)": "q20_percent",
    "Q30(%)": "q30_percent",
}
SAMPLE = 100_000  # records whose GC and per-position quality are plotted
BLOCK = 16 * 1024 * 1024  # bytes read at a time
PHRED_OFFSET = 33  # Sanger / Illumina 1.8+, as seqkit assumes
MAX_QUALITY = 94  # Phred values one printable character can hold
BYTES = 127  # quality characters are below this (add_qualities checks)
POSITION_GROUPS = 500  # longer reads are plotted in groups of positions
GC_BYTES = np.zeros(256, dtype=np.uint8)
GC_BYTES[list(b"GCgcSs")] = 1


class BadInput(ValueError):
    """A file that is not valid FASTA or FASTQ, in words for the researcher."""


def progress(percent: float, message: str) -> None:
    print(f"##progress {percent:.0f} {message}", flush=True)


# --- seqkit ------------------------------------------------------------------------


def start_stats(path: Path) -> subprocess.Popen:
    """seqkit's summary of one file, running while we read the file ourselves."""
    return subprocess.Popen(  # noqa: S603 (fixed arguments, no shell)
        ["seqkit", "stats", "-a", "-T", "-j", "1", "-G", "Nn", str(path)],  # noqa: S607
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_stats(process: subprocess.Popen) -> dict[str, str]:
    """The summary row of ``start_stats``, or BadInput with seqkit's reason.

    seqkit reports a file it cannot read on stderr and still exits 0, with no row.
    """
    out, err = process.communicate()
    lines = out.splitlines()
    complaint = " ".join(
        line.split("[ERRO]", 1)[-1].replace("\x1b[0m", "").strip()
        for line in err.splitlines()
        if "ERRO" in line
    )
    if process.returncode != 0 or complaint or len(lines) < 2:
        raise BadInput(
            complaint or f"seqkit stats exited with code {process.returncode}"
        )
    values = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=True))
    found = {name: values[column] for column, name in SEQKIT_COLUMNS.items()}
    bases, gaps = int(values["sum_len"]), int(values["sum_gap"])
    found["n_percent"] = f"{100 * gaps / bases:.2f}" if bases else "0.00"
    if found["format"] == "FASTA":
        found["q20_percent"] = found["q30_percent"] = ""
    return found


# --- reading the file ourselves ----------------------------------------------------


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def open_bytes(path: Path):
    """The file's bytes, decompressed when it is gzipped (whatever its name)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115


def first_byte(path: Path) -> bytes:
    """The first byte that is not white space: '>' for FASTA, '@' for FASTQ."""
    with open_bytes(path) as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[:1]
    return b""


@dataclass
class Profile:
    """What the plots show, and the mean quality of every base."""

    lengths: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    gc_percent: list[np.ndarray] = field(default_factory=list)
    quality_sum: int = 0
    quality_bases: int = 0
    # Quality counts per position group (rows) and Phred value (columns).
    position_quality: np.ndarray | None = None
    group_width: int = 1
    sampled: int = 0
    records: int = 0

    def add_lengths(self, lengths: np.ndarray) -> None:
        counts = np.bincount(lengths) if len(lengths) else np.zeros(1, np.int64)
        if len(counts) > len(self.lengths):
            counts[: len(self.lengths)] += self.lengths
            self.lengths = counts
        else:
            self.lengths[: len(counts)] += counts

    def length_quantile(self, q: float) -> float:
        """The ``q`` quantile of the record lengths, by linear interpolation
        between the two nearest ranks (R's type 7)."""
        ranks = np.cumsum(self.lengths)
        if not ranks[-1]:
            return 0.0
        h = (int(ranks[-1]) - 1) * q
        low = int(h)
        below = int(np.searchsorted(ranks, low, side="right"))
        above = int(np.searchsorted(ranks, min(low + 1, int(ranks[-1]) - 1), "right"))
        return below + (h - low) * (above - below)

    @property
    def mean_quality(self) -> float | None:
        if not self.quality_bases:
            return None
        return self.quality_sum / self.quality_bases - PHRED_OFFSET


BAD_QUALITY = "its quality has a character that is not a Phred+33 score ('!' to '~')"


def seqkit(*arguments: str, path: Path) -> subprocess.Popen:
    """A seqkit command on ``path`` whose output is read as it comes, on one
    thread (more only cost CPU time the other work needs: a third more, in
    system time, for ``seq -q``)."""
    return subprocess.Popen(  # noqa: S603 (fixed arguments, no shell)
        ["seqkit", *arguments, "-j", "1", str(path)],  # noqa: S607
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def profile_fastq_stream(path: Path, profile: Profile, on_sample=None) -> bool:
    """Every read's length and quality from ``seqkit seq -q`` (one line of
    qualities per read, whatever the file's wrapping or line ends), and the GC of
    the first SAMPLE reads from ``seqkit fx2tab`` at the same time; ``on_sample``
    is called once those reads are counted (their plots can be drawn while the
    rest is read). False when seqkit could not read the file or a quality is not
    Phred+33: the record path then says where."""
    gc_sample = threading.Thread(target=sample_gc, args=(path, profile))
    gc_sample.start()
    try:
        with seqkit("seq", "-q", "-w", "0", path=path) as process:
            rest = b""
            while data := process.stdout.read(BLOCK):
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                buffer = np.frombuffer(data, np.uint8, cut)
                if cut and not add_qualities(profile, buffer):
                    process.kill()
                    return False
                if on_sample is not None and profile.sampled >= SAMPLE:
                    gc_sample.join()
                    on_sample(profile)
                    on_sample = None
            if rest and not add_qualities(
                profile, np.frombuffer(rest + b"\n", np.uint8)
            ):
                return False
            complaint = process.stderr.read()
    finally:
        gc_sample.join()
    return process.returncode == 0 and b"[ERRO]" not in complaint


def sample_gc(path: Path, profile: Profile) -> None:
    """The GC % seqkit gives each of the first SAMPLE reads."""
    with seqkit("fx2tab", "-n", "-i", "-g", path=path) as process:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if len(lines) == SAMPLE:
                break
        process.kill()  # the rest of the file is not needed
    # "id<TAB>gc": the last field of each line, converted by numpy at once.
    values = np.array([line.rsplit(b"\t", 1)[-1] for line in lines])
    profile.gc_percent.append(values.astype(np.float64))


def add_qualities(profile: Profile, buffer) -> bool:
    """Count a block of quality lines (each ending with a newline); False, counting
    nothing, when one holds a character outside '!' to '~'."""
    ends = np.flatnonzero(buffer == 10)
    if np.count_nonzero(buffer < 33) != len(ends) or buffer.max() > 126:
        return False
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    lengths = ends - starts
    profile.records += len(lengths)
    profile.add_lengths(lengths)
    # Summed in 32 bits when that cannot overflow (twice as fast as 64).
    wide = np.uint32 if len(buffer) < 2**32 // BYTES else np.uint64
    profile.quality_sum += int(buffer.sum(dtype=wide)) - 10 * len(ends)
    profile.quality_bases += int(lengths.sum())
    take = min(SAMPLE - profile.sampled, len(lengths))
    if take > 0:
        sample_positions(buffer, starts[:take], lengths[:take], profile)
        profile.sampled += take
    return True


def sample_positions(buffer, qual_starts, lengths, profile: Profile) -> None:
    """Count each Phred value at each position (in groups for long reads)."""
    if profile.position_quality is None:
        longest = int(lengths.max()) if len(lengths) else 0
        profile.group_width = max(1, -(-longest // POSITION_GROUPS))
        groups = -(-max(longest, 1) // profile.group_width)
        profile.position_quality = np.zeros((groups, MAX_QUALITY), np.int64)
    width = profile.group_width
    for begin in range(0, len(lengths), 20_000):  # a few million bases at a time
        part_starts = qual_starts[begin : begin + 20_000]
        part_lengths = lengths[begin : begin + 20_000]
        part_starts = part_starts[part_lengths > 0]  # empty reads have no bases
        part_lengths = part_lengths[part_lengths > 0]
        if not len(part_lengths):
            continue
        # The reads' qualities, in order, with or without a newline after each.
        # Each byte's place counts up from 0, and goes back to 0 where a read
        # starts (a newline's place is never one of a read's).
        first = int(part_starts[0])
        lines = buffer[first : int(part_starts[-1] + part_lengths[-1])]
        step = np.ones(len(lines), np.int32)
        step[0] = 0
        step[part_starts[1:] - first] = 1 - np.diff(part_starts)
        position = np.cumsum(step, dtype=np.int32)
        # Each byte becomes one number, its position group and its character
        # (BYTES apart), and all are counted at once. Newlines land in column 10,
        # outside the qualities '!' to '~' (Phred 0 to 93, checked by the callers).
        code = position // width * BYTES + lines
        needed = (int(part_lengths.max()) - 1) // width + 1
        counts = np.bincount(code, minlength=(needed + 1) * BYTES)
        table = profile.position_quality
        if needed > len(table):  # a longer read than the first batch's longest
            grown = np.zeros((needed - len(table), MAX_QUALITY), np.int64)
            table = profile.position_quality = np.vstack([table, grown])
        table[:needed] += counts[: needed * BYTES].reshape(needed, BYTES)[
            :, PHRED_OFFSET : PHRED_OFFSET + MAX_QUALITY
        ]


class CountingLines:
    """A text handle that counts the lines read through it."""

    def __init__(self, handle):
        self.handle, self.lines = handle, 0

    def read(self, size=-1):
        return self.handle.read(size)

    def __iter__(self):
        return self

    def __next__(self):
        line = next(self.handle)
        self.lines += 1
        return line

    def readline(self, size=-1):
        line = self.handle.readline(size)
        if line:
            self.lines += 1
        return line


def profile_fastq_records(path: Path, profile: Profile) -> None:
    """Read a FASTQ file that seqkit could not, or whose qualities are not all
    Phred+33, with Biopython's parser, which says what is wrong; the record and
    line are counted here."""
    from Bio.SeqIO.QualityIO import FastqGeneralIterator

    opener = gzip.open if is_gzip(path) else open
    record, start = 0, 1
    batch: list[tuple[str, str, int]] = []
    try:
        with opener(path, "rt", encoding="ascii", errors="replace") as text:
            handle = CountingLines(text)
            for _title, sequence, quality in FastqGeneralIterator(handle):
                record += 1
                batch.append((sequence, quality, start))
                start = handle.lines  # the next record's first line is read ahead
                if len(batch) == 50_000:
                    _add_batch(profile, batch)
                    batch = []
            if batch:
                _add_batch(profile, batch)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise BadInput(
            f"the gzip data is damaged or ends early, after {record:,} records ({exc})"
        ) from exc
    except ValueError as exc:
        if isinstance(exc, BadInput):
            raise
        problem = str(exc).rstrip(".") or type(exc).__name__
        raise BadInput(f"record {record + 1} (from line {start}): {problem}") from exc


def _add_batch(profile: Profile, batch: list[tuple[str, str, int]]) -> None:
    """Count a batch of records read by Biopython's parser; BadInput at the first
    whose quality is not Phred+33 (nothing of the batch counted)."""
    sequences = "".join(s for s, _q, _l in batch).encode("ascii", "replace")
    # A newline closes the last read's qualities (each range ends inside them).
    qualities = ("".join(q for _s, q, _l in batch) + "\n").encode("ascii", "replace")
    lengths = np.fromiter((len(s) for s, _q, _l in batch), np.int64, len(batch))
    quals = np.frombuffer(qualities, np.uint8)
    starts = np.cumsum(lengths) - lengths  # in the sequences and the qualities
    bounds = np.empty(2 * len(lengths), np.int64)
    bounds[0::2], bounds[1::2] = starts, starts + lengths
    lows = np.minimum.reduceat(quals, bounds)[0::2]
    highs = np.maximum.reduceat(quals, bounds)[0::2]
    bad = np.flatnonzero((lengths > 0) & ((lows < 33) | (highs > 126)))
    if len(bad):
        first = int(bad[0])
        record = profile.records + first + 1
        raise BadInput(f"record {record} (from line {batch[first][2]}): {BAD_QUALITY}")
    profile.records += len(lengths)
    profile.add_lengths(lengths)
    profile.quality_sum += int(quals[:-1].sum(dtype=np.uint64))
    profile.quality_bases += int(lengths.sum())
    take = min(SAMPLE - profile.sampled, len(lengths))
    if take <= 0:
        return
    sample_positions(quals, starts[:take], lengths[:take], profile)
    # GC of each sampled read, from running counts over their sequences.
    ends = starts[:take] + lengths[:take]
    running = np.zeros(int(ends[-1]) + 1, np.int64)
    np.cumsum(GC_BYTES[np.frombuffer(sequences, np.uint8)[: ends[-1]]], out=running[1:])
    gc = running[ends] - running[starts[:take]]
    profile.gc_percent.append(100 * gc / np.maximum(lengths[:take], 1))
    profile.sampled += take


def profile_file(path: Path, fmt: bytes, on_sample=None) -> Profile:
    """Read ``path`` for the plots, the mean quality and the length quartiles.
    Raises BadInput naming the record and line of what is wrong."""
    profile = Profile()
    if fmt == b"@":
        if not profile_fastq_stream(path, profile, on_sample):
            # Something is wrong: read it record by record, from the start, to say
            # which record and line.
            profile = Profile()
            profile_fastq_records(path, profile)
        return profile
    # FASTA: seqkit gives each record's length and GC (a sequence can be a whole
    # chromosome on one line: it is never held here).
    with subprocess.Popen(  # noqa: S603 (fixed arguments, no shell)
        ["seqkit", "fx2tab", "-n", "-i", "-l", "-g", "-j", "1", str(path)],  # noqa: S607
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        lengths, gc = [], []
        for line in process.stdout:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            lengths.append(int(parts[-2]))
            if len(gc) < SAMPLE:
                gc.append(float(parts[-1]))
    profile.records = len(lengths)
    profile.add_lengths(np.asarray(lengths, dtype=np.int64))
    profile.gc_percent.append(np.asarray(gc, dtype=np.float64))
    profile.sampled = len(gc)
    return profile


# --- plots -------------------------------------------------------------------------


# matplotlib takes about a second to import: a process of its own imports it while
# the inputs are read (``start_plotter``), then draws the plots it is sent.
def load_pyplot() -> None:
    """Import matplotlib for the plots (in the plotting process)."""
    import matplotlib

    matplotlib.use("Agg")
    # SVG text stays text (selectable, and far quicker than drawing each glyph).
    matplotlib.rcParams["svg.fonttype"] = "none"
    import_module("matplotlib.pyplot")
    # What is loaded so far lives as long as the run: the collector need not
    # look at it again every time the plots make their many small objects.
    garbage_collector.freeze()


def start_plotter() -> ProcessPoolExecutor:
    """A process of its own that draws the plots, importing matplotlib at once.

    matplotlib's import and drawing hold Python's interpreter lock for most of a
    second: in a thread they held up the reading of the qualities. Started
    before any thread (it is forked).
    """
    plotter = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    plotter.submit(load_pyplot)
    return plotter


def pyplot():
    """matplotlib.pyplot, imported by ``load_pyplot`` if it was not yet."""
    if "matplotlib.pyplot" not in sys.modules:
        load_pyplot()
    return sys.modules["matplotlib.pyplot"]


PLOTS = ("lengths", "gc", "quality")


# Margins of every plot, as fractions of the figure: room for the axis labels and
# the title at these figure sizes (fixed margins cost nothing; fitting them to the
# text each time took a third of the plotting time).
MARGINS = {"left": 0.16, "right": 0.97, "bottom": 0.15, "top": 0.9}


def plot(
    name: str, out: Path, profile: Profile, kinds=PLOTS, vector: bool = False
) -> None:
    """Draw the ``kinds`` of plots of ``profile`` as <name>_<kind>.png, and as
    .svg too when ``vector`` (for print)."""
    plt = pyplot()

    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    label = Path(name).name
    suffixes = ("png", "svg") if vector else ("png",)

    def save(figure, kind: str) -> None:
        figure.subplots_adjust(**MARGINS)
        for suffix in suffixes:
            figure.savefig(f"{target}_{kind}.{suffix}", dpi=110)
        plt.close(figure)

    counts = profile.lengths
    present = np.flatnonzero(counts)
    if "lengths" in kinds and len(present):
        low, high = int(present[0]), int(present[-1])
        figure, axis = plt.subplots(figsize=(6, 3.5))
        # Histograms are drawn as one filled outline (a bar each took a tenth
        # of the plotting time).
        if high - low < 60:  # a step for each length, centred on it
            edges = np.arange(low, high + 2) - 0.5
            heights = counts[low : high + 1]
        else:
            edges = np.linspace(low, high + 1, 51)
            heights, _ = np.histogram(
                np.arange(low, high + 1), bins=edges, weights=counts[low : high + 1]
            )
        axis.stairs(heights, edges, fill=True, color="#3b6ea8")
        axis.set(xlabel="length (bp)", ylabel="records", title=f"{label}: lengths")
        save(figure, "lengths")

    gc = np.concatenate(profile.gc_percent) if profile.gc_percent else np.array([])
    if "gc" in kinds and len(gc):
        figure, axis = plt.subplots(figsize=(6, 3.5))
        heights, edges = np.histogram(gc, bins=50, range=(0, 100))
        axis.stairs(heights, edges, fill=True, color="#4c9a5b")
        scope = (
            f"first {len(gc):,} records" if profile.sampled >= SAMPLE else "all records"
        )
        axis.set(
            xlabel="GC (%)", ylabel="records", title=f"{label}: GC content ({scope})"
        )
        save(figure, "gc")

    table = profile.position_quality
    if "quality" in kinds and table is not None and table.sum():
        table = table[table.sum(axis=1) > 0]
        totals = table.sum(axis=1)
        cumulative = np.cumsum(table, axis=1) / totals[:, None]
        values = np.arange(MAX_QUALITY)

        def percentile(p: float) -> np.ndarray:
            return np.argmax(cumulative >= p, axis=1)

        mean = (table * values).sum(axis=1) / totals
        x = (np.arange(len(table)) * profile.group_width) + 1
        figure, axis = plt.subplots(figsize=(7, 3.5))
        axis.fill_between(
            x,
            percentile(0.1),
            percentile(0.9),
            color="#f0c8c8",
            label="10th-90th percentile",
        )
        axis.fill_between(
            x, percentile(0.25), percentile(0.75), color="#d98c8c", label="quartiles"
        )
        axis.plot(x, mean, color="#7a1f1f", label="mean")
        axis.axhline(30, linestyle="--", color="grey", linewidth=1)
        axis.axhline(20, linestyle=":", color="grey", linewidth=1)
        reads = (
            f"first {profile.sampled:,} reads"
            if profile.sampled >= SAMPLE
            else "all reads"
        )
        axis.set(
            xlabel="position (bp)"
            if profile.group_width == 1
            else f"position (bp, in groups of {profile.group_width})",
            ylabel="Phred quality",
            title=f"{label}: quality per position ({reads})",
            ylim=(0, max(42, int(percentile(0.9).max()) + 2)),
        )
        axis.legend(loc="lower left", fontsize=8)
        save(figure, "quality")


# --- the run -----------------------------------------------------------------------


def display_name(path: Path, input_dir: Path | None) -> str:
    """The file's path in the project (its name when given from elsewhere)."""
    if input_dir is not None:
        try:
            return path.resolve().relative_to(input_dir.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def qc_file(path: Path, name: str, on_sample=None) -> tuple[dict, Profile | None]:
    """One file's summary row (``error`` set when it has no numbers) and profile."""
    row: dict = {"file": name}
    try:
        fmt = first_byte(path)
    except (OSError, EOFError) as exc:
        row["error"] = f"the file cannot be read: {exc}"
        return row, None
    if not fmt:
        row["error"] = "the file is empty"
        return row, None
    if fmt not in (b"@", b">"):
        shown = repr(fmt.decode("latin-1"))
        row["error"] = (
            "this is not a FASTA or FASTQ file: it should start with '>' or '@', "
            f"and starts with {shown}"
        )
        return row, None
    stats = start_stats(path)
    # seqkit counts on one core while this process reads the file on another.
    found: dict = {}

    def read() -> None:
        try:
            found["profile"] = profile_file(path, fmt, on_sample)
        except BadInput as exc:
            found["problem"] = str(exc)
        except Exception as exc:  # a reader's failure, in words, not a traceback
            found["problem"] = (
                f"the file could not be read ({type(exc).__name__}: {exc})"
            )

    reader = threading.Thread(target=read)
    reader.start()
    try:
        row.update(finish_stats(stats))
    except BadInput as exc:
        found.setdefault("seqkit", str(exc))
    reader.join()
    if "problem" in found or "seqkit" in found:
        # The reader names the record and line; seqkit's words otherwise.
        row = {"file": name, "error": found.get("problem") or found["seqkit"]}
        return row, None
    profile = found["profile"]
    if profile.mean_quality is not None:
        row["mean_quality"] = f"{profile.mean_quality:.2f}"
    for column, q in (("length_q1", 0.25), ("length_median", 0.5), ("length_q3", 0.75)):
        # A multiple of 0.25 (ranks are interpolated in quarters): exact.
        row[column] = f"{profile.length_quantile(q):.2f}".rstrip("0").rstrip(".")
    row["sampled_records"] = profile.sampled
    return row, profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--input-dir", type=Path, default=None)
    parser.add_argument(
        "--vector-plots",
        choices=("true", "false"),
        default="false",
        help="also draw each plot as SVG",
    )
    parser.add_argument("sequences", type=Path, nargs="+")
    args = parser.parse_args(argv)
    vector = args.vector_plots == "true"
    if shutil.which("seqkit") is None:  # only outside the pipeline's image
        sys.stderr.write("error: seqkit is not installed (apt-get install seqkit)\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with start_plotter() as plotter:
        return summarise(args, vector, plotter)


def summarise(args, vector: bool, plotter: ProcessPoolExecutor) -> int:
    rows, failed = [], 0
    total = len(args.sequences)
    for number, path in enumerate(args.sequences):
        name = display_name(path, args.input_dir)
        progress(100 * number / total, f"reading {name}")
        early: list = []

        def draw_sample_plots(profile, name=name, early=early) -> None:
            # The GC and quality plots need only the first reads: drawn while the
            # rest of a large file is read, from a copy of what they show (the
            # reading goes on changing the lengths).
            sample = replace(
                profile,
                lengths=profile.lengths.copy(),
                gc_percent=list(profile.gc_percent),
            )
            early.append(
                plotter.submit(plot, name, args.out, sample, ("gc", "quality"), vector)
            )

        row, profile = qc_file(path, name, draw_sample_plots)
        for drawing in early:
            drawing.result()
        rows.append(row)
        if row.get("error") and profile is None:
            failed += 1
            print(f"{name}: not summarised: {row['error']}", flush=True)
            for kind in PLOTS if early else ():  # drawn before the fault was found
                for suffix in ("png", "svg"):
                    (args.out / f"{name}_{kind}.{suffix}").unlink(missing_ok=True)
            continue
        print(
            f"{name}: {row['format']}, {int(row['records']):,} records, "
            f"{int(row['bases']):,} bases, N50 {row['n50']}, GC {row['gc_percent']} %",
            flush=True,
        )
        progress(100 * (number + 0.7) / total, f"plotting {name}")
        if profile is not None:
            kinds = ("lengths",) if early else PLOTS
            plotter.submit(plot, name, args.out, profile, kinds, vector).result()
    with open(args.out / "qc_summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    if failed == total:
        print("error: no file could be summarised:", file=sys.stderr)
        for row in rows:
            print(f"  {row['file']}: {row['error']}", file=sys.stderr)
        return 1
    if failed:
        print(f"warning: {failed} of {total} files could not be summarised", flush=True)
    progress(100, "done")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
