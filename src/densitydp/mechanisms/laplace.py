"""The multivariate Laplace mechanism with exact nearest-word decoding (Feyisetan et al. 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._rng import RNGLike, as_generator
from .._validation import (
    check_epsilon,
    check_finite_array,
    check_int,
    check_points,
    check_word_ids,
)
from ..embeddings import EmbeddingSpace
from . import _cascade, _kernels
from .base import IDEAL_ARITHMETIC, TABLE_K, Mechanism, PrivacyBound, neighbor_rows

__all__ = ["MultivariateLaplace"]

#: Relative margin on the row distances (float32 in the table) when deciding that a row suffices.
_MARGIN = 1e-6


def row_reach(row_distances: np.ndarray, table_k: int, n_words: int) -> np.ndarray:
    """Per row, a distance (float64) within which no word outside the row lies: the row's last
    distance (float32 from a table, or recomputed in float64) less the relative ``_MARGIN``;
    ``inf`` when the rows hold the whole vocabulary."""
    reach = row_distances[:, -1].astype(np.float64) * (1.0 - _MARGIN)
    if table_k == n_words:
        reach[:] = np.inf
    return reach


def check_decode_inputs(
    space: EmbeddingSpace, word_ids: Any, points: Any, radii: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(word_ids, points, radii)`` of a public decoding call, checked: int ids in range (1-D),
    finite ``(n, dim)`` points, finite radii >= 0 of the same length; each radius raised to the
    point's float64 distance to its word when that is larger (the row decision needs a radius
    at least the true one)."""
    ids = check_word_ids(word_ids, len(space))
    if ids.ndim != 1:
        raise ValueError(f"`word_ids` must be a 1-D array; got shape {ids.shape}.")
    array = check_points(points, space.dim)
    norms = check_finite_array(radii, "radii", ndim=1)
    if not (len(ids) == len(array) == len(norms)):
        raise ValueError(
            f"`word_ids`, `points` and `radii` must have the same length; got {len(ids)}, "
            f"{len(array)} and {len(norms)}."
        )
    if norms.size and norms.min() < 0.0:
        raise ValueError(f"`radii` must be >= 0; got {norms.min()}.")
    with np.errstate(over="ignore"):  # beyond 1e154 from the word: inf, never row-decided
        distances = np.linalg.norm(array - space.vectors[ids].astype(np.float64), axis=1)
    return ids, array, np.maximum(norms, distances)


#: Largest mean noise radius, in units of the largest vector norm, that is decoded exactly.
MAX_RADIUS = 1e6


class MultivariateLaplace(Mechanism):
    """Multivariate Laplace noise on the embedding, decoded to the exact nearest word.

    ``z = r u`` with ``r ~ Gamma(dim, 1 / epsilon)`` and ``u`` uniform on the unit sphere, which
    has density proportional to ``exp(-epsilon ||z||)``; the output is the word nearest to
    ``phi(w) + z`` (exact Euclidean search, ties to the smaller id).

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter, > 0.
    table_k : int, optional
        Width of the exact neighbour rows used to decode without a full search (default 64, or
        the vocabulary size when it is smaller).

    Notes
    -----
    *Range.* ``epsilon`` below ``min_epsilon = dim / (1e6 max_v ||phi(v)||)`` is refused: the
    mean noise radius ``dim / epsilon`` would exceed a million times the size of the space
    (every output pure noise) and the float64 distances of such points to different words
    would differ in their last digits only. The range is relative, so it does not depend on the
    units of the vectors (3.5e-6 on GloVe 6B 50-d).

    *Guarantee.* ``epsilon * d``-metric DP (Feyisetan et al., WSDM 2020, Theorem 2): the noisy
    vector is ``epsilon * d``-private and decoding is post-processing. Decoding is always exact: the
    decoded word lies within ``2 r`` of ``w`` (triangle inequality), so when the ``table_k``-th
    neighbour of ``w`` is farther than ``2 r`` its table row alone decides; otherwise an exact
    cascade of partial distances on the principal axes of the space searches every word (with
    a proven rounding margin; built at the first search and kept on the mechanism, 4 bytes per
    word and coordinate), and the points it cannot decide (ties, near ties, points far outside
    the space) go to the exact search of :meth:`EmbeddingSpace.nearest`. Ties go to the
    smaller id.

    References
    ----------
    O. Feyisetan, B. Balle, T. Drake, T. Diethe. "Privacy- and Utility-Preserving Textual
    Analysis via Calibrated Multivariate Perturbations". WSDM 2020, arXiv 1910.08902.
    """

    exact = False

    def __init__(
        self, space: EmbeddingSpace, epsilon: float, *, table_k: int | None = None
    ) -> None:
        super().__init__(space)
        self.epsilon = check_decodable_epsilon(space, epsilon)
        #: Below this the noise radius (mean ``dim / epsilon``) would exceed ``MAX_RADIUS``
        #: times the largest vector norm and floating-point decoding could not stay exact.
        self.min_epsilon = min_decodable_epsilon(space)
        if table_k is None:
            table_k = min(TABLE_K, len(space))
        self.table_k = check_int(table_k, "table_k", minimum=1, maximum=len(space))
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "table_k": self.table_k}

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric", self.epsilon, 0.0, f"exact nearest-word decoding; {IDEAL_ARITHMETIC}"
        )

    def noise(self, n_samples: int, rng: RNGLike = None) -> np.ndarray:
        """``n_samples`` draws of the noise vector ``z`` (float64, shape (n_samples, dim))."""
        n_samples = check_int(n_samples, "n_samples", minimum=0)
        return self._noise(n_samples, as_generator(rng))

    def _noise(self, n_samples: int, generator: np.random.Generator) -> np.ndarray:
        radius = generator.gamma(self.space.dim, 1.0 / self.epsilon, size=n_samples)
        direction = generator.standard_normal((n_samples, self.space.dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        return direction * radius[:, None]

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        noise = self._noise(len(word_ids), generator)
        points = self.space.vectors[word_ids].astype(np.float64) + noise
        return self._decode(word_ids, points, np.linalg.norm(noise, axis=1))

    def decode(self, word_ids: Any, points: Any, radii: Any) -> np.ndarray:
        """Exact nearest word of each point ``phi(word_ids[i]) + z_i`` with ``||z_i|| = radii[i]``.

        Uses the neighbour row of the word when it provably holds the answer, the exact cascade
        and then the exact full search otherwise (all break ties by the smaller id).

        Parameters
        ----------
        word_ids : array_like of int, shape (n,)
            The input words ``w_i``.
        points : array_like of float, shape (n, dim)
            The noisy points; finite.
        radii : array_like of float, shape (n,)
            The noise norms ``||z_i||``, finite and >= 0. The row decision uses the larger of
            ``radii[i]`` and the distance of ``points[i]`` to ``phi(word_ids[i])``, so a radius
            given too small cannot make it wrong.

        Returns
        -------
        ndarray of int64, shape (n,)
            Word ids, each in ``[0, len(space))``.

        Raises
        ------
        TypeError, ValueError
            Ids that are not ints or out of range, points not finite or of another dimension,
            radii negative or not finite, lengths that differ (the message names the argument).
        """
        word_ids, points, radii = check_decode_inputs(self.space, word_ids, points, radii)
        return self._decode(word_ids, points, radii)

    def _decode(self, word_ids: np.ndarray, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """:meth:`decode` of checked inputs whose radii are the noise norms."""
        words, inverse = np.unique(word_ids, return_inverse=True)
        row_ids, row_distances = neighbor_rows(self.space, words, self.table_k)
        reach = row_reach(row_distances, self.table_k, len(self.space))
        decided = 2.0 * radii < reach[inverse]
        out = np.empty(len(word_ids), dtype=np.int64)
        if decided.any():
            chosen = np.empty(int(decided.sum()), dtype=np.int64)
            _kernels.decode_in_rows(
                np.ascontiguousarray(points[decided]),
                inverse[decided].astype(np.int64),
                np.ascontiguousarray(row_ids, dtype=np.int64),
                self.space.vectors,
                chosen,
            )
            out[decided] = chosen
        if not decided.all():
            rest = np.flatnonzero(~decided)
            out[rest] = self._nearest(points[rest], row_ids[inverse[rest]])
        return out

    def _cascade(self) -> _cascade.Cascade | None:
        """The cascade of the space, shared by its mechanisms (never pickled: rebuilt)."""
        return _cascade.for_space(self.space)

    def _nearest(self, points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Exact nearest words: the PCA cascade where it decides (seeded with the words'
        neighbour rows), :meth:`EmbeddingSpace.nearest` for the rest (ties, far points)."""
        cascade = self._cascade()
        if cascade is None:
            return self.space.nearest(points, progress=False)
        ids, found = _cascade.nearest(cascade, np.ascontiguousarray(points), seeds)
        if not found.all():
            ids[~found] = self.space.nearest(points[~found], progress=False)
        return ids


def min_decodable_epsilon(space: EmbeddingSpace) -> float:
    """``dim / (MAX_RADIUS * largest vector norm)``: the smallest epsilon whose Laplace
    noise is decoded exactly (see :class:`MultivariateLaplace`, *Range*)."""
    largest = float(np.sqrt(space._sqnorms.max()))
    return space.dim / (MAX_RADIUS * (largest if largest > 0.0 else 1.0))


def check_decodable_epsilon(space: EmbeddingSpace, epsilon: Any) -> float:
    """``epsilon`` checked (finite, > 0) and at least :func:`min_decodable_epsilon`."""
    epsilon = check_epsilon(epsilon)
    floor = min_decodable_epsilon(space)
    if epsilon < floor:
        raise ValueError(
            f"`epsilon` must be >= {floor:.3g} for exact decoding on this space (mean noise "
            f"radius dim / epsilon at most {MAX_RADIUS:.0e} x the largest vector norm; far "
            f"beyond that every output is noise); got {epsilon!r}."
        )
    return epsilon
