"""Word-perturbation mechanisms."""

from collections.abc import Callable
from typing import Any

from ..embeddings import EmbeddingSpace
from ..kde import KDEPrior
from .base import Mechanism, PrivacyBound, PrivacyWarning
from .custext import CusText, CusTextPlus
from .density import DensityAwareLaplace, DistanceTruncatedLaplace, PriorWeightedExponential
from .exponential import ExponentialMechanism
from .gumbel import TruncatedGumbel
from .laplace import MultivariateLaplace
from .mahalanobis import DEFAULT_LAM, MahalanobisMechanism
from .santext import SanText, SanTextPlus
from .tem import TruncatedExponential
from .vickrey import VickreyMechanism

__all__ = [
    "MECHANISMS",
    "CusText",
    "CusTextPlus",
    "DensityAwareLaplace",
    "DistanceTruncatedLaplace",
    "ExponentialMechanism",
    "MahalanobisMechanism",
    "Mechanism",
    "MultivariateLaplace",
    "PriorWeightedExponential",
    "PrivacyBound",
    "PrivacyWarning",
    "SanText",
    "SanTextPlus",
    "TruncatedExponential",
    "TruncatedGumbel",
    "VickreyMechanism",
    "build_mechanism",
    "default_prior",
]

#: Reference points of the default prior of :class:`PriorWeightedExponential` built by name
#: (its construction evaluates the prior at every word: ``V * n_points * dim`` multiply-adds).
DEFAULT_PRIOR_POINTS = 10_000


def default_prior(space: EmbeddingSpace, max_points: int | None = None) -> KDEPrior:
    """The prior the density-aware mechanisms get when built by name: Scott's bandwidth on every
    word of ``space`` (``max_points=None``) or on ``max_points`` words drawn with the fixed seed
    0, so the prior is a deterministic, public function of the space.

    On the whole space every word carries its own kernel; on a subsample the words inside it
    are perturbed much less than the others (``benchmarks/bench_density.py``, GloVe 50,000 words,
    10,000-word prior, tilt 1: median N_w 0.96 inside against 0.02 outside at epsilon 5, 1.00
    against 0.41 at epsilon 10), so privacy would depend on an accident of sampling.
    """
    return KDEPrior.fit(space, bandwidth="scott", max_points=max_points, rng=0)


def _density_laplace(space: EmbeddingSpace, epsilon: float, **options: Any) -> Mechanism:
    prior = default_prior(space, options.pop("prior_points", None))
    return DensityAwareLaplace(space, epsilon, prior, **options)


def _prior_exponential(space: EmbeddingSpace, epsilon: float, **options: Any) -> Mechanism:
    prior = default_prior(space, options.pop("prior_points", DEFAULT_PRIOR_POINTS))
    return PriorWeightedExponential(space, epsilon, prior, **options)


def _vickrey_mahalanobis(space: EmbeddingSpace, epsilon: float, **options: Any) -> Mechanism:
    options.setdefault("lam", DEFAULT_LAM)
    return VickreyMechanism(space, epsilon, **options)


_CLASSES: dict[str, Callable[..., Mechanism]] = {
    "laplace": MultivariateLaplace,
    "gumbel": TruncatedGumbel,
    "exponential": ExponentialMechanism,
    "tem": TruncatedExponential,
    "density-laplace": _density_laplace,
    "prior-exponential": _prior_exponential,
    "mahalanobis": MahalanobisMechanism,
    "vickrey": VickreyMechanism,
    "vickrey-mahalanobis": _vickrey_mahalanobis,
    "santext": SanText,
    "santext-plus": SanTextPlus,
    "custext": CusText,
    "custext-plus": CusTextPlus,
}
#: Options each named mechanism accepts in :func:`build_mechanism`.
_OPTIONS = {
    "density-laplace": ("prior_points", "tilt", "sampler", "delta", "max_steps", "max_proposals"),
    "prior-exponential": ("prior_points", "tilt"),
    "gumbel": ("convention",),
    "mahalanobis": ("lam",),
    "vickrey": ("threshold",),
    "vickrey-mahalanobis": ("threshold", "lam"),
    "santext-plus": ("p", "sensitive_fraction"),
    "custext": ("k", "mapping"),
    "custext-plus": ("k", "mapping"),
}
#: The short names of the command line and the benchmarks.
MECHANISMS = tuple(_CLASSES)


def build_mechanism(name: str, space: EmbeddingSpace, epsilon: float, **options: Any) -> Mechanism:
    """The mechanism called ``name`` (one of :data:`MECHANISMS`) on ``space`` at ``epsilon``.

    ``options`` go to the mechanism's constructor (``None`` values are dropped). The
    density-aware ones take ``prior_points`` (their :func:`default_prior`: every word for
    ``density-laplace``, :data:`DEFAULT_PRIOR_POINTS` for ``prior-exponential``), ``tilt``
    (default 1) and, for ``density-laplace``, ``sampler``, ``delta``, ``max_steps``,
    ``max_proposals``. The others: ``gumbel`` ``convention``; ``mahalanobis`` ``lam``;
    ``vickrey`` ``threshold`` (and ``lam`` for ``vickrey-mahalanobis``); ``santext-plus`` ``p``,
    ``sensitive_fraction``; ``custext`` / ``custext-plus`` ``k``, ``mapping``. Each
    mechanism's own class documents them.
    """
    if name not in _CLASSES:
        raise ValueError(f"`name` must be one of {', '.join(MECHANISMS)}; got {name!r}.")
    given = {key: value for key, value in options.items() if value is not None}
    allowed = _OPTIONS.get(name, ())
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        accepted = ", ".join(f"`{key}`" for key in allowed) if allowed else "none"
        shown = ", ".join(f"`{key}`" for key in unknown)
        raise ValueError(f"mechanism {name!r} takes no option {shown} (accepted: {accepted}).")
    return _CLASSES[name](space, epsilon, **given)
