"""Empirical privacy-loss auditing: exact losses, Monte Carlo lower bounds with confidence,
plausible-deniability statistics, and deliberately broken mechanisms to test auditors."""

from .blackbox import ExactMechanismProtocol, MechanismError, MechanismProtocol, as_mechanism
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
from .laws import LawComparison, compare_laws, holm, samples_for_power
from .report import OUTCOMES, AuditReport, audit, samples_to_test
from .sampling import PAIR_STRATEGIES, choose_pairs, sample_counts

__all__ = [
    "OUTCOMES",
    "PAIR_STRATEGIES",
    "AuditReport",
    "ExactLoss",
    "ExactMechanismProtocol",
    "LawComparison",
    "MechanismError",
    "MechanismProtocol",
    "MonteCarloLoss",
    "as_mechanism",
    "audit",
    "choose_pairs",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "compare_laws",
    "exact_privacy_loss",
    "holm",
    "max_demonstrable_loss",
    "monte_carlo_loss",
    "plausible_deniability",
    "plot_plausible_deniability",
    "sample_counts",
    "samples_for_power",
    "samples_to_test",
]
