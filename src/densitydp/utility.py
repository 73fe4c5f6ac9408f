"""Downstream utility of perturbed text: classification accuracy, semantic similarity, and
privacy-utility curves with privacy measured the same way for every mechanism (``N_w``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import save_figure
from ._rng import RNGLike, as_generator, seed_entropy
from ._validation import check_choice, check_int
from .datasets import Dataset
from .embeddings import EmbeddingSpace
from .mechanisms.base import Mechanism, mechanism_and_words
from .text import TextCodec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CLASSIFIERS",
    "EncodedCorpus",
    "UtilityCurve",
    "UtilityResult",
    "classification_utility",
    "privacy_utility_curve",
    "semantic_similarity",
]

CLASSIFIERS = ("tfidf-logreg", "embedding-logreg")


class EncodedCorpus:
    """Texts tokenized once against a vocabulary, perturbed many times: every perturbation is
    one vectorised ``mechanism.sample`` call over all the corpus's known tokens.

    ``unknown`` (``"mask"``, ``"drop"`` or ``"keep"``) is what perturbed texts do with words
    outside the vocabulary, as in :func:`~densitydp.perturb_text`; ``clean`` holds the texts as
    given.
    """

    def __init__(
        self, texts: Sequence[str], space: EmbeddingSpace, *, unknown: str = "mask"
    ) -> None:
        unknown = check_choice(unknown, "unknown", ("mask", "drop", "keep"))
        self.space = space
        self.clean = list(texts)
        self.codec = TextCodec(space.vocabulary, unknown=unknown)
        self.encoded, self.token_ids, self.counts = self.codec.encode_batch(self.clean)

    def __len__(self) -> int:
        return len(self.encoded)

    def perturbed_ids(self, mechanism: Mechanism | None, rng: RNGLike = None) -> np.ndarray:
        """New ids of every known token (the same ids when ``mechanism`` is None)."""
        if mechanism is None or self.token_ids.size == 0:
            return self.token_ids
        if mechanism.space is not self.space:
            raise ValueError("`mechanism` must be built on the space the corpus was encoded with.")
        return mechanism.sample(self.token_ids, rng=rng)

    def texts(self, new_ids: np.ndarray) -> list[str]:
        """Decode with each known token replaced by ``new_ids`` (case and layout kept) and the
        unknown ones treated by the corpus's policy."""
        return self.codec.decode_batch(self.encoded, self.counts, new_ids)

    def mean_embeddings(self, new_ids: np.ndarray) -> np.ndarray:
        """Mean word vector of each text's known tokens (zeros for a text without any)."""
        vectors = self.space._vectors64[new_ids]
        owner = np.repeat(np.arange(len(self.counts)), self.counts)
        sums = np.zeros((len(self.counts), self.space.dim))
        np.add.at(sums, owner, vectors)
        return sums / np.maximum(self.counts, 1)[:, None]


@dataclass(frozen=True)
class UtilityResult:
    """Accuracy of a classifier over repeated perturbations."""

    accuracy_mean: float
    accuracy_std: float
    accuracies: tuple[float, ...]
    mechanism: str
    dataset: str
    classifier: str
    train: str
    test: str
    seed: dict[str, Any]

    def __str__(self) -> str:
        return (
            f"accuracy {self.accuracy_mean:.4f} +- {self.accuracy_std:.4f} over "
            f"{len(self.accuracies)} perturbation(s) ({self.classifier}, train {self.train}, "
            f"test {self.test}; {self.mechanism})"
        )


def _classifier(name: str) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "tfidf-logreg":
        return make_pipeline(
            TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2)),
            LogisticRegression(C=4.0, max_iter=2_000),
        )
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2_000))


def classification_utility(
    mechanism: Mechanism | None,
    dataset: Dataset,
    classifier: str = "tfidf-logreg",
    train: str = "perturbed",
    test: str = "clean",
    n_repeats: int = 3,
    rng: RNGLike = None,
    *,
    space: EmbeddingSpace | None = None,
    corpora: tuple[EncodedCorpus, EncodedCorpus] | None = None,
    unknown: str = "mask",
) -> UtilityResult:
    """Accuracy of a text classifier trained and tested on clean or perturbed text.

    Parameters
    ----------
    mechanism : Mechanism or None
        None: no perturbation (the clean baseline; ``space`` gives the vocabulary).
    dataset : Dataset
        From :func:`densitydp.load_dataset`; its train / test split is used.
    classifier : {"tfidf-logreg", "embedding-logreg"}
        scikit-learn pipelines: TF-IDF of words and word pairs (sublinear, min_df 2) +
        logistic regression (C = 4); or the mean embedding of a text's known words,
        standardised + logistic regression (C = 1).
    train, test : {"perturbed", "clean"}
        Which version of each part the classifier sees (the usual setting: train on
        privatised text, test on clean text).
    n_repeats : int
        Independent perturbations (one spawned generator each); the classifier is
        deterministic.
    corpora : (train, test) EncodedCorpus, optional
        Reuse encoded corpora across calls (as :func:`privacy_utility_curve` does).
    unknown : {"mask", "drop", "keep"}
        Words outside the vocabulary in perturbed text, as :func:`~densitydp.perturb_text`
        treats them (masking is the default there too; "keep" would let the classifier see
        words no mechanism touched). Clean text is used as given.
    """
    classifier = check_choice(classifier, "classifier", CLASSIFIERS)
    train = check_choice(train, "train", ("perturbed", "clean"))
    test = check_choice(test, "test", ("perturbed", "clean"))
    n_repeats = check_int(n_repeats, "n_repeats", minimum=1)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a Dataset; got {type(dataset).__name__}.")
    if mechanism is not None and not isinstance(mechanism, Mechanism):
        raise TypeError(f"`mechanism` must be a Mechanism or None; got {type(mechanism).__name__}.")
    vocabulary_space = mechanism.space if mechanism is not None else space
    if vocabulary_space is None:
        raise ValueError("`space` is needed for the clean baseline (mechanism=None).")
    if corpora is None:
        corpora = (
            EncodedCorpus(dataset.train[0], vocabulary_space, unknown=unknown),
            EncodedCorpus(dataset.test[0], vocabulary_space, unknown=unknown),
        )
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    y_train, y_test = dataset.train[1], dataset.test[1]
    repeats = n_repeats if mechanism is not None else 1
    accuracies = []
    for child in generator.spawn(repeats):
        features: list[Any] = []
        for corpus, which in zip(corpora, (train, test), strict=True):
            ids = corpus.perturbed_ids(mechanism if which == "perturbed" else None, rng=child)
            if classifier == "tfidf-logreg":
                perturbed = which == "perturbed" and mechanism is not None
                features.append(corpus.texts(ids) if perturbed else corpus.clean)
            else:
                features.append(corpus.mean_embeddings(ids))
        model = _classifier(classifier).fit(features[0], y_train)
        accuracies.append(float(np.mean(model.predict(features[1]) == y_test)))
    return UtilityResult(
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        accuracies=tuple(accuracies),
        mechanism=repr(mechanism) if mechanism is not None else "clean",
        dataset=dataset.name,
        classifier=classifier,
        train=train if mechanism is not None else "clean",
        test=test if mechanism is not None else "clean",
        seed=seed,
    )


def semantic_similarity(
    mechanism: Any,
    word_ids: Any,
    n_samples: int = 100,
    rng: RNGLike = None,
    *,
    space: EmbeddingSpace | None = None,
    interface: str | None = None,
) -> float:
    """Mean cosine similarity between each word and its substitutes (``n_samples`` draws per
    word; a word kept unchanged counts 1).

    ``mechanism`` is anything :func:`densitydp.as_mechanism` accepts (no claim needed).

    Raises
    ------
    ValueError
        A word-level function returned words outside the space (they have no vector).
    """
    from .audit.blackbox import checked_mechanism, output_words

    mechanism = checked_mechanism(mechanism, space=space, interface=interface)
    ids = mechanism_and_words(mechanism, word_ids)
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    tokens = np.repeat(ids, n_samples)
    outputs = mechanism.sample(tokens, rng=rng)
    outside = outputs >= len(mechanism.space)
    if outside.any():
        raise ValueError(
            f"{mechanism!r} returned {int(outside.sum())} word(s) outside the space (first: "
            f"{output_words(mechanism, outputs[outside][0])!r}); they have no vector to compare."
        )
    vectors = mechanism.space._vectors64
    a, b = vectors[tokens], vectors[outputs]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0)
    return float(np.mean(cosine))


MechanismFactory = Callable[[EmbeddingSpace, float], Mechanism]


@dataclass
class UtilityCurve:
    """Result of :func:`privacy_utility_curve`: a tidy ``table`` with one row per
    (mechanism, epsilon) setting and one ``clean`` row."""

    table: pd.DataFrame
    dataset: str
    classifier: str
    seed: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def matched(self, levels: Sequence[float], by: str = "N_w") -> pd.DataFrame:
        """Accuracy of each mechanism interpolated (linearly, within its measured range) at
        common values of ``by`` (``N_w`` by default): mechanisms compared at the same measured
        privacy rather than at the same nominal epsilon. Settings with equal ``by`` are averaged
        first. NaN outside a mechanism's range."""
        import pandas as pd

        rows = {}
        perturbed = self.table[self.table["epsilon"].notna()]  # baselines have no epsilon
        for name, group in perturbed.groupby("mechanism"):
            # settings with the same measured privacy are averaged before interpolating
            means = group.groupby(by)["accuracy_mean"].mean()
            x, y = means.index.to_numpy(dtype=np.float64), means.to_numpy()
            rows[name] = [
                float(np.interp(level, x, y)) if x.min() <= level <= x.max() else np.nan
                for level in levels
            ]
        return pd.DataFrame(rows, index=pd.Index(list(levels), name=by)).T

    def plot(self, path: str | os.PathLike[str] | None = None, *, ax: Any = None) -> Any:
        """Accuracy against ``N_w`` and against epsilon, one line per mechanism, the clean
        accuracy drawn, on ``ax`` (two matplotlib Axes; default a new figure); the figure is
        saved atomically to ``path`` when given. Returns the figure."""
        from ._io import axes_and_figure

        figure, axes = axes_and_figure(ax, 2, figsize=(11, 4))
        baselines = self.table[self.table["epsilon"].isna()]  # clean, unknown words masked
        for name, group in self.table[self.table["epsilon"].notna()].groupby("mechanism"):
            group = group.sort_values("epsilon")
            for axis, column in zip(axes, ("N_w", "epsilon"), strict=True):
                axis.errorbar(
                    group[column], group["accuracy_mean"], yerr=group["accuracy_std"],
                    marker="o", capsize=3, label=name,
                )  # fmt: skip
        for axis in axes:
            for row, style in zip(baselines.itertuples(), ("--", ":"), strict=False):
                axis.axhline(
                    float(row.accuracy_mean), color="k", linestyle=style, label=row.mechanism
                )
            axis.set_ylabel(f"accuracy ({self.classifier})")
        axes[0].set_xlabel("N_w: fraction of words kept (median over sampled corpus words)")
        axes[1].set_xlabel("epsilon")
        axes[1].set_xscale("log")
        axes[0].legend(fontsize=8)
        if ax is None:  # the figure is ours to title and lay out
            figure.suptitle(f"{self.dataset}: train perturbed, test clean")
            figure.tight_layout()
        if path is not None:
            save_figure(figure, path)
        return figure


def privacy_utility_curve(
    mechanisms: Sequence[str | MechanismFactory] | Mapping[str, str | MechanismFactory],
    epsilons: Sequence[float] | Mapping[str, Sequence[float]],
    dataset: Dataset,
    *,
    space: EmbeddingSpace | None = None,
    classifier: str = "tfidf-logreg",
    n_repeats: int = 3,
    n_words: int = 200,
    n_samples: int = 200,
    rng: RNGLike = None,
    progress: bool | None = None,
    unknown: str = "mask",
) -> UtilityCurve:
    """Accuracy, ``N_w``, ``S_w`` and the claimed bound for each mechanism over a grid of
    epsilons.

    Parameters
    ----------
    mechanisms : sequence or mapping
        Names understood by :func:`densitydp.mechanisms.build_mechanism` or callables
        ``factory(space, epsilon) -> Mechanism``; a mapping gives each a label.
    epsilons : sequence or mapping of label -> sequence
        One grid for every mechanism, or one per label.
    space : EmbeddingSpace, optional
        Default: the 50,000 most frequent alphabetic bundled GloVe words
        (``load_glove(top=50_000, words="alpha")``).
    n_words, n_samples : int
        Privacy is measured the same way for every mechanism: ``N_w`` / ``S_w`` medians over
        ``n_words`` tokens drawn from the training corpus (so frequent words count more),
        ``n_samples`` draws each.
    unknown : {"mask", "drop", "keep"}
        Words outside the vocabulary in perturbed text (see :func:`classification_utility`).

    Returns
    -------
    UtilityCurve
        ``table`` columns: mechanism, epsilon, accuracy_mean, accuracy_std, N_w, S_w, claimed
        (the privacy bound, as text), seconds; plus baseline rows without epsilon: ``clean``
        (the texts as given) and, unless ``unknown="keep"``, ``unknown words masked`` (or
        ``dropped``: known words unchanged, the ceiling of every perturbed row).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .audit import plausible_deniability
    from .embeddings import load_glove
    from .mechanisms import build_mechanism

    if space is None:
        space = load_glove(top=50_000, words="alpha")
    labelled = (
        dict(mechanisms)
        if isinstance(mechanisms, Mapping)
        else {m if isinstance(m, str) else getattr(m, "__name__", repr(m)): m for m in mechanisms}
    )
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    corpora = (
        EncodedCorpus(dataset.train[0], space, unknown=unknown),
        EncodedCorpus(dataset.test[0], space, unknown=unknown),
    )
    tokens = corpora[0].token_ids
    words = generator.choice(tokens, size=min(n_words, len(tokens)), replace=False)
    clean = classification_utility(
        None, dataset, classifier, space=space, corpora=corpora, rng=generator
    )
    rows: list[dict[str, Any]] = [
        {
            "mechanism": "clean",
            "epsilon": np.nan,
            "accuracy_mean": clean.accuracy_mean,
            "accuracy_std": 0.0,
            "N_w": 1.0,
            "S_w": 1.0,
            "claimed": "no perturbation",
            "seconds": 0.0,
        }
    ]
    if unknown != "keep" and classifier == "tfidf-logreg":
        # the ceiling of every perturbed row: unknown words treated, known words unchanged
        train_corpus, test_corpus = corpora
        model = _classifier(classifier).fit(
            train_corpus.texts(train_corpus.token_ids), dataset.train[1]
        )
        accuracy = float(np.mean(model.predict(test_corpus.clean) == dataset.test[1]))
        rows.append(
            {
                "mechanism": f"unknown words {'masked' if unknown == 'mask' else 'dropped'}",
                "epsilon": np.nan,
                "accuracy_mean": accuracy,
                "accuracy_std": 0.0,
                "N_w": 1.0,
                "S_w": 1.0,
                "claimed": "no perturbation of known words",
                "seconds": 0.0,
            }
        )
    grid = [
        (label, float(eps))
        for label in labelled
        for eps in (epsilons[label] if isinstance(epsilons, Mapping) else epsilons)
    ]
    disable = None if progress is None else not progress  # None: a terminal only
    for label, epsilon in tqdm(grid, desc="privacy-utility", disable=disable):
        spec = labelled[label]
        mechanism = (
            build_mechanism(spec, space, epsilon) if isinstance(spec, str) else spec(space, epsilon)
        )
        started = time.perf_counter()
        result = classification_utility(
            mechanism, dataset, classifier, n_repeats=n_repeats, corpora=corpora, rng=generator
        )
        stats = plausible_deniability(mechanism, words, n_samples=n_samples, rng=generator)
        rows.append(
            {
                "mechanism": label,
                "epsilon": epsilon,
                "accuracy_mean": result.accuracy_mean,
                "accuracy_std": result.accuracy_std,
                "N_w": float(stats["N_w"].median()),
                "S_w": float(stats["S_w"].median()),
                "claimed": str(mechanism.privacy_bound()).split(";")[0],
                "seconds": time.perf_counter() - started,
            }
        )
    return UtilityCurve(
        table=pd.DataFrame(rows),
        dataset=dataset.name,
        classifier=classifier,
        seed=seed,
        settings={"n_repeats": n_repeats, "n_words": n_words, "n_samples": n_samples},
    )
