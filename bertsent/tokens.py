"""Texts in, padded tensor batches out: the blank-text rule, truncation, cached tokenisation,
the in-memory encoded dataset, the dynamic-padding collate function and the evaluation loader.

No `datasets` import here: the predict entry point tokenises plain lists of texts with these
same functions and never loads the datasets library.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bertsent.runfolder import unwritable
from bertsent.sampling import EvalBatchSampler

if TYPE_CHECKING:
    from datasets import Dataset

# whitespace and the zero-width characters that render as nothing: a text of only these is empty
BLANK = r"[\s\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}]+"
BLANK_RE = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff]+")


def is_blank(text: str) -> bool:
    return not BLANK_RE.sub("", text)



# ---------------------------------------------------------------- tokenisation
def truncate_ids(ids: list[int], budget: int, strategy: str) -> list[int]:
    """Keep `budget` tokens: the head, the tail, or a quarter head + three quarters tail."""
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget:]
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head):]


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text ([CLS] / [SEP] for BERT)."""
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    raise ValueError("cannot locate the text between the tokenizer's special tokens")


def encode_texts(texts: list[str], tokenizer, max_length: int, truncation: str) -> list[list[int]]:
    """Token ids with special tokens, at most max_length long."""
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if truncation == "head":  # the tokenizer can stop early: much faster on long reviews
        enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=budget)
    else:
        enc = tokenizer(texts, add_special_tokens=False, verbose=False)
    return [prefix + truncate_ids(ids, budget, truncation) + suffix for ids in enc["input_ids"]]


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of what the tokenizer produces (not of its transient truncation/padding state)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec["truncation"] = spec["padding"] = None
        blob = json.dumps(spec, sort_keys=True)
    else:
        blob = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class EncodedDataset(torch.utils.data.Dataset):
    """Token ids and labels held in memory; an item is (index, ids, label). Texts without
    labels (pre-training) get label 0."""

    def __init__(self, input_ids: list[np.ndarray], labels: np.ndarray | None = None):
        self.input_ids = input_ids
        self.labels = np.zeros(len(input_ids), np.int64) if labels is None else \
            np.asarray(labels, dtype=np.int64)
        self.lengths = np.array([len(x) for x in input_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, int]:
        return i, self.input_ids[i], int(self.labels[i])


def tokenize(ds: Dataset, tokenizer, max_length: int, truncation: str,
             cache_dir: str | None) -> EncodedDataset:
    """Tokenise once with datasets.map(batched=True), cached on disk by data, tokenizer and
    max length, so later runs (and the other entry points) reuse it."""
    key = hashlib.sha256(
        f"v1|{ds._fingerprint}|{tokenizer_fingerprint(tokenizer)}|{max_length}|{truncation}"
        .encode()).hexdigest()[:24]
    in_memory: dict = {"keep_in_memory": True}
    kwargs = in_memory  # without a usable cache folder: nothing is written anywhere
    folder = Path(cache_dir).expanduser() if cache_dir else None
    if folder is not None and unwritable(folder) is None:  # an unwritable cache only costs time
        kwargs = {"cache_file_name": str(folder / f"tokens-{key}.arrow")}

    def encode(**kw):
        return ds.map(
            lambda batch: {"input_ids": encode_texts(batch["text"], tokenizer, max_length,
                                                     truncation)},
            batched=True, batch_size=1000, remove_columns=["text"], new_fingerprint=key,
            desc="tokenising", **kw)

    try:
        encoded = encode(**kwargs)
    except OSError:  # the cache folder filled up or turned read-only midway
        encoded = encode(**in_memory)
    ids = encoded.data.column("input_ids")
    arrays = [np.asarray(x, dtype=np.int64) for x in ids.to_pylist()]
    labels = encoded.data.column("label").to_numpy() if "label" in encoded.column_names else None
    return EncodedDataset(arrays, labels)


# ---------------------------------------------------------------- batching
class Collator:
    """Dynamic padding: each batch is padded to its longest review, rounded up to a multiple
    (8 for tensor cores / AMX tiles, 64 under torch.compile so shapes repeat)."""

    def __init__(self, pad_id: int, multiple: int = 8, max_length: int | None = None):
        self.pad_id, self.multiple, self.max_length = pad_id, multiple, max_length

    def __call__(self, items: list[tuple[int, np.ndarray, int]]) -> dict[str, torch.Tensor]:
        longest = max(len(ids) for _, ids, _ in items)
        width = -(-longest // self.multiple) * self.multiple
        if self.max_length is not None:
            width = max(longest, min(width, self.max_length))
        input_ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        for row, (_, ids, _) in enumerate(items):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([label for _, _, label in items], dtype=torch.long),
            "index": torch.tensor([i for i, _, _ in items], dtype=torch.long),
        }


def eval_loader(ds: EncodedDataset, batch_size: int, pad_id: int, max_length: int | None = None,
                num_workers: int = 0, world_size: int = 1, rank: int = 0, multiple: int = 8,
                tokens: int = 0) -> torch.utils.data.DataLoader:
    """Longest reviews first, at most `batch_size` reviews and `tokens` padded tokens a batch
    (0: no budget), each rank its share: the one evaluation loader of train, evaluate and the
    benchmarks."""
    return torch.utils.data.DataLoader(
        ds, batch_sampler=EvalBatchSampler(ds.lengths, batch_size, world_size, rank, tokens,
                                           multiple),
        collate_fn=Collator(pad_id, multiple, max_length), num_workers=num_workers,
        generator=torch.Generator())  # never the global RNG
