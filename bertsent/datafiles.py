"""Data files in: local folders (one file or one complete shard set per split, in one
format, or the aclImdb/ tree) and hub ids read into splits with the data's identity, and the
texts within-task pre-training reads. Which split does what, and the checks a split must pass,
are data.py's."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import datasets
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from bertsent import dataid
from bertsent.errors import fail
from bertsent.hub import hub_answers
from bertsent.labels import is_string
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


def file_names(files: list[str], limit: int = 4) -> str:
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
        fail(f"data folder {folder} holds the {split} split both as {file_names(whole)} and as "
             f"shards ({file_names([f for *_, f in shards])}): keep the single file or the shards, "
             "not both (each row would be read twice)")
    if whole:
        return whole
    totals = sorted({total for _, total, _ in shards})
    if len(totals) > 1:
        fail(f"the {split} shards in data folder {folder} disagree on how many there are "
             f"({file_names([f for *_, f in shards])}: -of-{', -of-'.join(map(str, totals))}): "
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
             f"({file_names([f for *_, f in shards])}: {'; '.join(p for p in problems if p)}): "
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
                fail(f"the {split} split is empty ({file_names(files)} in {data} has no rows): "
                     "give it at least one row")
            if empty:
                fail(f"{file_names(empty)} in {data} has no rows: give every file of the {split} "
                     "split at least one row")
            fail(f"cannot read {file_names(files, 3)} in {data} ({_root_cause(exc)}): check that "
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
        if column.null_count or not is_string(column) or blanks(column):
            fail(f"the {name} split has missing, blank or non-text values in '{text_column}': "
                 "drop those rows")
        parts.append(texts.rename_column(text_column, "text") if text_column != "text"
                     else texts)
    return datasets.concatenate_datasets(parts), list(splits), identity


def blanks(column) -> int:
    """Values that show nothing: empty, spaces, or invisible characters only."""
    visible = pc.replace_substring_regex(column, BLANK, "")
    return pc.sum(pc.equal(pc.utf8_length(visible), 0)).as_py() or 0
