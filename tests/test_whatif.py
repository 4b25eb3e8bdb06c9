"""What-if rows: the analysis against separate decompositions, and the Attention page's section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from afm.analysis.whatif import Row, compare_rows, field_number, field_options, field_slot, typical_row
from afm.checkpoint import Checkpoint, TrainedOn, load_checkpoint
from afm.data import load_csv, load_dataset, split_indices
from afm.figures import what_if_figure
from afm.models import ModelConfig, build_model
from afm.samples.checkpoints import sample_checkpoint_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


def first_row(dataset) -> Row:
    return Row(dataset.test.feature_ids[0], dataset.test.feature_values[0])


@pytest.mark.parametrize("model_name", ["afm", "fm", "fwfm"])
def test_changing_one_field_matches_decomposing_each_row_alone(sample, model_name):
    checkpoint = load_checkpoint(sample_checkpoint_path(model_name))
    schema, start = sample.schema, first_row(sample)
    item = schema.field_names.index("item")
    new_item = next(i for i in schema.field_values(item) if i != start.feature_ids[item])
    row = start.with_field(schema, item, int(new_item))
    result = compare_rows(checkpoint.model, schema, start, row)
    assert result.changed_fields == ["item"]
    alone = [checkpoint.model.decompose(torch.from_numpy(r.feature_ids[None]), torch.from_numpy(r.feature_values[None]))
             for r in (start, row)]
    assert result.start_prediction == pytest.approx(float(alone[0].prediction[0]), abs=1e-5)
    assert result.prediction == pytest.approx(float(alone[1].prediction[0]), abs=1e-5)
    pairs = result.table[result.table.kind == "pair"]
    np.testing.assert_allclose(pairs["term"], alone[1].pair_terms[0].double(), atol=1e-6)
    np.testing.assert_allclose(pairs["start_attention"], alone[0].pair_weights[0].double(), atol=1e-6)
    assert result.table["change"].sum() == pytest.approx(result.change, abs=1e-5)  # the parts add up
    touches_item = pairs["part"].str.contains(r"\bitem\b")
    assert (pairs.loc[touches_item, "now"].str.contains(f"item={schema.value_name(int(new_item))}")).all()
    untouched = pairs.loc[~touches_item]
    if model_name == "afm":  # the softmax moves every pair's weight, not only the item's pairs
        assert (untouched["attention_change"].abs() > 1e-9).all()
    else:  # FM and FwFM weights do not depend on the row: only the item's pairs move
        assert (untouched["change"].abs() < 1e-6).all() and (untouched["attention_change"] == 0).all()
    first_order = result.table[result.table.kind == "first order"].set_index("part")["change"]
    assert (first_order.drop("item").abs() < 1e-12).all()


def test_an_unchanged_row_changes_nothing(sample):
    checkpoint = load_checkpoint(sample_checkpoint_path("afm"))
    start = first_row(sample)
    result = compare_rows(checkpoint.model, sample.schema, start, start)
    assert result.changed_fields == [] and result.change == 0 and (result.table["change"] == 0).all()


def test_fields_offer_their_named_values_and_composing_starts_from_the_most_common(sample):
    schema = sample.schema
    device = schema.field_names.index("device")
    options = field_options(schema, device)
    assert [name for _, name in options] == ["phone", "laptop"]  # the sample names its values
    assert all(schema.feature_field[feature] == device for feature, _ in options)
    typical = typical_row(schema, sample.train)
    for f in range(schema.num_fields):
        assert typical.feature_ids[f] == np.bincount(sample.train.feature_ids[:, f]).argmax()
    with pytest.raises(ValueError, match="not a value of field 'device'"):
        field_slot(schema, device, int(schema.field_values(0)[0]))


def test_numeric_csv_fields_are_entered_as_numbers(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"city": rng.choice(["Oslo", "Lima"], 80), "price": rng.normal(20, 4, 80).round(1),
                          "label": rng.normal(size=80)})
    frame.to_csv(tmp_path / "rows.csv", index=False)
    dataset = load_csv(tmp_path / "rows.csv")
    schema = dataset.schema
    price = schema.field_names.index("price")
    assert field_options(schema, price) is None and field_options(schema, 0) is not None
    start = typical_row(schema, dataset.train)
    train_rows = split_indices(len(frame), 0)["train"]
    assert field_number(schema, price, start) == pytest.approx(frame["price"].iloc[train_rows].mean())  # the mean
    row = start.with_field(schema, price, 30.0)
    assert field_number(schema, price, row) == pytest.approx(30.0)
    config = ModelConfig(model="afm", num_features=schema.num_features, num_fields=2, embedding_dim=4,
                         attention_dim=3)
    checkpoint = Checkpoint(build_model(config, seed=1), config, {"task": "regression"}, [], schema,
                            TrainedOn.of(dataset))
    result = compare_rows(checkpoint.model, schema, start, row)
    assert result.changed_fields == ["price"]
    assert result.table.loc[result.table.part == "price", "now"].item() == "price=30"


def test_the_figure_shows_the_terms_that_moved_most(sample):
    checkpoint = load_checkpoint(sample_checkpoint_path("afm"))
    start = first_row(sample)
    row = start.with_field(sample.schema, 1, int(sample.schema.field_values(1)[3]))
    table = compare_rows(checkpoint.model, sample.schema, start, row).table
    figure = what_if_figure(table, top=5)
    assert [trace.name for trace in figure.data] == ["start row", "start row", "now", "now"]
    shown = list(figure.data[0].y)[::-1]  # largest on top
    moved = table[table.kind != "bias"].assign(size=lambda t: t["change"].abs()).nlargest(5, "size")["part"]
    assert shown == list(moved)


@pytest.mark.slow
def test_what_if_on_the_attention_page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/attention.py").run()
    assert not at.exception and not at.error

    def metrics():
        return {m.label: (float(m.value), m.delta) for m in at.metric}

    start, now = metrics()["Prediction, starting row"][0], metrics()["Prediction now"][0]
    assert start == now  # nothing changed yet
    sample = load_dataset("sample")
    checkpoint = load_checkpoint(sample_checkpoint_path("afm"))
    at.number_input(key="whatif_row").set_value(5).run()
    item = sample.schema.field_names.index("item")
    at.selectbox(key="whatif_field").set_value(item).run()
    choice = int(sample.schema.field_values(item)[7])
    at.selectbox(key=f"whatif_to_{item}").set_value(choice).run()
    assert not at.exception and not at.error
    start_row = Row(sample.test.feature_ids[5], sample.test.feature_values[5])
    changed = start_row.with_field(sample.schema, item, choice)
    expected = compare_rows(checkpoint.model, sample.schema, start_row, changed)
    shown = metrics()
    assert shown["Prediction, starting row"][0] == pytest.approx(expected.start_prediction, abs=1e-4)
    assert shown["Prediction now"][0] == pytest.approx(expected.prediction, abs=1e-4)
    assert float(shown["Prediction now"][1]) == pytest.approx(expected.change, abs=2e-4)
    table = at.dataframe[-1].value  # the what-if table closes the page
    assert table["change"].abs().iloc[0] == pytest.approx(expected.table["change"].abs().max(), abs=1e-4)
    # Compose a row from the fields' menus instead, then change one of its fields.
    at.radio(key="whatif_origin").set_value("compose").run()
    hour = sample.schema.field_names.index("hour")
    at.selectbox(key=f"whatif_start_{hour}").set_value(int(sample.schema.field_values(hour)[3])).run()
    assert not at.exception and not at.error
    composed = typical_row(sample.schema, sample.train).with_field(sample.schema, hour,
                                                                   int(sample.schema.field_values(hour)[3]))
    expected = compare_rows(checkpoint.model, sample.schema, composed, composed.with_field(sample.schema, item, choice))
    assert metrics()["Prediction, starting row"][0] == pytest.approx(expected.start_prediction, abs=1e-4)
    assert metrics()["Prediction now"][0] == pytest.approx(expected.prediction, abs=1e-4)
    assert len(at.get("plotly_chart")) >= 5


def test_the_docs_python_example_runs():
    import re

    text = (ROOT / "docs" / "explain.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "compare_rows" in block)
    namespace: dict = {}
    exec(compile(example, "docs/explain.md", "exec"), namespace)
    assert namespace["result"].changed_fields == ["item"]
