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
from typing import Any, NamedTuple

import numba
import numpy as np
from tqdm.auto import tqdm

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

#: Methods of :meth:`KDEPrior.log_sup_bound`, and the largest prior that ``"auto"`` bounds with the
#: all-pairs pass.
SUP_METHODS = ("auto", "pairs", "neighbors")
#: Bandwidths outside this range make 0.5 / h^2 overflow to inf or underflow to 0 in float64.
MIN_BANDWIDTH = math.sqrt(0.5 / np.finfo(np.float64).max)
MAX_BANDWIDTH = math.sqrt(0.5 / np.finfo(np.float64).tiny)
SUP_PAIRS_LIMIT = 50_000
#: Default number of cells of the distance axis, and of exact neighbours per reference point for
#: ``method="neighbors"`` (see :meth:`KDEPrior.log_sup_bound`).
SUP_CELLS = 256
SUP_NEIGHBORS = 128
#: Distance bins per cell: a power of two, so that ``cell width = SUP_SUB_BINS * bin width``
#: exactly.
SUP_SUB_BINS = 4
#: The last cell starts where ``n exp(-rho^2 / (2 h^2))`` is ``e**-40`` of a kernel's peak.
_SUP_TAIL_NATS = 40.0
#: Smallest normal double, and the unit round-off of float64.
_TINY = 2.2250738585072014e-308
_ROUNDOFF = 2.0**-53

_LOG_2PI = math.log(2.0 * math.pi)


class _SupBound(NamedTuple):
    """A cached :meth:`KDEPrior.log_sup_bound` pass."""

    log_bound: float
    per_point: np.ndarray  # (n_points,) log bound over each reference point's Voronoi cell
    log_tail: float  # log bound over the points farther than the last cell from every reference


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
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            scale = 0.5 / bandwidths**2
        if not (np.isfinite(scale) & (scale > 0)).all():
            bad = float(bandwidths[~(np.isfinite(scale) & (scale > 0))][0])
            raise ValueError(
                f"`bandwidth` must lie in [{MIN_BANDWIDTH:.3g}, {MAX_BANDWIDTH:.3g}] so that "
                f"0.5 / h^2 is a finite positive float64; got {bad!r}."
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
        self._inv_two_h2 = scale
        self._log_weights = -math.log(n_points) - dim * np.log(bandwidths) - 0.5 * dim * _LOG_2PI
        # results of the (deterministic) supremum passes, keyed by their arguments
        self._memo: dict[tuple[Any, ...], Any] = {}
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
        one point). Float64; finite wherever the true value is within the float64 range (above
        -1.8e308); ``-inf`` for points farther than about ``1.9e154 h`` from every reference
        point, whose log density is below it (docs/density.md)."""
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
        """The arrays :func:`kde_logdensity` needs, as one tuple to pass to numba code (its
        layout is private: pass it on unchanged)."""
        if self.projection is None:
            mean = np.zeros(self.input_dim)
            components = np.zeros((0, self.input_dim))
        else:
            mean = np.asarray(self.projection.mean_, dtype=np.float64)
            components = np.ascontiguousarray(self.projection.components_, dtype=np.float64)
        bounds = np.array(
            [
                self._log_weights.max(),
                self._log_weights.min(),
                self._inv_two_h2.max(),
                self._inv_two_h2.min(),
            ]
        )
        return (self._references_t, self._log_weights, self._inv_two_h2, mean, components, bounds)

    # -- supremum -------------------------------------------------------------------------------

    def log_sup_bound(
        self,
        *,
        method: str = "auto",
        n_cells: int = SUP_CELLS,
        n_neighbors: int = SUP_NEIGHBORS,
        progress: bool | None = None,
    ) -> float:
        """A rigorous upper bound on ``ln sup_x p(x)``, in nats.

        Never below the true supremum (floating-point rounding included, see Notes); tight to
        the gap reported by :meth:`log_sup_lower`. For a PCA-projected prior it bounds the
        density in the projected space, which is also the supremum of :meth:`log_density` over
        the input space (every projected point is the image of an input point). The result is
        cached on the prior.

        Parameters
        ----------
        method : {"auto", "pairs", "neighbors"}
            ``pairs``: exact float64 distances between all pairs of reference points,
            ``n_points^2 * dim`` multiply-adds (about 40 s for 50,000 points in 50 dimensions
            on 2 cores). ``neighbors``: exact distances to the ``n_neighbors`` nearest reference
            points only (an exact k-NN table, from the space's disk cache when the prior uses
            all words of its space unprojected, else built on the reference points), every
            other point being put at the distance of the farthest listed one: cheaper, and
            looser (much looser where the points are dense; see Notes). ``auto``: ``pairs`` up
            to ``SUP_PAIRS_LIMIT`` (50,000; 35 s on 2 cores) points, else ``neighbors``.
        n_cells : int
            Cells of the grid over the distance ``rho`` (>= 8). The discretisation adds at
            most about ``(D - rho) * delta / h^2`` nats per kernel at distance ``D``, with cell
            width ``delta ~ 10 h / n_cells`` for a few thousand points (GloVe priors of 2,000
            and 10,000 points: going from 256 to 512 cells lowers the bound by 0.013 and 0.017
            nats). The grid costs ``n_points * n_cells^2`` operations on top of the distances.
        n_neighbors : int
            Exact neighbours per reference point of ``method="neighbors"`` (>= 1).
        progress : bool or None
            Progress bar; None shows it when the pass is long (over 10^10 multiply-adds).

        Returns
        -------
        float
            ``B >= ln sup_x p(x)``. For one reference point, ``B`` is the kernel's peak
            ``-(dim / 2) ln(2 pi h^2)`` (up to a 1e-9-nat allowance).

        Raises
        ------
        ValueError
            Unknown ``method``, or ``n_cells`` / ``n_neighbors`` out of range.
        TypeError
            ``n_cells`` or ``n_neighbors`` is not an int.

        See Also
        --------
        log_sup_lower : the best local maximum found, to report the gap.

        Notes
        -----
        Every ``x`` lies in the Voronoi cell of its nearest reference point ``v*``. With
        ``rho = ||x - r_v*||`` and ``D_v = ||r_v - r_v*||``, ``||x - r_v|| >= max(rho, D_v -
        rho)`` for every ``v`` (``x`` is at least as close to ``r_v*`` as to ``r_v``; triangle
        inequality), so

            p(x) <= sum_v w_v exp(-max(rho, D_v - rho)^2 / (2 h_v^2)),

        ``w_v = (1 / n) (2 pi h_v^2)^(-dim / 2)`` (``D_v* = 0``). The right side is maximised
        over ``rho >= 0`` rigorously on cells ``[rho_i, rho_{i+1}]``, ``rho_i = i delta``: on a
        cell each term is at most its value at ``max(rho_i, D_v - rho_{i+1})``, and ``D_v`` is
        first floored to a multiple of ``delta / 4`` (the bins of the kernel). The last cell,
        ``rho >= rho_m``, is bounded by ``sum_v w_v exp(-rho_m^2 / (2 h_v^2))``, with ``rho_m``
        chosen so that this is ``e^-40`` of the smallest kernel peak
        (``rho_m^2 = 2 h_max^2 (ln n + 40 + ln(w_max / w_min))``; ``delta = rho_m / n_cells``).
        The bound is the largest value over all cells and all ``v*``, computed in numba,
        parallel over ``v*``.

        Adaptive priors (one bandwidth per point) are handled by the same bound; within one
        distance bin, kernels are bounded by their total weight and the widest bandwidth of the
        bin, and with ``neighbors`` every unlisted kernel gets the widest bandwidth of the
        prior, so the bound is looser than for one shared bandwidth. Each distance bin then
        costs an ``exp`` per cell.

        ``neighbors`` is loose where a point has many close neighbours: the unlisted points,
        up to ``n_points``, all count as if at the distance ``D_k`` of the ``k``-th neighbour,
        so the bound is at least ``n exp(-D_k^2 / (8 h^2))`` times the kernel peak.

        Rounding: squared distances are shrunk by ``2 (dim + 16) u`` (``u = 2^-53``) before
        binning, which covers the rounding of their float64 sums, the square root and the
        division (so a floored distance is never above the true one); every factor is clamped
        below at the smallest normal double (an underflow rounds up); and the result gets an
        allowance of ``4 (n + n_bins + 64) u`` plus ``1e-9`` nats for the rounding of the sums
        and logarithms. Neighbour distances from a float32 table are shrunk by ``2^-22`` and,
        for float64 reference points, reduced by twice the largest float32 rounding of a point.

        Measured (``benchmarks/bench_kde_sup.py``, GloVe 50 d, Scott bandwidth, 2 cores): the
        gap to :meth:`log_sup_lower` is 0.54, 1.19 and 1.26 nats for 2,000, 10,000 and 50,000
        points with ``pairs`` (0.25 s, 2.4 s, 35 s), and 0.93, 4.06 and 6.61 nats with 128
        neighbours. The gap comes from the bound, not the grid: in a dense cluster it lets
        every neighbour be at ``D - rho`` at once, whereas at the cluster's mode they are at
        about ``D / sqrt(2)``.

        Examples
        --------
        >>> import densitydp as dd
        >>> space = dd.synthetic_space(n_words=300, dim=4, n_clusters=3, rng=0)
        >>> prior = dd.KDEPrior.fit(space, bandwidth=0.5)
        >>> round(prior.log_sup_bound(), 3), round(prior.log_sup_lower(), 3)
        (-1.443, -1.62)
        """
        method = check_choice(method, "method", SUP_METHODS)
        n_cells = check_int(n_cells, "n_cells", minimum=8, maximum=1 << 16)
        n_neighbors = check_int(n_neighbors, "n_neighbors", minimum=1)
        return self._sup_bound(method, n_cells, n_neighbors, progress).log_bound

    def log_sup_lower(
        self,
        *,
        max_starts: int = 256,
        max_iterations: int = 100,
        progress: bool | None = None,
    ) -> float:
        """The largest local maximum of ``ln p`` found by mean-shift: a lower bound on
        ``ln sup_x p(x)``, in nats, to report the gap of :meth:`log_sup_bound`.

        Mean-shift (the fixed point ``x <- sum_v a_v(x) r_v / sum_v a_v(x)``, ``a_v(x) =
        w_v h_v^-2 exp(-||x - r_v||^2 / (2 h_v^2))``, whose fixed points are the zeros of the
        gradient of ``p``) runs from each reference point, or, when there are more than
        ``max_starts`` of them, from the ``max_starts`` reference points whose Voronoi cells
        have the largest upper bound (from :meth:`log_sup_bound` with ``method="auto"``, which
        is then computed and cached). The result is the largest exact :meth:`log_density` at
        the starts and at the end points (in the projected space for a PCA prior). Cost:
        ``n_starts * iterations * n_points * dim`` multiply-adds (iterations stop when a step
        is below ``1e-6`` of the smallest bandwidth). Cached on the prior.

        Parameters
        ----------
        max_starts : int
            Most starting points (>= 1).
        max_iterations : int
            Most mean-shift steps per start (>= 0).
        progress : bool or None
            Progress bar; None shows it when the pass is long.

        Returns
        -------
        float
            ``L <= ln sup_x p(x)`` (the log density at a point actually found, so rounding
            aside it is attained).

        Raises
        ------
        ValueError, TypeError
            ``max_starts`` or ``max_iterations`` out of range or not an int.
        """
        max_starts = check_int(max_starts, "max_starts", minimum=1)
        max_iterations = check_int(max_iterations, "max_iterations", minimum=0)
        key = ("lower", max_starts, max_iterations)
        if key not in self._memo:
            n = self.n_points
            if n <= max_starts:
                starts = np.arange(n)
            else:
                per_point = self._sup_bound("auto", SUP_CELLS, SUP_NEIGHBORS, progress).per_point
                starts = np.sort(np.argsort(-per_point, kind="stable")[:max_starts])
            found = self._mean_shift(self.references[starts], max_iterations, progress)
            queries = np.vstack([self.references[starts].astype(np.float64), found])
            values = self._evaluate(queries, np.full(len(queries), -1, dtype=np.int64))
            self._memo[key] = float(values.max())
        return float(self._memo[key])

    def _mean_shift(
        self, positions: np.ndarray, max_iterations: int, progress: bool | None = None
    ) -> np.ndarray:
        """Mean-shift end points from ``positions`` (in the density's space), shape kept."""
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        out = np.empty_like(positions)
        log_coefficients = self._log_weights + np.log(2.0 * self._inv_two_h2)
        tolerance = 1e-6 * float(self.bandwidths.min())
        work = len(positions) * min(max_iterations, 20) * self.n_points * self.dim
        chunk = max(1, 64 * numba.get_num_threads())
        with _progress(len(positions), "mean-shift", progress, work) as bar:
            for start in range(0, len(positions), chunk):
                stop = min(start + chunk, len(positions))
                _kernels.kde_mean_shift(
                    positions[start:stop],
                    self._references_t,
                    log_coefficients,
                    self._inv_two_h2,
                    max_iterations,
                    tolerance,
                    out[start:stop],
                )
                bar.update(stop - start)
        return out

    def _sup_bound(
        self, method: str, n_cells: int, n_neighbors: int, progress: bool | None
    ) -> _SupBound:
        n = self.n_points
        if method == "auto":
            method = "pairs" if n <= SUP_PAIRS_LIMIT else "neighbors"
        if method == "neighbors" and n_neighbors >= n - 1:
            method = "pairs"  # every other point would be listed anyway
        key = ("sup", method, n_cells, n_neighbors if method == "neighbors" else None)
        if key in self._memo:
            cached: _SupBound = self._memo[key]
            return cached
        grid = _sup_grid(self._log_weights, self._inv_two_h2, n_cells)
        values = np.empty(n)
        rows = np.arange(n, dtype=np.int64)
        common = (grid.bin_width, _shrink(self.dim), n_cells, SUP_SUB_BINS, grid.table)
        if method == "pairs":
            chunk = max(_kernels.SUP_TILE, min(4096, (1 << 30) // max(1, n * self.dim)))
            chunk = _kernels.SUP_TILE * max(1, chunk // _kernels.SUP_TILE)
            with _progress(n, "KDE supremum bound", progress, n * n * self.dim) as bar:
                for start in range(0, n, chunk):
                    stop = min(start + chunk, n)
                    _kernels.kde_sup_pairs(
                        rows[start:stop],
                        self._references_t,
                        grid.relative_weights,
                        self._inv_two_h2,
                        grid.shared,
                        *common,
                        values[start:stop],
                    )
                    bar.update(stop - start)
        else:
            neighbor_ids, far_distances = self._sup_neighbor_rows(n_neighbors + 1, progress)
            if grid.shared:
                total_weight = float(n)  # integer counts: exact
            else:
                total_weight = math.fsum(grid.relative_weights) * (1.0 + 8.0 * n * _ROUNDOFF)
            _kernels.kde_sup_neighbors(
                rows,
                neighbor_ids,
                far_distances,
                self._references_t,
                grid.relative_weights,
                self._inv_two_h2,
                total_weight,
                float(self._inv_two_h2.min()),
                grid.shared,
                *common,
                values,
            )
        allowance = 1e-9 + 4.0 * (n + len(grid.table) + 64) * _ROUNDOFF
        scale = float(self._log_weights.max())
        per_point = scale + np.log(np.maximum(values, _TINY)) + allowance
        log_tail = scale + math.log(grid.tail) + allowance
        result = _SupBound(max(float(per_point.max()), log_tail), per_point, log_tail)
        self._memo[key] = result
        return result

    def _sup_neighbor_rows(self, k: int, progress: bool | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``k``-NN rows of the reference points (column 0: the point itself) and a lower
        bound on the distance from each point to every point not in its row."""
        n = self.n_points
        space = self._space
        whole_space = (
            space is not None
            and self.projection is None
            and self.reference_ids is not None
            and n == len(space)
            and np.array_equal(self.reference_ids, np.arange(n))
        )
        points32 = np.ascontiguousarray(self.references, dtype=np.float32)
        if whole_space:
            assert space is not None
            table = space.neighbors(k, progress=progress)  # the same float32 points
        else:
            table = build_table(points32, k, progress=progress)
        ids = np.ascontiguousarray(table.ids, dtype=np.int64)
        if not np.array_equal(ids[:, 0], np.arange(n)):
            raise RuntimeError("neighbour table rows must start with the point itself.")
        # distances of the float32 points, rounded to float32 (half an ulp, 2^-24 relative)
        far = table.distances[:, -1].astype(np.float64) * (1.0 - 2.0**-22)
        if self.references.dtype != np.float32:
            rounding = np.sqrt(((self.references - points32.astype(np.float64)) ** 2).sum(axis=1))
            far -= 2.0 * float(rounding.max()) * (1.0 + 1e-6)
        return ids, np.maximum(far, 0.0)


# -- supremum helpers ------------------------------------------------------------------------------


class _SupGrid(NamedTuple):
    bin_width: float
    relative_weights: np.ndarray  # w_v / w_max, clamped below at the smallest normal double
    shared: bool  # one bandwidth (and weight) for every kernel
    table: np.ndarray  # exp(-(q bin_width)^2 kappa) for the shared bandwidth (else unused)
    tail: float  # bound of the cell rho >= rho_m, relative to w_max


def _sup_grid(log_weights: np.ndarray, inv_two_h2: np.ndarray, n_cells: int) -> _SupGrid:
    """The cells and distance bins of :meth:`KDEPrior.log_sup_bound` (see its Notes)."""
    n = len(log_weights)
    shared = bool(np.all(inv_two_h2 == inv_two_h2[0]) and np.all(log_weights == log_weights[0]))
    spread = float(log_weights.max() - log_weights.min())
    kappa_min = float(inv_two_h2.min())
    rho_max = math.sqrt((math.log(n) + _SUP_TAIL_NATS + spread) / kappa_min)
    bin_width = rho_max / (n_cells * SUP_SUB_BINS)
    relative = np.maximum(np.exp(log_weights - log_weights.max()), _TINY)
    if shared:
        relative = np.ones(n)
    n_bins = (2 * n_cells + 1) * SUP_SUB_BINS + 1
    distances = np.arange(n_bins) * bin_width
    table = np.maximum(np.exp(-(distances**2) * float(inv_two_h2[0])), _TINY)
    last = n_cells * SUP_SUB_BINS * bin_width
    tail = math.fsum(relative * np.maximum(np.exp(-(last**2) * inv_two_h2), _TINY))
    return _SupGrid(bin_width, relative, shared, table, tail)


def _shrink(dim: int) -> float:
    """Factor applied to a computed squared distance so that its binned root is never above the
    true distance (float64 sum of ``dim`` squared differences, root, product)."""
    return 1.0 - 2.0 * (dim + 16) * _ROUNDOFF


def _progress(total: int, desc: str, progress: bool | None, work: float) -> tqdm:
    """A bar over ``total`` items; None shows it when ``work`` exceeds 10^10 multiply-adds."""
    show = progress if progress is not None else work > 1e10
    return tqdm(total=total, desc=desc, disable=not show, leave=False)


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
