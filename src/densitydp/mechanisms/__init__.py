"""Word-perturbation mechanisms."""

from collections.abc import Callable

from ..embeddings import EmbeddingSpace
from ..kde import KDEPrior
from .base import Mechanism, PrivacyBound, PrivacyWarning
from .density import DensityAwareLaplace, DistanceTruncatedLaplace, PriorWeightedExponential
from .exponential import ExponentialMechanism
from .gumbel import TruncatedGumbel
from .laplace import MultivariateLaplace
from .tem import TruncatedExponential

__all__ = [
    "MECHANISMS",
    "DensityAwareLaplace",
    "DistanceTruncatedLaplace",
    "ExponentialMechanism",
    "Mechanism",
    "MultivariateLaplace",
    "PriorWeightedExponential",
    "PrivacyBound",
    "PrivacyWarning",
    "TruncatedExponential",
    "TruncatedGumbel",
    "build_mechanism",
    "default_prior",
]

#: Reference points of the default prior of the density-aware mechanisms built by name.
DEFAULT_PRIOR_POINTS = 10_000


def default_prior(space: EmbeddingSpace) -> KDEPrior:
    """The prior the density-aware mechanisms get when built by name: Scott's bandwidth on at
    most :data:`DEFAULT_PRIOR_POINTS` words of ``space`` drawn with the fixed seed 0 (so the
    prior is a deterministic, public function of the space)."""
    return KDEPrior.fit(space, bandwidth="scott", max_points=DEFAULT_PRIOR_POINTS, rng=0)


def _density_laplace(space: EmbeddingSpace, epsilon: float) -> Mechanism:
    return DensityAwareLaplace(space, epsilon, default_prior(space))


def _prior_exponential(space: EmbeddingSpace, epsilon: float) -> Mechanism:
    return PriorWeightedExponential(space, epsilon, default_prior(space))


_CLASSES: dict[str, Callable[..., Mechanism]] = {
    "laplace": MultivariateLaplace,
    "gumbel": TruncatedGumbel,
    "exponential": ExponentialMechanism,
    "tem": TruncatedExponential,
    "density-laplace": _density_laplace,
    "prior-exponential": _prior_exponential,
}
#: The short names of the command line and the benchmarks.
MECHANISMS = tuple(_CLASSES)


def build_mechanism(name: str, space: EmbeddingSpace, epsilon: float) -> Mechanism:
    """The mechanism called ``name`` (one of :data:`MECHANISMS`) on ``space`` at ``epsilon``
    (density-aware ones with :func:`default_prior` and tilt 1)."""
    if name not in _CLASSES:
        raise ValueError(f"`name` must be one of {', '.join(MECHANISMS)}; got {name!r}.")
    return _CLASSES[name](space, epsilon)
