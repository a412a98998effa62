import pytest
import torch

from bertsent.optim import lr_at, param_groups


@pytest.mark.parametrize("step, expected", [
    (0, 1e-3 * 1 / 11), (4, 1e-3 * 5 / 11), (9, 1e-3 * 10 / 11),  # warmup, never zero
    (10, 1e-3), (55, 1e-3 * 0.5), (99, 1e-3 * 1 / 90), (100, 0.0), (150, 0.0),
])
def test_schedule_is_linear_warmup_then_linear_decay_to_zero(step, expected):
    assert lr_at(step, base_lr=1e-3, warmup_steps=10, total_steps=100) == pytest.approx(expected)


def test_schedule_without_warmup_starts_at_peak():
    assert lr_at(0, base_lr=2.0, warmup_steps=0, total_steps=4) == 2.0
    assert lr_at(2, base_lr=2.0, warmup_steps=0, total_steps=4) == 1.0


def test_no_decay_on_biases_and_layernorm(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay_names)
    assert "bert.embeddings.LayerNorm.weight" in no_decay_names
    assert "classifier.weight" in decay_names and "classifier.bias" in no_decay_names
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


def test_head_learning_rate_multiplier(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    from bertsent.optim import set_lr

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    groups = param_groups(model, 0.01, head_lr_mult=10.0)
    opt = torch.optim.AdamW(groups, lr=1.0)
    set_lr(opt, 2e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        heads = {("classifier" in names[id(p)] or "pooler" in names[id(p)])
                 for p in group["params"]}
        assert len(heads) == 1
        assert group["lr"] == pytest.approx(2e-3 if heads.pop() else 2e-4)


def test_frozen_parameters_are_left_out():
    model = torch.nn.Linear(3, 2)
    model.weight.requires_grad_(False)
    (group,) = param_groups(model, 0.1)
    assert group["weight_decay"] == 0.0 and group["params"] == [model.bias]


def test_layer_lr_decay_slows_lower_layers_and_embeddings_most(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    names = {id(p): n for n, p in model.named_parameters()}
    mult = {names[id(p)]: g["lr_mult"]
            for g in param_groups(model, 0.01, head_lr_mult=20.0, layer_lr_decay=0.5)
            for p in g["params"]}
    assert len(mult) == len(names)  # every parameter in exactly one group
    top, bottom = model.config.num_hidden_layers - 1, 0
    assert mult[f"bert.encoder.layer.{top}.output.dense.weight"] == 1.0
    assert mult[f"bert.encoder.layer.{bottom}.output.dense.weight"] == 0.5 ** top
    assert mult["bert.embeddings.word_embeddings.weight"] == 0.5 ** (top + 1)
    assert mult["classifier.weight"] == 20.0


def test_without_layer_decay_the_groups_are_plain_adamws(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    groups = param_groups(model, 0.01, head_lr_mult=20.0)
    assert [(g["weight_decay"], g["lr_mult"]) for g in groups] == [
        (0.01, 1.0), (0.01, 20.0), (0.0, 1.0), (0.0, 20.0)]
