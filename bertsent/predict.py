"""python -m bertsent.predict: label texts with a saved model: arguments, stdin, or a file
(--file: a .csv, .tsv, .jsonl, .json or .parquet table, or a .txt file with one text per line),
printed or written to a table (--out: .csv, .tsv, .jsonl or .parquet), one output row per input
row, in order, with every input column."""

from __future__ import annotations

import sys
import typing
from dataclasses import fields

import numpy as np
import torch

from bertsent.cli import parse_overrides
from bertsent.config import PredictConfig, base_type, check_fields, flag_name, from_mapping
from bertsent.errors import fail, run_cli
from bertsent.export import load_exported
from bertsent.jsonio import strict_json
from bertsent.predictions import (
    check_out,
    check_rows,
    input_format,
    output_rows,
    read_rows,
    write_rows,
)
from bertsent.runtime import (
    out_of_memory_is_one_line,
    pick_device,
    setup_process,
)
from bertsent.sampling import longest_first
from bertsent.scoring import for_scoring, scored, workers_for
from bertsent.tokens import Collator, encode_texts, is_blank
from bertsent.tracking import Meter


@torch.inference_mode()
def predict_proba(model, tokenizer, texts: list[str], *, max_length: int, truncation: str,
                  batch_size: int, device: torch.device, precision: str = "fp32",
                  batch_tokens: int = 0, show: bool = False) -> torch.Tensor:
    """Softmax probabilities, (len(texts), num_labels), in input order (with `show`, a
    progress bar, or plain progress lines in a log). Longest texts first, at most
    `batch_size` texts and `batch_tokens` tokens (0: no budget) a forward pass."""
    ids = encode_texts(texts, tokenizer, max_length, truncation)
    collate = Collator(tokenizer.pad_token_id or 0, 1)
    model, autocast = for_scoring(model, precision, device)
    out = torch.empty(len(ids), model.config.num_labels)
    meter = Meter(len(ids), "predict", unit="text", enabled=show, leave=False)
    chunks = longest_first(np.array([len(x) for x in ids], dtype=np.int64), batch_size,
                           batch_tokens, multiple=1)

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with out_of_memory_is_one_line(batch["input_ids"].shape), autocast():
            return model(input_ids=batch["input_ids"].to(device),
                         attention_mask=batch["attention_mask"].to(device)).logits

    done = 0
    batches = (collate([(i, ids[i], 0) for i in chunk]) for chunk in chunks)
    for batch, logits in scored(forward, batches, workers_for(device, len(chunks))):
        out[batch["index"]] = torch.softmax(logits.float(), dim=-1).cpu()
        done += len(batch["index"])
        meter.update(done)
    meter.close()
    return out


def read_inputs(cfg: PredictConfig, texts: list[str], text_column: str
                ) -> tuple[list[dict], list[str]]:
    """(rows, texts) from a --file, the arguments, or stdin; blank texts keep their place."""
    if cfg.file:
        rows, texts = read_rows(cfg.file, text_column)
    else:
        if not texts:
            texts = read_stdin()
        rows = [{"text": t} for t in texts]
    for number, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in an argument (surrogate escapes)
            fail(f"text {number} is not UTF-8: pass UTF-8 text")
    if all(is_blank(t) for t in texts):
        what = f"all {len(texts)} texts are blank" if texts else "the input is empty"
        fail(f"no texts to predict ({what}): give at least one non-empty text")
    return rows, texts


def read_stdin() -> list[str]:
    """One text per line; a leading UTF-8 BOM is dropped, as in every --file format."""
    if sys.stdin is None or sys.stdin.isatty():
        fail("no texts to predict: pass them as arguments, with --file, or on stdin")
    try:
        stream = getattr(sys.stdin, "buffer", None)  # bytes, to check the encoding
        return (stream.read().decode("utf-8-sig") if stream is not None
                else sys.stdin.read().removeprefix("\ufeff")).splitlines()
    except UnicodeDecodeError as exc:
        fail(f"standard input is not UTF-8 text (byte {exc.start}): re-encode it as UTF-8")


def show(texts: list[str], probs: list[list[float] | None], names: list[str],
         as_json: bool) -> None:
    """One line per text: the label, each class's probability and the text's start with its
    line breaks folded (a review with a newline stays one row), or one JSON object."""
    width = max(8, *map(len, names))
    for text, p in zip(texts, probs, strict=True):
        label = None if p is None else names[max(range(len(p)), key=p.__getitem__)]
        if as_json:
            print(strict_json({"text": text, "label": label, "probabilities": None if p is None
                               else dict(zip(names, p, strict=True))}))
        elif p is None:
            print(f"{'(blank)':<{width}}  no text to classify")
        else:
            shown = " ".join(f"{n}={v:.4f}" for n, v in zip(names, p, strict=True))
            print(f"{label:<{width}}  {shown}  {' '.join(text.split())[:70]}")


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        flags, texts = _split_positional(args)
        cfg = from_mapping(parse_overrides(flags, PredictConfig, "bertsent.predict"),
                           cls=PredictConfig)
        if not cfg.model:  # before reading stdin
            fail("--model is required: pass a model folder such as checkpoints/<run>/best")
        check_fields(cfg)
        if cfg.file:
            input_format(cfg.file)  # a format it reads, before the model loads
        if cfg.out:
            check_out(cfg.out, cfg.file)  # before the work
        device = pick_device(cfg.device)
        setup_process(device, cfg.threads)
        loaded = load_exported(cfg.model, device, cfg.max_length)
        rows, texts = read_inputs(cfg, texts, loaded.recorded("text_column", cfg.text_column,
                                                              "text"))
        if cfg.out:
            check_rows(cfg.out, cfg.file, rows, loaded.names)  # before the work
        keep = [i for i, t in enumerate(texts) if not is_blank(t)]
        found = predict_proba(loaded.model, loaded.tokenizer, [texts[i] for i in keep],
                              max_length=loaded.max_length, truncation=loaded.truncation,
                              batch_size=cfg.batch_size, device=device, precision=cfg.precision,
                              batch_tokens=cfg.batch_tokens,
                              show=bool(cfg.out)).tolist()
        probs: list[list[float] | None] = [None] * len(texts)
        for i, p in zip(keep, found, strict=True):
            probs[i] = p
        if len(keep) < len(texts):
            blank = len(texts) - len(keep)
            print(f"{blank} blank text{'s get' if blank > 1 else ' gets'} no label (kept in "
                  "place)",
                  file=sys.stderr)
        if cfg.out:
            write_rows(cfg.out, output_rows(rows, probs, loaded.names))
            print(f"{len(rows)} predictions written to {cfg.out}", file=sys.stderr)
        else:
            show(texts, probs, loaded.names, cfg.json)
        return 0

    return run_cli(entry)


def _split_positional(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate texts from flags (argparse would take a text that starts with '-' as a flag)."""
    hints = typing.get_type_hints(PredictConfig)
    takes_value = {"--config"} | {f"--{flag_name(f.name)}" for f in fields(PredictConfig)
                                  if base_type(hints[f.name])[0] is not bool}
    flags, texts, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            texts += args[i + 1:]
            break
        if arg.startswith("--"):
            flags.append(arg)
            if arg in takes_value and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            texts.append(arg)
        i += 1
    return flags, texts


if __name__ == "__main__":
    sys.exit(main())
