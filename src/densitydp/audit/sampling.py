"""Pairs of words to audit, and sampled output counts per word (two independent halves)."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .._validation import check_choice, check_int, check_word_ids
from ..embeddings import EmbeddingSpace, UnknownWordError
from ..mechanisms.base import Mechanism

__all__ = ["PAIR_STRATEGIES", "choose_pairs", "sample_counts"]

PAIR_STRATEGIES = ("nearest", "stratified", "random")

#: Words the default pairs are drawn from: the first ids (GloVe rows are in frequency order).
FREQUENT = 10_000

#: Tokens per call of ``mechanism.sample`` (bounds the memory of an audit).
TOKENS_PER_CALL = 4_000_000

#: Largest number of draws per word (counts stay exact in float64).
MAX_SAMPLES = 2**53

SparseCounts = tuple[np.ndarray, np.ndarray]


def choose_pairs(
    space: EmbeddingSpace,
    pairs: str | Any = "nearest",
    n_pairs: int = 50,
    *,
    frequent: int = FREQUENT,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(n_pairs, 2)`` int64 word-id pairs ``(w, w')`` with ``w != w'``.

    ``nearest``: ``n_pairs`` distinct words drawn from the first ``frequent`` ids, each with its
    exact nearest neighbour (close pairs need the most samples: their claimed loss is small).
    ``stratified``: word ``i`` is paired with the word at the distance quantile ``i / n_pairs``
    of its exact distances to the whole vocabulary (from its nearest neighbour to far words).
    ``random``: two distinct random words of the first ``frequent`` ids. Or an explicit list of
    pairs of ids or of words.
    """
    n_words = len(space)
    if not isinstance(pairs, str):
        return _explicit_pairs(space, pairs)
    strategy = check_choice(pairs, "pairs", PAIR_STRATEGIES)
    n_pairs = check_int(n_pairs, "n_pairs", minimum=1)
    pool = min(check_int(frequent, "frequent", minimum=2), n_words)
    words = rng.choice(pool, size=n_pairs, replace=n_pairs > pool)
    if strategy == "nearest":
        table = space.neighbors(2, word_ids=np.unique(words), progress=False)
        others = table.rows(words)[0][:, 1]
    elif strategy == "random":
        others = (words + rng.integers(1, pool, size=n_pairs)) % pool
    else:
        others = np.empty(n_pairs, dtype=np.int64)
        vectors = space._vectors64
        for i, word in enumerate(words):
            distances = np.linalg.norm(vectors - vectors[word], axis=1)
            distances[word] = np.inf
            order = np.argsort(distances, kind="stable")
            others[i] = order[min(int(i / n_pairs * (n_words - 1)), n_words - 2)]
    return np.stack([words, others], axis=1).astype(np.int64)


def _explicit_pairs(space: EmbeddingSpace, pairs: Any) -> np.ndarray:
    items = list(pairs)
    if not items:
        raise ValueError("`pairs` must hold at least one pair; got an empty list.")
    if all(isinstance(a, str) and isinstance(b, str) for a, b in items):
        try:
            array = np.array([[space.vocabulary.id(a), space.vocabulary.id(b)] for a, b in items])
        except UnknownWordError as exc:
            raise UnknownWordError(f"`pairs`: {exc}") from None
    else:
        array = check_word_ids(np.asarray(items), len(space), "pairs")
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"`pairs` must be a list of (word, other) pairs; got shape {array.shape}.")
    same = np.flatnonzero(array[:, 0] == array[:, 1])
    if same.size:
        raise ValueError(f"`pairs` must pair distinct words; pair {same[0]} repeats a word.")
    return array.astype(np.int64)


def sample_counts(
    mechanism: Mechanism,
    word_ids: np.ndarray,
    n_samples: int,
    generator: np.random.Generator,
    *,
    progress: bool | None = None,
) -> tuple[list[SparseCounts], list[SparseCounts]]:
    """Sparse output counts of ``n_samples`` draws per word (through ``mechanism.sample`` on
    repeated ids), split into two independent halves by draw index: the first
    ``n_samples // 2`` draws and the next ``n_samples // 2``.

    Words are sampled together in calls of about 4 million tokens, so the mechanism's kernels
    run in parallel over words. Returns ``(first_halves, second_halves)``, one
    ``(ids, counts)`` per word.
    """
    half = check_int(n_samples, "n_samples", minimum=2, maximum=MAX_SAMPLES) // 2
    per_word = 2 * half
    n_words = len(word_ids)
    parts: list[list[list[SparseCounts]]] = [[[], []] for _ in range(n_words)]
    tokens_per_call = getattr(mechanism, "_tokens_per_call", TOKENS_PER_CALL)
    per_call = max(1, tokens_per_call // per_word)  # whole words per call
    chunk = min(per_word, tokens_per_call)  # draws per word per call
    # one child per call, spawned as needed (the same children as spawn(n_calls) at once)
    show = progress if progress is not None else n_words * per_word > 20 * tokens_per_call // 4
    bar = tqdm(total=n_words * per_word, desc="audit samples", unit="draw", disable=not show)
    with bar:
        for first_word in range(0, n_words, per_call):
            group = word_ids[first_word : first_word + per_call]
            for start in range(0, per_word, chunk):
                size = min(chunk, per_word - start)
                draws = mechanism.sample(np.repeat(group, size), rng=generator.spawn(1)[0]).reshape(
                    len(group), size
                )
                for g in range(len(group)):
                    row = draws[g]
                    cut = min(max(half - start, 0), size)  # draws start .. start + cut: half 1
                    for side, piece in ((0, row[:cut]), (1, row[cut:])):
                        if piece.size:
                            ids, counts = np.unique(piece, return_counts=True)
                            parts[first_word + g][side].append((ids, counts))
                bar.update(len(group) * size)
    return [_merge(p[0]) for p in parts], [_merge(p[1]) for p in parts]


def _merge(tables: list[SparseCounts]) -> SparseCounts:
    if not tables:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if len(tables) == 1:
        return tables[0][0].astype(np.int64), tables[0][1].astype(np.int64)
    ids = np.concatenate([t[0] for t in tables])
    counts = np.concatenate([t[1] for t in tables])
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique.astype(np.int64), np.bincount(inverse, weights=counts).astype(np.int64)
