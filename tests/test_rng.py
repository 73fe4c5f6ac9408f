from __future__ import annotations

import numpy as np
import pytest

from densitydp._rng import as_generator, seed_entropy, spawn


def test_as_generator_accepts_spec7_inputs():
    assert as_generator(3).integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)
    generator = np.random.default_rng(5)
    assert as_generator(generator) is generator
    sequence = np.random.SeedSequence(11)
    assert as_generator(sequence).random() == np.random.default_rng(11).random()
    assert isinstance(as_generator(None), np.random.Generator)
    assert as_generator(np.int64(4)).random() == np.random.default_rng(4).random()


@pytest.mark.parametrize("bad", [1.5, "3", True, np.random.RandomState(0)])
def test_as_generator_rejects_other_types(bad):
    with pytest.raises(TypeError, match="`rng` must be None, an int seed"):
        as_generator(bad)


def test_as_generator_rejects_negative_seed():
    with pytest.raises(ValueError, match="int seed >= 0; got -1"):
        as_generator(-1)


def test_spawn_is_reproducible_and_independent():
    first = [g.random(4) for g in spawn(42, 3)]
    again = [g.random(4) for g in spawn(42, 3)]
    np.testing.assert_array_equal(first, again)
    assert len({tuple(x) for x in first}) == 3
    # a spawned child never replays the parent's own stream
    assert not np.array_equal(np.random.default_rng(42).random(4), first[0])
    assert spawn(0, 0) == []
    with pytest.raises(ValueError, match="`n_children` must be an int >= 0"):
        spawn(0, -1)


def test_seed_entropy_rebuilds_the_generator():
    for rng in (None, 123):
        generator = as_generator(rng)
        record = seed_entropy(generator)
        expected = generator.random(3)
        rebuilt = np.random.default_rng(
            np.random.SeedSequence(record["entropy"], spawn_key=record["spawn_key"])
        )
        np.testing.assert_array_equal(rebuilt.random(3), expected)
    child = spawn(9, 2)[1]
    assert seed_entropy(child) == {"entropy": 9, "spawn_key": [1]}
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        seed_entropy(9)
