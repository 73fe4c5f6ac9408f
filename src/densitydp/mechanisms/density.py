"""Density-aware mechanisms (Feyisetan, Aggarwal, Xu, Teissier, FLAIRS-34 2021).

The paper proposes calibrating word perturbation to the density of the embedding space but
publishes no formulas; these are the formulations densitydp uses (see ``RESEARCH.md``):

* :class:`DensityAwareLaplace`: Laplace noise tilted by a KDE prior, sampled by
  Metropolis–Hastings, decoded to the exact nearest word;
* :class:`PriorWeightedExponential`: the exponential mechanism with a prior on the outputs (exact);
* :class:`DistanceTruncatedLaplace`: Laplace noise with its radius capped.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from scipy.special import gammaincc, log_softmax
from tqdm.auto import tqdm

from .._rng import RNGLike, as_generator, spawn
from .._validation import check_choice, check_epsilon, check_int, check_number
from ..embeddings import EmbeddingSpace
from ..kde import KDEPrior
from ..mcmc import ChainResult, IndependenceProposal, run_chains
from . import _kernels
from .base import IDEAL_ARITHMETIC, PrivacyBound, PrivacyWarning, group_tokens
from .exponential import ExponentialMechanism, _restart
from .laplace import MultivariateLaplace

__all__ = ["DensityAwareLaplace", "DistanceTruncatedLaplace", "PriorWeightedExponential"]

#: Tokens per task of the density-aware sampler (each task draws from its own spawned generator,
#: so results do not depend on the number of threads).
TOKENS_PER_TASK = 64

#: Multiply-adds of prior evaluations above which sampling shows a progress bar by default
#: (about 10 seconds on one core).
PROGRESS_WORK = 50_000_000_000

_FLAIRS = (
    'O. Feyisetan, A. Aggarwal, Z. Xu, N. Teissier. "Research Challenges in Designing '
    'Differentially Private Text Generation Mechanisms". FLAIRS-34, 2021, arXiv 2012.05403.'
)


def _check_prior(prior: Any, space: EmbeddingSpace) -> KDEPrior:
    if not isinstance(space, EmbeddingSpace):
        raise TypeError(f"`space` must be an EmbeddingSpace; got {type(space).__name__}.")
    if not isinstance(prior, KDEPrior):
        raise TypeError(f"`prior` must be a KDEPrior; got {type(prior).__name__}.")
    if prior.input_dim != space.dim:
        raise ValueError(
            f"`prior` must accept points of the space's dimension {space.dim}; "
            f"got a prior over {prior.input_dim} dimensions."
        )
    return prior


def _check_tilt(tilt: Any) -> float:
    return check_number(tilt, "tilt", minimum=0.0, strict=False)


class DensityAwareLaplace(MultivariateLaplace):
    """Laplace noise tilted towards dense regions by a KDE prior, sampled by Metropolis–Hastings.

    For each token of word ``w`` a point ``x`` is drawn (approximately) from
    ``pi_w(x) ~ exp(-epsilon ||x - phi(w)||) p(x)^tilt`` and decoded to the exact nearest word.
    The chain starts from an exact Laplace draw around ``phi(w)`` and runs ``n_steps``
    Metropolis–Hastings steps, with independence proposals from the same Laplace noise
    (acceptance ``min(1, (p(x') / p(x))^tilt)``) or a Gaussian random walk.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter of the Laplace factor, > 0.
    prior : KDEPrior
        A density fitted on **public** embeddings only, over the space's dimension.
    tilt : float
        Exponent ``lambda >= 0`` of the prior; 0 gives the multivariate Laplace mechanism
        exactly (every independence proposal is accepted; a random-walk chain started at an
        exact Laplace draw stays exactly Laplace-distributed).
    n_steps : int
        Metropolis–Hastings steps per token (default 50). Each step evaluates the prior:
        ``n_points * dim`` multiply-adds.
    proposal : {"independence", "random_walk"}
    step_size : float, optional
        Random-walk step; default ``2.38 / epsilon`` (the Laplace noise has a per-coordinate
        standard deviation of ``sqrt(dim + 1) / epsilon``; 2.38 / sqrt(dim) of it is the classic
        optimal scale).
    table_k : int
        Width of the neighbour rows used for exact decoding (as in :class:`MultivariateLaplace`).
    progress : bool, optional
        Progress bar (tqdm) while sampling; None shows it when a call is long (more than
        :data:`PROGRESS_WORK` multiply-adds of prior evaluations). A display option only.

    Notes
    -----
    *Guarantee.* With a public prior and **exact** sampling from ``pi_w``,
    ``2 epsilon * d``-metric DP: ``pi_w(x) / pi_w'(x) <= exp(epsilon d(w, w')) Z_w' / Z_w`` and
    the normalisers cost the second ``epsilon d``. A chain of ``n_steps`` steps only
    approximates ``pi_w``: if its law is within total variation ``eta`` of ``pi_w``, the
    guarantee holds with an additional ``delta = (1 + exp(epsilon')) eta`` per pair, which this
    mechanism **cannot certify** (R-hat and ESS show mixing, they do not bound ``eta``; audit the
    chain as it runs with :mod:`densitydp.audit`). With ``tilt = 0`` the law is exactly the
    Laplace mechanism's and the guarantee is ``epsilon * d``.

    The formulation (tilted target, independence MH) is densitydp's reading of the paper's
    proposal, which publishes no formulas.

    References
    ----------
    {flairs}

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=200, dim=3, n_clusters=3, rng=0)
    >>> prior = dd.KDEPrior.fit(space)
    >>> mechanism = dd.DensityAwareLaplace(space, epsilon=5.0, prior=prior, tilt=1.0)
    >>> mechanism.sample([0, 0, 1], rng=0).tolist()
    [95, 45, 93]
    >>> mechanism.privacy_bound().epsilon  # 2 epsilon, assuming exact sampling
    10.0
    """

    exact = False

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float,
        prior: KDEPrior,
        tilt: float = 1.0,
        *,
        n_steps: int = 50,
        proposal: str = "independence",
        step_size: float | None = None,
        table_k: int | None = None,
        progress: bool | None = None,
    ) -> None:
        # own parameters first: the parent's __init__ validates the rest and freezes
        self.prior = _check_prior(prior, space)
        self.tilt = _check_tilt(tilt)
        self.n_steps = check_int(n_steps, "n_steps", minimum=1)
        self.proposal = check_choice(proposal, "proposal", ("independence", "random_walk"))
        self.step_size = check_number(
            2.38 / check_epsilon(epsilon) if step_size is None else step_size,
            "step_size",
            minimum=0.0,
        )
        self.progress = progress
        super().__init__(space, epsilon, table_k=table_k)

    def _parameters(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "prior": self.prior,
            "tilt": self.tilt,
            "n_steps": self.n_steps,
            "proposal": self.proposal,
            "step_size": self.step_size,
            "table_k": self.table_k,
        }

    def privacy_bound(self) -> PrivacyBound:
        if self.tilt == 0.0:
            return PrivacyBound(
                "metric",
                self.epsilon,
                0.0,
                "tilt = 0: exactly the multivariate Laplace law, exact nearest-word decoding; "
                + IDEAL_ARITHMETIC,
            )
        return PrivacyBound(
            "metric",
            2.0 * self.epsilon,
            0.0,
            "public prior (fitted on public embeddings only) and EXACT sampling from the tilted "
            f"target; this mechanism runs a {self.n_steps}-step {self.proposal} chain, which "
            "only approximates it: a chain within total variation eta of the target adds "
            "delta = (1 + e^(epsilon')) * eta per pair, and that delta is not certified "
            "(audit the mechanism); " + IDEAL_ARITHMETIC,
        )

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        positions, _ = self._run(word_ids, generator)
        centers = self.space._vectors64[word_ids]
        radii = np.linalg.norm(positions - centers, axis=1)
        return self.decode(word_ids, positions, radii)

    def _run(
        self, word_ids: np.ndarray, generator: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Final chain positions and accepted-move counts, one chain per token."""
        n_tokens = len(word_ids)
        positions = np.empty((n_tokens, self.space.dim))
        accepted = np.empty(n_tokens, dtype=np.int64)
        n_tasks = math.ceil(n_tokens / TOKENS_PER_TASK)
        children = spawn(generator, n_tasks)
        prior_args = self.prior.numba_args()
        vectors = self.space._vectors64

        def task(t: int) -> int:
            chunk = slice(t * TOKENS_PER_TASK, min((t + 1) * TOKENS_PER_TASK, n_tokens))
            _kernels.tilted_laplace_chains(
                children[t],
                np.ascontiguousarray(vectors[word_ids[chunk]]),
                self.epsilon,
                self.tilt,
                prior_args,
                self.n_steps,
                self.proposal == "random_walk",
                self.step_size,
                positions[chunk],
                accepted[chunk],
            )
            return chunk.stop - chunk.start

        work = n_tokens * self.n_steps * self.prior.n_points * self.prior.dim
        show = self.progress if self.progress is not None else work > PROGRESS_WORK
        with (
            tqdm(
                total=n_tokens, desc="density-aware Laplace", unit="token", disable=not show
            ) as bar,
            ThreadPoolExecutor(max_workers=numba.get_num_threads()) as pool,
        ):
            for done in pool.map(task, range(n_tasks)):
                bar.update(done)
        return positions, accepted

    def chains(
        self,
        word_id: Any,
        *,
        n_chains: int = 4,
        n_draws: int = 1_000,
        rng: RNGLike = None,
        progress: bool | None = None,
    ) -> ChainResult:
        """The Markov chains behind one word, exactly as the mechanism runs them (start at an
        exact Laplace draw, same proposal and step size, no adaptation), recorded for
        ``n_draws`` steps each.

        The result's ``extras`` hold the noise ``radius`` ``||x - phi(w)||`` and the prior's
        ``log_prior`` ``ln p(x)`` per draw: scalar summaries to diagnose
        (:func:`densitydp.diagnose`).
        """
        word = self._check_word(word_id)
        generator = as_generator(rng)
        center = self.space._vectors64[word].copy()
        initial = center + self._noise(check_int(n_chains, "n_chains", minimum=1), generator)
        args = (center, self.epsilon, self.tilt, self.prior.numba_args())
        proposal: str | IndependenceProposal = "random_walk"
        if self.proposal == "independence":
            proposal = IndependenceProposal(
                _kernels.laplace_proposal_sample,
                _kernels.laplace_proposal_logdensity,
                (center, self.epsilon),
            )
        result = run_chains(
            _kernels.tilted_laplace_logdensity,
            initial,
            args=args,
            n_draws=n_draws,
            n_warmup=0,
            proposal=proposal,
            step_size=self.step_size,
            rng=generator,
            progress=progress,
        )
        flat = result.draws.reshape(-1, self.space.dim)
        extras = {
            "radius": np.linalg.norm(result.draws - center, axis=2),
            "log_prior": self.prior.log_density(flat).reshape(result.n_chains, result.n_draws),
        }
        return ChainResult(
            draws=result.draws,
            logdensity=result.logdensity,
            accepted=result.accepted,
            step_size=result.step_size,
            proposal=result.proposal,
            n_warmup=0,
            seed=result.seed,
            extras=extras,
        )


class PriorWeightedExponential(ExponentialMechanism):
    """Exponential mechanism with a public prior on the outputs:
    ``P(w' | w) ~ exp(-epsilon d(w, w') / 2) pi(w')^tilt``.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter, > 0.
    prior : KDEPrior
        Public density; ``pi(w')`` is its leave-one-out density at ``phi(w')``
        (:meth:`KDEPrior.local_density`) when it was fitted on this space, its density
        (:meth:`KDEPrior.log_density`) otherwise. Computed once, at construction.
    tilt : float
        Exponent ``lambda >= 0``; 0 gives :class:`ExponentialMechanism` exactly.

    Notes
    -----
    *Guarantee.* ``epsilon * d``-metric DP for any public prior: the prior factor is the same
    for both inputs, so ``P(y | w) / P(y | w') <= exp(epsilon d(w, w') / 2) Z_w' / Z_w
    <= exp(epsilon d(w, w'))``. Exact: sampled by inverse CDF over float64 full distance rows
    (one BLAS row of the vocabulary per distinct input word).

    References
    ----------
    {flairs}

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=200, dim=3, n_clusters=3, rng=0)
    >>> mechanism = dd.PriorWeightedExponential(space, 5.0, prior=dd.KDEPrior.fit(space))
    >>> ids, probabilities = mechanism.output_distribution(0)
    >>> round(float(probabilities.max()), 4)
    0.0169
    """

    exact = True

    def __init__(
        self, space: EmbeddingSpace, epsilon: float, prior: KDEPrior, tilt: float = 1.0
    ) -> None:
        self.prior = _check_prior(prior, space)
        self.tilt = _check_tilt(tilt)
        if self.tilt == 0.0:
            log_prior = np.zeros(len(space))
        elif prior.space is space:
            log_prior = prior.local_density(np.arange(len(space)))
        else:
            log_prior = prior.log_density(space._vectors64)
        log_prior.flags.writeable = False
        self.log_prior = log_prior
        super().__init__(space, epsilon)

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "prior": self.prior, "tilt": self.tilt}

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            "public prior on the outputs (fitted on public embeddings only); exact sampling over "
            f"the whole vocabulary; {IDEAL_ARITHMETIC}",
        )

    def _log_probabilities(self, word_id: int) -> np.ndarray:
        return log_softmax(-0.5 * self.epsilon * self._distances(word_id) + self._log_weights())

    def _log_weights(self) -> np.ndarray:
        return self.tilt * self.log_prior

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        if self.tilt == 0.0:
            return super()._sample(word_ids, generator)
        words, _, token_order, starts = group_tokens(word_ids)
        out = np.empty(len(word_ids), dtype=np.int64)
        u_choice = generator.random(len(word_ids))
        u_fallback = np.zeros(len(word_ids))
        # exp(-eps d / 2) pi^tilt = exp(-eps d' / 2) with d' = d - (2 tilt / eps) ln pi,
        # shifted per row so that the largest weight is 1 (same law)
        shift = (2.0 / self.epsilon) * self._log_weights()
        for first in range(0, len(words), self._block_rows()):
            slots = np.arange(first, min(first + self._block_rows(), len(words)))
            pseudo = self._distance_rows(words[slots]) - shift
            pseudo -= pseudo.min(axis=1, keepdims=True)
            _kernels.sample_from_distance_rows(
                pseudo,
                _restart(starts, slots),
                token_order,
                u_choice,
                u_fallback,
                0.5 * self.epsilon,
                np.inf,
                out,
            )
        return out


class DistanceTruncatedLaplace(MultivariateLaplace):
    """Multivariate Laplace noise with its radius capped at ``radius``, decoded to the exact
    nearest word.

    ``z = min(r, radius) u`` with ``r ~ Gamma(dim, 1 / epsilon)`` and ``u`` uniform on the
    sphere; the same draws as :class:`MultivariateLaplace`, so ``radius = inf`` gives exactly
    its outputs for a seed.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter of the uncapped noise, > 0.
    radius : float
        Cap on the noise radius, > 0 (``inf``: no cap).

    Notes
    -----
    *Guarantee.* Capping changes the Laplace mechanism only when ``r >= radius``, an event of
    probability ``q = P(Gamma(dim, 1/epsilon) >= radius)`` (``delta`` of :meth:`privacy_bound`).
    So for every pair and set of outputs ``S``,
    ``P[M(w) in S] <= exp(epsilon d) P[M(w') in S] + (1 + exp(epsilon d)) q``.
    No pure metric bound holds in general when ``q > 0``: a word reachable within ``radius`` of
    ``w`` may be unreachable from ``w'``. In sparse regions a small cap can mean no change at all.
    A :class:`PrivacyWarning` is issued when ``q > 1e-6``.

    References
    ----------
    {flairs}

    Examples
    --------
    >>> import warnings
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=200, dim=3, n_clusters=3, rng=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", dd.PrivacyWarning)
    ...     capped = dd.DistanceTruncatedLaplace(space, epsilon=5.0, radius=2.0)
    >>> round(capped.privacy_bound().delta, 4)  # P(Gamma(3, 1/5) >= 2)
    0.0028
    """

    def __init__(
        self, space: EmbeddingSpace, epsilon: float, radius: float, *, table_k: int | None = None
    ) -> None:
        if isinstance(radius, (int, float)) and radius == math.inf:
            self.radius = math.inf
        else:
            self.radius = check_number(radius, "radius", minimum=0.0)
        super().__init__(space, epsilon, table_k=table_k)
        if self.tail_mass > 1e-6:
            warnings.warn(
                f"DistanceTruncatedLaplace: the cap radius={self.radius:g} cuts the Laplace "
                f"noise with probability {self.tail_mass:.3g}; the guarantee is only "
                f"epsilon * d plus delta = (1 + e^(epsilon d)) * {self.tail_mass:.3g} per pair.",
                PrivacyWarning,
                stacklevel=2,
            )

    @property
    def tail_mass(self) -> float:
        """``q = P(Gamma(dim, 1 / epsilon) >= radius)``: how often the cap changes the noise."""
        return float(gammaincc(self.space.dim, self.epsilon * self.radius))

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "radius": self.radius, "table_k": self.table_k}

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            self.tail_mass,
            f"delta is the capped tail mass q = P(r >= {self.radius:g}); per pair the additive "
            "term is (1 + e^(epsilon d)) q; exact nearest-word decoding; " + IDEAL_ARITHMETIC,
        )

    def privacy_delta_bound(self, word_id: Any, other_id: Any) -> Any:
        """``(1 + exp(epsilon d(w, w'))) q``: the pair's additive term (see the class notes)."""
        with np.errstate(over="ignore"):
            return (1.0 + np.exp(self.privacy_loss_bound(word_id, other_id))) * self.tail_mass

    def _noise(self, n_samples: int, generator: np.random.Generator) -> np.ndarray:
        noise = super()._noise(n_samples, generator)
        if math.isfinite(self.radius):
            norms = np.linalg.norm(noise, axis=1, keepdims=True)
            noise *= np.minimum(1.0, self.radius / norms)
        return noise


for _class in (DensityAwareLaplace, PriorWeightedExponential, DistanceTruncatedLaplace):
    _class.__doc__ = (_class.__doc__ or "").replace("{flairs}", _FLAIRS)
