"""Settings: the dataclasses that are the single source of defaults for every entry point, and
one rule per shared field. Nothing here parses flags or touches files (that is cli.py)."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from bertsent.errors import fail

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ATTENTIONS = ("auto", "sdpa", "matmul")  # a training step's attention (bertsent/attention.py)
TRAINED_PRECISIONS = ("fp32", "bf16", "fp16")  # a saved model's outputs: no auto
TRUNCATIONS = ("head", "tail", "head+tail")
CLASS_WEIGHTS = ("none", "balanced")
SPLITS = ("train", "validation", "test")
SELECT_METRICS = ("accuracy", "f1", "f1_macro", "loss")  # validation figures that pick a model
LOWER_IS_BETTER = ("loss",)
VAL_SAMPLES = 500  # the default validation size, unless a tenth of the train split is smaller
# old flag and key names that still work (a checkpoint's settings too)
ALIASES = {"eval_samples": "test_samples"}
MAX_NAME_BYTES = 200  # a run name's limit: file systems allow 255; temporary names add a prefix


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


_ATTENTION_HELP = ("attention in training steps: auto writes it out as batched matmuls for "
                   "bf16/fp16 steps on a CPU (the fused SDPA backward is slow there) and uses "
                   "SDPA elsewhere; matmul always writes it out; sdpa never. Passes without "
                   "a gradient always use SDPA")


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


def parse_path_list(value: Any) -> list[str] | None:
    """--models as 'a,b' (CLI or TOML) or a TOML list of folders (a list keeps commas in a
    name)."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        fail(f"--models must be a comma-separated string or a list of folders, got {value!r}")
    if any(not v for v in items):
        fail(f"--models has an empty entry in {value!r}: list model folders, e.g. "
             "--models checkpoints/a/best,checkpoints/b/best")
    return items


def check_run_name(name: str) -> None:
    """One folder name: no separators, not '.' or '..', no control characters, not too long."""
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name
           or (os.altsep and os.altsep in name) or any(ord(c) < 32 for c in name))
    if bad:
        fail(f"--run-name {name!r} must be one folder name (no '/', not '.' or '..'): "
             "pass a plain name such as imdb-l6")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        fail(f"--run-name is {len(name.encode('utf-8', 'surrogateescape'))} bytes long: "
             f"pass a name of at most {MAX_NAME_BYTES} bytes")




@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults were chosen by measurement (see README)."""

    # what to train on
    model: str = _f("sentence-transformers/all-MiniLM-L6-v2", "hub id or local model folder")
    data: str = _f("stanfordnlp/imdb", "hub dataset id, or a folder of train/test (and "
                   "optionally validation) parquet, csv or jsonl files, or an aclImdb/ folder")
    text_column: str = _f("text", "name of the text column")
    label_column: str = _f("label", "name of the label column (integers or strings)")
    num_labels: int | None = _f(None, "number of classes; none: from the training data (a "
                                "number given is checked against it)")
    labels: list[str] | None = _f(None, "the classes in id order, e.g. negative,positive, which "
                                  "are also their names; none: integer labels 0..n-1 are the "
                                  "ids and other labels are sorted (numerically when numbers)",
                                  parse=parse_label_list)
    train_samples: int | None = _f(None, "shuffled training reviews to use (default: all)")
    val_samples: int | None = _f(None, "reviews for validation / model selection (default: the "
                                 f"smaller of {VAL_SAMPLES} and a tenth of the train split): "
                                 "drawn from the data's own validation split when it has one "
                                 "and a labelled test split (all of it when smaller), else "
                                 "carved from train")
    test_samples: int | None = _f(None, "shuffled test reviews for the final report (default: "
                                  "all); --eval-samples is its old name")
    max_length: int = _f(256, "tokens per review after truncation")
    truncation: str = _f("head+tail", "which tokens to keep from long reviews",
                         choices=TRUNCATIONS)
    # optimisation
    epochs: int = _f(1, "passes over the training set")
    batch_size: int = _f(8, "micro-batch size per process")
    eval_batch_size: int = _f(64, "most reviews in an evaluation batch")
    eval_tokens: int = _f(4096, "most padded tokens in an evaluation batch, longest reviews "
                          "first (0: only --eval-batch-size); small batches keep a CPU's "
                          "activations out of freshly mapped memory")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    lr: float = _f(1e-4, "peak learning rate")
    head_lr_mult: float = _f(20.0, "learning-rate multiplier for the new head (pooler+classifier)")
    class_weights: str = _f("none", "weigh the training loss by class: balanced = inverse class "
                            "frequency in the training split (evaluation stays unweighted)",
                            choices=CLASS_WEIGHTS)
    layer_lr_decay: float = _f(1.0, "each encoder layer's learning rate is this times the one "
                               "above it, the embeddings' lowest (1: off; Sun et al. 2019 use "
                               "0.95)")
    weight_decay: float = _f(0.01, "decoupled weight decay on weight matrices only")
    warmup_ratio: float = _f(0.1, "fraction of optimizer steps spent warming up linearly")
    max_grad_norm: float = _f(1.0, "clip the global gradient norm to this (0 disables)")
    max_steps: int | None = _f(None, "stop after this many optimizer steps (sets the schedule)")
    freeze_embeddings: bool = _f(False, "do not train the word embeddings")
    sparse_embeddings: bool = _f(False, "update only the word-embedding rows a step uses (lazy "
                                 "AdamW: unused rows keep their moments; faster on a CPU)")
    dropout: float | None = _f(0.0, "dropout probability for the whole model (none: keep the "
                               "model's own); 0 trains better in one epoch, and faster")
    ema: float | None = _f(None, "decay of an exponential moving average of the weights, "
                           "evaluated and exported in place of the raw weights (e.g. 0.999; "
                           "default: off)")
    group_by_length: bool = _f(True, "batch reviews of similar length together")
    seed: int = _f(42, "seed for shuffling, subsets, dropout and the classifier head")
    # model selection
    select_metric: str = _f("accuracy", "the validation figure that picks the exported best "
                            "model (loss: lower is better; f1_macro: more than two classes)",
                            choices=SELECT_METRICS)
    patience: int | None = _f(None, "stop after this many validation points in a row without "
                              "a better --select-metric (default: never); an early stop is a "
                              "normal finish")
    # machine
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _f("auto", "auto picks bf16 on CUDA and AMX/AVX512-BF16 CPUs",
                        choices=PRECISIONS)
    compile: bool = _f(False, "torch.compile the model (sequence lengths are bucketed; slower "
                       "than eager in bf16 on an AMX CPU, docs/performance.md)")
    attention: str = _f("auto", _ATTENTION_HELP, choices=ATTENTIONS)
    cut_last_layer: bool = _f(True, "training steps compute the last layer for the first "
                              "token only, the one the classifier reads (BERT, RoBERTa, "
                              "ELECTRA heads): the same gradients for less work "
                              "(docs/performance.md); evaluation always does")
    num_workers: int = _f(0, "DataLoader worker processes")
    threads: int | None = _f(None, "CPU threads torch uses (default: torch's choice, one per "
                             "core)")
    reuse_memory: bool = _f(True, "on CPU, keep the memory a step frees for the next one "
                            "(glibc on Linux) instead of having the kernel map and zero it "
                            "again")
    # outputs
    run_name: str | None = _f(None, "name of the run (default: <model>-<timestamp>)")
    runs_dir: str = _f("runs", "TensorBoard log root")
    checkpoint_dir: str = _f("checkpoints", "checkpoint root")
    cache_dir: str = _f("~/.cache/bertsent", "where tokenised datasets are cached")
    log_every: int = _f(10, "optimizer steps between training scalars (the loss logged is the "
                        "mean over those steps)")
    progress_every: float = _f(60.0, "seconds between plain progress lines when stderr is not "
                               "a terminal (nohup, batch jobs); 0 disables them")
    save_every: int = _f(200, "optimizer steps between checkpoints (0: epoch ends only)")
    eval_every: int = _f(0, "optimizer steps between validations (0: epoch ends only)")
    keep_last: int = _f(2, "step checkpoints kept while the run trains, besides best/ and final/")
    keep_checkpoints: bool = _f(False, "keep the step checkpoints once the run has finished "
                                "(default: removed, leaving best/ and final/)")
    sanity_eval_batches: int = _f(2, "validation batches run before training (0 disables)")
    test: bool = _f(True, "score the exported best model on the test split at the end; "
                    "--no-test skips it (a validation-only run): the bertsent.evaluate "
                    "command it prints at its end gives the same figures later")
    # resuming and faults
    resume: str | None = _f(None, "'latest' or a checkpoint folder to continue from")
    resume_force: bool = _f(False, "resume even when safe-to-change settings differ")
    skip_nonfinite: bool = _f(False, "skip updates whose loss or gradient is NaN/inf")

    def checked(self) -> TrainConfig:
        check_fields(self)
        if self.labels and self.num_labels is not None and len(self.labels) != self.num_labels:
            fail(f"--labels lists {len(self.labels)} labels but --num-labels is "
                 f"{self.num_labels}: omit --num-labels or make them agree")
        if self.sparse_embeddings and self.freeze_embeddings:
            fail("--sparse-embeddings updates the word embeddings that --freeze-embeddings "
                 "keeps fixed: pass one of them")
        if self.sparse_embeddings and self.compile:
            fail("--sparse-embeddings does not work with --compile (inductor cannot compile "
                 "the sparse embedding gradient): pass one of them")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def val_size(self, n_train: int, carved: bool = True) -> int:
        """Validation reviews: as given, else VAL_SAMPLES, and when they are carved from the
        train split at most a tenth of it, so that a small dataset still trains on most rows."""
        if self.val_samples is not None:
            return self.val_samples
        return min(VAL_SAMPLES, max(1, n_train // 10)) if carved else VAL_SAMPLES


@dataclass
class EvalConfig:
    """Evaluate a saved model (a folder written by bertsent.train) on a labelled split."""

    model: str = _f("", "model folder, e.g. checkpoints/<run>/best")
    data: str | None = _f(None, "hub dataset id or local data folder (default: the data the "
                          "model was trained on)")
    split: str = _f("test", "which split to score; selection: the reviews the run chose its "
                    "model on (carved from train, or drawn from the data's own validation "
                    "split), as it drew them", choices=(*SPLITS, "selection"))
    samples: int | None = _f(None, "shuffled reviews of the split to score (default: all)")
    seed: int = _f(42, "seed of the shuffle (42 matches bertsent.train's default test subset)")
    text_column: str | None = _f(None, "name of the text column (default: the one the model was "
                                 "trained on, else text)")
    label_column: str | None = _f(None, "name of the label column (default: the one the model "
                                  "was trained on, else label): strings (or integers that are "
                                  "not 0..n-1, like ratings) are matched to the model's label "
                                  "names; integers 0..n-1 are its class ids")
    max_length: int | None = _f(None, "default: the length the model was trained with")
    truncation: str | None = _f(None, "default: the strategy the model was trained with",
                                choices=TRUNCATIONS)
    batch_size: int = _f(64, "most reviews in a batch")
    batch_tokens: int = _f(4096, "most padded tokens in a batch, longest reviews first (0: "
                           "only --batch-size); small batches keep a CPU's activations out of "
                           "freshly mapped memory")
    windows: int = _f(1, "score a review longer than --max-length as this many windows (the "
                      "trained truncation, then spans spread over the whole review) and average "
                      "their probabilities; 1: the trained view alone")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _f("fp32", "fp32 (exact), bf16, fp16 or auto",
                        choices=PRECISIONS)
    threads: int | None = _f(None, "CPU threads torch uses (default: one per core)")
    cache_dir: str = _f("~/.cache/bertsent", "where tokenised datasets are cached")
    report_dir: str | None = _f(None, "also write a report folder (metrics, plots, mistakes)")


@dataclass
class PredictConfig:
    """Predict the sentiment of texts with a model saved by bertsent.train: give the texts as
    arguments after the flags, in a file (--file), or on stdin."""

    model: str = _f("", "model folder, e.g. checkpoints/<run>/best")
    file: str | None = _f(None, "texts to predict: a .csv, .tsv, .jsonl, .json or .parquet table "
                          "(one per row, from --text-column) or a .txt file, or one with no "
                          "suffix (one per line); gzip, bzip2 and xz files are read as they are")
    text_column: str | None = _f(None, "the texts' column in a table --file (.csv, .tsv, .jsonl, "
                                 ".json, .parquet) (default: the one the model was trained on, "
                                 "else text)")
    out: str | None = _f(None, "write the predictions to this .csv, .tsv, .jsonl or .parquet "
                         "file: one row per input row, in order, with every input column "
                         "(default: print them)")
    json: bool = _f(False, "print one JSON object per line")
    batch_size: int = _f(32, "most texts per forward pass")
    batch_tokens: int = _f(4096, "most padded tokens per forward pass, longest texts first (0: "
                           "only --batch-size)")
    max_length: int | None = _f(None, "default: the length the model was trained with")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _f("fp32", "fp32 (matches transformers.pipeline), bf16 or fp16",
                        choices=TRAINED_PRECISIONS)
    threads: int | None = _f(None, "CPU threads torch uses (default: one per core)")


@dataclass
class PretrainConfig:
    """Continue masked-language-model training of a base model on the data's own texts (its
    train split and an unlabelled split such as IMDb's unsup, never validation or test) before
    fine-tuning; writes a model folder that bertsent.train --model takes."""

    model: str = _f("sentence-transformers/all-MiniLM-L6-v2", "hub id or local model folder")
    data: str = _f("stanfordnlp/imdb", "hub dataset id or local data folder: its train and "
                   "unsup texts")
    text_column: str = _f("text", "name of the text column")
    max_length: int = _f(256, "tokens per text after truncation")
    truncation: str = _f("head+tail", "which tokens to keep from long texts", choices=TRUNCATIONS)
    mask_prob: float = _f(0.15, "share of the tokens masked (BERT's token-level rule: of them "
                          "80% [MASK], 10% a random token, 10% unchanged)")
    head_steps: int = _f(0, "the first N of the run's steps train the masked-LM head alone, the "
                         "encoder frozen: for a base that ships without a head, whose new "
                         "head's first random gradients would otherwise reach the encoder")
    epochs: int = _f(1, "passes over the texts")
    max_steps: int | None = _f(None, "stop after this many optimizer steps (sets the schedule; "
                               "the budget of a pre-training run)")
    batch_size: int = _f(16, "micro-batch size")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    lr: float = _f(1e-4, "peak learning rate")
    weight_decay: float = _f(0.01, "decoupled weight decay on weight matrices only")
    warmup_ratio: float = _f(0.06, "fraction of optimizer steps spent warming up linearly")
    max_grad_norm: float = _f(1.0, "clip the global gradient norm to this (0 disables)")
    val_samples: int = _f(500, "texts held out to measure the masked-LM loss")
    group_by_length: bool = _f(True, "batch texts of similar length together")
    seed: int = _f(42, "seed for shuffling, the held-out texts, the masks and the new head")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _f("auto", "auto picks bf16 on CUDA and AMX/AVX512-BF16 CPUs",
                        choices=PRECISIONS)
    attention: str = _f("auto", _ATTENTION_HELP, choices=ATTENTIONS)
    threads: int | None = _f(None, "CPU threads torch uses (default: one per core)")
    reuse_memory: bool = _f(True, "on CPU, keep the memory a step frees for the next one "
                            "(glibc on Linux) instead of having the kernel map and zero it "
                            "again")
    run_name: str | None = _f(None, "name of the run (default: <model>-mlm-<timestamp>)")
    runs_dir: str = _f("runs", "TensorBoard log root")
    checkpoint_dir: str = _f("checkpoints", "checkpoint root; the model is written to "
                             "<checkpoint-dir>/<run>/final")
    cache_dir: str = _f("~/.cache/bertsent", "where tokenised texts are cached")
    log_every: int = _f(10, "optimizer steps between training scalars")
    progress_every: float = _f(60.0, "seconds between plain progress lines when stderr is not "
                               "a terminal; 0 disables them")
    save_every: int = _f(200, "optimizer steps between checkpoints (0: epoch ends only)")
    eval_every: int = _f(0, "optimizer steps between held-out losses (0: epoch ends only)")
    keep_last: int = _f(2, "step checkpoints kept while the run trains")
    keep_checkpoints: bool = _f(False, "keep the step checkpoints once the run has finished "
                                "(default: removed, leaving final/)")
    resume: str | None = _f(None, "'latest' or a checkpoint folder to continue from")
    resume_force: bool = _f(False, "resume even when safe-to-change settings differ")

    def checked(self) -> PretrainConfig:
        check_fields(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# every entry point's settings, to point a flag given to the wrong one at its own
@dataclass
class AverageConfig:
    """Average the weights a run evaluated at its last step checkpoints into one model folder
    that evaluate and predict take (checkpoint averaging)."""

    run: str = _f("", "a run's checkpoint folder, e.g. checkpoints/<run>, still holding its step "
                  "checkpoints (train with --keep-checkpoints and --keep-last N)")
    last: int = _f(4, "how many of the newest step checkpoints to average")
    models: list[str] | None = _f(None, "instead of --run: exported models fine-tuned from the "
                                  "same base on the same reviews (a model soup), e.g. "
                                  "checkpoints/a/best,checkpoints/b/best", parse=parse_path_list)
    out_dir: str | None = _f(None, "model folder to write (default: <run>/average-<last>; "
                             "required with --models)")

    def checked(self) -> AverageConfig:
        check_fields(self)
        if self.models is not None and self.run:
            fail("--run and --models are two kinds of average: pass one of them")
        if self.models is not None:
            if len(self.models) < 2:
                fail(f"--models lists {len(self.models)} model: list two or more folders")
            if not self.out_dir:
                fail("--models needs --out-dir: pass the new model folder, e.g. "
                     "--out-dir checkpoints/soup")
        return self


ENTRY_POINTS = {"bertsent.train": TrainConfig, "bertsent.pretrain": PretrainConfig,
                "bertsent.evaluate": EvalConfig, "bertsent.predict": PredictConfig,
                "bertsent.average": AverageConfig}


def flag_name(name: str) -> str:
    return name.replace("_", "-")


# Hugging Face TrainingArguments names (and the EarlyStoppingCallback's) that have a bertsent
# flag under another name: `--learning-rate` gets "did you mean --lr?"
TRAINER_NAMES = {
    "learning_rate": "lr", "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size", "per_device_eval_batch_size": "eval_batch_size",
    "gradient_accumulation_steps": "grad_accum", "output_dir": "checkpoint_dir",
    "logging_dir": "runs_dir", "logging_steps": "log_every", "save_steps": "save_every",
    "eval_steps": "eval_every", "save_total_limit": "keep_last",
    "metric_for_best_model": "select_metric", "early_stopping_patience": "patience",
    "resume_from_checkpoint": "resume", "torch_compile": "compile",
    "dataloader_num_workers": "num_workers", "model_name_or_path": "model",
    "dataset_name": "data", "max_seq_length": "max_length",
}


def canonical(values: dict[str, Any]) -> dict[str, Any]:
    """Settings under their current names (a checkpoint written before a rename)."""
    return {ALIASES.get(k, k): v for k, v in values.items()}


# bertsent.train's names for what evaluate and predict call otherwise
OTHER_ENTRY_NAMES = {"test_samples": "samples", "eval_batch_size": "batch_size",
                     "eval_tokens": "batch_tokens",
                     "max_eval_samples": "samples"}


# other common names for a bertsent setting
COMMON_NAMES = {"ema_decay": "ema", "weight_averaging": "ema", "warmup": "warmup_ratio",
                "max_len": "max_length", "max_seq_len": "max_length"}


def suggest(name: str, known: list[str]) -> str:
    """' (did you mean --lr?)' for a Trainer name, a common name, a train flag given to
    evaluate or predict, or a near miss of a known setting; ' (--mask-prob is a
    bertsent.pretrain setting ...)' for another entry point's own flag; else ''."""
    import difflib

    name = name.lstrip("-").replace("-", "_")
    named = [n for n in (TRAINER_NAMES.get(name), COMMON_NAMES.get(name), ALIASES.get(name),
                         name) if n]
    named += [OTHER_ENTRY_NAMES[n] for n in named if n in OTHER_ENTRY_NAMES]
    guess = next((n for n in named if n in known), None) or next(
        iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None)
    if guess in known:
        return f" (did you mean --{flag_name(guess)}?)"
    for module, cls in ENTRY_POINTS.items():
        if name in {f.name for f in fields(cls)} and not set(known) >= {
                f.name for f in fields(cls)}:
            return f" (--{flag_name(name)} is a {module} setting: python -m {module} --help)"
    return ""


# ---------------------------------------------------------------- one rule per shared field
# Every entry point's config (train, evaluate, predict) is checked here, so a field means the
# same and is refused with the same line wherever it appears. None means "not given" for the
# optional fields and is always allowed.
SEED_LIMIT = 2**32  # numpy's seed range; torch's is wider
_POSITIVE = ("batch_size", "eval_batch_size", "grad_accum", "epochs", "train_samples",
             "test_samples", "max_steps", "samples", "lr", "head_lr_mult", "patience",
             "threads", "windows", "last")
_NOT_NEGATIVE = ("val_samples", "weight_decay", "max_grad_norm", "save_every", "eval_every",
                 "log_every", "num_workers", "sanity_eval_batches", "progress_every",
                 "head_steps", "eval_tokens", "batch_tokens")
_RANGES = {  # name: (low, high, low inclusive, high inclusive)
    "dropout": (0, 1, True, False), "warmup_ratio": (0, 1, True, False),
    "layer_lr_decay": (0, 1, False, True), "seed": (0, SEED_LIMIT - 1, True, True),
    "ema": (0, 1, False, False), "mask_prob": (0, 1, False, False),
}
_AT_LEAST = {"keep_last": 1, "num_labels": 2, "max_length": 8}
_NOT_BLANK = {  # text flags taken literally: an empty one is a mistake, not "unset"
    "run_name": "pass a name such as imdb-l6, or leave the flag out for a generated one",
    "resume": "pass latest or a checkpoint folder, or leave the flag out to start a new run",
    "report_dir": "pass a new folder, or leave the flag out for no report",
    "out_dir": "pass a new folder, or leave the flag out for <run>/average-<last>",
    "file": "pass a text file, or leave the flag out to read standard input",
    "out": "pass a .csv, .tsv, .jsonl or .parquet file, or leave the flag out to print them",
}


def check_field(name: str, value: Any) -> None:
    """Refuse a value that no run could use, in one line that names the flag."""
    if value is None or isinstance(value, bool):
        return
    flag = f"--{flag_name(name)}"
    if name in _NOT_BLANK and isinstance(value, str) and not value.strip():
        fail(f"{flag} is empty: {_NOT_BLANK[name]}")
    if isinstance(value, float) and not math.isfinite(value):
        fail(f"{flag} must be a finite number, got {value}")
    if name in _POSITIVE and not value > 0:
        fail(f"{flag} must be positive, got {value}")
    if name in _NOT_NEGATIVE and value < 0:
        fail(f"{flag} must not be negative, got {value}")
    if name in _AT_LEAST and value < _AT_LEAST[name]:
        fail(f"{flag} must be at least {_AT_LEAST[name]}, got {value}")
    if name in _RANGES:
        low, high, low_in, high_in = _RANGES[name]
        if not ((low <= value if low_in else low < value)
                and (value <= high if high_in else value < high)):
            fail(f"{flag} must be in {'[' if low_in else '('}{low}, {high}"
                 f"{']' if high_in else ')'}, got {value}")
    if name == "run_name":
        check_run_name(value)


def check_fields(cfg: Any) -> None:
    for f in fields(cfg):
        check_field(f.name, getattr(cfg, f.name))


def base_type(tp: Any) -> tuple[type, bool]:
    """(int, True) for `int | None`; (float, False) for `float`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def from_mapping(values: dict[str, Any], cls: type = TrainConfig, source: str = "config") -> Any:
    """Build a config from a dict, checking key names and value types."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # TOML keeps both batch_size and batch-size: refuse, not pick
    for key, value in values.items():
        name = key.replace("-", "_")
        name = ALIASES.get(name, name) if name not in known else name
        if name in spelled:
            fail(f"{source}: '{spelled[name]}' and '{key}' are the same setting: keep one of "
                 "them")
        spelled[name] = key
        if name not in known:
            fail(f"{source}: unknown key '{key}'{suggest(name, list(known))}: valid keys are the "
                 "--flags, e.g. batch_size")
        if "parse" in known[name].metadata:  # the same parser as the flag's
            kwargs[name] = known[name].metadata["parse"](value)
            continue
        kind, optional = base_type(hints[name])
        if value is None and optional:
            kwargs[name] = None
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            fail(f"{source}: '{key}' must be {kind.__name__}, got {type(value).__name__} "
                 f"{value!r}")
        choices = known[name].metadata.get("choices")
        if choices and value not in choices:
            fail(f"{source}: '{key}' must be one of {', '.join(choices)}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


