"""The Vickrey mechanisms: Laplace or Mahalanobis noise, then a choice between the first and the
second nearest word of the noisy point (Xu et al. 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_finite_array, check_int, check_number
from ..embeddings import EmbeddingSpace
from ..neighbors import two_nearest_ids
from . import _cascade, _embedding_kernels
from .base import IDEAL_ARITHMETIC, PrivacyBound, neighbor_rows
from .laplace import check_decode_inputs, row_reach
from .mahalanobis import MahalanobisMechanism

__all__ = ["DEFAULT_THRESHOLD", "VickreyMechanism"]

#: Default threshold ``t``. Not the paper's: the paper tunes ``t`` per task, as the largest
#: utility under an empirical privacy constraint, and publishes no single default; 0.5 gives
#: ``P(first) = d2 / (d1 + d2)``.
DEFAULT_THRESHOLD = 0.5


class VickreyMechanism(MahalanobisMechanism):
    """Laplace (``lam = 0``) or regularised Mahalanobis noise, then the Vickrey selection.

    The noisy point ``x = phi(w) + z`` is drawn as in :class:`MultivariateLaplace` (``lam =
    0``, the paper's "CMP" variant) or :class:`MahalanobisMechanism` (``lam > 0``). With
    ``w1``, ``w2`` the first and second nearest words of ``x`` (exact Euclidean search;
    ``d1 <= d2`` their plain distances to ``x``; ties by the smaller id), the output is ``w1``
    with probability ``(1 - t) d2 / (t d1 + (1 - t) d2)`` and ``w2`` otherwise (``t`` the
    ``threshold``). ``t = 0`` is plain nearest-word decoding (same outputs as the noise's own
    mechanism for a seed); ``t = 1`` always outputs the second nearest word; ``t = 0.5``:
    ``P(w1) = d2 / (d1 + d2)``.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter of the noise, > 0 (per unit of Euclidean distance for ``lam =
        0``, of ``d_RM`` otherwise).
    threshold : float
        ``t`` in [0, 1] (default :data:`DEFAULT_THRESHOLD` = 0.5, not a value from the paper:
        see Notes).
    lam : float
        Regularisation weight of the Mahalanobis noise in [0, 1]; 0 (default) is the
        multivariate Laplace noise.
    table_k : int, optional
        Width of the exact neighbour rows used to decode without a full search (at least 2;
        default 64 or the vocabulary size).

    Raises
    ------
    TypeError
        ``space`` not an :class:`EmbeddingSpace`; ``epsilon``, ``threshold``, ``lam`` not real
        numbers; ``table_k`` not an integer.
    ValueError
        ``epsilon`` not finite and > 0 or below :attr:`min_epsilon`; ``threshold`` or ``lam``
        outside [0, 1]; ``table_k < 2``.

    Notes
    -----
    *Guarantee.* The paper claims the metric-DP guarantee of the noise it starts from:
    ``epsilon * d`` for the Laplace noise, ``epsilon * d_RM`` for the Mahalanobis noise (see
    :class:`MahalanobisMechanism`), because the selection is post-processing of the noisy
    vector. That holds here: the choice depends on ``x`` alone (through ``d1``, ``d2``, ``w1``,
    ``w2``) and on a uniform drawn independently of the input word, so the output law is the
    noisy vector's law pushed through a fixed randomised map. The paper chooses ``t`` by an
    empirical privacy constraint (plausible-deniability statistics), which does not change the
    formal guarantee. Assumes exact real arithmetic and, for ``lam > 0``, a public ``M``.

    *Ties and degenerate distances.* Ties in distance are broken by the smaller id for both
    ranks. When ``t d1 + (1 - t) d2 = 0`` (``d1 = d2 = 0``, two words sharing a vector and
    ``x`` on it; or ``t = 1`` and ``d1 = 0``), events of probability zero under continuous
    noise, ``P(w1) = 1 - t``: the value of the formula on ``d1 = d2 > 0``.

    *Exact two-nearest decoding.* With ``r = ||z||`` (Euclidean) and ``delta`` the distance
    from ``w`` to its nearest other word ``v``: ``d(x, w) = r`` and ``d(x, v) <= r + delta``,
    so the second nearest distance is ``d2 <= r + delta`` (at most one of ``w``, ``v`` is the
    first). Any word ``u`` with ``d(x, u) <= d2`` then has ``d(w, u) <= 2 r + delta``. The
    word's exact neighbour row (``table_k`` words, each word first) decides when its last
    distance exceeds ``2 r + delta`` (with a relative margin of 1e-6); the other points go to
    a two-nearest variant of the exact PCA cascade of :class:`MultivariateLaplace` (pruned
    against the second-best distance with the cascade's proven margins; decided when exactly
    two words are within the margin of the second and the second is provably farther than the
    first), and the points it cannot decide (near ties, a repeated vector among the two, far
    points) to :func:`densitydp.neighbors.two_nearest_ids` (the certified exact search, and for
    points far outside the space or distances within their float64 rounding of each other, a
    comparison in exact rational arithmetic).

    *Peers.* pypantera's ``VickreyCMP`` / ``VickreyMhl`` take the two smallest distances with
    ``argpartition`` without ordering them, so the roles of ``d1`` and ``d2`` can be swapped;
    mldp-text's ``VickreyMechanism`` is a different rule (a softmax over the ``k`` nearest
    words, excluding the input word). Here the formula above is used with ``d1 <= d2``; the
    paper's text was not retrievable on this machine, so the formula follows the project's
    notes (``RESEARCH.md``) and pypantera.

    References
    ----------
    Z. Xu, A. Aggarwal, O. Feyisetan, N. Teissier. "On a Utilitarian Approach to Privacy
    Preserving Text Generation". PrivateNLP workshop at NAACL 2021, arXiv 2104.11838.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=200, dim=4, rng=0)
    >>> mechanism = dd.VickreyMechanism(space, epsilon=5.0, threshold=0.5)
    >>> mechanism.sample([3, 3, 7], rng=0).shape
    (3,)
    """

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        lam: float = 0.0,
        table_k: int | None = None,
    ) -> None:
        self.threshold = check_number(
            threshold, "threshold", minimum=0.0, strict=False, maximum=1.0
        )
        if table_k is not None and isinstance(space, EmbeddingSpace):
            check_int(table_k, "table_k", minimum=2, maximum=len(space))
        super().__init__(space, epsilon, lam=lam, table_k=table_k)

    def _parameters(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "threshold": self.threshold,
            "lam": self.lam,
            "table_k": self.table_k,
        }

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            f"{self._metric_statement()}; the Vickrey choice (threshold {self.threshold:g}) "
            "between the exact two nearest words is post-processing of the noisy vector; "
            f"{IDEAL_ARITHMETIC}",
        )

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        if self.threshold == 0.0:  # plain nearest decoding: the noise's own mechanism
            return super()._sample(word_ids, generator)
        noise = self._noise(len(word_ids), generator)
        uniforms = generator.random(len(word_ids))
        points = self.space.vectors[word_ids].astype(np.float64) + noise
        return self._decode_pair(word_ids, points, np.linalg.norm(noise, axis=1), uniforms)

    def decode_pair(self, word_ids: Any, points: Any, radii: Any, uniforms: Any) -> np.ndarray:
        """Checked :meth:`_decode_pair` (see it for the arguments): ids, points and radii as
        :meth:`MultivariateLaplace.decode` checks them, ``uniforms`` finite in [0, 1) of the same
        length; errors name the argument."""
        word_ids, points, radii = check_decode_inputs(self.space, word_ids, points, radii)
        draws = check_finite_array(uniforms, "uniforms", ndim=1)
        if len(draws) != len(word_ids):
            raise ValueError(
                f"`uniforms` must have the length of `word_ids` ({len(word_ids)}); "
                f"got {len(draws)}."
            )
        if draws.size and not (draws.min() >= 0.0 and draws.max() < 1.0):
            raise ValueError("`uniforms` must lie in [0, 1).")
        return self._decode_pair(word_ids, points, radii, draws)

    def _decode_pair(
        self,
        word_ids: np.ndarray,
        points: np.ndarray,
        radii: np.ndarray,
        uniforms: np.ndarray,
    ) -> np.ndarray:
        """Vickrey output for each point ``phi(word_ids[i]) + z_i`` with ``||z_i|| = radii[i]``.

        Parameters
        ----------
        word_ids : ndarray of int64, shape (n,)
        points : ndarray of float64, shape (n, dim)
        radii : ndarray of float64, shape (n,)
            Euclidean norms of the noise vectors.
        uniforms : ndarray of float64, shape (n,)
            Uniforms in [0, 1) of the random choice (first when ``uniform < P(first)``).

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        words, inverse = np.unique(word_ids, return_inverse=True)
        row_ids, row_distances = neighbor_rows(self.space, words, self.table_k)
        reach = row_reach(row_distances, self.table_k, len(self.space))
        decided = 2.0 * radii + row_distances[inverse, 1] < reach[inverse]
        out = np.empty(len(word_ids), dtype=np.int64)
        if decided.any():
            chosen = np.empty(int(decided.sum()), dtype=np.int64)
            _embedding_kernels.vickrey_in_rows(
                np.ascontiguousarray(points[decided]),
                inverse[decided].astype(np.int64),
                row_ids,
                self.space.vectors,
                np.ascontiguousarray(uniforms[decided]),
                self.threshold,
                chosen,
            )
            out[decided] = chosen
        if not decided.all():
            rest = np.flatnonzero(~decided)
            first, second = self._two_nearest(points[rest], row_ids[inverse[rest]])
            chosen = np.empty(len(rest), dtype=np.int64)
            _embedding_kernels.vickrey_select(
                np.ascontiguousarray(points[rest]),
                first,
                second,
                self.space.vectors,
                np.ascontiguousarray(uniforms[rest]),
                self.threshold,
                chosen,
            )
            out[rest] = chosen
        return out

    def _two_nearest(self, points: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact first and second nearest word ids of each point: the two-nearest PCA cascade
        where it decides (seeded with the words' neighbour rows), the certified exact search for
        the rest (near ties of the first, second or third word, repeated vectors among the two,
        points far outside the space)."""
        first = np.empty(len(points), dtype=np.int64)
        second = np.empty(len(points), dtype=np.int64)
        pending = np.ones(len(points), dtype=bool)
        cascade = self._cascade()
        if cascade is not None:
            queries, slack, usable = _cascade.prepare(cascade, points)
            inside = (seeds >= 0) & (seeds < len(cascade.units))
            seed_units = np.where(inside, cascade.units[np.where(inside, seeds, 0)], -1)
            units = np.empty((2, len(points)), dtype=np.int64)
            status = np.empty(len(points), dtype=np.int64)
            _embedding_kernels.two_nearest_cascade(
                queries,
                slack,
                cascade.blocks,
                cascade.boxes,
                len(cascade.representatives),
                np.ascontiguousarray(seed_units, dtype=np.int64),
                cascade.relative,
                _cascade.task_size(len(points)),
                units[0],
                units[1],
                status,
            )
            # a repeated vector is one unit: its words tie; the exact search orders them
            repeated = np.bincount(cascade.units, minlength=len(cascade.representatives)) > 1
            found = usable & (status == 2)
            found[found] &= ~repeated[units[0, found]] & ~repeated[units[1, found]]
            first[found] = cascade.representatives[units[0, found]]
            second[found] = cascade.representatives[units[1, found]]
            pending = ~found
        if pending.any():
            rest = np.flatnonzero(pending)
            first[rest], second[rest] = two_nearest_ids(
                np.ascontiguousarray(points[rest]),
                self.space.vectors,
                column_sqnorms=self.space._sqnorms,
                progress=False,
            )
        return first, second
