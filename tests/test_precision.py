"""The recipe's `precision`: AFM's attention network in bfloat16 during training steps only. The
gradients it gives are float32's to bfloat16's rounding, evaluation and analyses stay exact, the
choice travels with the checkpoint, and a machine where it would be slower refuses it."""

from __future__ import annotations

import pytest
import torch

import afm
from afm.errors import ConfigError
from afm.models import ModelConfig, build_model
from afm.recipe import preset
from afm.train import TrainConfig, train_model
from afm.training_plan import native_bfloat16, uses_bfloat16_attention
from tests.conftest import random_dataset

NATIVE_BF16 = native_bfloat16(torch.device("cpu"))
needs_native_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has neither AVX512-BF16 nor AMX: "
                                                               "bfloat16 is refused here (tested below)")


def afm_model(seed=0, k=32, t=16, features=400, fields=6):
    config = ModelConfig(model="afm", num_features=features, num_fields=fields, embedding_dim=k, attention_dim=t,
                         dropout_pooled=0.0)
    model = build_model(config, seed=seed)
    with torch.no_grad():  # untrained embeddings are N(0, 0.01): make the attention network's input matter
        model.embedding.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return model


def gradients(model, ids, values, one_hot):
    model.zero_grad(set_to_none=True)
    prediction = model(ids, values, one_hot=one_hot)
    prediction.square().sum().backward()
    return prediction.detach(), {name: p.grad.to_dense().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("one_hot", [True, False])  # the distinct-pair path and the plain (B, P, k) one
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_bfloat16_step_is_the_float32_step_to_bfloat16s_rounding(one_hot, seed):
    """Same prediction and gradients as float32's within bfloat16's 8 significant bits (relative
    error of each gradient tensor under 3 %), and not the same bits: the products did run in bfloat16."""
    model = afm_model(seed)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 400, (96, 6), generator=g)
    values = torch.ones(96, 6) if one_hot else torch.rand(96, 6, generator=g) + 0.5
    model.train()
    reference, reference_grads = gradients(model, ids, values, one_hot)
    model.training_dtype = torch.bfloat16
    fast, fast_grads = gradients(model, ids, values, one_hot)
    assert fast.dtype == torch.float32 and all(grad.dtype == torch.float32 for grad in fast_grads.values())
    assert not torch.equal(fast, reference)
    torch.testing.assert_close(fast, reference, rtol=0.03, atol=0.03 * float(reference.abs().mean()))
    for name, grad in reference_grads.items():
        # The bias's gradient, 2 sum(prediction), can cancel to near 0: its scale is 2 sum |prediction|.
        scale = 2 * reference.abs().sum() if name == "bias" else grad.norm()
        error = float((fast_grads[name] - grad).norm() / scale)
        assert error < 0.03, f"{name}: relative error {error:.4f}"


def test_evaluation_and_analyses_ignore_the_training_dtype():
    """Out of training mode (evaluation, the trainer's trackers, every analysis) the attention network
    computes in the weights' dtype: predictions, decompositions and attention weights are bit for bit
    the same whatever training_dtype says."""
    model = afm_model().eval()
    ids = torch.randint(0, 400, (50, 6), generator=torch.Generator().manual_seed(3))
    values = torch.ones(50, 6)
    before = model.inference(ids, values), model.decompose(ids, values).pair_weights
    model.training_dtype = torch.bfloat16
    after = model.inference(ids, values), model.decompose(ids, values).pair_weights
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert model.attention_network(torch.randn(4, 15, 32))[0].dtype == torch.float32


def test_the_trainer_sets_the_dtype_for_its_steps_and_leaves_the_model_as_it_was():
    seen = []

    class Watch:
        def on_batch_end(self, epoch, batch, num_batches):
            seen.append(model.training_dtype)

        def on_epoch_end(self, record):
            pass

    dataset = random_dataset(num_rows=300, field_sizes=(6, 5, 4, 7))
    model = build_model(ModelConfig(model="afm", num_features=22, num_fields=4, embedding_dim=8, attention_dim=8),
                        seed=0)
    if not NATIVE_BF16:
        with pytest.raises(ConfigError, match="precision bfloat16 would be slower than float32 on this CPU"):
            train_model(model, dataset, TrainConfig(epochs=1, device="cpu", precision="bfloat16"))
        return
    result = train_model(model, dataset, TrainConfig(epochs=2, device="cpu", precision="bfloat16"),
                         callbacks=[Watch()])
    assert seen and set(seen) == {torch.bfloat16}
    assert result.model.training_dtype is None


@needs_native_bf16
def test_a_bfloat16_recipe_is_in_its_checkpoint_and_learns_as_well_as_float32(tmp_path):
    """afm.fit with precision bfloat16 on the sample, the quick preset to its end: the checkpoint says
    so (and its command line trains it again); its best validation RMSE is no worse than the float32
    training's by more than 5 % (seed 3 on 2026-12-07: 0.2125 against 0.2373; seed 4: 0.2256
    against 0.2382; Frappe's paper recipe: docs/benchmarks.md)."""
    recipes = {p: preset("quick", "afm", seed=3, device="cpu", precision=p) for p in ("float32", "bfloat16")}
    fitted = {p: afm.fit("sample", recipe=recipe) for p, recipe in recipes.items()}
    loaded = afm.load(fitted["bfloat16"].save(tmp_path / "m.safetensors"))
    assert loaded.recipe.precision == "bfloat16" and "--precision bfloat16" in loaded.recipe.command("sample")
    rmse = {p: model.checkpoint.best["valid_rmse"] for p, model in fitted.items()}
    assert rmse["bfloat16"] <= 1.05 * rmse["float32"]
    assert rmse["bfloat16"] != rmse["float32"]  # a different computation, not the same one relabelled


def test_a_cpu_without_bfloat16_instructions_refuses_it_in_one_line(monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    model = afm_model()
    with pytest.raises(ConfigError) as refused:
        uses_bfloat16_attention(model, TrainConfig(precision="bfloat16"), torch.device("cpu"))
    assert "neither AVX512-BF16 nor AMX" in str(refused.value) and "--precision float32" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert uses_bfloat16_attention(model, TrainConfig(), torch.device("cpu")) is False  # float32 asks nothing
