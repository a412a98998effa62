"""The sweep's files: the space it reads (one TOML table per train setting, a range or a list
of choices, checked in full before any trial runs), and what it writes in its folder: the
trials table (trials.md), the best configuration (best.toml, which bertsent.train --config
reads back) and two pictures (history.png, importance.png).

Every value in a space is checked by the rules its setting has everywhere else
(config.from_mapping for the type and choices, config.check_field for the range), so a space
cannot hold a value that a run would refuse half-way through a sweep.
"""

from __future__ import annotations

import difflib
import json
import statistics
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertsent.config import (
    ALIASES,
    LOWER_IS_BETTER,
    TrainConfig,
    base_type,
    check_field,
    flag_name,
    from_mapping,
)
from bertsent.config import suggest as did_you_mean
from bertsent.errors import UserError, fail
from bertsent.runfolder import METRICS, is_finished, publish

if TYPE_CHECKING:
    from bertsent.sweep import Context

DEFAULT_SPACE = Path(__file__).parent / "configs" / "sweep" / "default.toml"
TABLE_KEYS = ("low", "high", "log", "step", "choices")

_WHERE = "it says where outputs go: the sweep names each trial's folder itself"
_MACHINE = "it is a machine setting, not a training one: pass it as a flag"
_MEASURE = ("it changes what trials are scored on, so their figures would not compare: pass it "
            "as a flag")
_BOOKKEEPING = "it changes logging, checkpoints or fault handling, not training: pass it as a flag"
NOT_SEARCHED = {  # setting: why a space may not search it
    **dict.fromkeys(("run_name", "checkpoint_dir", "runs_dir", "cache_dir"), _WHERE),
    **dict.fromkeys(("resume", "resume_force"), "the sweep resumes its trials itself (--resume)"),
    "seed": "seeds are --seeds (each configuration runs that many times) from --seed on",
    "test": "trials never read the test split; --final scores the best configuration on it",
    **dict.fromkeys(("device", "precision", "compile", "num_workers", "threads",
                     "eval_batch_size"), _MACHINE),
    **dict.fromkeys(("data", "text_column", "label_column", "labels", "num_labels",
                     "val_samples", "test_samples", "select_metric", "eval_every",
                     "sanity_eval_batches"), _MEASURE),
    **dict.fromkeys(("log_every", "progress_every", "save_every", "keep_last",
                     "keep_checkpoints", "skip_nonfinite"), _BOOKKEEPING),
}


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (low..high, optionally log-scaled or stepped) or choices."""

    name: str
    kind: type
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def suggest(self, trial: Any) -> Any:
        """The trial's value (a trial that already has one, a resumed one, gets it back)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind is int:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1,
                                     log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def table(self) -> dict[str, Any]:
        """As written in a space file: what a study stores to compare and rebuild it."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        extra = {"log": True} if self.log else {}
        return {"low": self.low, "high": self.high, **extra,
                **({"step": self.step} if self.step is not None else {})}

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        how = ", log" if self.log else f", step {self.step}" if self.step is not None else ""
        return f"{self.name} in [{self.low}, {self.high}{how}]"


def read_space(path: str | Path) -> dict[str, Param]:
    try:
        with open(path, "rb") as fh:
            tables = tomllib.load(fh)
    except FileNotFoundError:
        fail(f"space file {path} does not exist: pass an existing TOML file to --space, or "
             "leave --space out for the default (bertsent/configs/sweep/default.toml)")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        fail(f"space file {path} is not valid UTF-8 TOML ({exc}): fix the syntax")
    except OSError as exc:
        fail(f"space file {path} cannot be read ({exc.strerror}): check the path")
    return parse_space(tables, f"space file {path}")


def parse_space(tables: dict[str, Any], source: str) -> dict[str, Param]:
    """{setting: Param}; anything a run could not use is refused in one line."""
    known = [f.name for f in fields(TrainConfig)]
    space: dict[str, Param] = {}
    spelled: dict[str, str] = {}
    for key, table in tables.items():
        name = key.replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in known:
            fail(f"{source}: unknown setting [{key}]{did_you_mean(name, known)}: each table is "
                 "named like a train setting, e.g. [lr]")
        if name in space:
            fail(f"{source}: [{spelled[name]}] and [{key}] are the same setting: keep one of them")
        spelled[name] = key
        if name in NOT_SEARCHED:
            fail(f"{source}: [{key}] cannot be searched: {NOT_SEARCHED[name]}")
        if not isinstance(table, dict):
            fail(f"{source}: '{key}' is a value, not a table: search it with [{key}] and low/high "
                 f"or choices, or fix it with --{flag_name(name)} {table!r}")
        space[name] = _param(name, key, table, f"{source}: [{key}]")
    if not space:
        fail(f"{source} searches nothing: add a table per setting, e.g. [lr] low = 1e-5 "
             "high = 3e-4 log = true")
    return space


def _param(name: str, key: str, table: dict[str, Any], where: str) -> Param:
    for k in table:
        if k not in TABLE_KEYS:
            near = difflib.get_close_matches(k, TABLE_KEYS, n=1, cutoff=0.6)
            fail(f"{where}: unknown key '{k}'{f' (did you mean {near[0]}?)' if near else ''}: "
                 f"a table has {', '.join(TABLE_KEYS)}")
    kind, optional = base_type(typing.get_type_hints(TrainConfig)[name])
    if "choices" in table:
        if set(table) != {"choices"}:
            fail(f"{where}: choices and {', '.join(sorted(set(table) - {'choices'}))} together: "
                 "give either a list of choices or a range")
        values = table["choices"]
        if not isinstance(values, list) or not values:
            fail(f"{where}: choices must be a non-empty list, e.g. choices = [1, 2]")
        # TOML has no null: "none" is the setting left unset (e.g. ema = none: no averaging)
        values = [None if optional and v == "none" else _value(name, key, v, "choices", where)
                  for v in values]
        if len({repr(v) for v in values}) < len(values):
            fail(f"{where}: choices lists a value twice ({values}): give each once")
        return Param(name, kind, choices=tuple(values))
    if kind not in (int, float):
        example = "[true, false]" if kind is bool else '["a", "b"]'
        fail(f"{where}: a {kind.__name__} setting has no range: list its values, e.g. "
             f"choices = {example}")
    if "low" not in table or "high" not in table:
        fail(f"{where}: a range needs both low and high (or give choices = [...])")
    low, high = (_value(name, key, table[k], k, where) for k in ("low", "high"))
    if low >= high:
        fail(f"{where}: the range is empty (low {low} >= high {high}): make low smaller than high")
    log = table.get("log", False)
    if not isinstance(log, bool):
        fail(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        fail(f"{where}: log = true needs low > 0, got {low}: raise low or drop log")
    step = table.get("step")
    if step is not None:
        step = _value(name, key, step, "step", where, check=False)
        if not step > 0 or log:
            fail(f"{where}: step must be positive and cannot go with log = true, got {step}")
        if round((high - low) / step, 9) % 1:
            fail(f"{where}: high - low ({high - low}) is not a multiple of step {step}: adjust "
                 "high")
    return Param(name, kind, low, high, log, step)


def _value(name: str, key: str, value: Any, what: str, where: str, check: bool = True) -> Any:
    """`value` as the setting's type (an int is a float for a float setting), refused with the
    setting's own line when it is not one, or when a run would refuse it."""
    got = getattr(from_mapping({name: value}, source=f"{where} {what}"), name)
    if check:
        try:
            check_field(name, got)
        except UserError as exc:
            fail(f"{where} {what} = {value!r}: {exc}")
    return got


# ---------------------------------------------------------------- settings files
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # finite: every setting is checked
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = "".join(f"\\{c}" if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 32 or ord(c) == 127
                   else c for c in str(value))
    return f'"{text}"'


def settings_toml(settings: dict[str, Any], header: list[str]) -> str:
    """A TOML file of train settings; a None (TOML has none) is a comment naming the flag."""
    lines = [f"# {line}" for line in header]
    for key, value in settings.items():
        lines.append(f"# {key}: pass --{flag_name(key)} none (TOML has no none)" if value is None
                     else f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- what a sweep writes
def shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def report(ctx: Context) -> None:
    """trials.md (also printed), best.toml and the pictures, from the study as it stands:
    each process that ends writes them again, so the last one's are complete."""
    notes = [write_best(ctx), *pictures(ctx), final_line(ctx)]
    text = trials_table(ctx) + "\n" + "".join(f"- {n}\n" for n in notes if n)
    publish(ctx.sw.folder / "trials.md", text, exclusive=False)
    print(text, end="", flush=True)


def trials_table(ctx: Context) -> str:
    metric, seeds, params = ctx.cfg.select_metric, len(ctx.seeds), list(ctx.space)
    best = best_trial(ctx)
    trials = sorted(ctx.counted(), key=lambda t: t.number)
    done = sum(t.state.name != "RUNNING" for t in trials)
    figure = f"val {metric}" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else "")
    rows = [["trial", *params, figure, "state", "minutes", "note"]]
    for t in trials:
        values = t.user_attrs.get("values") or []
        value = (f"{statistics.fmean(values):.4f}" if values else "") + (
            f" ± {t.user_attrs['std']:.4f}" if len(values) > 1 else "")
        note = {"PRUNED": f"pruned at step {t.user_attrs.get('pruned_at')}",
                "FAIL": t.user_attrs.get("reason", ""),
                "RUNNING": "running, or interrupted: continued by the next process"
                }.get(t.state.name, "")
        rows.append([str(t.number), *(shown({p: t.params[p]}).split("=", 1)[1]
                                      if p in t.params else "" for p in params),
                     value, t.state.name, f"{t.user_attrs.get('seconds', 0) / 60:.1f}",
                     "**best**" if best and t.number == best.number else note])
    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    lines = [f"# Sweep {ctx.sw.name}: {done} of {ctx.total} trials done (validation {metric}, "
             f"{better} is better)", ""]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows[:1]]
    lines += ["|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"


def best_trial(ctx: Context) -> Any:
    try:
        return ctx.study.best_trial
    except ValueError:  # no complete trial
        return None


def write_best(ctx: Context) -> str:
    """best.toml: the fixed settings and the best trial's, nothing the sweep set itself."""
    best = best_trial(ctx)
    if best is None:
        return "no trial has completed: best.toml not written"
    path = ctx.sw.folder / "best.toml"
    seeds = len(ctx.seeds)
    figure = f"validation {ctx.cfg.select_metric} {best.value:.4f}" + (
        f" (mean of {seeds} seeds)" if seeds > 1 else "")
    header = [f"The best configuration of sweep {ctx.sw.name}: trial {best.number}, {figure}.",
              f"python -m bertsent.train --config {path} trains it (flags given after it win)."]
    publish(path, settings_toml({**ctx.sw.definition["fixed"], **best.params}, header),
            exclusive=False)
    return f"best: trial {best.number} ({shown(best.params)}), {figure}; settings in {path}"


def pictures(ctx: Context) -> list[str]:
    """history.png (each trial's figure, the best so far) and importance.png (fANOVA, which
    needs at least two complete trials). Returns what was drawn, or why not."""
    from bertsent.runtime import keep_matplotlib_in

    keep_matplotlib_in(ctx.sw.machine.get("cache_dir", ctx.cfg.cache_dir))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from bertsent.curves import quiet_figures

    folder, metric = ctx.sw.folder, ctx.cfg.select_metric
    scored = [t for t in ctx.counted() if t.user_attrs.get("values")]
    complete = sorted((t for t in scored if t.state.name == "COMPLETE"), key=lambda t: t.number)
    if not scored:
        return ["no trial has a validation figure yet: no pictures"]
    pick = min if metric in LOWER_IS_BETTER else max
    with quiet_figures():
        fig, ax = plt.subplots(figsize=(7, 4))
        for state, marker, colour in (("COMPLETE", "o", "C0"), ("PRUNED", "x", "grey")):
            points = [(t.number, statistics.fmean(t.user_attrs["values"])) for t in scored
                      if t.state.name == state]
            if points:
                ax.scatter(*zip(*points, strict=True), marker=marker, color=colour,
                           label=state.lower())
        if complete:
            so_far = [pick(t.value for t in complete[:i + 1]) for i in range(len(complete))]
            ax.step([t.number for t in complete], so_far, where="post", color="C1",
                    label="best so far")
        ax.set(xlabel="trial", ylabel=f"validation {metric}",
               title=f"sweep {ctx.sw.name}: optimisation history")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "history.png", dpi=120)
        plt.close(fig)
        notes = [f"optimisation history: {folder / 'history.png'}"]
        if len(complete) < 2:
            return notes + [f"importance.png not drawn: the settings' importances need at least "
                            f"2 complete trials (there are {len(complete)})"]
        try:
            importances = ctx.optuna.importance.get_param_importances(
                ctx.study, evaluator=ctx.optuna.importance.FanovaImportanceEvaluator(
                    seed=ctx.cfg.seed))
        except Exception as exc:  # noqa: BLE001 - too few distinct trials, and the like
            return notes + [f"importance.png not drawn ({type(exc).__name__}: {exc})"]
        fig, ax = plt.subplots(figsize=(7, 1 + 0.4 * len(importances)))
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set(xlabel="importance (fANOVA, sums to 1)",
               title=f"sweep {ctx.sw.name}: what moved validation {metric}")
        fig.tight_layout()
        fig.savefig(folder / "importance.png", dpi=120)
        plt.close(fig)
    return notes + ["importances: " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items())
                    + f" ({folder / 'importance.png'})"]


def final_line(ctx: Context) -> str | None:
    folder = ctx.sw.folder / "final"
    if not is_finished(folder):
        return None
    found = json.loads((folder / METRICS).read_text())
    if not found.get("tested"):
        return None
    figures = ", ".join(f"{k} {found[k]:.4f}" for k in ("accuracy", "f1", "f1_macro", "loss")
                        if found.get(k) is not None)
    return (f"final run (the best configuration on the whole train split): test {figures} on "
            f"{found['test_samples']} reviews; model in {found['best_model_dir']}")
