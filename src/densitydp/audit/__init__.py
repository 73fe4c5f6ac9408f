"""Empirical privacy-loss auditing: exact losses, Monte Carlo lower bounds with confidence,
plausible-deniability statistics, and deliberately broken mechanisms to test auditors."""

from .deniability import plausible_deniability, plot_plausible_deniability
from .estimators import (
    ExactLoss,
    MonteCarloLoss,
    clopper_pearson_lower,
    clopper_pearson_upper,
    exact_privacy_loss,
    max_demonstrable_loss,
    monte_carlo_loss,
)
from .report import AuditReport, audit
from .sampling import PAIR_STRATEGIES, choose_pairs, sample_counts

__all__ = [
    "PAIR_STRATEGIES",
    "AuditReport",
    "ExactLoss",
    "MonteCarloLoss",
    "audit",
    "choose_pairs",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "exact_privacy_loss",
    "max_demonstrable_loss",
    "monte_carlo_loss",
    "plausible_deniability",
    "plot_plausible_deniability",
    "sample_counts",
]
