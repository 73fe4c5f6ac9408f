"""Word-perturbation mechanisms."""

from collections.abc import Callable

from ..embeddings import EmbeddingSpace
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
]

_CLASSES: dict[str, Callable[..., Mechanism]] = {
    "laplace": MultivariateLaplace,
    "gumbel": TruncatedGumbel,
    "exponential": ExponentialMechanism,
    "tem": TruncatedExponential,
}
#: The short names of the command line and the benchmarks.
MECHANISMS = tuple(_CLASSES)


def build_mechanism(name: str, space: EmbeddingSpace, epsilon: float) -> Mechanism:
    """The mechanism called ``name`` (one of :data:`MECHANISMS`) on ``space`` at ``epsilon``."""
    if name not in _CLASSES:
        raise ValueError(f"`name` must be one of {', '.join(MECHANISMS)}; got {name!r}.")
    return _CLASSES[name](space, epsilon)
