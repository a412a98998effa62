"""Model soups (`python -m bertsent.average --models a/best,b/best --out-dir soup`): the
equal-weight mean of models fine-tuned from the same base on the same reviews, with different
settings or seeds (Wortsman et al., 2022, "Model soups"). One model, so it predicts as fast as
each of them.

Fine-tuning from one pre-trained base keeps runs in one basin of the loss, where the mean of
their weights scores better than each of them; runs from different bases need not. A soup
counts as chosen on the reviews its runs chose on, so it takes only runs that chose on the
same reviews (same data, seed and sizes): then `evaluate --split selection` scores it on
reviews none of them trained on, and a greedy soup (add a run only where the soup's figure
rises) is chosen on those reviews, as a run chooses its best step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bertsent.config import AverageConfig
from bertsent.errors import fail
from bertsent.export import META_FILE, Exported, load_exported

# the settings that decide which reviews a run trained on and which it chose on
SELECTION_SETTINGS = ("seed", "train_samples", "val_samples", "text_column", "label_column")


def selection_of(loaded: Exported, named: bool = False) -> dict[str, Any]:
    """What decides a model's training and selection reviews: its data (a folder's file
    digests, a hub id and revision; the name it was given where `named`, or where the model
    was exported before data identities were recorded) and the settings that carve them."""
    config = loaded.meta.get("config") or {}
    identity = loaded.meta.get("data_identity")
    data = (config.get("data") if named or not identity else
            identity.get("files") or (identity.get("id"), identity.get("revision")))
    return {"data": data, **{k: config.get(k) for k in SELECTION_SETTINGS}}


def model_folders(cfg: AverageConfig) -> list[Path]:
    """--models as folders that each hold an exported model, each listed once."""
    folders = [Path(m).expanduser() for m in cfg.models]
    for folder in folders:
        if not (folder / META_FILE).is_file():
            fail(f"--models {folder} is not a model folder written by bertsent.train (no "
                 f"{META_FILE}): pass folders such as checkpoints/<run>/best")
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) < len(resolved):
        fail("--models lists a folder more than once: list each model once (an unequal mix "
             "is not a soup)")
    return folders


def check_alike(first: Exported, other: Exported) -> None:
    """Refuse, in one line, models that do not make one soup: other classes, tokenizer,
    length or selection reviews."""
    name = other.folder
    if other.names != first.names:
        fail(f"--models {name} has the classes {other.names}, {first.folder} {first.names}: "
             "average models of one task")
    if other.tokenizer.get_vocab() != first.tokenizer.get_vocab():
        fail(f"--models {name} has another tokenizer than {first.folder}: average models "
             "fine-tuned from the same base")
    for key in ("max_length", "truncation"):
        if other.meta.get(key) != first.meta.get(key):
            fail(f"--models {name} was trained with {key} {other.meta.get(key)}, "
                 f"{first.folder} with {first.meta.get(key)}: average models trained alike")
    named = not (first.meta.get("data_identity") and other.meta.get("data_identity"))
    mine, theirs = selection_of(other, named), selection_of(first, named)
    if mine != theirs:
        differ = next(k for k in mine if mine[k] != theirs[k])
        fail(f"--models {name} chose on other reviews than {first.folder} ({differ} differs): "
             "average runs with the same --data, --seed and sizes, so that the soup's "
             "selection reviews are ones none of them trained on")


def model_states(folders: list[Path]) -> tuple[Exported, Iterator[dict[str, torch.Tensor]]]:
    """The first model, loaded, and each model's weights in turn (one more model in memory
    at a time), each checked to be alike the first as it loads."""
    first = load_exported(str(folders[0]), torch.device("cpu"))

    def states() -> Iterator[dict[str, torch.Tensor]]:
        yield {k: v.detach().clone() for k, v in first.model.state_dict().items()}
        for folder in folders[1:]:
            other = load_exported(str(folder), torch.device("cpu"))
            check_alike(first, other)
            yield other.model.state_dict()

    return first, states()

