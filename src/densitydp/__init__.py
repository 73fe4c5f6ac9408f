"""densitydp: density-aware differentially private word perturbation.

Fast exact mechanisms (numba), KDE priors, Metropolis–Hastings chains diagnosed with ArviZ, and
empirical privacy audits, over word-embedding spaces.
"""

import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

# first: chooses numba's threading layer and compile cache before numba is imported
from . import _runtime  # isort: skip

if TYPE_CHECKING:  # the names as type checkers and IDEs see them; at run time, see __getattr__
    from .audit import (
        AuditReport,
        ExactMechanismProtocol,
        LawComparison,
        MechanismProtocol,
        as_mechanism,
        audit,
        compare_laws,
        exact_privacy_loss,
        plausible_deniability,
        plot_plausible_deniability,
    )
    from .calibration import Calibration, calibrate_epsilon
    from .datasets import Dataset, DatasetError, load_dataset
    from .diagnostics import ConvergenceWarning, Diagnosis, diagnose, plot_rank, plot_trace, summary
    from .embeddings import (
        EmbeddingFileError,
        EmbeddingSpace,
        UnknownWordError,
        Vocabulary,
        load_glove,
        synthetic_space,
    )
    from .kde import KDEPrior
    from .mcmc import ChainResult, IndependenceProposal, run_chains
    from .mechanisms import (
        CusText,
        CusTextPlus,
        DensityAwareLaplace,
        DistanceTruncatedLaplace,
        ExponentialMechanism,
        MahalanobisMechanism,
        Mechanism,
        MultivariateLaplace,
        PriorWeightedExponential,
        PrivacyBound,
        PrivacyWarning,
        SanText,
        SanTextPlus,
        TruncatedExponential,
        TruncatedGumbel,
        VickreyMechanism,
    )
    from .neighbors import DEFAULT_K, CacheWarning, NeighborTable, cache_dir
    from .text import (
        EncodedText,
        PerturbationReport,
        TextCodec,
        match_case,
        perturb_file,
        perturb_text,
        perturb_texts,
        tokenize,
    )
    from .utility import classification_utility, privacy_utility_curve, semantic_similarity

#: Where each public name lives. The submodules (and numba, scipy, sklearn, pandas, matplotlib,
#: arviz behind them) are imported on first use of a name, not by ``import densitydp``: the
#: package imports in a fraction of the time (benchmarks/results/cold_start.md).
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "AuditReport",
            "ExactMechanismProtocol",
            "LawComparison",
            "MechanismProtocol",
            "as_mechanism",
            "audit",
            "compare_laws",
            "exact_privacy_loss",
            "plausible_deniability",
            "plot_plausible_deniability",
        ),
        "audit",
    ),
    **dict.fromkeys(("Calibration", "calibrate_epsilon"), "calibration"),
    **dict.fromkeys(("Dataset", "DatasetError", "load_dataset"), "datasets"),
    **dict.fromkeys(
        ("ConvergenceWarning", "Diagnosis", "diagnose", "plot_rank", "plot_trace", "summary"),
        "diagnostics",
    ),
    **dict.fromkeys(
        (
            "EmbeddingFileError",
            "EmbeddingSpace",
            "UnknownWordError",
            "Vocabulary",
            "load_glove",
            "synthetic_space",
        ),
        "embeddings",
    ),
    "KDEPrior": "kde",
    **dict.fromkeys(("ChainResult", "IndependenceProposal", "run_chains"), "mcmc"),
    **dict.fromkeys(
        (
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
        ),
        "mechanisms",
    ),
    **dict.fromkeys(("DEFAULT_K", "CacheWarning", "NeighborTable", "cache_dir"), "neighbors"),
    **dict.fromkeys(
        (
            "EncodedText",
            "PerturbationReport",
            "TextCodec",
            "match_case",
            "perturb_file",
            "perturb_text",
            "perturb_texts",
            "tokenize",
        ),
        "text",
    ),
    **dict.fromkeys(
        ("classification_utility", "privacy_utility_curve", "semantic_similarity"), "utility"
    ),
}
_SUBMODULES = frozenset(
    {"audit", "calibration", "cli", "datasets", "diagnostics", "distributed", "embeddings",
     "kde", "mcmc", "mechanisms", "neighbors", "testing", "text", "utility"}
)  # fmt: skip

_runtime.emit_warnings()  # a refused numba cache folder (CacheWarning exists only now)

try:
    __version__ = version("densitydp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_K",
    "AuditReport",
    "CacheWarning",
    "Calibration",
    "ChainResult",
    "ConvergenceWarning",
    "CusText",
    "CusTextPlus",
    "Dataset",
    "DatasetError",
    "DensityAwareLaplace",
    "Diagnosis",
    "DistanceTruncatedLaplace",
    "EmbeddingFileError",
    "EmbeddingSpace",
    "EncodedText",
    "ExactMechanismProtocol",
    "ExponentialMechanism",
    "IndependenceProposal",
    "KDEPrior",
    "LawComparison",
    "MahalanobisMechanism",
    "Mechanism",
    "MechanismProtocol",
    "MultivariateLaplace",
    "NeighborTable",
    "PerturbationReport",
    "PriorWeightedExponential",
    "PrivacyBound",
    "PrivacyWarning",
    "SanText",
    "SanTextPlus",
    "TextCodec",
    "TruncatedExponential",
    "TruncatedGumbel",
    "UnknownWordError",
    "VickreyMechanism",
    "Vocabulary",
    "__version__",
    "as_mechanism",
    "audit",
    "cache_dir",
    "calibrate_epsilon",
    "classification_utility",
    "compare_laws",
    "diagnose",
    "exact_privacy_loss",
    "load_dataset",
    "load_glove",
    "match_case",
    "perturb_file",
    "perturb_text",
    "perturb_texts",
    "plausible_deniability",
    "plot_plausible_deniability",
    "plot_rank",
    "plot_trace",
    "privacy_utility_curve",
    "run_chains",
    "semantic_similarity",
    "summary",
    "synthetic_space",
    "testing",
    "tokenize",
]


class _Package(types.ModuleType):
    """The package's module type: ``densitydp.audit`` is the function :func:`audit`, also after
    the submodule of the same name is imported (the import system then sets the package's
    attribute to the submodule; with lazy names nothing would set it back)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "audit" and isinstance(value, types.ModuleType):
            value = value.audit  # the submodule finished executing: its function exists
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> object:
    """Load a public name (or a submodule such as ``densitydp.testing``) on first use."""
    import importlib

    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'densitydp' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
