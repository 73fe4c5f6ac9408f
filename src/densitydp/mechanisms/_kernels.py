"""numba kernels of the mechanisms. Arrays in, arrays out; no validation, no Python objects.

All randomness is drawn by the wrappers with numpy Generators (one spawned child per batch of
tokens) and passed in as arrays of uniforms, so every kernel is a deterministic function of its
inputs and the results do not depend on the number of threads. Pure-numpy twins live in
``tests/reference/mechanisms.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import jit, parallel_jit
from .._kernels import kde_logdensity, squared_distance
from ..mcmc._kernels import MHState, accept, random_walk_proposal


@jit
def _nth_outside(sorted_inside, position):
    """The ``position``-th id (0-based, increasing) that is not in ``sorted_inside``."""
    candidate = position
    for member in sorted_inside:
        if member <= candidate:
            candidate += 1
        else:
            break
    return candidate


@jit
def splitmix64(state):
    """One step of SplitMix64 (Steele, Lea, Flood 2014): ``(new_state, uniform in [0, 1))``.

    A per-token stream for samplers that need a variable number of draws; each token's seed
    comes from the caller's numpy Generator.
    """
    state = (state + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = state
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = z ^ (z >> np.uint64(31))
    return state, np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@parallel_jit
def sample_by_rejection(
    words,
    row_ids,
    row_distances,
    reach,
    ranges,
    token_order,
    seeds,
    vectors,
    half_epsilon,
    gamma,
    out,
):
    """Exact clipped exponential mechanism from neighbour rows, by rejection.

    Target ``P(y) ~ w(y) = exp(-half_epsilon * min(d(w, y), gamma))`` (``gamma = inf``: the
    plain exponential mechanism). Row ``t`` holds the nearest words of ``words[t]`` with exact
    distances; every other word is at least ``reach[t]`` away, so its weight is at most
    ``bound = exp(-half_epsilon * min(reach[t], gamma))``. Propose a row word with its weight or
    a uniform outside word with weight ``bound``; accept an outside word ``y`` with probability
    ``w(y) / bound`` (its distance computed exactly), else start again. The accepted draw has
    exactly the target law. Token ``i`` draws from its own SplitMix64 stream seeded by
    ``seeds[i]``.
    """
    n_words = vectors.shape[0]
    width = row_ids.shape[1]
    for t in prange(words.shape[0]):
        order = np.argsort(row_ids[t])
        sorted_ids = row_ids[t][order]
        cumulative = np.empty(width)
        total = 0.0
        for c in range(width):
            total += math.exp(-half_epsilon * min(row_distances[t, order[c]], gamma))
            cumulative[c] = total
        bound = math.exp(-half_epsilon * min(reach[t], gamma))
        n_outside = n_words - width
        outside_mass = n_outside * bound
        grand = total + outside_mass
        query = vectors[words[t]].astype(np.float64)
        for position in range(ranges[t, 0], ranges[t, 1]):
            token = token_order[position]
            state = seeds[token]
            while True:
                state, u = splitmix64(state)
                target = u * grand
                if target < total or n_outside == 0:
                    index = np.searchsorted(cumulative, target, side="right")
                    out[token] = sorted_ids[min(index, width - 1)]
                    break
                state, u = splitmix64(state)
                candidate = _nth_outside(sorted_ids, min(int(u * n_outside), n_outside - 1))
                distance = math.sqrt(squared_distance(query, vectors[candidate]))
                state, u = splitmix64(state)
                if u * bound < math.exp(-half_epsilon * min(distance, gamma)):
                    out[token] = candidate
                    break


@parallel_jit
def truncated_gumbel_select(
    token_rows,
    candidate_ids,
    candidate_distances,
    counts,
    offsets,
    uniforms,
    lower,
    width,
    scale,
    bound,
    out,
):
    """Truncated Gumbel kNN selection for each token.

    Token ``i`` has ``counts[i]`` candidates (row ``token_rows[i]`` of the candidate arrays, the
    word itself first). Each gets Gumbel(0, scale) noise truncated to ``[-bound, bound]``, drawn
    by inverse CDF from ``uniforms[offsets[i]:]`` mapped into ``[lower, lower + width]``
    (``lower = F(-bound)``, ``width = F(bound) - F(-bound)``); the smallest noisy distance wins
    (the earlier rank on a tie). ``counts[i] <= 1`` returns the word itself.
    """
    for i in prange(token_rows.shape[0]):
        row = token_rows[i]
        count = counts[i]
        best = np.inf
        chosen = 0
        for j in range(count):
            u = lower + width * uniforms[offsets[i] + j]
            if u <= 0.0:
                noise = -bound
            elif u >= 1.0:
                noise = bound
            else:
                noise = min(max(-scale * math.log(-math.log(u)), -bound), bound)
            noisy = candidate_distances[row, j] + noise
            if noisy < best:
                best = noisy
                chosen = j
        out[i] = candidate_ids[row, chosen]


@parallel_jit
def decode_in_rows(points, rows, table_ids, vectors, out):
    """Exact nearest word of each point among the words of its table row (ties: smaller id).

    Exact for the whole vocabulary when the caller has checked that every word outside the row
    is farther from the row's word than twice the noise radius.
    """
    for i in prange(points.shape[0]):
        row = rows[i]
        best = np.inf
        chosen = -1
        for j in range(table_ids.shape[1]):
            word = table_ids[row, j]
            distance = squared_distance(points[i], vectors[word])
            if distance < best or (distance == best and word < chosen):
                best = distance
                chosen = word
        out[i] = chosen


@parallel_jit
def row_distances(words, candidate_ids, vectors, out):
    """Exact float64 distances from each word to the candidates of its row."""
    for t in prange(words.shape[0]):
        query = vectors[words[t]].astype(np.float64)
        for j in range(candidate_ids.shape[1]):
            out[t, j] = math.sqrt(squared_distance(query, vectors[candidate_ids[t, j]]))


@parallel_jit
def sample_from_distance_rows(
    distances, ranges, token_order, u_choice, u_fallback, half_epsilon, gamma, out
):
    """The law of :func:`sample_clipped_exponential` for precomputed full distance rows.

    Row ``t`` of ``distances`` holds the exact distances from one input word to every word; its
    tokens are ``token_order[ranges[t, 0]:ranges[t, 1]]``.
    """
    n_words = distances.shape[1]
    for t in prange(distances.shape[0]):
        cumulative = np.empty(n_words)
        inside_ids = np.empty(n_words, np.int64)
        outside_ids = np.empty(n_words, np.int64)
        n_inside = 0
        n_outside = 0
        total = 0.0
        for j in range(n_words):
            if distances[t, j] <= gamma:
                total += math.exp(-half_epsilon * distances[t, j])
                cumulative[n_inside] = total
                inside_ids[n_inside] = j
                n_inside += 1
            else:
                outside_ids[n_outside] = j
                n_outside += 1
        bottom = n_outside * math.exp(-half_epsilon * gamma) if n_outside > 0 else 0.0
        grand = total + bottom
        for position in range(ranges[t, 0], ranges[t, 1]):
            token = token_order[position]
            target = u_choice[token] * grand
            if target < total or n_outside == 0:
                index = np.searchsorted(cumulative[:n_inside], target, side="right")
                out[token] = inside_ids[min(index, n_inside - 1)]
            else:
                out[token] = outside_ids[min(int(u_fallback[token] * n_outside), n_outside - 1)]


# -- density-aware Laplace ---------------------------------------------------------------------


@jit
def laplace_noise(rng, dim, epsilon):
    """One draw of multivariate Laplace noise, density ~ ``exp(-epsilon ||z||)`` in R^dim:
    radius ``Gamma(dim, 1 / epsilon)`` times a uniform direction."""
    radius = rng.gamma(dim, 1.0 / epsilon)
    direction = rng.standard_normal(dim)
    return direction * (radius / math.sqrt(np.sum(direction * direction)))


@jit
def laplace_proposal_sample(rng, proposal_args):
    """Independence proposal: ``center + Laplace noise``; ``proposal_args = (center, epsilon)``."""
    center, epsilon = proposal_args
    return center + laplace_noise(rng, center.shape[0], epsilon)


@jit
def laplace_proposal_logdensity(position, proposal_args):
    """``-epsilon ||position - center||`` (the Laplace log density up to its constant)."""
    center, epsilon = proposal_args
    return -epsilon * math.sqrt(squared_distance(position, center))


@jit
def tilted_laplace_logdensity(position, args):
    """``-epsilon ||x - center|| + tilt ln p(x)``; ``args = (center, epsilon, tilt, prior_args)``
    with ``prior_args = KDEPrior.numba_args()``. The prior is not evaluated when ``tilt == 0``.
    """
    center, epsilon, tilt, prior_args = args
    value = -epsilon * math.sqrt(squared_distance(position, center))
    if tilt != 0.0:
        value += tilt * kde_logdensity(position, prior_args)
    return value


@jit
def tilted_laplace_chains(
    rng, centers, epsilon, tilt, prior_args, n_steps, random_walk, step_size, out, accepted
):
    """One Metropolis–Hastings chain per row of ``centers``, targeting
    ``exp(-epsilon ||x - center||) p(x)^tilt``.

    Each chain starts from an exact Laplace draw around its centre (the target at ``tilt = 0``)
    and runs ``n_steps`` steps: independence proposals from the same Laplace noise (acceptance
    ``min(1, (p(x') / p(x))^tilt)``) or a Gaussian random walk of fixed ``step_size``. Writes the
    final position to ``out[i]`` and the number of accepted moves to ``accepted[i]``.
    """
    dim = centers.shape[1]
    for i in range(centers.shape[0]):
        center = centers[i]
        args = (center, epsilon, tilt, prior_args)
        proposal_args = (center, epsilon)
        position = center + laplace_noise(rng, dim, epsilon)
        state = MHState(position, tilted_laplace_logdensity(position, args))
        count = 0
        # the steps of random_walk_step / independence_step with this target inlined: a kernel
        # that passes a global compiled function as a value cannot be cached by numba
        for _ in range(n_steps):
            if random_walk:
                proposal, log_hastings = random_walk_proposal(rng, state.position, step_size)
            else:
                proposal = laplace_proposal_sample(rng, proposal_args)
                log_hastings = laplace_proposal_logdensity(
                    state.position, proposal_args
                ) - laplace_proposal_logdensity(proposal, proposal_args)
            value = tilted_laplace_logdensity(proposal, args)
            state, info = accept(rng, state, proposal, value, log_hastings)
            count += info.accepted
        out[i] = state.position
        accepted[i] = count
