import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from transformers import AutoModelForSequenceClassification

from bertsent.engine import NonFiniteError, evaluate, train_step
from bertsent.metrics import compute_metrics
from bertsent.tokens import Collator

ROOT = Path(__file__).resolve().parents[1]

torch.use_deterministic_algorithms(False)


def load(tiny_model_dir, dropout=True):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    if not dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    return model


def batch_of(n, seed, length=12):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        size = int(torch.randint(4, length, (1,), generator=g))
        ids = torch.randint(5, 40, (size,), generator=g).numpy()
        items.append((i, np.concatenate([[2], ids, [3]]), i % 2))
    return Collator(0, 8)(items)


def split(batch, parts):
    n = len(batch["labels"])
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [{k: v[a:b] for k, v in batch.items()} for a, b in itertools.pairwise(bounds)]


def test_one_step_lowers_the_loss_and_a_few_overfit(tiny_model_dir):
    model = load(tiny_model_dir, dropout=False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = batch_of(8, 0)
    before = evaluate(model, [batch], torch.device("cpu")).metrics["loss"]
    train_step(model, opt, [batch], lr=1e-4, num_items=8)
    assert evaluate(model, [batch], torch.device("cpu")).metrics["loss"] < before
    losses = [train_step(model, opt, [batch], lr=3e-3, num_items=8).loss for _ in range(40)]
    assert losses[-1] < 0.05
    result = evaluate(model, [batch], torch.device("cpu"))
    assert result.metrics["accuracy"] == 1.0


def test_accumulation_equals_the_big_batch(tiny_model_dir):
    big = batch_of(12, 1)
    a, b = load(tiny_model_dir, dropout=False), load(tiny_model_dir, dropout=False)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-3)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-3)
    ra = train_step(a, opt_a, [big], lr=1e-3, num_items=12)
    rb = train_step(b, opt_b, split(big, 3), lr=1e-3, num_items=12)  # K=3 micro-batches of 4
    assert ra.loss == pytest.approx(rb.loss, rel=1e-6)
    assert ra.grad_norm == pytest.approx(rb.grad_norm, rel=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_uneven_last_window_is_weighted_per_sample(tiny_model_dir):
    big = batch_of(7, 2)
    a, b = load(tiny_model_dir, dropout=False), load(tiny_model_dir, dropout=False)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-3)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-3)
    train_step(a, opt_a, [big], lr=1e-3, num_items=7)
    train_step(b, opt_b, split(big, 2), lr=1e-3, num_items=7)  # 3 + 4 samples
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_clipping_caps_the_gradient_and_lr_is_applied(tiny_model_dir):
    model = load(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    train_step(model, opt, [batch_of(4, 3)], lr=0.123, num_items=4, max_grad_norm=1e-3)
    assert all(g["lr"] == 0.123 for g in opt.param_groups)
    assert all(p.grad is None for p in model.parameters())


def test_nonfinite_loss_stops_or_skips(tiny_model_dir):
    model = load(tiny_model_dir)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    before = model.bert.pooler.dense.weight.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(NonFiniteError):
        train_step(model, opt, [batch_of(4, 4)], lr=1e-3, num_items=4)
    result = train_step(model, opt, [batch_of(4, 4)], lr=1e-3, num_items=4,
                        skip_nonfinite=True)
    assert result.skipped
    torch.testing.assert_close(model.bert.pooler.dense.weight, before)


def test_metrics_equal_sklearn_on_known_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(101, 2)).astype(np.float32)
    labels = rng.integers(0, 2, size=101)
    preds = logits.argmax(1)
    m = compute_metrics(logits, labels)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, preds))
    assert m["f1"] == pytest.approx(f1_score(labels, preds))
    assert m["precision"] == pytest.approx(precision_score(labels, preds))
    assert m["recall"] == pytest.approx(recall_score(labels, preds))
    expected = -np.mean(np.log(np.exp(logits[np.arange(101), labels]) / np.exp(logits).sum(1)))
    assert m["loss"] == pytest.approx(expected, rel=1e-5)


def test_metrics_on_a_single_class_do_not_crash():
    m = compute_metrics(np.array([[2.0, 0.0], [1.0, 0.0]]), np.array([0, 0]))
    assert m["accuracy"] == 1.0 and m["f1"] == 0.0


def test_evaluate_scores_the_whole_set_not_batch_means(tiny_model_dir):
    model = load(tiny_model_dir)
    batches = split(batch_of(10, 5), 3)
    result = evaluate(model, batches, torch.device("cpu"))
    assert result.metrics["samples"] == 10 and result.indices.tolist() == list(range(10))
    direct = compute_metrics(result.logits, result.labels)
    assert result.metrics == direct


def test_confident_mistakes_are_the_surest_wrong_rows():
    from bertsent.metrics import confident_mistakes, softmax

    probs = softmax(np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 4.0], [2.0, 0.0]]))
    labels = np.array([1, 1, 0, 0])  # rows 0 and 2 are wrong; row 2 is surer
    assert confident_mistakes(labels, probs, 5).tolist() == [2, 0]
    assert confident_mistakes(labels, probs, 1).tolist() == [2]


def test_token_budget_batches_score_the_same_as_row_batches(tiny_model_dir):
    from bertsent.tokens import EncodedDataset, eval_loader

    model = load(tiny_model_dir)
    rng = np.random.default_rng(4)
    ids = [np.concatenate([[2], rng.integers(5, 40, int(n)), [3]]) for n in
           rng.integers(2, 60, 23)]
    ds = EncodedDataset(ids, np.arange(23) % 2)
    rows = evaluate(model, eval_loader(ds, 64, 0, 64), torch.device("cpu"))
    budget = evaluate(model, eval_loader(ds, 64, 0, 64, tokens=128), torch.device("cpu"))
    assert len(eval_loader(ds, 64, 0, 64, tokens=128)) > 1
    np.testing.assert_allclose(budget.logits, rows.logits, atol=1e-5)
    assert budget.indices.tolist() == rows.indices.tolist() == list(range(23))


def test_predict_with_a_token_budget_equals_one_text_at_a_time_in_fp32(tiny_model_dir):
    from transformers import AutoTokenizer

    from bertsent.predict import predict_proba

    model, tokenizer = load(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["good great fine", "bad", "awful bad bad terrible movie plot", "great " * 30, "ok"]
    kw = dict(max_length=64, truncation="head+tail", batch_size=32, device=torch.device("cpu"))
    budget = predict_proba(model, tokenizer, texts, batch_tokens=16, **kw)
    whole = predict_proba(model, tokenizer, texts, batch_tokens=0, **kw)
    alone = torch.cat([predict_proba(model, tokenizer, [t], **kw) for t in texts])
    torch.testing.assert_close(budget, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(whole, alone, atol=1e-6, rtol=0)


KERNELS = """
import sys, torch
from bertsent.runtime import keep_compiled_kernels
print("applied", keep_compiled_kernels(torch.device("cpu"), capacity=int(sys.argv[1])))
weight = torch.randn(384, 384, dtype=torch.bfloat16)  # large enough for oneDNN
for rows in (64, 128, 64):  # the first shape again, after another
    torch.nn.functional.linear(torch.randn(rows, 384, dtype=torch.bfloat16), weight)
"""


def onednn_kernels(capacity: int, **env: str) -> tuple[str, int, int]:
    """(what keep_compiled_kernels returned, kernels compiled, kernels found in the cache)."""
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if "PRIMITIVE_CACHE_CAPACITY" not in k}
    out = subprocess.run([sys.executable, "-c", KERNELS, str(capacity)], capture_output=True,
                         text=True, check=True, cwd=ROOT,
                         env={**clean, "ONEDNN_VERBOSE": "profile_create", **env}).stdout
    matmuls = [line for line in out.splitlines() if ",primitive,create:" in line
               and ",matmul," in line]
    applied = next(line for line in out.splitlines() if line.startswith("applied"))
    return applied, sum("cache_miss" in m for m in matmuls), sum("cache_hit" in m for m in matmuls)


def test_compiled_kernels_are_kept_and_a_users_setting_stands():
    """keep_compiled_kernels() sets oneDNN's kernel cache after torch is imported, before the
    first matmul: a cache of one kernel compiles the first shape again, the default finds it;
    ONEDNN_PRIMITIVE_CACHE_CAPACITY set by the user wins."""
    applied, compiled, found = onednn_kernels(4096)
    if compiled == 0:
        pytest.skip("oneDNN does not run this CPU's bf16 matmuls (no native bf16)")
    assert (applied, compiled, found) == ("applied True", 2, 1)
    assert onednn_kernels(1) == ("applied True", 3, 0)
    assert onednn_kernels(4096, ONEDNN_PRIMITIVE_CACHE_CAPACITY="1") == ("applied False", 3, 0)


def test_freed_memory_is_reused_without_page_faults():
    """A 64 MB tensor freed and allocated again: glibc maps and the kernel zeroes it afresh
    every time (16,000 page faults) unless reuse_freed_memory() keeps it (what every CPU
    training run does)."""
    import resource
    import sys

    from bertsent.runtime import reuse_freed_memory

    assert reuse_freed_memory(False) is False
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's allocator only")
    assert reuse_freed_memory(True) is True

    def faults_of_one_allocation() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 1024 * 1024)  # 64 MB, written once, freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(20):  # glibc settles on which freed chunks it hands back
        faults_of_one_allocation()
    assert max(faults_of_one_allocation() for _ in range(5)) < 1000
