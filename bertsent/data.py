"""Datasets in: local folders and hub ids read into splits, which split does what, the checks
a split must pass, labels as class ids, and the seeded subsets (tokens.py turns texts into
tensors)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from bertsent import dataid
from bertsent.errors import fail
from bertsent.hub import hub_answers
from bertsent.labels import (
    NO_LABEL,
    LabelMap,
    as_written,
    check_column,
    is_integer,
    is_string,
)
from bertsent.runfolder import unwritable
from bertsent.tokens import BLANK

FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json", "json": "json"}
VALIDATION_SPLITS = ("validation", "val")  # names a data set's own validation split goes by
datasets.disable_progress_bars()
# a reader's failure is reported as one line of ours; the library's own log of it is noise
datasets.logging.set_verbosity(datasets.logging.CRITICAL)


# ---------------------------------------------------------------- loading raw text + label
def _looks_like_path(data: str) -> bool:
    return data.startswith((".", "/", "~")) or data.count("/") != 1 or os.sep in data[:1]


def _names(files: list[str], limit: int = 4) -> str:
    """A few file names for a message (the folder is named once, elsewhere in it)."""
    names = [Path(f).name for f in files]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                       else "")


def _split_files(folder: Path, split: str) -> tuple[str, list[str]] | None:
    """The files of one split: `<split>.<ext>`, or one complete shard set
    `<split>-00000-of-00003.<ext>`..`-00002-of-00003`, at the top of the folder only (a backup/
    or old/ folder beside them is never read), in one format; anything else (train.backup.parquet,
    train_old.csv) is not part of the split. A single file beside shards, a missing or repeated
    shard, or shards that disagree on their total would read rows twice or leave some out, so
    they are refused rather than guessed at."""
    pattern = re.compile(rf"^{re.escape(split)}(?:-(\d+)-of-(\d+))?\.({'|'.join(FORMATS)})$")
    by_ext: dict[str, list[tuple[str, re.Match]]] = {}
    for p in sorted(folder.iterdir()):
        match = pattern.match(p.name)
        if match and p.is_file():
            by_ext.setdefault(match.group(3), []).append((str(p), match))
    if len(by_ext) > 1:
        names = ", ".join(Path(files[0][0]).name for files in by_ext.values())
        fail(f"data folder {folder} holds the {split} split in several formats ({names}): "
             "keep one of them")
    for ext, found in by_ext.items():
        return FORMATS[ext], _one_split(folder, split, found)
    return None


def _one_split(folder: Path, split: str, found: list[tuple[str, re.Match]]) -> list[str]:
    """The files of a split in shard order, once each, or a one-line refusal naming them."""
    whole = [f for f, m in found if m.group(1) is None]
    shards = sorted(((int(m.group(1)), int(m.group(2)), f) for f, m in found
                     if m.group(1) is not None))
    if whole and shards:
        fail(f"data folder {folder} holds the {split} split both as {_names(whole)} and as "
             f"shards ({_names([f for *_, f in shards])}): keep the single file or the shards, "
             "not both (each row would be read twice)")
    if whole:
        return whole
    totals = sorted({total for _, total, _ in shards})
    if len(totals) > 1:
        fail(f"the {split} shards in data folder {folder} disagree on how many there are "
             f"({_names([f for *_, f in shards])}: -of-{', -of-'.join(map(str, totals))}): "
             "keep one complete shard set")
    total, indices = totals[0], [i for i, _, _ in shards]
    missing = sorted(set(range(total)) - set(indices))
    twice = sorted({i for i in indices if indices.count(i) > 1})
    beyond = sorted(i for i in set(indices) if i >= total)
    problems = [f"{_count_shards(missing)} of {total} missing" if missing else "",
                f"{_count_shards(twice)} given twice" if twice else "",
                f"{_count_shards(beyond)} beyond {total - 1}" if beyond else ""]
    if any(problems):
        fail(f"the {split} shards in data folder {folder} are not one complete set "
             f"({_names([f for *_, f in shards])}: {'; '.join(p for p in problems if p)}): "
             f"give shards 0..{total - 1} once each, or one file")
    return [f for *_, f in shards]


def _count_shards(indices: list[int], limit: int = 5) -> str:
    """'shard 1' or 'shards 1, 4' for a message."""
    shown = ", ".join(map(str, indices[:limit])) + (f" and {len(indices) - limit} more"
                                                    if len(indices) > limit else "")
    return f"shard{'s' if len(indices) > 1 else ''} {shown}"


def _load_aclimdb(folder: Path) -> tuple[DatasetDict, dict]:
    """The original aclImdb/ layout: {train,test}/{neg,pos}/<id>_<rating>.txt, and its identity
    (one digest per split over every file's name and bytes)."""
    files: dict[str, dict] = {}

    def split(name: str) -> Dataset:
        texts, labels, digest, size = [], [], hashlib.sha256(), 0
        for label, sub in enumerate(("neg", "pos")):
            paths = sorted((folder / name / sub).glob("*.txt"),
                           key=lambda p: (len(p.stem), p.stem))
            for path in paths:
                raw = path.read_bytes()
                digest.update(f"{sub}/{path.name}\0".encode() + raw)
                size += len(raw)
                try:
                    texts.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    fail(f"{path} is not UTF-8 text: re-encode the file as UTF-8")
                labels.append(label)
        files[f"{name}/"] = {"bytes": size, "sha256": digest.hexdigest(), "files": len(texts)}
        key = hashlib.sha256(f"aclImdb|{digest.hexdigest()}".encode()).hexdigest()[:24]
        ds = Dataset.from_dict({"text": texts, "label": labels})
        return Dataset(ds.data, info=ds.info, split=ds.split, fingerprint=key)

    raw = DatasetDict(train=split("train"), test=split("test"))
    return raw, dataid.folder_identity(folder, files)


def _validation_files(folder: Path, data: str) -> tuple[str, list[str]] | None:
    """The files of the folder's own validation split (validation.* or val.*), if any."""
    found = {name: f for name in VALIDATION_SPLITS if (f := _split_files(folder, name))}
    if len(found) > 1:
        fail(f"data folder {data} has both {' and '.join(f'{n}.*' for n in found)} files: keep "
             "one validation split")
    return next(iter(found.values()), None)


def _root_cause(exc: BaseException) -> str:
    """The first line of the reader's own error, under datasets' generic wrapper."""
    chain: list[BaseException] = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(nxt)
    reasons = [str(e).strip() for e in chain if type(e).__name__ != "DatasetGenerationError"
               and str(e).strip()]
    return reasons[0].splitlines()[0][:200] if reasons else type(exc).__name__


def _csv_header(file: str) -> list[str]:
    """The column names of a CSV file (its first row), to read every column as strings."""
    import csv

    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # the reader itself reports what is wrong with the file


def _csv_options(files: list[str]) -> dict:
    """Every CSV column as the strings written in the file: pandas would turn labels 01 and 1
    into one class and a text column of number-like texts into numbers. An empty field is a
    missing value; "NA" or "null" is what it says."""
    header = _csv_header(files[0])
    if not header or len(set(header)) != len(header):
        return {}  # an empty or odd header: the reader's own error says what is wrong
    return {"features": datasets.Features({c: datasets.Value("string") for c in header}),
            "keep_default_na": False, "na_values": [""]}


def _rows_in(fmt: str, file: str) -> int | None:
    """0 when a readable file holds no rows (a header alone, an empty parquet table, a blank
    JSON-lines file), so that an empty split is not reported as an unreadable one; None when
    that cannot be told (the reader's own error then says what is wrong)."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(file).metadata.num_rows or 0
        text = Path(file).read_text(encoding="utf-8")
        if fmt == "json":
            return 0 if text.strip() in ("", "[]") else None
        return 0 if len([line for line in text.splitlines() if line.strip()]) <= 1 else None
    except Exception:  # noqa: BLE001 - an unreadable file is not an empty one
        return None


# which files each loaded split came from (by fingerprint), to name them in later messages
SOURCES: dict[str, list[str]] = {}


def _read_split(fmt: str, files: list[str], data: str, split: str, key: str,
                cache_dir: str | None) -> Dataset:
    """One split through the datasets reader, its on-disk copy kept under --cache-dir in a
    folder named by the files' digests (`key`): the reader's own cache is keyed by path and
    modification time, so a file replaced in place (cp -p, rsync -a, tar x keep the mtime)
    would give the old rows. Without a usable cache folder the copy lives in a temporary
    folder and the split in memory. The split's fingerprint (which keys the token cache) is
    the content key too."""
    options = _csv_options(files) if fmt == "csv" else {}
    folder = Path(cache_dir).expanduser() / "datasets" / key if cache_dir else None
    with tempfile.TemporaryDirectory(prefix="bertsent-data-") as tmp:
        if folder is None or unwritable(folder) is not None:
            options.update(cache_dir=tmp, keep_in_memory=True)
        else:
            options.update(cache_dir=str(folder))
        try:
            ds = datasets.load_dataset(fmt, data_files={"split": files}, split="split",
                                       **options)
        except Exception as exc:  # noqa: BLE001 - any reader error is the user's file
            empty = [f for f in files if _rows_in(fmt, f) == 0]
            if len(empty) == len(files):
                fail(f"the {split} split is empty ({_names(files)} in {data} has no rows): "
                     "give it at least one row")
            if empty:
                fail(f"{_names(empty)} in {data} has no rows: give every file of the {split} "
                     "split at least one row")
            fail(f"cannot read {_names(files, 3)} in {data} ({_root_cause(exc)}): check that "
                 "it is valid UTF-8 parquet, csv or jsonl")
    ds = Dataset(ds.data, info=ds.info, split=ds.split, fingerprint=f"{key}-{fmt}")
    SOURCES[ds._fingerprint] = files
    return ds


def _load_hub(data: str) -> tuple[DatasetDict, dict]:
    """A hub dataset and its identity (id, and the revision its cache folder is named by);
    when the hub does not answer: the local cache only, and a quick error."""
    hub_answers()
    try:
        loaded = datasets.load_dataset(data)
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        fail(f"cannot load dataset '{data}' from the Hugging Face hub "
             f"({type(exc).__name__}): pass a local --data folder such as ../shared/data/imdb")
    return loaded, dataid.hub_identity(data, _hub_revision(loaded))


def _hub_revision(loaded) -> str | None:
    """The commit a hub dataset was prepared from: datasets names its cache folder by it."""
    try:
        first = next(iter(loaded.values())) if isinstance(loaded, DatasetDict) else loaded
        return Path(first.cache_files[0]["filename"]).parent.name or None
    except (AttributeError, IndexError, KeyError, StopIteration):
        return None


def _local_splits(path: Path, data: str, found: dict[str, tuple[str, list[str]]],
                  cache_dir: str | None, made_with: tuple[dict | None, str] = (None, "")
                  ) -> tuple[dict[str, Dataset], dict]:
    """Each found split read by content (the digests of its files), and the folder's
    identity over every file read, checked against `made_with` before any file is parsed."""
    digests = {os.path.relpath(f, path): dataid.file_digest(f)
               for _, files in found.values() for f in files}
    identity = dataid.folder_identity(path, digests)
    dataid.check_same(*made_with, now=identity)
    splits = {s: _read_split(fmt, files, data, s, dataid.content_key(
        identity, [os.path.relpath(f, path) for f in files]), cache_dir)
        for s, (fmt, files) in found.items()}
    return splits, identity


def load_raw(data: str, cache_dir: str | None = None) -> DatasetDict:
    """A DatasetDict with 'train', and 'test' and/or 'validation', from a hub id or a local
    folder."""
    return read_data(data, cache_dir)[0]


def read_data(data: str, cache_dir: str | None = None,
              made_with: tuple[dict | None, str] = (None, "")) -> tuple[DatasetDict, dict]:
    """load_raw's splits, and the data's identity (dataid.py): what a run records. With
    `made_with` (an identity, and whose it is: "the checkpoint"), other content is refused in
    one line that names the file."""
    path = Path(data).expanduser()
    if path.is_dir():
        for root in (path, path / "aclImdb"):
            if (root / "train" / "pos").is_dir() and (root / "test" / "pos").is_dir():
                raw, identity = _load_aclimdb(root)
                dataid.check_same(*made_with, now=identity)
                return raw, identity
        found = {s: _split_files(path, s) for s in ("train", "test")}
        found["validation"] = _validation_files(path, data)
        missing = [s for s in ("train", "test") if found[s] is None]
        if "train" in missing or (missing and found["validation"] is None):
            fail(f"data folder {data} has no {' or '.join(missing)} file: add "
                 f"{missing[0]}.parquet (or .csv/.jsonl)"
                 + (", a validation file" if missing[0] == "test" else "")
                 + ", or an aclImdb/ train/test tree")
        fmts = {f[0] for f in found.values() if f}
        if len(fmts) > 1:
            fail(f"data folder {data} mixes file formats {sorted(fmts)}: use one format")
        # each split on its own: splits with other columns are then told apart by check_split
        splits, identity = _local_splits(path, data, {s: f for s, f in found.items() if f},
                                         cache_dir, made_with)
        return DatasetDict(splits), identity
    if path.exists():
        fail(f"--data {data} is a file: pass the folder that holds the train/test files")
    if _looks_like_path(data):
        fail(f"data path {data} does not exist: pass a folder with train/test files "
             "(e.g. ../shared/data/imdb) or a hub dataset id")
    loaded, identity = _load_hub(data)
    dataid.check_same(*made_with, now=identity)
    valid = next((s for s in VALIDATION_SPLITS if isinstance(loaded, DatasetDict)
                  and s in loaded), None)
    if not isinstance(loaded, DatasetDict) or "train" not in loaded or (
            "test" not in loaded and valid is None):
        fail(f"dataset '{data}' has no train and test (or validation) splits: pass one that has "
             "them")
    splits = {"train": loaded["train"]}
    splits.update({"test": loaded["test"]} if "test" in loaded else {})
    splits.update({"validation": loaded[valid]} if valid else {})
    return DatasetDict(splits), identity


UNLABELLED_SPLITS = ("unsup", "unlabelled", "unlabeled")  # IMDb's 50,000 extra reviews


def pretraining_texts(data: str, text_column: str, cache_dir: str | None = None,
                      made_with: tuple[dict | None, str] = (None, "")
                      ) -> tuple[Dataset, list[str], dict]:
    """(texts, the splits they come from, the data's identity) for within-task pre-training:
    the train split and an unlabelled split when the data has one (IMDb's `unsup`), never
    validation or test texts. Their labels are not read."""
    path = Path(data).expanduser()
    names = ("train", *UNLABELLED_SPLITS)
    if path.is_dir():
        found = {s: f for s in names if (f := _split_files(path, s))}
        splits, identity = _local_splits(path, data, found, cache_dir, made_with)
    elif path.exists():
        fail(f"--data {data} is a file: pass the folder that holds the train (and unsup) files")
    elif _looks_like_path(data):
        fail(f"data path {data} does not exist: pass a folder with a train file (and "
             "optionally unsup) or a hub dataset id")
    else:
        loaded, identity = _load_hub(data)
        dataid.check_same(*made_with, now=identity)
        splits = {s: loaded[s] for s in names if s in loaded}
    if "train" not in splits:
        fail(f"{data} has no train split to pre-train on: add train.parquet (or .csv/.jsonl)")
    parts = []
    for name, ds in splits.items():
        if text_column not in ds.column_names:
            fail(f"the {name} split has no column '{text_column}' (columns: "
                 f"{', '.join(ds.column_names)}): pass --text-column with the right name")
        texts = ds.select_columns([text_column])
        column = texts.data.column(text_column)
        if column.null_count or not is_string(column) or _blanks(column):
            fail(f"the {name} split has missing, blank or non-text values in '{text_column}': "
                 "drop those rows")
        parts.append(texts.rename_column(text_column, "text") if text_column != "text"
                     else texts)
    return datasets.concatenate_datasets(parts), list(splits), identity


@dataclass(frozen=True)
class Splits:
    """Which split does what. `validation` (the data's own) selects the model; `test` is
    reported on, and is the validation split itself when the data has no labelled test."""

    train: Dataset
    test: Dataset
    validation: Dataset | None
    test_split: str  # "test", or "validation" when the test split is missing or unlabelled
    note: str = ""  # why, when test_split is not "test"
    identity: dict | None = None  # what the data is (dataid.py), whatever it was called


def is_unlabelled(ds: Dataset, label_column: str) -> bool:
    """A test split without its labels: no label column, or every label -1 (hub datasets)."""
    if label_column not in ds.column_names:
        return True
    labels = as_written(ds.data.column(label_column))  # a CSV's "-1" too
    return len(ds) > 0 and is_integer(labels) and labels.null_count == 0 and \
        pc.all(pc.equal(labels, NO_LABEL)).as_py()


def pick_splits(raw: DatasetDict, data: str, label_column: str) -> Splits:
    """With a labelled test split, the data's validation split (if any) selects the model;
    without one, the validation split is what the run reports on (and model selection uses
    reviews carved from train, never the reported data)."""
    train, test, valid = raw["train"], raw.get("test"), raw.get("validation")
    if test is not None and (label_column not in train.column_names  # check_split says so
                             or not is_unlabelled(test, label_column)):
        return Splits(train, test, valid, "test")
    if valid is None:
        fail(f"the test split of {data} has no labels (no '{label_column}' column, or all "
             f"{NO_LABEL}): add labelled test data or a validation split")
    why = "has no labels" if test is not None else "is missing"
    return Splits(train, valid, None, "validation",
                  note=f"the test split of {data} {why}: reporting on the validation split")


def _json_kinds(column) -> list[str]:
    """What a JSON-lines column that the reader could not give one type holds (its values are
    kept as JSON text: "1", "\\"pos\\"", "true"), for a message that says what is mixed."""
    kinds = {'"': "strings", "t": "booleans", "f": "booleans", "[": "lists", "{": "objects",
             "n": "nulls"}
    storage = pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    firsts = pc.unique(pc.utf8_slice_codeunits(pc.drop_null(storage), 0, 1)).to_pylist()
    return sorted({kinds.get(f, "numbers") for f in firsts})


def check_split(ds: Dataset, name: str, text_column: str, label_column: str) -> Dataset:
    """Fail with one line on missing columns, bad labels or empty texts; return text/label
    (the labels as written in the data, integers when every one is a plain integer, so that a
    CSV's 0/1 are the same classes as parquet's: LabelMap turns them into class ids)."""
    if text_column == label_column:
        fail(f"--text-column and --label-column both name '{text_column}': pass --label-column "
             "with the column that holds the labels")
    for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in ds.column_names:
            fail(f"the {name} split has no column '{column}' (columns: "
                 f"{', '.join(ds.column_names)}): pass {flag} with the right name")
        if isinstance(ds.data.column(column).type, pa.JsonType):
            files = SOURCES.get(ds._fingerprint, [])
            where = f" ({_names(files)})" if files else ""
            fail(f"column '{column}' of the {name} split{where} mixes "
                 f"{' and '.join(_json_kinds(ds.data.column(column)))}: write every value of "
                 "it the same way (all numbers, or all strings in quotes)")
    if len(ds) == 0:
        fail(f"the {name} split is empty: give it at least one row")
    texts = ds.data.column(text_column)
    if texts.null_count:
        fail(f"the {name} split has {texts.null_count} missing texts in '{text_column}': "
             "drop or fill those rows")
    if not is_string(texts):
        fail(f"column '{text_column}' holds {texts.type}, not text: pass the text column")
    if empty := _blanks(texts):
        fail(f"the {name} split has {empty} empty texts (nothing but spaces or invisible "
             "characters): drop those rows")
    labels = ds.data.column(label_column)
    if pa.types.is_dictionary(labels.type):  # pandas categoricals: their values
        labels = labels.cast(labels.type.value_type)
    check_column(labels, name, label_column)
    if is_string(labels) and (blank := _blanks(labels)):
        fail(f"the {name} split has {blank} blank labels in '{label_column}' (empty, or nothing "
             "but spaces or invisible characters): drop those rows")
    ds = ds.remove_columns([c for c in ds.column_names if c not in (text_column, label_column)])
    if label_column == "text":  # both at once: one by one, the names would collide
        ds = ds.rename_columns({text_column: "text", label_column: "label"})
    else:
        if text_column != "text":
            ds = ds.rename_column(text_column, "text")
        if label_column != "label":
            ds = ds.rename_column(label_column, "label")
    numbers = as_written(labels)
    if numbers is not labels:
        key = hashlib.sha256(f"integer labels|{ds._fingerprint}".encode()).hexdigest()[:24]
        ds = ds.remove_columns("label").add_column("label", numbers, new_fingerprint=key)
    return ds


def _blanks(column) -> int:
    """Values that show nothing: empty, spaces, or invisible characters only."""
    visible = pc.replace_substring_regex(column, BLANK, "")
    return pc.sum(pc.equal(pc.utf8_length(visible), 0)).as_py() or 0


def apply_labels(ds: Dataset, labels: LabelMap, name: str, known_by: str = "the train split"
                 ) -> Dataset:
    """The split with class ids in 'label'. Integer ids stay as they are (same fingerprint,
    same token cache); mapped labels are replaced, under a fingerprint of the mapping."""
    ids = labels.encode(ds.data.column("label"), name, known_by)
    if labels.by_id:
        return ds
    key = hashlib.sha256(f"labels|{ds._fingerprint}|{json.dumps(labels.names)}".encode())
    return ds.remove_columns("label").add_column("label", ids,
                                                 new_fingerprint=key.hexdigest()[:24])


def labelled_splits(data: str, text_column: str, label_column: str,
                    given: list[str] | None = None, num_labels: int | None = None,
                    saved: dict | None = None, cache_dir: str | None = None,
                    made_with: tuple[dict | None, str] = (None, "")
                    ) -> tuple[Splits, LabelMap]:
    """Read the data, decide which split does what, check every split, and map its labels to
    class ids: the splits ready to subset and tokenise, and the class map.

    The classes come from the whole train split (not a --train-samples subset, so they do not
    change with it). A resumed run passes its checkpoint's map (`saved`), which is taken
    exactly as it was; the data is only checked to still map onto it, after its files are
    checked to be the ones it was made with (`made_with`: the identity, and whose it is).
    """
    raw, identity = read_data(data, cache_dir, made_with)
    splits = pick_splits(raw, data, label_column)
    train = check_split(splits.train, "train", text_column, label_column)
    labels = LabelMap(names=tuple(saved["names"]), by_id=bool(saved["by_id"])) if saved else \
        LabelMap.from_column(train.data.column("label"), given, num_labels)

    def ready(ds: Dataset, name: str) -> Dataset:
        return apply_labels(check_split(ds, name, text_column, label_column), labels, name)

    valid = splits.validation
    return Splits(apply_labels(train, labels, "train"), ready(splits.test, splits.test_split),
                  ready(valid, "validation") if valid is not None else None,
                  splits.test_split, splits.note, identity), labels


# ---------------------------------------------------------------- seeded subsets
@dataclass(frozen=True)
class SubsetIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def subset_indices(n_train: int, n_test: int, train_samples: int | None, val_samples: int,
                   test_samples: int | None, seed: int, n_val: int | None = None
                   ) -> SubsetIndices:
    """Shuffle with the seed, carve validation off the front of train, then take the subsets.

    Validation comes first so that it does not change when --train-samples does. With the
    data's own validation split (n_val rows), validation is drawn from it instead (all of it
    when it is smaller than val_samples) and train is not carved.
    """
    perm = np.random.default_rng(seed).permutation(n_train)
    if n_val is not None:
        if train_samples is not None and train_samples > n_train:
            fail(f"--train-samples {train_samples} is larger than the {n_train} training rows: "
                 "lower it or omit it to use all")
        val = np.random.default_rng(seed + 2).permutation(n_val)[:val_samples]
        train = perm[:train_samples] if train_samples is not None else perm
        return SubsetIndices(train=train, val=val, test=test_subset(n_test, test_samples, seed))
    if val_samples >= n_train:
        fail(f"--val-samples {val_samples} leaves no training data from {n_train} rows: "
             "lower --val-samples")
    val, rest = perm[:val_samples], perm[val_samples:]
    if train_samples is not None and train_samples > len(rest):
        fail(f"--train-samples {train_samples} is larger than the {len(rest)} training rows "
             f"left after --val-samples {val_samples}: lower it or omit it to use all")
    train = rest[:train_samples] if train_samples is not None else rest
    return SubsetIndices(train=train, val=val, test=test_subset(n_test, test_samples, seed))


def test_subset(n_test: int, samples: int | None, seed: int, flag: str = "--test-samples"
                ) -> np.ndarray:
    """The shuffled test reviews a run reports on (all of them, in order, by default)."""
    if samples is None:
        return np.arange(n_test)
    if samples > n_test:
        fail(f"{flag} {samples} is larger than the test split ({n_test} rows): lower it or "
             "omit it to use all")
    return np.random.default_rng(seed + 1).permutation(n_test)[:samples]
