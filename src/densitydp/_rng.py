"""Random number generation, SPEC 7 style.

Every stochastic public callable takes one ``rng`` argument (None, an int seed, a
:class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator`) and normalises it
once with :func:`as_generator`. Parallel work gets one child generator per *task* (word, chain,
batch) from :func:`spawn`, never one per thread, so that results do not depend on the number of
threads. :func:`seed_entropy` records what is needed to reproduce a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RNGLike", "as_generator", "seed_entropy", "spawn"]

RNGLike = None | int | np.integer | np.random.SeedSequence | np.random.Generator


def as_generator(rng: RNGLike = None) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``rng``.

    Parameters
    ----------
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        None draws fresh entropy from the operating system; an int or a ``SeedSequence`` seeds a
        new PCG64 generator; a ``Generator`` is returned as it is (not copied), so that successive
        calls continue its stream.

    Raises
    ------
    TypeError
        For any other type (``bool``, float, ``RandomState`` ...).
    ValueError
        For a negative int seed.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"`rng` must be None, a Generator or an int seed >= 0; got {rng}.")
        return np.random.default_rng(int(rng))
    raise TypeError(
        "`rng` must be None, an int seed, a numpy.random.SeedSequence or a "
        f"numpy.random.Generator; got {type(rng).__name__}."
    )


def spawn(rng: RNGLike, n_children: int) -> list[np.random.Generator]:
    """Return ``n_children`` independent child generators of ``rng``.

    Children come from :meth:`numpy.random.Generator.spawn` (``SeedSequence`` spawning), so they
    are statistically independent of each other and of the parent, and a given seed always gives
    the same children in the same order.
    """
    n_children = int(n_children)
    if n_children < 0:
        raise ValueError(f"`n_children` must be an int >= 0; got {n_children}.")
    return as_generator(rng).spawn(n_children)


def seed_entropy(rng: np.random.Generator) -> dict[str, Any]:
    """Describe the seed of ``rng`` so a run can be recorded and reproduced.

    Returns ``{"entropy": int, "spawn_key": list[int]}``: ``np.random.default_rng(
    np.random.SeedSequence(entropy, spawn_key=spawn_key))`` rebuilds the generator as it was
    created. Record it *before* drawing from the generator. Generators built on a bit generator
    without a seed sequence give ``{"entropy": None, "spawn_key": []}``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator; got {type(rng).__name__}.")
    seed_seq = getattr(rng.bit_generator, "seed_seq", None)
    if not isinstance(seed_seq, np.random.SeedSequence):
        return {"entropy": None, "spawn_key": []}
    entropy: Any = seed_seq.entropy
    if isinstance(entropy, (int, np.integer)):
        entropy = int(entropy)
    elif entropy is not None:
        entropy = [int(e) for e in entropy]
    return {"entropy": entropy, "spawn_key": [int(k) for k in seed_seq.spawn_key]}
