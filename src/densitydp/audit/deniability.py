"""Plausible-deniability statistics (Feyisetan et al., WSDM 2020): per word, ``N_w``, the
fraction of draws that return the word itself, and ``S_w``, the number of distinct outputs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import save_figure
from .._rng import RNGLike, as_generator, seed_entropy
from .._validation import check_int
from ..mechanisms.base import mechanism_and_words
from .blackbox import checked_mechanism
from .sampling import sample_counts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plausible_deniability", "plot_plausible_deniability"]


def plausible_deniability(
    mechanism: Any,
    word_ids: Any,
    n_samples: int = 1_000,
    rng: RNGLike = None,
    *,
    space: Any = None,
    interface: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """``N_w`` and ``S_w`` of each word over ``n_samples`` draws (through ``mechanism.sample``).

    ``mechanism`` is anything :func:`densitydp.as_mechanism` accepts (an object with ``space``
    and ``sample(word_ids, rng)``, or a function with ``space=``); no claim is needed.

    Returns
    -------
    pandas.DataFrame
        Columns ``word_id``, ``word``, ``N_w`` (fraction of draws equal to the word), ``S_w``
        (distinct outputs among the draws) and ``n_samples``; ``attrs`` hold the mechanism's
        repr and the seed entropy.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=100, dim=3, n_clusters=2, rng=0)
    >>> table = dd.plausible_deniability(dd.ExponentialMechanism(space, 50.0), [0, 1], rng=0)
    >>> table[["word_id", "N_w", "S_w"]].to_numpy().tolist()
    [[0.0, 0.999, 2.0], [1.0, 0.586, 26.0]]
    """
    import pandas as pd

    mechanism = checked_mechanism(mechanism, space=space, interface=interface)
    ids = mechanism_and_words(mechanism, word_ids)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    words, inverse = np.unique(ids, return_inverse=True)
    # sample_counts draws 2 * (n // 2): ask for an even count and use all of it
    even = n_samples + (n_samples % 2)
    first, second = sample_counts(mechanism, words, even, generator, progress=progress)
    kept, distinct = np.empty(len(words)), np.empty(len(words), dtype=np.int64)
    for i, word in enumerate(words):
        outputs = np.concatenate([first[i][0], second[i][0]])
        counts = np.concatenate([first[i][1], second[i][1]])
        kept[i] = counts[outputs == word].sum() / even
        distinct[i] = len(np.unique(outputs))
    table = pd.DataFrame(
        {
            "word_id": ids,
            "word": mechanism.space.words(ids),
            "N_w": kept[inverse],
            "S_w": distinct[inverse],
            "n_samples": even,
        }
    )
    table.attrs["mechanism"] = repr(mechanism)
    table.attrs["seed"] = seed
    return table


def plot_plausible_deniability(
    tables: Mapping[str, pd.DataFrame],
    path: str | os.PathLike[str] | None = None,
    *,
    ax: Any = None,
) -> Any:
    """Distributions of ``N_w`` and ``S_w`` across words, one curve per labelled table (for
    example one per epsilon: ``{"epsilon 5": table5, "epsilon 10": table10}``), as empirical
    CDFs, on ``ax`` (two matplotlib Axes, for ``N_w`` and ``S_w``; default a new figure). The
    figure is saved atomically to ``path`` when given; returns the figure.

    Raises
    ------
    TypeError
        ``ax`` is not a pair of Axes.
    """
    from .._io import axes_and_figure

    if not tables:
        raise ValueError("`tables` must hold at least one labelled table; got none.")
    figure, axes = axes_and_figure(ax, 2, figsize=(10, 3.8))
    for label, table in tables.items():
        for axis, column in zip(axes, ("N_w", "S_w"), strict=True):
            values = np.sort(table[column].to_numpy(dtype=np.float64))
            axis.step(
                values, np.arange(1, len(values) + 1) / len(values), where="post", label=label
            )
    axes[0].set(xlabel="N_w: fraction of draws returning the word", ylabel="fraction of words")
    axes[1].set(xlabel="S_w: distinct outputs", xscale="log")
    axes[0].legend(fontsize=8)
    if ax is None:
        figure.tight_layout()
    if path is not None:
        save_figure(figure, path)
    return figure
