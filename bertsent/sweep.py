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
import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertsent.checkpoint import step_checkpoints
from bertsent.cli import build_parser, load_toml
from bertsent.config import (
    LOWER_IS_BETTER,
    TrainConfig,
    canonical,
    check_run_name,
    flag_name,
    from_mapping,
)
from bertsent.errors import UserError, fail, run_cli
from bertsent.runfolder import LOG_OWNER_FILE, RunLock, is_finished
from bertsent.sweepfiles import DEFAULT_SPACE, Param, parse_space, read_space, report, shown

PROG = "bertsent.sweep"
OWN = ("space", "trials", "seeds", "prune_after", "storage", "final", "resume",
       "defaults_first")
MACHINE = ("device", "threads", "num_workers", "cache_dir", "progress_every")  # per process
SET_BY_SWEEP = {
    "test": "trials never read the test split and --final scores the best configuration on it",
    "resume_force": "the sweep resumes its trials with their own settings",
}
DEFAULTS = {"trials": 20, "seeds": 1, "prune_after": 3}


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


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


# ---------------------------------------------------------------- the study
def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        fail("the sweep needs optuna, which is not installed: pip install -e '.[sweep]'")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep says what happens
    return optuna


def open_storage(sw: Sweep, optuna: Any) -> Any:
    """The RDB storage (SQLite by default: processes wait up to a minute for its lock)."""
    import sqlalchemy.exc

    url = sw.storage or f"sqlite:///{(sw.folder / 'study.db').resolve()}"
    if sw.storage is None:
        if sw.resume and not (sw.folder / "study.db").is_file():
            fail(f"there is no sweep {sw.name} in {sw.checkpoint_dir} (no {sw.folder}/study.db):"
                 " check --run-name and --checkpoint-dir, or drop --resume to start it")
        sw.folder.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(5):  # two processes creating the tables at once: one tries again
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except sqlalchemy.exc.DBAPIError as exc:  # locked, or the other's row came first
            if attempt == 4:
                fail(f"cannot open the storage {url} ({str(exc).splitlines()[0]}): check "
                     "--storage")
            time.sleep(1 + attempt)
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as exc:
            fail(f"cannot open the storage {url} ({exc}): pass an Optuna storage URL such as "
                 "sqlite:///study.db or postgresql://user@host/db")


def open_study(sw: Sweep) -> Any:
    """Create the study or join it; a joining process must ask for the same sweep."""
    optuna = import_optuna()
    storage = open_storage(sw, optuna)
    exists = sw.name in optuna.get_all_study_names(storage)
    if sw.resume and not exists:
        fail(f"there is no sweep {sw.name} in the storage {sw.storage}: check --run-name and "
             "--storage, or drop --resume to start it")
    if not exists:
        check_new_folder(sw)
    metric = fixed_config(sw.definition).select_metric
    study = optuna.create_study(storage=storage, study_name=sw.name, load_if_exists=True,
                                direction="minimize" if metric in LOWER_IS_BETTER else
                                "maximize")
    stored = study.user_attrs.get("definition")
    if stored is None:
        if sw.definition.get("defaults_first"):
            study.enqueue_trial(unswept_values(sw.definition))
        study.set_user_attr("definition", sw.definition)
    elif sw.defined and (changes := changed(stored, sw.definition)):
        fail(f"sweep {sw.name} was started with other settings ({'; '.join(changes)}): pass "
             f"the same ones, or only {sw.continue_command()} to continue it as it was")
    sw.definition = stored or sw.definition
    metric = fixed_config(sw.definition).select_metric
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    if study.direction.name.lower() != direction:
        fail(f"study {sw.name} is set to {study.direction.name.lower()}, but validation {metric} "
             f"needs {direction}: pass another --run-name")
    if sw.trials is not None or "trials" not in study.user_attrs:
        study.set_user_attr("trials", sw.trials or DEFAULTS["trials"])
    return study


def unswept_values(definition: dict[str, Any]) -> dict[str, Any]:
    """What each searched setting is in a run without the sweep: the fixed part's value, else
    bertsent.train's default; refused when the space cannot draw it."""
    fixed = fixed_config(definition)
    space = parse_space(definition["space"], "the space")
    values = {}
    for name, param in space.items():
        value = getattr(fixed, name)
        inside = value in param.choices if param.choices is not None else (
            value is not None and param.low <= value <= param.high)
        if not inside:
            fail(f"--defaults-first: {name} {value!r} (what a run without the sweep uses) is "
                 f"outside the space ({param.describe()}): widen it, or drop --defaults-first")
        values[name] = value
    return values


def fixed_config(definition: dict[str, Any]) -> TrainConfig:
    return from_mapping(definition["fixed"])


def changed(stored: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """'name: stored -> given' for each difference between two sweep definitions."""
    mine = json.loads(json.dumps(mine))  # as stored: tuples are lists
    before, after = fixed_config(stored).to_dict(), fixed_config(mine).to_dict()
    out = [f"{k}: {before[k]!r} -> {after[k]!r}" for k in before if before[k] != after[k]]
    out += [f"{k}: {stored[k]} -> {mine[k]}" for k in ("space", "seeds", "prune_after")
            if stored[k] != mine[k]]
    if Path(stored["runs_dir"]).resolve() != Path(mine["runs_dir"]).resolve():
        out.append(f"runs_dir: {stored['runs_dir']} -> {mine['runs_dir']}")
    return out


def check_new_folder(sw: Sweep) -> None:
    """A new sweep's folders must not be a train run's, nor another sweep's."""
    if (sw.folder / "config.json").is_file() or step_checkpoints(sw.folder):
        fail(f"{sw.folder} is a bertsent.train run, not a sweep: pass another --run-name")
    if any(sw.folder.glob("trial-*")):
        fail(f"{sw.folder} holds the trials of a sweep that is not in this storage: pass "
             "another --run-name, or the --storage that sweep used")
    if (sw.log_root / LOG_OWNER_FILE).is_file():
        fail(f"{sw.log_root} is the TensorBoard log of a bertsent.train run: pass another "
             "--run-name")


# ---------------------------------------------------------------- trials
@dataclass
class Context:
    """What running the trials needs besides the Sweep."""

    sw: Sweep
    optuna: Any
    study: Any
    space: dict[str, Param]
    cfg: TrainConfig  # the fixed settings, resolved
    stop_after_step: int | None = None  # tests: stop a run as SIGTERM would
    last_failure: str | None = None

    @property
    def seeds(self) -> list[int]:
        return [self.cfg.seed + i for i in range(self.sw.definition["seeds"])]

    @property
    def total(self) -> int:
        return self.study.user_attrs["trials"]

    def counted(self) -> list[Any]:
        """The trials --trials counts: all but queued ones and surplus ones (see next_trial)."""
        return [t for t in self.study.get_trials(deepcopy=False)
                if t.state.name != "WAITING" and not t.user_attrs.get("surplus")]


def pruner(optuna: Any, prune_after: int, eval_every: int) -> Any:
    """Median pruning once `prune_after` trials completed, from a trial's second in-epoch
    validation point on (the first one lies in or near the warm-up, where curves cross)."""
    if not prune_after:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=prune_after,
                                       n_warmup_steps=2 * eval_every)


def claim(ctx: Context, number: int) -> RunLock | None:
    """The lock that makes trial `number` this process's (None: another live process has it)."""
    lock = RunLock(ctx.sw.folder / ".claims" / f"trial-{number}")
    try:
        return lock.acquire()
    except UserError as exc:
        if "is in use by" in str(exc):
            return None
        raise


def next_trial(ctx: Context) -> tuple[Any, RunLock, bool] | None:
    """(trial, its claim, resumed): an interrupted trial first, else a new one while the study
    has fewer than --trials. Processes that ask at once may overshoot: a trial that finds
    --trials others before it is marked FAIL and "surplus", and is not counted or shown."""
    optuna, study = ctx.optuna, ctx.study
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not t.user_attrs.get("surplus") and (lock := claim(ctx, t.number)):
            return optuna.trial.Trial(study, t._trial_id), lock, True
    while len(ctx.counted()) < ctx.total:
        trial = study.ask()
        lock = claim(ctx, trial.number)
        if lock is None:
            continue  # a resuming process took it between our ask and our claim
        if sum(t.number < trial.number for t in ctx.counted()) >= ctx.total:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            lock.release()
            return None
        return trial, lock, False
    return None


def run_name(ctx: Context, number: int, seed: int) -> str:
    return f"trial-{number}" if len(ctx.seeds) == 1 else f"trial-{number}-seed-{seed}"


def run_settings(ctx: Context, name: str, params: dict[str, Any], seed: int,
                 test: bool = False) -> dict[str, Any]:
    """A trial's (or the final) run: fixed + searched settings, in the sweep's folders; a run
    that has a checkpoint or has finished is resumed (a finished one returns its metrics)."""
    settings = {**ctx.sw.definition["fixed"], **params, **ctx.sw.machine, "seed": seed,
                "run_name": name, "checkpoint_dir": str(ctx.sw.folder),
                "runs_dir": str(ctx.sw.log_root), "test": test}
    if step_checkpoints(ctx.sw.folder / name) or is_finished(ctx.sw.folder / name):
        settings.update(resume="latest", resume_force=True)  # force: machine flags may differ
    return settings


def hooks(ctx: Context, on_validation: Any = None) -> Any:
    from bertsent.train import Hooks

    stop = ctx.stop_after_step
    return Hooks(stop_after_step=Hooks.from_env().stop_after_step if stop is None else stop,
                 on_validation=on_validation)


def run_trial(ctx: Context, trial: Any, lock: RunLock, resumed: bool) -> int:
    """Run the trial's seeds one after the other and tell the study; the first seed's curve
    is the one reported for pruning. Returns 0, or the exit status of an interrupted run."""
    from bertsent.runtime import is_oom
    from bertsent.train import train

    start, state = time.monotonic(), ctx.optuna.trial.TrialState
    metric = ctx.cfg.select_metric
    try:
        # seeded by the trial's number: a resumed sweep draws what an uninterrupted one would,
        # and processes that start together do not draw the same settings
        ctx.study.sampler = ctx.optuna.samplers.TPESampler(
            seed=ctx.cfg.seed + trial.number, n_startup_trials=max(3, min(10, ctx.total // 3)))
        params = {name: p.suggest(trial) for name, p in ctx.space.items()}
        if resumed:
            say(f"continuing trial {trial.number} ({shown(params)})")
        values: list[float] = []
        for i, seed in enumerate(ctx.seeds):
            def judge(step: int, metrics: dict[str, Any]) -> bool:
                trial.report(float(metrics[metric]), step)
                return trial.should_prune()

            try:
                result = train(run_settings(ctx, run_name(ctx, trial.number, seed), params, seed),
                               hooks(ctx, judge if i == 0 else None))
            except UserError as exc:
                return failed(ctx, trial, params, str(exc), start)
            except Exception as exc:
                if not is_oom(exc):
                    failed(ctx, trial, params, f"{type(exc).__name__}: {exc}", start)
                    raise
                return failed(ctx, trial, params, "out of memory: lower --batch-size or "
                              "--max-length in the space or the fixed flags", start)
            if result.get("interrupted"):
                add_seconds(trial, start)
                return result["exit_code"]
            if result.get("best_val_metric") is None:
                return failed(ctx, trial, params, "the run had no validation point", start)
            values.append(result["best_val_metric"])
            if i == 0 and trial.should_prune():  # also after a resume that ended it at once
                trial.set_user_attr("pruned_at", result["steps"])
                return finished(ctx, trial, params, values, start, state.PRUNED)
        return finished(ctx, trial, params, values, start, state.COMPLETE)
    finally:
        lock.release()


def add_seconds(trial: Any, start: float) -> float:
    seconds = trial.user_attrs.get("seconds", 0.0) + time.monotonic() - start
    trial.set_user_attr("seconds", seconds)
    return seconds


def finished(ctx: Context, trial: Any, params: dict[str, Any], values: list[float],
             start: float, state: Any) -> int:
    seconds = add_seconds(trial, start)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    for key, value in (("values", values), ("std", spread), ("min", min(values)),
                       ("max", max(values))):
        trial.set_user_attr(key, value)
    mean = statistics.fmean(values)
    if state == state.COMPLETE:
        ctx.study.tell(trial, mean)
    else:
        ctx.study.tell(trial, state=state)
    ctx.last_failure = None
    what = "finished" if state == state.COMPLETE else \
        f"pruned at step {trial.user_attrs['pruned_at']}"
    figure = f"{mean:.4f}" + (f" ± {spread:.4f}" if len(values) > 1 else "")
    progress(ctx, trial, f"{what}: {ctx.cfg.select_metric} {figure}", params, seconds)
    return 0


def failed(ctx: Context, trial: Any, params: dict[str, Any], reason: str, start: float) -> int:
    """FAIL with its reason; the study goes on, unless two trials in a row fail the same way
    (a mistake in the fixed settings fails every trial: better said at once)."""
    seconds = add_seconds(trial, start)
    trial.set_user_attr("reason", reason)
    ctx.study.tell(trial, state=ctx.optuna.trial.TrialState.FAIL)
    progress(ctx, trial, f"failed: {reason}", params, seconds)
    if reason == ctx.last_failure:
        fail(f"two trials in a row failed the same way ({reason}); the sweep stopped: fix the "
             f"settings or the space, then continue with {ctx.sw.continue_command()}")
    ctx.last_failure = reason
    return 0


def progress(ctx: Context, trial: Any, what: str, params: dict[str, Any], seconds: float) -> None:
    """'trial 3 finished: accuracy 0.8120 (lr=3e-05, epochs=2) in 1.3 min; best so far 0.8200
    (trial 1) [4/20 done]' on stderr."""
    done = sum(t.state.name != "RUNNING" for t in ctx.counted())
    try:
        best = ctx.study.best_trial
        best_text = f"best so far {best.value:.4f} (trial {best.number})"
    except ValueError:
        best_text = "no trial complete yet"
    say(f"trial {trial.number} {what} ({shown(params)}) in {seconds / 60:.1f} min; {best_text} "
        f"[{done}/{ctx.total} done]")


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
