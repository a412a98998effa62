import numpy as np
import pytest

from bertsent.sampling import EvalBatchSampler, TrainBatchSampler, shuffled_batches


@pytest.mark.parametrize("group", [False, True])
def test_every_sample_once_per_epoch_and_epochs_differ(group):
    lengths = np.random.default_rng(0).integers(5, 300, size=103)
    a = shuffled_batches(lengths, 8, seed=1, epoch=0, group_by_length=group)
    b = shuffled_batches(lengths, 8, seed=1, epoch=1, group_by_length=group)
    assert sorted(np.concatenate(a).tolist()) == list(range(103))
    assert [x.tolist() for x in a] != [x.tolist() for x in b]
    assert [x.tolist() for x in a] == [x.tolist() for x in
                                       shuffled_batches(lengths, 8, 1, 0, group)]


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(0).integers(5, 500, size=2000)

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    plain = padded(shuffled_batches(lengths, 16, 3, 0, group_by_length=False))
    grouped = padded(shuffled_batches(lengths, 16, 3, 0, group_by_length=True))
    assert grouped < 0.7 * plain


@pytest.mark.parametrize("group", [False, True])
def test_a_sampler_resumes_mid_epoch_from_a_batch_count(group):
    lengths = np.arange(50) % 17 + 1
    sampler = TrainBatchSampler(lengths, 4, seed=5, group_by_length=group)
    sampler.set_epoch(2)
    it = iter(sampler)
    first = [next(it) for _ in range(5)]
    rest = list(it)
    restored = TrainBatchSampler(lengths, 4, seed=5, group_by_length=group)
    restored.set_epoch(2, 5)  # what a checkpoint's progress holds: epoch, batches done
    assert len(restored) == len(rest) and list(restored) == rest
    assert sorted(sum(first + rest, [])) == list(range(50))


@pytest.mark.parametrize("world", [2, 3])
def test_shards_cover_the_global_batches(world):
    lengths = np.arange(37) + 1
    single = TrainBatchSampler(lengths, 2 * world, seed=0, group_by_length=True)
    ranks = [TrainBatchSampler(lengths, 2, seed=0, group_by_length=True, world_size=world,
                               rank=r) for r in range(world)]
    for global_batch, *parts in zip(single, *ranks, strict=True):
        assert sum(parts, []) == global_batch and all(parts)


def test_eval_sampler_splits_the_set_exactly_once():
    lengths = np.random.default_rng(1).integers(1, 100, size=29)
    for world in (1, 2, 3, 4):
        seen = [i for r in range(world) for b in EvalBatchSampler(lengths, 4, world, r)
                for i in b]
        assert sorted(seen) == list(range(29))


def test_longest_first_keeps_each_batch_within_the_token_budget():
    from bertsent.sampling import longest_first

    lengths = np.concatenate([np.random.default_rng(2).integers(1, 600, size=301),
                              np.full(200, 10)])
    batches = longest_first(lengths, 64, 4096)
    assert sorted(i for b in batches for i in b) == list(range(501))
    flat = [i for b in batches for i in b]
    assert (np.diff(lengths[flat]) <= 0).all()  # longest first, across batches too
    for b in batches:
        padded = -(-int(lengths[b[0]]) // 8) * 8
        assert len(b) <= 64 and (len(b) * padded <= 4096 or len(b) == 1)
    assert len(batches[0]) == 4096 // (-(-int(lengths.max()) // 8) * 8)  # long: few rows
    assert max(len(b) for b in batches) == 64  # short reviews: the row limit
    assert longest_first(lengths, 64, 0) == longest_first(lengths, 64, 10**9)  # rows alone
    assert all(len(b) == 1 for b in longest_first([5000, 4000], 64, 4096))  # over budget: one


def test_eval_sampler_with_a_budget_still_splits_the_set_exactly_once():
    lengths = np.random.default_rng(3).integers(1, 512, size=57)
    for world in (1, 2, 3):
        seen = [i for r in range(world)
                for b in EvalBatchSampler(lengths, 16, world, r, tokens=1024) for i in b]
        assert sorted(seen) == list(range(57))
