"""densitydp: density-aware differentially private word perturbation.

Fast exact mechanisms (numba), KDE priors, Metropolis–Hastings chains diagnosed with ArviZ, and
empirical privacy audits, over word-embedding spaces.
"""

from importlib.metadata import PackageNotFoundError, version

from .embeddings import (
    EmbeddingFileError,
    EmbeddingSpace,
    UnknownWordError,
    Vocabulary,
    load_glove,
    synthetic_space,
)
from .neighbors import DEFAULT_K, CacheWarning, NeighborTable, cache_dir
from .text import EncodedText, TextCodec, match_case, tokenize

try:
    __version__ = version("densitydp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_K",
    "CacheWarning",
    "EmbeddingFileError",
    "EmbeddingSpace",
    "EncodedText",
    "NeighborTable",
    "TextCodec",
    "UnknownWordError",
    "Vocabulary",
    "__version__",
    "cache_dir",
    "load_glove",
    "match_case",
    "synthetic_space",
    "tokenize",
]
