"""The truncated Gumbel kNN mechanism (Xu, Feyisetan, Aggarwal, Xu, Teissier, FLAIRS-34 2021)."""

from __future__ import annotations

import itertools
import math
from functools import cached_property
from typing import Any

import numpy as np
from scipy.special import lambertw

from .._validation import check_epsilon, check_number, check_word_ids
from ..embeddings import EmbeddingSpace
from . import _kernels
from .base import IDEAL_ARITHMETIC, TABLE_K, Mechanism, PrivacyBound, neighbor_rows

__all__ = ["TruncatedGumbel"]

#: Truncated-Poisson mass left out of :meth:`TruncatedGumbel.output_distribution`.
OMITTED_MASS = 1e-15
#: Gauss-Legendre nodes per smooth piece of the quadrature.
QUADRATURE_NODES = 24
#: Tokens per batch of random draws (bounds memory on large corpora).
BATCH_TOKENS = 1 << 20
#: Calls with fewer tokens run the selection in one thread (a parallel launch costs more).
SERIAL_TOKENS = 20_000
#: Largest ``max_distance / scale`` for the exponential-race kernel: keys and weights stay
#: normal float64 numbers (>= e^-600); beyond it, the two-logarithm kernel.
RACE_MAX_RATIO = 300.0
#: ``"race"``, or ``"logs"`` for the kernel and row width before issue 16 (benchmark only).
_KERNEL = "race"
#: Candidate conventions: ``"seed"`` (the word and its ``k`` nearest neighbours, ``k + 1``
#: candidates: the seed's description) and ``"mldp"`` (the word and ``k - 1`` neighbours: the
#: public re-implementation, mldp-text, and densitydp before issue 14).
CONVENTIONS = ("seed", "mldp")


class TruncatedGumbel(Mechanism):
    """Truncated Gumbel kNN sampling.

    For an input word ``w``: draw ``k ~ Poisson(poisson_mean)`` truncated to ``k <= n - 1``;
    the candidates are ``w`` and its ``k`` nearest neighbours (``convention="seed"``, ``k + 1``
    candidates) or ``w`` and its ``k - 1`` nearest neighbours (``convention="mldp"``, ``k``
    candidates, at least ``w``); add to each candidate's distance independent Gumbel(0,
    ``scale``) noise truncated to ``[-max_distance, max_distance]``; return the candidate with
    the smallest noisy distance. ``k = 0`` returns ``w`` in both conventions.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float, optional
        Metric privacy parameter; the Gumbel scale is solved for it. Give ``epsilon`` or
        ``scale``, not both.
    scale : float, optional
        Gumbel scale ``b``; the epsilon it implies is reported as ``mechanism.epsilon``.
    poisson_mean : float, optional
        Mean of the Poisson count ``k`` (default ``ln(n - 1)``).
    convention : {"seed", "mldp"}
        Which words are the candidates for a count ``k`` (default ``"seed"``). The seed's
        description of the mechanism: "a random number of neighbours (in this case, three) are
        selected around the source word; noise is added to the three nearest neighbours of A,
        and to A itself" -- ``k`` neighbours plus the word. ``"mldp"``: the word plus ``k - 1``
        neighbours, as the only public re-implementation (mldp-text 0.1.2) does; with it the
        farthest word of each word is never a candidate (``k <= n - 1``).

    Notes
    -----
    *Calibration.* Reconstructed from the public re-implementation (see ``docs``): with
    ``Delta_min`` the smallest distance between two distinct words and ``Delta_max`` the
    diameter (both exact), ``a = (epsilon - 2 (1 + ln n) / Delta_min) / 3`` and
    ``b = 2 Delta_max / min(W0(2 a Delta_max), ln(a Delta_min))``. It is meaningful only for
    ``epsilon > (5 + 2 ln n) / Delta_min`` (:attr:`min_epsilon`); smaller values are refused.
    On plain (not squared) Euclidean distances.

    *Guarantee: claimed, and refuted.* ``epsilon * d``-metric DP is what the calibration above
    claims (the paper's full text was not available: the calibration is the best public
    reconstruction; re-derived for the seed's convention it is the same formula, since its count
    term depends only on the Poisson law), but the claim does **not** hold in either
    convention: the random number of candidates leaks through ranks. An output ``y`` can be
    chosen only when the candidates reach past the words closer to the input than ``y``, so a
    word that is near ``w`` but far down the list of a neighbour ``w'`` has ``P(y | w')``
    bounded by a Poisson tail (:meth:`log_prob_upper_bound`), and
    :func:`densitydp.exact_privacy_loss` certifies losses far above the claim: on 50 nearest
    pairs of the 50,000 most frequent GloVe words at 1.5 x :attr:`min_epsilon`, 46 violations
    in each convention, up to 75 x the claim (losses of thousands of nats, lower bounds;
    ``benchmarks/gumbel_conventions.py``). The noise part of the calibration is far from binding
    (with every word a candidate, losses stay below 1.1 % of the claim); the count decides, and
    no noise scale covers it. Under ``convention="mldp"`` the farthest word of each word is
    never among its candidates (``k <= n - 1``), an infinite loss. Treat this mechanism as
    having **no** proven guarantee (docs/mechanisms/gumbel.md).

    Building the mechanism needs the space's exact min / max distance: on a new space this runs
    the all-pairs neighbour pass once (about 3 minutes for the 400,000 GloVe words), then it is
    read from the on-disk cache.

    Sampling runs in numba over the exact neighbour rows of the distinct input words (as wide
    as the largest count of the batch; a draw needing more candidates than the cached table
    holds gets exact wider rows, never a silent truncation), parallel over tokens, in one
    thread below :data:`SERIAL_TOKENS` tokens; randomness is drawn by numpy per batch of
    tokens, so results do not depend on the number of threads. The count is drawn by inverse
    CDF of the truncated Poisson law; the noise as an *exponential race* of the same law: with
    ``X = exp(-N / b)``, a Gumbel(0, ``b``) variable truncated to ``[-D, D]`` is ``-b ln X`` with
    ``X ~ Exp(1)`` truncated to ``[e^(-D/b), e^(D/b)]``, and the smallest ``d_j - b ln X_j`` is
    the largest ``X_j exp(-d_j / b)`` (see ``_kernels.truncated_gumbel_select``): one multiply
    per candidate instead of two logarithms. For ``D / b`` above :data:`RACE_MAX_RATIO` the
    two-logarithm inverse-CDF kernel is used.
    """

    exact = True
    #: Probability left out of :meth:`output_distribution` (the truncated Poisson's tail).
    omitted_mass = OMITTED_MASS

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float | None = None,
        *,
        scale: float | None = None,
        poisson_mean: float | None = None,
        convention: str = "seed",
    ) -> None:
        super().__init__(space)
        if (epsilon is None) == (scale is None):
            raise ValueError("give exactly one of `epsilon` and `scale`.")
        if not isinstance(convention, str) or convention not in CONVENTIONS:
            raise ValueError(
                f"`convention` must be one of {', '.join(map(repr, CONVENTIONS))}; "
                f"got {convention!r}."
            )
        self.convention = convention
        n_words = len(space)
        if poisson_mean is None and n_words < 3:
            raise ValueError(
                f"`space` must hold at least 3 words for the default `poisson_mean` ln(n - 1) "
                f"(0 for {n_words} words: every word would be returned unchanged, with a finite "
                "claim); give `poisson_mean` > 0."
            )
        self.poisson_mean = (
            math.log(n_words - 1)
            if poisson_mean is None
            else check_number(poisson_mean, "poisson_mean", minimum=0.0)
        )
        self.min_distance = space.min_distance()
        self.max_distance = space.max_distance()
        if self.min_distance <= 0.0:
            raise ValueError(
                "the truncated Gumbel calibration needs distinct vectors: two words of `space` "
                "share a vector (min_distance is 0)."
            )
        log_n = math.log(n_words)
        self.min_epsilon = (5.0 + 2.0 * log_n) / self.min_distance
        offset = 2.0 * (1.0 + log_n) / self.min_distance
        if epsilon is not None:
            epsilon = check_epsilon(epsilon)
            if epsilon <= self.min_epsilon:
                raise ValueError(
                    f"`epsilon` must be > {self.min_epsilon:.6g}, the smallest meaningful epsilon "
                    f"of the truncated Gumbel calibration on this space "
                    f"((5 + 2 ln n) / min_distance, n = {n_words}, min_distance = "
                    f"{self.min_distance:.6g}); got {epsilon:g}."
                )
            a = (epsilon - offset) / 3.0
            lambert = lambertw(2.0 * a * self.max_distance)
            if lambert.imag != 0.0 or not np.isfinite(lambert.real):
                raise ValueError(
                    f"`epsilon` = {epsilon:g} is too large for the truncated Gumbel calibration "
                    "in float64 (its Lambert W argument overflows)."
                )
            self.scale = (
                2.0 * self.max_distance / min(lambert.real, math.log(a * self.min_distance))
            )
            self.epsilon = epsilon
        else:
            self.scale = check_number(scale, "scale", minimum=0.0)
            log_a = 2.0 * self.max_distance / self.scale - math.log(
                min(self.scale, self.min_distance)
            )
            if not log_a < _LOG_LARGEST_A:
                raise ValueError(
                    f"`scale` must be larger: at scale {self.scale:g} the calibrated epsilon "
                    "3 exp(2 max_distance / scale) max(1 / scale, 1 / min_distance) exceeds the "
                    f"float64 range (max_distance = {self.max_distance:.6g})."
                )
            self.epsilon = 3.0 * math.exp(log_a) + offset
        bound = self.max_distance
        self._lower = _gumbel_cdf(-bound, self.scale)
        self._width = _gumbel_cdf(bound, self.scale) - self._lower
        if not self._width >= MIN_WINDOW:
            name, value = ("scale", scale) if epsilon is None else ("epsilon", epsilon)
            raise ValueError(
                f"`{name}` gives a noise scale {self.scale:.6g} so large against max_distance "
                f"{self.max_distance:.6g} that the truncated noise window F(D) - F(-D) = "
                f"{self._width:.3g} < {MIN_WINDOW:g} cannot be sampled exactly in float64 "
                f"(scale at most about {2.0 * self.max_distance / (math.e * MIN_WINDOW):.3g}); "
                f"got {value!r}."
            )
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "scale": self.scale,
            "poisson_mean": self.poisson_mean,
            "convention": self.convention,
        }

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            "calibration of the public reconstruction on exact min / max distances "
            f"({self.min_distance:.6g} / {self.max_distance:.6g}); NOT a proven bound: the "
            "random candidate count leaks through ranks, and exact_privacy_loss certifies "
            f"losses above the claim (docs/mechanisms/gumbel.md); {IDEAL_ARITHMETIC}",
        )

    # -- sampling -------------------------------------------------------------------------------

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        out = np.empty(len(word_ids), dtype=np.int64)
        for start in range(0, len(word_ids), BATCH_TOKENS):
            batch = word_ids[start : start + BATCH_TOKENS]
            out[start : start + BATCH_TOKENS] = self._sample_batch(batch, generator)
        return out

    def _sample_batch(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        n_words = len(self.space)
        ratio = self.max_distance / self.scale
        if _KERNEL == "logs" or not ratio <= RACE_MAX_RATIO:
            return self._sample_batch_by_logs(word_ids, generator)
        # counts by inverse CDF of the truncated Poisson law (the law of truncated_poisson)
        cdf = self._count_cdf
        counts = np.searchsorted(cdf, generator.random(len(word_ids)), side="right")
        np.minimum(counts, n_words - 1, out=counts)
        counts += self._extra_candidate  # candidates: k + 1 (seed) or k (mldp; 0 and 1: w)
        width = min(n_words, max(1, int(counts.max())))  # only the candidates some token needs
        words, inverse = _distinct(word_ids, n_words)
        ids, distances = self._candidate_rows(words, width)
        offsets = np.zeros(len(word_ids) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        low = math.exp(-ratio)
        span = math.exp(ratio) - low  # U - L: E ~ Exp(1) truncated to [0, span]
        if span >= 1.0:  # exponentials, the few above span drawn again (P <= e^-1 each)
            draws = generator.standard_exponential(int(offsets[-1]))
            above = np.flatnonzero(draws > span)
            while above.size:
                draws[above] = generator.standard_exponential(above.size)
                above = above[draws[above] > span]
            spread = 0.0
        else:  # a narrow window: inverse CDF in the kernel
            draws = generator.random(int(offsets[-1]))
            spread = -math.expm1(-span)
        with np.errstate(under="ignore"):
            weights = np.exp(-distances / self.scale)
        out = np.empty(len(word_ids), dtype=np.int64)
        kernel = (
            _kernels.truncated_gumbel_select_serial
            if len(word_ids) < SERIAL_TOKENS
            else _kernels.truncated_gumbel_select
        )
        kernel(inverse, ids, weights, counts, offsets, draws, low, spread, out)
        return out

    @property
    def _extra_candidate(self) -> int:
        """Candidates beyond the count ``k``: 1 for the seed's convention, 0 for mldp's."""
        return 1 if self.convention == "seed" else 0

    @cached_property
    def _count_cdf(self) -> np.ndarray:
        """Cumulative law of the truncated Poisson count, cut after its first entry equal to 1
        (the later counts have float64 probability 0 for a uniform in [0, 1))."""
        if self.poisson_mean == 0.0:
            return np.ones(1)
        cdf = np.cumsum(_truncated_law(self.poisson_mean, len(self.space) - 1))
        cdf /= cdf[-1]
        return cdf[: int(np.searchsorted(cdf, 1.0, side="left")) + 1]

    def _sample_batch_by_logs(
        self, word_ids: np.ndarray, generator: np.random.Generator
    ) -> np.ndarray:
        """The sampler before issue 16 (kept for the benchmark, and for ``D / b`` above
        :data:`RACE_MAX_RATIO`): two logarithms per candidate."""
        n_words = len(self.space)
        counts = truncated_poisson(self.poisson_mean, n_words - 1, len(word_ids), generator)
        counts += self._extra_candidate
        width = min(n_words, max(TABLE_K, int(counts.max())))
        words, inverse = np.unique(word_ids, return_inverse=True)
        ids, distances = self._candidate_rows(words, width)
        offsets = np.zeros(len(word_ids) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        uniforms = generator.random(int(offsets[-1]))
        out = np.empty(len(word_ids), dtype=np.int64)
        _kernels.truncated_gumbel_select_by_logs(
            inverse.astype(np.int64),
            ids,
            distances,
            counts.astype(np.int64),
            offsets,
            uniforms,
            self._lower,
            self._width,
            self.scale,
            self.max_distance,
            out,
        )
        return out

    def _candidate_rows(self, words: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate ids and the distances the noise is added to (the sampler and the exact
        distribution both read them here)."""
        return neighbor_rows(self.space, words, width)

    # -- exact distribution ---------------------------------------------------------------------

    def _count_probabilities(self) -> np.ndarray:
        """Truncated-Poisson probabilities of k = 0..K, K the first with omitted mass <= 1e-15."""
        from scipy import stats  # imported here: scipy.stats costs ~0.5 s at import time

        n_words = len(self.space)
        poisson = stats.poisson(self.poisson_mean) if self.poisson_mean > 0 else None
        if poisson is None:
            return np.array([1.0])
        normaliser = poisson.cdf(n_words - 1)
        if normaliser < 1e-200:  # a mean far above the vocabulary: the law in log space
            return _truncated_law(self.poisson_mean, n_words - 1)
        last = int(min(n_words - 1, poisson.isf(OMITTED_MASS * normaliser)))
        last = max(last, 1)
        return poisson.pmf(np.arange(last + 1)) / normaliser

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(candidate ids, probabilities)``: the word and its nearest neighbours.

        Exact up to two documented tolerances: the truncated Poisson is summed up to the count
        whose omitted tail mass is below 1e-15 (so probabilities sum to ``1 - 1e-15`` or more, and
        the words left out have total probability below 1e-15), and each order-statistic
        integral is computed by Gauss-Legendre quadrature on the pieces between the noise's
        truncation points, accurate to about 1e-12 (checked against ``scipy.integrate.quad``).
        """
        word_id = self._check_word(word_id)
        count_probabilities = self._count_probabilities()  # of k; index: number of candidates
        if self._extra_candidate:
            count_probabilities = np.concatenate([[0.0], count_probabilities])
        width = min(len(self.space), max(1, len(count_probabilities) - 1))
        ids, distances = self._candidate_rows(np.array([word_id]), width)
        probabilities = candidate_probabilities(
            distances[0], self.scale, self.max_distance, count_probabilities
        )
        return ids[0], probabilities

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """``ln P(y | w)``; outputs beyond the computed candidates (total probability < 1e-15)
        get ``-inf``."""
        return super().log_prob(word_id, outputs)

    def log_prob_upper_bound(self, word_id: int, outputs: Any) -> np.ndarray:
        """A certified upper bound on ``ln P(y | w)`` for every output, also those left out of
        :meth:`output_distribution`.

        ``y`` can be chosen only when it is among the candidates, so only when their number
        (``k + 1`` under the seed's convention, ``k`` under mldp's) exceeds the number ``s`` of
        words strictly closer to ``w`` than ``y`` (``w`` itself among them):
        ``P(y | w) <= P[k >= s]`` (seed) or ``P[k >= s + 1]`` (mldp) under the truncated Poisson,
        computed in log space from exact float64 distances (ties counted as not closer, so ``s``
        is never overstated and the bound never understated). Used by
        :func:`densitydp.exact_privacy_loss` to certify losses on outputs outside one word's
        computed support.
        """
        from scipy import stats

        word_id = self._check_word(word_id)
        wanted = np.atleast_1d(check_word_ids(outputs, len(self.space), "outputs"))
        vectors = self.space._vectors64
        distances = np.linalg.norm(vectors - vectors[word_id], axis=1)
        closer = np.searchsorted(np.sort(distances), distances[wanted], side="left")
        n_words = len(self.space)
        if self.poisson_mean <= 0:
            return np.where(wanted == word_id, 0.0, -np.inf)
        # ln P[k >= t | k <= n - 1] for t = 0..n - 1, summed from the top in log space (finite
        # and exact for every mean, also far above the vocabulary where the Poisson cdf
        # underflows); t = s + 1 - extra, the smallest count whose candidates include y
        log_pmf = stats.poisson.logpmf(np.arange(n_words), self.poisson_mean)
        log_tails = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
        log_tails -= log_tails[0]
        first = closer + 1 - self._extra_candidate
        bound = np.full(len(wanted), -np.inf)
        reachable = first < n_words
        bound[reachable] = np.minimum(log_tails[np.maximum(first[reachable], 0)], 0.0)
        return np.where(closer == 0, 0.0, bound)


def _distinct(word_ids: np.ndarray, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """``(words, inverse)`` as ``np.unique(word_ids, return_inverse=True)`` (int64 inverse); by
    counting over the vocabulary when the call is long against it (no sort)."""
    if len(word_ids) * 4 < n_words:
        words, inverse = np.unique(word_ids, return_inverse=True)
        return words, inverse.astype(np.int64)
    present = np.bincount(word_ids, minlength=n_words)
    words = np.flatnonzero(present)
    position = np.empty(n_words, dtype=np.int64)
    position[words] = np.arange(len(words))
    return words, position[word_ids]


def _gumbel_cdf(x: Any, scale: float) -> Any:
    return np.exp(-np.exp(-np.asarray(x, dtype=np.float64) / scale))


def candidate_probabilities(
    distances: np.ndarray, scale: float, bound: float, count_probabilities: np.ndarray
) -> np.ndarray:
    """Exact output probabilities of the truncated Gumbel selection among sorted candidates.

    ``P(c) = sum_k pi_k P(c | k)``, with ``P(c | k) = integral f_T(y - d_c)
    prod_{j < k, j != c} S_T(y - d_j) dy`` over ``[d_c - bound, d_c + bound]``; ``f_T`` and
    ``S_T`` are the density and survival function of Gumbel(0, ``scale``) truncated to
    ``[-bound, bound]``, and ``pi_k = count_probabilities[k]`` (``k = 0`` returns candidate 0).
    The integrand is smooth between the points ``d_j +- bound``; each piece, cut further into
    parts no longer than ``scale``, gets its own Gauss-Legendre rule.
    """
    if len(count_probabilities) == 1:  # only k = 0: the word itself
        return np.ones(1)
    distances = np.asarray(distances, dtype=np.float64)
    n_candidates = min(len(distances), len(count_probabilities) - 1)
    distances = distances[:n_candidates]
    low_cdf = float(_gumbel_cdf(-bound, scale))
    normaliser = float(_gumbel_cdf(bound, scale)) - low_cdf
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)

    def density(x: np.ndarray) -> np.ndarray:
        z = np.exp(-x / scale)
        return np.where(np.abs(x) <= bound, z * np.exp(-z) / (scale * normaliser), 0.0)

    def survival(x: np.ndarray) -> np.ndarray:
        inside = (
            float(_gumbel_cdf(bound, scale)) - _gumbel_cdf(np.clip(x, -bound, bound), scale)
        ) / normaliser
        return np.clip(inside, 0.0, 1.0)

    result = np.zeros(n_candidates)
    result[0] += count_probabilities[0]
    breaks_all = np.concatenate([distances - bound, distances + bound])
    for c in range(n_candidates):
        low, high = distances[c] - bound, distances[c] + bound
        inner = breaks_all[(breaks_all > low) & (breaks_all < high)]
        edges = np.unique(np.concatenate([[low, high], inner]))
        # pieces no longer than the noise scale: the density varies on that scale
        edges = np.concatenate(
            [
                np.linspace(a, b, max(1, math.ceil((b - a) / scale)) + 1)[:-1]
                for a, b in itertools.pairwise(edges)
            ]
            + [[high]]
        )
        half = np.diff(edges)[:, None] / 2.0
        points = (edges[:-1, None] + half + half * nodes[None, :]).ravel()
        point_weights = (half * weights[None, :]).ravel()
        weighted_density = point_weights * density(points - distances[c])
        others = survival(points[None, :] - distances[:, None])
        others[c] = 1.0
        cumulative = np.cumprod(others, axis=0)  # row j: prod over candidates 0..j, c excluded
        # P(c | k) for k = c + 1 .. n_candidates uses candidates 0..k-1: row k - 1
        given_k = cumulative[c:] @ weighted_density
        if c == 0:
            given_k[0] = 1.0  # k = 1: the word alone always wins
        result[c] += count_probabilities[c + 1 : n_candidates + 1] @ given_k
    return result


#: Smallest probability window ``F(D) - F(-D)`` of the truncated noise sampled by inverse CDF:
#: below it the uniforms' float64 spacing (1e-16) is a sizeable part of the window.
MIN_WINDOW = 1e-8
#: ``ln a`` above which ``epsilon = 3 a + offset`` leaves the float64 range.
_LOG_LARGEST_A = math.log(np.finfo(np.float64).max / 4.0)

#: Rounds of resampling before the exact inverse-CDF draw takes over (each round keeps a
#: token with probability ``P[k > top] < 1/2``, so 32 rounds leave at most 2^-32 of them).
RESAMPLE_ROUNDS = 32


def truncated_poisson(
    mean: float, top: int, size: int, generator: np.random.Generator
) -> np.ndarray:
    """``size`` exact draws of ``k ~ Poisson(mean)`` conditioned on ``k <= top`` (int64).

    While ``P[k <= top] >= 1/2``, resampling the draws above ``top`` (at most
    :data:`RESAMPLE_ROUNDS` rounds, the stream of earlier versions); otherwise, and for the
    draws left after those rounds, the exact inverse CDF of the truncated law over
    ``0..top``. Both give the same law, and the loop is bounded whatever the mean (a mean far
    above the vocabulary size made the plain resampling loop run forever).
    """
    from scipy import stats  # imported here: scipy.stats costs ~0.5 s at import time

    if mean == 0.0:
        return np.zeros(size, dtype=np.int64)
    left = np.ones(size, dtype=bool)
    counts = np.full(size, top, dtype=np.int64)
    if stats.poisson.cdf(top, mean) >= 0.5:
        counts = generator.poisson(mean, size=size).astype(np.int64)
        for _ in range(RESAMPLE_ROUNDS):
            left = counts > top
            if not left.any():
                return counts
            counts[left] = generator.poisson(mean, size=int(left.sum()))
        left = counts > top
    law = np.cumsum(_truncated_law(mean, top))
    draws = np.searchsorted(law / law[-1], generator.random(int(left.sum())), side="right")
    counts[left] = np.minimum(draws, top)
    return counts


def _truncated_law(mean: float, top: int) -> np.ndarray:
    """``P[k | k <= top]`` for ``k = 0..top`` under Poisson(mean), computed in log space (finite
    for every finite mean)."""
    from scipy import special, stats

    log_pmf = stats.poisson.logpmf(np.arange(top + 1), mean)
    return np.exp(log_pmf - special.logsumexp(log_pmf))
