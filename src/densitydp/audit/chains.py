"""Metropolis–Hastings chains checked against an exact sampler.

:class:`~densitydp.DensityAwareLaplace` samples its tilted target exactly (``sampler="exact"``),
so the law of the uncertified ``n_steps``-step chain (``sampler="chain"``) can be compared with
the truth: :func:`chain_accuracy` puts the chain's actual total variation to the exact law of
the decoded word, with a rigorous lower confidence bound, next to what R-hat and the effective
sample sizes say about the same chains. :func:`total_variation` is the two-sample comparison
behind it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from .._rng import RNGLike, as_generator, seed_entropy, spawn
from .._validation import check_int, check_open_unit
from ..diagnostics import summary
from ..mechanisms.base import PrivacyWarning
from ..mechanisms.density import DensityAwareLaplace
from .estimators import clopper_pearson_lower, clopper_pearson_upper

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TotalVariation", "chain_accuracy", "total_variation"]

#: Expected count below which a category is pooled in the chi-square homogeneity test.
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class TotalVariation:
    """Result of :func:`total_variation`.

    Attributes
    ----------
    estimate : float
        Plug-in ``(1/2) sum_y |P_hat(y) - Q_hat(y)|`` on all samples. Biased upwards when many
        outputs are rare: it is not 0 for two samples of the same law (compare it with the
        plug-in between two samples of the reference, as :func:`chain_accuracy` does).
    lower : float
        Lower confidence bound on ``TV(P, Q)`` at level ``1 - alpha`` (see
        :func:`total_variation`); 0 when nothing is shown.
    event_difference : float
        ``P_hat(A) - Q_hat(A)`` (or ``Q_hat(A) - P_hat(A)``, see ``event_favours``) of the
        chosen event on the evaluation halves: an unbiased estimate of a lower bound on ``TV``.
    event_size : int
        Outputs in the chosen event ``A`` (of those seen in the selection halves).
    event_unseen : bool
        Whether ``A`` also holds every output seen in neither selection half.
    event_favours : {"samples", "reference"}
        Which law the chosen event is more likely under.
    p_value : float
        Pearson chi-square test of homogeneity of the two samples (outputs with an expected
        count below 5 in either sample pooled into one category).
    alpha : float
    n_samples, n_reference : int
        Sizes of the two samples.
    """

    estimate: float
    lower: float
    event_difference: float
    event_size: int
    event_unseen: bool
    event_favours: str
    p_value: float
    alpha: float
    n_samples: int
    n_reference: int


def _positions(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``categories``; ``len(categories)`` when absent."""
    where = np.searchsorted(categories, values)
    clipped = np.minimum(where, max(len(categories) - 1, 0))
    found = (where < len(categories)) & (categories[clipped] == values)
    return np.where(found, where, len(categories))


def _frequencies(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per entry of the sorted ``categories`` (values outside ignored)."""
    counts = np.bincount(_positions(values, categories), minlength=len(categories) + 1)
    return counts[: len(categories)]


def _plug_in(samples: np.ndarray, reference: np.ndarray) -> float:
    categories = np.union1d(samples, reference)
    p = _frequencies(samples, categories) / len(samples)
    q = _frequencies(reference, categories) / len(reference)
    return 0.5 * float(np.abs(p - q).sum())


def _homogeneity(samples: np.ndarray, reference: np.ndarray) -> float:
    """Pearson chi-square p-value of the 2 x K table, rare outputs pooled (Fisher's exact test
    when that leaves a 2 x 2 table with a small expected count)."""
    categories = np.union1d(samples, reference)
    table = np.stack(
        [_frequencies(samples, categories), _frequencies(reference, categories)]
    ).astype(np.float64)
    shares = np.array([len(samples), len(reference)], dtype=np.float64)
    shares /= shares.sum()
    expected_min = table.sum(axis=0) * shares.min()
    keep = expected_min >= MIN_EXPECTED
    pooled = table[:, ~keep].sum(axis=1, keepdims=True)
    bins = np.concatenate([table[:, keep], pooled], axis=1)
    if pooled.sum() * shares.min() < MIN_EXPECTED and keep.sum() >= 2:
        # fold a small pooled category into the largest one
        largest = int(np.argmax(bins[:, :-1].sum(axis=0)))
        bins[:, largest] += bins[:, -1]
        bins = bins[:, :-1]
    bins = bins[:, bins.sum(axis=0) > 0]
    if bins.shape[1] < 2:
        return 1.0
    if bins.shape[1] == 2 and (bins.sum(axis=0) * shares.min()).min() < MIN_EXPECTED:
        # one frequent output and a few rare ones: Fisher's exact test of the 2 x 2 table
        return float(stats.fisher_exact(bins.astype(np.int64)).pvalue)
    return float(stats.chi2_contingency(bins, correction=False).pvalue)


def _best_event(
    larger: np.ndarray, smaller: np.ndarray, n_larger: int, n_smaller: int, z: float
) -> tuple[float, np.ndarray]:
    """The prefix of the outputs with ``larger > smaller`` (ordered by the difference) that
    maximises ``sum(larger - smaller) - z * standard error``: ``(score, positions)``."""
    difference = larger - smaller
    # adding an output where `smaller` is at least as large never increases the difference
    order = np.argsort(-difference, kind="stable")[: int((difference > 0).sum())]
    if len(order) == 0:
        return -math.inf, order
    cum_larger = np.clip(np.cumsum(larger[order]), 0.0, 1.0)
    cum_smaller = np.clip(np.cumsum(smaller[order]), 0.0, 1.0)
    spread = np.sqrt(
        cum_larger * (1.0 - cum_larger) / n_larger + cum_smaller * (1.0 - cum_smaller) / n_smaller
    )
    score = cum_larger - cum_smaller - z * spread
    best = int(np.argmax(score))
    return float(score[best]), order[: best + 1]


def total_variation(
    samples: Any, reference: Any, *, alpha: float = 0.05, rng: RNGLike = None
) -> TotalVariation:
    """Total variation between the laws of two samples of discrete outputs, with a lower
    confidence bound.

    Parameters
    ----------
    samples, reference : array_like of int
        Independent draws from ``P`` (e.g. a chain's decoded words) and from ``Q`` (e.g. the
        exact sampler's), each i.i.d.; sizes may differ.
    alpha : float
        One minus the confidence level of ``lower``, in (0, 1).
    rng : None, int or Generator
        Only used to split each sample at random into halves.

    Returns
    -------
    TotalVariation

    Notes
    -----
    ``TV(P, Q) = max_A |P(A) - Q(A)|`` over events ``A``, so any fixed event gives a lower
    bound. Each sample is split at random into a *selection* half and an *evaluation* half.
    On the selection halves the outputs are the ones seen there plus one category "seen in
    neither half" (its mass under each law estimated by Good–Turing: the draws seen once in
    their own half and never in the other). In each direction (events more likely under ``P``,
    or under ``Q``) the categories where that law looks larger are ordered by the difference,
    and ``A`` is the prefix, over both directions, that maximises the estimated difference
    minus ``z_(1 - alpha)`` binomial standard errors: large enough to matter, not padded with
    outputs seen once by chance. (Putting the unseen outputs into ``A`` matters when one law
    spreads over many rare outputs: the chain's rare words at a finite number of steps are
    rarely the same in two halves.) These choices only aim at a large bound: ``A`` depends on
    the selection halves only, whatever the rule, so on the
    evaluation halves its counts are binomial with the true ``P(A)`` and ``Q(A)``, and, for
    ``A`` more likely under ``P`` (symmetrically under ``Q``),

    ``lower = max(0, CP_lower(k_P, n_P; alpha / 2) - CP_upper(k_Q, n_Q; alpha / 2))``

    with one-sided Clopper–Pearson bounds holds with probability at least ``1 - alpha``
    (Bonferroni over the two bounds; exact, no asymptotics), whatever the number of outputs.
    This is the construction of the Monte Carlo privacy-loss bounds
    (:func:`densitydp.audit.monte_carlo_loss`). Under ``P = Q`` the bound is positive with
    probability at most ``alpha``. No upper bound on ``TV`` is given: over an unbounded
    number of rare outputs none can be had from samples without assumptions.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> same = total_variation(rng.integers(0, 5, 4000), rng.integers(0, 5, 4000), rng=0)
    >>> same.lower
    0.0
    >>> shifted = total_variation(rng.integers(0, 5, 4000), rng.integers(1, 6, 4000), rng=0)
    >>> round(shifted.lower, 3), round(shifted.estimate, 3)  # true TV 0.2
    (0.159, 0.215)
    """
    alpha = check_open_unit(alpha, "alpha")
    generator = as_generator(rng)
    sample_p = np.asarray(samples).reshape(-1)
    sample_q = np.asarray(reference).reshape(-1)
    for name, values in (("samples", sample_p), ("reference", sample_q)):
        if values.dtype.kind not in "iu":
            raise TypeError(f"`{name}` must hold integer outputs; got dtype {values.dtype}.")
        if len(values) < 2:
            raise ValueError(f"`{name}` must hold at least 2 outputs; got {len(values)}.")
    halves = []
    for values in (sample_p, sample_q):
        shuffled = generator.permutation(values)
        middle = len(values) // 2
        halves.append((shuffled[:middle], shuffled[middle:]))
    (select_p, check_p), (select_q, check_q) = halves
    # the outputs seen in the selection halves, and one more category for all others
    categories = np.union1d(select_p, select_q)
    unseen = len(categories)
    counts_p = np.bincount(_positions(select_p, categories), minlength=unseen + 1)
    counts_q = np.bincount(_positions(select_q, categories), minlength=unseen + 1)
    # leave-one-out (Good-Turing) mass of the outputs seen in neither selection half: the
    # draws seen once in their own half and never in the other
    mass_p = np.count_nonzero((counts_p == 1) & (counts_q == 0)) / len(select_p)
    mass_q = np.count_nonzero((counts_q == 1) & (counts_p == 0)) / len(select_q)
    p1 = counts_p / len(select_p) * (1.0 - mass_p)
    q1 = counts_q / len(select_q) * (1.0 - mass_q)
    p1[unseen], q1[unseen] = mass_p, mass_q
    z = float(stats.norm.ppf(1.0 - alpha))
    # events where the chain looks more likely, and events where the reference does
    best_p = _best_event(p1, q1, len(select_p), len(select_q), z)
    best_q = _best_event(q1, p1, len(select_q), len(select_p), z)
    favours_samples = best_p[0] >= best_q[0]
    event = best_p[1] if favours_samples else best_q[1]
    in_event = np.zeros(unseen + 1, dtype=bool)
    in_event[event] = True
    hits_p = int(in_event[_positions(check_p, categories)].sum())
    hits_q = int(in_event[_positions(check_q, categories)].sum())
    (hits_larger, n_larger), (hits_smaller, n_smaller) = (
        ((hits_p, len(check_p)), (hits_q, len(check_q)))
        if favours_samples
        else ((hits_q, len(check_q)), (hits_p, len(check_p)))
    )
    bound = float(
        clopper_pearson_lower(hits_larger, n_larger, alpha / 2)
        - clopper_pearson_upper(hits_smaller, n_smaller, alpha / 2)
    )
    return TotalVariation(
        estimate=_plug_in(sample_p, sample_q),
        lower=max(bound, 0.0),
        event_difference=hits_larger / n_larger - hits_smaller / n_smaller,
        event_size=int(in_event[:unseen].sum()),
        event_unseen=bool(in_event[unseen]),
        event_favours="samples" if favours_samples else "reference",
        p_value=_homogeneity(sample_p, sample_q),
        alpha=alpha,
        n_samples=len(sample_p),
        n_reference=len(sample_q),
    )


def _chain_mechanism(mechanism: DensityAwareLaplace, n_steps: int) -> DensityAwareLaplace:
    """The same mechanism with the uncertified ``n_steps``-step chain sampler."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrivacyWarning)  # uncertified on purpose: we measure it
        return DensityAwareLaplace(
            mechanism.space,
            mechanism.epsilon,
            mechanism.prior,
            mechanism.tilt,
            sampler="chain",
            n_steps=n_steps,
            proposal=mechanism.proposal,
            step_size=mechanism.step_size,
            table_k=mechanism.table_k,
            progress=mechanism.progress,
        )


def _diagnostics(table: pd.DataFrame) -> dict[str, float]:
    """R-hat, bulk and tail ESS of the radius, the log prior and the worst coordinate."""
    coordinates = table.loc[[name for name in table.index if name.startswith("position[")]]
    out: dict[str, float] = {}
    for name in ("radius", "log_prior"):
        for column in ("r_hat", "ess_bulk", "ess_tail"):
            out[f"{column}_{name}"] = float(table.loc[name, column])
    out["r_hat_position"] = float(coordinates["r_hat"].max(skipna=False))
    out["ess_bulk_position"] = float(coordinates["ess_bulk"].min(skipna=False))
    out["ess_tail_position"] = float(coordinates["ess_tail"].min(skipna=False))
    return out


def chain_accuracy(
    mechanism: DensityAwareLaplace,
    word_id: Any,
    n_steps: Any,
    *,
    n_samples: int = 2_000,
    n_exact: int = 20_000,
    n_chains: int = 4,
    alpha: float = 0.05,
    rng: RNGLike = None,
) -> pd.DataFrame:
    """How far the uncertified chain is from the exact law, next to what its diagnostics say.

    For each number of steps ``t``: ``n_samples`` independent chains of ``t`` steps, each
    exactly as ``DensityAwareLaplace(..., sampler="chain", n_steps=t)`` runs it for one token
    (start at an exact Laplace draw, the mechanism's proposal and step size), decoded to the
    nearest word, are compared with ``n_exact`` draws of the exact sampler
    (:func:`total_variation`); and ``n_chains`` chains of ``t`` recorded steps
    (:meth:`DensityAwareLaplace.chains`, as one would diagnose the mechanism) are summarised by
    R-hat and the bulk and tail effective sample sizes (:func:`densitydp.summary`).

    Parameters
    ----------
    mechanism : DensityAwareLaplace
        With ``sampler="exact"``: its ``sample`` is the reference law. The chains use its
        space, epsilon, prior, tilt, ``proposal`` and ``step_size``.
    word_id : int
        The input word.
    n_steps : int or sequence of int
        Chain lengths ``t >= 1`` to check.
    n_samples : int
        Independent chains (decoded words) per ``t``; also the size of the reference sample
        behind ``tv_null``.
    n_exact : int
        Exact draws (decoded words), shared by every ``t``.
    n_chains : int
        Chains of the diagnostics (R-hat needs at least 4 chains and 4 draws: with fewer
        draws the diagnostics are NaN).
    alpha : float
        One minus the confidence level of each ``tv_lower`` (per row; over ``m`` rows at once
        the level is ``1 - m alpha``).
    rng : None, int or Generator

    Returns
    -------
    pandas.DataFrame
        One row per ``t`` (index ``n_steps``):

        * ``moved``: fraction of the ``n_samples`` chains that accepted at least one move
          (NaN at tilt 0, where the mechanism draws the Laplace noise directly: it is the
          chain's target, and the chain starts there);
        * ``tv``: plug-in total variation between the chains' and the exact decoded words;
        * ``tv_null``: the same plug-in between ``n_samples`` further exact draws and the
          exact sample: what ``tv`` shows when the chain is exact (its bias at these sizes);
        * ``tv_lower``: lower confidence bound on the true total variation, level
          ``1 - alpha`` (:func:`total_variation`);
        * ``p_value``: chi-square test of homogeneity of the two samples;
        * ``acceptance``: mean acceptance rate of the diagnostic chains;
        * ``r_hat_*``, ``ess_bulk_*``, ``ess_tail_*`` for ``radius``, ``log_prior`` and
          ``position`` (the worst coordinate: largest R-hat, smallest ESS).

        ``attrs`` records the word, the mechanism's parameters, the sample sizes, ``alpha`` and
        the seed.

    Notes
    -----
    The mechanism releases only the decoded word, so the total variation between decoded words
    is what matters for it: a chain within total variation ``eta`` of the exact sampler inherits
    its ``2 epsilon * d`` guarantee with an added ``delta = (1 + e^epsilon') eta`` per pair
    (:meth:`DensityAwareLaplace.privacy_delta_bound`). A positive ``tv_lower`` shows that the
    chain is not the exact mechanism and puts that ``delta`` at ``(1 + e^epsilon') tv_lower``
    or more; ``tv_lower = 0`` shows nothing. The decoded words' total variation is at most the
    noisy points'.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=50, dim=3, n_clusters=3, rng=0)
    >>> prior = dd.KDEPrior.fit(space, bandwidth=0.1)
    >>> mechanism = dd.DensityAwareLaplace(space, epsilon=3.0, prior=prior, tilt=1.0)
    >>> table = chain_accuracy(mechanism, 0, [1, 100], n_samples=500, n_exact=2_000, rng=0)
    >>> list(table.columns[:5])
    ['moved', 'tv', 'tv_null', 'tv_lower', 'p_value']
    """
    import pandas as pd

    if not isinstance(mechanism, DensityAwareLaplace):
        raise TypeError(
            f"`mechanism` must be a DensityAwareLaplace; got {type(mechanism).__name__}."
        )
    if mechanism.sampler != "exact":
        raise ValueError(
            "`mechanism` must use sampler='exact' (its law is the reference); "
            f"got sampler={mechanism.sampler!r}."
        )
    word = mechanism._check_word(word_id)
    steps = np.atleast_1d(np.asarray(n_steps))
    if steps.ndim != 1 or len(steps) == 0:
        raise ValueError(f"`n_steps` must be an int or a non-empty sequence; got {n_steps!r}.")
    step_list = [check_int(t, "n_steps", minimum=1) for t in steps.tolist()]
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    n_exact = check_int(n_exact, "n_exact", minimum=2)
    n_chains = check_int(n_chains, "n_chains", minimum=1)
    alpha = check_open_unit(alpha, "alpha")
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    reference_rng, null_rng, *children = spawn(generator, 2 + 3 * len(step_list))
    exact = mechanism.sample(np.full(n_exact, word), rng=reference_rng)
    null = mechanism.sample(np.full(n_samples, word), rng=null_rng)
    tv_null = _plug_in(null, exact)
    tokens = np.full(n_samples, word)
    center = mechanism.space._vectors64[word]
    rows = []
    for i, t in enumerate(step_list):
        sample_rng, split_rng, chain_rng = children[3 * i : 3 * i + 3]
        chain = _chain_mechanism(mechanism, t)
        points, accepted = chain.draw_points(tokens, rng=sample_rng, return_proposals=True)
        decoded = chain.decode(tokens, points, np.linalg.norm(points - center, axis=1))
        distance = total_variation(decoded, exact, alpha=alpha, rng=split_rng)
        result = mechanism.chains(word, n_chains=n_chains, n_draws=t, rng=chain_rng)
        with warnings.catch_warnings():
            # 1 to 3 draws per chain: R-hat and ESS are undefined (NaN), say nothing more
            warnings.simplefilter("ignore", RuntimeWarning)
            table = summary(result)
        rows.append(
            {
                "n_steps": t,
                "moved": float(np.mean(accepted > 0)) if mechanism.tilt != 0.0 else math.nan,
                "tv": distance.estimate,
                "tv_null": tv_null,
                "tv_lower": distance.lower,
                "p_value": distance.p_value,
                "acceptance": float(result.acceptance_rate.mean()),
                **_diagnostics(table),
            }
        )
    frame = pd.DataFrame(rows).set_index("n_steps")
    frame.attrs.update(
        word=mechanism.space.words(word),
        word_id=word,
        epsilon=mechanism.epsilon,
        tilt=mechanism.tilt,
        proposal=mechanism.proposal,
        n_samples=n_samples,
        n_exact=n_exact,
        n_chains=n_chains,
        alpha=alpha,
        seed=seed,
    )
    return frame
