"""``make demo`` / ``densitydp demo``: a tour of the bundled GloVe space."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._rng import as_generator
from .embeddings import EmbeddingSpace, load_glove
from .mechanisms import TruncatedGumbel, build_mechanism
from .neighbors import _cached_widths
from .text import TextCodec

PARAGRAPH = (
    "The old king walked to the river with Mrs Nowakowska, where his daughter was reading a "
    "long letter."
)
#: Epsilons shown per mechanism, from docs/choosing_epsilon.md: those at which the median N_w
#: (fraction of draws returning the word itself) over frequent words is 0.9, 0.5 and 0.1 on
#: the 50,000 most frequent alphabetic GloVe words (benchmarks/choose_epsilon.py).
TOUR = (
    ("laplace", (11.2, 7.8, 5.2)),
    ("exponential", (4.4, 3.6, 2.8)),
    ("tem", (4.4, 3.6, 2.8)),
    # N_w 0.9 is out of reach and 0.1 below the smallest meaningful epsilon (76): its N_w stays
    # near 0.19 from 76 to the thousands and reaches 0.5 only at 6.7e7 (docs/choosing_epsilon.md)
    ("gumbel", (6.7e7, 1_000.0, 80.0)),
    # density-aware (tilt 1, exact sampler, KDE prior on every word; see docs/density.md)
    ("density-laplace", (5.7, 4.0, 2.8)),
    ("prior-exponential", (8.1, 6.9, 5.8)),
)
TOUR_WORDS = 50_000
COMMON_WORDS = ("the", "king", "good", "city", "france", "music", "quixotic")
SENTENCE = "The King of France loved Music."
#: Local density radius: distance to the K-th neighbour (the word itself not counted).
K = 10
N_REFERENCE = 2_000


def run_demo(seed: int = 0, echo: Callable[[str], object] = print) -> None:
    started = time.perf_counter()
    space = load_glove()
    echo(f"{space!r}\n")

    # lazy mode: exact rows only for the words we look at and a random reference sample
    codec = TextCodec(space.vocabulary)
    encoded = codec.encode(SENTENCE)
    generator = as_generator(seed)
    reference = generator.choice(len(space), size=N_REFERENCE, replace=False)
    common = space.ids(COMMON_WORDS)
    table = space.neighbors(
        K + 1,
        word_ids=np.concatenate([common, reference, encoded.word_ids[encoded.known]]),
        progress=False,
    )
    reference_radius = table.rows(reference)[1][:, K]
    order = np.argsort(reference_radius)
    ids = np.concatenate([common, reference[order[:3]], reference[order[-3:]]])
    words = space.words(ids)

    echo(f"Exact nearest neighbours in {len(space):,} words x {space.dim} dims, and local density")
    echo(
        f"(distance to the {K}th neighbour; percentile among {N_REFERENCE:,} random words, "
        f"seed {seed}: low = dense)\n"
    )
    echo(f"{'word':<14} {'r_10':>6} {'pct':>4}   nearest neighbours (distance)")
    for position, (word, word_id) in enumerate(zip(words, ids, strict=True)):
        if position == len(common):
            echo("-- the densest and the sparsest three of the random sample:")
        neighbour_ids, distances = table.rows([word_id])
        radius = float(distances[0, K])
        percentile = 100.0 * float(np.mean(reference_radius < radius))
        shown = ", ".join(
            f"{space.words(int(n))} ({d:.2f})"
            for n, d in zip(neighbour_ids[0, 1:6], distances[0, 1:6], strict=True)
        )
        echo(f"{word:<14} {radius:6.2f} {percentile:4.0f}   {shown}")

    echo("\nText is split losslessly; lookup ignores case and replacements keep it:")
    assert table.word_ids is not None  # a partial table
    nearest_other = dict(zip(table.word_ids.tolist(), table.ids[:, 1].tolist(), strict=True))
    mapped = codec.map_texts(SENTENCE, lambda a: np.array([nearest_other[i] for i in a.tolist()]))
    echo(f"  input : {SENTENCE}")
    echo(f"  pieces: {encoded.pieces}")
    echo(f"  each known word -> its nearest other word: {mapped}")

    tour_space = _perturbation_tour(seed, echo)
    _audit_tour(tour_space, seed, echo)

    if _cached_widths(space.fingerprint):
        echo(
            f"\nmin distance {space.min_distance():.4f}, diameter {space.max_distance():.4f} "
            "(exact, from the cached all-pairs pass)"
        )
    else:
        echo(
            "\nThe exact min distance and diameter of all 400k words need the all-pairs pass "
            "(minutes, cached afterwards): run `densitydp info`."
        )
    echo(f"\ndone in {time.perf_counter() - started:.1f} s")


def _perturbation_tour(seed: int, echo: Callable[[str], object]) -> EmbeddingSpace:
    from .calibration import calibrate_epsilon
    from .mechanisms import TruncatedExponential
    from .text import perturb_text

    space = load_glove(top=TOUR_WORDS, words="alpha")
    echo(
        f"\nPerturbing a paragraph on the {TOUR_WORDS:,} most frequent alphabetic GloVe words "
        f"(seed {seed});\nepsilons where the median N_w over frequent words is 0.9, 0.5, 0.1; "
        "words outside the vocabulary are masked:"
    )
    echo(f"{'mechanism':<17} {'epsilon':>7}  output")
    echo(f"{'(input)':<17} {'':>7}  {PARAGRAPH}")
    bounds = []
    for name, epsilons in TOUR:
        for epsilon in epsilons:
            mechanism = build_mechanism(name, space, epsilon)
            output = perturb_text(PARAGRAPH, mechanism, rng=seed)
            echo(f"{name:<17} {epsilon:>7g}  {output}")
        bounds.append(f"  {name:<17} {mechanism.privacy_bound()}")
        if isinstance(mechanism, TruncatedGumbel):
            bounds.append(
                f"  {'':<17} smallest meaningful epsilon here: {mechanism.min_epsilon:.1f}"
            )
    echo(
        "(gumbel: N_w 0.9 and 0.1 are out of its reach on this space; shown at 6.7e7, its "
        "epsilon for N_w 0.5, and at 1,000 and 80, where N_w stays near 0.19)"
    )
    echo("\nClaimed guarantees at the smallest epsilon shown (per word):")
    for line in bounds:
        echo(line)

    echo("\nChoosing epsilon: TEM's epsilon for a median N_w of 0.5 (exact law, bisection):")
    calibration = calibrate_epsilon(TruncatedExponential, space, {"N_w": 0.5}, progress=False)
    echo(f"  {calibration}")
    _, report = perturb_text(PARAGRAPH, calibration.mechanism, rng=seed, return_report=True)
    echo("\nWhat one perturbed paragraph claims (PerturbationReport; each word is one draw):")
    for line in str(report).splitlines():
        echo(f"  {line}")
    return space


#: Where the demo saves its figures (relative to the current folder).
FIGURES = Path("densitydp-demo")


def _audit_tour(space: EmbeddingSpace, seed: int, echo: Callable[[str], object]) -> None:
    from .audit import audit, plausible_deniability, plot_plausible_deniability

    echo("\nA short audit of TEM (epsilon 5): 10 nearest pairs, 20,000 samples per word:")
    mechanism = build_mechanism("tem", space, 5.0)
    report = audit(mechanism, n_pairs=10, n_samples=20_000, rng=seed, progress=False)
    shown = report.table[["word", "other", "claimed", "exact_loss", "eps_lower", "testable"]]
    echo(shown.head(5).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    echo(report.verdict())

    echo("\nPlausible deniability at the middle epsilons of the tour (N_w 0.5 over the 200")
    echo("calibration words; Gumbel 1,000): median N_w and S_w over 50 other words x 200 draws:")
    words = as_generator(seed).choice(2_000, size=50, replace=False)
    tables = {}
    for name, epsilons in TOUR[:5]:
        epsilon = epsilons[1]
        table = plausible_deniability(
            build_mechanism(name, space, epsilon), words, n_samples=200, rng=seed
        )
        tables[f"{name} {epsilon:g}"] = table
        echo(
            f"  {name:<15} epsilon {epsilon:>5g}: N_w {table['N_w'].median():.3f}, "
            f"S_w {table['S_w'].median():g}"
        )
    FIGURES.mkdir(exist_ok=True)
    report.plot(FIGURES / "audit_tem.png")
    plot_plausible_deniability(tables, FIGURES / "plausible_deniability.png")
    echo(f"\nfigures saved in {FIGURES.resolve()}: audit_tem.png, plausible_deniability.png")
