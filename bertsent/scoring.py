"""Inference passes: the model they run (bf16 weights where bf16 is native, a last layer that
computes only the first token: bertsent/firsttoken.py) and how their batches run (side by side
on a CPU's threads).

`scored` runs whole batches side by side, one per thread, where a CPU has several threads and
enough batches (docs/performance.md).
"""

from __future__ import annotations

import collections
import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from bertsent.firsttoken import cut_to_first_token
from bertsent.runtime import AutocastFactory, autocast_for


def for_scoring(model: torch.nn.Module, precision: str, device: torch.device
                ) -> tuple[torch.nn.Module, AutocastFactory]:
    """(the model, the autocast) an inference pass runs with: the last layer cut to the first
    token, and in bf16 a bf16 copy of the weights without autocast. Autocast keeps fp32
    weights and casts every one of them again for every batch, and keeps LayerNorm and the
    residual stream in fp32 (1.15-1.3x slower on a CPU with AMX, docs/performance.md;
    probabilities differ by about 2e-4). The trained weights (and a compiled or averaged
    model) are left as they are; fp32 and fp16 score with them, fp32 to 1e-6 of the full
    forward."""
    plain = getattr(model, "_orig_mod", model)  # a torch.compile'd model: its module
    if precision != "bf16":
        cut = cut_to_first_token(plain)
        return (model if cut is plain else cut), autocast_for(precision, device)
    return cut_to_first_token(copy.deepcopy(plain).to(torch.bfloat16)), contextlib.nullcontext


def workers_for(device: torch.device, batches: int) -> int:
    """How many batches a CPU scores at once: one per thread torch may use, when there are at
    least two batches for each (fewer, and the threads share each batch as before)."""
    threads = torch.get_num_threads()
    return threads if device.type == "cpu" and threads > 1 and batches >= 2 * threads else 1


def scored(forward: Callable[[dict], torch.Tensor], batches: Iterable[dict],
           workers: int = 1) -> Iterator[tuple[dict, torch.Tensor]]:
    """(batch, forward(batch)) for every batch, in order. With `workers` > 1 that many batches
    are scored at once, each on one thread of its own (torch's threads are set to 1 for the
    pass and restored after): on a CPU the small operations of one batch (LayerNorm, GELU,
    softmax, adds) keep every thread waiting on the others at each operation, while whole
    batches side by side never wait (docs/performance.md). At most 2 x `workers` batches are
    in flight. Each worker runs `forward` under inference mode (grad mode is per thread)."""
    if workers <= 1:
        for batch in batches:
            yield batch, forward(batch)
        return

    def work(batch: dict) -> torch.Tensor:
        torch.set_num_threads(1)  # OpenMP's thread count is per thread: this worker's own
        with torch.inference_mode():
            return forward(batch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="bertsent-score") as pool:
            pending: collections.deque = collections.deque()
            for batch in batches:
                pending.append((batch, pool.submit(work, batch)))
                if len(pending) >= 2 * workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
    finally:
        torch.set_num_threads(threads)
