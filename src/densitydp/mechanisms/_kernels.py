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
from .._kernels import KDE_BLOCK, block_squared_distances, kde_logdensity, squared_distance
from ..mcmc._kernels import MHState, accept, random_walk_proposal


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


@jit
def sorted_row_weights(ids, distances, half_epsilon, gamma, base):
    """A neighbour row in increasing id order with its cumulative weights
    ``exp(-half_epsilon * (min(d, gamma) - base))``: ``(sorted_ids, cumulative, total)``."""
    order = np.argsort(ids)
    sorted_ids = ids[order]
    cumulative = np.empty(ids.shape[0])
    total = 0.0
    for c in range(ids.shape[0]):
        total += math.exp(-half_epsilon * (min(distances[order[c]], gamma) - base))
        cumulative[c] = total
    return sorted_ids, cumulative, total


@jit
def _in_sorted(sorted_ids, value):
    """Whether ``value`` is in the increasing array ``sorted_ids`` (binary search)."""
    index = np.searchsorted(sorted_ids, value)
    return index < sorted_ids.shape[0] and sorted_ids[index] == value


@parallel_jit
def sample_by_uniform_rejection(
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
    """Exact clipped exponential mechanism from neighbour rows, by rejection with a uniform
    envelope.

    Target ``P(y) ~ w(y) = exp(-half_epsilon * min(d(w, y), gamma))``. Envelope: the row words
    with their exact weights (total ``R``) plus *every* word ``y`` of the vocabulary with the
    weight ``bound = exp(-half_epsilon * min(reach[t], gamma))`` (mass ``n_words * bound``).
    A draw from the uniform part is a word of the row with probability ``width / n_words``: its
    outside weight is 0 and it is rejected; any other word has ``w(y) <= bound`` (it is at least
    ``reach[t]`` away) and is accepted with probability ``w(y) / bound``. The accepted draw has
    exactly the target law (rejection sampling from an envelope that dominates the target).

    The acceptance ``u * bound < w(y)`` is decided as ``min(d, gamma) < t`` with
    ``t = min(reach, gamma) - ln(u) / half_epsilon``: when ``t > gamma`` every word is accepted
    without its distance; otherwise the squared distance is summed coordinate by coordinate and
    the word is rejected as soon as the partial sum reaches ``t^2`` (a partial sum of squares
    is a lower bound of the whole). Token ``i`` draws from its own SplitMix64 stream seeded by
    ``seeds[i]`` (up to three uniforms per round): results do not depend on the thread count.
    """
    n_words = vectors.shape[0]
    width = row_ids.shape[1]
    for t in prange(words.shape[0]):
        sorted_ids, cumulative, total = sorted_row_weights(
            row_ids[t], row_distances[t], half_epsilon, gamma, 0.0
        )
        floor = min(reach[t], gamma)
        bound = math.exp(-half_epsilon * floor) if width < n_words else 0.0
        grand = total + n_words * bound
        query = vectors[words[t]].astype(np.float64)
        for position in range(ranges[t, 0], ranges[t, 1]):
            token = token_order[position]
            out[token] = uniform_rejection_draw(
                seeds[token],
                sorted_ids,
                cumulative,
                total,
                grand,
                floor,
                gamma,
                half_epsilon,
                query,
                vectors,
            )


@jit
def uniform_rejection_draw(
    state, sorted_ids, cumulative, total, grand, floor, gamma, half_epsilon, query, vectors
):
    """One token of the uniform-envelope rejection, from the SplitMix64 seed ``state``.

    A row entry ``sorted_ids`` by inverse CDF when ``u * grand < total`` (``cumulative`` the
    row's increasing weights); else any row of ``vectors`` uniformly, rejected when in
    ``sorted_ids``, accepted when ``d(query, y) < floor - ln(u) / half_epsilon`` (always when
    that exceeds ``gamma``), decided on a squared distance summed coordinate by coordinate and
    stopped as soon as it reaches the bound. Shared by :func:`sample_by_uniform_rejection` and
    ``_sampling_kernels.sample_subset_by_rejection``.
    """
    n_words = vectors.shape[0]
    width = sorted_ids.shape[0]
    dim = vectors.shape[1]
    while True:
        state, u = splitmix64(state)
        target = u * grand
        if target < total:
            index = np.searchsorted(cumulative, target, side="right")
            return sorted_ids[min(index, width - 1)]
        state, u = splitmix64(state)
        candidate = min(int(u * n_words), n_words - 1)
        if _in_sorted(sorted_ids, candidate):
            continue
        state, u = splitmix64(state)
        if u <= 0.0:
            return candidate
        # half_epsilon may underflow to 0: inf, as the division gave in the parallel callers
        # (numpy's error model there; a @jit function raises ZeroDivisionError)
        threshold = floor - math.log(u) / half_epsilon if half_epsilon > 0.0 else math.inf
        if threshold > gamma:
            return candidate
        limit = threshold * threshold
        vector = vectors[candidate]
        partial = 0.0
        for j in range(dim):
            diff = query[j] - np.float64(vector[j])
            partial += diff * diff
            if partial >= limit:
                break
        if partial < limit:
            return candidate


@jit
def _race_select(i, token_rows, candidate_ids, weights, counts, offsets, draws, low, spread):
    """Token ``i`` of :func:`truncated_gumbel_select`: the chosen candidate id."""
    row = token_rows[i]
    best = -1.0
    chosen = 0
    start = offsets[i]
    for j in range(counts[i]):
        if spread > 0.0:  # draws are uniforms: the truncated exponential by inverse CDF
            race = low - math.log1p(-spread * draws[start + j])
        else:  # draws are already exponentials truncated to [0, U - L]
            race = low + draws[start + j]
        key = race * weights[row, j]
        if key > best:
            best = key
            chosen = j
    return candidate_ids[row, chosen]


@parallel_jit
def truncated_gumbel_select(
    token_rows, candidate_ids, weights, counts, offsets, draws, low, spread, out
):
    """Truncated Gumbel kNN selection for each token, as a race of truncated exponentials.

    The law of :func:`truncated_gumbel_select_by_logs`: noise ``N ~ Gumbel(0, b)`` truncated to
    ``[-D, D]`` is ``N = -b ln X`` with ``X = exp(-N / b)``; ``P(X > x) = P(N < -b ln x) =
    exp(-x)``, so ``X ~ Exp(1)`` truncated to ``[L, U] = [e^(-D/b), e^(D/b)]``, i.e. (the
    exponential law is memoryless) ``X = L + E`` with ``E ~ Exp(1)`` truncated to
    ``[0, U - L]``. Then ``d_j + N_j = d_j - b ln X_j`` is smallest exactly where
    ``X_j * exp(-d_j / b)`` is largest (``ln`` is increasing), so the argmin of the noisy
    distances is the argmax of ``X_j * weights[row, j]`` with ``weights = exp(-distances / b)``
    (the earlier rank on a tie, as there).

    ``E`` comes in ``draws``: with ``spread > 0`` they are uniforms and
    ``E = -log1p(-u * spread)``, ``spread = 1 - e^-(U - L)`` (inverse CDF); with ``spread = 0``
    they are the exponentials themselves (drawn and truncated by the caller). The caller uses
    this kernel only when ``D / b <= 300``, so that every weight and key is a normal float64.
    Token ``i`` has ``counts[i]`` candidates and the draws ``draws[offsets[i]:]``;
    ``counts[i] <= 1`` returns the word itself.
    """
    for i in prange(token_rows.shape[0]):
        out[i] = _race_select(
            i, token_rows, candidate_ids, weights, counts, offsets, draws, low, spread
        )


@jit
def truncated_gumbel_select_serial(
    token_rows, candidate_ids, weights, counts, offsets, draws, low, spread, out
):
    """:func:`truncated_gumbel_select` in one thread (small calls: no parallel launch)."""
    for i in range(token_rows.shape[0]):
        out[i] = _race_select(
            i, token_rows, candidate_ids, weights, counts, offsets, draws, low, spread
        )


@parallel_jit
def truncated_gumbel_select_by_logs(
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
    """Truncated Gumbel kNN selection for each token, two logarithms per candidate (the kernel
    before issue 16, kept for the benchmark and for scales where :func:`truncated_gumbel_select`
    does not apply).

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
    """Exact float64 distances from each word to the candidates of its row.

    Each distance is summed over the coordinates in order (the sums of
    :func:`squared_distance`, bit for bit); the candidates of a row are gathered coordinate-major
    first, so that the loop over candidates runs in SIMD lanes.
    """
    width = candidate_ids.shape[1]
    dim = vectors.shape[1]
    for t in prange(words.shape[0]):
        query = vectors[words[t]].astype(np.float64)
        gathered = np.empty((dim, width))
        for j in range(width):
            vector = vectors[candidate_ids[t, j]]
            for k in range(dim):
                gathered[k, j] = vector[k]
        totals = np.zeros(width)
        for k in range(dim):
            q = query[k]
            for j in range(width):
                diff = q - gathered[k, j]
                totals[j] += diff * diff
        for j in range(width):
            out[t, j] = math.sqrt(totals[j])


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


# -- exact density-aware Laplace ----------------------------------------------------------------
#
# With a Gaussian KDE prior p(x) = (1/n) sum_v N(x; mu_v, h^2 I), the tilt-1 target
# exp(-epsilon ||x - c||) p(x) is a finite mixture over the kernels v. Each component is, by the
# Levy subordination exp(-epsilon r) = int Levy(t) exp(-t r^2) dt, a continuous mixture of
# Gaussians: with u = 1 / (1 + 2 t h^2) in (0, 1],
#     x | u ~ N(c + u (mu_v - c), u h^2 I),
#     u has density proportional to  s^(-3/2) u^k exp(-a s - b / s),  s = 1 - u,
# with a = ||mu_v - c||^2 / (2 h^2), b = epsilon^2 h^2 / 2, k = (dim - 1) / 2, and the
# component's mass is  Z = E[exp(-epsilon ||mu_v - c + h G||)]
#     = epsilon h / sqrt(2 pi)  int_0^1 s^(-3/2) u^k exp(-a s - b u / s) ds.
# The "mixing law" of s (or u) is unimodal on (0, 1) (the derivative of its log density has the
# sign of a cubic with exactly one root there) and is sampled exactly by rejection below.

#: Bisection steps on the logit scale for the mode of the mixing law (the bracket [-745, 745]
#: shrinks below 1e-24).
_MODE_STEPS = 90

#: A log integrand this far below its maximum ends the quadrature (e^-60 ~ 1e-26).
_QUADRATURE_DEPTH = 60.0


@jit
def _logit_pair(y):
    """``(s, u)`` with ``s = 1 / (1 + e^-y)`` and ``u = 1 - s`` computed without cancellation."""
    if y >= 0.0:
        e = math.exp(-y)
        return 1.0 / (1.0 + e), e / (1.0 + e)
    e = math.exp(y)
    return e / (1.0 + e), 1.0 / (1.0 + e)


@jit
def mixing_mode(a, b, k, power):
    """Mode ``(s, u)`` of ``s^(-power) u^k exp(-a s - b / s)`` on ``(0, 1)`` (``b > 0``).

    The derivative of the log density has the sign of
    ``N(s) = -power s u - k s^2 - a s^2 u + b u``, positive near 0 and negative near 1 with
    exactly one root in between; bisection on the logit scale gives the same relative accuracy at
    both ends. ``power = 1.5`` is the mixing law, ``0.5`` its integrand on the logit scale.
    """
    low, high = -745.0, 745.0
    for _ in range(_MODE_STEPS):
        middle = 0.5 * (low + high)
        s, u = _logit_pair(middle)
        if -power * s * u - k * s * s - a * s * s * u + b * u > 0.0:
            low = middle
        else:
            high = middle
    return _logit_pair(min(max(0.5 * (low + high), -700.0), 700.0))


@jit
def _log_integrand(y, a, b, k):
    """Log of the mixing integrand on the logit scale: ``s^(-1/2) u^(k+1) exp(-a s - b / s)``
    (the Jacobian ``s u`` included), and ``s``."""
    if y >= 0.0:
        t = math.log1p(math.exp(-y))
        log_s, log_u = -t, -y - t
    else:
        t = math.log1p(math.exp(y))
        log_s, log_u = y - t, -t
    s = math.exp(log_s)
    # -b / s + b = -b u / s = -b e^-y: the constant e^b is folded in without cancellation
    return -0.5 * log_s + (k + 1.0) * log_u - a * s - b * math.exp(-y), s


@jit
def log_mixing_integral(a, b, k):
    """``(ln I, E[s])`` for ``I = e^b int_0^1 s^(-3/2) (1-s)^k exp(-a s - b / s) ds`` (the
    factor ``e^b`` folded into the integrand as ``exp(-b (1-s) / s)``, so that large ``b`` does not
    cancel) and the mean of ``s`` under the normalised integrand.

    Trapezoidal rule on the logit scale ``y`` (the integrand is smooth and decays at least
    exponentially at both ends, where the rule converges geometrically), centred on the mode,
    with a step of 1/16 of the local scale ``1 / sqrt(-d^2 ln g / dy^2)`` at the mode, walked
    outwards until the log integrand is :data:`_QUADRATURE_DEPTH` below its maximum.
    """
    s_mode, u_mode = mixing_mode(a, b, k + 1.0, 0.5)
    y_mode = math.log(s_mode) - math.log(u_mode)
    top, _ = _log_integrand(y_mode, a, b, k)
    probe = 1e-3 * max(1.0, abs(y_mode))
    left, _ = _log_integrand(y_mode - probe, a, b, k)
    right, _ = _log_integrand(y_mode + probe, a, b, k)
    curvature = (2.0 * top - left - right) / (probe * probe)
    scale = 1.0 / math.sqrt(curvature) if curvature > 0.0 else 1.0
    step = min(scale / 16.0, 0.25)
    total = 1.0  # the node at the mode, relative to exp(top)
    first = s_mode
    for direction in (-1.0, 1.0):
        y = y_mode
        while True:
            y += direction * step
            value, s = _log_integrand(y, a, b, k)
            term = math.exp(value - top)
            total += term
            first += term * s
            if value < top - _QUADRATURE_DEPTH or abs(y) > 800.0:
                break
    return top + math.log(total * step), first / total


@parallel_jit
def log_normalizer_nodes(deltas, epsilon, bandwidth, dim, values, slopes):
    """``ln Z(delta)`` and ``d ln Z / d delta`` at each of ``deltas`` for the component mass
    ``Z(delta) = E[exp(-epsilon ||delta e_1 + h G||)]``, ``G ~ N(0, I_dim)``."""
    b = 0.5 * (epsilon * bandwidth) ** 2
    k = 0.5 * (dim - 1.0)
    constant = math.log(epsilon * bandwidth / math.sqrt(2.0 * math.pi))
    for j in prange(deltas.shape[0]):
        delta = deltas[j]
        log_integral, mean_s = log_mixing_integral(0.5 * (delta / bandwidth) ** 2, b, k)
        values[j] = constant + log_integral
        slopes[j] = -delta / (bandwidth * bandwidth) * mean_s


@jit
def hermite(delta, spacing, values, slopes):
    """Cubic Hermite interpolation of a table on the uniform grid ``j * spacing``."""
    position = delta / spacing
    j = min(int(position), values.shape[0] - 2)
    theta = position - j
    one = 1.0 - theta
    return (
        (1.0 + 2.0 * theta) * one * one * values[j]
        + theta * one * one * spacing * slopes[j]
        + theta * theta * (3.0 - 2.0 * theta) * values[j + 1]
        - theta * theta * one * spacing * slopes[j + 1]
    )


@jit
def squared_distances_to(center, references_t, squared):
    """``squared[v] = ||mu_v - c||^2`` for every reference point (columns of ``references_t``),
    blocked as in the KDE sum."""
    n_points = references_t.shape[1]
    for start in range(0, n_points, KDE_BLOCK):
        stop = min(start + KDE_BLOCK, n_points)
        block_squared_distances(center, references_t, start, stop, squared[start:stop])


@jit
def log_weights_from_squared(squared, spacing, values, slopes, out):
    """``out[v] = ln Z(sqrt(squared[v]))``, interpolated in the table."""
    for v in range(squared.shape[0]):
        out[v] = hermite(math.sqrt(squared[v]), spacing, values, slopes)


@jit
def component_log_weights(center, references_t, spacing, values, slopes, out, squared):
    """``out[v] = ln Z(||mu_v - c||)`` for every reference point (columns of ``references_t``),
    interpolated in the table; ``squared[v]`` receives ``||mu_v - c||^2``."""
    squared_distances_to(center, references_t, squared)
    log_weights_from_squared(squared, spacing, values, slopes, out)


@jit
def inverse_gaussian(rng, mean, shape):
    """One inverse Gaussian draw (Michael, Schucany and Haas 1976), written without the
    cancellation of the textbook form: ``x = mean / (1 + phi + sqrt(phi (2 + phi)))`` with
    ``phi = mean N^2 / (2 shape)``; then ``mean^2 / x`` with probability ``x / (mean + x)``."""
    normal = rng.standard_normal()
    phi = mean * normal * normal / (2.0 * shape)
    x = mean / (1.0 + phi + math.sqrt(phi * (2.0 + phi)))
    if rng.random() * (mean + x) <= mean:
        return x
    return mean * (mean / x)


@jit
def mixing_envelopes(a, b, k):
    """Both rejection envelopes of the mixing law at the mode, and their log masses.

    Returns ``(s0, u0, log_mass_ig, a_ig, log_mass_gamma, rate)``:

    * inverse Gaussian in ``s``: the concave ``k ln u`` is bounded by its tangent at ``u0``, so
      the law is below ``C s^(-3/2) exp(-(a + k / u0) s - b / s)`` (``C = u0^k e^(k s0 / u0)``),
      an inverse Gaussian with mean ``sqrt(b / a')`` and shape ``2 b``; valid for every input.
    * gamma in ``u``: for ``b >= 3/4`` the part ``-3/2 ln(1-u) + a u - b / (1-u)`` is concave in
      ``u`` and is bounded by its tangent at ``u0``, leaving ``u^k e^(-rate u)``, a
      Gamma(k + 1, 1 / rate) law (exponential for ``k = 0``, where the mode can sit at ``u = 0``
      and the inverse Gaussian envelope puts most of its mass beyond ``s = 1``);
      ``log_mass_gamma = inf`` where it does not apply (``b < 3/4`` or ``rate <= 0``).
    """
    s0, u0 = mixing_mode(a, b, k, 1.5)
    a_ig = a + k / u0
    log_mass_ig = k * math.log(u0) + k * s0 / u0 + 0.5 * math.log(math.pi / b)
    log_mass_ig -= 2.0 * math.sqrt(a_ig * b)
    log_mass_gamma = np.inf
    rate = 0.0
    if b >= 0.75:
        rate = -(1.5 / s0 + a - b / (s0 * s0))
        if rate > 0.0:
            psi = -1.5 * math.log(s0) + a * u0 - b / s0
            log_mass_gamma = psi + rate * u0 - a + math.lgamma(k + 1.0) - (k + 1.0) * math.log(rate)
    return s0, u0, log_mass_ig, a_ig, log_mass_gamma, rate


@jit
def sample_mixing_weight(rng, a, b, k, budget):
    """Exact draw of ``u = 1 - s`` from the mixing law by rejection from the smaller envelope of
    :func:`mixing_envelopes`. Returns ``(u, proposals, accepted)``.

    ``budget <= 0``: propose until acceptance (exact). ``budget > 0``: exactly ``budget``
    proposals are drawn and tested whatever happens (constant work); the first accepted one is
    returned, or the envelope's mode ``u0`` when none was (probability at most
    ``(1 - acceptance)^budget``).
    """
    s0, u0, log_mass_ig, a_ig, log_mass_gamma, rate = mixing_envelopes(a, b, k)
    use_gamma = log_mass_gamma < log_mass_ig
    mean = math.sqrt(b / a_ig) if a_ig > 0.0 else np.inf
    psi0 = -1.5 * math.log(s0) + a * u0 - b / s0
    chosen = u0
    accepted = False
    proposals = 0
    while budget <= 0 or proposals < budget:
        proposals += 1
        if use_gamma:
            u = rng.gamma(k + 1.0, 1.0 / rate)
            log_ratio = -np.inf
            if u < 1.0:
                s = 1.0 - u
                psi = -1.5 * math.log(s) + a * u - b / s
                log_ratio = psi - psi0 + rate * (u - u0)
        else:
            if a_ig > 0.0:
                s = inverse_gaussian(rng, mean, 2.0 * b)
            else:  # a Levy law: k = 0 and a = 0
                normal = rng.standard_normal()
                s = 2.0 * b / (normal * normal)
            u = 1.0 - s
            log_ratio = -np.inf
            if s < 1.0:
                log_ratio = k * (math.log1p(-s) - math.log(u0)) + k * (s - s0) / u0
        if not accepted and math.log(rng.random()) < log_ratio:
            chosen = u
            accepted = True
            if budget <= 0:
                break
    return chosen, proposals, accepted


@jit
def mixture_cumulative(
    center, references_t, spacing, values, slopes, log_weights, squared, cumulative
):
    """Component masses of the tilt-1 target around ``center``: ``log_weights[v] = ln Z_v``,
    ``squared[v] = ||mu_v - c||^2``, ``cumulative`` their running sum relative to the largest
    one. Returns ``ln sum_v Z_v``."""
    squared_distances_to(center, references_t, squared)
    return cumulative_from_squared(squared, spacing, values, slopes, log_weights, cumulative)


@jit
def cumulative_from_squared(squared, spacing, values, slopes, log_weights, cumulative):
    """:func:`mixture_cumulative` from known squared distances ``squared[v] = ||mu_v - c||^2``:
    the component log masses of one table, their running sum; returns ``ln sum_v Z_v``."""
    log_weights_from_squared(squared, spacing, values, slopes, log_weights)
    top = -np.inf
    for v in range(log_weights.shape[0]):
        top = max(top, log_weights[v])
    total = 0.0
    for v in range(log_weights.shape[0]):
        total += math.exp(log_weights[v] - top)
        cumulative[v] = total
    return top + math.log(total)


@jit
def draw_tilt_one(rng, center, references, cumulative, squared, bandwidth, b, k, budget, point):
    """One draw of the tilt-1 target into ``point``: a component by inverse CDF, its mixing
    weight ``u`` exactly (:func:`sample_mixing_weight`), then ``x ~ N(c + u (mu - c), u h^2 I)``.
    Returns ``(proposals, accepted)`` of the mixing-weight sampler."""
    n_points = references.shape[0]
    target = rng.random() * cumulative[n_points - 1]
    v = min(np.searchsorted(cumulative, target, side="right"), n_points - 1)
    a = squared[v] / (2.0 * bandwidth * bandwidth)
    u, proposals, accepted = sample_mixing_weight(rng, a, b, k, budget)
    spread = bandwidth * math.sqrt(u)
    normals = rng.standard_normal(center.shape[0])
    for j in range(center.shape[0]):
        point[j] = center[j] + u * (np.float64(references[v, j]) - center[j]) + spread * normals[j]
    return proposals, accepted


@jit
def tilt_one_task(
    rng,
    center,
    references,
    references_t,
    bandwidth,
    epsilon,
    spacing,
    values,
    slopes,
    budget,
    points,
    proposals,
    failures,
):
    """Exact draws of ``exp(-epsilon ||x - center||) p(x)`` for ``points.shape[0]`` tokens of one
    word: one pass over the reference points for the component masses, then per token one
    component and one mixing weight (no prior evaluation per token)."""
    n_points = references.shape[0]
    log_weights = np.empty(n_points)
    squared = np.empty(n_points)
    cumulative = np.empty(n_points)
    mixture_cumulative(
        center, references_t, spacing, values, slopes, log_weights, squared, cumulative
    )
    b = 0.5 * (epsilon * bandwidth) ** 2
    k = 0.5 * (center.shape[0] - 1.0)
    for i in range(points.shape[0]):
        count, accepted = draw_tilt_one(
            rng, center, references, cumulative, squared, bandwidth, b, k, budget, points[i]
        )
        proposals[i] = count
        failures[i] = not accepted


@jit
def two_logsumexps(position, references_t, first_scale, second_scale):
    """``(ln sum_v exp(-first_scale q_v), ln sum_v exp(-second_scale q_v))`` with
    ``q_v = ||position - mu_v||^2`` (columns of ``references_t``), in one blocked pass."""
    n_points = references_t.shape[1]
    scratch = np.empty(KDE_BLOCK)
    smallest = np.inf
    for start in range(0, n_points, KDE_BLOCK):
        stop = min(start + KDE_BLOCK, n_points)
        block_squared_distances(position, references_t, start, stop, scratch)
        for r in range(stop - start):
            smallest = min(smallest, scratch[r])
    first = 0.0
    second = 0.0
    same = second_scale == first_scale  # the prior's own density: one exp per point
    for start in range(0, n_points, KDE_BLOCK):
        stop = min(start + KDE_BLOCK, n_points)
        block_squared_distances(position, references_t, start, stop, scratch)
        for r in range(stop - start):
            excess = scratch[r] - smallest
            term = math.exp(-first_scale * excess)
            first += term
            second += term if same else math.exp(-second_scale * excess)
    return (
        math.log(first) - first_scale * smallest,
        math.log(second) - second_scale * smallest,
    )


@jit
def _logaddexp(first, second):
    """``ln(e^first + e^second)`` for finite arguments."""
    top = max(first, second)
    return top + math.log(math.exp(first - top) + math.exp(second - top))


@jit
def tilted_rejection_task(
    rng,
    center,
    references,
    references_t,
    bandwidth,
    epsilon,
    tilt,
    rhos,
    spacings,
    values,
    slopes,
    log_laplace_mass,
    points,
    proposals,
):
    """Exact draws of ``exp(-epsilon ||x - c||) p(x)^tilt`` for ``0 < tilt < 1`` by rejection.

    A family of envelopes, one per ``rho`` in ``rhos`` (``tilt <= rho <= 1``), each dominating
    the target everywhere; the one of smallest mass is used for the word (the choice does not
    change the law). With ``mu = tilt / rho``:

    * subadditivity, ``(sum_v a_v)^rho <= sum_v a_v^rho``, and ``N(x; mu_v, h^2)^rho`` being a
      Gaussian of bandwidth ``h / sqrt(rho)`` up to a constant: ``p^rho <= C_rho q_rho`` with
      ``q_rho`` the prior at bandwidth ``h / sqrt(rho)`` and
      ``C_rho = n^(1-rho) (2 pi h^2)^(-d rho / 2) (2 pi h^2 / rho)^(d / 2)``;
    * Young's inequality, ``y^mu k^(1-mu) <= mu y + (1 - mu) k``, with ``y = q_rho`` and
      ``k = Z_1(q_rho) / L``: ``p^tilt = (p^rho)^mu <= C_rho^mu k^mu (mu q_rho / k + 1 - mu)``.

    Times ``exp(-epsilon ||x - c||)`` this is the mixture ``mu * (exact tilt-1 law of q_rho) +
    (1 - mu) * (Laplace noise)`` with mass ``C_rho^mu Z_1(q_rho)^mu L^(1-mu)``. ``rho = tilt``
    is the pure bandwidth envelope, ``rho = 1`` the pure mixture with the prior itself.
    ``spacings[r], values[r], slopes[r]`` is the ``ln Z`` table of bandwidth
    ``h / sqrt(rhos[r])``. Returns ``(r, log_mass)``; ``proposals[i]`` counts the proposals
    of token ``i``.
    """
    n_points = references.shape[0]
    dim = center.shape[0]
    log_n = math.log(n_points)
    log_kernel = 0.5 * dim * math.log(2.0 * math.pi * bandwidth * bandwidth)
    log_weights = np.empty(n_points)
    squared = np.empty(n_points)
    cumulative = np.empty(n_points)
    best = -1
    best_mass = np.inf
    best_log_z = 0.0
    squared_distances_to(center, references_t, squared)  # once, for every envelope
    for r in range(rhos.shape[0]):
        rho = rhos[r]
        log_z = (
            cumulative_from_squared(
                squared, spacings[r], values[r], slopes[r], log_weights, cumulative
            )
            - log_n
        )  # fmt: skip
        log_c = (1.0 - rho) * log_n + (1.0 - rho) * log_kernel - 0.5 * dim * math.log(rho)
        mu = tilt / rho
        mass = mu * (log_c + log_z) + (1.0 - mu) * log_laplace_mass
        if mass < best_mass:
            best, best_mass, best_log_z = r, mass, log_z
    rho = rhos[best]
    mu = tilt / rho
    cumulative_from_squared(
        squared, spacings[best], values[best], slopes[best], log_weights, cumulative
    )
    wide = bandwidth / math.sqrt(rho)
    log_c = (1.0 - rho) * log_n + (1.0 - rho) * log_kernel - 0.5 * dim * math.log(rho)
    log_kappa = best_log_z - log_laplace_mass
    log_wide_kernel = 0.5 * dim * math.log(2.0 * math.pi * wide * wide)
    scale = 0.5 / (bandwidth * bandwidth)
    log_mu = math.log(mu)
    log_rest = math.log1p(-mu) if mu < 1.0 else -np.inf
    for i in range(points.shape[0]):
        point = points[i]
        count = 0
        while True:
            count += 1
            _draw_mixture_proposal(
                rng, center, references, cumulative, squared, wide, epsilon, mu, point
            )
            close, far = two_logsumexps(point, references_t, scale, rho * scale)
            log_p = close - log_n - log_kernel
            log_q = far - log_n - log_wide_kernel
            if mu >= 1.0:
                log_accept = tilt * log_p - log_c - log_q
            else:
                log_accept = (
                    tilt * log_p
                    - mu * (log_c + log_kappa)
                    - _logaddexp(log_mu + log_q - log_kappa, log_rest)
                )
            if math.log(rng.random()) < log_accept:
                break
        proposals[i] = count
    return best, best_mass


@parallel_jit
def interpolate_table(deltas, spacing, values, slopes, out):
    """:func:`hermite` at every entry of ``deltas``."""
    for i in prange(deltas.shape[0]):
        out[i] = hermite(deltas[i], spacing, values, slopes)


@parallel_jit
def mixing_acceptance_many(a_values, b, k, out):
    """Acceptance probability of one proposal of :func:`sample_mixing_weight` for each ``a``."""
    for i in prange(a_values.shape[0]):
        _, _, log_mass_ig, _, log_mass_gamma, _ = mixing_envelopes(a_values[i], b, k)
        log_integral, _ = log_mixing_integral(a_values[i], b, k)
        out[i] = math.exp(log_integral - b - min(log_mass_ig, log_mass_gamma))


@jit
def _draw_mixture_proposal(
    rng, center, references, cumulative, squared, bandwidth, epsilon, alpha, point
):
    """A draw of ``alpha * (exact tilt-1 law) + (1 - alpha) * (Laplace noise around center)``."""
    dim = center.shape[0]
    if alpha >= 1.0 or rng.random() < alpha:
        b = 0.5 * (epsilon * bandwidth) ** 2
        draw_tilt_one(
            rng, center, references, cumulative, squared, bandwidth, b, 0.5 * (dim - 1.0), 0, point
        )
    else:
        noise = laplace_noise(rng, dim, epsilon)
        for j in range(dim):
            point[j] = center[j] + noise[j]


@jit
def _mixture_log_weight(point, references_t, bandwidth, tilt, alpha, log_z1, log_laplace_mass):
    """``ln(pi / q)`` up to a constant: ``tilt ln p - ln(alpha p / Z_1 + (1 - alpha) / L)``."""
    n_points = references_t.shape[1]
    scale = 0.5 / (bandwidth * bandwidth)
    close, _ = two_logsumexps(point, references_t, scale, scale)
    log_p = (
        close
        - math.log(n_points)
        - 0.5 * point.shape[0] * math.log(2.0 * math.pi * bandwidth * bandwidth)
    )
    first = math.log(alpha) + log_p - log_z1
    if alpha >= 1.0:
        return tilt * log_p - first
    return tilt * log_p - _logaddexp(first, math.log1p(-alpha) - log_laplace_mass)


@jit
def certified_chain_task(
    rng,
    center,
    references,
    references_t,
    bandwidth,
    epsilon,
    tilt,
    alpha,
    spacing,
    values,
    slopes,
    log_z1,
    log_laplace_mass,
    n_steps,
    points,
    accepted,
):
    """Independence Metropolis–Hastings for ``exp(-epsilon ||x - c||) p(x)^tilt`` with the
    proposal ``q = alpha * (exact tilt-1 law) + (1 - alpha) * (Laplace noise)``, started at a
    draw of ``q`` and run ``n_steps`` steps per token. The Laplace factor cancels in
    ``pi / q``, so each step costs one prior evaluation."""
    n_points = references.shape[0]
    log_weights = np.empty(n_points)
    squared = np.empty(n_points)
    cumulative = np.empty(n_points)
    mixture_cumulative(
        center, references_t, spacing, values, slopes, log_weights, squared, cumulative
    )
    proposal = np.empty(center.shape[0])
    for i in range(points.shape[0]):
        point = points[i]
        _draw_mixture_proposal(
            rng, center, references, cumulative, squared, bandwidth, epsilon, alpha, point
        )
        current = _mixture_log_weight(
            point, references_t, bandwidth, tilt, alpha, log_z1, log_laplace_mass
        )
        count = 0
        for _ in range(n_steps):
            _draw_mixture_proposal(
                rng, center, references, cumulative, squared, bandwidth, epsilon, alpha, proposal
            )
            candidate = _mixture_log_weight(
                proposal, references_t, bandwidth, tilt, alpha, log_z1, log_laplace_mass
            )
            if math.log(rng.random()) < candidate - current:
                point[:] = proposal
                current = candidate
                count += 1
        accepted[i] = count
