"""The Lesson's steps as the page draws them: each one figure, the numbers of its sentences and one
thing to try, on the bundled samples' models (afm.lesson says what each step teaches). Shared,
read-only material (datasets, models, analyses) comes from server-wide caches; the one training
(*Train it live*) runs as a scheduler job like any other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from afm import lesson
from afm.analysis.attention import decompose_split, pair_matrix, summarize_pairs
from afm.analysis.attention_replay import replay_frames
from afm.analysis.model_walk import walk_row
from afm.app import cache, state
from afm.app.jobs import Run, TrainingJob
from afm.data import Dataset
from afm.errors import AFMError
from afm.figures import MODEL_COLORS, attention_heatmap, field_pair_heatmap, planted_heatmap
from afm.lesson_figures import grouped_bars, model_walk_figure, presented, replay_figure
from afm.models import MODEL_NAMES
from afm.paths import sample_dir
from afm.recipe import preset
from afm.samples.checkpoints import sample_checkpoint_path
from afm.samples.planted import planted_pairs

GATED, FIXED = "sample", "sample-fixed"
EXPLAINED_ROWS = 256  # test rows of the Shapley step: the Attention page's default, so its cache is shared
COLORS = {label: MODEL_COLORS[name] for name, label in lesson.MODEL_LABELS.items()}


def material(sample: str) -> tuple[Dataset, dict[str, Run]]:
    """The sample's dataset and its bundled FM, FwFM and AFM (shared with every session, read-only)."""
    data = cache.dataset(sample, None, None, 0.0)
    return data, {name: bundled_run(sample, name) for name in MODEL_NAMES}


@st.cache_resource(max_entries=6, show_spinner=False)
def bundled_run(sample: str, model: str) -> Run:
    path = sample_checkpoint_path(model, sample)
    checkpoint, key = cache.checkpoint_file(str(path), path.stat().st_mtime)
    return Run.from_checkpoint(checkpoint, f"{sample} {model.upper()}", "bundled", key=key)


@st.cache_data(max_entries=4, show_spinner="Measuring each model's weight on the gated pair…")
def weights_by_device(sample: str):
    data, runs = material(sample)
    return lesson.pair_weight_by_value({m: r.model for m, r in runs.items()}, data.test, data.schema,
                                       "user x item", "device")


def show(figure, presenter: bool, key: str | None = None) -> None:
    st.plotly_chart(presented(figure, presenter), config=state.PLOTLY_CONFIG, key=key)


def side_by_side(figures: list, presenter: bool) -> None:
    """Two figures beside each other on a wide screen, one under the other on a narrow one; the
    presenter's screen holds only the last, the one the step is about."""
    if presenter:
        show(figures[-1], presenter)
        return
    grid = st.grid(len(figures), min_column_width=400)
    for figure in figures:
        grid.plotly_chart(figure, config=state.PLOTLY_CONFIG)


def scores_line(sample: str, models=("fm", "fwfm", "afm")) -> str:
    data, runs = material(sample)
    return ", ".join(f"{lesson.MODEL_LABELS[m]} {runs[m].best['test_rmse']:.3f}" for m in models)


def draw_data(presenter: bool) -> None:
    data, _ = material(GATED)
    names = list(data.schema.field_names)
    show(planted_heatmap(planted_pairs(sample_dir() / GATED), names), presenter)
    st.markdown(f"{len(data.train) + len(data.valid) + len(data.test):,} synthetic rows: a user rates an item at an "
                f"hour on a device (phone or laptop), with {len(names) - 4} more fields that carry no pair effect. "
                "Noise alone leaves an RMSE of 0.2; a model that misses the gate is far above it.")


def draw_fm(presenter: bool) -> None:
    data, runs = material(GATED)
    names = list(data.schema.field_names)
    flat = pair_matrix(np.ones(data.schema.num_pairs), len(names))
    show(field_pair_heatmap(flat, names, "FM's weight on each pair: 1, everywhere", colorbar="weight"), presenter)
    st.markdown(f"Test RMSE: **{scores_line(GATED, ('fm',))}**. Every pair counts the same, so what user x item "
                "adds on phones is smeared over laptop rows too, and 43 empty pairs add their noise.")


def draw_fwfm(presenter: bool) -> None:
    data, runs = material(GATED)
    names = list(data.schema.field_names)
    r = runs["fwfm"].model.fixed_pair_weights().detach().double().numpy()  # (P,) r_fg
    weights = field_pair_heatmap(pair_matrix(np.abs(r), len(names)), names, "FwFM's |r| per field pair",
                                 colorbar="|r|")
    side_by_side([weights, gate_figure(weights_by_device(GATED))], presenter)
    st.markdown(f"Test RMSE: **{scores_line(GATED, ('fm', 'fwfm'))}**. Better: hour x device is weighed up. But "
                "one weight per field pair must split the difference between phone rows (where user x item "
                "matters) and laptop rows (where it does not).")


def gate_figure(gate):
    return grouped_bars(gate, "model", "device", "weight", "Weight on user x item, phone rows vs laptop rows",
                        "mean weight", colors={"phone": "#d62728", "laptop": "#7f7f7f"})


def draw_afm(presenter: bool) -> None:
    data, runs = material(GATED)
    schema, split = data.schema, data.test
    phones = lesson.rows_with(split, schema, "device", "phone")
    a, b, c = st.columns(3)
    row = int(a.number_input(f"Test row (0 to {len(split) - 1:,})", 0, len(split) - 1, int(phones[0]),
                             key="lesson_row"))
    field = b.selectbox("Change a field", list(schema.field_names), index=schema.field_names.index("device"),
                        key="lesson_field")
    ids = split.feature_ids[row]
    f = schema.field_names.index(field)
    choices = [int(i) for i in schema.field_values(f)]
    value = c.selectbox("to", choices, index=choices.index(int(ids[f])), format_func=schema.value_name,
                        key=f"lesson_value_{row}_{field}")
    walk = walk_row(runs["afm"].model, schema, lesson.with_value(schema, ids, field, value),
                    split.feature_values[row])
    show(model_walk_figure(walk), presenter, key="lesson_walk")
    q = walk.pair_names.index("user x item")
    device = walk.value_names[schema.field_names.index("device")]
    st.markdown(f"On this {device} row AFM puts **{walk.weights[q]:.2f}** of its weight on user x item (uniform "
                f"would be 1/{len(walk.weights)} = {1 / len(walk.weights):.3f}). ŷ = {walk.bias:+.3f} "
                f"{walk.first_order.sum():+.3f} {walk.interaction:+.3f} = **{walk.prediction:.3f}**"
                + (f"; the row's label is {float(split.labels[row]):.3f}." if value == int(ids[f]) else "."))


def draw_replay(presenter: bool) -> None:
    data, runs = material(GATED)
    job = st.session_state.get("lesson_job")
    if job is not None:
        live_replay(job, list(data.schema.field_names), presenter)
        return
    frames = replay_frames(runs["afm"].history)
    show(replay_figure(frames, list(data.schema.field_names), f"The bundled AFM's mean attention on "
                       f"{runs['afm'].history[-1]['pair_weights']['rows']} validation rows, epoch by epoch"),
         presenter, key="lesson_replay")
    text, button = st.columns([4, 1], vertical_alignment="center")
    text.markdown(f"Recorded during training on the same validation rows every epoch (kept in the model's file). "
                  f"Uniform attention is 1/{data.schema.num_pairs} = {1 / data.schema.num_pairs:.3f} per pair.")
    if button.button("Train it live", help="Trains the same AFM recipe on this sample now (about a minute on a "
                     "2-core CPU), as a job of this server, and replays its attention as it learns."):
        start_live(data)


def start_live(data: Dataset) -> None:
    try:
        recipe = preset("quick", "afm", device="cpu", seed=int(np.random.default_rng().integers(1, 1000)))
        st.session_state.lesson_job = TrainingJob(f"AFM (lesson, live) on {data.name}", data, recipe).start()
    except AFMError as exc:
        st.error(f"Cannot start training: {exc}")
        return
    st.rerun()


def live_replay(job: TrainingJob, names: list[str], presenter: bool) -> None:
    @st.fragment(run_every=None if job.finished else 3.0)
    def redraw() -> None:
        snapshot = job.snapshot()
        frames = replay_frames(snapshot["history"])
        if frames:
            show(replay_figure(frames, names, f"This AFM's mean attention, epoch by epoch ({snapshot['status']})"),
                 presenter, key=f"lesson_live_{len(frames)}")
        epoch, _, _ = snapshot["progress"]
        st.caption(f"{job.name}: {snapshot['status']}, epoch {epoch} of {job.train_config.epochs}"
                   + (f" ({snapshot['error']})" if snapshot["error"] else ""))
        if job.finished and job.run is not None and job.run.name not in st.session_state.runs:
            state.add_run(job.run, make_active=False)  # it joins the session's models, not as the active one
        if job.finished and st.button("Back to the bundled AFM"):
            st.session_state.lesson_job = None
            st.rerun()  # the whole page: this fragment alone would draw the live replay again

    redraw()


def draw_explain(presenter: bool) -> None:
    data, runs = material(GATED)
    run = runs["afm"]
    explanation = cache.pair_explanation(run, data, "test", EXPLAINED_ROWS, "absent")
    checks = cache.attention_checks(run, data, "test", EXPLAINED_ROWS, "absent")
    table = explanation.table
    names = list(data.schema.field_names)
    order = [data.schema.pair_names().index(p) for p in table["pair"]]
    views = {"Mean attention a_ij": table["attention_mean"].to_numpy(),
             "Mean |Shapley interaction|": table["shapley_abs_mean"].to_numpy()}
    figures = []
    for title, values in views.items():
        flat = np.empty(len(order))
        flat[order] = values
        figures.append(field_pair_heatmap(pair_matrix(flat, len(names)), names, f"{title}, {explanation.rows_label}"))
    side_by_side(figures, presenter)
    tau = float(np.nanmedian(checks.agreement.tau[("attention", "|Shapley interaction|")]))
    top_a = list(table.sort_values("attention_mean", ascending=False)["pair"].head(3))
    st.markdown(lesson.reconciled_sentence(checks.baselines.verdict(), tau, top_a, list(table["pair"].head(3))))
    st.caption(checks.baselines.verdict())


def draw_coupling(presenter: bool) -> None:
    shares = gradient_shares(GATED)
    show(grouped_bars(shares, "model", "device", "share", "Share of user's embedding gradient that comes from item",
                      "share of the gradient", colors={"phone": "#d62728", "laptop": "#7f7f7f"}), presenter)
    afm = shares[shares.model == "AFM"].set_index("device")["share"]
    fm = shares[shares.model == "FM"]["share"].mean()
    st.markdown(f"FM: item gives about {fm:.0%} of user's gradient, phone or laptop. AFM: {afm['phone']:.0%} on "
                f"phones and {afm['laptop']:.0%} on laptops: attention decides which partners train an embedding. "
                "The Gradient coupling page has the measure for every field, and eq. (8)-(11) beside autograd.")


@st.cache_data(max_entries=2, show_spinner="Measuring where each embedding's gradient comes from…")
def gradient_shares(sample: str):
    data, runs = material(sample)
    return lesson.gradient_share_by_value({m: r.model for m, r in runs.items()}, data.test, data.schema, "user",
                                          "item", "device")


def draw_fixed(presenter: bool) -> None:
    _, gated = material(GATED)
    data, fixed = material(FIXED)
    if st.toggle("Show the fixed-pairs AFM's attention instead", key="lesson_fixed_attention"):
        summary = fixed_summary()
        show(attention_heatmap(summary, list(data.schema.field_names), rows_label="test"), presenter)
        top = ", ".join(summary.ranking("attention_mean")[:3])
        st.markdown(f"Its attention sits on {top}, the pairs that matter, with a spread across rows of "
                    f"{float(summary.attention_std.mean()):.3f} on average: one weight per pair, as FwFM's.")
        return
    board = lesson.scoreboard({(s, m): r for s, runs in ((GATED, gated), (FIXED, fixed)) for m, r in runs.items()})
    show(grouped_bars(board, "sample", "model", "test_rmse", "Test RMSE of the bundled models on each sample",
                      "test RMSE (lower is better)", colors=COLORS), presenter)
    st.markdown(f"Gated sample: {scores_line(GATED)}. Fixed-pairs sample: {scores_line(FIXED)}. Where every "
                "pair's weight is the same in every row, a weight per field pair (FwFM) is all there is to learn; "
                "AFM's attention MLP has nothing extra to find.")


@st.cache_data(max_entries=1, show_spinner=False)
def fixed_summary():
    data, runs = material(FIXED)
    return summarize_pairs(decompose_split(runs["afm"].model, data.test), data.schema)


DRAW = {"data": draw_data, "fm": draw_fm, "fwfm": draw_fwfm, "afm": draw_afm, "replay": draw_replay,
        "explain": draw_explain, "coupling": draw_coupling, "fixed": draw_fixed}


def lesson_files_present() -> bool:
    """Whether every bundled checkpoint the lesson draws on is here (a trimmed install may lack them)."""
    return all(Path(sample_checkpoint_path(m, s)).is_file() for s in (GATED, FIXED) for m in MODEL_NAMES)

