"""Every bad input: one line naming the problem and the fix, exit status 2, no traceback, and
nothing that existed before is modified."""

import hashlib
import io
import os
import shutil
import subprocess
import sys

import pytest
from transformers import BertConfig, BertModel

from bertsent import evaluate, predict, train
from tests.conftest import make_frame


def tree_digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def write_split_folder(root, name, train, test=None, fmt="parquet"):
    folder = root / name
    folder.mkdir()
    for split, frame in (("train", train), ("test", train if test is None else test)):
        if isinstance(frame, bytes):
            (folder / f"{split}.{fmt}").write_bytes(frame)
        elif fmt == "csv":
            frame.to_csv(folder / f"{split}.csv", index=False)
        elif fmt == "jsonl":
            frame.to_json(folder / f"{split}.jsonl", orient="records", lines=True)
        else:
            frame.to_parquet(folder / f"{split}.parquet")
    return str(folder)


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """Bad data sets, bad model folders and a finished run to protect."""
    root = tmp_path_factory.mktemp("bad")
    good = make_frame(40, 3)
    strings = good.assign(label=good.label.map({0: "negative", 1: "positive"}))
    paths = {
        "no_text": write_split_folder(root, "no_text", good.rename(columns={"text": "review"})),
        "labels_3": write_split_folder(root, "labels_3", good.assign(label=good.label * 3)),
        "empty_text": write_split_folder(root, "empty_text", good.assign(
            text=["   " if i == 4 else t for i, t in enumerate(good.text)])),
        "null_text": write_split_folder(root, "null_text", good.assign(
            text=[None if i == 2 else t for i, t in enumerate(good.text)])),
        "empty": write_split_folder(root, "empty", good.iloc[:0], fmt="csv"),
        "latin1": write_split_folder(root, "latin1", "text,label\ncaf\xe9 bad,0\n".encode(
            "latin-1"), fmt="csv"),
        "no_test": str(root / "no_test"),
        "a_file": str(root / "no_test" / "train.parquet"),
        "unknown_test": write_split_folder(root, "unknown_test", good, test=good.assign(
            label=[2 if i == 1 else y for i, y in enumerate(good.label)])),
        "strings": write_split_folder(root, "strings", strings, test=strings.assign(
            label=["neutral" if i == 1 else y for i, y in enumerate(strings.label)])),
        "one_string": write_split_folder(root, "one_string", strings.assign(label="pos")),
        "one_int": write_split_folder(root, "one_int", good.assign(label=0)),
        "float_labels": write_split_folder(root, "float_labels", good.assign(
            label=good.label.astype(float))),
        "unlabelled_test": write_split_folder(root, "unlabelled_test", good,
                                              test=good.assign(label=-1)),
        "two_val": write_split_folder(root, "two_val", good),
    }
    for name in ("validation", "val"):
        good.to_parquet(root / "two_val" / f"{name}.parquet")
    (root / "no_test").mkdir()
    good.to_parquet(root / "no_test" / "train.parquet")
    paths["zero_width"] = write_split_folder(root, "zero_width", good.assign(
        text=["\u200b\u200b \ufeff" if i == 3 else t for i, t in enumerate(good.text)]))
    paths["two_formats"] = write_split_folder(root, "two_formats", good)
    good.to_csv(root / "two_formats" / "train.csv", index=False)
    paths["zero_bytes"] = write_split_folder(root, "zero_bytes", b"")
    paths["bad_jsonl"] = write_split_folder(root, "bad_jsonl", good, fmt="jsonl")
    (root / "bad_jsonl" / "train.jsonl").write_text('{"text": "good", "label": 1}\n{"text": x\n')
    paths["other_columns"] = write_split_folder(root, "other_columns", good,
                                                test=good.rename(columns={"text": "review"}))
    no_head = root / "no_head"  # a base model as on the hub: encoder only, no classifier
    BertModel(BertConfig.from_pretrained(tiny_model_dir)).save_pretrained(no_head)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, no_head / name)
    paths["no_head"] = str(no_head)
    (root / "not_a_model").mkdir()
    (root / "not_a_model" / "notes.txt").write_text("hello")
    no_weights = root / "no_weights"
    shutil.copytree(tiny_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    paths.update(not_a_model=str(root / "not_a_model"), no_weights=str(no_weights))
    ckpt_root, runs_root = root / "ckpt", root / "runs"
    base = ["--model", str(tiny_model_dir), "--data", str(tiny_data_dir), "--train-samples",
            "16", "--val-samples", "8", "--test-samples", "8", "--max-length", "32",
            "--checkpoint-dir", str(ckpt_root), "--runs-dir", str(runs_root), "--precision",
            "fp32", "--save-every", "1", "--cache-dir", str(root / "cache")]
    assert train.main([*base, "--run-name", "done", "--keep-checkpoints"]) == 0
    step = sorted((ckpt_root / "done").glob("step-*"))[-1]
    truncated = root / "truncated"
    shutil.copytree(step, truncated)
    state = truncated / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    toml = {name: root / f"{name}.toml" for name in ("malformed", "unknown", "wrongtype")}
    toml["malformed"].write_text("lr = = 2\n")
    toml["unknown"].write_text("learning_rate = 0.1\n")
    toml["wrongtype"].write_text('epochs = "two"\n')
    toml["latin1"] = root / "latin1.toml"
    toml["latin1"].write_bytes(b'run_name = "caf\xe9"\n')
    (root / "empty.txt").write_text("\n\n")
    paths.update(base=base, ckpt_root=ckpt_root, runs_root=root / "runs", step=str(step),
                 truncated=str(truncated), root=root,
                 **{f"toml_{k}": str(v) for k, v in toml.items()})
    return paths


TRAIN_CASES = [
    ("missing data path", lambda b: ["--data", str(b["root"] / "nowhere")], "does not exist"),
    ("data path is a file", lambda b: ["--data", b["a_file"]], "is a file"),
    ("no test split", lambda b: ["--data", b["no_test"]], "no test file"),
    ("no text column", lambda b: ["--data", b["no_text"]], "no column 'text'"),
    ("wrong text column flag", lambda b: ["--text-column", "body"], "no column 'body'"),
    ("labels vs num-labels", lambda b: ["--data", b["labels_3"], "--num-labels", "3"],
     "the train split has 2 labels (0, 3) but --num-labels is 3"),
    ("test label the train split lacks", lambda b: ["--data", b["unknown_test"]],
     "the test split has label 2 that the train split does not have"),
    ("test string label the train split lacks", lambda b: ["--data", b["strings"]],
     "the test split has label 'neutral' that the train split does not have"),
    ("label missing from --labels", lambda b: ["--data", b["strings"], "--labels",
                                               "negative,neutral"],
     "label 'positive' that --labels does not list"),
    ("--labels twice", lambda b: ["--labels", "a,b,a"], "lists a more than once"),
    ("--labels vs --num-labels", lambda b: ["--labels", "a,b,c", "--num-labels", "2"],
     "--labels lists 3 labels but --num-labels is 2"),
    ("one string label", lambda b: ["--data", b["one_string"]], "only one label ('pos')"),
    ("one integer label", lambda b: ["--data", b["one_int"], "--labels", "0,1"],
     "the train split has only one label (0): a classifier needs two or more classes"),
    ("float labels", lambda b: ["--data", b["float_labels"]], "holds double labels"),
    ("unlabelled test, no validation", lambda b: ["--data", b["unlabelled_test"]],
     "has no labels"),
    ("two validation splits", lambda b: ["--data", b["two_val"]], "keep one validation split"),
    ("bad class weights", lambda b: ["--class-weights", "inverse"], "invalid choice"),
    ("empty text", lambda b: ["--data", b["empty_text"]], "1 empty texts"),
    ("null text", lambda b: ["--data", b["null_text"]], "1 missing texts"),
    ("empty dataset", lambda b: ["--data", b["empty"]], "empty"),
    ("non-UTF-8 csv", lambda b: ["--data", b["latin1"]], "UTF-8"),
    ("not a model", lambda b: ["--model", b["not_a_model"]], "not a complete model folder"),
    ("model without weights", lambda b: ["--model", b["no_weights"]], "not a complete model"),
    ("missing model path", lambda b: ["--model", "./nope/model"], "does not exist"),
    ("missing checkpoint", lambda b: ["--resume", str(b["root"] / "step-9")], "does not exist"),
    ("truncated checkpoint", lambda b: ["--resume", b["truncated"]], "truncated"),
    ("batch size 0", lambda b: ["--batch-size", "0"], "--batch-size must be positive"),
    ("lr 0", lambda b: ["--lr", "0"], "--lr must be positive"),
    ("negative epochs", lambda b: ["--epochs", "-1"], "--epochs must be positive"),
    ("max length 0", lambda b: ["--max-length", "0"], "--max-length must be at least 8"),
    ("max length over the model", lambda b: ["--max-length", "4096"], "exceeds what"),
    ("too many train samples", lambda b: ["--train-samples", "100000"], "is larger than"),
    ("malformed TOML", lambda b: ["--config", b["toml_malformed"]], "not valid TOML"),
    ("unknown config key", lambda b: ["--config", b["toml_unknown"]], "unknown key"),
    ("wrong type in config", lambda b: ["--config", b["toml_wrongtype"]], "must be int"),
    ("missing config file", lambda b: ["--config", "nope.toml"], "does not exist"),
    ("unwritable checkpoint dir", lambda b: ["--checkpoint-dir", b["a_file"] + "/x"],
     "cannot write"),
    ("run already exists", lambda b: ["--run-name", "done"], "already exists"),
    ("bad precision", lambda b: ["--precision", "fp8"], "invalid choice"),
    ("negative seed", lambda b: ["--seed", "-1"], "--seed must be in"),
    ("huge seed", lambda b: ["--seed", str(2**40)], "--seed must be in"),
    ("device type that is not CPU or CUDA", lambda b: ["--device", "mps"], "not supported"),
    ("run name too long", lambda b: ["--run-name", "x" * 300], "bytes long"),
    ("run name with a path", lambda b: ["--run-name", "done/best"], "one folder name"),
    ("NaN weight decay", lambda b: ["--weight-decay", "nan"], "must be a finite number"),
    ("NaN max grad norm", lambda b: ["--max-grad-norm", "nan"], "must be a finite number"),
    ("texts of invisible characters", lambda b: ["--data", b["zero_width"]], "1 empty texts"),
    ("split in two formats", lambda b: ["--data", b["two_formats"]], "several formats"),
    ("non-UTF-8 TOML", lambda b: ["--config", b["toml_latin1"]], "not UTF-8"),
    ("0-byte parquet", lambda b: ["--data", b["zero_bytes"]], "cannot read train.parquet"),
    ("malformed jsonl line", lambda b: ["--data", b["bad_jsonl"]], "cannot read train.jsonl"),
    ("test with other columns", lambda b: ["--data", b["other_columns"]],
     "the test split has no column 'text' (columns: review, label)"),
]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(bad, capsys, case):
    _, extra, message = case
    before = tree_digest(bad["ckpt_root"]), tree_digest(bad["runs_root"])
    argv = [*bad["base"], "--run-name", "new", *extra(bad)]
    try:
        code = train.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert (tree_digest(bad["ckpt_root"]), tree_digest(bad["runs_root"])) == before
    assert not (bad["ckpt_root"] / "new").exists()


def test_resume_from_another_model_is_refused(bad, tiny_model_dir, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    argv = [*bad["base"], "--model", str(other), "--resume", bad["step"]]
    assert train.main(argv) == 2
    assert "model:" in capsys.readouterr().err


EVAL_CASES = [
    ("no model", lambda b: ["--data", b["no_test"]], "--model is required"),
    ("not a model", lambda b: ["--model", b["not_a_model"]], "not a complete model"),
    ("missing data", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--data",
                                str(b["root"] / "nowhere")], "does not exist"),
    ("no labels column", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--data",
                                    b["no_text"]], "no column 'text'"),
    ("label the model lacks", lambda b: ["--model", b["ckpt_root"] / "done" / "best",
                                         "--data", b["labels_3"]],
     "the test split has label 3 that the model does not have (ids 0..1: negative, positive)"),
    ("name the model lacks", lambda b: ["--model", b["ckpt_root"] / "done" / "best",
                                        "--data", b["strings"]],
     "label 'neutral' that the model does not have"),
    ("no such split", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--data",
                                 b["strings"], "--split", "validation"],
     "has no validation split: pass --split test"),
    ("unlabelled split", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--data",
                                    b["unlabelled_test"]], "has no labels (all -1)"),
    ("max length 0", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--max-length",
                                "0"], "--max-length must be at least 8"),
    ("max length over the model", lambda b: ["--model", b["ckpt_root"] / "done" / "best",
                                             "--max-length", "4096"], "exceeds what"),
    ("report dir is a file", lambda b: ["--model", b["ckpt_root"] / "done" / "best",
                                        "--report-dir", b["a_file"]], "is a file"),
    ("base model without a head", lambda b: ["--model", b["no_head"], "--data",
                                             b["labels_3"]], "no trained classification head"),
    ("negative seed", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--seed", "-1"],
     "--seed must be in"),
    ("device type", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--device", "xla"],
     "not supported"),
]


@pytest.mark.parametrize("case", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_evaluate_bad_input(bad, capsys, case):
    _, extra, message = case
    code = evaluate.main([str(x) for x in extra(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


PREDICT_CASES = [
    ("no model", lambda b: ["some text"], "--model is required"),
    ("blank input file", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--file",
                                    b["root"] / "empty.txt"], "all 2 texts are blank"),
    ("missing input file", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--file",
                                      b["root"] / "none.txt"], "does not exist"),
    ("model without weights", lambda b: ["--model", b["no_weights"], "text"],
     "not a complete model"),
    ("batch size 0", lambda b: ["--model", b["no_weights"], "--batch-size", "0", "x"],
     "--batch-size must be positive"),
    ("max length 1", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--max-length",
                                "1", "x"], "--max-length must be at least 8"),
    ("max length over the model", lambda b: ["--model", b["ckpt_root"] / "done" / "best",
                                             "--max-length", "4096", "x"], "exceeds what"),
    ("base model without a head", lambda b: ["--model", b["no_head"], "x"],
     "no trained classification head"),
    ("device type", lambda b: ["--model", b["ckpt_root"] / "done" / "best", "--device", "mps",
                               "x"], "not supported"),
    ("non-UTF-8 argument", lambda b: ["--model", b["ckpt_root"] / "done" / "best",
                                      "caf\udce9 bad"], "text 1 is not UTF-8"),
]


def test_predict_non_utf8_stdin_is_one_line(bad, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 bad\n")))
    code = predict.main(["--model", str(bad["ckpt_root"] / "done" / "best")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "standard input is not UTF-8" in err[0], err


def test_unwritable_cache_only_costs_time(bad, capsys):
    assert train.main([*bad["base"], "--run-name", "no-cache", "--cache-dir",
                       bad["a_file"] + "/cache"]) == 0


@pytest.mark.parametrize("case", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_bad_input(bad, capsys, case):
    _, extra, message = case
    code = predict.main([str(x) for x in extra(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_unreachable_hub_says_to_pass_local_paths(bad, tiny_model_dir, capsys):
    env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # what an unreachable hub looks like, without waiting
    try:
        assert train.main([*bad["base"], "--data", "stanfordnlp/imdb"]) == 2
        assert "pass a local --data folder" in capsys.readouterr().err
        assert train.main([*bad["base"], "--model", "org/no-such-model"]) == 2
        assert "pass a local --model folder" in capsys.readouterr().err
    finally:
        if env is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = env


def test_real_process_exit_status_and_no_traceback(bad):
    """The same contract seen from outside: a subprocess, its status and its stderr."""
    proc = subprocess.run([sys.executable, "-m", "bertsent.train", *bad["base"], "--data",
                           bad["labels_3"], "--num-labels", "3"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_single_class_test_split_and_huge_reviews_are_fine(bad, tiny_model_dir, tmp_path,
                                                            capsys):
    frame = make_frame(30, 9)
    frame.loc[3, "text"] = "great " * 20_000  # a 120k-character review is truncated, not fatal
    data = write_split_folder(tmp_path, "oneclass", frame, test=frame.assign(label=0))
    code = train.main([*bad["base"], "--data", data, "--run-name", "oneclass",
                       "--checkpoint-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0 and '"f1": 0.0' in out


def test_a_hub_that_does_not_answer_switches_to_offline_at_once(monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub_constants

    from bertsent import hub

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    hub.hub_answers.cache_clear()
    try:
        assert hub.hub_answers() is False
        assert hub_constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    finally:
        hub.hub_answers.cache_clear()


@pytest.mark.parametrize("side_by_side", [False, True])
def test_out_of_memory_in_evaluation_names_the_flag(bad, tiny_data_dir, capsys, monkeypatch,
                                                    side_by_side):
    import threading

    import torch

    from bertsent import engine

    where = []

    def no_memory(*args, **kwargs):
        where.append(threading.current_thread().name)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 9999999999 bytes")

    monkeypatch.setattr(engine, "forward_logits", no_memory)
    threads = torch.get_num_threads()
    # side by side: 8 batches on two threads, so the failing batch runs in a worker thread
    extra = ["--samples", "16", "--batch-size", "2", "--threads", "2"] if side_by_side \
        else ["--samples", "4"]
    try:
        code = evaluate.main(["--model", str(bad["ckpt_root"] / "done" / "best"), "--data",
                              str(tiny_data_dir), *extra])
        assert torch.get_num_threads() == (2 if side_by_side else threads)  # given back
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--batch-tokens or --batch-size for evaluate" in err[0]
    assert where and where[0].startswith("bertsent-score") == side_by_side
