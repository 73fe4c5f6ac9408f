"""Choosing epsilon: the epsilon at which a mechanism reaches a target privacy statistic.

Two statistics, both increasing in the amount of perturbation a user can see:

``N_w``
    ``P[M(w) = w]``, the probability that a word comes back unchanged (plausible deniability,
    Feyisetan, Balle, Drake, Diethe, WSDM 2020); the target is its median over a set of words.
``changed``
    The share of the word tokens of a text that the mechanism changes,
    ``1 - mean over tokens x of P[M(x) = x]``.

:func:`calibrate_epsilon` searches epsilon on a log scale; where the mechanism's law is known
exactly (``mechanism.exact``) the statistic is computed from it, otherwise it is estimated by
sampling with common random numbers (the same seed at every epsilon).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm.auto import tqdm

from ._rng import RNGLike, as_generator, seed_entropy, spawn
from ._validation import check_int, check_number, check_word_ids
from .audit.sampling import TOKENS_PER_CALL, sample_counts
from .embeddings import EmbeddingSpace
from .mechanisms import MECHANISMS, build_mechanism
from .mechanisms.base import Mechanism, PrivacyBound
from .text import TextCodec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_BRACKET",
    "DEFAULT_WORDS",
    "EXACT_TOLERANCE",
    "MAX_EPSILON",
    "MIN_EPSILON",
    "SAMPLED_STANDARD_ERRORS",
    "Calibration",
    "calibrate_epsilon",
    "default_words",
]

Statistic = Literal["N_w", "changed"]
MechanismFactory = Callable[[EmbeddingSpace, float], Mechanism]

#: Number of default words and the frequent ids they are spread over (GloVe rows are in corpus
#: frequency order, so the first ids are the frequent words).
DEFAULT_WORDS = (200, 10_000)
#: The epsilons the search starts from when no ``bracket`` is given.
DEFAULT_BRACKET = (1.0, 100.0)
#: Absolute tolerance on an exactly computed statistic (tightened near 0 and 1).
EXACT_TOLERANCE = 1e-3
#: ``k`` of the tolerance of a sampled statistic: ``k`` binomial standard errors at the target.
SAMPLED_STANDARD_ERRORS = 2.0
#: Factor by which the bracket is widened until it holds the target.
EXPANSION = 4.0
#: The search never leaves ``[MIN_EPSILON, MAX_EPSILON]``: a target not reached there is reported
#: unreachable (no guarantee is meaningful at epsilon 1e12).
MIN_EPSILON, MAX_EPSILON = 1e-9, 1e12


def default_words(space: EmbeddingSpace) -> np.ndarray:
    """The default words of :func:`calibrate_epsilon`: 200 ids evenly spaced over the first
    ``min(10_000, len(space))`` ids (rounded, duplicates removed), i.e. frequent words of a
    frequency-ordered space such as GloVe.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=50, dim=2, n_clusters=2, rng=0)
    >>> default_words(space)[:5].tolist(), len(default_words(space))
    ([0, 1, 2, 3, 4], 50)
    """
    n_words, pool = DEFAULT_WORDS
    pool = min(pool, len(space))
    ids = np.rint(np.linspace(0, pool - 1, num=min(n_words, pool))).astype(np.int64)
    return np.unique(ids)


@dataclass(frozen=True, eq=False)
class Calibration:
    """The result of :func:`calibrate_epsilon`.

    Attributes
    ----------
    epsilon : float
        The epsilon found (one of the evaluated epsilons: the one whose statistic is closest to
        the target at the end of the search).
    statistic : {"N_w", "changed"}
        What was calibrated: the median ``N_w`` over ``word_ids``, or the share of changed tokens.
    target, value : float
        The target and the value achieved at ``epsilon``.
    tolerance : float
        The accepted ``|value - target|`` (see :func:`calibrate_epsilon`).
    method : {"exact", "sampled"}
        Statistic computed from the exact output law, or estimated by sampling.
    mechanism : Mechanism
        The mechanism built at ``epsilon``.
    bound : PrivacyBound
        ``mechanism.privacy_bound()``: the guarantee claimed at ``epsilon``.
    history : pandas.DataFrame
        One row per call of the factory, in order: ``epsilon``, ``value`` (NaN when refused),
        ``refused`` (the factory raised ValueError), ``seconds``.
    n_evaluations : int
        Calls of the factory (rows of ``history``).
    seed : dict
        Seed entropy of ``rng`` (:func:`densitydp._rng.seed_entropy`), recorded before the
        sampling seed is spawned from it: the same ``rng`` reproduces the calibration.
    word_ids : ndarray of int64, shape (n_words,)
        The words of the ``N_w`` statistic and of the nearest-pair summary.
    nearest_distance : float
        Median over ``word_ids`` of the distance to the nearest other word (exact).
    n_samples : int or None
        Draws behind a sampled value: per word for ``N_w``, token draws in all for
        ``changed``; None for an exact value.
    """

    epsilon: float
    statistic: Statistic
    target: float
    value: float
    tolerance: float
    method: Literal["exact", "sampled"]
    mechanism: Mechanism
    bound: PrivacyBound
    history: pd.DataFrame
    n_evaluations: int
    seed: dict[str, Any]
    word_ids: np.ndarray
    nearest_distance: float
    n_samples: int | None = None

    @property
    def nearest_loss(self) -> float:
        """Median over ``word_ids`` of the mechanism's claimed loss
        (``privacy_loss_bound``) against each word's nearest other word: ``epsilon *
        d`` for a Euclidean metric guarantee, the mechanism's own per-pair claim otherwise
        (another metric such as the Mahalanobis mechanism's ``d_RM``, ``inf`` for an
        unprotected pair); for an object without ``privacy_loss_bound``, its ``bound``
        (``epsilon * nearest_distance`` for a metric one, ``epsilon`` otherwise)."""
        space = self.mechanism.space
        if not hasattr(self.mechanism, "privacy_loss_bound"):  # a protocol object: its bound
            if self.bound.notion == "metric":
                return self.bound.epsilon * self.nearest_distance
            return self.bound.epsilon
        if len(space) < 2:
            return 0.0
        nearest = space.neighbors(2, word_ids=self.word_ids, progress=False).rows(self.word_ids)
        claims = np.asarray(
            self.mechanism.privacy_loss_bound(self.word_ids, nearest[0][:, 1].astype(np.int64)),
            dtype=np.float64,
        )
        return float(np.median(claims))

    def __str__(self) -> str:
        name = type(self.mechanism).__name__
        if self.statistic == "N_w":
            what = f"a median N_w = P[M(w) = w] of {self.value:.4g} over {len(self.word_ids)} words"
        else:
            what = f"a share {self.value:.4g} of the word tokens of the texts changed"
        head = str(self.bound).split(";")[0]
        text = (
            f"{name} at epsilon = {self.epsilon:.6g} gives {what} (target {self.target:g} "
            f"+/- {self.tolerance:.2g}, {self.method}, {self.n_evaluations} evaluations). "
            f"It claims {head}"
        )
        loss = self.nearest_loss
        if math.isinf(loss):
            text += (
                f", but not for every pair: the median nearest-neighbour pair among the "
                f"{len(self.word_ids)} calibration words has no claim at all (claimed loss inf)."
            )
        elif self.bound.notion == "metric":
            text += (
                f": for the median nearest-neighbour pair among the {len(self.word_ids)} "
                f"calibration words (distance "
                f"{self.nearest_distance:.4g}) a claimed privacy loss of at most {loss:.4g} "
                f"(probability ratio up to {_ratio(loss)})."
            )
        else:
            text += " for any two words."
        return text


def _ratio(loss: float) -> str:
    return f"{math.exp(loss):.3g}" if loss < 700 else f"e^{loss:.4g}"


def calibrate_epsilon(
    mechanism_factory: MechanismFactory | str,
    space: EmbeddingSpace,
    target: Mapping[str, float],
    *,
    words: Any = None,
    texts: str | Iterable[str] | None = None,
    n_samples: int = 1_000,
    bracket: tuple[float, float] | None = None,
    rtol: float = 1e-3,
    tolerance: float | None = None,
    max_evaluations: int = 60,
    rng: RNGLike = None,
    progress: bool | None = None,
) -> Calibration:
    """Find the epsilon at which a mechanism reaches a target privacy statistic.

    Parameters
    ----------
    mechanism_factory : callable or str
        ``mechanism_factory(space, epsilon) -> Mechanism``: a mechanism class whose second
        argument is epsilon (``dd.TruncatedExponential``), a :func:`functools.partial`, a
        closure; or a name of :data:`densitydp.mechanisms.MECHANISMS`, built with
        :func:`densitydp.mechanisms.build_mechanism` and its defaults. A factory may refuse an
        epsilon by raising ValueError (``TruncatedGumbel`` below its ``min_epsilon``): the
        accepted epsilons are taken to be an interval ``[e_min, inf)``.
    space : EmbeddingSpace
        The space the mechanism runs on.
    target : dict
        Exactly one item: ``{"N_w": t}``, the median over ``words`` of ``N_w = P[M(w) = w]``
        (Feyisetan et al. 2020), or ``{"changed": t}``, the share of the word tokens of
        ``texts`` that the mechanism changes; ``0 < t < 1``.
    words : array_like of int or of str, shape (n_words,), optional
        Words of the ``N_w`` statistic and of the nearest-pair summary (ids, or words looked up
        with :meth:`EmbeddingSpace.ids`). Default: for ``N_w``, :func:`default_words` (200 ids
        evenly spaced over the first ``min(10_000, len(space))`` ids); for ``changed``, the 200
        most frequent distinct words of ``texts``.
    texts : str or list of str
        Required for ``"changed"`` (and refused otherwise): its tokens found in the vocabulary
        (``TextCodec(space.vocabulary, unknown="keep")``, case back-off included) are the
        tokens counted.
    n_samples : int
        Sampled mechanisms only: draws per word for ``N_w`` (rounded up to even); for
        ``changed`` every token is drawn ``repeats = ceil(n_samples / n_tokens)`` times, so
        ``n_tokens * repeats >= n_samples`` token draws in all.
    bracket : (float, float), optional
        Epsilons to start from, ``0 < low < high``; default ``(1, 100)``. Widened by a factor 4
        on either side until it holds the target.
    rtol : float
        Stop when the bracket's relative width ``(high - low) / low`` is below ``rtol``.
    tolerance : float, optional
        Stop as soon as ``|value - target| <= tolerance``. Default: ``min(1e-3, 0.01 min(t,
        1 - t))`` for an exact statistic at target ``t`` (so a target near 0 or 1 is not taken
        as reached by a value 1e-3 away, e.g. TEM's ceiling ``1 - beta`` for ``N_w = 0.99999``;
        deterministic: the search ends at whichever of ``tolerance`` and ``rtol``
        comes first); for a sampled one ``k * sqrt(t (1 - t) / n)`` with ``k = 2``, the binomial
        standard error at the target ``t`` of one word's ``N_w`` (``n`` = draws per word) or of
        the share of changed tokens (``n`` = token draws): searching closer than the noise
        would only fit the noise.
    max_evaluations : int
        Calls of the factory allowed (refusals included).
    rng : None, int, SeedSequence or Generator
        Randomness of sampled statistics (SPEC 7). One child seed is spawned at the start and
        the *same* child seed is used at every epsilon (common random numbers), so the
        estimated curve is a deterministic function of epsilon; it is exactly non-decreasing
        for the multivariate Laplace mechanism (the noise is ``z / epsilon`` for a fixed ``z``
        and each word's Voronoi cell is convex) and nearly so for rejection samplers.
    progress : bool or None
        Progress bar over evaluations; None shows it on a terminal only.

    Returns
    -------
    Calibration
        ``epsilon``, the achieved ``value``, the mechanism built at ``epsilon`` and its claimed
        ``bound``, the search ``history``, the seed; ``str()`` gives a one-paragraph summary.
        When the search ends on ``rtol`` the value can lie outside ``tolerance`` (a statistic
        that jumps: a sampled step function, a median over few words): compare ``value`` with
        ``target``.

    Raises
    ------
    ValueError
        ``target`` is not one item ``{"N_w": t}`` / ``{"changed": t}`` with ``0 < t < 1``;
        ``texts`` missing for ``"changed"``, given for ``"N_w"``, or without a known word; a
        bad ``bracket``, ``rtol``, ``tolerance``, ``n_samples``; an unknown mechanism name; the
        target is not reachable in the epsilons the factory accepts or within
        ``[1e-9, 1e12]`` (the message gives the value at the edge); the factory refuses an
        epsilon above one it accepted.
    TypeError
        A factory that is neither callable nor a str, texts that are not str.
    RuntimeError
        No epsilon within the tolerance after ``max_evaluations`` calls of the factory.

    Notes
    -----
    Both statistics are monotone in epsilon (less noise keeps more words): ``N_w`` increases,
    ``changed`` decreases. (Nearly: the truncated Gumbel's ``N_w`` dips slightly just above
    its ``min_epsilon``, by 0.006 on GloVe, before it rises.) The search works on
    ``log(epsilon)``: it widens the bracket by a factor 4 until the target lies inside, then
    bisects it, taking an interpolation point instead of the midpoint (regula falsi on the
    logit of the statistic, Illinois-weighted) whenever the last two steps halved the bracket.
    A refused epsilon marks the low edge of the factory's domain: the smallest accepted
    epsilon is then located within ``rtol`` by bisection, and if the statistic there is
    already past the target the target is reported unreachable. The search never leaves
    ``[MIN_EPSILON, MAX_EPSILON]`` = ``[1e-9, 1e12]``: a target not reached there is reported
    unreachable too.

    Exact statistics use ``mechanism.output_distribution(w)`` (the probability of ``w``
    itself): cost per evaluation is one exact distribution per word (per distinct word of
    ``texts`` for ``changed``). Sampled ones use ``mechanism.sample`` only, so any object
    following the mechanism protocol works.

    References
    ----------
    O. Feyisetan, B. Balle, T. Drake, T. Diethe. Privacy- and utility-preserving textual
    analysis via calibrated multivariate perturbations. WSDM 2020 (``N_w``, ``S_w``).

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.synthetic_space(n_words=300, dim=8, n_clusters=4, rng=0)
    >>> found = dd.calibrate_epsilon(
    ...     dd.ExponentialMechanism, space, {"N_w": 0.5}, progress=False
    ... )
    >>> found.method, abs(found.value - 0.5) <= found.tolerance
    ('exact', True)
    >>> round(found.epsilon, 1), found.bound.notion
    (11.9, 'metric')
    """
    import pandas as pd

    statistic, level = _check_target(target)
    if not isinstance(space, EmbeddingSpace):
        raise TypeError(f"`space` must be an EmbeddingSpace; got {type(space).__name__}.")
    factory = _factory(mechanism_factory)
    tokens = _check_texts(space, texts, statistic)
    if words is None and tokens is not None:
        word_ids = _frequent_tokens(tokens)
    else:
        word_ids = _check_words(space, words)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    low, high = _check_bracket(bracket)
    rtol = check_number(rtol, "rtol", minimum=0.0)
    if tolerance is not None:
        tolerance = check_number(tolerance, "tolerance", minimum=0.0, strict=False)
    max_evaluations = check_int(max_evaluations, "max_evaluations", minimum=1)
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    child_seed = seed_entropy(spawn(generator, 1)[0])

    rows: list[dict[str, Any]] = []
    built: dict[float, Mechanism] = {}
    state: dict[str, Any] = {"method": None, "draws": None}

    def statistic_at(mechanism: Mechanism) -> float:
        exact = bool(getattr(mechanism, "exact", False))
        if state["method"] is None:
            state["method"] = "exact" if exact else "sampled"
        if exact:
            return _exact_value(mechanism, statistic, word_ids, tokens)
        value, draws = _sampled_value(mechanism, statistic, word_ids, tokens, n_samples, child_seed)
        state["draws"] = draws
        return value

    label = "median N_w" if statistic == "N_w" else "share changed"
    bar = tqdm(
        total=max_evaluations,
        desc="calibrating epsilon",
        unit="eval",
        disable=None if progress is None else not progress,
        leave=False,
    )

    def evaluate(epsilon: float) -> float | str:
        """The statistic at ``epsilon``, or the factory's message when it refuses it."""
        if len(rows) >= max_evaluations:
            raise RuntimeError(_give_up(rows, max_evaluations, label, level))
        started = time.perf_counter()
        try:
            mechanism = factory(space, epsilon)
        except ValueError as exc:
            rows.append(_row(epsilon, math.nan, True, started, str(exc)))
            bar.update(1)
            return str(exc)
        if not isinstance(mechanism, Mechanism) and not callable(
            getattr(mechanism, "sample", None)
        ):
            raise TypeError(
                "`mechanism_factory` must return a Mechanism (with `sample`); got "
                f"{type(mechanism).__name__} at epsilon = {epsilon:g}."
            )
        if getattr(mechanism, "space", space) is not space:
            raise ValueError(
                "`mechanism_factory` must build its mechanism on the `space` it is given; the "
                f"mechanism returned at epsilon = {epsilon:g} has another space."
            )
        value = statistic_at(mechanism)
        built.clear()
        built[epsilon] = mechanism
        rows.append(_row(epsilon, value, False, started, ""))
        bar.set_postfix(epsilon=f"{epsilon:.4g}", value=f"{value:.4g}")
        bar.update(1)
        return value

    def current_tolerance() -> float:
        # known once the factory has accepted an epsilon (exact or sampled, draws per value)
        return _tolerance(tolerance, state["method"], level, state["draws"])

    with bar:
        search = _Search(
            evaluate,
            current_tolerance,
            rtol=rtol,
            sign=1.0 if statistic == "N_w" else -1.0,
            level=level,
            label=label,
            statistic=statistic,
        )
        epsilon = search.run(low, high)
    method = state["method"]
    assert method is not None
    # the last mechanism built, or a rebuild when the best point was evaluated earlier
    mechanism = built[epsilon] if epsilon in built else factory(space, epsilon)
    value = next(row["value"] for row in reversed(rows) if row["epsilon"] == epsilon)
    history = pd.DataFrame(rows, columns=["epsilon", "value", "refused", "seconds"])
    history.attrs["seed"] = seed
    nearest = space.neighbors(2, word_ids=word_ids, progress=False).distances[:, 1]
    return Calibration(
        epsilon=float(epsilon),
        statistic=statistic,
        target=level,
        value=float(value),
        tolerance=float(current_tolerance()),
        method=method,
        mechanism=mechanism,
        bound=mechanism.privacy_bound(),
        history=history,
        n_evaluations=len(rows),
        seed=seed,
        word_ids=word_ids,
        nearest_distance=float(np.median(nearest.astype(np.float64))),
        n_samples=state["draws"] if method == "sampled" else None,
    )


# -- the search ------------------------------------------------------------------------------------


class _Search:
    """Bracketing root search of a monotone statistic on ``log(epsilon)``.

    ``evaluate(epsilon)`` returns the statistic, or a message when refused. The residual
    ``sign * (value - level)`` increases with epsilon; the interpolation model is the same on the
    logit scale (``N_w`` and ``changed`` are roughly logistic in ``log(epsilon)``).
    """

    def __init__(
        self,
        evaluate: Callable[[float], float | str],
        tolerance: Callable[[], float],
        *,
        rtol: float,
        sign: float,
        level: float,
        label: str,
        statistic: str,
    ) -> None:
        self.evaluate = evaluate
        self.tolerance = tolerance
        self.rtol = rtol
        self.sign = sign
        self.level = level
        self.label = label
        self.statistic = statistic
        self.values: dict[float, float] = {}
        self.refusals: dict[float, str] = {}

    def residual(self, epsilon: float) -> float | None:
        """``sign * (value - level)`` at ``epsilon`` (each epsilon is evaluated once)."""
        if epsilon not in self.values and epsilon not in self.refusals:
            value = self.evaluate(epsilon)
            if isinstance(value, str):
                self.refusals[epsilon] = value
            else:
                self.values[epsilon] = value
        if epsilon in self.refusals:
            return None
        return self.sign * (self.values[epsilon] - self.level)

    def _model(self, epsilon: float) -> float:
        return self.sign * (_logit(self.values[epsilon]) - _logit(self.level))

    def _done(self, h: float | None) -> bool:
        return h is not None and abs(h) <= self.tolerance()

    def _unreachable(self, edge: float, domain: str, at: str) -> ValueError:
        value = self.values[edge]
        side = "above" if self.sign * (value - self.level) > 0 else "below"
        return ValueError(
            f"`target` {{{self.statistic!r}: {self.level:g}}} is not reachable {domain}: {at} "
            f"epsilon = {edge:.6g} the {self.label} is {value:.4g}, {side} the target."
        )

    def run(self, low: float, high: float) -> float:
        """The epsilon found (see :func:`calibrate_epsilon`, Notes)."""
        h_high = self.residual(high)
        low_refused = False
        # 1. an accepted high end: refusals mark the low side of the factory's domain
        while h_high is None:
            if high >= MAX_EPSILON:
                last = self.refusals.get(low, "")
                raise ValueError(
                    f"the mechanism factory refused every epsilon up to {MAX_EPSILON:g} "
                    f"(at {low:g}: {last})"
                )
            low, low_refused = high, True
            high = min(high * EXPANSION, MAX_EPSILON)
            h_high = self.residual(high)
        if self._done(h_high):
            return high
        h_low: float | None = None
        if h_high < 0:
            # 2a. widen upwards
            while h_high < 0:
                if high >= MAX_EPSILON:
                    raise self._unreachable(high, f"for epsilon <= {MAX_EPSILON:g}", "at")
                low, h_low = high, h_high
                high = min(high * EXPANSION, MAX_EPSILON)
                h_high = self.residual(high)
                if h_high is None:
                    raise ValueError(
                        f"the mechanism factory refused epsilon = {high:g} after accepting "
                        f"epsilon = {low:g}: refused epsilons must lie below the accepted ones."
                    )
                if self._done(h_high):
                    return high
        else:
            # 2b. widen downwards
            h_low = None if low_refused else self.residual(low)
            while h_low is not None and h_low > 0:
                if self._done(h_low):
                    return low
                if low <= MIN_EPSILON:
                    raise self._unreachable(low, f"for epsilon >= {MIN_EPSILON:g}", "at")
                high, h_high = low, h_low
                low = max(low / EXPANSION, MIN_EPSILON)
                h_low = self.residual(low)
            if h_low is None:
                # 3. the low edge of the accepted epsilons, within rtol
                while h_low is None and high / low - 1.0 >= self.rtol:
                    middle = math.sqrt(low * high)
                    h_middle = self.residual(middle)
                    if h_middle is None:
                        low = middle
                    elif self._done(h_middle):
                        return middle
                    elif h_middle > 0:
                        high, h_high = middle, h_middle
                    else:
                        low, h_low = middle, h_middle
                if h_low is None:
                    raise self._unreachable(
                        high,
                        "in the epsilons the mechanism factory accepts (it refuses epsilon = "
                        f"{low:.6g}: {self.refusals[low]})",
                        "at the smallest accepted epsilon found,",
                    )
            if self._done(h_low):
                return low
        assert h_low is not None and h_high is not None
        return self._bisect(low, high, h_low, h_high)

    def _bisect(self, low: float, high: float, h_low: float, h_high: float) -> float:
        """4. shrink a bracket with ``h_low < 0 < h_high``: Illinois-weighted interpolation of the
        logit model on log epsilon, and a bisection whenever the last two steps together did
        not halve the bracket (so the width at least halves every three steps)."""
        m_low, m_high = self._model(low), self._model(high)
        widths = [math.inf, math.inf]  # bracket widths before each step
        kept = ""
        while high / low - 1.0 >= self.rtol:
            x_low, x_high = math.log(low), math.log(high)
            width = x_high - x_low
            interpolate = width <= 0.5 * widths[-2]  # the last two steps halved the bracket
            if interpolate and m_high > m_low:
                x = (x_low * m_high - x_high * m_low) / (m_high - m_low)
                x = min(max(x, x_low + 0.05 * width), x_high - 0.05 * width)
            else:
                x = 0.5 * (x_low + x_high)
            middle = math.exp(x)
            h_middle = self.residual(middle)
            if h_middle is None:
                raise ValueError(
                    f"the mechanism factory refused epsilon = {middle:g} between the accepted "
                    f"epsilons {low:g} and {high:g}."
                )
            if self._done(h_middle):
                return middle
            m_middle = self._model(middle)
            if h_middle < 0:
                low, h_low, m_low = middle, h_middle, min(m_middle, -1e-300)
                if kept == "high":  # Illinois: the high end was kept twice, halve its weight
                    m_high /= 2.0
                kept = "high"
            else:
                high, h_high, m_high = middle, h_middle, max(m_middle, 1e-300)
                if kept == "low":
                    m_low /= 2.0
                kept = "low"
            widths.append(width)
        return low if abs(h_low) <= abs(h_high) else high


def _logit(value: float) -> float:
    p = min(max(value, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


def _row(epsilon: float, value: float, refused: bool, started: float, error: str) -> dict[str, Any]:
    return {
        "epsilon": float(epsilon),
        "value": float(value),
        "refused": refused,
        "seconds": time.perf_counter() - started,
        "error": error,
    }


def _give_up(rows: list[dict[str, Any]], limit: int, label: str, level: float) -> str:
    accepted = [r for r in rows if not r["refused"]]
    if not accepted:
        return (
            f"calibrate_epsilon gave up after max_evaluations = {limit} calls: the mechanism "
            f"factory refused every epsilon tried (last {rows[-1]['epsilon']:g}: "
            f"{rows[-1]['error']}). Give a `bracket` inside its domain."
        )
    best = min(accepted, key=lambda r: abs(r["value"] - level))
    return (
        f"calibrate_epsilon gave up after max_evaluations = {limit} calls: the closest {label} "
        f"was {best['value']:.4g} at epsilon = {best['epsilon']:.6g} (target {level:g}). Raise "
        "`max_evaluations`, loosen `rtol` / `tolerance`, or give a narrower `bracket`."
    )


def _tolerance(given: float | None, method: str | None, level: float, draws: int | None) -> float:
    if given is not None:
        return given
    if method == "exact":  # never coarser than 1 % of the distance to 0 or 1
        return min(EXACT_TOLERANCE, 0.01 * min(level, 1.0 - level))
    assert draws is not None
    return SAMPLED_STANDARD_ERRORS * math.sqrt(level * (1.0 - level) / draws)


# -- the statistics --------------------------------------------------------------------------------


def _exact_value(
    mechanism: Mechanism, statistic: str, word_ids: np.ndarray, tokens: np.ndarray | None
) -> float:
    if statistic == "N_w":
        kept = _exact_kept(mechanism, np.unique(word_ids))
        return float(np.median(kept[np.searchsorted(np.unique(word_ids), word_ids)]))
    assert tokens is not None
    distinct, counts = np.unique(tokens, return_counts=True)
    kept = _exact_kept(mechanism, distinct)
    return float(1.0 - np.dot(counts, kept) / counts.sum())


def _exact_kept(mechanism: Mechanism, words: np.ndarray) -> np.ndarray:
    """Exact ``P[M(w) = w]`` for each of ``words``."""
    kept = np.empty(len(words))
    for i, word in enumerate(words):
        support, probabilities = mechanism.output_distribution(int(word))
        kept[i] = float(np.asarray(probabilities)[np.asarray(support) == word].sum())
    return kept


def _sampled_value(
    mechanism: Mechanism,
    statistic: str,
    word_ids: np.ndarray,
    tokens: np.ndarray | None,
    n_samples: int,
    child_seed: dict[str, Any],
) -> tuple[float, int]:
    """The estimate and the number of draws behind it, with a generator rebuilt from the same
    seed at every call (common random numbers)."""
    generator = np.random.default_rng(
        np.random.SeedSequence(child_seed["entropy"], spawn_key=child_seed["spawn_key"])
    )
    if statistic == "N_w":
        unique = np.unique(word_ids)
        even = n_samples + (n_samples % 2)
        first, second = sample_counts(mechanism, unique, even, generator, progress=False)
        kept = np.empty(len(unique))
        for i, word in enumerate(unique):
            hits = first[i][1][first[i][0] == word].sum() + second[i][1][second[i][0] == word].sum()
            kept[i] = hits / even
        return float(np.median(kept[np.searchsorted(unique, word_ids)])), even
    assert tokens is not None
    repeats = max(1, math.ceil(n_samples / len(tokens)))
    inputs = np.repeat(tokens, repeats)
    n_calls = math.ceil(len(inputs) / TOKENS_PER_CALL)
    children = generator.spawn(n_calls)
    changed = 0
    for call in range(n_calls):
        chunk = inputs[call * TOKENS_PER_CALL : (call + 1) * TOKENS_PER_CALL]
        changed += int(np.count_nonzero(mechanism.sample(chunk, rng=children[call]) != chunk))
    return changed / len(inputs), len(inputs)


# -- validation ------------------------------------------------------------------------------------


def _check_target(target: Any) -> tuple[Statistic, float]:
    if not isinstance(target, Mapping):
        raise TypeError(
            "`target` must be a dict with one item, {'N_w': t} or {'changed': t}; got "
            f"{type(target).__name__}."
        )
    if len(target) != 1:
        raise ValueError(
            "`target` must hold exactly one item, {'N_w': t} or {'changed': t}; got "
            f"{len(target)} ({', '.join(map(repr, target)) or 'none'})."
        )
    ((key, value),) = target.items()
    if key not in ("N_w", "changed"):
        raise ValueError(f"`target` must have the key 'N_w' or 'changed'; got {key!r}.")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"`target` value must be a number in (0, 1); got {type(value).__name__}.")
    number = float(value)
    if not 0.0 < number < 1.0:
        raise ValueError(f"`target` {key!r} must be a number in (0, 1); got {value!r}.")
    return key, number


def _factory(mechanism_factory: Any) -> MechanismFactory:
    if isinstance(mechanism_factory, str):
        if mechanism_factory not in MECHANISMS:
            raise ValueError(
                f"`mechanism_factory` must be a callable or one of {', '.join(MECHANISMS)}; got "
                f"{mechanism_factory!r}."
            )
        name = mechanism_factory
        return lambda space, epsilon: build_mechanism(name, space, epsilon)
    if not callable(mechanism_factory):
        raise TypeError(
            "`mechanism_factory` must be a callable (space, epsilon) -> Mechanism or a mechanism "
            f"name; got {type(mechanism_factory).__name__}."
        )
    return mechanism_factory


def _frequent_tokens(tokens: np.ndarray) -> np.ndarray:
    """The ``DEFAULT_WORDS[0]`` most frequent distinct words of ``tokens`` (ties: smaller id)."""
    distinct, counts = np.unique(tokens, return_counts=True)
    order = np.lexsort((distinct, -counts))
    return np.sort(distinct[order[: DEFAULT_WORDS[0]]])


def _check_words(space: EmbeddingSpace, words: Any) -> np.ndarray:
    if words is None:
        return default_words(space)
    if isinstance(words, str):
        words = [words]
    items = list(words) if not isinstance(words, np.ndarray) else words
    if len(items) and all(isinstance(w, str) for w in items):
        ids = np.asarray(space.ids(items), dtype=np.int64)
    else:
        ids = check_word_ids(np.asarray(items), len(space), "words")
    ids = ids.reshape(-1)
    if ids.size == 0:
        raise ValueError("`words` must hold at least one word; got none.")
    return ids


def _check_texts(space: EmbeddingSpace, texts: Any, statistic: str) -> np.ndarray | None:
    if statistic == "N_w":
        if texts is not None:
            raise ValueError(
                "`texts` is used only by the target {'changed': t}; the 'N_w' target uses `words`."
            )
        return None
    if texts is None:
        raise ValueError("`target` {'changed': t} needs `texts` (a str or a list of str).")
    items = [texts] if isinstance(texts, str) else list(texts)
    bad = [type(t).__name__ for t in items if not isinstance(t, str)]
    if bad:
        raise TypeError(f"`texts` must be a str or a list of str; got an item of type {bad[0]}.")
    _, flat, _ = TextCodec(space.vocabulary, unknown="keep").encode_batch(items)
    if flat.size == 0:
        raise ValueError(
            "`texts` must hold at least one word of the vocabulary for the target "
            "{'changed': t}; none was found."
        )
    return np.ascontiguousarray(flat, dtype=np.int64)


def _check_bracket(bracket: Any) -> tuple[float, float]:
    if bracket is None:
        return DEFAULT_BRACKET
    try:
        low, high = bracket
    except (TypeError, ValueError):
        raise ValueError(
            f"`bracket` must be a pair of epsilons (low, high); got {bracket!r}."
        ) from None
    low = check_number(low, "bracket[0]", minimum=0.0)
    high = check_number(high, "bracket[1]", minimum=0.0)
    if not low < high:
        raise ValueError(f"`bracket` must satisfy 0 < low < high; got ({low:g}, {high:g}).")
    return low, high
