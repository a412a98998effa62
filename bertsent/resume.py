"""Which settings may differ between a checkpoint and the run that resumes it."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertsent import checkpoint as ckpt
from bertsent import dataid
from bertsent import distributed as D
from bertsent.config import TrainConfig, canonical, from_mapping
from bertsent.errors import fail
from bertsent.labels import LabelMap
from bertsent.runfolder import METRICS, is_finished, relative_path

# Changing these changes what is trained or the order it is seen in, or where the run's
# outputs are: never allowed.
UNSAFE = ("model", "data", "runs_dir", "text_column", "label_column", "num_labels", "labels",
          "max_length", "truncation", "train_samples", "val_samples", "seed", "group_by_length",
          "epochs", "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "max_steps",
          "freeze_embeddings", "sparse_embeddings", "grad_accum", "dropout", "head_lr_mult",
          "class_weights", "layer_lr_decay", "select_metric", "ema")
# These change how the run is evaluated, logged or computed: allowed with --resume-force.
SAFE = ("test_samples", "eval_batch_size", "eval_tokens", "patience", "eval_every",
        "save_every", "log_every", "keep_last", "sanity_eval_batches", "precision", "compile",
        "attention", "cut_last_layer", "device", "num_workers", "skip_nonfinite", "cache_dir",
        "test")
# Settings that arrived with a change of behaviour: a checkpoint written before one of them ran
# with this value, not with the setting's default (until --attention, training steps used SDPA;
# until --cut-last-layer, they computed every position of the last layer).
PREDATED = {"attention": "sdpa", "cut_last_layer": False}
# Settings that name a place: a checkpoint records the working folder it was written from, and
# a resume resolves them from there, whatever folder it is started in.
PATHS = ("model", "data", "runs_dir", "cache_dir")


@dataclass(frozen=True)
class Rules:
    """An entry point's settings class and which of its settings may differ on resume."""

    cls: type
    unsafe: tuple[str, ...]
    safe: tuple[str, ...]
    module: str = "bertsent.train"


TRAIN = Rules(TrainConfig, UNSAFE, SAFE)


def run_facts(module: str, identity: dict | None) -> dict[str, Any]:
    """What every checkpoint records besides the settings: which entry point wrote it, the
    working folder its relative paths start from, and what its data is."""
    return {"entry": module, "origin": os.getcwd(), "data_identity": identity}


def entry_by_settings(config: dict[str, Any]) -> str:
    """The entry point whose settings these are: only pre-training has a mask."""
    return "bertsent.pretrain" if "mask_prob" in config else "bertsent.train"


def entry_of(state: dict[str, Any]) -> str:
    """The entry point that wrote a checkpoint (older ones: told by their settings)."""
    return state.get("entry") or entry_by_settings(state.get("config", {}))


def check_entry(found: str, rules: Rules, where: Path) -> None:
    if found != rules.module:
        fail(f"{where} is a {found} run, not a {rules.module} one: resume it with "
             f"python -m {found} --resume latest --run-name {where.name}, or start a new "
             "--run-name")


def folder_entry(run_folder: Path) -> str | None:
    """The entry point a run folder belongs to, from the config.json it wrote at its start."""
    try:
        config = json.loads((run_folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return entry_by_settings(config)


def as_written(config: dict[str, Any], cls: type) -> dict[str, Any]:
    """A checkpoint's settings under their current names, with what a checkpoint older than a
    PREDATED setting ran with (so that resuming it continues exactly as it ran)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {**{k: v for k, v in PREDATED.items() if k in known}, **canonical(config)}


def anchored(saved: dict[str, Any], origin: str | None) -> dict[str, Any]:
    """The checkpoint's settings with their relative paths resolved from the folder the run
    was started in, and written relative to this one (a hub id stays as it is): the same
    folders, not whatever the same strings name from here."""
    if not origin:
        return saved
    out = dict(saved)
    for name in PATHS:
        value = saved.get(name)
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
            continue
        there = Path(origin) / value
        if name in ("model", "data") and not there.exists():
            continue  # a hub id, or a folder that is gone (reported when it is read)
        out[name] = same_or_relative(value, there)
    return out


def same_place(a: Any, b: Any) -> bool:
    """Two path settings that name one folder (a hub id only equals itself)."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return (pa.exists() or pb.exists()) and pa.resolve() == pb.resolve()


def differences(saved: dict[str, Any], saved_world: int, cfg: Any, world: int,
                rules: Rules = TRAIN, by_content: tuple[str, ...] = ()
                ) -> tuple[list[str], list[str]]:
    """(unsafe, safe) differences as 'name: saved -> now' strings. A setting that a checkpoint
    predates (e.g. class_weights) counts as its default, which is what that run used (a
    PREDATED one, as_written: what it ran with). Paths
    are compared by the folder they name; `by_content` settings (the data, when the
    checkpoint has its identity) are compared by what they hold, once read."""
    now = cfg.to_dict()
    # a setting added after the checkpoint was written had its default then
    saved = {**rules.cls().to_dict(), **canonical(saved)}

    def differ(k: str) -> bool:
        if k in by_content:
            return False
        return not same_place(saved[k], now[k]) if k in PATHS else saved[k] != now[k]

    unsafe = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in rules.unsafe if differ(k)]
    safe = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in rules.safe if differ(k)]
    before, after = saved["batch_size"] * saved_world, cfg.batch_size * world
    if before != after:
        unsafe.append(f"global batch (batch_size x processes): {saved['batch_size']} x "
                      f"{saved_world} = {before} -> {cfg.batch_size} x {world} = {after}")
    return unsafe, safe


def check_compatible(saved: dict[str, Any], saved_world: int, cfg: Any, world: int,
                     rules: Rules = TRAIN, by_content: tuple[str, ...] = ()) -> None:
    unsafe, safe = differences(saved, saved_world, cfg, world, rules, by_content)
    if unsafe:
        fail("cannot resume: the checkpoint was made with other settings ("
             + "; ".join(unsafe) + "): resume with the same settings or start a new run")
    if safe and not cfg.resume_force:
        fail("the checkpoint was made with other settings (" + "; ".join(safe)
             + "): pass --resume-force to resume with the new ones")
    if safe:  # forced: said once, so that the run's log records what changed where
        print("note: resuming with other settings than the checkpoint's (" + "; ".join(safe)
              + "), as --resume-force allows", file=sys.stderr)


class RunFinished(Exception):
    """--resume pointed at a run that already wrote its final metrics: nothing to continue."""

    def __init__(self, run_folder: Path, metrics: dict):
        super().__init__(f"run {run_folder.name} is finished (its results are in "
                         f"{run_folder / METRICS}): nothing to resume; start a new "
                         "--run-name to train again")
        self.metrics = metrics


def saved_labels(state: dict | None) -> dict | None:
    """The class map a checkpoint was trained with (None for a new run). Checkpoints written
    before the map had an entry of its own kept it in their config (num_labels, and labels
    when not plain ids)."""
    if state is None:
        return None
    if "labels" in state:
        return state["labels"]
    config = state["config"]
    if config.get("labels"):
        return {"names": list(config["labels"]), "by_id": False}
    return {"names": list(LabelMap.identity(config["num_labels"]).names), "by_id": True}


def read_metrics(run_folder: Path) -> dict:
    try:
        return json.loads((run_folder / METRICS).read_text())
    except (OSError, ValueError):
        return {}


def resolve_resume(overrides: dict[str, Any], rules: Rules = TRAIN) -> tuple[Any, dict | None]:
    """The config to run with: on resume, the checkpoint's settings under the user's flags.

    A resumed run writes into the folder its checkpoint is in (a copied run continues in the
    copy, never in the folder it was copied from), so the run name and checkpoint root come
    from that folder; a --run-name that names another folder is refused.
    """
    cfg = from_mapping(overrides, rules.cls).checked()
    if not cfg.resume:
        return cfg, None
    named = Path(cfg.checkpoint_dir) / (cfg.run_name or "")
    if cfg.run_name and (kind := folder_entry(named)):
        check_entry(kind, rules, named)  # before a finished run's results are shown as ours
    if cfg.resume == "latest" and cfg.run_name and is_finished(named) and \
            not ckpt.step_checkpoints(named):  # finished, and its checkpoints removed
        raise RunFinished(named, read_metrics(named))
    if cfg.resume == "latest":
        folder, notes = ckpt.find_latest(Path(cfg.checkpoint_dir), cfg.run_name)
        for note in notes:
            print(note, file=sys.stderr)
    else:
        folder = Path(cfg.resume)
    state = ckpt.load_checkpoint(folder)  # exists and is sealed, before anything else is said
    run_folder = folder.resolve().parent
    check_entry(entry_of(state), rules, run_folder)
    given = overrides.get("run_name")
    if given and given != run_folder.name:
        fail(f"--run-name {given} names another run than the checkpoint {folder} (run "
             f"{run_folder.name}): a resumed run continues in its checkpoint's folder; drop "
             "--run-name or pass that run's name")
    saved = anchored(as_written(state["config"], rules.cls), state.get("origin"))
    identity = state.get("data_identity")
    merged = {**saved, **canonical(overrides), "run_name": run_folder.name,
              "checkpoint_dir": same_or_relative(cfg.checkpoint_dir, run_folder.parent)}
    if "data" not in overrides and identity and identity.get("kind") == "folder":
        where = dataid.locate(saved["data"], identity, f"checkpoint {folder}")
        merged["data"] = same_or_relative(saved["data"], Path(where))
    cfg = from_mapping(merged, rules.cls).checked()
    saved_world, world = state.get("world_size", 1), D.world_size_from_env()
    check_compatible(saved, saved_world, cfg, world, rules,
                     by_content=("data",) if identity else ())
    if is_finished(run_folder):
        raise RunFinished(run_folder, read_metrics(run_folder))
    state["resumed_from"] = (f"resuming run {cfg.run_name} in {run_folder} from {folder.name} "
                             f"(step {state['progress']['step']}"
                             + (f"; written by {saved_world} processes, resumed by {world}"
                                if saved_world != world else "") + ")")  # said once checked
    return cfg, state


def resolve_or_finished(overrides: dict[str, Any], rules: Rules = TRAIN
                        ) -> tuple[Any, dict | None, dict | None]:
    """(config, checkpoint state, None), or for a run that has finished (None, None, its
    metrics as the result), with the line that says so."""
    try:
        cfg, state = resolve_resume(overrides, rules)
    except RunFinished as done:
        D.say(str(done))
        return None, None, {**done.metrics, "already_finished": True, "history": []}
    return cfg, state, None


def same_or_relative(given: str, folder: Path) -> str:
    """A folder as the user wrote it when it is that folder from here, else relative to the
    working directory: config files and results then hold no machine's absolute path."""
    if Path(given).expanduser().resolve() == Path(folder).resolve():
        return given
    return relative_path(folder)


def resume_command(cfg: Any, module: str = "bertsent.train") -> str:
    """The whole command that continues this run (`--resume latest` alone would pick the newest
    run of the checkpoint root, which may be another one)."""
    where = "" if cfg.checkpoint_dir == "checkpoints" else \
        f" --checkpoint-dir {shlex.quote(cfg.checkpoint_dir)}"
    return (f"python -m {module} --resume latest --run-name {shlex.quote(cfg.run_name)}"
            f"{where}")
