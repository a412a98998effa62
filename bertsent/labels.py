"""Label columns to class ids and back: the one place that decides which value is which class.

Integer labels 0..n-1 are the ids themselves (named negative/positive for two classes, as
IMDb's). Any other column (strings, or integers such as star ratings 1-4 and 7-10) is mapped in
sorted order (numeric order when every value is a number, so 10 follows 9) or in the order the
user lists with --labels; the names are the values' string forms. Strings that are all plain
integers (a CSV's 0/1) are those integers. -1 is the datasets marker for "no label": refused unless
--labels lists it as a class. Pure functions of a pyarrow column: no dataset, model or file
needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bertsent.errors import fail

BINARY_NAMES = ("negative", "positive")
MAX_CLASSES = 1000  # more distinct values than this is a text or id column, not labels
NO_LABEL = -1  # what Hugging Face datasets put where a row has no label (hidden test labels)
SHOWN_CHARS = 30  # a value quoted in a message is cut to this many characters
# a string that is an integer written the one way Python writes it: 0, 7, -1, 10 (not 01, +1)
CANONICAL_INTEGER = r"^(0|-?[1-9][0-9]{0,17})$"


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
    return [v for _, _, v in sorted(zip(numbers.tolist(), map(str, values), values,
                                        strict=True), key=lambda t: t[:2])]  # 01 before 1


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


def is_string(column: pa.ChunkedArray | pa.Array) -> bool:
    kind = _plain(column).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _cut(value: str) -> str:
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS - 1] + "…"


def _show(values: list, limit: int = 5) -> str:
    """A few values for a message, each cut short: a text column passed as labels must not
    quote whole reviews."""
    shown = ", ".join(repr(_cut(v)) if isinstance(v, str) else _cut(str(v))
                      for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _list(names: list[str] | tuple[str, ...], limit: int = 6) -> str:
    """Class names as the user writes them (--labels a,b), each cut short, the first few."""
    return ", ".join(_cut(n) for n in names[:limit]) + (" ..." if len(names) > limit else "")


def check_column(column: pa.ChunkedArray | pa.Array, split: str, name: str) -> None:
    """Labels must be present and be integers or strings (floats are ambiguous as classes)."""
    column = _plain(column)
    if column.null_count:
        fail(f"the {split} split has {column.null_count} missing labels in '{name}': drop "
             "those rows")
    if not (pa.types.is_integer(column.type) or is_string(column)):
        fail(f"column '{name}' holds {column.type} labels: labels must be integers or strings; "
             "convert the column (or pass --label-column with the right name)")


def as_written(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """String labels that are all plain integers (-1, 0, 7, 10) as int64, so that a CSV's 0/1
    are IMDb's class ids exactly as parquet's are; any other column (01, +1, 1.0 or ' 1'
    among them: the cast would merge or change values) as it is."""
    if not is_string(column) or column.null_count or not len(column):
        return column
    plain = _plain(column)
    if not pc.all(pc.match_substring_regex(plain, CANONICAL_INTEGER)).as_py():
        return column
    return pc.cast(plain, pa.int64())


def _distinct(column: pa.ChunkedArray | pa.Array, split: str) -> list:
    values = pc.unique(_plain(column)).to_pylist()
    if len(values) > MAX_CLASSES:
        fail(f"the {split} split has {len(values)} distinct labels, more than bertsent's limit "
             f"of {MAX_CLASSES} classes: pass --label-column with the column that holds the "
             "classes")
    return values


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def _no_label_rows(column: pa.ChunkedArray | pa.Array) -> int:
    """Rows labelled -1 (the datasets marker for 'no label') in an integer column."""
    if not is_integer(column):
        return 0
    return int(pc.sum(pc.equal(_plain(column), NO_LABEL)).as_py() or 0)


def _spelling(name: str) -> str:
    """What a label reads as: its number for number-like labels (01, +1, 1.0 -> 1.0), else
    its text without outer spaces and case."""
    text = name.strip()
    try:
        value = float(text)
    except ValueError:
        return text.casefold()
    return repr(value) if math.isfinite(value) else text.casefold()


def look_alike(names: tuple[str, ...]) -> list[list[str]]:
    """Groups of class names that differ only in spaces, case or how a number is written
    (' pos', 'POS', 'pos'; '01', '1', '1.0'): in real data that is almost always one class
    written two ways, yet as written they are separate classes."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_spelling(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def look_alike_note(labels: LabelMap) -> str | None:
    """The start-up note for look-alike classes, or None (ids, or classes that differ)."""
    if labels.by_id:
        return None
    groups = look_alike(labels.names)
    if not groups:
        return None
    shown = "; ".join(", ".join(repr(_cut(n)) for n in group) for group in groups[:3])
    more = f" (and {len(groups) - 3} more groups)" if len(groups) > 3 else ""
    return (f"note: labels that differ only in spaces, case or number format are separate "
            f"classes, as written: {shown}{more}; if each group is one class, make its "
            "labels the same in the data")


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
        """The classes of a training column, in the order given or sorted. A model cannot learn
        a class it never sees, so the split must hold two or more; num_labels (when the user set
        it) is checked against them, never used to invent unseen ones."""
        values = _ordered(_distinct(column, split))
        unlabelled = _no_label_rows(column)
        if unlabelled and (given is None or str(NO_LABEL) not in given):
            example = ",".join(str(v) for v in values) if len(values) <= 10 else "-1,0,1"
            fail(f"the {split} split has {_rows(unlabelled)} labelled {NO_LABEL}, the datasets "
                 f"mark of a row without a label: drop those rows, or, if {NO_LABEL} is a "
                 f"class (a -1/0/1 scale), pass --labels with every class, e.g. "
                 f"--labels {example}")
        if len(values) < 2:
            fail(f"the {split} split has only one label ({_show(values)}): a classifier needs "
                 "two or more classes in its training data; add rows of the other classes")
        if given is not None:
            missing = [v for v in values if str(v) not in given]
            if missing:
                fail(f"the {split} split has label{'s' if len(missing) > 1 else ''} "
                     f"{_show(missing)} that --labels does not list ({_list(given, 10)}): "
                     f"add {'them' if len(missing) > 1 else 'it'} to --labels")
            return cls(names=tuple(given), by_id=False)
        if num_labels is not None and num_labels != len(values):
            fail(f"the {split} split has {len(values)} labels ({_show(values, 10)}) but "
                 f"--num-labels is {num_labels}: omit --num-labels to take the number from the "
                 "data, or pass --labels with every class")
        if is_integer(column) and min(values) == 0 and max(values) == len(values) - 1:
            return cls.identity(len(values))  # 0..n-1: the ids themselves
        return cls(names=tuple(str(v) for v in values), by_id=False)

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
        by_train = known_by.endswith("split")
        unlabelled = 0 if str(NO_LABEL) in self.names else _no_label_rows(column)
        if unlabelled:
            fail(f"the {split} split has {_rows(unlabelled)} labelled {NO_LABEL}, the datasets "
                 "mark of a row without a label: drop those rows"
                 + (f", or, if {NO_LABEL} is a class, train with --labels listing it"
                    if by_train else ""))
        if self.by_id and not pa.types.is_integer(column.type):
            values = _ordered(pc.unique(column).to_pylist())
            fail(f"the {split} split has string labels ({_show(values)}) but {known_by} has "
                 f"integer labels (ids 0..{self.num_labels - 1}): write the labels the same "
                 "way in every split")
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
                if unknown and by_train and numeric_values(self.names) is None:
                    fail(f"the {split} split has integer labels ({_show(unknown)}) but "
                         f"{known_by} has names ({_list(self.names)}): write the labels the "
                         "same way in every split")
            ids = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        if unknown:
            known = (f"ids 0..{self.num_labels - 1}: " if self.by_id else "") + \
                _list(self.names)
            fix = "train on data that has them" if by_train else \
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
