"""Data & model: choose a dataset, then train a model (live progress) or load a checkpoint."""

from __future__ import annotations

import io

import streamlit as st

from afm.app import loading, state, training, uploads
from afm.app.jobs import session_table
from afm.data.registry import BUNDLED_SAMPLES
from afm.download import download_dataset
from afm.errors import AFMError
from afm.presets import PRESET_HELP, PRESET_RECIPES
from afm.recipe import PRESETS, preset
from afm.sizing import AUTO, PAPER_DATA, auto_recipe

state.init_state()
st.title("Data & model")
st.caption("Pick the data, then train FM, FwFM or AFM on it, or load a saved checkpoint. "
           "The other pages inspect the *active* model. New to AFM, or teaching it? The **Lesson** page walks "
           "through why attention helps FM, and when it does not, in 8 steps on the bundled models.")

# ----------------------------------------------------------------------------- data
for key in ("dataset_source", "data_dir", "label_column"):  # first visit: start from the defaults
    st.session_state.setdefault(key, state.setting(key))
source = st.radio("Dataset", list(state.DATASET_CHOICES), format_func=state.DATASET_CHOICES.get, key="dataset_source",
                  horizontal=True, persist_state="session")
if source in ("frappe", "ml-tag"):
    st.text_input("Data directory (holds frappe/ or ml-tag/)", key="data_dir", persist_state="session",
                  help="Get the data with `python -m afm download frappe --dest data`. Licensed for research use only.")
elif source == "upload":
    upload = uploads.upload_in_use()
    if upload is None:
        st.info("Upload a file to use it.")
        state.end_page(show_job=False)
    if upload[1].lower().endswith(".csv") and not uploads.label_picked(upload[0]):
        state.end_page(show_job=False)

dataset = state.load_current()
if dataset is None:
    if source in ("frappe", "ml-tag") and state.data_dir_problem() is None and st.button(
            f"Download {source} (the AFM authors' public copy) into {state.setting('data_dir')}"):
        try:
            with st.spinner(f"Downloading {source}…"):
                download_dataset(source, state.setting("data_dir"), progress=io.StringIO())
            st.rerun()
        except AFMError as exc:
            st.error(f"Download failed: {exc}")
    state.end_page(show_job=False)
counts = st.grid(5, min_column_width=110)  # one row when wide; wraps rather than cutting "10,500" to "10,…"
for name, value in [("train rows", len(dataset.train)), ("valid rows", len(dataset.valid)),
                    ("test rows", len(dataset.test)), ("fields", dataset.schema.num_fields),
                    ("features", dataset.schema.num_features)]:
    counts.metric(name, f"{value:,}")
with st.expander("Preview (first training rows, decoded; how each CSV column was read)"):
    st.dataframe(dataset.preview(), hide_index=True)
    training.column_kinds(dataset)
    for note in dataset.notes:
        st.caption(note)

# ----------------------------------------------------------------------------- model
def preset_form(model_name: str, preset_name: str, device: str) -> None:
    """The training form of a preset: its recipe, every setting editable (afm.app.training)."""
    # The task the form shows (the user's choice, else the proposed one): the sizing's reason names its metric.
    task_now = st.session_state.get(f"task_{dataset.fingerprint}") or \
        ("regression", "binary")[training.proposed_task(dataset, source == "upload")[0]]
    base, why = auto_recipe(dataset, model_name, task_now) if preset_name == AUTO else \
        (preset(preset_name, model_name), None)
    if why:
        st.caption(f"Sized to your data: {why}.")
    fm_runs = training.fitting_fm_runs(dataset, base.embedding_dim)
    two_step = base.pretrain
    if two_step and not fm_runs:
        st.info(PRESET_RECIPES[preset_name])
    fm_first = model_name == "afm" and st.checkbox(
        "Train the FM first (step 1 of the recipe)", value=two_step and not fm_runs, key=f"fm_first_{preset_name}",
        help="One click for both steps: an FM with this preset's settings and k, then this AFM started from it.")
    with st.form("train_form"):
        sized_to = f"_{dataset.name}_{len(dataset.train)}" if why else ""  # a new upload opens on its own sizes
        values = training.recipe_widgets(base, f"{preset_name}_{model_name}{sized_to}")
        a, b = st.columns(2)
        init_from = a.selectbox("Start from (FM pretraining)", ["random initialisation"] + fm_runs,
                                index=len(fm_runs) if model_name == "afm" and fm_runs else 0,
                                disabled=model_name == "fm" or fm_first,
                                help="The authors' recipe: AFM starts from a trained FM's embeddings and biases.")
        track = b.checkbox("Track coupling", value=base.embedding_dim <= 64,
                           help="Measure gradient coupling on 512 validation rows after every epoch (the Gradient "
                                "coupling page's *Over training* tab).")
        task = training.task_widget(dataset, uploaded=source == "upload")
        busy = st.session_state.job is not None and not st.session_state.job.finished
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if submitted:
        start = init_from if init_from in fm_runs and not fm_first and model_name != "fm" else None
        if not start and not fm_first:
            values["match_fm"] = False  # p = P means nothing without an FM to start from
        try:
            recipe = base.replace(**values, task=task, device=device, init_from=start, pretrain=fm_first)
        except AFMError as exc:
            st.error(f"Cannot start training: {exc}")
        else:
            training.start_training(recipe, dataset, track)


train_tab, load_tab = st.tabs(["Train a model", "Load a checkpoint"])
with train_tab:
    left, middle, right = st.columns([1, 2, 1])  # the preset's name is the long one
    model_name = left.selectbox("Model", ["afm", "fm", "fwfm"], format_func=str.upper)
    # Quick suits the small samples, the paper's recipe its own data (Frappe, ml-tag), the sized one the rest.
    choices = [AUTO, *PRESETS, training.TUNE]
    opening = "quick" if dataset.name in BUNDLED_SAMPLES else "paper" if dataset.name in PAPER_DATA else AUTO
    preset_name = middle.selectbox("Preset", choices, index=choices.index(opening), format_func=training.preset_label,
                                   help=PRESET_HELP)
    device = training.device_widget(right)
    if preset_name == training.TUNE:
        training.tune_form(dataset, model_name, device, uploaded=source == "upload")
    else:
        preset_form(model_name, preset_name, device)
    training.job_panel()
    training.study_panel()

with load_tab:
    uploaded_checkpoint = st.file_uploader("A checkpoint saved by this tool (.safetensors)", type=["safetensors"])
    saved = loading.saved_checkpoints()
    picked = st.selectbox("…or one saved on this machine", [loading.NONE_PICKED, *saved])
    if st.button("Load checkpoint"):
        loading.load_run(uploaded_checkpoint, picked, saved, dataset)

# ----------------------------------------------------------------------------- runs
st.subheader("Models in this session")
if st.session_state.runs:
    st.dataframe(session_table(st.session_state.runs), hide_index=True, placeholder="")
    run, problem = state.fitting_active_run(dataset)
    state.run_picker("Active model")
    run = state.active_run()
    training.say_unfit(problem, dataset)
    st.download_button("Download the active model's checkpoint", data=run.to_bytes,
                       file_name=f"{run.name.replace(' ', '_').replace('/', '_')}.safetensors",
                       mime="application/octet-stream")
