"""What a sweep writes in its folder: the trials table (trials.md), the best configuration
(best.toml, which bertsent.train --config reads back) and two pictures (history.png,
importance.png).
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

from bertsent.config import (
    LOWER_IS_BETTER,
    flag_name,
)
from bertsent.runfolder import METRICS, is_finished, publish

if TYPE_CHECKING:
    from bertsent.sweeptrials import Context



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
