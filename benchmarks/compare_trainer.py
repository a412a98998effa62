"""bertsent against the Hugging Face Trainer: the same model, reviews, lengths and epochs.

Four runs, each in its own subprocess (so that its peak RSS is its own):

* ``trainer-original`` -- ``transformers.Trainer`` as the original experiment ran it:
  every review padded to --max-length (head truncation), batch 8, lr 2e-5, weight decay 0.01,
  fp32, eval batch 8, TrainingArguments defaults otherwise (no warmup, linear decay).
* ``trainer-best`` -- ``Trainer`` at its best: dynamic padding (DataCollatorWithPadding,
  multiple of 8), length-grouped sampling (``train_sampling_strategy="group_by_length"``,
  or ``group_by_length=True`` on older transformers), bf16 autocast where the CPU has native
  bf16, bertsent's default lr and warmup ratio, eval batch 64.
* ``bertsent`` -- ``bertsent.train.train`` with its defaults (batch 8, lr 1e-4, head+tail
  truncation, length-grouped batches, precision auto, attention written out as matmuls in
  bf16 training steps on a CPU (``--attention auto``), the last layer computed for the
  first token only in training steps (``--cut-last-layer``), evaluation batches of at most
  64 reviews and 4,096 tokens, scored with bf16 weights where bf16 is native and the last
  layer cut to the first token).
* ``bertsent-sparse`` -- the same with ``--sparse-embeddings`` (lazy AdamW on the word-embedding
  rows a step uses), an option measured beside the defaults.

All four train on the same shuffled reviews and report on the same shuffled test reviews:
the subsets come from ``bertsent.data.subset_indices`` (validation carved off first, so
--val-samples changes which reviews are trained on; bertsent's own validation pass is not
part of the comparison). The same --max-length, train batch size (8), epochs and seed are used.

What is measured, with one definition for all runs:

* training samples/s = train samples x epochs / wall time of the training phase only (no
  model loading, tokenisation or evaluation). Trainer: ``on_train_begin`` to ``on_train_end``
  (no evaluation or checkpointing happens in between). bertsent: its reported
  ``train_samples_per_second``, the sum of its optimizer-step times including batch loading,
  which excludes its in-loop validation and checkpoint writes.
* evaluation samples/s = test reviews / wall time of the fastest of --eval-passes (3) timed
  passes over the test subset, after an untimed one, so that kernel caches are warm for all
  and a pass slowed by other work on the machine does not decide the figure (Trainer:
  ``Trainer.predict`` once, then the timed passes; bertsent: after its own test evaluation
  inside ``train()``, timed passes of ``bertsent.engine.evaluate`` over the trained best model
  with bertsent's own EvalBatchSampler + Collator and its scoring model
  (``scoring.for_scoring``: bf16 weights where bf16 is native, the last layer cut to the
  first token, which is all the classifier reads), at most 64 reviews and 4,096 tokens a
  batch, same precision as its run). Every pass's seconds are in the JSON.
* peak RSS = VmHWM of the run's process when training and the test evaluation are done.
* accuracy and F1 on the test subset (``bertsent.metrics.compute_metrics`` for all runs).
* the machine's matmul peak (fp32 and bf16, the best of 2048^3 and 4096^3, with the threads the
  runs use; measured before and after the runs, the higher counts) and bertsent's model FLOP
  utilisation against the peak of the precision it ran in (bf16 where the CPU has it
  natively, else fp32): training FLOPs = 6 x non-embedding params x real
  (non-padding) training tokens x epochs + attention (3 x layers x 4 x L^2 x hidden per review
  of L tokens, x epochs), divided by bertsent's training time: the FLOPs of the model's whole
  forward and backward. The report also gives the utilisation of the FLOPs bertsent's steps
  actually run, less what the cut last layer skips (``cut_flops``).

Needs ``accelerate>=1.1`` besides bertsent's dependencies (``Trainer`` requires it).

On a machine with CUDA every run uses the GPU (``--device`` chooses): ``Trainer`` at its best
in bf16 where the GPU supports it, bertsent with its defaults, the timed passes on the GPU,
the peak of 2048^3 to 8192^3 products on it, and each run's peak of allocated GPU memory.

The full benchmark (about 15-25 minutes on a 2-core CPU)::

    python benchmarks/compare_trainer.py --threads 1 --out benchmarks/results.json

--threads 1 pins every run (and the matmul test) to one torch thread. On a CPU that other jobs
share, torch's default of one thread per core makes its OpenMP threads wait on each other and
runs several times slower and far noisier; leave it out on a machine of your own. The table
shows the threads and the load average each run saw.

A smoke run (MiniLM-L3, 64 train / 32 test reviews, max length 64, under a minute a run)::

    python benchmarks/compare_trainer.py --quick

Some runs only: ``--only trainer-best,bertsent`` (of ``trainer-original``, ``trainer-best``,
``bertsent``, ``bertsent-sparse``). The path of a CPU without native bf16 (fp32 everywhere,
``Trainer`` at its best without bf16), on any CPU::

    python benchmarks/compare_trainer.py --precision fp32 --only trainer-best,bertsent
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere without installing bertsent

RUNS = ("trainer-original", "trainer-best", "bertsent", "bertsent-sparse")
BATCH_SIZE = 8  # train batch size of all runs (bertsent's default)
QUICK = {"model": "../shared/models/minilm-l3", "train_samples": 64, "eval_samples": 32,
         "val_samples": 32, "max_length": 64}
FULL = {"model": "../shared/models/minilm-l6", "train_samples": 2000, "eval_samples": 500,
        "val_samples": 200, "max_length": 256}


@dataclass
class Setup:
    """What every run shares."""

    model: str
    data: str
    train_samples: int
    eval_samples: int
    val_samples: int
    max_length: int
    epochs: int
    seed: int
    threads: int | None  # torch intra-op threads (None: torch's default, all cores)
    eval_passes: int = 3  # timed evaluation passes; the fastest is reported
    precision: str = "auto"  # auto: bf16 where native (Trainer at its best too); fp32: neither
    device: str = "auto"  # every run's device: auto (CUDA where there is one), cpu, cuda[:N]


# ---------------------------------------------------------------- shared helpers
def resolve(path: str) -> str:
    """A relative path is relative to the repo root (so ../shared works from anywhere)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (REPO / p).resolve())


def shown(path: str) -> str:
    """A path as the results show it: relative to the repo root, never the machine's own."""
    return os.path.relpath(path, REPO) if os.path.isabs(path) else path


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def resolved_device(setup: Setup):
    from bertsent.runtime import pick_device

    return pick_device(setup.device)


def native_bf16(device) -> bool:
    """bf16 that runs at speed: AMX/AVX512-BF16 on a CPU, bf16 support on a CUDA device."""
    import torch

    from bertsent.runtime import cpu_has_bf16

    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()


ISA_CAPS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
            "DNNL_MAX_CPU_ISA")  # how a run is held to an older CPU's instructions


def isa_caps() -> dict[str, str]:
    """The instruction-set caps this process runs under (docs/performance.md: AVX2 emulated)."""
    return {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}


def isa_line() -> str:
    """'' on an uncapped run; else what the report's CPU line adds, so no capped figure passes
    for the hardware's own."""
    caps = isa_caps()
    return "; instructions capped: " + " ".join(f"{k}={v}" for k, v in caps.items()) if caps \
        else ""


def add_precision_option(parser: argparse.ArgumentParser, fp32_means: str) -> None:
    """The `--precision auto|fp32` every benchmark shares: fp32 measures, on any CPU, the path
    of a CPU without native bf16."""
    parser.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                        help=f"fp32: {fp32_means} (default auto: bf16 where native)")


def runs_bf16(precision: str, device=None) -> bool:
    """Whether a benchmark run uses bf16: asked for (auto) and native on its device."""
    import torch

    return precision == "auto" and native_bf16(device or torch.device("cpu"))


def cuda_memory() -> dict[str, float]:
    """The peak of memory torch allocated on the CUDA device, where a run used one."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {"cuda_peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20}


def timed_passes(one_pass: Callable[[], Any], passes: int) -> tuple[Any, list[float]]:
    """(the last pass's result, the seconds of each pass): the fastest of a few passes is the
    figure least disturbed by whatever else the machine runs."""
    seconds, out = [], None
    for _ in range(passes):
        start = time.perf_counter()
        out = one_pass()
        seconds.append(time.perf_counter() - start)
    return out, seconds


def load_subsets(setup: Setup):
    """The train and test reviews (datasets with text, label) exactly as bertsent picks them."""
    from bertsent.data import apply_labels, check_split, subset_indices
    from bertsent.datafiles import load_raw
    from bertsent.labels import LabelMap

    raw = load_raw(setup.data)
    train, test = (apply_labels(check_split(raw[s], s, "text", "label"), LabelMap.identity(2), s)
                   for s in ("train", "test"))  # IMDb's 0/1, checked as bertsent.train does
    idx = subset_indices(len(train), len(test), setup.train_samples, setup.val_samples,
                         setup.eval_samples, setup.seed)
    return train.select(idx.train), test.select(idx.test)


# ---------------------------------------------------------------- the Trainer runs
def run_trainer(setup: Setup, best: bool) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from bertsent.config import TrainConfig
    from bertsent.metrics import compute_metrics

    defaults = TrainConfig()
    device = resolved_device(setup)
    set_seed(setup.seed)  # the classifier head's init
    tokenizer = AutoTokenizer.from_pretrained(setup.model)
    model = AutoModelForSequenceClassification.from_pretrained(setup.model, num_labels=2)
    train_raw, test_raw = load_subsets(setup)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch["text"], truncation=True, max_length=setup.max_length,
                         padding=False if best else "max_length")

    train_ds = train_raw.map(encode, batched=True, remove_columns=["text"])
    test_ds = test_raw.map(encode, batched=True, remove_columns=["text"])
    padded_train_tokens = sum(len(x) for x in train_ds["input_ids"]) * setup.epochs

    class Clock(TrainerCallback):
        start = end = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

    out_dir = tempfile.mkdtemp(prefix="bench-trainer-")
    kwargs: dict[str, Any] = dict(
        output_dir=out_dir, per_device_train_batch_size=BATCH_SIZE,
        num_train_epochs=setup.epochs, weight_decay=0.01, seed=setup.seed, report_to="none",
        save_strategy="no", push_to_hub=False, disable_tqdm=True,
        use_cpu=device.type == "cpu")  # bf16 on a CPU needs use_cpu
    collator = None
    if best:
        params = inspect.signature(TrainingArguments).parameters
        if "train_sampling_strategy" in params:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
        warmup = "warmup_ratio" if "warmup_ratio" in params else "warmup_steps"  # <1: a ratio
        kwargs.update(learning_rate=defaults.lr,
                      per_device_eval_batch_size=defaults.eval_batch_size,
                      bf16=runs_bf16(setup.precision, device),
                      **{warmup: defaults.warmup_ratio})
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    else:
        kwargs.update(learning_rate=2e-5, per_device_eval_batch_size=8)
    clock = Clock()
    trainer = Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=train_ds,
                      data_collator=collator, processing_class=tokenizer, callbacks=[clock])
    train_out = trainer.train()
    train_seconds = clock.end - clock.start

    # A first pass untimed, then the timed ones: like bertsent's, which follow its own test
    # evaluation inside train(), they run with warm kernel caches.
    start = time.perf_counter()
    trainer.predict(test_ds)
    first_eval_seconds = time.perf_counter() - start
    pred, passes = timed_passes(lambda: trainer.predict(test_ds), setup.eval_passes)
    eval_seconds = min(passes)
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    metrics = compute_metrics(logits, pred.label_ids, 2)
    rss = peak_rss_mib()
    shutil.rmtree(out_dir, ignore_errors=True)
    settings = {k: v for k, v in kwargs.items() if k != "output_dir"}
    return {
        "train_samples": len(train_ds), "test_samples": len(test_ds),
        "train_seconds": train_seconds,
        "train_samples_per_second": len(train_ds) * setup.epochs / train_seconds,
        "trainer_reported_train_samples_per_second":
            train_out.metrics.get("train_samples_per_second"),
        "eval_seconds": eval_seconds, "eval_samples_per_second": len(test_ds) / eval_seconds,
        "first_eval_seconds": first_eval_seconds, "eval_pass_seconds": passes,
        "accuracy": metrics["accuracy"], "f1": metrics["f1"], "test_loss": metrics["loss"],
        "peak_rss_mib": rss, "padded_train_tokens": padded_train_tokens,
        "steps": train_out.global_step, "train_loss": train_out.training_loss,
        "precision": "bf16" if kwargs.get("bf16") else "fp32",
        "truncation": "head", "padding": "dynamic (multiple of 8)" if best else "max_length",
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "torch_threads": torch.get_num_threads(), "settings": settings,
        **cuda_memory(),
    }


# ---------------------------------------------------------------- the bertsent run
def run_bertsent(setup: Setup, sparse: bool = False) -> dict[str, Any]:
    import torch

    from bertsent.config import TrainConfig
    from bertsent.engine import evaluate
    from bertsent.export import load_trained
    from bertsent.model import load_tokenizer
    from bertsent.scoring import for_scoring
    from bertsent.tokens import eval_loader, tokenize
    from bertsent.train import train

    work = Path(tempfile.mkdtemp(prefix="bench-bertsent-"))
    result = train({"model": setup.model, "data": setup.data,
                    "train_samples": setup.train_samples, "val_samples": setup.val_samples,
                    "eval_samples": setup.eval_samples, "epochs": setup.epochs,
                    "max_length": setup.max_length, "seed": setup.seed, "run_name": "bench",
                    "sparse_embeddings": sparse, "precision": setup.precision,
                    "device": setup.device,
                    "checkpoint_dir": str(work / "checkpoints"), "runs_dir": str(work / "runs")})
    rss = peak_rss_mib()  # training + its validation + its test evaluation

    # A separately timed test pass of the best model, with bertsent's own loader.
    cfg = TrainConfig()
    device = resolved_device(setup)
    tokenizer = load_tokenizer(setup.model)
    train_raw, test_raw = load_subsets(setup)
    enc_train = tokenize(train_raw, tokenizer, setup.max_length, cfg.truncation, cfg.cache_dir)
    enc_test = tokenize(test_raw, tokenizer, setup.max_length, cfg.truncation, cfg.cache_dir)
    loader = eval_loader(enc_test, cfg.eval_batch_size, tokenizer.pad_token_id or 0,
                         setup.max_length, tokens=cfg.eval_tokens)
    model = load_trained(result["best_model_dir"]).to(device)

    def one_pass():
        scoring, autocast = for_scoring(model, result["precision_mode"], device)
        return evaluate(scoring, loader, device, num_labels=2, autocast=autocast, desc="test")

    timed, passes = timed_passes(one_pass, setup.eval_passes)
    eval_seconds = min(passes)

    # Inputs of the FLOP count (real tokens only: padding is not useful work).
    lengths = enc_train.lengths.astype(float)
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n)
    tokens = int(lengths.sum()) * setup.epochs
    dense_flops = 6.0 * non_embedding * tokens
    attention_flops = 3.0 * layers * 4.0 * float((lengths**2).sum()) * hidden * setup.epochs
    shutil.rmtree(work, ignore_errors=True)
    n_train = len(enc_train)
    skipped = cut_flops(model, lengths, setup.epochs) if cfg.cut_last_layer else 0.0
    return {
        "train_samples": n_train, "test_samples": len(enc_test),
        "train_seconds": result["train_seconds"],
        "train_samples_per_second": result["train_samples_per_second"],
        "eval_seconds": eval_seconds, "eval_samples_per_second": len(enc_test) / eval_seconds,
        "eval_pass_seconds": passes,
        "accuracy": result["accuracy"], "f1": result["f1"], "test_loss": result["loss"],
        "timed_eval_accuracy": timed.metrics["accuracy"], "timed_eval_f1": timed.metrics["f1"],
        "peak_rss_mib": rss, "steps": result["steps"], "val_accuracy": result["val_accuracy"],
        "precision": result["precision_mode"], "truncation": cfg.truncation,
        "padding": "dynamic (multiple of 8), length-grouped",
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "torch_threads": torch.get_num_threads(), **cuda_memory(),
        "settings": {k: v for k, v in cfg.to_dict().items()
                     if k in ("lr", "batch_size", "eval_batch_size", "eval_tokens", "weight_decay",
                              "warmup_ratio", "max_grad_norm", "group_by_length", "truncation")},
        "flops": {"non_embedding_params": non_embedding, "layers": layers, "hidden": hidden,
                  "train_tokens": tokens, "sum_length_squared": float((lengths**2).sum()),
                  "epochs": setup.epochs, "dense_flops": dense_flops,
                  "attention_flops": attention_flops,
                  "total_flops": dense_flops + attention_flops,
                  "train_seconds": result["train_seconds"],
                  "achieved_gflops": (dense_flops + attention_flops)
                  / result["train_seconds"] / 1e9,
                  "skipped_by_cut_flops": skipped,
                  "run_gflops": (dense_flops + attention_flops - skipped)
                  / result["train_seconds"] / 1e9},
    }


def cut_flops(model, lengths, epochs: int) -> float:
    """The training FLOPs of the count above that a last layer cut to the first token skips
    (bertsent/firsttoken.py): its query, attention-output and feed-forward products (their
    forward and both gradients) for every token but each review's first, and its attention
    for every query but the first. 0 for a model the cut does not apply to."""
    from bertsent.firsttoken import cuttable

    if not cuttable(model):
        return 0.0
    last = model.base_model.encoder.layer[-1]
    parts = (last.attention.self.query, last.attention.output.dense, last.intermediate.dense,
             last.output.dense)
    params = sum(p.numel() for part in parts for p in part.parameters())
    hidden = model.config.hidden_size
    return epochs * (6.0 * params * float((lengths - 1).sum())
                     + 3.0 * 4.0 * float((lengths**2 - lengths).sum()) * hidden)


def child(name: str, setup: Setup, result_path: str) -> int:
    """Run one configuration in this process and write its result as JSON."""
    import torch

    if setup.threads:
        torch.set_num_threads(setup.threads)
    started = time.time()
    load_before = os.getloadavg()
    result = run_bertsent(setup, sparse=name == "bertsent-sparse") \
        if name.startswith("bertsent") else run_trainer(setup, best=name == "trainer-best")
    load_after = os.getloadavg()
    result.update(name=name, wall_seconds=time.time() - started, loadavg_before=load_before,
                  loadavg_after=load_after, load_1min=(load_before[0] + load_after[0]) / 2)
    Path(result_path).write_text(json.dumps(result, indent=2, default=str))
    return 0


# ---------------------------------------------------------------- the parent
def measure_peaks(machine: dict[str, Any], when: str, device) -> None:
    """The fp32 (and native bf16) matmul peaks, measured before the runs and again after them:
    the peak counted is the higher of the two, since this CPU's matmul throughput can drop by
    half or more for minutes when other work shares its host (1,618 and 533 GFLOP/s in bf16 half
    an hour apart, docs/performance.md)."""
    for dtype, key in (("float32", "fp32"), ("bfloat16", "bf16")):
        if key == "fp32" or machine["native_bf16"]:  # emulated bf16 runs at ~0.2 GFLOP/s
            gflops, n = matmul_peak(dtype, device)
            machine[f"{key}_gflops_{when}"] = gflops
            if gflops >= machine.get(f"{key}_gflops", 0.0):
                machine[f"{key}_gflops"], machine[f"{key}_peak_n"] = gflops, n


def matmul_peak(dtype_name: str, device=None) -> tuple[float, int]:
    """(GFLOP/s, n) of the best of 2048^3 and 4096^3 (and 8192^3 on a GPU): the peak where the
    matmul saturates (at 2048 some CPUs are still below it)."""
    sizes = ((2048, 10), (4096, 3)) + (((8192, 10),) if device is not None
                                       and device.type == "cuda" else ())
    return max((matmul_gflops(dtype_name, n, repeats, device), n) for n, repeats in sizes)


def matmul_gflops(dtype_name: str, n: int = 2048, repeats: int = 10, device=None) -> float:
    """Best-of-N throughput of an n x n @ n x n matmul, in GFLOP/s (on a GPU each product is
    timed to its end)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if a.device.type == "cuda" else (lambda: None)
    torch.matmul(a, b)  # warm up (oneDNN or cuBLAS picks and caches its kernel)
    sync()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def spawn(name: str, setup: Setup) -> dict[str, Any]:
    """Run one configuration as a subprocess of this script; its result, or an error."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", name,
               "--child-result", str(path), "--model", setup.model, "--data", setup.data,
               "--train-samples", str(setup.train_samples),
               "--eval-samples", str(setup.eval_samples),
               "--val-samples", str(setup.val_samples), "--max-length", str(setup.max_length),
               "--epochs", str(setup.epochs), "--seed", str(setup.seed),
               "--eval-passes", str(setup.eval_passes), "--precision", setup.precision,
               "--device", setup.device]
        if setup.threads:
            cmd += ["--threads", str(setup.threads)]
        print(f"\n=== {name} ===", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=REPO)
        if proc.returncode != 0 or not path.exists():
            return {"name": name, "error": f"exit code {proc.returncode}"}
        return json.loads(path.read_text())


def fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(setup: Setup, results: dict[str, dict], machine: dict[str, Any]) -> str:
    """The printed table, ratios and FLOP utilisation."""
    names = [n for n in RUNS if n in results]
    rows = (("training samples/s", "train_samples_per_second", ".2f"),
            ("evaluation samples/s", "eval_samples_per_second", ".2f"),
            ("peak RSS (MiB)", "peak_rss_mib", ".0f"),
            ("accuracy", "accuracy", ".4f"),
            ("F1", "f1", ".4f"),
            ("train time (s)", "train_seconds", ".1f"),
            ("eval time (s)", "eval_seconds", ".2f"),
            ("precision", "precision", "s"),
            ("torch threads", "torch_threads", "d"),
            ("load avg (1 min)", "load_1min", ".2f"),
            ("truncation", "truncation", "s"))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"model {shown(setup.model)}, {setup.train_samples} train / {setup.eval_samples} test "
             f"reviews, max length {setup.max_length}, batch {BATCH_SIZE}, "
             f"{setup.epochs} epoch(s), seed {setup.seed}",
             (f"{machine['device']}, " if machine.get("device", machine["cpu"]) != machine["cpu"]
              else "") + f"CPU {machine['cpu']} ({machine['cores']} cores, torch threads "
             f"{machine['torch_threads']}), {machine['date']}{isa_line()}", "",
             "".ljust(width) + "".join(n.rjust(18) for n in names)]
    for label, key, spec in rows:
        cells = [results[n].get("error") or fmt(results[n].get(key), spec) for n in names]
        lines.append(label.ljust(width) + "".join(c.rjust(18) for c in cells))
    for mine in ("bertsent", "bertsent-sparse"):
        for peer in ("trainer-original", "trainer-best"):
            ours, theirs = results.get(mine, {}), results.get(peer, {})
            if "error" in ours or "error" in theirs or not ours or not theirs:
                continue
            lines.append(
                f"{mine} / {peer}: training x"
                f"{ours['train_samples_per_second'] / theirs['train_samples_per_second']:.2f}"
                f", evaluation x"
                f"{ours['eval_samples_per_second'] / theirs['eval_samples_per_second']:.2f}")
    ours = results.get("bertsent", {})
    gpu = machine.get("device", machine["cpu"]) != machine["cpu"]
    largest = "8192^3" if gpu else "4096^3"  # a GPU's products saturate later
    lines += ["", f"matmul peak (best of 2048^3 to {largest}, {machine['torch_threads']} "
                  "threads, the higher of before and after the runs): "
                  f"fp32 {machine['fp32_gflops']:.0f} GFLOP/s (n={machine['fp32_peak_n']}), "
                  + (f"bf16 {machine['bf16_gflops']:.0f} GFLOP/s (n={machine['bf16_peak_n']})"
                     if machine["native_bf16"] else "bf16 not native (no AMX/AVX512-BF16)")]
    flops = ours.get("flops")
    if flops:
        used = "bf16" if ours.get("precision") == "bf16" else "fp32"  # the peak of what ran
        mfu = flops["achieved_gflops"] / machine[f"{used}_gflops"]
        lines += [
            "bertsent training FLOPs = 6 x N x T + 3 x layers x 4 x sum(L^2) x hidden",
            f"  N (non-embedding params) = {flops['non_embedding_params']:,}",
            f"  T (real train tokens x {flops['epochs']} epoch(s)) = {flops['train_tokens']:,}",
            f"  layers = {flops['layers']}, hidden = {flops['hidden']}, "
            f"sum(L^2) = {flops['sum_length_squared']:,.0f}",
            f"  dense {flops['dense_flops']:.3e} + attention {flops['attention_flops']:.3e} = "
            f"{flops['total_flops']:.3e} FLOPs in {flops['train_seconds']:.1f} s "
            f"= {flops['achieved_gflops']:.1f} GFLOP/s",
            f"  model FLOP utilisation vs the {used} matmul peak (what bertsent ran in): "
            f"{mfu:.1%}"]
        machine["bertsent_mfu"], machine["bertsent_mfu_vs"] = mfu, used
        if flops.get("skipped_by_cut_flops"):
            run_share = flops["run_gflops"] / machine[f"{used}_gflops"]
            lines.append(f"  of these, the last layer cut to the first token skips "
                         f"{flops['skipped_by_cut_flops']:.3e}: the FLOPs run, "
                         f"{flops['run_gflops']:.1f} GFLOP/s, are {run_share:.1%} of the peak")
            machine["bertsent_run_flops_utilisation"] = run_share
        sparse = results.get("bertsent-sparse", {}).get("flops")
        if sparse:
            machine["bertsent_sparse_mfu"] = sparse["achieved_gflops"] / machine[f"{used}_gflops"]
            lines.append(f"  bertsent-sparse: {sparse['achieved_gflops']:.1f} GFLOP/s, "
                         f"{machine['bertsent_sparse_mfu']:.1%}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=f"model folder (default {FULL['model']}, relative to "
                        "the repo root)")
    parser.add_argument("--data", default="../shared/data/imdb",
                        help="data folder (relative paths are relative to the repo root)")
    parser.add_argument("--train-samples", type=int, help="training reviews (default 2000)")
    parser.add_argument("--eval-samples", type=int, help="test reviews (default 500)")
    parser.add_argument("--val-samples", type=int,
                        help="validation reviews carved first for bertsent (default 200)")
    parser.add_argument("--max-length", type=int, help="tokens per review (default 256)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--eval-passes", type=int, default=3,
                        help="timed evaluation passes over the test reviews after an untimed "
                        "one; the fastest is reported (default 3)")
    parser.add_argument("--threads", type=int,
                        help="torch threads for every run and the matmul test (default: torch's "
                        "default, one per core); 1 is steadier when the CPU is shared")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: minilm-l3, 64 train / 32 test reviews, max length 64")
    add_precision_option(parser, "no run uses bf16, the path of a CPU without native bf16 "
                         "(AVX2 only), measured on any CPU")
    parser.add_argument("--device", default="auto",
                        help="every run's device: auto (CUDA where there is one), cpu, cuda[:N]")
    parser.add_argument("--only", help="comma-separated runs, of " + ", ".join(RUNS)
                        + " (default: all)")
    parser.add_argument("--out", help="JSON results (default benchmarks/results.json, "
                        "benchmarks/results-quick.json with --quick)")
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [n for n in (args.only or "").split(",") if n and n not in RUNS]
    if unknown:
        parser.error(f"--only: unknown run {unknown[0]!r}: choose from {', '.join(RUNS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    setup = Setup(model=resolve(args.model or base["model"]), data=resolve(args.data),
                  train_samples=args.train_samples or base["train_samples"],
                  eval_samples=args.eval_samples or base["eval_samples"],
                  val_samples=base["val_samples"] if args.val_samples is None
                  else args.val_samples,
                  max_length=args.max_length or base["max_length"], epochs=args.epochs,
                  seed=args.seed, threads=args.threads, eval_passes=max(1, args.eval_passes),
                  precision=args.precision, device=args.device)
    if args.child_result:
        return child(args.only, setup, args.child_result)

    import torch

    from bertsent.runtime import device_name

    if setup.threads:
        torch.set_num_threads(setup.threads)
    device = resolved_device(setup)
    machine: dict[str, Any] = {
        "cpu": device_name(torch.device("cpu")), "cores": os.cpu_count(),
        "device": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__,
        "python": platform.python_version(), "loadavg_start": os.getloadavg(),
        "native_bf16": native_bf16(device),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "isa_caps": isa_caps()}
    measure_peaks(machine, "start", device)
    import transformers

    machine["transformers"] = transformers.__version__
    out = Path(args.out) if args.out else \
        REPO / "benchmarks" / ("results-quick.json" if args.quick else "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = [n for n in RUNS if n in args.only.split(",")] if args.only else list(RUNS)
    results: dict[str, dict] = {}
    for name in names:  # written after each run, so that an interrupted benchmark keeps some
        results[name] = spawn(name, setup)
        machine["loadavg_end"] = os.getloadavg()
        table = report(setup, results, machine)
        given = {**asdict(setup), "model": shown(setup.model), "data": shown(setup.data)}
        out.write_text(json.dumps({"setup": given, "machine": machine, "runs": results,
                                   "table": table, "complete": len(results) == len(names)},
                                  indent=2, default=str))
    measure_peaks(machine, "end", device)
    table = report(setup, results, machine)
    out.write_text(json.dumps({"setup": given, "machine": machine, "runs": results,
                               "table": table, "complete": len(results) == len(names)},
                              indent=2, default=str))
    print("\n" + table, flush=True)
    print(f"\nresults written to {out}", flush=True)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    from bertsent.errors import run_cli

    sys.exit(run_cli(main))
