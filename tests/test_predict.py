"""Scoring and explaining new rows: `predict_file`, the streaming reader and `afm predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import afm.data.stream as stream
from afm.analysis.explain import largest_pair_terms, value_labels
from afm.analysis.shapley import pair_shapley
from afm.checkpoint import Checkpoint, TrainedOn, load_checkpoint, save_checkpoint
from afm.cli import main
from afm.data import FieldSchema, load_csv, load_dataset
from afm.data.stream import iter_rows
from afm.data.tabular import read_table
from afm.errors import ConfigError, DataError
from afm.files import check_not_an_input
from afm.inference import outputs
from afm.models import ModelConfig, build_model
from afm.predict import predict_file
from afm.samples.checkpoints import sample_checkpoint_path


@pytest.fixture(scope="module")
def sample_afm() -> Checkpoint:
    return load_checkpoint(sample_checkpoint_path("afm"))


def libfm_rows(split, rows=None, labels=True) -> str:
    rows = range(len(split)) if rows is None else rows
    return "".join((f"{split.labels[r]:g} " if labels else "")
                   + " ".join(f"{i}:{v:g}" for i, v in zip(split.feature_ids[r], split.feature_values[r])) + "\n"
                   for r in rows)


@pytest.mark.slow  # scores the same rows several times
def test_shuffled_unlabelled_rows_score_as_the_original_rows_row_for_row(sample_afm, tmp_path):
    test = load_dataset("sample", schema=sample_afm.schema).test
    original, shuffled = tmp_path / "test.libfm", tmp_path / "shuffled.libfm"
    original.write_text(libfm_rows(test))
    order = np.random.default_rng(3).permutation(len(test))
    shuffled.write_text(libfm_rows(test, order, labels=False))

    first = predict_file(sample_afm, original, tmp_path / "a.csv", explain=3, chunk_rows=400)
    second = predict_file(sample_afm, shuffled, tmp_path / "b.csv", explain=3, chunk_rows=333)
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert first["rows"] == second["rows"] == len(test) and first["labelled"] and not second["labelled"]
    assert list(a["row"]) == list(range(len(test))) and "label" not in b
    np.testing.assert_allclose(a["label"], test.labels, rtol=1e-6)
    np.testing.assert_array_equal(b["prediction"], a["prediction"].to_numpy()[order])
    for column in ("pair_1", "contribution_1", "attention_1", "pair_3", "contribution_3"):
        np.testing.assert_array_equal(b[column], a[column].to_numpy()[order])
    # The same scores as `afm evaluate` gives these rows (the whole split at once, no explanation).
    reference = outputs(sample_afm.model, torch.from_numpy(test.feature_ids), torch.from_numpy(test.feature_values))
    np.testing.assert_allclose(a["prediction"], reference, rtol=1e-5, atol=1e-6)
    plain = predict_file(sample_afm, original, tmp_path / "c.csv")
    c = pd.read_csv(tmp_path / "c.csv")
    assert plain["explain"] == 0 and list(c.columns) == ["row", "label", "prediction"]
    np.testing.assert_array_equal(c["prediction"], pd.Series(reference).astype(str).astype(float))


@pytest.mark.parametrize("model_name", ["afm", "fm", "fwfm"])
def test_explanations_are_each_rows_largest_pair_terms_by_brute_force(model_name):
    checkpoint = load_checkpoint(sample_checkpoint_path(model_name))
    rows = load_dataset("sample", schema=checkpoint.schema).test.take(np.arange(40))
    terms = checkpoint.model.decompose(torch.from_numpy(rows.feature_ids), torch.from_numpy(rows.feature_values))
    labels = value_labels(checkpoint.schema, rows.feature_ids, rows.feature_values)
    table = largest_pair_terms(terms, labels, 4)
    schema, fields = checkpoint.schema, checkpoint.schema.num_fields
    pairs = [(i, j) for i in range(fields) for j in range(i + 1, fields)]
    for r in range(len(rows)):
        values = terms.pair_terms[r].tolist()
        ranked = sorted(range(len(pairs)), key=lambda p: (-abs(values[p]), p))[:4]  # the oracle: sort every pair
        for place, p in enumerate(ranked, start=1):
            i, j = pairs[p]
            expected = (f"{schema.feature_label(rows.feature_ids[r, i])} x "
                        f"{schema.feature_label(rows.feature_ids[r, j])}")
            assert table[f"pair_{place}"][r] == expected
            assert table[f"contribution_{place}"][r] == pytest.approx(values[p], abs=1e-6)
            assert table[f"attention_{place}"][r] == pytest.approx(float(terms.pair_weights[r, p]), abs=1e-6)
    if model_name == "fm":
        assert (table["attention_1"] == 1).all()


def test_all_pairs_explained_add_up_to_the_prediction(sample_afm, tmp_path):
    rows = tmp_path / "rows.libfm"
    rows.write_text(libfm_rows(load_dataset("sample").valid, range(50)))
    pairs = sample_afm.model_config.num_pairs
    predict_file(sample_afm, rows, tmp_path / "all.csv", explain=pairs + 10)  # more than there are: all of them
    table = pd.read_csv(tmp_path / "all.csv")
    assert f"pair_{pairs}" in table and f"pair_{pairs + 1}" not in table
    contributions = table[[f"contribution_{r}" for r in range(1, pairs + 1)]].to_numpy()
    assert (np.abs(contributions[:, :-1]) >= np.abs(contributions[:, 1:])).all()  # largest first
    valid = load_dataset("sample").valid.take(np.arange(50))
    terms = sample_afm.model.decompose(torch.from_numpy(valid.feature_ids), torch.from_numpy(valid.feature_values))
    rest = (terms.bias + terms.first_order.sum(1)).numpy()
    np.testing.assert_allclose(rest + contributions.sum(1), table["prediction"], atol=1e-4)


def write_csv_rows(path, rows: int, seed: int = 0) -> pd.DataFrame:
    """Columns whose type pandas infers per chunk differently: an integer column with gaps (floats
    in a chunk with a gap, integers elsewhere) and a column of true/false with one other word."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "city": rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], rows),
        "hour": rng.integers(0, 6, rows).astype(object),
        "member": rng.choice(["true", "false"], rows).astype(object),
        "price": rng.normal(10, 3, rows).round(2),
        "label": rng.normal(size=rows).round(3),
    })
    frame.loc[rng.choice(rows, 6, replace=False), "hour"] = None
    frame.loc[0, "member"] = "unsure"
    frame.loc[rng.choice(rows, 3, replace=False), "price"] = None
    frame.to_csv(path, index=False)
    return frame


def random_checkpoint(dataset, model="afm", task="regression", seed=0) -> Checkpoint:
    """A model with sizeable random weights: every feature moves the score, so a row encoded
    with one wrong value shows."""
    schema = dataset.schema
    config = ModelConfig(model=model, num_features=schema.num_features, num_fields=schema.num_fields,
                         embedding_dim=6, attention_dim=5)
    network = build_model(config, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return Checkpoint(network.eval(), config, {"task": task}, [], schema, TrainedOn.of(dataset))


@pytest.mark.slow  # scores the same rows several times
def test_csv_rows_in_any_order_without_labels_and_in_any_chunks_score_as_the_whole_file(tmp_path):
    path = tmp_path / "rows.csv"
    frame = write_csv_rows(path, 120)
    dataset = load_csv(path, categorical=["hour"], min_count=1)
    checkpoint = random_checkpoint(dataset)
    # The reference: the whole file read at once and encoded as `afm evaluate` encodes it.
    whole, lines = read_table(path)
    from afm.data import TabularEncoder

    ids, values = TabularEncoder.of(checkpoint.schema).transform(whole, path, lines)
    reference = checkpoint.model.inference(torch.from_numpy(ids), torch.from_numpy(values)).numpy()

    predict_file(checkpoint, path, tmp_path / "a.csv", chunk_rows=7)
    a = pd.read_csv(tmp_path / "a.csv")
    np.testing.assert_allclose(a["prediction"], reference, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a["label"], frame["label"], rtol=1e-6)

    order = np.random.default_rng(1).permutation(len(frame))
    shuffled = tmp_path / "shuffled.csv"
    frame.drop(columns=["label"]).iloc[order].to_csv(shuffled, index=False)
    summary = predict_file(checkpoint, shuffled, tmp_path / "b.csv", explain=2, chunk_rows=5)
    b = pd.read_csv(tmp_path / "b.csv")
    assert not summary["labelled"] and "label" not in b
    np.testing.assert_allclose(b["prediction"], reference[order], rtol=1e-5, atol=1e-5)
    # Explanations name the values as the file writes them, numbers included.
    assert b["pair_1"].str.contains(r"^(?:city|hour|member|price)=").all()
    assert any("price=" in p and "." in p.split("price=")[1] for p in b["pair_1"].tolist() + b["pair_2"].tolist())


def test_binary_models_add_the_probability(tmp_path):
    path = tmp_path / "rows.csv"
    write_csv_rows(path, 40)
    checkpoint = random_checkpoint(load_csv(path, min_count=1), task="binary")
    predict_file(checkpoint, path, tmp_path / "out.csv", keep_inputs=False)
    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table.columns) == ["row", "label", "prediction", "probability"]
    np.testing.assert_allclose(table["probability"], 1 / (1 + np.exp(-table["prediction"])), rtol=1e-5)


def test_a_scored_csv_keeps_its_own_columns_as_written_unless_dropped(tmp_path, capsys):
    """#27: the scored rows keep the file's columns (all but the label), cell for cell as the file
    writes them, before the scores; one named like an output column is written input_<name>."""
    frame = write_csv_rows(tmp_path / "train.csv", 60)
    checkpoint = random_checkpoint(load_csv(tmp_path / "train.csv", min_count=1), task="binary")
    rows = frame.assign(prediction="theirs", row=range(100, 160))
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict_file(checkpoint, tmp_path / "rows.csv", tmp_path / "out.csv", explain=1, chunk_rows=7)
    table = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    written = pd.read_csv(tmp_path / "rows.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["row", "city", "hour", "member", "price", "input_prediction", "input_row", "label",
                                   "prediction", "probability", "pair_1", "contribution_1", "attention_1"]
    assert list(table["row"]) == [str(r) for r in range(60)]
    for column in ("city", "hour", "member", "price"):
        assert list(table[column]) == list(written[column]), column
    assert list(table["input_prediction"]) == ["theirs"] * 60 and list(table["input_row"]) == list(written["row"])
    np.testing.assert_allclose(table["label"].astype(float), frame["label"], rtol=1e-6)
    # Dropped, from the function and from the command line: the scores alone, the same numbers.
    predict_file(checkpoint, tmp_path / "rows.csv", tmp_path / "bare.csv", explain=1, keep_inputs=False)
    bare = pd.read_csv(tmp_path / "bare.csv", dtype=str)
    assert list(bare.columns) == ["row", "label", "prediction", "probability", "pair_1", "contribution_1",
                                  "attention_1"]
    assert list(bare["prediction"]) == list(table["prediction"])
    save_checkpoint(tmp_path / "model.safetensors", checkpoint)
    for flags, expected in (([], table.columns), (["--drop-inputs"], bare.columns)):
        code = main(["predict", "--checkpoint", str(tmp_path / "model.safetensors"), "--data",
                     str(tmp_path / "rows.csv"), "--out", str(tmp_path / "cli.csv"), "--explain", "1", "--quiet",
                     *flags])
        assert code == 0, capsys.readouterr().err
        assert list(pd.read_csv(tmp_path / "cli.csv").columns) == list(expected)


def test_the_reader_streams_chunk_by_chunk(sample_afm, tmp_path, monkeypatch):
    """No chunk holds more than `chunk_rows` rows, and the first chunks come out while most of
    the file is still unread: nothing ever holds the whole file."""
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4096)
    path = tmp_path / "rows.libfm"
    path.write_text(libfm_rows(load_dataset("sample").train))
    size = path.stat().st_size
    chunks = [(len(c), c.start, c.bytes_read, c.lines[0]) for c in iter_rows(path, sample_afm.schema, chunk_rows=500)]
    assert all(n <= 500 for n, *_ in chunks) and sum(n for n, *_ in chunks) == 10_500
    assert [start for _, start, *_ in chunks] == list(range(0, 10_500, 500))
    assert chunks[0][2] < size / 10 and chunks[-1][2] == size
    assert [line for *_, line in chunks] == list(range(1, 10_500, 500))
    csv = tmp_path / "rows.csv"
    write_csv_rows(csv, 40_000)
    checkpoint = random_checkpoint(load_csv(csv, min_count=1))
    reads = [c.bytes_read for c in iter_rows(csv, checkpoint.schema, chunk_rows=2000)]
    assert len(reads) == 20 and reads[0] < csv.stat().st_size / 2


def test_crlf_and_cr_line_ends_split_across_blocks_keep_line_numbers(sample_afm, tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "BLOCK_BYTES", 37)  # blocks end inside lines and between \r and \n
    text = libfm_rows(load_dataset("sample").test, range(60))
    for ending in ("\r\n", "\r"):
        path = tmp_path / "rows.libfm"
        lines = text.splitlines()
        lines[41] = lines[41].replace(":1", ":x", 1)
        path.write_bytes(ending.join(lines).encode() + ending.encode())
        with pytest.raises(DataError, match="line 42:"):
            list(iter_rows(path, sample_afm.schema, chunk_rows=9))
        lines[41] = text.splitlines()[41]
        path.write_bytes(ending.join(lines).encode())  # no line end at the end
        chunks = list(iter_rows(path, sample_afm.schema, chunk_rows=9))
        assert sum(len(c) for c in chunks) == 60 and chunks[-1].lines[-1] == 60


# One row of the sample's fields (the first feature of each field), without and with a label.
def _valid_ids(schema) -> str:
    return " ".join(f"{int(schema.field_values(f)[0])}:1" for f in range(schema.num_fields))


@pytest.mark.parametrize("case, message", [
    ("one feature", "row needs one feature of each field|rows have 1 features"),
    ("label only on line 26", "line 26:"),
    ("id beyond the table", "beyond the schema's 115 features"),
    ("empty", "file is empty"),
])
def test_bad_libfm_rows_name_the_line_of_the_whole_file(sample_afm, tmp_path, case, message):
    ids = _valid_ids(sample_afm.schema)
    content = {"one feature": "1 0:1\n", "label only on line 26": f"{ids}\n" * 25 + f"2 {ids}\n",
               "id beyond the table": "1 " + ids.rsplit(" ", 1)[0] + " 9999:1\n", "empty": "\n\n"}[case]
    path = tmp_path / "rows.libfm"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        predict_file(sample_afm, path, tmp_path / "out.csv", chunk_rows=10)
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".*.part"))


def test_a_failed_run_leaves_the_previous_output_whole(tmp_path):
    path = tmp_path / "rows.csv"
    frame = write_csv_rows(path, 60)
    checkpoint = random_checkpoint(load_csv(path, min_count=1))
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    frame["price"] = frame["price"].astype(object)
    frame.loc[45, "price"] = "ten"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"rows.csv, line 47: column 'price' holds 'ten'"):
        predict_file(checkpoint, path, out, chunk_rows=20)
    assert out.read_text() == "previous\n" and not list(tmp_path.glob(".*.part"))
    frame.drop(columns=["city"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 1: columns \['city'\] that the model was trained on are missing"):
        predict_file(checkpoint, path, out)
    with pytest.raises(DataError, match="trained on a CSV"):
        predict_file(checkpoint, sample_checkpoint_path("afm").parent / "sample.test.libfm", out)


def test_cli_predict_prints_progress_and_the_json_summary(sample_afm, tmp_path, capsys):
    rows = tmp_path / "rows.libfm"
    rows.write_text(libfm_rows(load_dataset("sample").test, labels=False))
    out = tmp_path / "scored.csv"
    code = main(["predict", "--checkpoint", str(sample_checkpoint_path("afm")), "--data", str(rows), "--out", str(out),
                 "--explain", "2", "--chunk-rows", "500"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["rows"] == 1500 and summary["explain"] == 2 and summary["labelled"] is False
    assert "afm predict: 1,500 rows scored" in captured.err
    assert list(pd.read_csv(out).columns) == ["row", "prediction", "pair_1", "contribution_1", "attention_1", "pair_2",
                                              "contribution_2", "attention_2"]
    code = main(["predict", "--checkpoint", str(sample_checkpoint_path("afm")), "--data", str(tmp_path / "none.csv"),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and len(captured.err.strip().splitlines()) == 1
    missing = f"afm predict: error: {tmp_path / 'none.csv'}: cannot read file (No such file or directory)"
    assert captured.err.strip() == missing  # what is wrong, not what the model was trained on


@pytest.mark.slow
def test_the_predict_page_scores_an_upload_and_offers_the_csv_and_the_report(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from afm.paths import CHECKOUT

    at = AppTest.from_file(str(CHECKOUT / "app.py"), default_timeout=120)
    at.switch_page("pages/predict.py").run()
    assert not at.exception and not at.error
    test = load_dataset("sample").test
    at.file_uploader(key="predict_upload").upload("new rows.libfm", libfm_rows(test, range(200), labels=False).encode())
    at.run()
    at.number_input(key="predict_explain").set_value(2)
    next(b for b in at.button if b.label == "Score the rows").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["predict_result"]
    scored = pd.read_csv(result.path)
    assert len(scored) == 200 and result.download_name == "scored-new rows.csv"
    assert list(scored.columns) == ["row", "prediction", "pair_1", "contribution_1", "attention_1", "pair_2",
                                    "contribution_2", "attention_2"]
    expected = outputs(load_checkpoint(sample_checkpoint_path("afm")).model,
                       torch.from_numpy(test.feature_ids[:200]), torch.from_numpy(test.feature_values[:200]))
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-5, atol=1e-6)
    assert [b.label for b in at.get("download_button")] == ["Download the scored rows (CSV)",
                                                             "Download the report (HTML)"]
    # A bad file: the error names the file as the user named it and the line, never a server path.
    at.file_uploader(key="predict_upload").upload("broken.libfm", b"1 0:1 60:1\n").run()
    next(b for b in at.button if b.label == "Score the rows").click().run()
    errors = [e.value for e in at.error]
    assert any("broken.libfm, line 1" in e for e in errors) and not any("afm-uploads" in e for e in errors), errors
    # Scoring has the time limit of any load on the server (AFM_LOAD_SECONDS): past it, a message.
    at.file_uploader(key="predict_upload").upload("slow.libfm", libfm_rows(test, range(200), labels=False).encode())
    monkeypatch.setenv("AFM_LOAD_SECONDS", "1e-9")
    at.run()
    next(b for b in at.button if b.label == "Score the rows").click().run()
    errors = [e.value for e in at.error]
    assert not at.exception and any("slow.libfm: scoring took longer than 1e-09 s" in e for e in errors), errors
    assert not list(Path(result.path).parent.glob("scored-slow*")), "a stopped scoring left its output"


@pytest.mark.slow
def test_the_predict_page_keeps_the_uploads_columns_unless_told_to_drop_them(tmp_path):
    from streamlit.testing.v1 import AppTest

    from afm.app.jobs import Run
    from afm.paths import CHECKOUT

    frame = write_csv_rows(tmp_path / "train.csv", 60)
    run = Run.from_checkpoint(random_checkpoint(load_csv(tmp_path / "train.csv", min_count=1)), "CSV AFM", "test")
    at = AppTest.from_file(str(CHECKOUT / "app.py"), default_timeout=120).run()
    at.session_state["runs"][run.name] = run
    at.session_state["active_run"] = run.name
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="predict_upload").upload("new.csv", (tmp_path / "train.csv").read_bytes()).run()
    at.number_input(key="predict_explain").set_value(1)

    def score() -> pd.DataFrame:
        next(b for b in at.button if b.label == "Score the rows").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        return pd.read_csv(at.session_state["predict_result"].path)

    kept = score()
    assert list(kept.columns) == ["row", "city", "hour", "member", "price", "label", "prediction", "pair_1",
                                  "contribution_1", "attention_1"]
    assert list(kept["city"]) == list(frame["city"]) and len(at.get("download_button")) == 2
    at.checkbox(key="predict_drop_inputs").check().run()
    assert len(at.get("download_button")) == 1  # the rows scored with their columns are not offered as without
    dropped = score()
    assert list(dropped.columns) == ["row", "label", "prediction", "pair_1", "contribution_1", "attention_1"]
    assert list(dropped["prediction"]) == list(kept["prediction"])


@pytest.mark.parametrize("content, message", [
    (b"", "file is empty"),
    (b"city,hour,member,price,label\n", "no rows to score"),
    (b"city,hour,member,price\n\xff\xfe,1,true,2.0\n", "not UTF-8 text"),
    (b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
])
def test_empty_and_binary_csv_files_are_one_line_errors(tmp_path, content, message):
    write_csv_rows(tmp_path / "train.csv", 40)
    checkpoint = random_checkpoint(load_csv(tmp_path / "train.csv", min_count=1))
    path = tmp_path / "rows.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        predict_file(checkpoint, path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_explain_by_shapley_ranks_each_rows_pairs_by_the_exact_interaction_index(sample_afm, tmp_path):
    """`explain_by="shapley"`, chunk by chunk, against the exact values of all rows at once."""
    test = load_dataset("sample", schema=sample_afm.schema).test.take(np.arange(60))
    rows = tmp_path / "rows.libfm"
    rows.write_text(libfm_rows(test, labels=False))
    summary = predict_file(sample_afm, rows, tmp_path / "s.csv", explain=4, explain_by="shapley", chunk_rows=25)
    table = pd.read_csv(tmp_path / "s.csv")
    assert summary["explain_by"] == "shapley" and len(table) == 60
    assert list(table.columns[:6]) == ["row", "prediction", "pair_1", "shapley_1", "contribution_1", "attention_1"]
    exact = pair_shapley(sample_afm.model, test.feature_ids, test.feature_values).pair_interaction.numpy()  # (R, P)
    terms = sample_afm.model.decompose(torch.from_numpy(test.feature_ids), torch.from_numpy(test.feature_values))
    schema, fields = sample_afm.schema, sample_afm.schema.num_fields
    pairs = [(i, j) for i in range(fields) for j in range(i + 1, fields)]
    for r in range(len(test)):
        ranked = sorted(range(len(pairs)), key=lambda p: (-abs(exact[r, p]), p))[:4]  # the oracle: sort every pair
        for place, p in enumerate(ranked, start=1):
            i, j = pairs[p]
            assert table[f"pair_{place}"][r] == (f"{schema.feature_label(test.feature_ids[r, i])} x "
                                                 f"{schema.feature_label(test.feature_ids[r, j])}")
            np.testing.assert_allclose(table[f"shapley_{place}"][r], exact[r, p], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(table[f"contribution_{place}"][r], float(terms.pair_terms[r, p]), atol=1e-6)
            np.testing.assert_allclose(table[f"attention_{place}"][r], float(terms.pair_weights[r, p]), atol=1e-7)
    # The default is unchanged: by contribution, without a shapley column.
    plain = predict_file(sample_afm, rows, tmp_path / "c.csv", explain=4)
    assert plain["explain_by"] == "contribution" and "shapley_1" not in pd.read_csv(tmp_path / "c.csv")


def test_an_fms_shapley_interactions_are_its_pair_terms_so_both_rankings_agree(tmp_path):
    checkpoint = load_checkpoint(sample_checkpoint_path("fm"))
    rows = tmp_path / "rows.libfm"
    rows.write_text(libfm_rows(load_dataset("sample").valid, range(80)))
    predict_file(checkpoint, rows, tmp_path / "s.csv", explain=5, explain_by="shapley")
    predict_file(checkpoint, rows, tmp_path / "c.csv", explain=5)
    by_shapley, by_contribution = pd.read_csv(tmp_path / "s.csv"), pd.read_csv(tmp_path / "c.csv")
    for r in range(1, 6):
        assert (by_shapley[f"pair_{r}"] == by_contribution[f"pair_{r}"]).all()
        np.testing.assert_allclose(by_shapley[f"shapley_{r}"], by_contribution[f"contribution_{r}"], atol=1e-5)


def test_explain_by_shapley_refuses_what_it_cannot_do(tmp_path, capsys):
    fields = 17
    schema = FieldSchema(tuple(f"f{f}" for f in range(fields)), tuple(f for f in range(fields) for _ in range(2)))
    config = ModelConfig(model="afm", num_features=2 * fields, num_fields=fields, embedding_dim=2, attention_dim=2)
    wide = Checkpoint(build_model(config, seed=0), config, {"task": "regression"}, [], schema, TrainedOn())
    with pytest.raises(ConfigError, match="this model has 17 fields, more than the 16"):
        predict_file(wide, tmp_path / "rows.libfm", tmp_path / "out.csv", explain=2, explain_by="shapley")
    with pytest.raises(ConfigError, match="explain_by must be one of"):
        predict_file(wide, tmp_path / "rows.libfm", tmp_path / "out.csv", explain=2, explain_by="attention")
    rows = tmp_path / "rows.libfm"
    rows.write_text(libfm_rows(load_dataset("sample").valid, range(5)))
    afm_path = str(sample_checkpoint_path("afm"))
    for argv, message in [
        (["--explain-by", "shapley"], "--explain-by shapley ranks the pairs --explain N shows; give --explain N"),
        (["--explain", "2", "--explain-by", "size"], "argument --explain-by: invalid choice: 'size'"),
    ]:
        try:
            code = main(["predict", "--checkpoint", afm_path, "--data", str(rows), "--out", str(tmp_path / "o.csv"),
                         *argv])
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        assert code == 2 and captured.out == "" and len(captured.err.strip().splitlines()) == 1
        assert message in captured.err and not (tmp_path / "o.csv").exists()


def test_predict_never_writes_over_its_checkpoint_or_its_rows(tmp_path, capsys):
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(sample_checkpoint_path("afm").read_bytes())
    before = checkpoint.read_bytes()
    rows = tmp_path / "rows.libfm"
    rows.write_text(libfm_rows(load_dataset("sample").valid, range(5)))
    for out, what in ((checkpoint, "the checkpoint"), (rows, "the rows being scored")):
        code = main(["predict", "--checkpoint", str(checkpoint), "--data", str(rows), "--out", str(out)])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == ""
        assert captured.err.strip() == f"afm predict: error: {out}: the output would replace {what}; write it elsewhere"
    assert checkpoint.read_bytes() == before and rows.read_text() == libfm_rows(load_dataset("sample").valid, range(5))
    with pytest.raises(ConfigError, match="would replace the checkpoint"):  # given by path to the Python API too
        predict_file(checkpoint, rows, checkpoint)


def test_an_output_is_refused_when_it_is_an_input_by_any_name(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "d.train.libfm").write_text("1 0:1\n")
    (tmp_path / "link.safetensors").symlink_to(weights)
    (tmp_path / "hard.safetensors").hardlink_to(weights)
    names = ("link.safetensors", "hard.safetensors", "./w.safetensors")
    for out in (weights, *(tmp_path / name for name in names)):
        with pytest.raises(ConfigError, match="would replace the weights"):
            check_not_an_input(out, {"the weights": weights})
    for out in (folder / "d.train.libfm", folder / "new.libfm", folder / "d.features.tsv", folder / "arrays.json"):
        with pytest.raises(ConfigError, match="would replace the data"):
            check_not_an_input(out, {"the data": folder})
    check_not_an_input(folder / "pairs.csv", {"the data": folder, "the weights": weights})  # beside them: fine
    check_not_an_input(tmp_path / "sample", {"the data": "sample", "the features": None})  # a name, not a path
    code = main(["import", "torchfm", "--weights", str(weights), "--field-dims", "3,4", "--out", str(weights)])
    captured = capsys.readouterr()
    assert code == 2 and "the output would replace the weights" in captured.err and weights.read_bytes() == b"weights"
