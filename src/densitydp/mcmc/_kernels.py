"""numba kernels of the Metropolis–Hastings samplers, in the BlackJAX shape.

A step is ``step(rng, state, ...) -> (state, info)`` with the small named tuples
:class:`MHState` and :class:`MHInfo`; proposals return their own log Hastings factor. ``rng`` is
a numpy Generator passed into numba (one per chain or per batch of tokens, never shared between
threads). ``logdensity_fn(position, args)`` is any numba-compiled function returning a float.

Pure-numpy twins live in ``tests/reference/mcmc.py``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._jit import function_jit, jit

#: Acceptance rate the random-walk step size is tuned towards during warm-up (optimal in high
#: dimension for a product target: Roberts, Gelman and Gilks 1997).
TARGET_ACCEPTANCE = 0.234


class MHState(NamedTuple):
    position: np.ndarray
    logdensity: float


class MHInfo(NamedTuple):
    accepted: bool
    log_alpha: float


@jit
def random_walk_proposal(rng, position, step_size):
    """Gaussian random walk ``x' = x + step_size * N(0, I)``; symmetric: log Hastings 0."""
    return position + step_size * rng.standard_normal(position.shape[0]), 0.0


@jit
def accept(rng, state, proposal, proposal_logdensity, log_hastings):
    """The Metropolis–Hastings decision: move to ``proposal`` with probability
    ``min(1, exp(proposal_logdensity - state.logdensity + log_hastings))`` (NaN rejects)."""
    log_alpha = proposal_logdensity - state.logdensity + log_hastings
    if math.isnan(log_alpha):
        log_alpha = -np.inf
    # u in [0, 1): log(u) < 0 <= log_alpha accepts every move with ratio >= 1
    if math.log(rng.random()) < log_alpha:
        return MHState(proposal, proposal_logdensity), MHInfo(True, log_alpha)
    return state, MHInfo(False, log_alpha)


@function_jit
def random_walk_step(rng, state, logdensity_fn, args, step_size):
    """One random-walk Metropolis step."""
    proposal, log_hastings = random_walk_proposal(rng, state.position, step_size)
    return accept(rng, state, proposal, logdensity_fn(proposal, args), log_hastings)


@function_jit
def independence_proposal(rng, position, sample_fn, proposal_logdensity_fn, proposal_args):
    """Draw ``x' ~ q`` independently of ``x``; log Hastings ``ln q(x) - ln q(x')``."""
    proposal = sample_fn(rng, proposal_args)
    log_hastings = proposal_logdensity_fn(position, proposal_args) - proposal_logdensity_fn(
        proposal, proposal_args
    )
    return proposal, log_hastings


@function_jit
def independence_step(
    rng, state, logdensity_fn, args, sample_fn, proposal_logdensity_fn, proposal_args
):
    """One independence Metropolis–Hastings step with proposal density ``q``."""
    proposal, log_hastings = independence_proposal(
        rng, state.position, sample_fn, proposal_logdensity_fn, proposal_args
    )
    return accept(rng, state, proposal, logdensity_fn(proposal, args), log_hastings)


@jit
def adapt_log_step(log_step, log_alpha, iteration):
    """Robbins–Monro update of ``ln step_size`` towards :data:`TARGET_ACCEPTANCE` (warm-up
    only; ``iteration`` counts from 0)."""
    alpha = 1.0 if log_alpha >= 0.0 else math.exp(log_alpha)
    return log_step + (alpha - TARGET_ACCEPTANCE) / (iteration + 1.0) ** 0.6


@jit
def record(draw, state, info, draws, logdensities, accepted):
    """Store one kept draw of a chain."""
    draws[draw] = state.position
    logdensities[draw] = state.logdensity
    accepted[draw] = info.accepted


@function_jit
def run_random_walk(
    rng,
    logdensity_fn,
    args,
    position,
    logdensity,
    log_step,
    first,
    n_steps,
    n_warmup,
    draws,
    logdensities,
    accepted,
):
    """Steps ``first .. first + n_steps - 1`` of one random-walk chain.

    Steps before ``n_warmup`` adapt the step size and are not stored; step ``t >= n_warmup`` is
    stored at draw ``t - n_warmup``. Returns the final ``(position, logdensity, log_step)`` so a
    chain can run in chunks (for the progress bar) with the same result as in one call.
    """
    state = MHState(position, logdensity)
    for t in range(first, first + n_steps):
        state, info = random_walk_step(rng, state, logdensity_fn, args, math.exp(log_step))
        if t < n_warmup:
            log_step = adapt_log_step(log_step, info.log_alpha, t)
        else:
            record(t - n_warmup, state, info, draws, logdensities, accepted)
    return state.position, state.logdensity, log_step


@function_jit
def run_independence(
    rng,
    logdensity_fn,
    args,
    sample_fn,
    proposal_logdensity_fn,
    proposal_args,
    position,
    logdensity,
    first,
    n_steps,
    n_warmup,
    draws,
    logdensities,
    accepted,
):
    """Steps ``first .. first + n_steps - 1`` of one independence MH chain (see
    :func:`run_random_walk`; nothing is adapted)."""
    state = MHState(position, logdensity)
    for t in range(first, first + n_steps):
        state, info = independence_step(
            rng, state, logdensity_fn, args, sample_fn, proposal_logdensity_fn, proposal_args
        )
        if t >= n_warmup:
            record(t - n_warmup, state, info, draws, logdensities, accepted)
    return state.position, state.logdensity
