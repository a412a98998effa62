"""Predictions on files: texts read from a table (.csv, .tsv, .jsonl, .json or .parquet, one per
row, from a text column) or a text file (.txt or no suffix, one per line), and one output row
per input row, in order, with the predicted label and each class's probability, written as
.csv, .tsv, .jsonl or .parquet.

A user's file comes back whole: every input row and every input column (the union of all rows'
columns, in first-seen order, whatever the output format), nothing renamed, overwritten or
reordered. A blank text keeps its row, with no label (an empty cell, null). What cannot be
read or written whole is refused in one line before any prediction is computed: a repeated
column name, a row with more or fewer fields than the header, an input column with an output
column's name, values the output format cannot hold. A .csv is RFC 4180's (quoted cells may
hold commas and line breaks), a .tsv IANA's (no quoting: a quote in a text stays as written,
and a value with a tab or line break cannot be written to one). A leading UTF-8 BOM is dropped
in every text format, and gzip, bzip2 and xz files are read as they are (found by their first
bytes). Pure file handling: no model in here.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import itertools
import json
import lzma
import os
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bertsent.errors import fail
from bertsent.jsonio import strict_json

# --file formats by suffix (any case); a text file is one text per line
READ = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet",
        ".txt": "txt", "": "txt"}
TABLES = (".csv", ".tsv", ".jsonl", ".parquet")  # --out formats
KNOWN = ("a .csv, .tsv, .jsonl, .json or .parquet table, or a .txt file (or one with no "
         "suffix) of one text per line")
LABEL, SCORE = "predicted_label", "predicted_score"  # names no training column is likely to use
TSV_BREAK = re.compile(r"[\t\n\r]")  # what a .tsv value cannot hold (it has no quoting)
# compressed files, by their first bytes: read as they are, or refused with what to do
OPENERS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")
MAGIC = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"),
         (b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd"))


def is_table(path: str) -> bool:
    return input_format(path) != "txt"


def input_format(path: str) -> str:
    """csv, tsv, jsonl, json, parquet or txt, from the suffix (a .gz, .bz2 or .xz after it is
    looked through); any other suffix is refused rather than read as lines of text."""
    name = Path(path)
    suffix = name.suffix.lower()
    if suffix in COMPRESSED_SUFFIXES:
        suffix = Path(name.stem).suffix.lower()
    if suffix not in READ:
        fail(f"--file {path}: cannot read {suffix} files: pass {KNOWN}")
    return READ[suffix]


def read_rows(path: str, text_column: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, texts): every row of the file, each with every column of the file (None where a
    row has no value), and its text ('' where it has none)."""
    kind = input_format(path)
    try:
        with open(path, "rb") as raw:  # sniffed with peek: a pipe (<(zcat x)) loses no byte
            packed = _compression(raw.peek(10)[:10])
            if packed and (kind == "parquet" or packed not in OPENERS):
                fail(f"--file {path} is {packed}-compressed: decompress it (or extract the file "
                     "from the archive) and pass that")
            if kind == "parquet":
                columns, rows = _parquet(path)
            else:
                with _open_text(raw, packed, "" if kind in ("csv", "tsv") else None) as fh:
                    if kind in ("csv", "tsv"):
                        columns, rows = _delimited(fh, kind, path)
                    elif kind == "txt":
                        columns, rows = ["text"], [{"text": line.rstrip("\n")} for line in fh]
                        text_column = "text"
                    else:
                        columns, rows = _json(fh.read(), whole=kind == "json")
    except FileNotFoundError:
        fail(f"--file {path} does not exist: pass {KNOWN}")
    except UnicodeDecodeError:
        fail(f"--file {path} is not UTF-8 text: re-encode it as UTF-8")
    except (OSError, ValueError, EOFError, RecursionError, zlib.error, lzma.LZMAError,
            csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:160]
        fail(f"--file {path} cannot be read ({reason}): check that it is valid {kind}")
    if columns and text_column not in columns:  # no columns at all: the input is empty
        fail(f"--file {path} has no column '{text_column}' (columns: "
             f"{', '.join(map(str, columns))[:200]}): pass --text-column with the right name")
    texts = [_text(row.get(text_column)) for row in rows]
    return rows, texts


def _compression(head: bytes) -> str | None:
    for magic, name in MAGIC:
        if head.startswith(magic) and (name != "bzip2" or head[3:4].isdigit()
                                       and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")):
            return name
    return None


def _open_text(raw: IO[bytes], packed: str | None, newline: str | None) -> IO[str]:
    """The file as text, decompressed if it is, without a leading BOM (utf-8-sig)."""
    stream = OPENERS[packed](raw) if packed else raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline=newline)


def _delimited(fh: IO[str], kind: str, path: str) -> tuple[list[str], list[dict[str, Any]]]:
    """A CSV table (RFC 4180 quoting, a quoted cell may hold commas and line breaks) or a TSV
    table (IANA's: no quoting at all, a tab between values and a line break after each row, so
    a quote in a text stays as written). The first non-empty line is the header and empty lines
    are skipped, as csv does. Refused rather than guessed at: a repeated column name (one's
    values would be lost), a row with more or fewer fields than the header (values would land
    under the wrong column, or under None) and malformed CSV quoting (csv's strict mode)."""
    limit = csv.field_size_limit(2**31 - 1)  # a review longer than 128 KiB is still one cell
    try:
        reader = (csv.reader(fh, strict=True) if kind == "csv" else
                  csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        header: list[str] | None = None
        rows: list[dict[str, Any]] = []
        start = 1  # the line a row starts on (a quoted cell may hold line breaks)
        try:
            for fields in reader:
                line, start = start, reader.line_num + 1
                if not fields:
                    continue
                if header is None:
                    repeated = next((n for i, n in enumerate(fields) if n in fields[:i]), None)
                    if repeated is not None:
                        fail(f"--file {path} has two columns named '{repeated}' (one's values "
                             "would be lost): rename one of them in the header")
                    header = fields
                elif len(fields) != len(header):
                    hint = (' (quote a value that holds a comma in "...")'
                            if kind == "csv" and len(fields) > len(header) else "")
                    fail(f"--file {path} line {line} has {len(fields)} "
                         f"field{'s' if len(fields) > 1 else ''} but the header has "
                         f"{len(header)}: fix that line{hint}")
                else:
                    rows.append(dict(zip(header, fields, strict=True)))
        except csv.Error as exc:
            raise ValueError(f"the row that starts on line {start}: {exc}") from None
    finally:
        csv.field_size_limit(limit)
    return header or [], rows


class _RepeatedKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row = dict(pairs)
    if len(row) < len(pairs):
        repeated = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise _RepeatedKey(f"the key '{repeated}' is repeated in one object")
    return row


def _json(content: str, whole: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """JSON lines (one object per line, empty lines skipped); a .json file may also be one
    array of objects, or one object. Every row gets every key seen, in first-seen order."""
    data: Any = None
    if whole:
        try:
            data = json.loads(content, object_pairs_hook=_object)
        except _RepeatedKey:
            raise
        except ValueError:
            data = None  # not one JSON value: JSON lines
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        bad = next((i for i, row in enumerate(data, 1) if not isinstance(row, dict)), None)
        if bad is not None:
            raise ValueError(f"item {bad} of the array is not a JSON object")
        rows = data
    else:
        rows = []
        for number, line in enumerate(content.split("\n"), 1):
            if not line.strip():
                continue  # no row on an empty line of a JSON-lines file
            try:
                row = json.loads(line, object_pairs_hook=_object)
            except ValueError as exc:
                raise ValueError(f"line {number}: {getattr(exc, 'msg', exc)}") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows.append(row)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if any(len(row) < len(columns) for row in rows):
        rows = [{c: row.get(c) for c in columns} for row in rows]
    return columns, rows


def _parquet(path: str) -> tuple[list[str], list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as exc:  # not all of them are ValueError or OSError
        raise ValueError(str(exc)) from None
    names = table.column_names
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        fail(f"--file {path} has two columns named '{repeated}' (one's values would be lost): "
             "rename one of them")
    return names, table.to_pylist()


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def check_out(path: str, source: str | None) -> None:
    """--out, refused before any work: a table format, a new file, never the input itself."""
    out = Path(path)
    if out.suffix.lower() not in TABLES:
        fail(f"--out {path} must end in .csv, .tsv, .jsonl or .parquet: pass a file name with "
             "one")
    if out.exists():
        fail(f"--out {path} already exists: pass a new file name (predictions never replace a "
             "file)")
    if source and out.resolve() == Path(source).resolve():
        fail(f"--out {path} is the --file being read: pass another file name")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        fail(f"cannot write --out {path} (its folder is missing or read-only): pass a path in "
             "a writable folder")


def check_rows(path: str, source: str | None, rows: list[dict[str, Any]], names: list[str]) -> None:
    """Before any prediction: no input column has an output column's name (it would be
    overwritten), and the rows, with their predictions, can be written as --out's format (the
    output is written once, to nowhere, with placeholder probabilities)."""
    outputs = {LABEL, SCORE, *(f"score_{name}" for name in names)}
    clash = [c for c in dict.fromkeys(k for row in rows for k in row) if c in outputs]
    if clash:
        fail(f"--file {source} already has column{'s' if len(clash) > 1 else ''} "
             f"{', '.join(clash)}, which the predictions would overwrite: rename "
             f"{'them' if len(clash) > 1 else 'it'} in the input")
    placeholder = [1.0 / len(names)] * len(names)
    _serialise(path, output_rows(rows, [placeholder] * len(rows), names),
               io.BufferedWriter(_Discard()))


def output_rows(rows: list[dict[str, Any]], probs: list[list[float] | None],
                names: list[str]) -> list[dict[str, Any]]:
    """Each input row, with every input column (None where the row has none), then the
    predicted label, its probability and every class's."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = []
    for row, p in zip(rows, probs, strict=True):
        best = None if p is None else max(range(len(p)), key=p.__getitem__)
        out.append({**{c: row.get(c) for c in columns}, LABEL: None if p is None else names[best],
                    SCORE: None if p is None else p[best],
                    **{f"score_{name}": None if p is None else v
                       for name, v in zip(names, p or [None] * len(names), strict=True)}})
    return out


def write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    """The rows as a table, written to a temporary file and renamed into place."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            _serialise(path, rows, fh)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        fail(f"writing --out {path} failed ({exc.strerror or exc}): free disk space or pass "
             "another path")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Discard(io.RawIOBase):
    """A binary file that keeps nothing: writing to it finds what writing the file would."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _serialise(path: str, rows: list[dict[str, Any]], fh: IO[bytes]) -> None:
    """The rows in --out's format, with every row's columns (first seen first) in every format;
    what the format cannot hold is one line naming the column."""
    suffix = Path(path).suffix.lower()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = _arrow_table(path, rows, columns)
        try:
            pq.write_table(table, fh)
        except OSError:
            raise
        except pa.ArrowException as exc:  # a type parquet has no room for (an empty struct)
            fail(f"--out {path} cannot be written as .parquet ({str(exc).splitlines()[0][:160]})"
                 ": pass a .csv or .jsonl --out")
        return
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="" if suffix != ".jsonl" else "\n")
    try:
        if suffix == ".jsonl":
            for row in rows:
                text.write(strict_json({c: row.get(c) for c in columns}, default=str) + "\n")
        elif suffix == ".csv":
            writer = csv.writer(text)
            writer.writerow(columns)
            writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
        else:  # .tsv, IANA's: no quoting, so no value may hold a tab or a line break
            lines = itertools.chain([columns], ([row.get(c) for c in columns] for row in rows))
            for number, values in enumerate(lines):
                cells = ["" if v is None else str(_cell(v)) for v in values]
                bad = next((c for c, cell in zip(columns, cells, strict=True)
                            if TSV_BREAK.search(cell)), None)
                if bad is not None:
                    fail(f"--out {path} cannot hold {f'row {number}' if number else 'the header'}"
                         f"'s column '{bad}' (a tab or line break, which .tsv has no way to "
                         "write): pass a .csv, .jsonl or .parquet --out")
                text.write("\t".join(cells) + "\n")
        text.flush()
    except UnicodeEncodeError:
        column = next((c for c in columns if not _encodes(c)), None) or next(
            (c for row in rows for c in columns if not _encodes(row.get(c))), "?")
        fail(f"--out {path} cannot hold column '{column}' (a value that is not valid Unicode, "
             "a lone surrogate): fix that value in the input, or pass a .jsonl --out")
    finally:
        text.detach()


def _cell(value: Any) -> Any:
    """A CSV cell: nested values (JSON objects, lists) as JSON, the rest as csv writes them."""
    return strict_json(value, default=str) if isinstance(value, (dict, list)) else value


def _encodes(value: Any) -> bool:
    try:
        str(_cell(value)).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _arrow_table(path: str, rows: list[dict[str, Any]], columns: list[str]) -> Any:
    """A pyarrow table, built column by column so that a column parquet cannot hold (int and
    str values mixed, an int beyond 64 bits) is refused by name."""
    import pyarrow as pa

    arrays = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        try:
            arrays[column] = pa.array(values)
        except UnicodeEncodeError:
            fail(f"--out {path} cannot hold column '{column}' (a value that is not valid "
                 "Unicode, a lone surrogate): fix that value in the input, or pass a .jsonl "
                 "--out")
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            reason = (f"it mixes {' and '.join(kinds)} values" if len(kinds) > 1 else
                      str(exc).splitlines()[0][:120])
            fail(f"--out {path} cannot hold column '{column}' as .parquet ({reason}): pass a "
                 ".csv or .jsonl --out, or give the column one type in the input")
    return pa.table(arrays)
