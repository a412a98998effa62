"""Device, precision and seeding: the machine-facing choices, made once per run."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bertsent.errors import fail


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        fail(f"--device {name} is not a device: use auto, cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        fail(f"--device {name} is not supported (bertsent runs on CPU and CUDA): use auto, "
             "cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {name} asked for CUDA but none is available: use --device cpu")
    return device


def device_name(device: torch.device) -> str:
    """The accelerator's or CPU's model name, for reports that compare speeds."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


# oneDNN's instruction sets (ONEDNN_MAX_CPU_ISA) from which bf16 matmuls run natively
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL",
              "DEFAULT")


def onednn_allows_bf16() -> bool:
    """False where ONEDNN_MAX_CPU_ISA (or its older name DNNL_MAX_CPU_ISA) caps oneDNN below
    AVX512_CORE_BF16: bf16 matmuls are then emulated, about 1 GFLOP/s on a CPU whose AMX runs
    them at 800, so such a cap must count as a CPU without native bf16."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return not cap or cap.strip().upper().startswith(_BF16_ISAS)


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AMX or AVX512-BF16) that oneDNN may use."""
    if not onednn_allows_bf16():
        return False
    cpu = getattr(torch._C, "_cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        return False


def pick_precision(name: str, device: torch.device) -> str:
    """auto: bf16 where the hardware multiplies bf16 natively, else fp32."""
    if name != "auto":
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            fail("--precision bf16 is not supported by this GPU: use fp16 or fp32")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


AutocastFactory = Callable[[], contextlib.AbstractContextManager]


def autocast_for(precision: str, device: torch.device) -> AutocastFactory:
    """A zero-argument factory of autocast contexts (weights stay fp32; matmuls run low)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


def use_threads(threads: int | None) -> None:
    """--threads: the CPU threads torch's kernels use (None: torch's own choice). More threads
    than CPUs is allowed but only slows the run down (2-3x), so it gets a note."""
    if threads is None:
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus and threads > cpus:
        print(f"note: --threads {threads} is more than the {cpus} CPUs this process may use; "
              "threads beyond that slow every step down", file=sys.stderr)
    torch.set_num_threads(threads)


def setup_process(device: torch.device, threads: int | None, reuse_memory: bool = False) -> None:
    """The process-wide settings every entry point makes before its first matmul: torch's
    threads, oneDNN's compiled kernels kept, and (training) freed memory reused on a CPU."""
    use_threads(threads)
    keep_compiled_kernels(device)
    reuse_freed_memory(reuse_memory and device.type == "cpu")


# oneDNN keeps this many compiled kernels (primitives) in a process; its own default is 1,024
KERNEL_CACHE = 4096
_KERNEL_CACHE_VARS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")


def keep_compiled_kernels(device: torch.device, capacity: int = KERNEL_CACHE) -> bool:
    """Let oneDNN keep `capacity` compiled kernels instead of 1,024. Returns whether it applied
    (not on CUDA, nor where the user set the capacity: theirs stands).

    Why: on CPUs with native bf16, torch runs bf16 matmuls through oneDNN, which JIT-compiles
    a kernel (a primitive) for each shape and keeps the last 1,024. A training run over batches
    of every length (64 of them, in multiples of 8 up to 512) needs about 1,300: past 1,024 the
    cache evicts and compiles again every step, mapping and unmapping fresh code pages (a
    MiniLM-L6 run with the first-token cut trained 5% slower for it and held 1.2 GiB more;
    docs/performance.md). oneDNN reads the capacity when it compiles its first kernel, so this
    runs before any matmul; set later, it changes nothing. Process-wide, like reuse_freed_memory."""
    if device.type != "cpu" or any(name in os.environ for name in _KERNEL_CACHE_VARS):
        return False
    os.environ[_KERNEL_CACHE_VARS[0]] = str(capacity)
    return True


# glibc's mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory(enabled: bool = True) -> bool:
    """Have glibc keep the memory a step frees for the next step instead of handing it back to
    the kernel (Linux; a no-op elsewhere). Returns whether it applied.

    Why: a training step frees and reallocates tensors of tens of MB (the dense word-embedding
    gradient alone is 47 MB for MiniLM). glibc maps anything above its mmap threshold (at most
    32 MiB) afresh and returns freed heap tops to the kernel, so each such allocation is
    zeroed again page by page: about 45,000 minor page faults per MiniLM-L6 step of 8 x 256
    tokens, 50-400 with this (docs/performance.md). A caching allocator (jemalloc, tcmalloc,
    CUDA's) does the same; the peak memory grows a little (+3% in that benchmark), and what is
    freed is kept until the process ends. Process-wide: a program that imports bertsent's
    train() gets it too."""
    if not enabled or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): its allocator as it is
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text
                                              or "can't allocate memory" in text)


@contextlib.contextmanager
def out_of_memory_is_one_line(shape: tuple[int, ...]):
    """Running out of memory in an evaluation pass names the flag that fixes it."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not (is_oom(exc) or isinstance(exc, MemoryError)):
            raise
        fail(f"out of memory evaluating a batch of {shape[0]} x {shape[1]} tokens: lower the "
             "evaluation batch (--eval-tokens or --eval-batch-size for bertsent.train, "
             "--batch-tokens or --batch-size for evaluate and predict)")


def keep_matplotlib_in(cache_dir: str | None) -> None:
    """matplotlib's font cache goes under --cache-dir, not the user's home (a run writes
    nowhere but its cache, checkpoint and runs folders); call before matplotlib is imported.
    A MPLCONFIGDIR the user set wins."""
    from bertsent.runfolder import unwritable

    if cache_dir and "MPLCONFIGDIR" not in os.environ:
        folder = os.path.join(os.path.expanduser(cache_dir), "matplotlib")
        if unwritable(Path(folder)) is None:
            os.environ["MPLCONFIGDIR"] = folder
