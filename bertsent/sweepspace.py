"""The sweep's search space: one TOML table per train setting, a range (low, high, optional
log or step) or a list of choices, checked in full before any trial runs.

Every value in a space is checked by the rules its setting has everywhere else
(config.from_mapping for the type and choices, config.check_field for the range), so a space
cannot hold a value that a run would refuse half-way through a sweep.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bertsent.config import (
    ALIASES,
    TrainConfig,
    base_type,
    check_field,
    flag_name,
    from_mapping,
)
from bertsent.config import suggest as did_you_mean
from bertsent.errors import UserError, fail

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
                     "eval_batch_size", "eval_tokens", "reuse_memory", "attention"), _MACHINE),
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
