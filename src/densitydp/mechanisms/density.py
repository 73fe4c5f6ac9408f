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
from scipy.special import gammaincc, log_softmax, logsumexp
from tqdm.auto import tqdm

from .._rng import RNGLike, as_generator, spawn
from .._validation import (
    check_choice,
    check_int,
    check_number,
    check_open_unit,
    check_word_ids,
)
from ..embeddings import EmbeddingSpace
from ..kde import KDEPrior
from ..mcmc import ChainResult, IndependenceProposal, run_chains
from . import _kernels
from .base import IDEAL_ARITHMETIC, PrivacyBound, PrivacyWarning, group_tokens
from .exponential import ExponentialMechanism, _restart
from .laplace import MultivariateLaplace, check_decodable_epsilon
from .tilted import LogNormalizerTable, log_laplace_mass, stack_tables

__all__ = ["DensityAwareLaplace", "DistanceTruncatedLaplace", "PriorWeightedExponential"]

#: Tokens per task of the density-aware sampler (each task draws from its own spawned generator,
#: so results do not depend on the number of threads).
TOKENS_PER_TASK = 64

#: Tokens of one word per task of the exact samplers (each task makes one pass over the prior).
WORD_CHUNK = 16_384

#: Envelopes the exact rejection sampler chooses from for 0 < tilt < 1 (``rho`` on a geometric
#: grid from ``tilt`` to 1; see ``_kernels.tilted_rejection_task``).
ENVELOPES = 6

#: The samplers of :class:`DensityAwareLaplace`.
SAMPLERS = ("exact", "budget", "certified", "chain")

#: Defaults of the budget and certified samplers.
DEFAULT_MAX_PROPOSALS = 40
DEFAULT_DELTA = 1e-9
DEFAULT_MAX_STEPS = 100_000
# Largest ``epsilon * bandwidth`` the exact samplers support: beyond ~1e7 the mixing law's
# envelope and its quadrature lose their digits (the measured acceptance falls from 0.99999 at
# 1e5 to 1e-56 at 1.4e9); there the noise is a millionth of the kernel width, so the prior
# factor is constant across it and plain Laplace noise (tilt=0) is the same law.
MAX_EPSILON_BANDWIDTH = 1e6

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


def _max_distance(space: EmbeddingSpace, prior: KDEPrior) -> float:
    """An upper bound on ``||mu_v - phi(w)||`` over the prior's points and the space's words
    (through their common centroid), with a relative margin for rounding."""
    centroid = space._vectors64.mean(axis=0)
    words = float(np.sqrt(((space._vectors64 - centroid) ** 2).sum(axis=1)).max())
    references = np.asarray(prior.references, dtype=np.float64)
    points = float(np.sqrt(((references - centroid) ** 2).sum(axis=1)).max())
    return (words + points) * (1.0 + 1e-9) + 1e-12


def _steps_for(log_weight_bound: np.ndarray, delta: float) -> np.ndarray:
    """``ceil(ln delta / ln(1 - 1 / W*))`` (at least 1) for each ``ln W*``."""
    with np.errstate(divide="ignore"):  # W* = 1: rate inf, one step (the proposal is exact)
        rate = -np.log1p(-np.exp(-np.asarray(log_weight_bound, dtype=np.float64)))
        steps = np.ceil(np.where(rate > 0, math.log(1.0 / delta) / rate, np.inf))
    return np.maximum(steps, 1).astype(np.float64)


class DensityAwareLaplace(MultivariateLaplace):
    """Laplace noise tilted towards dense regions by a KDE prior, decoded to the exact nearest word.

    For each token of word ``w`` a point ``x`` is drawn from
    ``pi_w(x) ~ exp(-epsilon ||x - phi(w)||) p(x)^tilt`` and decoded to the exact nearest word
    (as in :class:`MultivariateLaplace`). How ``x`` is drawn is the ``sampler``:

    * ``"exact"`` (default for ``0 <= tilt <= 1``): exact draws. ``tilt = 1``: the target is a
      finite mixture over the prior's kernels, each a continuous mixture of Gaussians (see
      :mod:`densitydp.mechanisms.tilted`); one pass over the prior per distinct word, then per
      token a component, a mixing weight by rejection and ``dim`` normals, no prior evaluation.
      ``0 < tilt < 1``: rejection from the cheapest of a family of envelopes that dominate
      ``p^tilt`` everywhere (subadditivity of ``y^rho`` turns ``p^rho`` into a prior of
      bandwidth ``h / sqrt(rho)``, Young's inequality mixes its exact tilt-1 law with the
      Laplace noise; ``rho`` on a grid from ``tilt`` to 1), one prior evaluation per proposal.
      ``tilt = 0`` is :class:`MultivariateLaplace`.
    * ``"budget"`` (``tilt = 1``): the exact sampler with exactly ``max_proposals`` proposals of
      the mixing weight per token, all drawn and tested whatever happens (no data-dependent
      number of rejections); when none is accepted the mode of the mixing law is used, which
      happens with probability at most ``delta = (1 - a_min)^max_proposals`` (``a_min`` the
      smallest acceptance of one proposal over every distance the prior can present).
    * ``"certified"`` (default for ``tilt > 1``): an independence Metropolis–Hastings chain
      whose proposal mixes the exact tilt-1 law and the Laplace noise, started at a proposal
      draw, run for the number of steps that makes its total variation to ``pi_w`` at most
      ``delta`` for this word: ``TV <= (1 - 1 / W*)^steps`` with ``W*`` a rigorous bound on the
      importance weight ``pi_w / q`` (Mengersen and Tweedie 1996). Words needing more than
      ``max_steps`` steps are refused with the number they would need.
    * ``"chain"``: the plain ``n_steps``-step chain of earlier versions (independence or random
      walk). **Uncertified**: its law is unknown; the bound says so (``delta = 1``) and a
      :class:`PrivacyWarning` is issued.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter of the Laplace factor, > 0.
    prior : KDEPrior
        A density fitted on **public** embeddings only, over the space's dimension. The exact,
        budget and certified samplers need one global bandwidth and no projection (the default
        of :meth:`KDEPrior.fit`).
    tilt : float
        Exponent ``lambda >= 0`` of the prior; 0 gives the multivariate Laplace mechanism.
    sampler : {"exact", "budget", "certified", "chain"}, optional
        See above; default ``"exact"`` for ``tilt <= 1``, ``"certified"`` for ``tilt > 1``, and
        ``"chain"`` when ``n_steps`` is given.
    max_proposals : int
        Proposals per token of the ``"budget"`` sampler (default 40).
    delta : float
        Total variation allowed to the ``"certified"`` chain, in (0, 1) (default 1e-9).
    max_steps : int
        Most steps per token the ``"certified"`` chain may take (default 100,000).
    n_steps : int, optional
        Steps of the uncertified ``"chain"`` sampler (default 50).
    proposal : {"independence", "random_walk"}
        Proposal of the uncertified ``"chain"`` sampler.
    step_size : float, optional
        Random-walk step of the ``"chain"`` sampler; default ``2.38 / epsilon``.
    table_k : int
        Width of the neighbour rows used for exact decoding (as in :class:`MultivariateLaplace`).
    progress : bool, optional
        Progress bar (tqdm) while sampling; None shows it for long calls. Display only.

    Notes
    -----
    *Guarantee.* With a public prior and exact sampling of ``pi_w``, ``2 epsilon * d``-metric
    DP for every tilt: ``pi_w(x) / pi_w'(x) <= exp(epsilon d(w, w')) Z_w' / Z_w`` and the
    normalisers cost the second ``epsilon d``. ``"exact"``: delta 0, up to floating point and
    the tabulated component masses (``ln Z`` interpolated with a measured error below 1e-10
    nats, which moves a loss by at most twice that). ``"budget"`` and ``"certified"``: a law
    within total variation ``eta`` of ``pi_w`` adds ``(1 + exp(epsilon')) eta`` per pair
    (:meth:`privacy_delta_bound`), ``eta`` being the reported ``delta``. ``"chain"``: no
    guarantee can be stated.

    *Range and termination.* The exact samplers need ``epsilon * h <= 1e6`` (``h`` the prior's
    bandwidth, divided by ``sqrt(tilt)`` below tilt 1); larger products are refused (the
    mixing law's arithmetic loses its digits there, and the noise is so much narrower than the
    kernels that ``tilt=0`` is the same law). Their rejection loops end with probability 1
    and a number of proposals that is geometric with a mean bounded over the range: at tilt 1
    the acceptance of one proposal is at least :meth:`min_acceptance` (0.84 to 0.99999 from
    ``epsilon * h = 1e-4`` to ``1e6`` on a synthetic space; 1.16 proposals per token at most on
    average); below tilt 1 the envelope's mass ratio (about 6 proposals at tilt 0.5, 20 at
    tilt 0.1, 1 from ``epsilon * h = 100`` up). For a bounded number of proposals use
    ``"budget"`` (tilt 1) or ``"certified"``.

    *Timing.* The exact samplers' running time depends on the word (its component masses, the
    number of rejections, the decoding); the ``"budget"`` sampler removes the data-dependent
    number of proposals of the mixing weight, not the rest. Protect against timing side
    channels outside the library if an adversary can time the perturbation.

    The formulation (tilted target, decoding) is densitydp's reading of the paper's proposal,
    which publishes no formulas.

    References
    ----------
    {flairs}

    K. L. Mengersen, R. L. Tweedie. "Rates of convergence of the Hastings and Metropolis
    algorithms". Annals of Statistics 24(1), 1996 (uniform ergodicity of the independence
    sampler).

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=200, dim=3, n_clusters=3, rng=0)
    >>> prior = dd.KDEPrior.fit(space)
    >>> mechanism = dd.DensityAwareLaplace(space, epsilon=5.0, prior=prior, tilt=1.0)
    >>> mechanism.sample([0, 0, 1], rng=0).shape
    (3,)
    >>> mechanism.privacy_bound().epsilon  # 2 epsilon, exact sampling
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
        sampler: str | None = None,
        max_proposals: int | None = None,
        delta: float | None = None,
        max_steps: int | None = None,
        n_steps: int | None = None,
        proposal: str = "independence",
        step_size: float | None = None,
        table_k: int | None = None,
        progress: bool | None = None,
    ) -> None:
        # own parameters first: the parent's __init__ validates the rest and freezes
        self.prior = _check_prior(prior, space)
        self.tilt = _check_tilt(tilt)
        epsilon = check_decodable_epsilon(space, epsilon)
        if sampler is None:
            sampler = "chain" if n_steps is not None else "certified" if self.tilt > 1 else "exact"
        self.sampler = check_choice(sampler, "sampler", SAMPLERS)
        if self.sampler == "exact" and self.tilt > 1.0:
            raise ValueError(
                f"`tilt` must be <= 1 for sampler='exact' (no exact sampler is known for "
                f"p^tilt with tilt > 1); got tilt={tilt!r}: use sampler='certified'."
            )
        if self.sampler == "budget" and self.tilt not in (0.0, 1.0):
            raise ValueError(
                f"sampler='budget' needs `tilt` 0 or 1; got tilt={tilt!r}: use sampler='exact' "
                "(exact, variable time) or sampler='certified'."
            )
        for name, value, owner in (
            ("max_proposals", max_proposals, "budget"),
            ("delta", delta, "certified"),
            ("max_steps", max_steps, "certified"),
            ("n_steps", n_steps, "chain"),
        ):
            if value is not None and self.sampler != owner:
                raise ValueError(
                    f"`{name}` applies to sampler={owner!r} only; got {name}={value!r} with "
                    f"sampler={self.sampler!r}."
                )
        self.max_proposals = check_int(
            DEFAULT_MAX_PROPOSALS if max_proposals is None else max_proposals,
            "max_proposals",
            minimum=1,
        )
        self.delta = check_open_unit(DEFAULT_DELTA if delta is None else delta, "delta")
        self.max_steps = check_int(
            DEFAULT_MAX_STEPS if max_steps is None else max_steps, "max_steps", minimum=1
        )
        self.n_steps = check_int(50 if n_steps is None else n_steps, "n_steps", minimum=1)
        self.proposal = check_choice(proposal, "proposal", ("independence", "random_walk"))
        self.step_size = check_number(
            2.38 / epsilon if step_size is None else step_size, "step_size", minimum=0.0
        )
        self.progress = progress
        self._tables: dict[float, LogNormalizerTable] = {}
        self._memo: dict[str, Any] = {}
        exact_family = self.sampler != "chain" and self.tilt != 0.0
        if exact_family and (self.prior.adaptive or self.prior.projection is not None):
            raise ValueError(
                f"sampler={self.sampler!r} needs a prior with one global bandwidth and no "
                "projection (KDEPrior.fit without adaptive= or n_components=); use "
                "sampler='chain' (uncertified) for this prior."
            )
        if self.sampler == "chain" and self.tilt != 0.0:
            warnings.warn(
                f"DensityAwareLaplace(sampler='chain'): a {self.n_steps}-step chain does not "
                "sample the tilted target and no guarantee can be stated for it (delta = 1); "
                "use the default exact sampler.",
                PrivacyWarning,
                stacklevel=2,
            )
        if exact_family:
            widest = self.prior.bandwidth / math.sqrt(min(self.tilt, 1.0))
            if epsilon * widest > MAX_EPSILON_BANDWIDTH:
                raise ValueError(
                    f"`epsilon` * prior bandwidth{'' if self.tilt >= 1 else ' / sqrt(tilt)'} "
                    f"must be <= {MAX_EPSILON_BANDWIDTH:g} for sampler={self.sampler!r} (the "
                    f"mixing law's arithmetic loses its digits beyond); got epsilon={epsilon!r}, "
                    f"bandwidth {self.prior.bandwidth:.4g} (product {epsilon * widest:.4g}). At "
                    "this epsilon the noise is far narrower than the prior's kernels: use "
                    "tilt=0 (plain Laplace noise, the same law up to the prior's variation "
                    "across the noise)."
                )
        super().__init__(space, epsilon, table_k=table_k)
        if exact_family:
            self._table(self.prior.bandwidth)  # built now: its measured error is in the bound

    def _parameters(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "epsilon": self.epsilon,
            "prior": self.prior,
            "tilt": self.tilt,
            "sampler": self.sampler,
        }
        if self.sampler == "budget":
            shown["max_proposals"] = self.max_proposals
        elif self.sampler == "certified":
            shown.update(delta=self.delta, max_steps=self.max_steps)
        elif self.sampler == "chain":
            shown.update(n_steps=self.n_steps, proposal=self.proposal, step_size=self.step_size)
        shown["table_k"] = self.table_k
        return shown

    def _envelopes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The ``ln Z`` tables of the rejection sampler's envelopes (0 < tilt < 1): ``rho`` on a
        geometric grid of :data:`ENVELOPES` values from ``tilt`` to 1, bandwidth
        ``h / sqrt(rho)``; built on first use."""
        if "envelopes" not in self._memo:
            rhos = self.tilt ** np.linspace(1.0, 0.0, ENVELOPES)  # tilt ... 1 exactly
            tables = [self._table(self.prior.bandwidth / math.sqrt(rho)) for rho in rhos]
            self._memo["envelopes"] = stack_tables(rhos, tables)
        envelopes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = self._memo["envelopes"]
        return envelopes

    def _table(self, bandwidth: float) -> LogNormalizerTable:
        """The ``ln Z`` table of ``bandwidth`` at this epsilon, built on first use (the
        mechanism is immutable; the tables are a cache of a deterministic computation)."""
        if bandwidth not in self._tables:
            self._tables[bandwidth] = LogNormalizerTable(
                self.epsilon, bandwidth, self.space.dim, _max_distance(self.space, self.prior)
            )
        return self._tables[bandwidth]

    # -- guarantees -----------------------------------------------------------------------------

    @property
    def table(self) -> LogNormalizerTable | None:
        """The ``ln Z`` table of the prior's bandwidth (None for the ``"chain"`` sampler)."""
        return self._tables.get(self.prior.bandwidth)

    @property
    def budget_failure(self) -> float:
        """``(1 - a_min)^max_proposals``: the largest probability that the ``"budget"``
        sampler accepts none of its proposals for a token (0 for the other samplers)."""
        if self.sampler != "budget" or self.tilt == 0.0:
            return 0.0
        with np.errstate(divide="ignore"):  # acceptance 1: no failure
            return float(np.exp(self.max_proposals * np.log1p(-self.min_acceptance())))

    def min_acceptance(self) -> float:
        """Smallest acceptance probability of one proposal of the mixing-weight sampler over
        every kernel distance the table covers: the minimum over the table's grid, refined on
        401 points between the grid neighbours of the grid minimum."""
        table = self.table
        if table is None:
            raise ValueError("min_acceptance needs sampler 'exact' or 'budget' with tilt > 0.")
        if "min_acceptance" not in self._memo:
            deltas = np.arange(len(table.values)) * table.spacing
            curve = self._acceptance_curve(deltas)
            j = int(np.argmin(curve))
            # refine between the grid points around the grid minimum
            low, high = deltas[max(j - 1, 0)], deltas[min(j + 1, len(deltas) - 1)]
            fine = np.linspace(low, high, 401)
            smallest = min(float(curve[j]), float(self._acceptance_curve(fine).min()))
            self._memo["min_acceptance"] = min(1.0, max(0.0, smallest))
        return float(self._memo["min_acceptance"])

    def _acceptance_curve(self, deltas: np.ndarray) -> np.ndarray:
        h = self.prior.bandwidth
        b = 0.5 * (self.epsilon * h) ** 2
        k = 0.5 * (self.space.dim - 1)
        out = np.empty(len(deltas))
        _kernels.mixing_acceptance_many(0.5 * (deltas / h) ** 2, b, k, out)
        return out

    def privacy_bound(self) -> PrivacyBound:
        if self.tilt == 0.0:
            return PrivacyBound(
                "metric",
                self.epsilon,
                0.0,
                "tilt = 0: exactly the multivariate Laplace law, exact nearest-word decoding; "
                + IDEAL_ARITHMETIC,
            )
        public = "public prior (fitted on public embeddings only); "
        pair = "per pair the additive term is (1 + e^(epsilon')) delta; "
        if self.sampler == "exact":
            table = self.table
            assert table is not None
            delta = 0.0
            how = (
                public + "exact sampling of the tilted target (component masses ln Z "
                f"interpolated with measured error {table.max_error:.1g} nats); exact "
                "nearest-word decoding; running time depends on the word; "
            )
        elif self.sampler == "budget":
            delta = self.budget_failure
            how = (
                public + f"{self.max_proposals} proposals per token; delta is the largest "
                "probability that none is accepted (total variation to the exact law); " + pair
            )
        elif self.sampler == "certified":
            delta = self.delta
            how = (
                public + "independence Metropolis-Hastings run per word for the steps that "
                "bound its total variation to the target by delta (rigorous importance-weight "
                "bound W*: KDE supremum bound and a lower bound on the normaliser); " + pair
            )
        else:
            delta = 1.0
            how = (
                f"UNCERTIFIED: a {self.n_steps}-step {self.proposal} chain only approximates "
                "the tilted target and its distance to it is unknown, so no guarantee holds "
                "(delta = 1); 2 epsilon holds only for exact sampling; "
            )
        return PrivacyBound("metric", 2.0 * self.epsilon, delta, how + IDEAL_ARITHMETIC)

    def privacy_delta_bound(self, word_id: Any, other_id: Any) -> Any:
        """``(1 + exp(loss)) * eta``, ``eta`` the total variation to the exact law
        (``privacy_bound().delta``; 0 for the exact sampler, 1 for the uncertified chain)."""
        eta = self.privacy_bound().delta
        if eta == 0.0:
            return super().privacy_delta_bound(word_id, other_id)
        with np.errstate(over="ignore"):
            return np.minimum(1.0, (1.0 + np.exp(self.privacy_loss_bound(word_id, other_id))) * eta)

    # -- the certified chain --------------------------------------------------------------------

    def certified_steps(self, word_ids: Any) -> np.ndarray:
        """Steps the ``"certified"`` chain needs for each word so that its total variation to
        ``pi_w`` is at most ``delta``: ``ceil(ln delta / ln(1 - 1 / W*_w))`` (float; ``inf``
        where no finite bound exists).

        ``W*_w`` bounds ``pi_w / q_w`` with ``q_w`` the proposal ``alpha pi^(1)_w + (1 - alpha)
        L_w`` (``alpha = min(tilt, 1)``; ``pi^(1)`` the exact tilt-1 law, ``L`` the Laplace
        noise): ``pi_w / q_w = p^tilt / (Z_tilt (alpha p / Z_1 + (1 - alpha) / L))`` is bounded
        with the rigorous supremum bound ``P*`` of :meth:`KDEPrior.log_sup_bound` and a lower
        bound on ``Z_tilt`` (the larger of: convexity of ``ln Z_tilt`` in ``tilt`` at 0 with a
        lower bound on ``E_L[ln p]`` by Jensen over the ``m`` nearest kernels; Jensen's
        ``Z_1^tilt L^(1-tilt)`` for ``tilt > 1``; ``Z_1 P*^(tilt - 1)`` for ``tilt < 1``).
        """
        ids = check_word_ids(word_ids, len(self.space)).reshape(-1)
        log_w = np.array([self._log_weight_bound(int(w))[0] for w in ids])
        return _steps_for(log_w, self.delta)

    def certified_distance(self, word_id: Any, n_steps: int, proposal: str = "mixture") -> float:
        """Rigorous bound on the total variation between ``pi_w`` and an independence chain
        after ``n_steps`` steps: ``(1 - 1 / W*)^n_steps`` (Mengersen and Tweedie 1996).

        ``proposal="mixture"``: the certified sampler's proposal (see :meth:`certified_steps`);
        ``"laplace"``: the plain Laplace noise, the independence proposal of the uncertified
        ``"chain"`` sampler and of :meth:`chains`.
        """
        word = self._check_word(word_id)
        n_steps = check_int(n_steps, "n_steps", minimum=0)
        alpha = (
            None if check_choice(proposal, "proposal", ("mixture", "laplace")) == "mixture" else 0.0
        )
        log_w = self._log_weight_bound(word, alpha)[0]
        return float(math.exp(n_steps * math.log1p(-math.exp(-log_w)))) if log_w > 0 else 0.0

    def _log_weight_bound(
        self, word: int, alpha: float | None = None
    ) -> tuple[float, float, float]:
        """``(ln W*, ln Z_1, alpha)`` for one word and the proposal
        ``alpha pi^(1) + (1 - alpha) L`` (default ``alpha = min(tilt, 1)``)."""
        if self.prior.adaptive or self.prior.projection is not None:
            raise ValueError(
                "a certified bound needs a prior with one global bandwidth and no projection "
                "(KDEPrior.fit without adaptive= or n_components=)."
            )
        table = self._table(self.prior.bandwidth)
        h = self.prior.bandwidth
        dim = self.space.dim
        center = self.space._vectors64[word]
        n_points = self.prior.n_points
        log_weights = np.empty(n_points)
        squared = np.empty(n_points)
        _kernels.component_log_weights(
            center, self.prior._references_t, *table.numba_args(), log_weights, squared
        )
        log_z1 = float(logsumexp(log_weights)) - math.log(n_points)
        log_l = log_laplace_mass(self.epsilon, dim)
        log_sup = self.prior.log_sup_bound()
        tilt = self.tilt
        if alpha is None:
            alpha = min(tilt, 1.0)
        log_kernel = 0.5 * dim * math.log(2.0 * math.pi * h * h)
        # E_L[ln p] >= ln(m/n) - ln kernel - (mean of the m smallest delta^2 + E||z||^2) / 2h^2
        ordered = np.sort(squared)
        m = np.arange(1, n_points + 1)
        noise = dim * (dim + 1.0) / self.epsilon**2
        elbo = np.log(m / n_points) - log_kernel - (np.cumsum(ordered) / m + noise) / (2 * h * h)
        lower = log_l + tilt * float(elbo.max())
        if tilt >= 1.0:  # Jensen; at tilt 1 it is Z_1 itself
            lower = max(lower, tilt * log_z1 + (1.0 - tilt) * log_l)
        else:
            lower = max(lower, log_z1 + (tilt - 1.0) * log_sup)
        # sup over 0 < p <= P* of tilt ln p - ln(alpha p / Z_1 + (1 - alpha) / L): increasing
        # in p unless 0 < alpha < 1 and tilt < 1, where it peaks at the optimum below
        log_p = log_sup
        if 0.0 < alpha < 1.0 and tilt < 1.0:
            optimum = math.log(tilt * (1 - alpha) / ((1 - tilt) * alpha)) + log_z1 - log_l
            log_p = min(log_sup, optimum)
        first = math.log(alpha) + log_p - log_z1 if alpha > 0.0 else -math.inf
        second = math.log1p(-alpha) - log_l if alpha < 1.0 else -math.inf
        log_w = tilt * log_p - float(np.logaddexp(first, second)) - lower
        return max(log_w, 0.0), log_z1, alpha

    # -- sampling -------------------------------------------------------------------------------

    def draw_points(
        self, word_ids: Any, rng: RNGLike = None, *, return_proposals: bool = False
    ) -> Any:
        """The noisy vectors ``x`` (before decoding), shape ``(n, dim)``, one per token.

        With ``return_proposals=True`` also the proposals each token used (mixing-weight
        proposals at tilt 1, envelope proposals at 0 < tilt < 1, chain steps otherwise).
        """
        ids = check_word_ids(word_ids, len(self.space)).reshape(-1)
        points, proposals = self._draw(ids, as_generator(rng))
        return (points, proposals) if return_proposals else points

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        points, _ = self._draw(word_ids, generator)
        centers = self.space._vectors64[word_ids]
        radii = np.linalg.norm(points - centers, axis=1)
        return self.decode(word_ids, points, radii)

    def _draw(
        self, word_ids: np.ndarray, generator: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.tilt == 0.0:
            noise = self._noise(len(word_ids), generator)
            return self.space._vectors64[word_ids] + noise, np.ones(len(word_ids), np.int64)
        if self.sampler == "chain":
            return self._run(word_ids, generator)
        steps: dict[int, int] = {}
        extra: dict[int, tuple[float, float]] = {}
        words, _, token_order, starts = group_tokens(word_ids)
        if self.sampler == "certified":
            for w in words:
                log_w, log_z1, alpha = self._log_weight_bound(int(w))
                need = float(_steps_for(np.array([log_w]), self.delta)[0])
                if need > self.max_steps:
                    raise ValueError(
                        f"the certified chain for word {self.space.words([int(w)])[0]!r} needs "
                        f"{need:,.0f} steps for delta={self.delta:g} (importance-weight bound "
                        f"W* = e^{log_w:.1f}), more than `max_steps`={self.max_steps:,}; raise "
                        "max_steps (--max-steps) or delta (--delta), or lower the tilt."
                    )
                steps[int(w)] = int(need)
                extra[int(w)] = (log_z1, alpha)
        tasks = []
        for t, w in enumerate(words):
            for first in range(starts[t], starts[t + 1], WORD_CHUNK):
                tasks.append((int(w), token_order[first : min(first + WORD_CHUNK, starts[t + 1])]))
        children = spawn(generator, len(tasks))
        points = np.empty((len(word_ids), self.space.dim))
        proposals = np.empty(len(word_ids), dtype=np.int64)
        h = self.prior.bandwidth
        references = self.prior.references
        references_t = self.prior._references_t
        table = self.table
        assert table is not None
        log_l = log_laplace_mass(self.epsilon, self.space.dim)
        envelopes = self._envelopes() if self.sampler == "exact" and self.tilt < 1.0 else None

        def task(index: int) -> int:
            word, tokens = tasks[index]
            center = self.space._vectors64[word].copy()
            chunk = np.empty((len(tokens), self.space.dim))
            counts = np.empty(len(tokens), dtype=np.int64)
            failed = np.empty(len(tokens), dtype=np.bool_)
            rng = children[index]
            if self.sampler == "certified":
                log_z1, alpha = extra[word]
                _kernels.certified_chain_task(
                    rng,
                    center,
                    references,
                    references_t,
                    h,
                    self.epsilon,
                    self.tilt,
                    alpha,
                    *table.numba_args(),
                    log_z1,
                    log_l,
                    steps[word],
                    chunk,
                    counts,
                )
            elif self.tilt == 1.0:
                budget = self.max_proposals if self.sampler == "budget" else 0
                _kernels.tilt_one_task(
                    rng,
                    center,
                    references,
                    references_t,
                    h,
                    self.epsilon,
                    *table.numba_args(),
                    budget,
                    chunk,
                    counts,
                    failed,
                )
            else:
                assert envelopes is not None
                _kernels.tilted_rejection_task(
                    rng,
                    center,
                    references,
                    references_t,
                    h,
                    self.epsilon,
                    self.tilt,
                    *envelopes,
                    log_l,
                    chunk,
                    counts,
                )
            points[tokens] = chunk
            proposals[tokens] = counts
            return len(tokens)

        per_token = self.prior.n_points * self.prior.dim
        work = len(words) * per_token * len(self._tables)
        if self.sampler == "certified":
            tokens_per_word = np.diff(starts)
            work += per_token * sum(
                steps[int(w)] * int(c) for w, c in zip(words, tokens_per_word, strict=True)
            )
        elif self.tilt != 1.0:
            work += len(word_ids) * per_token * 2 + len(words) * per_token * ENVELOPES
        self._map(task, len(tasks), len(word_ids), work)
        return points, proposals

    def _map(self, task: Any, n_tasks: int, n_tokens: int, work: float) -> None:
        show = self.progress if self.progress is not None else work > PROGRESS_WORK
        with (
            tqdm(
                total=n_tokens, desc="density-aware Laplace", unit="token", disable=not show
            ) as bar,
            ThreadPoolExecutor(max_workers=numba.get_num_threads()) as pool,
        ):
            for done in pool.map(task, range(n_tasks)):
                bar.update(done)

    def _run(
        self, word_ids: np.ndarray, generator: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Final positions and accepted-move counts of the uncertified chain, one per token."""
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
        self._map(task, n_tasks, n_tokens, work)
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
        """The Markov chains behind one word, exactly as the uncertified ``"chain"`` sampler
        runs them (start at an exact Laplace draw, the mechanism's ``proposal`` and
        ``step_size``, no adaptation), recorded for ``n_draws`` steps each: an audit and
        research tool (compare them with :meth:`draw_points`, the exact law, and with
        :meth:`certified_distance` for a rigorous bound on their total variation).

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
        with np.errstate(over="ignore"):  # an overflowing exponent is a weight of exactly 0
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
            with np.errstate(divide="ignore"):  # a norm underflowed to 0 needs no cap
                noise *= np.minimum(1.0, self.radius / norms)
        return noise


for _class in (DensityAwareLaplace, PriorWeightedExponential, DistanceTruncatedLaplace):
    _class.__doc__ = (_class.__doc__ or "").replace("{flairs}", _FLAIRS)
