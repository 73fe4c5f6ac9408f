"""The regularised Mahalanobis mechanism with exact nearest-word decoding (Xu et al. 2020)."""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

import numpy as np

from .._rng import RNGLike
from .._validation import check_epsilon, check_int, check_number, check_word_ids
from ..embeddings import EmbeddingSpace
from .base import IDEAL_ARITHMETIC, TABLE_K, Mechanism, PrivacyBound
from .laplace import MAX_RADIUS, MultivariateLaplace, min_decodable_epsilon

__all__ = ["DEFAULT_LAM", "MahalanobisMechanism", "RegularisedCovariance"]

#: Default regularisation weight ``lam``: the default of the public re-implementation
#: ``mldp-text`` (sjmeis/MLDP); the paper's own default could not be checked here (see the
#: class docstring).
DEFAULT_LAM = 0.2

#: Smallest eigenvalue of ``M``, relative to its largest, accepted as positive definite.
_CONDITION_FLOOR = 1e-10


class RegularisedCovariance:
    """``M = lam * Sigma~ + (1 - lam) I`` of a space and its square roots, in float64.

    ``Sigma~`` is the covariance of the space's vectors (one row a word, every word weighted
    equally) divided by its average variance ``trace / dim``, so ``trace(Sigma~) = dim``.
    ``M = V diag(s) V^T`` (``numpy.linalg.eigh``); ``root = V diag(sqrt s) V^T`` is the
    symmetric square root ``M^{1/2}`` and ``whiten = V diag(1 / sqrt s)`` maps a difference
    ``x - y`` (as a row) to a vector whose Euclidean norm is
    ``d_RM(x, y) = sqrt((x - y)^T M^{-1} (x - y))``. For ``lam = 0`` both are the identity
    (exactly: ``root`` and ``whiten`` are ``None``).

    Parameters
    ----------
    space : EmbeddingSpace
    lam : float
        In [0, 1], already checked.

    Raises
    ------
    ValueError
        When ``M`` is not positive definite: only possible for ``lam = 1`` with a singular
        covariance (the words lie in a proper affine subspace), or a space whose words all
        coincide.
    """

    def __init__(self, space: EmbeddingSpace, lam: float) -> None:
        dim = space.dim
        self.lam = lam
        if lam == 0.0:
            self.eigenvalues = np.ones(dim)
            self.root: np.ndarray | None = None
            self.whiten: np.ndarray | None = None
            return
        scaled = scaled_covariance(space)
        if scaled is None:
            raise ValueError(
                "`lam` must be 0 on a space whose words all coincide (the covariance is zero, "
                f"so the regularised Mahalanobis metric is undefined); got {lam!r}."
            )
        matrix = lam * scaled + (1.0 - lam) * np.eye(dim)
        matrix = 0.5 * (matrix + matrix.T)
        eigenvalues, eigenvectors = np.linalg.eigh(matrix)
        if not eigenvalues[0] > _CONDITION_FLOOR * eigenvalues[-1]:
            raise ValueError(
                f"`lam` must be < 1 on this space: its covariance is singular (smallest "
                f"eigenvalue of M {eigenvalues[0]:.3g}, largest {eigenvalues[-1]:.3g}), so the "
                f"Mahalanobis metric of lam = 1 is not a metric; got {lam!r}."
            )
        self.eigenvalues = eigenvalues
        self.root = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
        self.whiten = eigenvectors / np.sqrt(eigenvalues)

    @property
    def largest_stretch(self) -> float:
        """``sqrt`` of the largest eigenvalue of ``M``: the largest factor by which ``M^{1/2}``
        lengthens a vector."""
        return float(np.sqrt(self.eigenvalues[-1]))


class MahalanobisMechanism(MultivariateLaplace):
    """Elliptical noise shaped by the regularised covariance, decoded to the exact nearest word.

    ``z = r M^{1/2} u`` with ``r ~ Gamma(dim, 1 / epsilon)``, ``u`` uniform on the unit sphere
    and ``M = lam Sigma~ + (1 - lam) I`` (:class:`RegularisedCovariance`: ``Sigma~`` the
    covariance of the vectors scaled to unit average variance). The direction is **not**
    re-normalised after ``M^{1/2}``: ``z`` has density proportional to
    ``exp(-epsilon ||M^{-1/2} z||)``, its Mahalanobis norm ``||M^{-1/2} z||`` is
    ``Gamma(dim, 1 / epsilon)``. The output is the word nearest to ``phi(w) + z`` in the
    Euclidean distance (exact search, ties to the smaller id), the decoding of
    :class:`MultivariateLaplace`.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter (per unit of ``d_RM``), > 0.
    lam : float
        Regularisation weight in [0, 1] (default :data:`DEFAULT_LAM` = 0.2). ``lam = 0`` is
        :class:`MultivariateLaplace` exactly (same law and, for a seed, the same draws);
        ``lam = 1`` is the plain Mahalanobis metric and needs a non-singular covariance.
    table_k : int, optional
        Width of the exact neighbour rows used to decode without a full search (as in
        :class:`MultivariateLaplace`).

    Raises
    ------
    TypeError
        ``space`` not an :class:`EmbeddingSpace`; ``epsilon``, ``lam`` not real numbers;
        ``table_k`` not an integer.
    ValueError
        ``epsilon`` not finite and > 0 or below :attr:`min_epsilon`; ``lam`` outside [0, 1];
        ``lam = 1`` on a singular covariance.

    Notes
    -----
    *Guarantee.* ``epsilon * d_RM``-metric DP with the regularised Mahalanobis distance
    ``d_RM(x, y) = sqrt((x - y)^T M^{-1} (x - y))`` (Xu et al. 2020): for all words
    ``w, w'`` and outputs ``y``, ``P[M(w) = y] <= exp(epsilon d_RM(phi(w), phi(w'))) P[M(w') = y]``.
    The noise density ratio of two inputs is ``exp(epsilon (||M^{-1/2}(x - phi(w'))|| -
    ||M^{-1/2}(x - phi(w))||)) <= exp(epsilon d_RM(phi(w), phi(w')))`` (triangle inequality
    of the norm ``||M^{-1/2} .||``) and decoding is post-processing. :meth:`privacy_loss_bound`
    returns ``epsilon * d_RM``; it is **not** ``epsilon`` times the Euclidean distance (the
    :class:`PrivacyBound` notion "metric" is stated for ``d_RM`` here). Since the eigenvalues
    of ``M`` lie in ``[s_min, s_max]``, ``d / sqrt(s_max) <= d_RM <= d / sqrt(s_min)`` with
    ``d`` the Euclidean distance. Assumes ``M`` is public: it is computed from the embedding
    vectors only (a public embedding), never from the text being perturbed; and exact real
    arithmetic.

    *Decoding.* Exact, as in :class:`MultivariateLaplace`: the decoded word lies within
    ``2 ||z||`` (Euclidean) of ``w``, so the neighbour row decides when its last word is
    farther; otherwise the exact cascade and full search.

    *Range.* ``epsilon`` below ``min_epsilon = sqrt(s_max) dim / (1e6 max_v ||phi(v)||)`` is
    refused: the mean Euclidean radius of the noise, up to ``sqrt(s_max) dim / epsilon``,
    would exceed a million times the size of the space (``s_max`` the largest eigenvalue of
    ``M``; for ``lam = 0`` the floor of :class:`MultivariateLaplace`).

    *Parameters not checked in the paper here.* The paper's full text was not retrievable
    on this machine: that ``Sigma~`` is scaled by the average variance, that decoding is the
    Euclidean nearest word, and the default ``lam`` follow the project's notes
    (``RESEARCH.md``) and the two public implementations (pypantera ``Mahalanobis``,
    mldp-text ``Mahalanobis``, whose default ``lambd`` is 0.2); ``lam`` is explicit.

    References
    ----------
    Z. Xu, A. Aggarwal, O. Feyisetan, N. Teissier. "A Differentially Private Text
    Perturbation Method Using a Regularized Mahalanobis Metric". PrivateNLP workshop at
    EMNLP 2020, arXiv 2010.11947.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=200, dim=4, rng=0)
    >>> mechanism = dd.MahalanobisMechanism(space, epsilon=5.0, lam=0.5)
    >>> mechanism.sample([3, 3, 7], rng=0).shape
    (3,)
    """

    exact = False

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float,
        *,
        lam: float = DEFAULT_LAM,
        table_k: int | None = None,
    ) -> None:
        Mechanism.__init__(self, space)
        epsilon = check_epsilon(epsilon)
        self.lam = check_number(lam, "lam", minimum=0.0, strict=False, maximum=1.0)
        #: ``M`` and its square roots (float64).
        self.covariance = RegularisedCovariance(space, self.lam)
        self.min_epsilon = min_mahalanobis_epsilon(space, self.covariance)
        if epsilon < self.min_epsilon:
            raise ValueError(
                f"`epsilon` must be >= {self.min_epsilon:.3g} for exact decoding on this space "
                f"with lam = {self.lam:g} (mean Euclidean noise radius sqrt(s_max) dim / "
                f"epsilon at most {MAX_RADIUS:.0e} x the largest vector norm); got {epsilon!r}."
            )
        self.epsilon = epsilon
        if table_k is None:
            table_k = min(TABLE_K, len(space))
        self.table_k = check_int(table_k, "table_k", minimum=1, maximum=len(space))
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "lam": self.lam, "table_k": self.table_k}

    def privacy_bound(self) -> PrivacyBound:
        if self.lam == 0.0:
            return super().privacy_bound()
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            f"{self._metric_statement()}; exact nearest-word decoding; {IDEAL_ARITHMETIC}",
        )

    def _metric_statement(self) -> str:
        """Which distance ``d`` the metric guarantee is stated in."""
        if self.lam == 0.0:
            return "d is the Euclidean distance (multivariate Laplace noise)"
        return (
            "d is the regularised Mahalanobis distance d_RM(x, y) = sqrt((x - y)^T M^-1 (x - y)), "
            f"M = {self.lam:g} Sigma~ + {1.0 - self.lam:g} I (Sigma~ the covariance of the "
            "public embedding scaled to unit average variance), not the Euclidean distance"
        )

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any:
        """``epsilon * d_RM(phi(w), phi(w'))`` (broadcast over arrays of ids).

        ``d_RM`` is computed in float64 from the eigendecomposition of ``M``:
        ``||(phi(w) - phi(w')) V diag(s)^{-1/2}||``. For ``lam = 0`` it is the Euclidean
        distance, exactly as :class:`MultivariateLaplace` computes it.
        """
        if self.covariance.whiten is None:
            return super().privacy_loss_bound(word_id, other_id)
        return self.epsilon * self.mahalanobis_distance(word_id, other_id)

    def _worst_claims(self, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``epsilon * r(w) / sqrt(s_min)``, an upper bound on ``epsilon * max_w' d_RM(w, w')``:
        ``M^-1 <= I / s_min`` (``s_min`` the smallest eigenvalue of ``M``), so ``d_RM <= d /
        sqrt(s_min)``, and ``r(w)`` is the exact farthest Euclidean distance of ``w``."""
        if self.covariance.whiten is None:
            return super()._worst_claims(word_ids)
        distances, farthest = self.space._farthest_rows(word_ids)
        scale = 1.0 / math.sqrt(float(np.min(self.covariance.eigenvalues)))
        with np.errstate(over="ignore"):
            return self.epsilon * distances * scale, farthest

    def mahalanobis_distance(self, word_id: Any, other_id: Any) -> Any:
        """``d_RM(phi(w), phi(w'))`` for ids ``w``, ``w'`` (broadcast; float or ndarray)."""
        a = check_word_ids(word_id, len(self.space), "word_id")
        b = check_word_ids(other_id, len(self.space), "other_id")
        vectors = self.space.vectors
        diff = vectors[a].astype(np.float64) - vectors[b].astype(np.float64)
        if self.covariance.whiten is not None:
            diff = diff @ self.covariance.whiten
        result = np.sqrt(np.einsum("...i,...i->...", diff, diff))
        return float(result) if result.ndim == 0 else result

    def noise(self, n_samples: int, rng: RNGLike = None) -> np.ndarray:
        """``n_samples`` draws of the noise vector ``z = r M^{1/2} u`` (float64, shape
        (n_samples, dim)): the Laplace draws of :class:`MultivariateLaplace` (radius, then
        direction), mapped by ``M^{1/2}``."""
        return super().noise(n_samples, rng)

    def _noise(self, n_samples: int, generator: np.random.Generator) -> np.ndarray:
        spherical = super()._noise(n_samples, generator)
        if self.covariance.root is None:
            return spherical
        return spherical @ self.covariance.root  # root is symmetric: rows times M^{1/2}


def scaled_covariance(space: EmbeddingSpace) -> np.ndarray | None:
    """``Sigma~``: the covariance of the space's vectors (float64, every word weighted equally)
    divided by ``trace / dim``; ``None`` when every word has the same vector. Kept per space
    (one pass over the vectors: up to seconds on 400,000 words on a loaded machine)."""
    with _COVARIANCE_LOCK:
        if space in _COVARIANCES:
            return _COVARIANCES[space]
    centred = space.vectors.astype(np.float64)
    centred -= centred.mean(axis=0)
    covariance = centred.T @ centred / len(centred)
    average_variance = float(np.trace(covariance)) / space.dim
    scaled = covariance / average_variance if average_variance > 0.0 else None
    if scaled is not None:
        scaled.setflags(write=False)
    with _COVARIANCE_LOCK:
        _COVARIANCES[space] = scaled
    return scaled


_COVARIANCES: weakref.WeakKeyDictionary[EmbeddingSpace, np.ndarray | None] = (
    weakref.WeakKeyDictionary()
)
_COVARIANCE_LOCK = threading.Lock()


def min_mahalanobis_epsilon(space: EmbeddingSpace, covariance: RegularisedCovariance) -> float:
    """``sqrt(s_max) dim / (MAX_RADIUS * largest vector norm)``: the smallest epsilon whose
    noise is decoded exactly (see :class:`MahalanobisMechanism`, *Range*)."""
    if covariance.root is None:  # lam = 0: exactly the floor of MultivariateLaplace
        return min_decodable_epsilon(space)
    return covariance.largest_stretch * min_decodable_epsilon(space)
