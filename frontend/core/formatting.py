"""Formatting helpers shared by views, templates and messages."""

import re
from datetime import UTC, datetime


def human_size(size: float) -> str:
    """1536 -> '1.5 KiB': binary units, one decimal above bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'500 MiB' -> 524288000. Units are binary whatever their spelling (MB, MiB
    and M all mean 1024² bytes); a bare number is bytes. ValueError saying what
    was expected otherwise."""
    match = re.fullmatch(
        r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, flags=re.IGNORECASE
    )
    if not match:
        raise ValueError(
            f"“{text}” is not a size: write a number and a unit, e.g. 500 MiB or 20 GiB"
        )
    return int(float(match[1]) * _UNITS[match[2].lower()])


def utc_stamp(moment: datetime | None) -> str | None:
    """A UTC time as RFC 3339 with its ``Z`` (the database keeps UTC without a
    zone, which a client would otherwise take for its own local time)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"
