"""Utility: corpus encoding round trip, classifiers on a synthetic task, semantic similarity,
privacy-utility curves and matching by N_w."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import densitydp as dd
from densitydp.datasets import Dataset
from densitydp.utility import (
    EncodedCorpus,
    UtilityCurve,
    classification_utility,
    privacy_utility_curve,
    semantic_similarity,
)


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=3, outlier_fraction=0.0, rng=4)


@pytest.fixture(scope="module")
def dataset(space):
    """Texts of 6 words from cluster 0 (label 0) or cluster 1 (label 1), with punctuation."""
    generator = np.random.default_rng(0)
    by_cluster = {c: [w for w in space.vocabulary if w.startswith(f"c0{c}")] for c in (0, 1)}
    texts, labels = [], []
    for i in range(400):
        label = i % 2
        words = generator.choice(by_cluster[label], size=6)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(label)
    split = np.array(["train"] * 300 + ["test"] * 100)
    return Dataset("toy", tuple(texts), np.array(labels), ("zero", "one"), split, "test", True)


def test_encoded_corpus_round_trip_and_mean_embeddings(space, dataset):
    texts = [*dataset.texts[:20], "unknown words only!", ""]
    corpus = EncodedCorpus(texts, space)
    assert corpus.clean == texts
    masked = corpus.texts(corpus.token_ids)  # unknown words masked in perturbed text
    assert masked[:20] == texts[:20] and masked[-2:] == ["[UNK] [UNK] [UNK]!", ""]
    kept = EncodedCorpus(texts, space, unknown="keep")
    assert kept.texts(kept.token_ids) == texts  # identity: exact text back
    means = corpus.mean_embeddings(corpus.token_ids)
    first = space.vectors[space.ids(texts[0][:-1].lower().split())].astype(float).mean(axis=0)
    np.testing.assert_allclose(means[0], first, rtol=1e-12)
    assert (means[-1] == 0).all() and (means[-2] == 0).all()
    mechanism = dd.ExponentialMechanism(space, 2.0)
    perturbed = corpus.texts(corpus.perturbed_ids(mechanism, rng=0))
    assert perturbed[0][0].isupper() and perturbed[0].endswith(".")
    assert perturbed[-2] == "[UNK] [UNK] [UNK]!"
    other = dd.ExponentialMechanism(dd.synthetic_space(n_words=50, dim=6, rng=1), 2.0)
    with pytest.raises(ValueError, match="built on the space the corpus was encoded with"):
        corpus.perturbed_ids(other)


def test_classification_utility_clean_and_perturbed(space, dataset):
    for classifier in ("tfidf-logreg", "embedding-logreg"):
        clean = classification_utility(None, dataset, classifier, space=space)
        assert clean.accuracy_mean == 1.0 and clean.train == "clean"
    noisy = classification_utility(dd.ExponentialMechanism(space, 0.001), dataset, rng=1)
    kept = classification_utility(dd.ExponentialMechanism(space, 200.0), dataset, rng=1)
    # epsilon 0.001 makes outputs nearly uniform: accuracy near chance (0.5, standard error
    # 0.05 on 100 test texts), 0.8 is 6 standard errors above; epsilon 200 keeps the words
    assert noisy.accuracy_mean < 0.8 < kept.accuracy_mean
    assert len(noisy.accuracies) == 3 and noisy.seed == {"entropy": 1, "spawn_key": []}
    again = classification_utility(dd.ExponentialMechanism(space, 0.001), dataset, rng=1)
    assert again.accuracies == noisy.accuracies
    both = classification_utility(
        dd.ExponentialMechanism(space, 0.001), dataset, train="perturbed", test="perturbed", rng=1
    )
    assert "test perturbed" in str(both)
    with pytest.raises(ValueError, match="`classifier` must be one of"):
        classification_utility(None, dataset, "bert", space=space)
    with pytest.raises(ValueError, match="`space` is needed"):
        classification_utility(None, dataset)


def test_semantic_similarity(space):
    ids = np.arange(10)
    assert semantic_similarity(dd.ExponentialMechanism(space, 1e6), ids) == pytest.approx(1.0)
    mechanism = dd.ExponentialMechanism(space, 0.5)
    outputs = mechanism.sample(np.repeat(ids, 100), rng=0)
    a = space.vectors[np.repeat(ids, 100)].astype(float)
    b = space.vectors[outputs].astype(float)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert semantic_similarity(mechanism, ids, rng=0) == pytest.approx(cosine.mean(), rel=1e-12)
    assert cosine.mean() < 0.99


def test_privacy_utility_curve_and_matching(space, dataset, tmp_path):
    curve = privacy_utility_curve(
        ["exponential", "tem"], [0.5, 5.0, 50.0], dataset, space=space, n_repeats=2,
        n_words=50, n_samples=50, rng=0, progress=False,
    )  # fmt: skip
    table = curve.table
    assert list(table["mechanism"]) == (
        ["clean", "unknown words masked"] + ["exponential"] * 3 + ["tem"] * 3
    )
    assert table.loc[0, "accuracy_mean"] == 1.0
    assert table.loc[1, "accuracy_mean"] <= 1.0 and np.isnan(table.loc[1, "epsilon"])
    assert "unknown words masked" not in curve.matched([0.5]).index  # a baseline, not a curve
    exponential = table[table["mechanism"] == "exponential"]
    assert exponential["N_w"].is_monotonic_increasing  # more epsilon, more words kept
    curve.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1_000
    handmade = UtilityCurve(
        pd.DataFrame(
            {
                "mechanism": ["a", "a", "b", "b"],
                "epsilon": [1, 2, 1, 2],
                "accuracy_mean": [0.6, 0.8, 0.5, 0.9],
                "accuracy_std": 0.0,
                "N_w": [0.2, 0.6, 0.4, 0.8],
            }
        ),
        "toy",
        "tfidf-logreg",
        {},
    )
    matched = handmade.matched([0.3, 0.5, 0.7])
    assert matched.loc["a"].tolist()[:2] == pytest.approx([0.65, 0.75])
    assert np.isnan(matched.loc["a", 0.7]) and np.isnan(matched.loc["b", 0.3])
    assert matched.loc["b", 0.5] == pytest.approx(0.6)
    flat = UtilityCurve(
        pd.DataFrame(
            {"mechanism": "g", "epsilon": [1, 2, 3], "accuracy_mean": [0.7, 0.8, 0.9],
             "accuracy_std": 0.0, "N_w": [0.1, 0.2, 0.2]}
        ),
        "toy", "tfidf-logreg", {},
    )  # fmt: skip
    assert flat.matched([0.2]).loc["g", 0.2] == pytest.approx(0.85)  # equal N_w averaged
