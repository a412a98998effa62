"""torchrun with 2 CPU processes (gloo) against one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_settings


def run(tiny_config, tmp_path, name, nproc, batch_size, extra=(), env=None, torchrun=None):
    cfg = {**tiny_config, "run_name": name, "batch_size": batch_size, "dropout": 0.0,
           "test_samples": 37, "epochs": 2, "save_every": 3, "val_samples": 8,
           "sanity_eval_batches": 1}  # 1 val batch: rank 1 has none (must not hang)
    argv = []
    for key, value in cfg.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}"] if (nproc > 1 if torchrun is None else torchrun) \
        else [sys.executable]
    proc = subprocess.run([*launcher, "-m", "bertsent.train", *argv, *extra],
                          capture_output=True, text=True, timeout=300, env=env)
    return proc


def cfg_model(cfg):
    from pathlib import Path

    return Path(cfg["model"])


def final_weights(tmp_path, name):
    return load_file(str(tmp_path / "ckpt" / name / "final" / "model.safetensors"))


def assert_close(a, b, start=None):
    """Equal up to float reassociation (ranks pad and sum differently; Adam amplifies it to
    ~1e-4 after 24 steps at lr 1e-2), while training itself moved the weights far more."""
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-3)
    if start is not None:
        moved = max((a[k] - start[k]).abs().max().item() for k in start if k in a)
        assert moved > 0.05


@pytest.fixture(scope="module")
def single(tiny_model_dir, tiny_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    cfg = tiny_settings(tiny_model_dir, tiny_data_dir, tmp)
    proc = run(cfg, tmp, "one", 1, 8)
    assert proc.returncode == 0, proc.stderr
    return cfg, tmp, json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_processes_match_one_with_the_same_global_batch(single, tmp_path):
    cfg, tmp, one = single
    cfg = {**cfg, "checkpoint_dir": str(tmp_path / "ckpt"), "runs_dir": str(tmp_path / "runs")}
    proc = run(cfg, tmp_path, "two", 2, 4)
    assert proc.returncode == 0, proc.stderr
    assert "broadcast_buffers" not in proc.stderr and "FutureWarning" not in proc.stderr
    lines = [x for x in proc.stdout.strip().splitlines() if x.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints the result
    two = json.loads(lines[0])
    assert two["world_size"] == 2 and two["test_samples"] == one["test_samples"] == 37
    assert two["accuracy"] == one["accuracy"] and two["f1"] == one["f1"]
    start = load_file(str(cfg_model(cfg) / "model.safetensors"))
    assert_close(final_weights(tmp, "one"), final_weights(tmp_path, "two"), start)
    writers = {p.name.split(".")[-2] for p in (tmp_path / "runs" / "two").glob("events.*")}
    assert len(writers) == 1  # one process (rank 0) wrote TensorBoard events


def test_one_process_under_torchrun_joins_the_group_and_trains_as_a_plain_run(single, tmp_path):
    """torchrun --nproc_per_node=1 runs the process group and DDP path (how NCCL's start is
    checked on a machine with one GPU), and ends where a plain process does, bit for bit."""
    cfg, tmp, one = single
    cfg = {**cfg, "checkpoint_dir": str(tmp_path / "ckpt"), "runs_dir": str(tmp_path / "runs")}
    proc = run(cfg, tmp_path, "torchrun-one", 1, 8, torchrun=True)
    assert proc.returncode == 0, proc.stderr
    assert "world size 1 (gloo)" in proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["world_size"] == 1 and got["accuracy"] == one["accuracy"]
    a, b = final_weights(tmp, "one"), final_weights(tmp_path, "torchrun-one")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("resume_nproc, resume_batch", [(2, 4), (1, 8)])
def test_interrupted_two_process_run_resumes_with_two_or_one(single, tmp_path, resume_nproc,
                                                             resume_batch):
    cfg, tmp, one = single
    cfg = {**cfg, "checkpoint_dir": str(tmp_path / "ckpt"), "runs_dir": str(tmp_path / "runs")}
    env = {**os.environ, "BERTSENT_STOP_AFTER_STEP": "7"}
    cut = run(cfg, tmp_path, "cut", 2, 4, env=env)
    assert cut.returncode != 0 and "stopped at step 7" in cut.stderr  # torchrun reports 1
    rest = run(cfg, tmp_path, "cut", resume_nproc, resume_batch, extra=["--resume", "latest"])
    assert rest.returncode == 0, rest.stderr
    if resume_nproc == 1:
        assert "written by 2 processes, resumed by 1" in rest.stderr
    assert_close(final_weights(tmp, "one"), final_weights(tmp_path, "cut"))


def test_sparse_embeddings_two_processes_match_one(tiny_model_dir, tiny_data_dir, tmp_path):
    """DDP all-reduces a row-sparse gradient too: --sparse-embeddings trains the same on two
    processes as on one with the same global batch."""
    cfg = tiny_settings(tiny_model_dir, tiny_data_dir, tmp_path)
    results = {}
    for name, nproc, batch in (("one", 1, 8), ("two", 2, 4)):
        proc = run(cfg, tmp_path, name, nproc, batch, extra=("--sparse-embeddings",))
        assert proc.returncode == 0, proc.stderr
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["two"]["accuracy"] == results["one"]["accuracy"]
    start = load_file(str(cfg_model(cfg) / "model.safetensors"))
    assert_close(final_weights(tmp_path, "one"), final_weights(tmp_path, "two"), start)
