"""Gaussian kernel density priors over an embedding space.

:class:`KDEPrior` is ``p(x) = sum_i w_i N(x; r_i, h_i^2 I)`` over reference points ``r_i`` (the
word vectors, a subsample of them, or their PCA projection), with equal weights ``w_i = 1 / n``
and one isotropic bandwidth ``h`` (or one per point with ``adaptive=``). Log densities are
computed exactly by a blocked log-sum-exp in numba, so they stay finite and accurate where the
kernel values themselves underflow (in 50 dimensions that is most of the space).

:func:`kde_logdensity` is the same computation for one point inside a numba function, so that
MCMC targets (:func:`densitydp.run_chains`) can use a prior without leaving compiled code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _kernels
from ._kernels import kde_logdensity
from ._rng import RNGLike, as_generator, seed_entropy
from ._validation import check_choice, check_finite_array, check_int, check_number, check_points
from ._validation import check_word_ids as _check_ids
from .embeddings import EmbeddingSpace
from .neighbors import build_table

__all__ = ["BANDWIDTH_RULES", "KDEPrior", "kde_logdensity"]

#: Named bandwidth rules accepted by :meth:`KDEPrior.fit` (besides a positive float).
BANDWIDTH_RULES = ("scott", "silverman", "cv")

#: Default neighbour rank of the adaptive bandwidth (``adaptive=True``).
ADAPTIVE_K = 10

_LOG_2PI = math.log(2.0 * math.pi)


class KDEPrior:
    """Isotropic Gaussian kernel density estimate used as a public prior over embeddings.

    Build it with :meth:`fit`. The prior must be fitted on public embeddings only (the density
    tilts the mechanisms; a private prior would leak). It is immutable, like the mechanisms that
    hold it.

    Attributes
    ----------
    bandwidth : float
        The global bandwidth ``h`` (standard deviation of each kernel, per coordinate).
    bandwidths : ndarray, shape (n_points,)
        Per-point bandwidths: all equal to ``bandwidth`` unless the prior is adaptive.
    references : ndarray, shape (n_points, dim)
        The reference points (projected when ``n_components`` was given), float32 when that is
        lossless, float64 otherwise.
    reference_ids : ndarray of int64 or None
        Word id of each reference point when the prior was fitted on an
        :class:`~densitydp.EmbeddingSpace`, else None.
    input_dim : int
        Dimension of the points :meth:`log_density` accepts.
    projection : sklearn.decomposition.PCA or None
        The PCA applied to points before the density is evaluated.
    seed : dict
        Seed entropy of the generator used for subsampling and cross-validation.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=300, dim=4, n_clusters=3, rng=0)
    >>> prior = dd.KDEPrior.fit(space, bandwidth=0.5)
    >>> prior.log_density(space.vectors[:2]).round(3).tolist()
    [-1.964, -2.139]
    """

    def __init__(
        self,
        references: np.ndarray,
        bandwidths: np.ndarray,
        *,
        bandwidth: float,
        kernel: str = "gaussian",
        projection: Any = None,
        reference_ids: np.ndarray | None = None,
        space: EmbeddingSpace | None = None,
        rule: str = "",
        seed: dict[str, Any] | None = None,
    ) -> None:
        references = check_finite_array(references, "references", ndim=2)
        bandwidths = check_finite_array(bandwidths, "bandwidths", ndim=1).copy()
        if len(references) < 1:
            raise ValueError("`references` must hold at least one point; got 0.")
        if bandwidths.shape != (len(references),) or (bandwidths <= 0).any():
            raise ValueError(
                f"`bandwidths` must be {len(references)} numbers > 0; got shape {bandwidths.shape}."
            )
        lossless = np.array_equal(references.astype(np.float32), references)
        self.references = references.astype(np.float32 if lossless else np.float64)
        self.references.flags.writeable = False
        self.bandwidths = bandwidths
        self.bandwidths.flags.writeable = False
        self.bandwidth = check_number(bandwidth, "bandwidth", minimum=0.0)
        self.kernel = check_choice(kernel, "kernel", ("gaussian",))
        self.projection = projection
        self.reference_ids = reference_ids
        self._space = space
        self.rule = rule
        self.seed = seed or {"entropy": None, "spawn_key": []}
        n_points, dim = references.shape
        self._references_t = np.ascontiguousarray(self.references.T)
        self._inv_two_h2 = 0.5 / bandwidths**2
        self._log_weights = -math.log(n_points) - dim * np.log(bandwidths) - 0.5 * dim * _LOG_2PI
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        # mechanisms keep a reference to their prior: it must not change under them
        if getattr(self, "_frozen", False):
            raise AttributeError(f"KDEPrior is immutable; fit a new prior to change `{name}`.")
        object.__setattr__(self, name, value)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data: EmbeddingSpace | Any,
        bandwidth: str | float = "scott",
        kernel: str = "gaussian",
        adaptive: bool | int = False,
        *,
        n_components: int | None = None,
        max_points: int | None = None,
        cv_points: int = 2_000,
        cv_folds: int = 5,
        rng: RNGLike = None,
    ) -> KDEPrior:
        """Fit the prior on an embedding space (all its word vectors) or on an ``(n, d)`` array.

        Parameters
        ----------
        data : EmbeddingSpace or array_like, shape (n, d)
            The public points the density is estimated from.
        bandwidth : {"scott", "silverman", "cv"} or float
            ``scott``: ``h = sigma n^(-1/(d+4))``; ``silverman``:
            ``h = sigma (n (d+2) / 4)^(-1/(d+4))``, with ``sigma`` the root mean per-coordinate
            variance of the points (the isotropic versions of scipy's factors). ``cv``: the
            bandwidth maximising the 5-fold held-out log likelihood (scikit-learn
            ``GridSearchCV`` on at most ``cv_points`` points, scored with this exact log
            density), then rescaled from the training-fold size ``m (k - 1) / k`` to the full
            sample size ``n`` by Scott's rate ``(m (k - 1) / (k n))^(1/(d+4))``. A float is
            used as it is.
        kernel : {"gaussian"}
            The only kernel: the density must be smooth and positive everywhere for the tilted
            targets.
        adaptive : bool or int
            Per-point bandwidths ``h_i = h rho_i / g``, with ``rho_i`` the exact distance from
            point ``i`` to its ``k``-th nearest other point (exact search on the float32-rounded
            points) (``k = adaptive``, or 10 for
            ``True``) and ``g`` their geometric mean, computed in log space: wide kernels in
            sparse regions, narrow ones in dense regions.
        n_components : int, optional
            Fit on the first ``n_components`` principal components (scikit-learn ``PCA``).
            Faster, but an approximation: :meth:`log_density` is then the density of the
            *projected* point in the projected space, not a density in the original space.
        max_points : int, optional
            Use a random subsample of at most this many reference points (each evaluation costs
            ``n_points * dim`` multiply-adds).
        cv_points, cv_folds : int
            Subsample size and number of folds of ``bandwidth="cv"``.
        rng : None, int or Generator
            Randomness for the subsample and the cross-validation folds.
        """
        generator = as_generator(rng)
        seed = seed_entropy(generator)
        kernel = check_choice(kernel, "kernel", ("gaussian",))
        reference_ids: np.ndarray | None = None
        space = None
        if isinstance(data, EmbeddingSpace):
            points = data._vectors64
            reference_ids = np.arange(len(data), dtype=np.int64)
            space = data
        else:
            points = check_finite_array(data, "data", ndim=2)
        if len(points) < 2:
            raise ValueError(f"`data` must hold at least 2 points; got {len(points)}.")
        if max_points is not None:
            max_points = check_int(max_points, "max_points", minimum=2)
            if max_points < len(points):
                chosen = np.sort(generator.choice(len(points), size=max_points, replace=False))
                points = points[chosen]
                reference_ids = None if reference_ids is None else reference_ids[chosen]
        projection = None
        if n_components is not None:
            n_components = check_int(
                n_components, "n_components", minimum=1, maximum=min(points.shape)
            )
            from sklearn.decomposition import PCA  # scikit-learn is imported on first use

            projection = PCA(n_components=n_components, svd_solver="full").fit(points)
            points = projection.transform(points)
        rule = bandwidth if isinstance(bandwidth, str) else "fixed"
        h = _global_bandwidth(points, bandwidth, cv_points, cv_folds, generator)
        bandwidths = np.full(len(points), h)
        if adaptive is not False:
            k = ADAPTIVE_K if adaptive is True else check_int(adaptive, "adaptive", minimum=1)
            bandwidths = _adaptive_bandwidths(points, h, min(k, len(points) - 1))
            rule += f"+adaptive(k={k})"
        return cls(
            points,
            bandwidths,
            bandwidth=h,
            kernel=kernel,
            projection=projection,
            reference_ids=reference_ids,
            space=space,
            rule=rule,
            seed=seed,
        )

    # -- evaluation -----------------------------------------------------------------------------

    @property
    def n_points(self) -> int:
        return int(self.references.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the space the density lives in (after the projection)."""
        return int(self.references.shape[1])

    @property
    def input_dim(self) -> int:
        return self.dim if self.projection is None else int(self.projection.n_features_in_)

    @property
    def space(self) -> EmbeddingSpace | None:
        """The space the prior was fitted on (None when fitted on an array)."""
        return self._space

    @property
    def adaptive(self) -> bool:
        return bool(np.any(self.bandwidths != self.bandwidth))

    def __repr__(self) -> str:
        projected = "" if self.projection is None else f", n_components={self.dim}"
        return (
            f"KDEPrior(n_points={self.n_points}, input_dim={self.input_dim}, "
            f"bandwidth={self.bandwidth:.6g}, rule={self.rule!r}, kernel={self.kernel!r}"
            f"{projected})"
        )

    def _project(self, points: np.ndarray) -> np.ndarray:
        if self.projection is None:
            return points
        return np.ascontiguousarray(self.projection.transform(points))

    def log_density(self, points: Any) -> np.ndarray:
        """Exact ``ln p(x)`` for each row of ``points`` (shape ``(n, input_dim)``; a 1-D array is
        one point). Float64; finite for every finite point."""
        queries = self._project(check_points(points, self.input_dim))
        return self._evaluate(queries, np.full(len(queries), -1, dtype=np.int64))

    def local_density(self, word_ids: Any) -> np.ndarray:
        """Leave-one-out ``ln p(phi(w))`` of words of the space the prior was fitted on: the
        word's own kernel is left out of the sum (and the weights renormalised to ``n - 1``
        points), so a word does not count itself as density."""
        if self._space is None or self.reference_ids is None:
            raise ValueError(
                "local_density needs a prior fitted on an EmbeddingSpace; this one was fitted on "
                "an array (use log_density)."
            )
        n_words = len(self._space)
        ids = _check_ids(word_ids, n_words)
        flat = ids.reshape(-1)
        position = np.full(n_words, -1, dtype=np.int64)
        position[self.reference_ids] = np.arange(self.n_points)
        exclude = position[flat]
        if self.n_points == 1 and (exclude >= 0).any():
            raise ValueError("local_density is undefined for a prior with a single point.")
        queries = self._project(self._space._vectors64[flat])
        values = self._evaluate(queries, exclude)
        # the remaining n - 1 kernels are reweighted from 1/n to 1/(n - 1)
        values[exclude >= 0] += math.log(self.n_points) - math.log(self.n_points - 1)
        return values.reshape(ids.shape)

    def _evaluate(self, queries: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        out = np.empty(len(queries))
        _kernels.kde_log_density(
            np.ascontiguousarray(queries, dtype=np.float64),
            self._references_t,
            self._log_weights,
            self._inv_two_h2,
            exclude,
            out,
        )
        return out

    def numba_args(self) -> tuple[Any, ...]:
        """The arrays :func:`kde_logdensity` needs, as one tuple to pass to numba code."""
        if self.projection is None:
            mean = np.zeros(self.input_dim)
            components = np.zeros((0, self.input_dim))
        else:
            mean = np.asarray(self.projection.mean_, dtype=np.float64)
            components = np.ascontiguousarray(self.projection.components_, dtype=np.float64)
        return (self._references_t, self._log_weights, self._inv_two_h2, mean, components)


# -- bandwidths ------------------------------------------------------------------------------------


def _scale(points: np.ndarray) -> float:
    """Root mean per-coordinate variance (ddof 1): the isotropic data scale."""
    return math.sqrt(float(np.mean(np.var(points, axis=0, ddof=1))))


def rule_of_thumb(points: np.ndarray, rule: str) -> float:
    """Scott's or Silverman's isotropic bandwidth for ``points``."""
    n, dim = points.shape
    sigma = _scale(points)
    if sigma == 0.0:
        raise ValueError("`data` has zero variance: every point is the same; give a bandwidth.")
    if rule == "scott":
        return sigma * n ** (-1.0 / (dim + 4))
    return sigma * (n * (dim + 2) / 4.0) ** (-1.0 / (dim + 4))


def _global_bandwidth(
    points: np.ndarray,
    bandwidth: str | float,
    cv_points: int,
    cv_folds: int,
    generator: np.random.Generator,
) -> float:
    if not isinstance(bandwidth, str):
        return check_number(bandwidth, "bandwidth", minimum=0.0)
    rule = check_choice(bandwidth, "bandwidth", BANDWIDTH_RULES)
    if rule != "cv":
        return rule_of_thumb(points, rule)
    cv_points = check_int(cv_points, "cv_points", minimum=10)
    cv_folds = check_int(cv_folds, "cv_folds", minimum=2)
    return cross_validated_bandwidth(points, cv_points, cv_folds, generator)


def cross_validated_bandwidth(
    points: np.ndarray, cv_points: int, cv_folds: int, generator: np.random.Generator
) -> float:
    """Likelihood cross-validated bandwidth (see :meth:`KDEPrior.fit`)."""
    from sklearn.model_selection import GridSearchCV, KFold

    n, dim = points.shape
    subsample = points
    if n > cv_points:
        subsample = points[np.sort(generator.choice(n, size=cv_points, replace=False))]
    m = len(subsample)
    centre = math.log(rule_of_thumb(subsample, "scott"))
    folds = KFold(cv_folds, shuffle=True, random_state=int(generator.integers(2**31)))
    grid = np.linspace(centre - math.log(10.0), centre + math.log(10.0), 41)
    for _ in range(6):
        search = GridSearchCV(_held_out_likelihood()(), {"bandwidth": np.exp(grid)}, cv=folds)
        search.fit(subsample)
        best = int(np.argmax(search.cv_results_["mean_test_score"]))
        if 0 < best < len(grid) - 1:
            break
        grid = grid + (grid[-1] - grid[0]) * (0.75 if best else -0.75)
    else:
        raise ValueError(
            "bandwidth='cv' found no interior optimum of the held-out likelihood; give a float."
        )
    # the optimum is for training folds of m (k - 1) / k points: rescale it to all n points
    fold_size = m * (cv_folds - 1) / cv_folds
    return float(math.exp(grid[best]) * (fold_size / n) ** (1.0 / (dim + 4)))


def _held_out_likelihood() -> type:
    """A scikit-learn estimator whose ``fit`` stores the points and whose ``score`` is the exact
    held-out total log likelihood, so that ``GridSearchCV`` never uses a scikit-learn density
    that could underflow in high dimension. Built on first use (scikit-learn loads lazily)."""
    from sklearn.base import BaseEstimator

    class HeldOutLikelihood(BaseEstimator):
        def __init__(self, bandwidth: float = 1.0) -> None:
            self.bandwidth = bandwidth

        def fit(self, X: np.ndarray, y: Any = None) -> Any:
            self.prior_ = KDEPrior(X, np.full(len(X), self.bandwidth), bandwidth=self.bandwidth)
            return self

        def score(self, X: np.ndarray, y: Any = None) -> float:
            return float(self.prior_.log_density(X).sum())

    return HeldOutLikelihood


def _adaptive_bandwidths(points: np.ndarray, bandwidth: float, k: int) -> np.ndarray:
    """``h rho_i / g`` with ``rho_i`` the exact k-th neighbour distance (see :meth:`fit`)."""
    table = build_table(np.ascontiguousarray(points, dtype=np.float32), k + 1, progress=False)
    rho = table.distances[:, k].astype(np.float64)
    positive = rho[rho > 0]
    if positive.size == 0:
        raise ValueError("adaptive bandwidths need distinct points; every k-th distance is 0.")
    log_rho = np.log(np.maximum(rho, positive.min()))
    return np.exp(math.log(bandwidth) + log_rho - log_rho.mean())
