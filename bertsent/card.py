"""A model card (README.md) written beside every exported model, so it can be shared as is."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(config: dict[str, Any], metrics: dict[str, Any],
               names: list[str] | None = None) -> str:
    names = list(names or ("negative", "positive"))
    val = metrics.get("val") or {}
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in val.items() if not isinstance(v, dict))
    hp = ("model", "data", "label_column", "train_samples", "val_samples", "max_length",
          "truncation", "epochs", "batch_size", "grad_accum", "lr", "weight_decay",
          "warmup_ratio", "max_grad_norm", "dropout", "freeze_embeddings", "class_weights",
          "precision", "seed")
    kind = "binary sentiment" if names == ["negative", "positive"] else \
        f"{len(names)}-class classification"
    shown = " / ".join(f"`{n}`" for n in names[:12]) + (" / ..." if len(names) > 12 else "")
    hp_rows = "\n".join(f"| {k} | {config.get(k)} |" for k in hp)
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [sentiment-analysis, bertsent]
---

# Sentiment classifier fine-tuned with bertsent

Fine-tuned from `{config.get('model')}` on `{config.get('data')}` for {kind}
(labels {shown}, in class-id order) by bertsent's hand-written PyTorch loop, run
`{config.get('run_name')}`, optimizer step {metrics.get('step')}.

```python
from transformers import pipeline
classify = pipeline("text-classification", model="<this folder>")
classify("I loved every minute of it, a true masterpiece!")
```

## Validation metrics (the split that selected this checkpoint)

| metric | value |
|---|---|
{rows if rows else '| (no validation run) | |'}

Test-set figures are in `metrics.json` of the run folder and in the project README.

## Training settings

| setting | value |
|---|---|
{hp_rows}

## Intended use and limits

- Intended for English movie-review-like text: polarity of opinionated paragraphs.
- Every text gets one of the {len(names)} labels above, often with high confidence, even
  when none fits (IMDb, for one, has no neutral class: a mixed or sarcastic review is still
  negative or positive); check calibration before using the probabilities as such.
- Reviews longer than {config.get('max_length')} tokens are cut ({config.get('truncation')});
  `bertsent.predict` applies the same cut, a plain `pipeline` does not truncate by default.
- Inherits the biases of the base model and of IMDb's user reviews; not for decisions about
  people.
"""
