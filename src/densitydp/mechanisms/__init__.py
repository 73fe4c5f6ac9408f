"""Word-perturbation mechanisms."""

from .base import Mechanism, PrivacyBound, PrivacyWarning
from .exponential import ExponentialMechanism
from .gumbel import TruncatedGumbel
from .laplace import MultivariateLaplace
from .tem import TruncatedExponential

__all__ = [
    "ExponentialMechanism",
    "Mechanism",
    "MultivariateLaplace",
    "PrivacyBound",
    "PrivacyWarning",
    "TruncatedExponential",
    "TruncatedGumbel",
]
