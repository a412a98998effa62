"""python -m bertsent.predict: label texts with a saved model (arguments, --file or stdin)."""

from __future__ import annotations

import sys

import torch

from bertsent.cli import parse_overrides
from bertsent.config import PredictConfig, check_fields, from_mapping
from bertsent.errors import fail, run_cli
from bertsent.export import load_exported
from bertsent.jsonio import strict_json
from bertsent.runtime import autocast_for, out_of_memory_is_one_line, pick_device
from bertsent.tokens import Collator, encode_texts, is_blank


@torch.inference_mode()
def predict_proba(model, tokenizer, texts: list[str], *, max_length: int, truncation: str,
                  batch_size: int, device: torch.device, precision: str = "fp32"
                  ) -> torch.Tensor:
    """Softmax probabilities, (len(texts), num_labels), in input order."""
    ids = encode_texts(texts, tokenizer, max_length, truncation)
    collate = Collator(tokenizer.pad_token_id or 0, 1)
    autocast = autocast_for(precision, device)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # little padding per batch
    out = torch.empty(len(ids), model.config.num_labels)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([(i, ids[i], 0) for i in chunk])
        with out_of_memory_is_one_line(batch["input_ids"].shape), autocast():
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
        out[chunk] = torch.softmax(logits.float(), dim=-1).cpu()
    return out


def read_texts(cfg: PredictConfig, texts: list[str]) -> list[str]:
    if cfg.file:
        try:
            with open(cfg.file, encoding="utf-8") as fh:
                texts = texts + [line.rstrip("\n") for line in fh]
        except FileNotFoundError:
            fail(f"--file {cfg.file} does not exist: pass a text file with one review per line")
        except UnicodeDecodeError:
            fail(f"--file {cfg.file} is not UTF-8 text: re-encode it as UTF-8")
        except OSError as exc:
            fail(f"--file {cfg.file} cannot be read ({exc.strerror}): check the path")
    elif not texts:
        if sys.stdin is None or sys.stdin.isatty():
            fail("no texts to predict: pass them as arguments, with --file, or on stdin")
        try:
            stream = getattr(sys.stdin, "buffer", None)  # bytes, to check the encoding
            texts = (stream.read().decode("utf-8") if stream is not None
                     else sys.stdin.read()).splitlines()
        except UnicodeDecodeError as exc:
            fail(f"standard input is not UTF-8 text (byte {exc.start}): re-encode it as UTF-8")
    for number, text in enumerate(texts, 1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in an argument (surrogate escapes)
            fail(f"text {number} is not UTF-8: pass UTF-8 text")
    texts = [t for t in texts if not is_blank(t)]
    if not texts:
        fail("no texts to predict (the input is empty): give at least one non-empty text")
    return texts


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        flags, texts = _split_positional(args)
        cfg = from_mapping(parse_overrides(flags, PredictConfig, "bertsent.predict"),
                           cls=PredictConfig)
        if not cfg.model:  # before reading stdin
            fail("--model is required: pass a model folder such as checkpoints/<run>/best")
        check_fields(cfg)
        texts = read_texts(cfg, texts)
        device = pick_device(cfg.device)
        loaded = load_exported(cfg.model, device, cfg.max_length)
        probs = predict_proba(loaded.model, loaded.tokenizer, texts,
                              max_length=loaded.max_length, truncation=loaded.truncation,
                              batch_size=cfg.batch_size, device=device, precision=cfg.precision)
        names = loaded.names
        width = max(8, *map(len, names))
        for text, p in zip(texts, probs.tolist(), strict=True):
            label = names[max(range(len(p)), key=p.__getitem__)]
            if cfg.json:
                print(strict_json({"text": text, "label": label,
                                  "probabilities": dict(zip(names, p, strict=True))}))
            else:
                shown = " ".join(f"{n}={v:.4f}" for n, v in zip(names, p, strict=True))
                print(f"{label:<{width}}  {shown}  {text[:70]}")
        return 0

    return run_cli(entry)


def _split_positional(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate texts from flags (argparse would take a text that starts with '-' as a flag)."""
    flags, texts, i = [], [], 0
    takes_value = {"--model", "--file", "--batch-size", "--max-length", "--device",
                   "--precision", "--config"}
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
