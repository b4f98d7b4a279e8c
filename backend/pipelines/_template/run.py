"""Template pipeline: copy a text file into the outputs, reporting progress."""

import argparse
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("source", type=Path)
    args = parser.parse_args()
    for n in range(1, args.times + 1):
        print(
            f"##progress {100 * (n - 1) // args.times} copying {n} of {args.times}",
            flush=True,
        )
        shutil.copyfile(args.source, args.out / f"copy-{n}-{args.source.name}")
    print("##progress 100 done", flush=True)


if __name__ == "__main__":
    main()
