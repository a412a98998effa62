import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from bertsent.data import check_split, subset_indices
from bertsent.datafiles import load_raw
from bertsent.errors import UserError
from bertsent.tokens import Collator, encode_texts, tokenize, truncate_ids
from tests.conftest import make_frame


def test_collate_pads_to_longest_rounded_to_8():
    items = [(4, np.array([2, 7, 9, 3]), 1), (9, np.array([2, 5, 3]), 0)]
    batch = Collator(pad_id=0, multiple=8)(items)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [2, 7, 9, 3, 0, 0, 0, 0]
    assert batch["attention_mask"].tolist() == [[1] * 4 + [0] * 4, [1] * 3 + [0] * 5]
    assert batch["labels"].tolist() == [1, 0] and batch["index"].tolist() == [4, 9]


def test_collate_never_pads_past_max_length():
    items = [(0, np.arange(1, 11), 1)]
    assert Collator(0, 8, max_length=12)(items)["input_ids"].shape == (1, 12)
    assert Collator(0, 64, max_length=48)(items)["input_ids"].shape == (1, 48)


@pytest.mark.parametrize("strategy, expected", [
    ("head", [0, 1, 2, 3, 4, 5, 6, 7]),
    ("tail", [12, 13, 14, 15, 16, 17, 18, 19]),
    ("head+tail", [0, 1, 14, 15, 16, 17, 18, 19]),
])
def test_truncation_strategies(strategy, expected):
    assert truncate_ids(list(range(20)), 8, strategy) == expected
    assert truncate_ids([1, 2], 8, strategy) == [1, 2]


def test_encode_keeps_special_tokens_within_max_length(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = " ".join(["great"] * 5 + ["movie"] * 30 + ["awful"] * 5)
    for strategy in ("head", "tail", "head+tail"):
        ids = encode_texts([text], tok, 16, strategy)[0]
        assert len(ids) == 16 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    words = tok.convert_ids_to_tokens(encode_texts([text], tok, 16, "head+tail")[0])
    assert words[1:4] == ["great"] * 3 and words[-6:-1] == ["awful"] * 5


def _write(folder, fmt, frames):
    folder.mkdir()
    for split, frame in frames.items():
        if fmt == "parquet":
            frame.to_parquet(folder / f"{split}.parquet")
        elif fmt == "csv":
            frame.to_csv(folder / f"{split}.csv", index=False)
        else:
            frame.to_json(folder / f"{split}.jsonl", orient="records", lines=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_load_local_formats(tmp_path, fmt):
    frames = {"train": make_frame(10, 1), "test": make_frame(6, 2)}
    _write(tmp_path / "d", fmt, frames)
    raw = load_raw(str(tmp_path / "d"))
    assert raw["train"]["text"] == frames["train"]["text"].tolist()
    test = check_split(raw["test"], "test", "text", "label")  # a CSV's "0"/"1": the integers
    assert test["label"] == frames["test"]["label"].tolist()
    assert test.features["label"].dtype == "int64"


def test_load_aclimdb_layout(tmp_path):
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for sub, word in (("neg", "awful"), ("pos", "great")):
            (root / split / sub).mkdir(parents=True)
            for i in range(3):
                (root / split / sub / f"{i}_7.txt").write_text(f"{word} film {i}")
    raw = load_raw(str(tmp_path))
    assert raw["train"]["label"] == [0, 0, 0, 1, 1, 1]
    assert raw["test"]["text"][3] == "great film 0"


def test_subsets_are_seeded_disjoint_and_val_is_stable():
    a = subset_indices(100, 50, 20, 10, 5, seed=3)
    b = subset_indices(100, 50, 40, 10, 5, seed=3)
    assert np.array_equal(a.val, b.val) and np.array_equal(a.train, b.train[:20])
    assert not set(a.train) & set(a.val)
    assert set(a.train) != set(range(20))  # shuffled, not a head slice (IMDb is label-sorted)
    assert not np.array_equal(a.train, subset_indices(100, 50, 20, 10, 5, seed=4).train)


def test_tokenize_is_cached_on_disk(tiny_model_dir, tmp_path):
    from datasets import Dataset

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = Dataset.from_pandas(make_frame(20, 0))
    first = tokenize(ds, tok, 32, "head", str(tmp_path))
    assert len(list(tmp_path.glob("tokens-*.arrow"))) == 1
    again = tokenize(ds, tok, 32, "head", str(tmp_path))
    assert all(np.array_equal(x, y) for x, y in zip(first.input_ids, again.input_ids, strict=True))
    tokenize(ds, tok, 24, "head", str(tmp_path))
    assert len(list(tmp_path.glob("tokens-*.arrow"))) == 2


@pytest.mark.parametrize("frame, message", [
    ({"review": ["a"], "label": [0]}, "no column 'text'"),
    ({"text": ["a", "b"], "label": [0.0, 1.0]}, "holds double labels"),
    ({"text": ["a", "b"], "label": [0, None]}, "1 missing labels"),
    ({"text": ["a", " "], "label": [0, 1]}, "1 empty texts"),
    ({"text": ["a", None], "label": [0, 1]}, "1 missing texts"),
])
def test_bad_splits(frame, message):
    from datasets import Dataset

    with pytest.raises(UserError, match=message):
        check_split(Dataset.from_dict(frame), "train", "text", "label")


def test_bad_data_paths(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_raw(str(tmp_path / "nope"))
    (tmp_path / "only").mkdir()
    make_frame(4, 0).to_parquet(tmp_path / "only" / "train.parquet")
    with pytest.raises(UserError, match="no test file"):
        load_raw(str(tmp_path / "only"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.jsonl").write_text("{not json\n")
    (tmp_path / "bad" / "test.jsonl").write_text(json.dumps({"text": "a", "label": 0}) + "\n")
    with pytest.raises(UserError, match="cannot read train.jsonl .*JSON parse error"):
        load_raw(str(tmp_path / "bad"))


def test_train_samples_larger_than_split():
    with pytest.raises(UserError, match="--train-samples 500 is larger"):
        subset_indices(100, 10, 500, 10, None, seed=0)


def test_only_top_level_split_files_and_shards_are_read(tmp_path):
    from bertsent.datafiles import load_raw
    from tests.conftest import make_frame

    frame = make_frame(10, 1)
    frame.to_parquet(tmp_path / "train.parquet")
    frame.iloc[:4].to_parquet(tmp_path / "test-00000-of-00002.parquet")
    frame.iloc[4:7].to_parquet(tmp_path / "test-00001-of-00002.parquet")
    (tmp_path / "backup" / "old").mkdir(parents=True)
    frame.to_parquet(tmp_path / "backup" / "old" / "train.parquet")  # a stale copy: not read
    frame.to_parquet(tmp_path / "train.backup.parquet")  # not the split's name: not read
    raw = load_raw(str(tmp_path))
    assert len(raw["train"]) == 10 and len(raw["test"]) == 7


def test_strict_json_writes_null_for_non_finite_numbers():
    import json
    import math

    from bertsent.jsonio import strict_json

    text = strict_json({"loss": math.nan, "x": [1.0, math.inf], "ok": 0.5})
    assert json.loads(text) == {"loss": None, "x": [1.0, None], "ok": 0.5}
