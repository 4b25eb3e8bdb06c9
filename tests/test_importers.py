"""AFMs and FMs trained with torchfm 0.7.0 and DeepCTR-Torch 0.3.0, trained here in the tests
themselves, imported, and reproduced on the same rows; weights are never unpickled as code."""

from __future__ import annotations

import io
import json
import pickle
import threading
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from afm.checkpoint import load_checkpoint
from afm.cli import main

pytest.importorskip("torchfm", reason="torchfm 0.7.0 is a test dependency (requirements-dev.txt)")
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "sample"
DIMS = [5, 4, 3, 6]
OFFSETS = np.concatenate(([0], np.cumsum(DIMS)[:-1]))


def import_deepctr():
    """deepctr_torch checks PyPI for a newer version in a thread when imported; tests stay offline."""
    import requests

    with mock.patch.object(requests, "get", side_effect=OSError("tests do not reach the network")):
        models = pytest.importorskip("deepctr_torch.models", reason="DeepCTR-Torch is a test dependency")
        for thread in threading.enumerate():
            if thread.name.endswith("(check)"):
                thread.join(10)
    from deepctr_torch.inputs import SparseFeat

    return models, SparseFeat


def rows(count=400, seed=0):
    rng = np.random.default_rng(seed)
    local = np.stack([rng.integers(0, d, count) for d in DIMS], axis=1)  # (N, F) ids within each field
    logit = np.where((local[:, 0] + local[:, 1]) % 3 == 0, 1.0, -1.0) + 0.3 * (local[:, 3] - 2.5)
    labels = (rng.random(count) < 1 / (1 + np.exp(-logit))).astype(np.float32)  # noisy: probabilities stay inside
    return local, labels


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ours(path, local_ids, offsets=OFFSETS) -> torch.Tensor:
    checkpoint = load_checkpoint(path)
    ids = torch.from_numpy(local_ids + offsets)
    return checkpoint.model.inference(ids, torch.ones(ids.shape))


def train_torchfm(kind: str, local, labels, dims=DIMS, k=8, t=6, steps=80):
    """A torchfm model trained for a few steps (torchfm 0.7.0 needs np.long, gone in NumPy 2)."""
    with mock.patch.object(np, "long", np.int64, create=True):
        from torchfm.model.afm import AttentionalFactorizationMachineModel
        from torchfm.model.fm import FactorizationMachineModel

        torch.manual_seed(0)
        model = (AttentionalFactorizationMachineModel(dims, k, t, (0.0, 0.0)) if kind == "afm"
                 else FactorizationMachineModel(dims, k))
    x, y = torch.from_numpy(local), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def torchfm_logit(model, x: torch.Tensor) -> torch.Tensor:
    """torchfm's forward without its final sigmoid."""
    interaction = model.afm if hasattr(model, "afm") else model.fm
    return (model.linear(x) + interaction(model.embedding(x))).squeeze(1)


def save_weights(model, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("kind", ["afm", "fm"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_torchfm_models_are_reproduced(tmp_path, capsys, kind, suffix):
    local, labels = rows()
    model = train_torchfm(kind, local, labels)
    weights = save_weights(model, tmp_path / f"weights{suffix}")
    out = tmp_path / "imported.safetensors"
    code, stdout, stderr = run_cli(capsys, "import", "torchfm", "--weights", str(weights), "--field-dims", "5,4,3,6",
                                   "--field-names", "user,item,hour,city", "--out", str(out))
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["model"] == kind and summary["k"] == 8 and summary.get("t") == (6 if kind == "afm" else None)
    assert summary["task"] == "binary" and summary["fields"] == ["user", "item", "hour", "city"]
    fresh, _ = rows(300, seed=1)  # rows the model never saw
    x = torch.from_numpy(fresh)
    with torch.no_grad():
        probability, logit = model(x), torchfm_logit(model, x)
    scores = ours(out, fresh)
    assert torch.allclose(torch.sigmoid(scores), probability, atol=1e-5, rtol=0)
    assert torch.allclose(scores, logit, atol=1e-5, rtol=1e-5)
    assert 0.3 < float(logit.std()) < 10  # a trained model: the scores differ between rows, not saturated
    checkpoint = load_checkpoint(out)
    assert checkpoint.history == [] and checkpoint.train_config["imported_from"].startswith("torchfm 0.7.0")


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_deepctr_models_are_reproduced(tmp_path, capsys, attention, task):
    models, SparseFeat = import_deepctr()
    names = ["user", "item", "hour", "city"]
    local, labels = rows()
    columns = [SparseFeat(name, size, embedding_dim=8) for name, size in zip(names, DIMS)]
    # Linear terms on three columns only: a field without one gets w = 0.
    model = models.AFM(columns[:3], columns, use_attention=attention, attention_factor=6, task=task, init_std=0.1,
                       afm_dropout=0.3, seed=0)
    model.compile(torch.optim.Adam(model.parameters(), lr=0.03), "binary_crossentropy" if task == "binary" else "mse")
    target = labels if task == "binary" else labels * 2 + local[:, 2].astype(np.float32)
    model.fit({n: local[:, f] for f, n in enumerate(names)}, target, batch_size=64, epochs=4, verbose=0)
    weights = save_weights(model, tmp_path / "afm.safetensors")
    out = tmp_path / "imported.safetensors"
    order = ["city", "hour", "user", "item"]  # the rows' column order need not be the model's
    code, stdout, stderr = run_cli(capsys, "import", "deepctr", "--weights", str(weights), "--fields", ",".join(order),
                                   "--task", task, "--out", str(out))
    assert code == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["model"] == ("afm" if attention else "fm")
    fresh, _ = rows(300, seed=2)
    theirs = model.predict({n: fresh[:, f] for f, n in enumerate(names)}, batch_size=128)[:, 0]
    reordered = fresh[:, [names.index(n) for n in order]]
    sizes = [DIMS[names.index(n)] for n in order]
    scores = ours(out, reordered, np.concatenate(([0], np.cumsum(sizes)[:-1])))
    if task == "binary":
        scores = torch.sigmoid(scores)
    np.testing.assert_allclose(scores.numpy(), theirs, atol=1e-5, rtol=0)
    assert np.std(theirs) > 0.01


class RunsCode:
    """Unpickling this creates a file: the proof that a loader ran code it was handed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["raw pickle", "torch.save"])
def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path, capsys, how):
    marker = tmp_path / "the-code-ran"
    weights = tmp_path / "weights.pt"
    payload = {"embedding.embedding.weight": torch.zeros(18, 4), "hook": RunsCode(marker)}
    if how == "raw pickle":
        weights.write_bytes(pickle.dumps(payload))
    else:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        weights.write_bytes(buffer.getvalue())
    # The file is dangerous: loading it as a plain pickle runs its code.
    if how == "raw pickle":
        pickle.loads(weights.read_bytes())
    else:
        torch.load(weights, weights_only=False)
    assert marker.exists()
    marker.unlink()
    code, stdout, stderr = run_cli(capsys, "import", "torchfm", "--weights", str(weights), "--field-dims", "5,4,3,6",
                                   "--out", str(tmp_path / "out.safetensors"))
    assert code == 2 and stdout == ""
    assert "refused" in stderr and "state_dict" in stderr and len(stderr.strip().splitlines()) == 1
    if how == "torch.save":
        assert "would call getattr" in stderr, stderr  # how pickle reaches Path.touch
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("case, message", [
    ("dims", "the embedding table has 18 rows but --field-dims add up to 17"),
    ("foreign", "tensor 'embedding.embedding.weight' is missing"),
    ("extra", "are not part of a torchfm 0.7.0 AttentionalFactorizationMachineModel"),
    ("garbage", "not a safetensors or PyTorch weights file"),
    ("a pickle of other things", "refused: not a file that torch.load(weights_only=True) can read safely"),
    ("nan", "holds NaN or infinite values"),
    ("not a state_dict", "holds no state_dict"),
])
def test_wrong_weights_are_one_line_errors(tmp_path, capsys, case, message):
    local, labels = rows(50)
    state = train_torchfm("afm", local, labels, steps=1).state_dict()
    dims = "5,4,3,5" if case == "dims" else "5,4,3,6"
    if case == "foreign":
        state = {"embedding_dict.user.weight": torch.zeros(5, 8)}
    elif case == "extra":
        state["mlp.weight"] = torch.zeros(3)
    elif case == "nan":
        state["afm.fc.weight"][0, 0] = float("nan")
    weights = tmp_path / "weights.safetensors"
    if case == "garbage":
        weights.write_bytes(b"hello, these are not weights")
    elif case == "a pickle of other things":
        weights.write_bytes(pickle.dumps({"embedding.embedding.weight": [0.0] * 4}))
    elif case == "not a state_dict":
        torch.save([torch.zeros(2)], weights)
    else:
        save_file(state, str(weights))
    code, stdout, stderr = run_cli(capsys, "import", "torchfm", "--weights", str(weights), "--field-dims", dims,
                                   "--out", str(tmp_path / "out.safetensors"))
    assert code == 2 and stdout == "" and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.slow  # trains a model
def test_an_imported_model_predicts_explains_and_reports(tmp_path, capsys):
    local, labels = rows()
    weights = save_weights(train_torchfm("afm", local, labels), tmp_path / "w.pt")
    checkpoint = tmp_path / "imported.safetensors"
    assert main(["import", "torchfm", "--weights", str(weights), "--field-dims", "5,4,3,6", "--out",
                 str(checkpoint)]) == 0
    code, _, stderr = run_cli(capsys, "history", "--checkpoint", str(checkpoint))
    assert code == 2 and "has no training history" in stderr
    data = tmp_path / "rows.libfm"
    data.write_text("".join(" ".join(f"{i}:1" for i in row) + "\n" for row in local[:30] + OFFSETS))
    assert main(["predict", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "p.csv"),
                 "--explain", "2"]) == 0
    scored = pd.read_csv(tmp_path / "p.csv")
    assert list(scored.columns[:3]) == ["row", "prediction", "probability"]
    assert scored["pair_1"].str.match(r"field\d=\d+ x field\d=\d+").all()
    labelled = tmp_path / "labelled.libfm"  # a report measures metrics: it needs labels
    labelled.write_text("".join(f"{y:g} " + " ".join(f"{i}:1" for i in row) + "\n"
                                for y, row in zip(labels, local + OFFSETS)))
    report = tmp_path / "report.html"
    assert main(["report", "--checkpoint", str(checkpoint), "--data", str(labelled), "--out", str(report)]) == 0
    page = report.read_text()
    assert "imported from torchfm" in page and "No training history" in page and "Top pairs" in page


# --------------------------------------------------------------------------- the app on imported models


@pytest.mark.slow
def test_every_page_works_on_imported_models(tmp_path):
    """A DeepCTR-Torch regression AFM on the bundled sample, a torchfm (binary) AFM on an uploaded
    binary copy of it: loaded through the Data page, then every page without an error."""
    from streamlit.testing.v1 import AppTest

    from afm.data import load_dataset

    sample = load_dataset("sample")
    sizes = np.bincount(sample.schema.feature_field)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    local = sample.train.feature_ids - offsets
    names = list(sample.schema.field_names)
    features = SAMPLE / "sample.features.tsv"

    models, SparseFeat = import_deepctr()
    columns = [SparseFeat(n, int(s), embedding_dim=8) for n, s in zip(names, sizes)]
    deepctr = models.AFM(columns, columns, attention_factor=8, task="regression", init_std=0.1, seed=0)
    deepctr.compile(torch.optim.Adam(deepctr.parameters(), lr=0.02), "mse")
    deepctr.fit({n: local[:, f] for f, n in enumerate(names)}, sample.train.labels, batch_size=256, epochs=1,
                verbose=0)
    save_weights(deepctr, tmp_path / "deepctr.safetensors")
    assert main(["import", "deepctr", "--weights", str(tmp_path / "deepctr.safetensors"), "--task", "regression",
                 "--fields", ",".join(names), "--features", str(features),
                 "--out", str(tmp_path / "deepctr-afm.safetensors")]) == 0

    binary = (sample.train.labels > 0).astype(np.float32)
    torchfm = train_torchfm("afm", local, binary, dims=[int(s) for s in sizes], steps=30)
    save_weights(torchfm, tmp_path / "torchfm.pt")
    assert main(["import", "torchfm", "--weights", str(tmp_path / "torchfm.pt"),
                 "--field-dims", ",".join(str(s) for s in sizes), "--features", str(features),
                 "--out", str(tmp_path / "torchfm-afm.safetensors")]) == 0
    rows_text = "".join(f"{int(y)} " + " ".join(f"{i}:1" for i in ids) + "\n"
                        for y, ids in zip(binary[:3000], sample.train.feature_ids[:3000]))

    for checkpoint, upload in (("deepctr-afm", None), ("torchfm-afm", rows_text)):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        if upload is not None:
            at.radio(key="dataset_source").set_value("upload").run()
            at.file_uploader[0].upload("binary.libfm", upload.encode()).run()
        loader = at.file_uploader[-1]
        loader.upload(f"{checkpoint}.safetensors", (tmp_path / f"{checkpoint}.safetensors").read_bytes()).run()
        next(b for b in at.button if b.label == "Load checkpoint").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert at.session_state["runs"][at.session_state["active_run"]].history == []
        for page in ("pages/attention.py", "pages/coupling.py", "pages/curves.py", "pages/predict.py"):
            at.switch_page(page).run()
            assert not at.exception, (checkpoint, page, [e.value for e in at.exception])
            assert not at.error, (checkpoint, page, [e.value for e in at.error])
        at.switch_page("pages/attention.py").run()
        assert any(m.label == "Prediction now" for m in at.metric)  # the what-if section drew
