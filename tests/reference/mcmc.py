"""Pure-numpy twins of the Metropolis–Hastings kernels in ``densitydp.mcmc._kernels``.

They consume the same random numbers in the same order from a numpy Generator, so with the
same seed they reproduce the compiled chains exactly (numba's Generator methods follow numpy's
algorithms).
"""

from __future__ import annotations

import math

import numpy as np

TARGET_ACCEPTANCE = 0.234


def accept(rng, position, logdensity, proposal, proposal_logdensity, log_hastings):
    log_alpha = proposal_logdensity - logdensity + log_hastings
    if math.isnan(log_alpha):
        log_alpha = -math.inf
    if math.log(rng.random()) < log_alpha:
        return proposal, proposal_logdensity, True, log_alpha
    return position, logdensity, False, log_alpha


def random_walk_chain(rng, logdensity, position, step_size, n_steps, n_warmup):
    """Draws, log densities, accepted flags and the final step size of one chain."""
    value = logdensity(position)
    log_step = math.log(step_size)
    draws, values, flags = [], [], []
    for t in range(n_steps):
        proposal = position + math.exp(log_step) * rng.standard_normal(len(position))
        position, value, accepted, log_alpha = accept(
            rng, position, value, proposal, logdensity(proposal), 0.0
        )
        if t < n_warmup:
            alpha = 1.0 if log_alpha >= 0 else math.exp(log_alpha)
            log_step += (alpha - TARGET_ACCEPTANCE) / (t + 1.0) ** 0.6
        else:
            draws.append(position)
            values.append(value)
            flags.append(accepted)
    return np.array(draws), np.array(values), np.array(flags), math.exp(log_step)


def laplace_noise(rng, dim, epsilon):
    radius = rng.gamma(dim, 1.0 / epsilon)
    direction = rng.standard_normal(dim)
    return direction * (radius / math.sqrt(np.sum(direction * direction)))


def tilted_laplace_chain(rng, center, epsilon, tilt, log_prior, n_steps, random_walk, step_size):
    """Twin of ``tilted_laplace_chains`` for one token: final position and accepted count."""

    def target(x):
        value = -epsilon * math.sqrt(np.sum((x - center) ** 2))
        return value + tilt * log_prior(x) if tilt != 0.0 else value

    def q(x):
        return -epsilon * math.sqrt(np.sum((x - center) ** 2))

    position = center + laplace_noise(rng, len(center), epsilon)
    value = target(position)
    count = 0
    for _ in range(n_steps):
        if random_walk:
            proposal = position + step_size * rng.standard_normal(len(center))
            log_hastings = 0.0
        else:
            proposal = center + laplace_noise(rng, len(center), epsilon)
            log_hastings = q(position) - q(proposal)
        position, value, accepted, _ = accept(
            rng, position, value, proposal, target(proposal), log_hastings
        )
        count += accepted
    return position, count
