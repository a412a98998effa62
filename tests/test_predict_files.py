"""A user's file comes back whole: `predict --file X --out Y` keeps every row and every column
of X in every output format, refuses in one line (before any prediction) what it cannot read or
write whole, and reads every text format the same way (a leading BOM dropped, compressed files
read as they are); `curves --out` never replaces a file."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from bertsent import predict, train
from bertsent.curves import main as curves_main
from bertsent.errors import UserError
from bertsent.export import load_exported
from bertsent.predictions import output_rows, read_rows, write_rows

BOM = "\ufeff"


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_model_dir, tiny_data_dir) -> tuple[str, list[str]]:
    """(folder, class names) of a model exported by a seconds-long training run."""
    root = tmp_path_factory.mktemp("predict-files")
    assert train.main(["--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
                       "--train-samples", "16", "--val-samples", "8", "--test-samples", "8",
                       "--max-length", "32", "--precision", "fp32", "--device", "cpu",
                       "--checkpoint-dir", str(root / "ckpt"), "--runs-dir", str(root / "runs"),
                       "--cache-dir", str(root / "cache"), "--run-name", "m"]) == 0
    best = root / "ckpt" / "m" / "best"
    return str(best), load_exported(str(best), torch.device("cpu"), None).names


def run_predict(model, *args: str) -> int:
    return predict.main(["--model", model[0], "--device", "cpu", *map(str, args)])


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(f in err[0] for f in fragments), err
    return err[0]


def read_back(path: Path) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a written file, each format read by its own reader (no pandas guess)."""
    suffix = path.suffix
    if suffix == ".parquet":
        table = pq.read_table(path)
        return table.column_names, table.to_pylist()
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return list(rows[0]), rows
    with open(path, encoding="utf-8", newline="") as fh:
        reader = (csv.reader(fh) if suffix == ".csv" else
                  csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        header, *body = list(reader)
    return header, [dict(zip(header, fields, strict=True)) for fields in body]


@pytest.fixture
def no_predictions(monkeypatch):
    """Any prediction computed fails the test: refusals must come before the work."""
    def refuse(*args, **kwargs):
        raise AssertionError("a prediction was computed before the refusal")

    monkeypatch.setattr(predict, "predict_proba", refuse)


def refused(path: Path, text_column: str = "text") -> str:
    with pytest.raises(UserError) as caught:
        read_rows(str(path), text_column)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- 1. rows with other keys
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_output_format_keeps_the_union_of_all_rows_columns(model, tmp_path, suffix):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great fun"}\n{"text": "awful", "id": 7}\n'
                      '{"note": "late", "text": "dull", "id": 8}\n', encoding="utf-8")
    out = tmp_path / f"out{suffix}"
    assert run_predict(model, "--file", source, "--out", out) == 0
    columns, rows = read_back(out)
    scores = [f"score_{name}" for name in model[1]]
    assert columns == ["text", "id", "note", "predicted_label", "predicted_score", *scores]
    empty = "" if suffix in (".csv", ".tsv") else None  # a missing value: empty cell, or null
    as_written = str if suffix in (".csv", ".tsv") else int
    assert [r["text"] for r in rows] == ["great fun", "awful", "dull"]
    assert [r["id"] for r in rows] == [empty, as_written(7), as_written(8)]
    assert [r["note"] for r in rows] == [empty, empty, "late"]
    assert all(r["predicted_label"] in model[1] for r in rows)


# ---------------------------------------------------------------- 2. output names taken
def test_input_columns_with_output_names_are_refused_before_predicting(model, tmp_path, capsys,
                                                                       no_predictions):
    source = tmp_path / "in.csv"
    taken = f"score_{model[1][1]}"
    source.write_text(f"text,predicted_label,{taken},score_other\ngreat,x,0.5,1\n")
    out = tmp_path / "out.csv"
    assert run_predict(model, "--file", source, "--out", out) == 2
    one_line_error(capsys, f"already has columns predicted_label, {taken},", "rename them")
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_output_names_in_the_input_are_fine_without_out(model, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text,predicted_label\ngreat fun,x\n")
    assert run_predict(model, "--file", source) == 0  # printed: no column is written


# ---------------------------------------------------------------- 3. malformed tables
def test_a_repeated_csv_header_name_is_refused(model, tmp_path, capsys, no_predictions):
    source = tmp_path / "in.csv"
    source.write_text("text,id,id\ngreat,1,2\n")
    assert run_predict(model, "--file", source, "--out", tmp_path / "out.csv") == 2
    one_line_error(capsys, "two columns named 'id'", "rename one of them")


@pytest.mark.parametrize("body, line, fields", [
    ("text,id\ngreat,1\nawful, dull,2\n", 3, 3),  # an unquoted comma: one field too many
    ('text,id\n"a\nquoted",1\nshort\n', 4, 1),  # line numbers count a cell's line breaks
    ("text\tid\ngreat\t1\tx\n", 2, 3),
    ("text\tid\n\ngreat\n", 3, 1),
])
def test_a_row_with_more_or_fewer_fields_than_the_header_is_refused(tmp_path, body, line,
                                                                    fields):
    source = tmp_path / ("in.tsv" if "\t" in body else "in.csv")
    source.write_text(body)
    message = refused(source)
    assert f"line {line} has {fields} field" in message and "fix that line" in message


def test_blank_lines_crlf_and_quoted_line_breaks_keep_every_value(tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b'text,id\r\n\r\n"one, with\r\nbreak",1\r\n"",2\r\n" ""q"" ",3\r\n')
    rows, texts = read_rows(str(source), "text")
    assert texts == ["one, with\r\nbreak", "", ' "q" ']
    assert [r["id"] for r in rows] == ["1", "2", "3"]


@pytest.mark.parametrize("name, body, fragment", [
    ("header_only.csv", "text,label\n", None),  # no rows: predict says the input is empty
    ("empty_name.csv", ",text\n0,great\n", None),  # pandas' index column: kept, named ''
    ("numeric.csv", "1,2\ngreat,x\n", "no column 'text' (columns: 1, 2)"),
    ("two_empty_names.csv", ",text,\n0,great,\n", "two columns named ''"),
    ("bad_quote.csv", 'text,id\n"great" fun,1\n', "the row that starts on line 2"),
    ("unclosed.csv", 'text,id\n"great,1\nawful,2\n', "unexpected end of data"),
    ("repeated_key.jsonl", '{"text": "a", "text": "b"}\n', "the key 'text' is repeated"),
    ("not_object.jsonl", '{"text": "a"}\n[1]\n', "line 2 is not a JSON object"),
    ("broken.jsonl", '{"text": "a"}\n{"text": x}\n', "line 2: Expecting value"),
    ("deep.jsonl", "[" * 100_000 + "\n", "cannot be read"),
    ("array.json", '[\n {"text": "a"},\n {"text": "b", "id": 2}\n]\n', None),
    ("numbers.json", "[1, 2]", "item 1 of the array is not a JSON object"),
    ("latin1.csv", "text\ncaf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    ("utf16.txt", "great".encode("utf-16"), "is not UTF-8 text"),
    ("sheet.xlsx", b"PK\x03\x04", "cannot read .xlsx files: pass a .csv, .tsv"),
    ("notes.md", "great\n", "cannot read .md files"),
    ("zipped.csv", b"PK\x03\x04rest", "is zip-compressed: decompress it"),
    ("packed.parquet.gz", gzip.compress(b"PAR1"), "is gzip-compressed: decompress it"),
    ("cut.csv.gz", gzip.compress(b"text\ngreat\n" * 50)[:-20], "cannot be read"),
    ("garbage.parquet", b"PAR1 not really PAR1", "cannot be read"),
])
def test_odd_files_are_read_whole_or_refused_in_one_line(tmp_path, name, body, fragment):
    source = tmp_path / name
    source.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    if fragment is None:
        rows, texts = read_rows(str(source), "text")
        assert all(set(row) == set(rows[0]) for row in rows)
    else:
        assert fragment in refused(source)


# ---------------------------------------------------------------- 4. formats by suffix
def test_tsv_is_a_table_without_quoting_and_an_out_format(model, tmp_path):
    source = tmp_path / "in.TSV"  # any case
    source.write_text('text\tid\n"great" fun, really\t1\nawful\t2\n')
    out = tmp_path / "out.tsv"
    assert run_predict(model, "--file", source, "--out", out) == 0
    columns, rows = read_back(out)
    assert columns[:2] == ["text", "id"]
    assert [(r["text"], r["id"]) for r in rows] == [('"great" fun, really', "1"), ("awful", "2")]


def test_a_value_tsv_cannot_hold_is_refused_before_predicting(model, tmp_path, capsys,
                                                              no_predictions):
    source = tmp_path / "in.csv"
    source.write_text('text,id\ngreat,1\n"two\nlines",2\n')
    assert run_predict(model, "--file", source, "--out", tmp_path / "out.tsv") == 2
    one_line_error(capsys, "cannot hold row 2's column 'text'", "pass a .csv, .jsonl or .parquet")


@pytest.mark.parametrize("name", ["in.txt", "in", "IN.TXT"])
def test_txt_and_no_suffix_are_one_text_per_line(tmp_path, name):
    source = tmp_path / name
    source.write_bytes(b"great, fun\r\n\r\nawful\tdull\n")
    rows, texts = read_rows(str(source), "review")  # a text file has no columns to name
    assert texts == ["great, fun", "", "awful\tdull"] and list(rows[0]) == ["text"]


def test_an_unknown_suffix_is_refused_before_the_model_loads(tmp_path, capsys):
    source = tmp_path / "reviews.xlsx"
    source.write_bytes(b"PK\x03\x04")
    assert predict.main(["--model", str(tmp_path / "no-model"), "--file", str(source)]) == 2
    one_line_error(capsys, "cannot read .xlsx files: pass a .csv, .tsv, .jsonl, .json or .parquet "
                   "table, or a .txt file")


@pytest.mark.parametrize("name, pack", [
    ("in.csv.gz", gzip.compress), ("in.csv", gzip.compress),  # gzip bytes without .gz
    ("in.CSV.GZ", gzip.compress), ("in.jsonl.bz2", bz2.compress), ("in.txt.xz", lzma.compress)])
def test_compressed_files_are_read_as_they_are(model, tmp_path, name, pack):
    plain = ('{"text": "great fun", "id": 1}\n{"text": "awful", "id": 2}\n' if "jsonl" in name
             else "great fun\nawful\n" if "txt" in name else "text,id\ngreat fun,1\nawful,2\n")
    source = tmp_path / name
    source.write_bytes(pack(plain.encode("utf-8")))
    out = tmp_path / "out.csv"
    assert run_predict(model, "--file", source, "--out", out) == 0
    assert [r["text"] for r in read_back(out)[1]] == ["great fun", "awful"]


# ---------------------------------------------------------------- 5. what parquet cannot hold
def test_a_mixed_type_column_is_refused_before_predicting(model, tmp_path, capsys,
                                                          no_predictions):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great", "id": 1}\n{"text": "awful", "id": "a"}\n')
    out = tmp_path / "out.parquet"
    assert run_predict(model, "--file", source, "--out", out) == 2
    one_line_error(capsys, "cannot hold column 'id' as .parquet (it mixes int and str values)",
                   "pass a .csv or .jsonl --out")
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_the_same_mixed_column_is_written_as_csv_and_jsonl(model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "great", "id": 1}\n{"text": "awful", "id": "a"}\n')
    for suffix in (".csv", ".jsonl"):
        out = tmp_path / f"out{suffix}"
        assert run_predict(model, "--file", source, "--out", out) == 0
        assert [str(r["id"]) for r in read_back(out)[1]] == ["1", "a"]


@pytest.mark.parametrize("rows, fragment", [
    ([{"text": "a", "x": {}}], "cannot be written as .parquet (Cannot write struct type"),
    ([{"text": "a", "n": 2**70}], "cannot hold column 'n' as .parquet"),
    ([{"text": "a", "note": "\ud800"}], "column 'note' (a value that is not valid Unicode"),
])
def test_any_pyarrow_error_at_write_time_is_one_line_and_leaves_nothing(tmp_path, rows,
                                                                         fragment):
    out = tmp_path / "out.parquet"
    with pytest.raises(UserError) as caught:
        write_rows(str(out), output_rows(rows, [[0.4, 0.6]], ["bad", "good"]))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 6. a BOM, everywhere
@pytest.mark.parametrize("name, body", [
    ("in.csv", "text,id\ngreat fun,1\n"), ("in.tsv", "text\tid\ngreat fun\t1\n"),
    ("in.jsonl", '{"text": "great fun", "id": 1}\n'), ("in.json", '[{"text": "great fun"}]'),
    ("in.txt", "great fun\n"), ("in.csv.gz", "text,id\ngreat fun,1\n")])
def test_a_leading_bom_is_dropped_in_every_text_format(tmp_path, name, body):
    source = tmp_path / name
    data = (BOM + body).encode("utf-8")
    source.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    rows, texts = read_rows(str(source), "text")
    assert texts == ["great fun"] and next(iter(rows[0])) == "text"


def test_a_leading_bom_is_dropped_on_stdin(model, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        (BOM + "great fun\nawful\n").encode("utf-8"))))
    assert run_predict(model, "--json") == 0
    texts = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
    assert texts == ["great fun", "awful"]


# ---------------------------------------------------------------- 7. curves --out
@pytest.mark.parametrize("given, existing", [("old.png", "old.png"), ("old", "old.png")])
def test_curves_never_replace_a_file_and_check_before_reading(tmp_path, capsys, given,
                                                              existing):
    (tmp_path / existing).write_bytes(b"another run's picture")
    code = curves_main([str(tmp_path / "no-such-run"), "--out", str(tmp_path / given)])
    assert code == 2  # the existing file is named, not the missing log folder
    one_line_error(capsys, f"--out {tmp_path / existing} already exists: pass a new file name")
    assert (tmp_path / existing).read_bytes() == b"another run's picture"


@pytest.mark.parametrize("name, body", [("in", b"great fun\nawful\n"),
                                        ("in.csv", gzip.compress(b"text\ngreat fun\nawful\n"))])
def test_a_pipe_is_read_from_its_first_byte(tmp_path, name, body):
    """`--file <(zcat reviews.csv.gz)`: what is sniffed for compression is not lost."""
    read_end, write_end = os.pipe()
    os.write(write_end, body)
    os.close(write_end)
    try:
        fifo = tmp_path / name
        fifo.symlink_to(f"/dev/fd/{read_end}")
        assert read_rows(str(fifo), "text")[1] == ["great fun", "awful"]
    finally:
        os.close(read_end)


@pytest.mark.parametrize("body, what", [("", "the input is empty"),
                                        ("\n  \n\t\n", "all 3 texts are blank")])
def test_an_empty_or_all_blank_file_is_refused_saying_which(model, tmp_path, capsys,
                                                            no_predictions, body, what):
    source = tmp_path / "in.txt"
    source.write_text(body)
    assert run_predict(model, "--file", source) == 2
    one_line_error(capsys, "no texts to predict", what)
