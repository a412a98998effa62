"""Checkpoint averaging (`python -m bertsent.average --run checkpoints/<run> --last 4`): the
equal-weight mean of the weights a run evaluated at its last step checkpoints, written as a
model folder that evaluate and predict take; `--models a,b --out-dir soup` averages exported
models instead (a model soup: soup.py).

`--ema` averages every step, with weights that fall off over about 1 / (1 - decay) steps;
this averages a few points spread over the run's last thousands of steps, equally. It costs
no training: keep the step checkpoints (`--keep-checkpoints --keep-last N`), then compare the
average with the run's best on the reviews it chose on (`evaluate --split selection`) before
any test pass.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from bertsent.checkpoint import load_checkpoint, step_checkpoints, step_of, verify
from bertsent.cli import parse_overrides
from bertsent.config import AverageConfig, from_mapping
from bertsent.dataid import recorded_location
from bertsent.errors import fail, run_cli
from bertsent.export import META_FILE, Exported, load_exported, read_meta, save_model
from bertsent.jsonio import strict_json
from bertsent.runfolder import relative_path
from bertsent.soup import model_folders, model_states


def evaluated_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint's run evaluated and exported at that step: its --ema average
    where it kept one, else the training weights."""
    weights = dict(state["model"])
    ema = state.get("ema")
    if ema:
        weights.update(zip(ema["names"], ema["shadow"], strict=True))
    return weights


def mean_weights(states: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The equal-weight mean of floating-point tensors (summed in fp64, returned in each
    tensor's own dtype), one state in memory at a time; other tensors (integer buffers) must
    be the same in every state."""
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    count = 0
    for state in states:
        if not count:
            dtypes = {name: tensor.dtype for name, tensor in state.items()}
        elif state.keys() != total.keys():
            raise ValueError("the checkpoints hold different models")
        for name, tensor in state.items():
            if not tensor.is_floating_point():
                if count and not torch.equal(total[name], tensor):
                    raise ValueError(f"{name} differs between checkpoints")
                total[name] = tensor
            elif count:
                total[name] += tensor.double()
            else:
                total[name] = tensor.double()
        count += 1
    if not count:
        raise ValueError("no checkpoints to average")
    return {name: (t / count).to(dtypes[name]) if t.is_floating_point() else t
            for name, t in total.items()}


def chosen_checkpoints(run: Path, last: int) -> list[Path]:
    """The run's `last` newest complete step checkpoints, oldest first."""
    if not run.is_dir():
        fail(f"--run {run} is not a folder: pass a run's checkpoint folder, e.g. "
             "checkpoints/<run>")
    complete = [p for p in step_checkpoints(run) if verify(p) is None]
    if len(complete) < last:
        fail(f"{run} holds {len(complete)} complete step checkpoint(s) and --last asks for "
             f"{last}: pass --last {len(complete)} or fewer"
             if complete else
             f"{run} holds no complete step checkpoints (a finished run removes them): train "
             f"with --keep-checkpoints --keep-last {last}")
    return complete[-last:]


def exported_model(run: Path) -> Path:
    """The run's exported model: its shape, tokenizer, label names and settings."""
    for name in ("final", "best"):
        if (run / name / META_FILE).is_file():
            return run / name
    fail(f"{run} has no exported model (final/ or best/) to take the model's shape, tokenizer "
         "and settings from: let the run reach its first validation point")


def output_folder(cfg: AverageConfig, run: Path | None) -> Path:
    """--out-dir, new or empty or an earlier average (which is replaced once the new one is
    written): never a trained model's folder."""
    out = Path(cfg.out_dir).expanduser() if cfg.out_dir else run / f"average-{cfg.last}"
    if out.exists() and not out.is_dir():
        fail(f"--out-dir {out} is a file: pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not is_average(out):
        fail(f"--out-dir {out} already holds files that are not an earlier average: pass a "
             "new or empty folder")
    return out


def is_average(folder: Path) -> bool:
    """Whether a folder holds an earlier average (of steps or models), which may be replaced."""
    metrics = read_meta(str(folder)).get("metrics", {})
    return "averaged_steps" in metrics or "souped_models" in metrics


def write_average(out: Path, loaded: Exported, source: Path,
                  metrics: dict[str, Any]) -> dict[str, Any]:
    """The averaged model with `source`'s tokenizer, settings and data, its location
    recorded relative to the new folder; returns what the command prints."""
    identity = loaded.meta.get("data_identity")
    if identity and identity.get("kind") == "folder":
        identity = {**identity, "location": recorded_location(identity, source.resolve())}
    save_model(out, loaded.model, loaded.tokenizer, loaded.meta["config"], metrics,
               loaded.names, identity)
    return {"model_dir": relative_path(out), **metrics,
            "evaluate": f"python -m bertsent.evaluate --model {relative_path(out)} "
                        "--split selection"}


def average_steps(cfg: AverageConfig) -> dict[str, Any]:
    """--run: the mean of the weights the run evaluated at its last step checkpoints."""
    folder = Path(cfg.run).expanduser()
    chosen = chosen_checkpoints(folder, cfg.last)
    source = exported_model(folder)
    out = output_folder(cfg, folder)
    loaded = load_exported(str(source), torch.device("cpu"))  # evaluate's and predict's loader
    model = loaded.model
    try:
        average = mean_weights(evaluated_weights(load_checkpoint(p)) for p in chosen)
        missing, unexpected = model.load_state_dict(average, strict=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        fail(f"the checkpoints in {folder} cannot be averaged into {source}'s model ({exc}): "
             "pass a folder that holds one run")
    if unexpected or missing:
        fail(f"the checkpoints in {folder} do not fit {source}'s model "
             f"({(missing + unexpected)[:3]}): pass a folder that holds one run")
    steps = [step_of(p) for p in chosen]
    return write_average(out, loaded, source, {"averaged_steps": steps})


def average_models(cfg: AverageConfig) -> dict[str, Any]:
    """--models: a model soup, the mean of exported models (soup.py says when it holds)."""
    folders = model_folders(cfg)
    out = output_folder(cfg, None)
    first, states = model_states(folders)
    try:
        first.model.load_state_dict(mean_weights(states))
    except (ValueError, RuntimeError) as exc:
        fail(f"--models cannot be averaged ({str(exc).splitlines()[0]}): list models of one "
             "architecture, fine-tuned from the same base")
    souped = [relative_path(f) for f in folders]
    return write_average(out, first, folders[0], {"souped_models": souped})


def run(cfg: AverageConfig) -> dict[str, Any]:
    cfg = cfg.checked()
    if cfg.models is not None:
        return average_models(cfg)
    if not cfg.run:
        fail("--run is required: pass a run's checkpoint folder, e.g. checkpoints/<run> (or "
             "--models to average exported models)")
    return average_steps(cfg)


def main(argv: list[str] | None = None) -> int:
    def entry() -> int:
        args = parse_overrides(argv, AverageConfig, prog="bertsent.average")
        print(strict_json(run(from_mapping(args, cls=AverageConfig))), flush=True)
        return 0

    return run_cli(entry)


if __name__ == "__main__":
    sys.exit(main())
