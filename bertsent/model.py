"""Tokenizer and sequence-classification model, from a hub id or a local folder."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from bertsent.errors import fail
from bertsent.hub import hub_answers

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def where(name: str) -> str:
    """What to tell the user when `name` cannot be loaded."""
    path = Path(name).expanduser()
    if path.is_dir():
        return (f"{name} is not a complete model folder (it needs config.json, the weights and "
                "the tokenizer files): pass a folder written by save_pretrained or bertsent")
    if path.exists():
        return f"--model {name} is a file: pass the folder that holds config.json and the weights"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return f"model path {name} does not exist: pass a model folder or a hub id"
    return (f"cannot load model '{name}' from the Hugging Face hub (offline?): pass a local "
            "--model folder such as ../shared/models/minilm-l6")


def load_tokenizer(name: str):
    if not Path(name).expanduser().exists():
        hub_answers()  # a hub id: when the hub does not answer, fail fast instead of retrying
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception:  # noqa: BLE001 - hub, file and format errors all mean the same to a user
        fail(where(name))


DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
                "dropout", "attention_dropout", "seq_classif_dropout")


def load_model(name: str, num_labels: int, dropout: float | None = None,
               names: list[str] | tuple[str, ...] | None = None) -> torch.nn.Module:
    """AutoModelForSequenceClassification with named labels (id2label/label2id in its config,
    so pipeline and predict print them) and SDPA attention."""
    from bertsent.labels import LabelMap  # pyarrow: not for predict, which never gets here

    names = dict(enumerate(names)) if names is not None else \
        LabelMap.identity(num_labels).id2label
    if len(names) != num_labels:
        raise ValueError(f"{len(names)} label names for {num_labels} labels")
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception:  # noqa: BLE001
        fail(where(name))
    if getattr(config, "num_labels", num_labels) != num_labels and \
            (Path(name) / "bertsent.json").exists():  # a bertsent export: its head is trained
        fail(f"model {name} was trained with {config.num_labels} labels but this run has "
             f"{num_labels}: fine-tune its base model, or use data with its labels")
    kwargs = dict(num_labels=num_labels, id2label=names, ignore_mismatched_sizes=True,
                  label2id={v: k for k, v in names.items()})
    if dropout is not None:
        kwargs.update({k: dropout for k in DROPOUT_KEYS if hasattr(config, k)})
    for attn in ("sdpa", None):
        try:
            extra = {"attn_implementation": attn} if attn else {}
            return AutoModelForSequenceClassification.from_pretrained(name, **kwargs, **extra)
        except ValueError as exc:
            if attn and "sdpa" in str(exc).lower():
                continue  # this architecture has no SDPA path: use its default attention
            fail(f"cannot build a classifier from {name} ({str(exc).splitlines()[0][:160]}): "
                 "pass a BERT-family model")
        except Exception:  # noqa: BLE001
            fail(where(name))
    raise AssertionError("unreachable")


def check_max_length(model: torch.nn.Module, max_length: int, name: str) -> None:
    """The one check of a length against what the model's position embeddings allow."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        fail(f"--max-length {max_length} exceeds what {name} supports ({limit}): "
             f"pass --max-length {limit} or less")
