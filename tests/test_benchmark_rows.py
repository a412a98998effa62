"""benchmarks/rows.py: `--only` picks the rows it names, commas inside names included."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from rows import pick  # noqa: E402

NAMES = ["whole last layer, oneDNN's 1,024 kernels", "whole last layer, 4,096 kernels kept",
         "cut last layer, oneDNN's 1,024 kernels", "cut last layer, 4,096 kernels kept"]


@pytest.mark.parametrize(("only", "expected"), [
    (None, [0, 1, 2, 3]),
    ("", [0, 1, 2, 3]),
    ("4,096", [1, 3]),  # one part: the comma lies inside the names
    ("cut", [2, 3]),
    ("cut,4,096", [1, 2, 3]),
    ("cut last layer, 4,096", [3]),
    (" whole , 1,024 ", [0, 1, 2]),
])
def test_only_picks_rows_by_parts_of_their_names(only, expected):
    assert pick(NAMES, only, argparse.ArgumentParser()) == [NAMES[i] for i in expected]


def test_only_refuses_a_part_that_names_no_row(capsys):
    with pytest.raises(SystemExit) as stop:
        pick(NAMES, "cut,8,192", argparse.ArgumentParser(prog="epoch_steps.py"))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--only: no row name contains '8'" in err and NAMES[0] in err
