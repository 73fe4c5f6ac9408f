"""Metropolis–Hastings in numba: BlackJAX-shaped step kernels, parallel chains, ArviZ output."""

from ._kernels import (
    TARGET_ACCEPTANCE,
    MHInfo,
    MHState,
    independence_step,
    random_walk_step,
)
from .chains import ChainResult, IndependenceProposal, run_chains

__all__ = [
    "TARGET_ACCEPTANCE",
    "ChainResult",
    "IndependenceProposal",
    "MHInfo",
    "MHState",
    "independence_step",
    "random_walk_step",
    "run_chains",
]
