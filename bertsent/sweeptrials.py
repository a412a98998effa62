"""The sweep's study and its trials: the Optuna storage and study (created or joined), the
median pruner fed by each run's own validation points, the claims that let a stopped trial be
continued under its number by the next process, and one trial as ordinary bertsent runs (one
per seed) scored by their mean. bertsent/sweep.py is the entry point that drives these.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertsent.checkpoint import step_checkpoints
from bertsent.config import LOWER_IS_BETTER, TrainConfig, from_mapping
from bertsent.errors import UserError, fail
from bertsent.runfolder import LOG_OWNER_FILE, RunLock, is_finished
from bertsent.sweepfiles import shown
from bertsent.sweepspace import Param, parse_space

if TYPE_CHECKING:
    from bertsent.sweep import Sweep

DEFAULTS = {"trials": 20, "seeds": 1, "prune_after": 3}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
