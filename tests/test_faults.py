"""Faults from outside: real `python -m bertsent.train` processes are killed, interrupted,
fed damaged checkpoints, driven to NaN and denied their disk. After each fault the run either
stops with one clear line or `--resume latest` carries it on to exactly the weights of a run
that never saw the fault.

Every process runs with OMP_NUM_THREADS=1 (bit-exact comparisons need the same thread count
everywhere). Test hooks read from the environment, never used in normal runs:
BERTSENT_TEST_SLOW_SAVE=<s> sleeps before a checkpoint's manifest is written (a wide window
to hit), BERTSENT_STOP_AFTER_STEP=<n> stops as if SIGTERM came after step n, and
BERTSENT_TEST_FAIL_SAVE_AT_STEP=<n> makes the step-n checkpoint write fail with ENOSPC.
A kill is aimed by freezing the process (SIGSTOP), looking at its checkpoint folder, and only
then sending the real signal, so where it lands is known rather than hoped for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bertsent import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
STEPS = 24  # 96 reviews / batch 8 = 12 steps per epoch, 2 epochs
TIMEOUT = 120  # seconds for any one wait; a healthy run takes about 10


def base_args(tiny_model_dir: Path, tiny_data_dir: Path, root: Path, run: str) -> list[str]:
    return ["--model", str(tiny_model_dir), "--data", str(tiny_data_dir),
            "--train-samples", "96", "--val-samples", "32", "--test-samples", "40",
            "--epochs", "2", "--batch-size", "8", "--eval-batch-size", "16",
            "--save-every", "2", "--log-every", "1", "--max-length", "48", "--lr", "1e-2",
            "--head-lr-mult", "1",
            "--seed", "7", "--precision", "fp32", "--device", "cpu", "--keep-last", "3",
            "--sanity-eval-batches", "1", "--run-name", run,
            "--checkpoint-dir", str(root / "ckpt"), "--runs-dir", str(root / "runs"),
            "--cache-dir", str(root / "cache")]


class Job:
    """One `python -m bertsent.train` process; stdout and stderr go to files we can poll."""

    count = 0

    def __init__(self, args: list[str], root: Path, **hooks: str):
        Job.count += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTSENT_")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false",
                   PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
        env.update(hooks)
        self.out_path = root / f"job{Job.count}.out"
        self.err_path = root / f"job{Job.count}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "bertsent.train", *args],
                                         stdout=out, stderr=err, cwd=root, env=env)

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"process did not end within {timeout}s; stderr:\n{self.err}")

    def stop(self) -> None:
        """Cleanup: make sure it is gone (also when frozen)."""
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def start(jobs: list[Job], args: list[str], root: Path, **hooks: str) -> Job:
    job = Job(args, root, **hooks)
    jobs.append(job)
    return job


def wait_until(job: Job, what: str, condition, timeout: float = TIMEOUT, freeze=False):
    """Poll `condition()` every few ms until it returns something truthy.

    With freeze=True the process is stopped (SIGSTOP) before each look and left stopped when
    the condition holds, so the caller sees exactly the state the signal will hit.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if freeze and job.alive():
            os.kill(job.proc.pid, signal.SIGSTOP)
        found = condition()
        if found:
            return found
        if freeze and job.alive():
            os.kill(job.proc.pid, signal.SIGCONT)
        if not job.alive():
            pytest.fail(f"process ended (status {job.proc.returncode}) before {what}; "
                        f"stderr:\n{job.err}")
        time.sleep(0.003)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; stderr:\n{job.err}")


def sealed(run_dir: Path) -> list[int]:
    """Steps of the complete (manifest-sealed) step checkpoints, oldest first."""
    return [ckpt.step_of(p) for p in ckpt.step_checkpoints(run_dir)
            if (p / ckpt.MANIFEST).is_file()]


def temps(run_dir: Path, kind: str = "step-") -> list[Path]:
    return sorted(run_dir.glob(f".tmp-{kind}*")) if run_dir.is_dir() else []


def resumed_from(err: str) -> int:
    found = re.findall(r"^resuming run \S+ in \S+ from \S+ \(step (\d+)", err, re.M)
    assert len(found) == 1, err
    return int(found[0])


def error_line(err: str) -> str:
    """The single `error:` line of a failed run (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def final_weights(root: Path, run: str) -> dict[str, torch.Tensor]:
    return load_file(str(root / "ckpt" / run / "final" / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def assert_all_sealed_verify(run_dir: Path) -> None:
    for folder in ckpt.step_checkpoints(run_dir):
        assert (folder / ckpt.MANIFEST).is_file(), f"{folder} has no manifest"
        assert ckpt.verify(folder) is None, (folder, ckpt.verify(folder))


def assert_tensorboard_steps_once(root: Path, run: str) -> None:
    tb = EventAccumulator(str(root / "runs" / run))
    tb.Reload()
    steps = [e.step for e in tb.Scalars("train/loss")]
    assert steps == list(range(1, STEPS + 1)), steps  # each once, none missing, in order


def finish(jobs, args, root, run, reference, expect_from: int | None = None) -> Job:
    """`--resume latest` without hooks: it loads, completes, and matches the reference."""
    job = start(jobs, [*args, "--resume", "latest"], root)
    assert job.wait() == 0, job.err
    step = resumed_from(job.err)
    if expect_from is not None:
        assert step == expect_from, job.err
    assert json.loads(job.out.strip().splitlines()[-1])["steps"] == STEPS
    assert_same_weights(final_weights(root, run), reference.weights())
    assert_all_sealed_verify(root / "ckpt" / run)
    leftovers = list((root / "ckpt" / run).glob(".tmp-*"))
    assert not leftovers, f"a killed writer's temp folder is left behind: {leftovers}"
    return job


class Reference:
    """The uninterrupted run, started in the background once for the module."""

    def __init__(self, job: Job, root: Path):
        self.job, self.root, self._weights = job, root, None

    def weights(self) -> dict[str, torch.Tensor]:
        if self._weights is None:
            assert self.job.wait() == 0, self.job.err
            self._weights = final_weights(self.root, "ref")
        return self._weights


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    job = Job(base_args(tiny_model_dir, tiny_data_dir, root, "ref"), root)
    try:
        yield Reference(job, root)
    finally:
        job.stop()


@pytest.fixture
def args_for(tiny_model_dir, tiny_data_dir, tmp_path):
    return lambda run: base_args(tiny_model_dir, tiny_data_dir, tmp_path, run)


# ---------------------------------------------------------------- 1. SIGKILL
def test_sigkill_between_steps_mid_write_and_in_final_save_resumes_exactly(
        reference, args_for, tmp_path, jobs):
    """Three kills on one run, each followed by `--resume latest`: (a) between optimizer
    steps, (b) inside a step checkpoint's write (state.pt written, manifest not yet), (c) inside
    the final model's write after the last step. The end result equals the reference."""
    args, run_dir = args_for("killed"), tmp_path / "ckpt" / "killed"

    # (a) once step-4 is sealed, at a moment when no checkpoint is being written
    job = start(jobs, args, tmp_path, BERTSENT_TEST_SLOW_SAVE="0.3")
    wait_until(job, "step-4 sealed, no write in progress", freeze=True,
               condition=lambda: 4 in sealed(run_dir) and not list(run_dir.glob(".tmp-*")))
    last_a = sealed(run_dir)[-1]
    job.send(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL

    # (b) resume, then kill inside the next step checkpoint's write
    job = start(jobs, [*args, "--resume", "latest"], tmp_path, BERTSENT_TEST_SLOW_SAVE="1")
    mid = wait_until(job, "a step checkpoint write in progress", freeze=True,
                     condition=lambda: [t for t in temps(run_dir)
                                        if (t / ckpt.STATE_FILE).is_file()])
    assert not (mid[0] / ckpt.MANIFEST).exists()  # caught before the seal
    last_b = sealed(run_dir)[-1]
    job.send(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    assert resumed_from(job.err) == last_a
    assert temps(run_dir)  # the half-written folder is still there for the next run to see

    # (c) resume, then kill inside the final model's write
    job = start(jobs, [*args, "--resume", "latest"], tmp_path, BERTSENT_TEST_SLOW_SAVE="0.2")
    wait_until(job, "the final model write", freeze=True,
               condition=lambda: temps(run_dir, "final"))
    job.send(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    assert resumed_from(job.err) == last_b  # the half-written checkpoint was not used
    assert not (run_dir / "final").exists() and sealed(run_dir)[-1] == STEPS

    finish(jobs, args, tmp_path, "killed", reference, expect_from=STEPS)
    assert_tensorboard_steps_once(tmp_path, "killed")


# ---------------------------------------------------------------- 2. SIGTERM / SIGINT
def test_ctrl_c_during_start_up_is_one_line(args_for, tmp_path, jobs):
    """Half a second in, the process is still importing torch: no traceback, 130 (SIGINT)."""
    job = start(jobs, args_for("early"), tmp_path)
    time.sleep(0.5)
    job.send(signal.SIGINT)
    assert job.wait() in (130, -signal.SIGINT), job.err
    assert "Traceback" not in job.err and job.err.strip().splitlines()[-1] == "interrupted"


def test_signal_during_the_final_evaluation_stops_it(reference, args_for, tmp_path, jobs):
    """After the last step there is no step to finish: SIGTERM ends the test pass at once with
    143 and says so; --resume latest then writes the report.

    The signal waits for the test pass's first progress line: `final/` appears a few
    milliseconds before the test phase begins (the rename comes before the export returns), and
    a signal in that gap is the export's, with the export's message."""
    args, run_dir = args_for("late"), tmp_path / "ckpt" / "late"
    job = start(jobs, [*args, "--progress-every", "0.001"], tmp_path)
    wait_until(job, "test pass begun, report not yet written", freeze=True,
               condition=lambda: "test 16/40" in job.err
               and not (run_dir / "metrics.json").exists())
    job.send(signal.SIGTERM)
    os.kill(job.proc.pid, signal.SIGCONT)
    assert job.wait() == 128 + signal.SIGTERM, job.err
    assert "stopping the final evaluation" in job.err and "Traceback" not in job.err
    assert not (run_dir / "metrics.json").exists() and not (run_dir / ".lock").exists()
    finish(jobs, args, tmp_path, "late", reference, expect_from=STEPS)


def test_sigterm_then_sigint_stop_cleanly_and_resume_exactly(reference, args_for, tmp_path,
                                                            jobs):
    """SIGTERM mid-epoch exits 143, SIGINT exits 130, each after saving a checkpoint and saying
    how to continue; the resumed run equals the reference and TensorBoard shows every step of
    train/loss exactly once across the three processes."""
    args, run_dir = args_for("stopped"), tmp_path / "ckpt" / "stopped"
    stopped_at = 0
    for sig, code, slow in ((signal.SIGTERM, 143, "0.3"), (signal.SIGINT, 130, "0.3")):
        extra = ["--resume", "latest"] if stopped_at else []
        job = start(jobs, [*args, *extra], tmp_path, BERTSENT_TEST_SLOW_SAVE=slow)
        wait_until(job, "a new checkpoint",
                   lambda after=stopped_at: sealed(run_dir) and sealed(run_dir)[-1] > after)
        job.send(sig)
        assert job.wait() == code, job.err
        name = signal.Signals(sig).name
        assert f"{name}: finishing this step and saving a checkpoint" in job.err
        stop = re.findall(r"^stopped at step (\d+); checkpoint saved in (\S+): continue with "
                          r"python -m bertsent.train --resume latest --run-name stopped "
                          r"--checkpoint-dir \S+$", job.err, re.M)
        assert len(stop) == 1, job.err
        step = int(stop[0][0])
        assert step % 12 and 0 < step < STEPS  # mid-epoch
        assert sealed(run_dir)[-1] == step and ckpt.verify(run_dir / f"step-{step}") is None
        if stopped_at:
            assert resumed_from(job.err) == stopped_at
        stopped_at = step
        assert "Traceback" not in job.err and not (run_dir / "final").exists()

    finish(jobs, args, tmp_path, "stopped", reference, expect_from=stopped_at)
    assert_tensorboard_steps_once(tmp_path, "stopped")


# ---------------------------------------------------------------- 3. damaged checkpoints
def test_truncated_and_corrupt_newest_checkpoints_fall_back(reference, args_for, tmp_path,
                                                           jobs):
    """The newest state.pt truncated, the one before with a flipped byte: resume skips both
    with a clear line each, starts from the one before, and still ends at the same weights."""
    args, run_dir = args_for("damaged"), tmp_path / "ckpt" / "damaged"
    job = start(jobs, args, tmp_path, BERTSENT_STOP_AFTER_STEP="9")
    assert job.wait() == 143, job.err
    assert sealed(run_dir) == [6, 8, 9]
    newest, previous = (run_dir / f"step-{s}" / ckpt.STATE_FILE for s in (9, 8))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    data = bytearray(previous.read_bytes())
    data[len(data) // 2] ^= 0xFF
    previous.write_bytes(bytes(data))

    done = finish(jobs, args, tmp_path, "damaged", reference, expect_from=6)
    notes = [line for line in done.err.splitlines() if line.startswith("skipping")]
    assert len(notes) == 2, done.err
    assert "step-9" in notes[0] and "truncated" in notes[0]
    assert "step-8" in notes[1] and "corrupt" in notes[1]
    assert_tensorboard_steps_once(tmp_path, "damaged")


# ---------------------------------------------------------------- 4. second SIGINT
def test_second_sigint_exits_at_once_and_leaves_no_broken_checkpoint(args_for, tmp_path, jobs):
    """The first SIGINT asks for a checkpoint; a second one during a (slow) checkpoint write
    quits at once with 130, abandoning that write. Every step folder that exists is complete
    and verifies, and the newest one still loads for a resume."""
    run_dir = tmp_path / "ckpt" / "twice"
    job = start(jobs, args_for("twice"), tmp_path, BERTSENT_TEST_SLOW_SAVE="2")
    wait_until(job, "step-2 sealed", lambda: 2 in sealed(run_dir))
    job.send(signal.SIGINT)
    wait_until(job, "the first SIGINT handled", lambda: "SIGINT: finishing" in job.err)
    writing = wait_until(job, "a checkpoint write while the stop is pending",
                         lambda: temps(run_dir))
    step = int(re.match(r"\.tmp-step-(\d+)-", writing[0].name).group(1))
    job.send(signal.SIGINT)
    assert job.wait() == 130, job.err
    # at once: the write in progress (2 s before its seal) was abandoned, not finished
    assert not (run_dir / f"step-{step}").exists()
    assert "stopped at step" not in job.err and "Traceback" not in job.err
    assert not temps(run_dir)  # the interrupted write cleaned up after itself
    assert sealed(run_dir)
    assert_all_sealed_verify(run_dir)
    folder, notes = ckpt.find_latest(tmp_path / "ckpt", "twice")
    assert notes == [] and ckpt.load_checkpoint(folder)["progress"]["step"] == sealed(run_dir)[-1]


# ---------------------------------------------------------------- 5. non-finite loss
def test_nonfinite_loss_stops_with_one_line_or_is_skipped(args_for, tmp_path, jobs):
    """--lr 1e6 makes the loss NaN by step 3: exit 2, one line naming the step and the intact
    checkpoint, whose weights are finite. With --skip-nonfinite the run completes."""
    failing = start(jobs, [*args_for("nan"), "--lr", "1e6"], tmp_path)
    skipping = start(jobs, [*args_for("skip"), "--lr", "1e6", "--skip-nonfinite"], tmp_path)

    assert failing.wait() == 2, failing.err
    line = error_line(failing.err)
    step = int(re.search(r"non-finite value at step (\d+)", line).group(1))
    run_dir = tmp_path / "ckpt" / "nan"
    assert sealed(run_dir) and sealed(run_dir)[-1] < step
    assert f"{run_dir / f'step-{sealed(run_dir)[-1]}'} is intact" in line
    assert "--skip-nonfinite" in line
    assert_all_sealed_verify(run_dir)
    state = ckpt.load_checkpoint(run_dir / f"step-{sealed(run_dir)[-1]}")
    assert all(torch.isfinite(t).all() for t in state["model"].values())

    assert skipping.wait() == 0, skipping.err
    result = json.loads(skipping.out.strip().splitlines()[-1])
    assert result["steps"] == STEPS and result["skipped_steps"] > 0
    assert (tmp_path / "ckpt" / "skip" / "final" / "model.safetensors").is_file()


# ---------------------------------------------------------------- 6. failed save
def test_failed_checkpoint_write_stops_with_one_line_and_resumes(reference, args_for, tmp_path,
                                                                 jobs):
    """The step-6 checkpoint write fails with ENOSPC (disk full): exit 2, one line naming the
    folder and the intact previous checkpoint, no half-written folder; resume finishes."""
    args, run_dir = args_for("full"), tmp_path / "ckpt" / "full"
    job = start(jobs, args, tmp_path, BERTSENT_TEST_FAIL_SAVE_AT_STEP="6")
    assert job.wait() == 2, job.err
    line = error_line(job.err)
    assert f"saving checkpoint {run_dir / 'step-6'} failed (No space left on device)" in line
    assert f"{run_dir / 'step-4'} is intact" in line
    assert sealed(run_dir) == [2, 4] and not temps(run_dir)
    assert_all_sealed_verify(run_dir)
    finish(jobs, args, tmp_path, "full", reference, expect_from=4)


def test_a_signal_inside_a_del_is_not_lost_and_prints_no_traceback():
    """A handler's exception raised inside `__del__` would be printed and dropped: the Stopper
    records it there and raises it at the next check (a phase boundary, or before a run writes
    the files that mark it finished)."""
    from bertsent.signals import Stopper

    stopper = Stopper()
    stopper.enter("test", "stopping the final evaluation")

    def __del__():  # a frame named like a finaliser's
        stopper.handle(signal.SIGTERM, sys._getframe())

    __del__()  # returns: nothing raised inside the finaliser
    with pytest.raises(SystemExit) as stopped:
        stopper.check()
    assert stopped.value.code == 128 + signal.SIGTERM
    with pytest.raises(SystemExit):
        stopper.enter("report")
    elsewhere = Stopper()
    elsewhere.enter("test")
    with pytest.raises(SystemExit):  # anywhere else the handler raises at once, as before
        elsewhere.handle(signal.SIGTERM, sys._getframe())
