"""The model card (README.md) written into every exported model, built from the run: the data,
the classes, the base model (its hub id and license when its folder says them), the test
figures and how they were measured, and the Hugging Face hub's metadata header (license,
base_model, pipeline_tag, model-index), so the folder can be pushed to the hub as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HUB_ID = r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*"  # bert-base-uncased, org/name
SHOWN = ("accuracy", "f1", "precision", "recall", "f1_macro", "f1_weighted", "mae", "loss")
SETTINGS = ("model", "data", "text_column", "label_column", "train_samples", "val_samples",
            "max_length", "truncation", "epochs", "batch_size", "grad_accum", "lr",
            "head_lr_mult", "weight_decay", "warmup_ratio", "max_grad_norm", "dropout",
            "class_weights", "select_metric", "ema", "precision", "seed")


def _front_matter(text: str) -> dict[str, str]:
    """The simple `key: value` lines of a card's YAML header (enough for license, base_model)."""
    match = re.match(r"---\n(.*?)\n---", text, re.S)
    pairs = re.findall(r"^(\w+):[ \t]*([^\n]+)$", match.group(1), re.M) if match else []
    return {k: v.strip().strip("'\"") for k, v in pairs}


def base_model_facts(model: str) -> dict[str, str | None]:
    """The base model's hub id and license. A hub id is its own; a local folder is asked: its
    card's header (base_model, license), the hub id its card loads (`from_pretrained('x/y')`),
    its config's `_name_or_path`, its LICENSE file."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return {"hub_id": model if re.fullmatch(HUB_ID, model) and not folder.exists() else None,
                "license": None}
    card = (folder / "README.md").read_text(errors="replace") if (folder / "README.md").is_file() \
        else ""
    header = _front_matter(card)
    hub_id = header.get("base_model") if re.fullmatch(HUB_ID, header.get("base_model", "")) \
        else None
    loaded = re.search(rf"(?:from_pretrained|SentenceTransformer)\(\s*['\"]({HUB_ID})['\"]", card)
    if hub_id is None and loaded:
        hub_id = loaded.group(1)
    if hub_id is None and (folder / "config.json").is_file():
        try:
            name = json.loads((folder / "config.json").read_text()).get("_name_or_path", "")
        except (OSError, ValueError):
            name = ""
        hub_id = name if re.fullmatch(HUB_ID, name or "") and not Path(name).exists() else None
    license_ = header.get("license")
    if license_ is None and (folder / "LICENSE").is_file():
        head = " ".join((folder / "LICENSE").read_text(errors="replace").split()[:12])
        license_ = "apache-2.0" if "Apache License" in head and "2.0" in head else \
            "mit" if "MIT License" in head else None
    return {"hub_id": hub_id, "license": license_}


def data_name(data: str) -> str:
    """A hub dataset's id, or a local data folder's own name (never a machine's path)."""
    return data if re.fullmatch(HUB_ID, data) and not Path(data).exists() else \
        Path(data.rstrip("/")).name


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _header(config: dict[str, Any], base: dict, test: dict | None, names: list[str]) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    data = data_name(config["data"])
    results = [EvalResult(task_type="text-classification", task_name="Text Classification",
                          dataset_type=data, dataset_name=data,
                          dataset_split=test.get("test_split", "test"), metric_type=k,
                          metric_value=round(float(test[k]), 4), metric_name=k.replace("_", " "))
               for k in SHOWN if test and isinstance(test.get(k), float) and k != "loss"]
    hub_data = config["data"] if data == config["data"] else None
    meta = ModelCardData(license=base["license"] or "unknown", base_model=base["hub_id"],
                         pipeline_tag="text-classification", library_name="transformers",
                         tags=["text-classification", "bertsent"],
                         datasets=[hub_data] if hub_data else None,
                         model_name=config.get("run_name") or "model",
                         eval_results=results or None)
    return meta.to_yaml()


def _table(values: dict[str, Any]) -> str:
    rows = [f"| {k} | {_fmt(values[k])} |" for k in SHOWN if k in values]
    return "| metric | value |\n|---|---|\n" + "\n".join(rows) if rows else ""


def _results(config: dict[str, Any], metrics: dict[str, Any], test: dict | None) -> str:
    if test:
        tested = (f"Test figures, on {test['test_samples']} reviews of the "
                  f"`{test.get('test_split', 'test')}` split of `{data_name(config['data'])}`, "
                  f"with these weights ({test.get('precision_mode')} on "
                  f"{test.get('device_name')}):\n\n{_table(test)}")
    else:
        tested = "Test figures: in the run folder's `metrics.json` once the run has finished."
    val = metrics.get("val") or {}
    chosen = (f"Validation figures of the point that selected these weights (the best "
              f"`{config.get('select_metric', 'accuracy')}`):\n\n{_table(val)}" if val else
              "No validation point selected these weights: they are the last step's.")
    return f"{tested}\n\n{chosen}"


def model_card(config: dict[str, Any], metrics: dict[str, Any], names: list[str],
               test: dict[str, Any] | None = None) -> str:
    """The card of an exported model: `metrics` are the export's own (the validation point that
    chose it, its step), `test` the run's final report when this folder is the one reported."""
    base = base_model_facts(config["model"])
    base_name = base["hub_id"] or Path(config["model"].rstrip("/")).name
    link = f"[`{base_name}`](https://huggingface.co/{base_name})" if base["hub_id"] else \
        f"`{base_name}`"
    shown = " / ".join(f"`{n}`" for n in names[:12]) + (" / ..." if len(names) > 12 else "")
    kind = "binary" if len(names) == 2 else f"{len(names)}-class"
    shared = {**config, "model": base_name, "data": data_name(config["data"])}  # no local paths
    settings = "\n".join(f"| {k} | {shared.get(k)} |" for k in SETTINGS if k in config)
    limit, cut = config["max_length"], config["truncation"]
    return f"""---
{_header(config, base, test, names).rstrip()}
---

# {config.get('run_name') or 'bertsent model'}: {kind} text classification

Fine-tuned from {link} on `{data_name(config['data'])}` (texts from
`{config.get('text_column', 'text')}`, labels from `{config.get('label_column', 'label')}`)
with bertsent's hand-written PyTorch loop. Classes, in id order: {shown}. These are the
weights of optimizer step {metrics.get('step')}.

## Use

```python
from transformers import pipeline
classify = pipeline("text-classification", model="<this folder>")
classify("I loved every minute of it, a true masterpiece!", truncation=True, max_length={limit})
```

Pass `truncation=True`: a plain `pipeline()` does not truncate, and a text longer than the
model's position limit raises there. `python -m bertsent.predict` cuts long texts to {limit}
tokens the way training did (`{cut}`), which is what the figures below measure.

## Results

{_results(config, metrics, test)}

## Training settings

| setting | value |
|---|---|
{settings}

## Intended use and limits

- Classifying texts like the training data into the classes above. Every text gets one of
  them, often with high confidence, even when none fits: check the calibration before using
  the probabilities as such, and measure on your own texts before relying on it elsewhere.
- Texts longer than {limit} tokens are cut (`{cut}`).
- It inherits the biases of its base model and of its training data; not for decisions about
  people.
- License: {base['license'] or 'that of the base model and the data (not recorded)'}.
"""
