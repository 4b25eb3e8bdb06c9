"""The paper's MovieLens-tag shape: the synthetic generator and the tags.csv converter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from afm.cli import main
from afm.data import load_dataset
from afm.data.movielens import convert_tags, sample_negatives
from afm.errors import ConfigError, DataError
from afm.samples.mltag_shape import ML_TAG_FIELDS, MlTagConfig, generate_chunk, make_world, write_ml_tag


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the generator


def test_synthesize_writes_the_paper_shape_that_the_registry_loads(tmp_path, capsys):
    assert main(["synthesize", "ml-tag", "--rows", "3001", "--dest", str(tmp_path)]) == 0
    summary = last_json(capsys)
    assert summary["rows"] == {"train": 2101, "valid": 600, "test": 300} and summary["features"] == 90_445
    data = load_dataset("ml-tag", data_dir=tmp_path)
    assert data.schema.field_names == ("user", "movie", "tag")
    assert data.schema.num_features == 17_045 + 23_743 + 49_657
    assert [len(data.schema.field_values(f)) for f in range(3)] == list(ML_TAG_FIELDS.values())
    assert data.schema.feature_label(17_045) == "movie=movie_0"
    labels = np.concatenate([s.labels for s in data.splits.values()])
    assert set(labels.tolist()) == {1.0, -1.0} and (labels == 1).sum() == 1001  # one positive per application
    truth = json.loads((tmp_path / "ml-tag" / "ml-tag.planted.json").read_text())
    assert [p["fields"] for p in truth["planted"]] == [["user", "tag"], ["movie", "tag"]]


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_ml_tag(tmp_path / name, MlTagConfig(num_rows=2000, seed=seed))
    read = lambda name: (tmp_path / name / "ml-tag" / "ml-tag.train.libfm").read_bytes()  # noqa: E731
    assert read("a") == read("b") != read("c")


def test_every_application_is_one_positive_and_two_random_negatives_of_its_user_and_movie():
    config = MlTagConfig(num_rows=30_000)
    ids, labels = generate_chunk(make_world(config), config, chunk=0, applications=10_000)
    triples = ids.reshape(10_000, 3, 3)  # (application, row, field)
    assert (triples[:, :, 0] == triples[:, :1, 0]).all() and (triples[:, :, 1] == triples[:, :1, 1]).all()
    tags = triples[:, :, 2]
    assert (tags[:, 0] != tags[:, 1]).all() and (tags[:, 0] != tags[:, 2]).all() and (tags[:, 1] != tags[:, 2]).all()
    assert labels.reshape(10_000, 3).tolist() == [[1.0, -1.0, -1.0]] * 10_000
    # Skewed popularity, as in MovieLens: the top 1% of users and of applied tags hold most
    # applications (uniform draws would give them about 1%); negatives are uniform.
    users = np.bincount(triples[:, 0, 0])
    assert np.sort(users)[::-1][:170].sum() / 10_000 > 0.3
    applied = np.bincount(tags[:, 0])
    negative = np.bincount(tags[:, 1:].ravel())
    assert np.sort(applied)[::-1][:497].sum() / 10_000 > 0.3
    assert np.sort(negative)[::-1][:497].sum() / 20_000 < 0.1  # uniform: about 0.07 for 20,000 draws of 49,657


def test_the_planted_pairs_decide_which_tag_is_applied():
    """The oracle: among an application's tags, the applied one has the larger planted user x tag
    and movie x tag terms far more often than chance; user x movie is the same for all three."""
    config = MlTagConfig(num_rows=30_000)
    world = make_world(config)
    ids, _ = generate_chunk(world, config, chunk=0, applications=10_000)
    users = ids[::3, 0] - world.offsets["user"]
    movies = ids[::3, 1] - world.offsets["movie"]
    tags = (ids[:, 2] - world.offsets["tag"]).reshape(-1, 3)  # (A, 3) applied first
    values = {"user": users, "movie": movies}
    for other, left, right, _ in world.tables:
        term = np.einsum("ar,acr->ac", left[values[other]], right[tags])  # (A, 3)
        wins = (term[:, 0] > term[:, 1:].max(axis=1)).mean()
        assert wins > 0.5, (other, wins)  # chance: 1/3


@pytest.mark.slow
def test_afm_trained_on_it_ranks_the_planted_pairs_first(tmp_path):
    import torch

    from afm.analysis.attention import decompose_split, summarize_pairs
    from afm.models import ModelConfig, build_model
    from afm.train import TrainConfig, train_model

    write_ml_tag(tmp_path, MlTagConfig(num_rows=150_000))
    data = load_dataset("ml-tag", data_dir=tmp_path)
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="afm", num_features=data.schema.num_features, num_fields=3,
                                    embedding_dim=16, attention_dim=16, dropout_pooled=0.0), seed=0)
    result = train_model(model, data, TrainConfig(epochs=2, batch_size=1024, lr=0.1, l2_attention=0.0))
    assert result.best["valid_rmse"] < 0.8  # predicting the mean label gives 0.94
    summary = summarize_pairs(decompose_split(result.model, data.valid), data.schema)
    assert summary.ranking()[2] == "user x movie", summary.frame()


def test_bad_synthesize_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", "ml-tag", "--rows", "0", "--dest", "x"])
    assert exit_info.value.code == 2 and "--rows: expected a positive integer" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--rows must be an integer >= 10"):
        MlTagConfig(num_rows=5)
    with pytest.raises(ConfigError, match="tag"):
        MlTagConfig(planted=[("user", "movie", 1.0)])


# --------------------------------------------------------------------------- the converter

TAGS = """userId,movieId,tag,timestamp
2,60756,funny,1445714994
2,60756,Highly quotable,1445714996
2,60756,will ferrell,1445714992
2,89774,Boxing story,1445715207
2,89774,MMA,1445715200

7,48516,"way too long, beyond the 60's",1169687325
18,431,NA,1462138790
18,431,funny,1462138791
21,1,Pixar,1462138792
21,1,funny,1462138793
"""


def all_rows(data):
    ids = np.concatenate([s.feature_ids for s in data.splits.values()])
    labels = np.concatenate([s.labels for s in data.splits.values()])
    return ids, labels


def test_convert_makes_one_positive_and_two_unapplied_negatives_per_tag_application(tmp_path, capsys):
    (tmp_path / "tags.csv").write_text(TAGS)
    assert main(["convert", "ml-tag", "--tags", str(tmp_path / "tags.csv"), "--dest", str(tmp_path / "out"),
                 "--seed", "3"]) == 0
    summary = last_json(capsys)
    assert summary["applications"] == 10 and (summary["users"], summary["movies"], summary["tags"]) == (4, 5, 8)
    assert summary["rows"] == {"train": 21, "valid": 6, "test": 3}
    data = load_dataset("ml-tag", data_dir=tmp_path / "out")
    assert data.schema.field_names == ("user", "movie", "tag")
    ids, labels = all_rows(data)
    names = [tuple(data.schema.value_name(i) for i in row) for row in ids]
    applied = {("2", "60756", "funny"), ("2", "60756", "Highly quotable"), ("2", "60756", "will ferrell"),
               ("2", "89774", "Boxing story"), ("2", "89774", "MMA"), ("7", "48516", "way too long, beyond the 60's"),
               ("18", "431", "NA"), ("18", "431", "funny"), ("21", "1", "Pixar"), ("21", "1", "funny")}
    positives = [n for n, y in zip(names, labels) if y == 1]
    negatives = [n for n, y in zip(names, labels) if y == -1]
    assert sorted(positives) == sorted(applied)
    assert len(negatives) == 20 and not set(negatives) & applied  # never a tag that user gave that movie
    for user, movie, _ in applied:  # two negatives per application, with its user and movie
        given = sum(1 for a in applied if a[:2] == (user, movie))
        assert sum(1 for n in negatives if n[:2] == (user, movie)) == 2 * given


def test_convert_is_seeded(tmp_path):
    (tmp_path / "tags.csv").write_text(TAGS)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        convert_tags(tmp_path / "tags.csv", tmp_path / name, seed=seed)
    read = lambda name: (tmp_path / name / "ml-tag" / "ml-tag.train.libfm").read_bytes()  # noqa: E731
    assert read("a") == read("b") != read("c")


def test_sampled_negatives_against_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(20):
        num_tags = int(rng.integers(3, 12))
        pairs = rng.integers(0, 4, 30)
        tags = rng.integers(0, num_tags, 30)
        given = {p: {int(t) for t in tags[pairs == p]} for p in set(pairs.tolist())}
        if max(len(g) for g in given.values()) > num_tags - 2:
            with pytest.raises(DataError, match="needs at least 2"):
                sample_negatives(pairs, tags, num_tags, np.random.default_rng(trial), "tags.csv")
            continue
        negatives = sample_negatives(pairs, tags, num_tags, np.random.default_rng(trial), "tags.csv")
        for pair, (first, second) in zip(pairs.tolist(), negatives.tolist()):
            assert first != second and first not in given[pair] and second not in given[pair]
            assert 0 <= first < num_tags and 0 <= second < num_tags


@pytest.mark.parametrize("text,expected", [
    ("userId,movieId,label\n1,2,x\n", "tags.csv, line 1: no column 'tag'"),
    ("userId,movieId,tag\n1,2,a\n1,2,b\nx1,2,c\n1,3,d\n", "tags.csv, line 4: userId 'x1' is not a non-negative"),
    ("userId,movieId,tag\n1,2,a\n1,-2,b\n1,3,d\n", "tags.csv, line 3: movieId '-2'"),
    ("userId,movieId,tag\n1,2,a\n\n1,2,  \n1,3,d\n", "tags.csv, line 4: the tag is empty"),
    ("userId,movieId,tag\n1,2,a\n1,2,b\n1,3,a\n", "a user gave one movie 2 of the 2 tags"),
    ("", "tags.csv: file is empty"),
])
def test_bad_tags_files_name_the_line_and_write_nothing(tmp_path, capsys, text, expected):
    (tmp_path / "tags.csv").write_text(text)
    assert main(["convert", "ml-tag", "--tags", str(tmp_path / "tags.csv"), "--dest", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
