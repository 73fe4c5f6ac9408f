"""Pure-numpy twins of the kernel-density kernels in ``densitydp._kernels``."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def log_density(queries, references, bandwidths, exclude=None):
    """``ln (1/n) sum_i N(q; r_i, h_i^2 I)`` for each query (``exclude[j]``: an index left out of
    the sum and the weights renormalised to ``n - 1``), by full float64 differences."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    references = np.asarray(references, dtype=np.float64)
    bandwidths = np.broadcast_to(np.asarray(bandwidths, dtype=np.float64), (len(references),))
    n, dim = references.shape
    out = np.empty(len(queries))
    for j, query in enumerate(queries):
        squared = ((references - query) ** 2).sum(axis=1)
        terms = (
            -squared / (2 * bandwidths**2)
            - dim * np.log(bandwidths)
            - 0.5 * dim * np.log(2 * np.pi)
        )
        keep = np.ones(n, dtype=bool)
        if exclude is not None and exclude[j] >= 0:
            keep[exclude[j]] = False
        out[j] = logsumexp(terms[keep]) - np.log(keep.sum())
    return out
