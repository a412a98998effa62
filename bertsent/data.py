"""Datasets in: which split does what, the checks a split must pass, labels as class ids, and
the seeded subsets (datafiles.py reads the files; tokens.py turns texts into tensors)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from bertsent.datafiles import SOURCES, blanks, file_names, read_data
from bertsent.errors import fail
from bertsent.labels import (
    NO_LABEL,
    LabelMap,
    as_written,
    check_column,
    is_integer,
    is_string,
    look_alike_note,
)


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


def overlap_note(splits: Splits) -> str | None:
    """A note when reported reviews also stand, word for word, in the train split (IMDb has 123
    of 25,000): their scores are not those of unseen text, which a user should know."""
    def texts(ds: Dataset):  # the rows the dataset shows (its selection), not its whole table
        return ds.with_format("arrow")["text"].cast(pa.large_string())

    seen = pc.unique(texts(splits.train))
    shared = int(pc.sum(pc.is_in(texts(splits.test), value_set=seen)).as_py() or 0)
    if not shared:
        return None
    return (f"note: {shared:,} of the {len(splits.test):,} {splits.test_split} reviews also "
            "stand word for word in the train split: a score on them is not a score on unseen "
            "text")


def start_notes(splits: Splits, labels: LabelMap, labels_given: bool) -> list[str]:
    """What a new run notes about its data before training: look-alike labels (unless --labels
    listed the classes on purpose) and reported reviews that also stand in train."""
    notes = [overlap_note(splits)]
    if not labels_given:
        notes.insert(0, look_alike_note(labels))
    return [note for note in notes if note]


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
            where = f" ({file_names(files)})" if files else ""
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
    if empty := blanks(texts):
        fail(f"the {name} split has {empty} empty texts (nothing but spaces or invisible "
             "characters): drop those rows")
    labels = ds.data.column(label_column)
    if pa.types.is_dictionary(labels.type):  # pandas categoricals: their values
        labels = labels.cast(labels.type.value_type)
    check_column(labels, name, label_column)
    if is_string(labels) and (blank := blanks(labels)):
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
