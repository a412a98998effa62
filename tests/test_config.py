from pathlib import Path

import pytest

from bertsent.cli import parse_config, parse_overrides
from bertsent.config import EvalConfig, PredictConfig, TrainConfig, check_fields, from_mapping
from bertsent.errors import UserError


def test_defaults_come_from_the_dataclass():
    assert parse_config([]) == TrainConfig()


def test_cli_flags_map_onto_fields():
    cfg = parse_config(["--lr", "3e-5", "--train-samples", "100", "--no-group-by-length",
                        "--truncation", "tail"])
    assert (cfg.lr, cfg.train_samples, cfg.group_by_length, cfg.truncation) == \
        (3e-5, 100, False, "tail")


def test_toml_file_under_cli(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('lr = 0.001\nbatch_size = 4\nmodel = "m"\n')
    cfg = parse_config(["--config", str(path), "--batch-size", "16"])
    assert (cfg.lr, cfg.batch_size, cfg.model) == (0.001, 16, "m")


def test_overrides_hold_only_given_settings(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("epochs = 3\n")
    assert parse_overrides(["--config", str(path), "--seed", "1"]) == {"epochs": 3, "seed": 1}


@pytest.mark.parametrize("text, message", [
    ("lr = [1", "not valid TOML"),
    ("learning_rate = 1.0", "unknown key 'learning_rate'"),
    ('batch_size = "8"', "'batch_size' must be int"),
    ("group_by_length = 1", "'group_by_length' must be bool"),
    ('precision = "fp8"', "'precision' must be one of"),
    # values are checked by the same rules as flags
    ("seed = -3", "--seed must be in"),
    ("dropout = nan", "--dropout must be a finite number"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        parse_config(["--config", str(path)])


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--max-length", "0"], "--max-length must be at least 8"),
    (["--warmup-ratio", "1.5"], "--warmup-ratio"),
    (["--train-samples", "-5"], "--train-samples must be positive"),
    (["--seed", "-1"], r"--seed must be in \[0, 4294967295\]"),
    (["--seed", str(2**32)], "--seed must be in"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--max-grad-norm", "inf"], "--max-grad-norm must be a finite number"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--progress-every", "-1"], "--progress-every must not be negative"),
])
def test_bad_values(flags, message):
    with pytest.raises(UserError, match=message):
        parse_config(flags)


def test_bad_flag_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["--lr", "fast"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid float value" in err[0]


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes(b'model = "caf\xe9"\n')
    with pytest.raises(UserError, match="not UTF-8"):
        parse_config(["--config", str(path)])


def test_a_shipped_preset_loads_by_name():
    from bertsent.cli import preset_names

    for name in preset_names():
        assert parse_config(["--config", name]).model


def test_a_setting_spelled_twice_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("batch_size = 4\nbatch-size = 16\n")
    with pytest.raises(UserError, match="'batch_size' and 'batch-size' are the same setting"):
        parse_config(["--config", str(path)])


def test_a_folder_named_like_a_preset_does_not_shadow_it(tmp_path, monkeypatch):
    from bertsent.cli import preset_names

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imdb-full").mkdir()  # e.g. an output folder named after the preset
    assert "imdb-full" in preset_names()
    assert parse_config(["--config", "imdb-full"]) == parse_config(
        ["--config", str(Path(__file__).parents[1] / "bertsent" / "configs" / "imdb-full.toml")])
    (tmp_path / "imdb-full").rmdir()
    (tmp_path / "imdb-full").write_text("epochs = 7\n")  # a file of that name is that file
    assert parse_config(["--config", "imdb-full"]).epochs == 7


@pytest.mark.parametrize("flags, message", [
    (["--run-name", ""], "--run-name is empty"),
    (["--run-name", "   "], "--run-name is empty"),
    (["--resume", ""], "--resume is empty"),
    (["--resume", " "], "--resume is empty"),
])
def test_an_empty_run_name_or_resume_is_refused_not_unset(flags, message):
    with pytest.raises(UserError, match=message):
        parse_config(flags)


def test_text_flags_are_literal_and_none_still_unsets_numbers():
    cfg = parse_config(["--run-name", "none", "--train-samples", "none", "--dropout", "None"])
    assert (cfg.run_name, cfg.train_samples, cfg.dropout) == ("none", None, None)
    assert parse_config(["--run-name", "None"]).run_name == "None"


def test_an_empty_report_dir_or_input_file_is_refused(tmp_path):

    with pytest.raises(UserError, match="--report-dir is empty"):
        check_fields(from_mapping(parse_overrides(["--report-dir", ""], EvalConfig), EvalConfig))
    with pytest.raises(UserError, match="--file is empty"):
        check_fields(from_mapping(parse_overrides(["--file", ""], PredictConfig),
                                  PredictConfig))


@pytest.mark.parametrize("module", ["train", "evaluate", "predict", "pretrain", "curves"])
def test_every_entry_point_prints_its_help(module, capsys):
    """argparse formats help strings with %: a literal '80%' in a field's help broke --help."""
    import importlib
    with pytest.raises(SystemExit) as done:
        importlib.import_module(f"bertsent.{module}").main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--" in out


def test_a_flag_and_its_old_name_together_are_refused():
    """argparse keeps whichever came last: --test-samples 10 --eval-samples 20 used 20 silently."""
    with pytest.raises(UserError, match="--eval-samples and --test-samples are the same setting"):
        parse_overrides(["--test-samples", "10", "--eval-samples=20"])
    assert parse_overrides(["--eval-samples", "20"]) == {"test_samples": 20}


def test_more_threads_than_cpus_gets_a_note(capsys):
    import os

    import torch

    from bertsent.runtime import use_threads
    before = torch.get_num_threads()
    try:
        use_threads(len(os.sched_getaffinity(0)) + 1)
        assert "is more than the" in capsys.readouterr().err
        use_threads(1)
        assert capsys.readouterr().err == ""
    finally:
        torch.set_num_threads(before)


_AMX_CPU = type("Cpu", (), {"_is_amx_tile_supported": staticmethod(lambda: True)})


@pytest.mark.parametrize("cap", ["AVX2", "avx2", "AVX512_CORE", "AVX512_CORE_VNNI", "SSE41"])
def test_a_onednn_cap_below_bf16_makes_auto_precision_fp32(monkeypatch, cap):
    """With ONEDNN_MAX_CPU_ISA=AVX2 a bf16 matmul is emulated (about 1 GFLOP/s against 800 on
    AMX): --precision auto must take fp32 then, whatever the CPU has."""
    import torch

    from bertsent import runtime
    from bertsent.runtime import cpu_has_bf16, pick_precision
    monkeypatch.setattr(runtime.torch._C, "_cpu", _AMX_CPU)  # a CPU with AMX, on any machine
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert not cpu_has_bf16()
    assert pick_precision("auto", torch.device("cpu")) == "fp32"
    assert pick_precision("bf16", torch.device("cpu")) == "bf16"  # asked for, still given


@pytest.mark.parametrize("cap", ["AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL", "DEFAULT", ""])
def test_a_onednn_cap_that_keeps_bf16_leaves_the_hardware_to_decide(monkeypatch, cap):
    from bertsent import runtime
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(runtime.torch._C, "_cpu", _AMX_CPU)
    assert runtime.cpu_has_bf16()
