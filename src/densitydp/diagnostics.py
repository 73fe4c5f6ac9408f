"""Convergence diagnostics of Metropolis–Hastings chains, a thin layer over ArviZ.

Rank-normalised split R-hat, bulk and tail effective sample sizes (tail ESS at the 5 % and 95 %
quantiles, as Vehtari et al. 2021 recommend; ArviZ 1.x's own default is 0.11 / 0.89) and the
Monte Carlo standard error of the mean, from ``arviz_stats``. Good diagnostics show that chains
mix; they do not certify a privacy guarantee (see the density-aware guide).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import save_figure
from .mcmc import ChainResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ConvergenceWarning",
    "Diagnosis",
    "diagnose",
    "plot_rank",
    "plot_trace",
    "summary",
]

#: Thresholds of :func:`diagnose` (Vehtari et al. 2021).
RHAT_THRESHOLD = 1.01
ESS_PER_CHAIN = 100
TAIL_PROB = (0.05, 0.95)


class ConvergenceWarning(UserWarning):
    """The chains have not mixed well enough for their draws to be trusted."""


def _scalar_series(result: ChainResult, var_names: list[str] | None) -> dict[str, np.ndarray]:
    """Every scalar quantity of ``result`` as a (chain, draw) array, labelled
    ``position[3]`` / ``radius``."""
    if not isinstance(result, ChainResult):
        raise TypeError(f"`result` must be a ChainResult; got {type(result).__name__}.")
    variables = result.variables()
    if var_names is not None:
        unknown = [name for name in var_names if name not in variables]
        if unknown:
            raise ValueError(
                f"`var_names` must name variables of the result ({', '.join(variables)}); "
                f"got {unknown[0]!r}."
            )
        variables = {name: variables[name] for name in var_names}
    series: dict[str, np.ndarray] = {}
    for name, values in variables.items():
        if values.ndim == 2:
            series[name] = values
        else:
            for i in range(values.shape[2]):
                series[f"{name}[{i}]"] = values[:, :, i]
    return series


def summary(result: ChainResult, var_names: list[str] | None = None) -> pd.DataFrame:
    """Posterior summary per scalar quantity.

    Returns
    -------
    pandas.DataFrame
        One row per quantity (``position[i]`` and each extra), columns ``mean``, ``sd``,
        ``ess_bulk``, ``ess_tail`` (quantiles 0.05 / 0.95), ``r_hat`` (rank-normalised split) and
        ``mcse_mean``.
    """
    import arviz_stats as azs
    import pandas as pd

    series = _scalar_series(result, var_names)
    stacked = np.stack(list(series.values()), axis=-1)  # (chain, draw, quantity)
    # a quantity that never varies has an undefined R-hat: NaN in the table, explained by
    # diagnose, not a floating-point warning
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "mean": stacked.mean(axis=(0, 1)),
                "sd": stacked.std(axis=(0, 1), ddof=1),
                "ess_bulk": azs.ess(stacked, method="bulk"),
                "ess_tail": azs.ess(stacked, method="tail", prob=TAIL_PROB),
                "r_hat": azs.rhat(stacked, method="rank"),
                "mcse_mean": azs.mcse(stacked, method="mean"),
            },
            index=pd.Index(list(series), name="quantity"),
        )
    return table


@dataclass(frozen=True)
class Diagnosis:
    """Verdict of :func:`diagnose`."""

    converged: bool
    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_chains: int
    n_draws: int
    problems: tuple[str, ...]
    table: pd.DataFrame

    def __str__(self) -> str:
        r_hat = "undefined" if math.isnan(self.max_r_hat) else f"{self.max_r_hat:.4f}"
        head = (
            f"max R-hat {r_hat}, min bulk ESS {self.min_ess_bulk:.0f}, "
            f"min tail ESS {self.min_ess_tail:.0f} ({self.n_chains} chains x {self.n_draws} draws)"
        )
        if self.converged:
            return f"converged: {head}"
        return "NOT converged: " + head + "\n" + "\n".join(f"- {p}" for p in self.problems)


#: Draws per chain below which split R-hat and ESS are not defined.
MIN_DRAWS = 4


def diagnose(result: ChainResult, var_names: list[str] | None = None) -> Diagnosis:
    """Check the chains against the thresholds of Vehtari et al. (2021).

    Warns with :class:`ConvergenceWarning` (and returns ``converged=False``) when any R-hat
    exceeds 1.01 or any bulk or tail ESS is below 100 per chain; the message says, in plain
    words, what is wrong and what to do.
    """
    table = summary(result, var_names)
    n_chains, n_draws = result.n_chains, result.n_draws
    needed = ESS_PER_CHAIN * n_chains
    r_hat = table["r_hat"].to_numpy()
    # NaN (undefined) anywhere makes the maximum undefined: reported as such, with its reason
    max_r_hat = float("nan") if np.isnan(r_hat).any() else float(np.max(r_hat))
    min_bulk = float(np.min(np.nan_to_num(table["ess_bulk"].to_numpy(), nan=0.0)))
    min_tail = float(np.min(np.nan_to_num(table["ess_tail"].to_numpy(), nan=0.0)))
    problems = []
    undefined = list(table.index[np.isnan(r_hat)])
    if n_draws < MIN_DRAWS:
        problems.append(
            f"only {n_draws} draw(s) per chain: R-hat and ESS need at least {MIN_DRAWS} (each "
            "chain is split in halves). Run more draws."
        )
    elif n_chains < 2 and undefined:
        problems.append(
            "only 1 chain: R-hat compares chains and is undefined for one; run at least 4 "
            "chains from dispersed starting points."
        )
    elif undefined:
        constant = [q for q in undefined if not table.loc[q, "sd"] > 0]
        if constant:
            problems.append(
                f"R-hat of {constant[0]} is undefined: its draws never vary (the chains never "
                "moved, or the quantity is constant). Check the proposal and the starting points."
            )
        else:
            problems.append(f"R-hat of {undefined[0]} is undefined (not a number).")
    elif not max_r_hat <= RHAT_THRESHOLD:
        worst = table["r_hat"].idxmax()
        problems.append(
            f"R-hat of {worst} is {max_r_hat:.4f} > {RHAT_THRESHOLD}: the chains disagree, they "
            "have not forgotten their starting points or explore different regions. Run longer "
            "chains (more warm-up and draws) or use a better proposal."
        )
    if not min(min_bulk, min_tail) >= needed:
        worst = table[["ess_bulk", "ess_tail"]].fillna(0.0).min(axis=1).idxmin()
        problems.append(
            f"effective sample size of {worst} is {min(min_bulk, min_tail):.0f} < {needed} "
            f"({ESS_PER_CHAIN} per chain): the draws are too autocorrelated for stable "
            "estimates of the centre and the 5 % / 95 % tails. Run more draws."
        )
    if 2 <= n_chains < 4 or (n_chains == 1 and not undefined):
        problems.append(
            f"only {n_chains} chain(s): R-hat needs at least 4 chains to detect poor mixing."
        )
    diagnosis = Diagnosis(
        converged=not problems,
        max_r_hat=max_r_hat,
        min_ess_bulk=min_bulk,
        min_ess_tail=min_tail,
        n_chains=n_chains,
        n_draws=n_draws,
        problems=tuple(problems),
        table=table,
    )
    if problems:
        warnings.warn(str(diagnosis), ConvergenceWarning, stacklevel=2)
    return diagnosis


def _default_names(result: ChainResult) -> list[str]:
    return list(result.extras) if result.extras else ["position"]


def _plot(kind: str, result: ChainResult, var_names: list[str] | None, path: Any, ax: Any) -> Any:
    import arviz_plots as azp
    import matplotlib

    if not isinstance(result, ChainResult):
        raise TypeError(f"`result` must be a ChainResult; got {type(result).__name__}.")
    names = var_names or _default_names(result)
    tree = result.to_datatree()
    coords = {"coordinate": list(range(min(result.dim, 4)))} if "position" in names else None
    with matplotlib.rc_context({"figure.max_open_warning": 0}), _onto_axes(ax):
        plotter = azp.plot_trace if kind == "trace" else azp.plot_rank
        collection = plotter(tree, var_names=names, coords=coords, backend="matplotlib")
    figure = collection.viz["figure"].item()
    if path is not None:
        save_figure(figure, path)
    return figure


@contextlib.contextmanager
def _onto_axes(ax: Any) -> Iterator[None]:
    """Make arviz-plots draw on the given matplotlib Axes instead of a new figure: its grid
    factory (``arviz_plots.backend.matplotlib.create_plotting_grid``, looked up at each call)
    returns them, in order, while the plot is drawn. ``ax`` must hold one Axes per panel.

    Raises
    ------
    TypeError
        ``ax`` is not a sequence of matplotlib Axes, or holds the wrong number of them.
    """
    if ax is None:
        yield
        return
    import arviz_plots.backend.matplotlib as backend
    from matplotlib.axes import Axes

    given = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if not given or not all(isinstance(a, Axes) for a in given):
        raise TypeError(f"`ax` must be matplotlib Axes (one per panel); got {type(ax).__name__}.")
    original = backend.create_plotting_grid

    def grid(number: int, rows: int = 1, cols: int = 1, *args: Any, **kwargs: Any) -> Any:
        if len(given) != number:
            raise TypeError(
                f"`ax` must hold {number} matplotlib Axes for this plot ({rows} x {cols} "
                f"panels); got {len(given)}."
            )
        cells = np.full(rows * cols, None, dtype=object)
        cells[:number] = given
        return given[0].figure, cells.reshape(rows, cols)

    backend.create_plotting_grid = grid
    try:
        yield
    finally:
        backend.create_plotting_grid = original


def plot_trace(
    result: ChainResult,
    var_names: list[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    ax: Any = None,
) -> Any:
    """Trace plot (arviz-plots) of the extras (or the first 4 coordinates), on ``ax`` (one
    matplotlib Axes per panel, in arviz-plots' order; default a new figure); the figure is saved
    to ``path`` when given (atomically; format from the suffix). Returns the matplotlib
    figure."""
    return _plot("trace", result, var_names, path, ax)


def plot_rank(
    result: ChainResult,
    var_names: list[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    ax: Any = None,
) -> Any:
    """Rank plot (arviz-plots, fractional-rank ECDF per chain with its simultaneous envelope):
    chains that mix well are indistinguishable. On ``ax`` (one matplotlib Axes per panel;
    default a new figure); saved to ``path`` when given."""
    return _plot("rank", result, var_names, path, ax)
