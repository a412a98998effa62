"""What an exported model folder is: a Hugging Face folder (weights, config with the label
names, tokenizer) plus `bertsent.json` (the settings it was trained with) and a model card.

Saving refuses non-finite weights and writes the folder atomically; loading the best weights
back into the training model goes by state dict; and evaluate and predict share one loader
that applies the recorded settings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from bertsent.card import model_card
from bertsent.checkpoint import atomic_folder, write_manifest
from bertsent.dataid import portable
from bertsent.errors import fail
from bertsent.jsonio import strict_json
from bertsent.model import check_max_length, load_tokenizer, where

META_FILE = "bertsent.json"  # training settings stored beside a saved model
WEIGHTS = "model.safetensors"


def save_model(folder: Path, model: torch.nn.Module, tokenizer: Any, config: dict[str, Any],
               metrics: dict[str, Any], names: list[str], identity: dict | None = None) -> None:
    """The model in Hugging Face format with its tokenizer, the settings it was trained with
    (and what its data was, its location relative to the folder) and a model card, written to
    a temporary folder and renamed into place; a model with NaN/inf weights is never
    written."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        fail(f"the model has non-finite weights ({bad[0]}{' and others' if len(bad) > 1 else ''})"
             f" and was not exported to {folder}: lower --lr or check the data; earlier "
             "checkpoints are intact")

    meta = {"max_length": config["max_length"], "truncation": config["truncation"],
            "metrics": metrics, "config": config,
            "data_identity": portable(identity, Path(folder).resolve())}

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(strict_json(meta, indent=2))
        (tmp / "README.md").write_text(model_card(config, metrics, names))

    try:
        atomic_folder(folder, write)
    except OSError as exc:
        fail(f"saving the model to {folder} failed ({exc.strerror or exc}): free disk space "
             "or pass another --checkpoint-dir")


def add_test_results(folder: Path, config: dict[str, Any], names: list[str],
                     test: dict[str, Any]) -> None:
    """The reported model's card gains the run's test figures (and the hub header its
    model-index); the folder is sealed again."""
    card = model_card(config, read_meta(str(folder)).get("metrics", {}), names, test)
    tmp = Path(folder) / f".README.md.{os.getpid()}"
    tmp.write_text(card)
    os.replace(tmp, Path(folder) / "README.md")
    write_manifest(Path(folder))


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """An exported folder's weights into a model of the same shape (the best model back into
    the training model), by state dict: no second model is built."""
    from safetensors.torch import load_file

    state = load_file(str(Path(folder) / WEIGHTS), device=str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    if unexpected or [k for k in missing if k not in tied]:
        raise ValueError(f"{folder} does not fit the model ({(missing + unexpected)[:3]})")


def read_meta(folder: str) -> dict:
    """Training settings (max length, truncation, columns) saved with a model, if any."""
    path = Path(folder).expanduser() / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        fail(f"{path} is unreadable: delete it or re-export the model")


def load_trained(folder: str) -> torch.nn.Module:
    """A fine-tuned classifier with the label count and names it was saved with."""
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception:  # noqa: BLE001
        fail(where(folder))
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            folder, attn_implementation="sdpa", output_loading_info=True)
    except ValueError:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            folder, output_loading_info=True)
    except Exception:  # noqa: BLE001
        fail(where(folder))
    if config.num_labels < 2:
        fail(f"{folder} is not a classification model: pass a folder written by bertsent.train")
    if any("classifier" in key for key in info.get("missing_keys", [])):
        fail(f"{folder} has no trained classification head (its classifier weights are not in "
             "the folder, so its answers would be random): fine-tune it with bertsent.train "
             "and pass the folder it writes, e.g. checkpoints/<run>/best")
    return model.eval()


@dataclass
class Exported:
    """A trained model ready to score texts, with the settings it is used with."""

    folder: str
    tokenizer: Any
    model: torch.nn.Module
    meta: dict
    max_length: int
    truncation: str

    def recorded(self, name: str, given: Any, fallback: Any) -> Any:
        """A setting as given, else as the model was trained with (its bertsent.json), else
        the fallback: evaluate and predict need not be told the columns again."""
        if given is not None:
            return given
        value = self.meta.get("config", {}).get(name)
        return fallback if value is None else value

    @property
    def names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]


def load_exported(folder: str, device: torch.device, max_length: int | None = None,
                  truncation: str | None = None) -> Exported:
    """The one loader of evaluate and predict: tokenizer and model from a folder written by
    bertsent.train, with the max length and truncation it was trained with unless given."""
    if not folder:
        fail("--model is required: pass a model folder such as checkpoints/<run>/best")
    meta = read_meta(folder)
    max_length = max_length if max_length is not None else meta.get("max_length", 512)
    truncation = truncation or meta.get("truncation", "head")
    tokenizer = load_tokenizer(folder)
    model = load_trained(folder)
    check_max_length(model, max_length, folder)
    return Exported(folder=folder, tokenizer=tokenizer, model=model.to(device), meta=meta,
                    max_length=max_length, truncation=truncation)
