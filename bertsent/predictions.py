"""Predictions on files: texts read from a .csv, .jsonl or .parquet file (one per row, from a
text column) or a text file (one per line), and one output row per input row, in order, with
the predicted label and each class's probability, written as .csv, .jsonl or .parquet.

A blank text keeps its row, with no label (an empty cell, null), so outputs always line up
with inputs; nothing is ever skipped. Pure file handling: no model in here.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from bertsent.errors import fail
from bertsent.jsonio import strict_json

TABLES = (".csv", ".jsonl", ".parquet")  # files read by column and written as tables
LABEL, SCORE = "predicted_label", "predicted_score"  # names no training column is likely to use


def is_table(path: str) -> bool:
    return Path(path).suffix.lower() in TABLES + (".json",)


def read_rows(path: str, text_column: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, texts): every row of the file, and its text ('' where it has none)."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as fh:
                rows = list(csv.DictReader(fh))  # every value as written
        elif suffix in (".jsonl", ".json"):
            rows = _json_lines(path)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        else:
            with open(path, encoding="utf-8") as fh:
                rows = [{"text": line.rstrip("\n")} for line in fh]
            text_column = "text"
    except FileNotFoundError:
        fail(f"--file {path} does not exist: pass a .csv, .jsonl, .parquet or text file")
    except UnicodeDecodeError:
        fail(f"--file {path} is not UTF-8 text: re-encode it as UTF-8")
    except (OSError, ValueError, csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120]
        fail(f"--file {path} cannot be read ({reason}): check that it is valid {suffix[1:]}")
    if rows and text_column not in rows[0]:
        fail(f"--file {path} has no column '{text_column}' (columns: "
             f"{', '.join(map(str, rows[0]))[:200]}): pass --text-column with the right name")
    texts = [_text(row.get(text_column)) for row in rows]
    return rows, texts


def _json_lines(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue  # no row on an empty line of a JSON-lines file
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows.append(row)
    return rows


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def check_out(path: str, source: str | None) -> None:
    """--out, refused before any work: a table format, a new file, never the input itself."""
    out = Path(path)
    if out.suffix.lower() not in TABLES:
        fail(f"--out {path} must end in .csv, .jsonl or .parquet: pass a file name with one")
    if out.exists():
        fail(f"--out {path} already exists: pass a new file name (predictions never replace a "
             "file)")
    if source and out.resolve() == Path(source).resolve():
        fail(f"--out {path} is the --file being read: pass another file name")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        fail(f"cannot write --out {path} (its folder is missing or read-only): pass a path in "
             "a writable folder")


def output_rows(rows: list[dict[str, Any]], probs: list[list[float] | None],
                names: list[str]) -> list[dict[str, Any]]:
    """Each input row with the predicted label, its probability and every class's."""
    out = []
    for row, p in zip(rows, probs, strict=True):
        best = None if p is None else max(range(len(p)), key=p.__getitem__)
        out.append({**row, LABEL: None if p is None else names[best],
                    SCORE: None if p is None else p[best],
                    **{f"score_{name}": None if p is None else v
                       for name, v in zip(names, p or [None] * len(names), strict=True)}})
    return out


def write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    """The rows as a table, written to a temporary file and renamed into place."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    suffix = out.suffix.lower()
    try:
        if suffix == ".csv":
            columns = list(dict.fromkeys(k for row in rows for k in row))
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        elif suffix == ".jsonl":
            tmp.write_text("".join(strict_json(row, default=str) + "\n" for row in rows),
                           encoding="utf-8")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        fail(f"writing --out {path} failed ({exc.strerror or exc}): free disk space or pass "
             "another path")
