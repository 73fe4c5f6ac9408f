"""densitydp: density-aware differentially private word perturbation.

Fast exact mechanisms (numba), KDE priors, Metropolis–Hastings chains diagnosed with ArviZ, and
empirical privacy audits, over word-embedding spaces.
"""

from importlib.metadata import PackageNotFoundError, version

# first: chooses numba's threading layer and compile cache before numba is imported
from . import _runtime  # isort: skip
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
    DensityAwareLaplace,
    DistanceTruncatedLaplace,
    ExponentialMechanism,
    Mechanism,
    MultivariateLaplace,
    PriorWeightedExponential,
    PrivacyBound,
    PrivacyWarning,
    TruncatedExponential,
    TruncatedGumbel,
)
from .neighbors import DEFAULT_K, CacheWarning, NeighborTable, cache_dir
from .text import (
    EncodedText,
    PerturbationReport,
    TextCodec,
    match_case,
    perturb_file,
    perturb_text,
    tokenize,
)
from .utility import classification_utility, privacy_utility_curve, semantic_similarity

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
    "Mechanism",
    "MechanismProtocol",
    "MultivariateLaplace",
    "NeighborTable",
    "PerturbationReport",
    "PriorWeightedExponential",
    "PrivacyBound",
    "PrivacyWarning",
    "TextCodec",
    "TruncatedExponential",
    "TruncatedGumbel",
    "UnknownWordError",
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


def __getattr__(name: str) -> object:
    # `densitydp.testing` imports scipy.stats (~0.5 s): load it on first use only
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module 'densitydp' has no attribute {name!r}")
