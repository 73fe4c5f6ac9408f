"""Diagnostics: the summary table against ArviZ, the verdict and its warning, the figures."""

from __future__ import annotations

import warnings

import arviz_stats as azs
import numpy as np
import pytest

import densitydp as dd


def _result(draws: np.ndarray, **extras: np.ndarray) -> dd.ChainResult:
    chains, n = draws.shape[:2]
    return dd.ChainResult(
        draws=draws,
        logdensity=np.zeros((chains, n)),
        accepted=np.ones((chains, n), dtype=bool),
        step_size=np.ones(chains),
        proposal="random_walk",
        n_warmup=0,
        seed={"entropy": 0, "spawn_key": []},
        extras=extras,
    )


def test_summary_uses_arviz_with_tail_probabilities_005_095():
    draws = np.random.default_rng(0).normal(size=(4, 500, 2))
    table = dd.summary(_result(draws, radius=draws[..., 0] ** 2))
    assert list(table.index) == ["position[0]", "position[1]", "radius"]
    assert list(table.columns) == ["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean"]
    first = draws[..., 0]
    assert table.loc["position[0]", "ess_tail"] == pytest.approx(
        float(azs.ess(first, method="tail", prob=(0.05, 0.95)))
    )
    assert table.loc["position[0]", "ess_tail"] != pytest.approx(
        float(azs.ess(first, method="tail", prob=(0.11, 0.89)))
    )
    assert table.loc["position[0]", "r_hat"] == pytest.approx(float(azs.rhat(first)))
    assert table.loc["radius", "mean"] == pytest.approx((first**2).mean())
    assert list(dd.summary(_result(draws), var_names=["position"]).index)[-1] == "position[1]"
    with pytest.raises(ValueError, match="`var_names` must name variables"):
        dd.summary(_result(draws), var_names=["nothing"])


def test_diagnose_passes_good_chains_and_warns_on_bad_ones():
    good = np.random.default_rng(1).normal(size=(4, 1000, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = dd.diagnose(_result(good))
    assert verdict.converged and "converged" in str(verdict)
    stuck = good + np.arange(4)[:, None, None]  # chains centred at 0, 1, 2, 3
    with pytest.warns(dd.ConvergenceWarning, match="R-hat of position"):
        verdict = dd.diagnose(_result(stuck))
    assert not verdict.converged and verdict.max_r_hat > 1.01
    sticky = np.cumsum(np.random.default_rng(2).normal(size=(4, 300, 1)), axis=1) * 0.01
    with pytest.warns(dd.ConvergenceWarning, match="effective sample size"):
        dd.diagnose(_result(sticky))
    with pytest.warns(dd.ConvergenceWarning, match="at least 4 chains"):
        dd.diagnose(_result(good[:2]))


def test_plots_are_saved_atomically(tmp_path):
    pytest.importorskip("arviz_plots")
    draws = np.random.default_rng(3).normal(size=(4, 200, 3))
    result = _result(draws, radius=np.abs(draws[..., 0]))
    for plot, name in ((dd.plot_trace, "trace.png"), (dd.plot_rank, "rank.png")):
        figure = plot(result, path=tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1_000
        assert figure.axes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank.png", "trace.png"]


def test_trace_and_rank_plots_draw_on_given_axes():
    pytest.importorskip("arviz_plots")
    import matplotlib.pyplot as plt

    draws = np.random.default_rng(3).normal(size=(4, 200, 3))
    result = _result(draws, radius=np.abs(draws[..., 0]))
    for plot in (dd.plot_trace, dd.plot_rank):
        count = len(plot(result).axes)  # on its own figure: the number of panels
        figure, axes = plt.subplots(1, count + 1)
        assert plot(result, ax=axes[:count]) is figure
        assert all(axis.has_data() for axis in axes[:count]) and not axes[count].has_data()
        with pytest.raises(TypeError, match=f"`ax` must hold {count} matplotlib Axes"):
            plot(result, ax=axes)
    with pytest.raises(TypeError, match="`ax` must be matplotlib Axes"):
        dd.plot_trace(result, ax=["left"])
    plt.close("all")


def test_chains_that_never_move_are_reported_not_crashed():
    frozen = np.ones((4, 200, 2))
    table = dd.summary(_result(frozen))
    assert np.isnan(table["r_hat"]).all()
    with pytest.warns(dd.ConvergenceWarning, match="R-hat of position\\[0\\] is undefined"):
        verdict = dd.diagnose(_result(frozen))
    assert not verdict.converged and np.isnan(verdict.max_r_hat)
    assert "max R-hat undefined" in str(verdict) and "never vary" in str(verdict)


@pytest.mark.parametrize(
    ("shape", "reason", "not_said"),
    [
        ((1, 500, 2), "only 1 chain: R-hat compares chains", "never vary"),
        ((4, 3, 2), "only 3 draw(s) per chain", "never vary"),
        ((2, 2, 2), "only 2 draw(s) per chain", "never vary"),
    ],
)
def test_too_few_chains_or_draws_are_explained_as_such(shape, reason, not_said):
    moving = np.random.default_rng(0).normal(size=shape)
    with pytest.warns(dd.ConvergenceWarning):
        verdict = dd.diagnose(_result(moving))
    text = str(verdict)
    assert reason in text and not_said not in text and "inf" not in text
    assert not verdict.converged
