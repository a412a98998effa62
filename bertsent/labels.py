"""Label columns to class ids and back: the one place that decides which value is which class.

Integer labels 0..n-1 are the ids themselves (named negative/positive for two classes, as
IMDb's). Any other column (strings, or integers such as star ratings 1-4 and 7-10) is mapped in
sorted order (numeric order when every value is a number, so 10 follows 9) or in the order the
user lists with --labels; the names are the values' string forms. Pure functions of a pyarrow
column: no dataset, model or file needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bertsent.errors import fail

BINARY_NAMES = ("negative", "positive")
MAX_CLASSES = 1000  # more distinct values than this is a text or id column, not labels


def parse_label_list(value: Any) -> list[str] | None:
    """--labels as 'a,b,c' (CLI or TOML) or a TOML list: the one parse path for both."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")] if value.strip() else []
        if not items:
            return None
    elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        items = [str(v).strip() for v in value]
    else:
        fail(f"--labels must be a comma-separated string or a list of names, got {value!r}")
    if any(not v for v in items):
        fail(f"--labels has an empty name in {value!r}: list each label once, e.g. "
             "--labels negative,positive")
    twice = sorted({v for v in items if items.count(v) > 1})
    if twice:
        fail(f"--labels lists {', '.join(twice)} more than once: give each label once")
    if len(items) < 2:
        fail(f"--labels needs at least two labels, got {items}: list every class")
    return items


def numeric_values(names: list[str] | tuple[str, ...]) -> np.ndarray | None:
    """The names as numbers when every one is a finite number (ordinal labels), else None."""
    try:
        values = np.array([float(n) for n in names], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if np.isfinite(values).all() else None


def _ordered(values: list) -> list:
    """Label values in their documented order: numeric when every one is a number (so 10
    follows 9, also for numbers held as strings), else by their string form."""
    numbers = numeric_values([str(v) for v in values])
    if numbers is None:
        return sorted(values, key=str)
    return [v for _, v in sorted(zip(numbers.tolist(), values, strict=True),
                                 key=lambda pair: pair[0])]


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Dictionary-encoded columns (pandas categoricals in parquet) as their plain values."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    column = _plain(column)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def is_integer(column: pa.ChunkedArray | pa.Array) -> bool:
    return pa.types.is_integer(_plain(column).type)


def _show(values: list, limit: int = 5) -> str:
    shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def check_column(column: pa.ChunkedArray | pa.Array, split: str, name: str) -> None:
    """Labels must be present and be integers or strings (floats are ambiguous as classes)."""
    column = _plain(column)
    if column.null_count:
        fail(f"the {split} split has {column.null_count} missing labels in '{name}': drop or "
             "fill those rows")
    if not (pa.types.is_integer(column.type) or pa.types.is_string(column.type)
            or pa.types.is_large_string(column.type)):
        fail(f"column '{name}' holds {column.type} labels: labels must be integers or strings; "
             "convert the column (or pass --label-column with the right name)")


def _distinct(column: pa.ChunkedArray | pa.Array, split: str) -> list:
    values = pc.unique(_plain(column)).to_pylist()
    if len(values) > MAX_CLASSES:
        fail(f"the {split} split has {len(values)} distinct labels: that is not a label column; "
             "pass --label-column with the column that holds the classes")
    return values


@dataclass(frozen=True)
class LabelMap:
    """Class id i is named names[i]. by_id: the column holds the ids (integers 0..n-1);
    otherwise each value is looked up by its string form among the names."""

    names: tuple[str, ...]
    by_id: bool

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @classmethod
    def identity(cls, num_labels: int) -> LabelMap:
        """Integer ids 0..n-1: negative/positive for two classes, else '0', '1', ..."""
        names = BINARY_NAMES if num_labels == 2 else tuple(str(i) for i in range(num_labels))
        return cls(names=tuple(names), by_id=True)

    @classmethod
    def from_column(cls, column: pa.ChunkedArray | pa.Array, given: list[str] | None = None,
                    num_labels: int | None = None, split: str = "train") -> LabelMap:
        """The classes of a training column, in the order given or sorted; num_labels (when the
        user set it) is checked against what the data holds."""
        values = _ordered(_distinct(column, split))
        if given is not None:
            missing = [v for v in values if str(v) not in given]
            if missing:
                fail(f"the {split} split has label{'s' if len(missing) > 1 else ''} "
                     f"{_show(missing)} that --labels does not list ({', '.join(given)}): "
                     f"add {'them' if len(missing) > 1 else 'it'} to --labels")
            if num_labels is not None and num_labels != len(given):
                fail(f"--labels lists {len(given)} labels but --num-labels is {num_labels}: omit "
                     "--num-labels or make them agree")
            return cls(names=tuple(given), by_id=False)
        if is_integer(column) and values:
            lo, hi = min(values), max(values)
            if num_labels is not None and lo >= 0 and hi < num_labels:
                return cls.identity(num_labels)  # the ids, as before (classes may be unseen)
            if num_labels is None and lo >= 0 and (hi <= 1 or len(values) == hi + 1):
                return cls.identity(max(hi + 1, 2))  # 0..n-1; a 0-only or 1-only split is binary
        names = [str(v) for v in values]
        if num_labels is not None and num_labels != len(names):
            fail(f"the {split} split has {len(names)} labels ({_show(values, 10)}) but "
                 f"--num-labels is {num_labels}: omit --num-labels to take the number from the "
                 "data, or pass --labels with every class")
        if len(names) < 2:
            fail(f"the {split} split has only one label ({_show(values)}): a classifier needs "
                 "two or more; pass --labels with every class, e.g. --labels negative,positive")
        return cls(names=tuple(names), by_id=False)

    @classmethod
    def for_model(cls, id2label: dict[int, str], column: pa.ChunkedArray | pa.Array
                  ) -> LabelMap:
        """How another dataset's labels meet a trained model's classes: strings by name;
        integers by name when the model's classes are numbers (ratings), else as ids 0..n-1."""
        names = tuple(str(id2label[i]) for i in range(len(id2label)))
        by_id = is_integer(column) and numeric_values(names) is None
        return cls(names=names, by_id=by_id)

    def encode(self, column: pa.ChunkedArray | pa.Array, split: str,
               known_by: str = "the train split") -> np.ndarray:
        """Class ids (int64) of a column, vectorised; a value that is not one of the classes
        is an error that names it."""
        column = _array(column)
        if self.by_id:
            ids = column.to_numpy(zero_copy_only=False).astype(np.int64)
            bad = (ids < 0) | (ids >= self.num_labels)
            unknown = sorted(set(ids[bad].tolist()))
        else:
            text = pc.cast(column, pa.string()) if pa.types.is_integer(column.type) else column
            found = pc.index_in(text, value_set=pa.array(self.names, pa.string()))
            unknown = _ordered(pc.unique(pc.filter(text, pc.is_null(found))).to_pylist())
            if pa.types.is_integer(column.type):
                unknown = [int(v) for v in unknown]
            ids = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        if unknown:
            known = (f"ids 0..{self.num_labels - 1}: " if self.by_id else "") + \
                ", ".join(self.names[:10]) + (" ..." if self.num_labels > 10 else "")
            fix = "train on data that has them" if known_by.endswith("split") else \
                "score data with the model's labels"
            fail(f"the {split} split has label{'s' if len(unknown) > 1 else ''} "
                 f"{_show(unknown)} that {known_by} does not have ({known}): drop those rows, "
                 f"or {fix}")
        return ids


def class_weights(ids: np.ndarray, num_labels: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights: None for 'none'; for 'balanced', n_samples / (n_classes *
    count), scikit-learn's rule, over the classes present (an absent class gets 0: it has no
    samples to weigh). Balanced weights average 1 over the training samples, so the loss keeps
    its scale."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    counts = np.bincount(ids, minlength=num_labels)
    present = np.flatnonzero(counts)
    weights = np.zeros(num_labels, dtype=np.float64)
    weights[present] = compute_class_weight("balanced", classes=present, y=ids)
    return weights
