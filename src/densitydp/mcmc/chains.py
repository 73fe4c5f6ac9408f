"""Running Metropolis–Hastings chains: :func:`run_chains` and its :class:`ChainResult`."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher
from tqdm.auto import tqdm

from .._rng import RNGLike, as_generator, seed_entropy, spawn
from .._validation import check_finite_array, check_int, check_number
from . import _kernels

__all__ = ["ChainResult", "IndependenceProposal", "run_chains"]

#: Progress-bar updates per chain (a chain runs in this many compiled chunks).
_CHUNKS = 20


@dataclass(frozen=True)
class IndependenceProposal:
    """A proposal ``q`` for independence Metropolis–Hastings: ``sample_fn(rng, args)`` returns a
    new position and ``logdensity_fn(position, args)`` returns ``ln q`` (up to a constant); both
    must be numba-compiled (``@numba.njit``)."""

    sample_fn: Any
    logdensity_fn: Any
    args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        _check_compiled(self.sample_fn, "sample_fn")
        _check_compiled(self.logdensity_fn, "logdensity_fn")
        if not isinstance(self.args, tuple):
            raise TypeError(f"`args` must be a tuple; got {type(self.args).__name__}.")


@dataclass(frozen=True)
class ChainResult:
    """Draws of several Metropolis–Hastings chains.

    Attributes
    ----------
    draws : ndarray, shape (n_chains, n_draws, dim)
        Positions after warm-up.
    logdensity : ndarray, shape (n_chains, n_draws)
        ``logdensity_fn`` at each draw.
    accepted : ndarray of bool, shape (n_chains, n_draws)
        Whether the step that produced each draw was accepted.
    step_size : ndarray, shape (n_chains,)
        Random-walk step size after warm-up (NaN for independence proposals).
    proposal : str
        ``"random_walk"`` or ``"independence"``.
    n_warmup : int
        Warm-up steps run (and discarded) before the draws.
    seed : dict
        Seed entropy of the generator the chains were spawned from.
    extras : dict of str to ndarray (n_chains, n_draws)
        Derived scalar quantities (for example a noise radius), diagnosed like the draws.
    """

    draws: np.ndarray
    logdensity: np.ndarray
    accepted: np.ndarray
    step_size: np.ndarray
    proposal: str
    n_warmup: int
    seed: dict[str, Any]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_chains(self) -> int:
        return int(self.draws.shape[0])

    @property
    def n_draws(self) -> int:
        return int(self.draws.shape[1])

    @property
    def dim(self) -> int:
        return int(self.draws.shape[2])

    @property
    def acceptance_rate(self) -> np.ndarray:
        """Fraction of accepted moves per chain, shape (n_chains,)."""
        return self.accepted.mean(axis=1)

    def __repr__(self) -> str:
        rates = ", ".join(f"{r:.3f}" for r in self.acceptance_rate)
        return (
            f"ChainResult(proposal={self.proposal!r}, n_chains={self.n_chains}, "
            f"n_draws={self.n_draws}, dim={self.dim}, n_warmup={self.n_warmup}, "
            f"acceptance_rate=[{rates}])"
        )

    def variables(self) -> dict[str, np.ndarray]:
        """``{"position": draws, **extras}``: the quantities diagnostics look at."""
        return {"position": self.draws, **self.extras}

    def to_datatree(self) -> Any:
        """The chains as an ArviZ ``DataTree`` (``arviz_base.from_dict``): group ``posterior``
        with ``position`` (dims chain, draw, coordinate) and the extras, group ``sample_stats``
        with ``lp`` and ``accepted``; the seed and settings are attributes of ``posterior``."""
        from arviz_base import from_dict

        attrs = {
            "proposal": self.proposal,
            "n_warmup": self.n_warmup,
            "step_size": [float(s) for s in self.step_size],
            "seed_entropy": str(self.seed.get("entropy")),
            "seed_spawn_key": list(self.seed.get("spawn_key", [])),
            "library": "densitydp",
        }
        return from_dict(
            {
                "posterior": self.variables(),
                "sample_stats": {"lp": self.logdensity, "accepted": self.accepted},
            },
            dims={"position": ["coordinate"]},
            attrs={"posterior": attrs},
        )


def _check_compiled(function: Any, name: str) -> None:
    if not isinstance(function, Dispatcher):
        raise TypeError(
            f"`{name}` must be a numba-compiled function (decorate it with @numba.njit); "
            f"got {type(function).__name__}."
        )


def _call_compiled(function: Any, name: str, expects: str, *arguments: Any) -> Any:
    """Call a user's compiled function from Python once, so that a typing error surfaces here
    as a ``TypeError`` naming it (``expects`` describes the arguments), not inside a kernel."""
    from numba.core.errors import TypingError

    try:
        return function(*arguments)
    except TypingError as exc:
        first = str(exc).strip().splitlines()[0]
        raise TypeError(f"`{name}` could not be compiled for {expects}: {first}") from None


def _evaluate(logdensity_fn: Any, position: np.ndarray, args: tuple[Any, ...]) -> float:
    """``logdensity_fn(position, args)`` as a float, with errors that name the culprit."""
    value = _call_compiled(
        logdensity_fn, "logdensity_fn", "a float64 position and these `args`", position, args
    )
    if not isinstance(value, (float, int, np.floating, np.integer)):
        raise TypeError(f"`logdensity_fn` must return a float; got {type(value).__name__}.")
    return float(value)


def run_chains(
    logdensity_fn: Any,
    initial_positions: Any,
    *,
    args: tuple[Any, ...] = (),
    n_chains: int | None = None,
    n_draws: int = 1_000,
    n_warmup: int = 1_000,
    proposal: str | IndependenceProposal = "random_walk",
    step_size: float | None = None,
    rng: RNGLike = None,
    progress: bool | None = None,
    n_jobs: int | None = None,
) -> ChainResult:
    """Run Metropolis–Hastings chains in parallel on a numba-compiled log density.

    Parameters
    ----------
    logdensity_fn : numba dispatcher
        ``logdensity_fn(position, args) -> float``: the log target density up to a constant,
        compiled with ``@numba.njit``; ``position`` is a float64 1-D array and ``args`` the
        tuple given here (arrays and numbers). It may return ``-inf`` outside the support.
    initial_positions : array_like, shape (dim,) or (n_chains, dim)
        Starting points (one per chain, or one shared by all); each must have a finite log
        density. Over-dispersed starting points make R-hat meaningful.
    args : tuple
        Passed to ``logdensity_fn`` unchanged.
    n_chains : int, optional
        Default 4, or the number of rows of ``initial_positions``.
    n_draws, n_warmup : int
        Draws kept per chain, after ``n_warmup`` discarded steps.
    proposal : "random_walk" or IndependenceProposal
        ``random_walk``: Gaussian random walk, the step size adapted during warm-up only
        (Robbins–Monro towards an acceptance of 0.234) and fixed afterwards, so the kept draws
        come from a proper Markov chain. An :class:`IndependenceProposal` draws each move from
        its own density.
    step_size : float, optional
        Initial random-walk step size; default ``2.38 / sqrt(dim)``.
    rng : None, int or Generator
        One child generator is spawned per chain, so results depend only on the seed, never on
        ``n_jobs`` or the number of threads.
    progress : bool, optional
        Progress bar (tqdm); None shows it only when the run is long.
    n_jobs : int, optional
        Chains run at once (threads; the kernels release the GIL); default
        ``numba.get_num_threads()``.

    Returns
    -------
    ChainResult

    Notes
    -----
    The kernels are compiled for each distinct ``logdensity_fn`` the first time it is used in a
    process (3.3-3.6 s measured here): numba does not reuse cached machine code specialised on a
    function passed as an argument across processes.

    Examples
    --------
    >>> import numba
    >>> import numpy as np
    >>> import densitydp as dd
    >>> @numba.njit
    ... def logdensity(position, args):
    ...     return -0.5 * np.sum(position**2)
    >>> result = dd.run_chains(logdensity, np.zeros(2), n_draws=500, rng=0)
    >>> result.draws.shape
    (4, 500, 2)
    >>> result.acceptance_rate.round(3).tolist()
    [0.21, 0.218, 0.202, 0.22]
    """
    _check_compiled(logdensity_fn, "logdensity_fn")
    if not isinstance(args, tuple):
        raise TypeError(f"`args` must be a tuple; got {type(args).__name__}.")
    initial = check_finite_array(initial_positions, "initial_positions")
    if initial.ndim not in (1, 2) or initial.shape[-1] == 0:
        raise ValueError(
            f"`initial_positions` must have shape (dim,) or (n_chains, dim); got {initial.shape}."
        )
    if n_chains is None:
        n_chains = 4 if initial.ndim == 1 else initial.shape[0]
    n_chains = check_int(n_chains, "n_chains", minimum=1)
    if initial.ndim == 1:
        initial = np.tile(initial, (n_chains, 1))
    elif initial.shape[0] != n_chains:
        raise ValueError(
            f"`initial_positions` must have n_chains = {n_chains} rows; got {initial.shape[0]}."
        )
    n_draws = check_int(n_draws, "n_draws", minimum=1)
    n_warmup = check_int(n_warmup, "n_warmup", minimum=0)
    dim = initial.shape[1]
    if isinstance(proposal, str):
        if proposal != "random_walk":
            raise ValueError(
                f"`proposal` must be 'random_walk' or an IndependenceProposal; got {proposal!r}."
            )
    elif not isinstance(proposal, IndependenceProposal):
        raise TypeError(
            "`proposal` must be 'random_walk' or an IndependenceProposal; "
            f"got {type(proposal).__name__}."
        )
    if step_size is None:
        step_size = 2.38 / math.sqrt(dim)
    step_size = check_number(step_size, "step_size", minimum=0.0)
    n_jobs = numba.get_num_threads() if n_jobs is None else check_int(n_jobs, "n_jobs", minimum=1)
    if isinstance(proposal, IndependenceProposal):
        # one trial draw from a throwaway generator: a wrong shape fails here, not in numba
        trial = np.asarray(
            _call_compiled(
                proposal.sample_fn, "proposal.sample_fn", "a Generator and its `args`",
                np.random.default_rng(0), proposal.args,
            )
        )  # fmt: skip
        if trial.shape != (dim,) or not np.issubdtype(trial.dtype, np.floating):
            raise ValueError(
                f"`proposal.sample_fn` must return a float array of shape ({dim},); got "
                f"{trial.dtype} of shape {trial.shape}."
            )
    initial_logdensity = np.array([_evaluate(logdensity_fn, row, args) for row in initial])
    bad = np.flatnonzero(~np.isfinite(initial_logdensity))
    if bad.size:
        raise ValueError(
            f"`initial_positions` must have a finite log density; row {bad[0]} has "
            f"{initial_logdensity[bad[0]]}."
        )
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    children = spawn(generator, n_chains)
    draws = np.empty((n_chains, n_draws, dim))
    logdensities = np.empty((n_chains, n_draws))
    accepted = np.empty((n_chains, n_draws), dtype=np.bool_)
    final_steps = np.full(n_chains, np.nan)
    total = n_warmup + n_draws
    chunk = max(1, math.ceil(total / _CHUNKS))
    show = progress if progress is not None else n_chains * total * dim > 50_000_000
    bar = tqdm(total=n_chains * total, desc="MH chains", unit="step", disable=not show)
    lock = threading.Lock()

    def run_one(c: int) -> None:
        position, logdensity = initial[c].copy(), float(initial_logdensity[c])
        log_step = math.log(step_size)
        for first in range(0, total, chunk):
            steps = min(chunk, total - first)
            if isinstance(proposal, IndependenceProposal):
                position, logdensity = _kernels.run_independence(
                    children[c], logdensity_fn, args, proposal.sample_fn,
                    proposal.logdensity_fn, proposal.args, position, logdensity, first, steps,
                    n_warmup, draws[c], logdensities[c], accepted[c],
                )  # fmt: skip
            else:
                position, logdensity, log_step = _kernels.run_random_walk(
                    children[c], logdensity_fn, args, position, logdensity, log_step, first,
                    steps, n_warmup, draws[c], logdensities[c], accepted[c],
                )  # fmt: skip
            with lock:
                bar.update(steps)
        if not isinstance(proposal, IndependenceProposal):
            final_steps[c] = math.exp(log_step)

    try:
        with ThreadPoolExecutor(max_workers=min(n_jobs, n_chains)) as pool:
            list(pool.map(run_one, range(n_chains)))
    finally:
        bar.close()
    return ChainResult(
        draws=draws,
        logdensity=logdensities,
        accepted=accepted,
        step_size=final_steps,
        proposal="random_walk" if isinstance(proposal, str) else "independence",
        n_warmup=n_warmup,
        seed=seed,
    )
