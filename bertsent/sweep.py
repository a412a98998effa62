"""python -m bertsent.sweep: search train settings with Optuna (TPE, median pruning at each
validation point) on the validation split only; resumable, and shared by every process that
uses the same --storage. See docs/sweep.md.

Each trial is an ordinary run per seed, <checkpoint-dir>/<sweep>/trial-N (trial-N-seed-S with
--seeds > 1), logged to <runs-dir>/<sweep>/ (one TensorBoard for the whole sweep). A process
holds a claim (a lock in <sweep>/.claims/) on the trial it runs, so a trial whose process has
gone (Ctrl-C, SIGTERM, a crash) is found RUNNING with its claim free and is continued by the
next process, under the same number and settings, from its last checkpoint.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertsent.cli import build_parser, load_toml
from bertsent.config import (
    TrainConfig,
    canonical,
    check_run_name,
    flag_name,
    from_mapping,
)
from bertsent.errors import fail, run_cli
from bertsent.sweepfiles import report, shown
from bertsent.sweepspace import DEFAULT_SPACE, parse_space, read_space
from bertsent.sweeptrials import (
    DEFAULTS,
    Context,
    fixed_config,
    hooks,
    import_optuna,
    next_trial,
    open_study,
    pruner,
    run_settings,
    run_trial,
    say,
)

PROG = "bertsent.sweep"
OWN = ("space", "trials", "seeds", "prune_after", "storage", "final", "resume",
       "defaults_first")
MACHINE = ("device", "threads", "num_workers", "cache_dir", "progress_every")  # per process
SET_BY_SWEEP = {
    "test": "trials never read the test split and --final scores the best configuration on it",
    "resume_force": "the sweep resumes its trials with their own settings",
}


@dataclass
class Sweep:
    """One process's sweep: the study's definition (fixed settings, space, seeds, pruning;
    stored with the study) and this process's part (folders, storage, machine, what to do)."""

    name: str
    definition: dict[str, Any]
    defined: bool  # given on the command line (else a joining process takes the stored one)
    checkpoint_dir: str = "checkpoints"
    storage: str | None = None
    trials: int | None = None
    resume: bool = False
    final: bool = False
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.checkpoint_dir) / self.name

    @property
    def log_root(self) -> Path:  # the TensorBoard root is the study's, like its settings
        return Path(self.definition["runs_dir"]) / self.name

    def continue_command(self) -> str:
        flags = [("--checkpoint-dir", self.checkpoint_dir, "checkpoints"),
                 ("--storage", self.storage, None)]
        flags += [(f"--{flag_name(k)}", v, None) for k, v in self.machine.items()]
        return (f"python -m {PROG} --resume --run-name {shlex.quote(self.name)}"
                + "".join(f" {f} {shlex.quote(str(v))}" for f, v, default in flags
                          if v is not None and v != default) + (" --final" if self.final else ""))


# ---------------------------------------------------------------- flags
def build_sweep_parser():
    parser = build_parser(TrainConfig, PROG)
    parser.description = __doc__.split("\n\n")[0]
    parser.conflict_handler = "resolve"  # the sweep's own --resume, --run-name and --seed
    for action in parser._actions:  # set by the sweep: refused if given (parse_args)
        if action.dest in SET_BY_SWEEP:
            action.help = argparse.SUPPRESS
    own = parser.add_argument_group("the sweep's own flags (the others are bertsent.train's: "
                                    "the fixed settings of every trial)")
    add = own.add_argument
    add("--space", help="TOML file, one table per searched setting: [lr] low = 1e-5 high = "
        "3e-4 log = true, or [epochs] choices = [1, 2] (default: bertsent/configs/sweep/"
        "default.toml: lr, epochs, batch_size and warmup_ratio)")
    add("--trials", type=int, help="trials in all, finished, pruned or failed, over every "
        "process of the study (default: 20; given again, it changes the total)")
    add("--seeds", type=int, help="runs per configuration, with seeds --seed, --seed + 1, ...; "
        "scored by their mean (default: 1)")
    add("--prune-after", type=int, help="complete trials before the median rule may prune "
        "(default: 3; 0: never prune)")
    add("--storage", help="Optuna storage URL (default: sqlite:///<checkpoint-dir>/<sweep>/"
        "study.db); processes with the same one share the study")
    add("--defaults-first", action="store_true", help="make trial 0 the settings a run gets "
        "without the sweep (the fixed part, else bertsent.train's defaults), so the summary "
        "shows what the search gained over them")
    add("--final", action="store_true", help="then retrain the best configuration on the whole "
        "train split as run <sweep>/final and score it on the test split (the only test read)")
    add("--resume", action="store_true", help="continue sweep --run-name as it was started "
        "(its settings are stored: the other flags may be left out)")
    add("--run-name", help="name of the sweep (default: sweep-<timestamp>)")
    add("--seed", type=int, help="the first seed of each configuration, and the sampler's "
        "(default: 42)")
    return parser


def parse_args(argv: list[str] | None = None) -> Sweep:
    """The sweep from its flags, every setting and the space checked before anything runs."""
    given = vars(build_sweep_parser().parse_args(sys.argv[1:] if argv is None else argv))
    own = {k: given.pop(k) for k in OWN if k in given}
    path = given.pop("config", None)
    from_file = {k.replace("-", "_"): v for k, v in (load_toml(path) if path else {}).items()}
    from_mapping(from_file, source=f"config file {path}")
    given = canonical({**from_file, **given})
    for key, why in SET_BY_SWEEP.items():
        if key in given:
            fail(f"--{flag_name(key)} is the sweep's to set ({why}): drop it")
    name = given.pop("run_name", None)
    if own.get("resume") and not name:
        fail("--resume needs --run-name: the name of the sweep to continue")
    name = name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    check_run_name(name)
    checkpoint_dir = given.pop("checkpoint_dir", TrainConfig.checkpoint_dir)
    runs_dir = given.pop("runs_dir", None)
    machine = {k: given.pop(k) for k in MACHINE if k in given}
    cfg = from_mapping({**given, **machine}).checked()
    if cfg.val_samples == 0:
        fail("--val-samples 0 leaves nothing to score a trial on: give a validation size")
    for key, least in (("trials", 1), ("seeds", 1), ("prune_after", 0)):
        if own.get(key, least) < least:
            fail(f"--{flag_name(key)} must be at least {least}, got {own[key]}")
    if own.get("storage", "x").strip() == "":
        fail("--storage is empty: pass an Optuna storage URL, or leave it out for "
             "<checkpoint-dir>/<sweep>/study.db")
    space = read_space(own.get("space") or DEFAULT_SPACE)
    definition = {"fixed": given, "space": {p: s.table() for p, s in space.items()},
                  **{k: own.get(k, DEFAULTS[k]) for k in ("seeds", "prune_after")},
                  "defaults_first": own.get("defaults_first", False),
                  "runs_dir": runs_dir or TrainConfig.runs_dir}
    defined = bool(given) or runs_dir is not None or any(
        k in own for k in ("space", "seeds", "prune_after", "defaults_first"))
    return Sweep(name, definition, defined, checkpoint_dir,
                 storage=own.get("storage"), trials=own.get("trials"),
                 resume=own.get("resume", False), final=own.get("final", False), machine=machine)


# ---------------------------------------------------------------- the whole sweep
def run(sw: Sweep, stop_after_step: int | None = None) -> int:
    """Trials until the study has --trials, then the report (and --final); returns the exit
    status: 0, or 130/143 when a signal stopped it (the trial in hand is continued later)."""
    study = open_study(sw)
    optuna = import_optuna()
    cfg = fixed_config(sw.definition)
    space = parse_space(sw.definition["space"], f"the space stored with sweep {sw.name}")
    study.pruner = pruner(optuna, sw.definition["prune_after"], cfg.eval_every)
    ctx = Context(sw, optuna, study, space, cfg, stop_after_step)
    searched = "; ".join(p.describe() for p in space.values())
    say(f"sweep {sw.name}: {ctx.total} trials over {searched}, {len(ctx.seeds)} seed(s) each, "
        f"by validation {cfg.select_metric}; trials in "
        f"{sw.folder}, curves: tensorboard --logdir {sw.log_root}")
    if replaced := sorted(set(sw.definition["fixed"]) & set(space)):
        say(f"the search replaces the fixed {', '.join(replaced)}")
    if not cfg.eval_every and sw.definition["prune_after"]:
        say("--eval-every is 0: trials are validated, and may be pruned, at epoch ends only; "
            "pass --eval-every N to prune earlier")
    try:
        while (found := next_trial(ctx)) is not None:
            if code := run_trial(ctx, *found):
                say(f"sweep {sw.name} stopped; continue with {sw.continue_command()}")
                return code
        code = run_final(ctx) if sw.final else 0
        report(ctx)
        return code
    except (KeyboardInterrupt, SystemExit):  # a signal outside a training loop
        say(f"sweep {sw.name} stopped; continue with {sw.continue_command()}")
        raise


def run_final(ctx: Context) -> int:
    """The best configuration retrained on the whole train split (no --train-samples) and
    scored on test: run <sweep>/final."""
    from bertsent.train import train

    running = [t.number for t in ctx.counted() if t.state.name == "RUNNING"]
    if running:
        say(f"--final waits for trials {running}, still running in other processes: continue "
            f"with {ctx.sw.continue_command()} once they have finished")
        return 0
    try:
        best = ctx.study.best_trial
    except ValueError:
        fail(f"no trial of sweep {ctx.sw.name} completed, so there is no best configuration to "
             "retrain: widen the space or raise --trials")
    settings = run_settings(ctx, "final", best.params, ctx.seeds[0], test=True)
    settings.pop("train_samples", None)
    say(f"final run: trial {best.number}'s settings ({shown(best.params)}) on the whole train "
        "split, scored on test")
    result = train(settings, hooks(ctx))
    if result.get("interrupted"):
        say(f"the final run stopped; continue with {ctx.sw.continue_command()}")
        return result["exit_code"]
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
