"""`--only` for the benchmarks that run named rows: comma-separated parts of the names.

Some names hold commas of their own ("oneDNN's 1,024 kernels", "64 rows, autocast"), so a
comma separates two parts only where the text around it is not in a name: `--only 4,096`
picks the rows with "4,096", not every row with a "4". A part that names no row is refused in
one line with the choices, instead of running nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable


def parts(only: str, names: list[str]) -> list[str]:
    """`only` split on commas, each run of pieces that together lie in a name kept whole (the
    longest such run first)."""
    pieces, found, i = only.split(","), [], 0
    while i < len(pieces):
        j = next((j for j in range(len(pieces), i + 1, -1)
                  if any(",".join(pieces[i:j]) in n for n in names)), i + 1)
        found.append(",".join(pieces[i:j]).strip())
        i = j
    return [p for p in found if p]


def pick(names: Iterable[str], only: str | None, parser: argparse.ArgumentParser) -> list[str]:
    """The names, in their order, that contain any part of `only` (all when `only` is empty);
    `parser.error` for a part that no name contains."""
    names = list(names)
    wanted = parts(only or "", names)
    if not wanted:
        return names
    unknown = [p for p in wanted if not any(p in n for n in names)]
    if unknown:
        parser.error(f"--only: no row name contains {unknown[0]!r}: pass comma-separated parts "
                     f"of these names: {'; '.join(names)}")
    return [n for n in names if any(p in n for p in wanted)]
