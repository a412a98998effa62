"""Batch samplers whose epoch order is a pure function of (seed, epoch), so that a run resumes
mid-epoch from a batch count alone; they shard each global batch across data-parallel ranks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def shuffled_batches(lengths: np.ndarray, global_batch: int, seed: int, epoch: int,
                     group_by_length: bool, mega_batch_factor: int = 50) -> list[np.ndarray]:
    """The epoch's global batches, the same for any world size.

    With group_by_length, a seeded permutation is cut into mega-batches of
    `mega_batch_factor` batches, each sorted by length and cut into batches, and the batch order
    is shuffled again: batches hold reviews of similar length (little padding) yet stay random.
    A short last batch joins the one before it, so that every batch can be split across
    any number of ranks (up to the batch size) and the order never depends on the world size.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=g).numpy()
    if group_by_length:
        mega = global_batch * mega_batch_factor
        chunks = [perm[i : i + mega] for i in range(0, len(perm), mega)]
        perm = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [perm[i : i + global_batch] for i in range(0, len(perm), global_batch)]
    if len(batches) > 1 and len(batches[-1]) < global_batch:
        batches[-2:] = [np.concatenate(batches[-2:])]
    if group_by_length:
        order = torch.randperm(len(batches), generator=g).numpy()
        batches = [batches[i] for i in order]
    return batches


def shard(batch: np.ndarray, world_size: int, rank: int) -> list[int]:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    return np.array_split(batch, world_size)[rank].tolist()


class TrainBatchSampler(Sampler[list[int]]):
    """Yields this rank's part of each global batch of `epoch`, from batch `start` on (a
    resumed run skips what it has done without reading it)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, *, seed: int,
                 group_by_length: bool = True, world_size: int = 1, rank: int = 0):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group_by_length = batch_size, seed, group_by_length
        self.world_size, self.rank = world_size, rank
        self.epoch, self.start = 0, 0

    def global_batches(self) -> list[np.ndarray]:
        return shuffled_batches(self.lengths, self.batch_size * self.world_size, self.seed,
                                self.epoch, self.group_by_length)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return len(self.global_batches()) - self.start

    def __iter__(self):
        for batch in self.global_batches()[self.start:]:
            yield shard(batch, self.world_size, self.rank)


def longest_first(lengths: np.ndarray, rows: int, tokens: int = 0, multiple: int = 8
                  ) -> list[list[int]]:
    """Indices in scoring batches, longest first (little padding): at most `rows` a batch and,
    with `tokens`, at most that many padded tokens (rows x the batch's first, longest length
    rounded up to `multiple`). The budget keeps every activation of a batch small: a tensor
    above glibc's mmap threshold (32 MiB at most) is fresh memory the kernel zeroes page by
    page on every batch, which cost more than the matmuls of 64 long reviews on a CPU
    (docs/performance.md)."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        n = rows
        if tokens:
            padded = -(-max(int(lengths[order[i]]), 1) // multiple) * multiple
            n = max(1, min(rows, tokens // padded))
        batches.append(order[i : i + n].tolist())
        i += n
    return batches


class EvalBatchSampler(Sampler[list[int]]):
    """Longest reviews first (`longest_first`); ranks take every N-th batch, so each review is
    evaluated exactly once across ranks."""

    def __init__(self, lengths: np.ndarray, batch_size: int, world_size: int = 1, rank: int = 0,
                 tokens: int = 0, multiple: int = 8):
        self.batches = longest_first(lengths, batch_size, tokens, multiple)[rank::world_size]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def windows(sampler: TrainBatchSampler, loader: Iterable, progress: Any, grad_accum: int,
            total_steps: int) -> Iterator[tuple[list[int], Callable[[], list], int]]:
    """The optimizer steps left, as (window, fetch, batches in the epoch): `window` holds the
    sizes of the step's grad_accum micro-batches and `fetch()` reads them (after the caller
    starts its clock, so data loading counts as training time). Each epoch's order is a pure
    function of (seed, epoch) and what `progress` says is done is skipped, so a resumed run
    continues mid-epoch; the caller advances `progress` after each step, and a new epoch gets a
    new order and a new iterator."""
    while progress.step < total_steps and not progress.stopped_early:
        epoch = progress.epoch
        sampler.set_epoch(epoch, progress.batch_in_epoch)
        sizes = [len(b) for b in sampler.global_batches()]
        batches = iter(loader)
        while (progress.epoch == epoch and progress.step < total_steps
               and not progress.stopped_early):
            window = sizes[progress.batch_in_epoch : progress.batch_in_epoch + grad_accum]
            yield window, functools.partial(_take, batches, len(window)), len(sizes)


def _take(batches: Iterator, n: int) -> list:
    return [next(batches) for _ in range(n)]
