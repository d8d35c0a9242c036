"""The reservoir state cache (`lit_vir.models.state_cache`) on its own: keys as a plain numpy projection, every
stored image found in its row whatever the insertion order, unseen images not found, no insert past the capacity,
the dtype of the stored states, and the memory it asks for counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_vir.models.state_cache import ReservoirStateCache


def test_the_key_is_the_images_float64_projection_on_a_seeded_positive_probe():
    cache = ReservoirStateCache(4, (1, 2, 3), image_numel=12, seed=7)
    probe = torch.rand(12, generator=torch.Generator().manual_seed(7), dtype=torch.float64).numpy() + 0.5
    images = torch.rand(3, 3, 2, 2)
    np.testing.assert_allclose(
        cache.fingerprint(images).numpy(), images.double().flatten(1).numpy() @ probe, rtol=1e-15
    )
    assert cache.fingerprint(images).dtype == torch.float64 and (cache.probe >= 0.5).all()
    assert not torch.equal(cache.probe, ReservoirStateCache(4, (1, 2, 3), 12, seed=8).probe)
    seed_0 = torch.rand(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    assert torch.equal(ReservoirStateCache(4, (1, 2, 3), 12).probe, seed_0)  # the default seed is 0


def test_each_stored_image_is_found_in_its_row_and_unseen_ones_are_not():
    cache = ReservoirStateCache(6, (1, 2, 2), image_numel=4)
    images = torch.rand(5, 1, 2, 2)
    states = torch.arange(5 * 4, dtype=torch.float64).reshape(5, 1, 2, 2)
    empty_rows, empty_found = cache.lookup(cache.fingerprint(images))
    assert not empty_found.any() and empty_rows.tolist() == [0] * 5 and empty_rows.dtype == torch.int64
    cache.insert(cache.fingerprint(images[[3, 0, 4]]), states[[3, 0, 4]])
    assert cache.lookup(cache.fingerprint(images))[1].tolist() == [True, False, False, True, True]
    cache.insert(cache.fingerprint(images[[1]]), states[[1]])  # a second insert: the sorted index is rebuilt
    rows, found = cache.lookup(cache.fingerprint(images))
    assert found.tolist() == [True, True, False, True, True]
    for image in (0, 1, 3, 4):
        assert torch.equal(cache.states[rows[image]], states[image].float())  # stored as float32
    unseen = torch.rand(3, 1, 2, 2) + 2.0  # brighter than any stored image: keys past the last one
    assert not cache.lookup(cache.fingerprint(unseen))[1].any()
    assert cache.count == 4 and not cache.full


def test_nothing_is_stored_past_the_capacity():
    cache = ReservoirStateCache(3, (1, 1, 1), image_numel=1, dtype=torch.float16)
    keys = torch.tensor([5.0, 1.0], dtype=torch.float64)
    cache.insert(keys, torch.tensor([[[[0.5]]], [[[0.25]]]]))
    cache.insert(torch.tensor([3.0, 4.0], dtype=torch.float64), torch.tensor([[[[1.0]]], [[[2.0]]]]))  # room for one
    assert cache.count == 3 and cache.full and cache.keys.tolist() == [5.0, 1.0, 3.0]
    assert cache.states.dtype == torch.float16 and cache.states.flatten().tolist() == [0.5, 0.25, 1.0]
    cache.insert(torch.tensor([9.0], dtype=torch.float64), torch.tensor([[[[9.0]]]]))
    assert cache.count == 3 and cache.keys.tolist() == [5.0, 1.0, 3.0]
    rows, found = cache.lookup(torch.tensor([1.0, 3.0, 4.0, 9.0], dtype=torch.float64))
    assert found.tolist() == [True, True, False, False] and rows[:2].tolist() == [1, 2]


def test_the_memory_asked_for_is_every_state_and_its_key():
    assert ReservoirStateCache.bytes_needed(1000, (2, 16, 100), torch.float32) == 1000 * (2 * 16 * 100 * 4 + 8)
    assert ReservoirStateCache.bytes_needed(10, (1, 3, 5), torch.bfloat16) == 10 * (15 * 2 + 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cache_on_the_gpu_keys_gpu_images():
    cache = ReservoirStateCache(2, (1, 1, 1), image_numel=4, device="cuda")
    images = torch.rand(2, 1, 2, 2, device="cuda")
    cache.insert(cache.fingerprint(images), torch.ones(2, 1, 1, 1, device="cuda"))
    assert cache.lookup(cache.fingerprint(images))[1].tolist() == [True, True]
