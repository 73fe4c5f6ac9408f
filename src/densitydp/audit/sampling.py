"""Pairs of words to audit, and sampled output counts per word (two independent halves)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
    map_calls: MapCalls | None = None,
) -> tuple[list[SparseCounts], list[SparseCounts]]:
    """Sparse output counts of ``n_samples`` draws per word (through ``mechanism.sample`` on
    repeated ids), split into two independent halves by draw index: the first
    ``n_samples // 2`` draws and the next ``n_samples // 2``.

    Words are sampled together in calls of about 4 million tokens, so the mechanism's kernels
    run in parallel over words. Call ``c`` draws with the ``c``-th child of ``generator``
    (``generator.spawn``), so the counts do not depend on where or in which order the calls
    run: ``map_calls(function, mechanism, calls)`` (default: one after the other, here) may
    run them anywhere, e.g. on a Dask cluster (:func:`densitydp.distributed.audit`), and must
    yield ``function(mechanism, call)`` for each call, in order. Returns ``(first_halves,
    second_halves)``, one ``(ids, counts)`` per word.
    """
    half = check_int(n_samples, "n_samples", minimum=2, maximum=MAX_SAMPLES) // 2
    per_word = 2 * half
    n_words = len(word_ids)
    parts: list[list[list[SparseCounts]]] = [[[], []] for _ in range(n_words)]
    tokens_per_call = getattr(mechanism, "_tokens_per_call", TOKENS_PER_CALL)
    per_call = max(1, tokens_per_call // per_word)  # whole words per call
    chunk = min(per_word, tokens_per_call)  # draws per word per call
    calls = [
        SampleCall(first_word, word_ids[first_word : first_word + per_call], start,
                   min(chunk, per_word - start), half)
        for first_word in range(0, n_words, per_call)
        for start in range(0, per_word, chunk)
    ]  # fmt: skip
    # one child per call: the same children as spawn(1) once per call, in order
    for call, child in zip(calls, generator.spawn(len(calls)), strict=True):
        call.rng = child
    show = progress if progress is not None else n_words * per_word > 20 * tokens_per_call // 4
    bar = tqdm(total=n_words * per_word, desc="audit samples", unit="draw", disable=not show)
    run = map_calls if map_calls is not None else _map_here
    with bar:
        for call, counted in zip(calls, run(count_call, mechanism, calls), strict=True):
            for g, sides in enumerate(counted):
                for side, table in enumerate(sides):
                    if table is not None:
                        parts[call.first_word + g][side].append(table)
            bar.update(len(call.words) * call.size)
    return [_merge(p[0]) for p in parts], [_merge(p[1]) for p in parts]


@dataclass
class SampleCall:
    """One call of :func:`sample_counts`: ``size`` draws of each of ``words`` (the words from
    position ``first_word`` on), the draws ``start .. start + size`` of each word's ``2 *
    half``, with the child generator ``rng``."""

    first_word: int
    words: np.ndarray
    start: int
    size: int
    half: int
    rng: np.random.Generator | None = None


#: ``map_calls(function, mechanism, items)``: ``function(mechanism, item)`` for each item, in
#: order (an iterable).
MapCalls = Callable[[Callable[[Any, Any], Any], Any, list[Any]], Iterable[Any]]


def _map_here(function: Callable[[Any, Any], Any], mechanism: Any, items: list[Any]) -> Any:
    return (function(mechanism, item) for item in items)


def count_call(
    mechanism: Mechanism, call: SampleCall
) -> list[tuple[SparseCounts | None, SparseCounts | None]]:
    """Run one :class:`SampleCall`: per word, the sparse counts of its draws in the first
    half and in the second half (None where the call has no draw of that half)."""
    group, size, start, half = call.words, call.size, call.start, call.half
    draws = mechanism.sample(np.repeat(group, size), rng=call.rng).reshape(len(group), size)
    counted: list[tuple[SparseCounts | None, SparseCounts | None]] = []
    for row in draws:
        cut = min(max(half - start, 0), size)  # draws start .. start + cut: half 1
        sides = [
            np.unique(piece, return_counts=True) if piece.size else None
            for piece in (row[:cut], row[cut:])
        ]
        counted.append((sides[0], sides[1]))
    return counted


def _merge(tables: list[SparseCounts]) -> SparseCounts:
    if not tables:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if len(tables) == 1:
        return tables[0][0].astype(np.int64), tables[0][1].astype(np.int64)
    ids = np.concatenate([t[0] for t in tables])
    counts = np.concatenate([t[1] for t in tables])
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique.astype(np.int64), np.bincount(inverse, weights=counts).astype(np.int64)
