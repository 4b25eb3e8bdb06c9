"""Data & model: choose a dataset, then train a model (live progress) or load a checkpoint."""

from __future__ import annotations

import io

import streamlit as st

from afm.app import loading, state, training, uploads
from afm.data.registry import BUNDLED_SAMPLES
from afm.download import download_dataset
from afm.errors import AFMError
from afm.app.jobs import session_table
from afm.presets import PRESET_HELP, PRESET_RECIPES, PRESETS, preset

state.init_state()
st.title("Data & model")
st.caption("Pick the data, then train FM, FwFM or AFM on it, or load a saved checkpoint. "
           "The other pages inspect the *active* model.")

# ----------------------------------------------------------------------------- data
DATASET_CHOICES = {"sample": "Bundled sample (synthetic)", "frappe": "Frappe", "ml-tag": "MovieLens tag (ml-tag)",
           "upload": "Upload a file"}
for key in ("dataset_source", "data_dir", "label_column"):  # first visit: start from the defaults
    st.session_state.setdefault(key, state.setting(key))
source = st.radio("Dataset", list(DATASET_CHOICES), format_func=DATASET_CHOICES.get, key="dataset_source",
                  horizontal=True, persist_state="session")
if source in ("frappe", "ml-tag"):
    st.text_input("Data directory (holds frappe/ or ml-tag/)", key="data_dir", persist_state="session",
                  help="Get the data with `python -m afm download frappe --dest data`. Licensed for research use only.")
elif source == "upload":
    uploaded = st.file_uploader("A CSV with a header row, or a libfm file (`label id:value ...`)",
                                type=["csv", "libfm", "txt"])
    if uploaded is None:
        st.session_state.upload = None  # removed (or never given): forget it, and its errors
        st.info("Upload a file to use it.")
        state.end_page(show_job=False)
    uploads.keep_upload(uploaded)
    if uploaded.name.lower().endswith(".csv"):
        st.text_input("Label column (empty: label/target/y/rating/click, else the last column)", key="label_column",
                      persist_state="session")

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
    """The training form of a preset: its values, every one editable."""
    values = preset(preset_name, model_name)
    fm_runs = training.fitting_fm_runs(dataset, values["embedding_dim"])
    two_step = preset_name in PRESET_RECIPES and model_name == "afm"
    if two_step and not fm_runs:
        st.info(PRESET_RECIPES[preset_name])
    fm_first = two_step and st.checkbox(
        "Train the FM first (step 1 of the recipe)", value=not fm_runs, key=f"fm_first_{preset_name}",
        help="One click for both steps: an FM with this preset's settings and k, then this AFM started from it.")
    with st.form("train_form"):
        a = b = c = d = st.grid(4, min_column_width=160)  # cells in call order; wraps, never cuts names
        k = a.number_input("Embedding size k", 1, 1024, values["embedding_dim"], key=f"k_{preset_name}")
        t = b.number_input("Attention size t", 1, 1024, values["attention_dim"], key=f"t_{preset_name}",
                           disabled=model_name != "afm")
        epochs = c.number_input("Epochs (at most)", 1, 500, values["epochs"], key=f"ep_{preset_name}_{model_name}")
        batch = d.number_input("Batch size", 1, 65536, values["batch_size"], key=f"bs_{preset_name}_{model_name}")
        a = b = c = d = st.grid(4, min_column_width=160)
        lr = a.number_input("Learning rate", 1e-5, 10.0, values["lr"], format="%.4f",
                            key=f"lr_{preset_name}_{model_name}")
        optimizer = b.selectbox("Optimizer", ["adagrad", "adam"], key=f"opt_{preset_name}")
        l2 = c.number_input("L2 on attention W", 0.0, 1000.0, values["l2_attention"],
                            key=f"l2_{preset_name}_{model_name}", disabled=model_name != "afm")
        seed = d.number_input("Seed", 0, 2**31 - 1, 0)
        a = b = c = d = st.grid(4, min_column_width=160)
        drop_attention = a.slider("Dropout on a_ij", 0.0, 0.9, values["dropout_attention"], 0.05,
                                  key=f"da_{preset_name}_{model_name}", disabled=model_name != "afm")
        drop_pooled = b.slider("Dropout on the pooled vector", 0.0, 0.9, values["dropout_pooled"], 0.05,
                               key=f"dp_{preset_name}_{model_name}")
        init_from = c.selectbox("Start from (FM pretraining)", ["random initialisation"] + fm_runs,
                                index=len(fm_runs) if model_name == "afm" and fm_runs else 0,
                                disabled=model_name == "fm" or fm_first,
                                help="The authors' recipe: AFM starts from a trained FM's embeddings and biases.")
        track = d.checkbox("Track coupling", value=k <= 64,
                           help="Measure gradient coupling on 512 validation rows after every epoch (the Gradient "
                                "coupling page's *Over training* tab).")
        match_fm = st.checkbox("Start as the FM (p = P)", value=False, disabled=model_name != "afm",
                               help="With FM pretraining: start AFM's projection at p = P (pairs) so that, with "
                                    "near-uniform attention, it starts as the FM it came from (the authors use p = 1).")
        task = training.task_widget(dataset, uploaded=source == "upload")
        busy = st.session_state.job is not None and not st.session_state.job.finished
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if submitted:
        training.start_training(training.TrainingForm(
            model=model_name, preset=preset_name, device=device, embedding_dim=k, attention_dim=t, epochs=epochs,
            batch_size=batch, lr=lr, optimizer=optimizer, l2_attention=l2, seed=seed,
            dropout_attention=drop_attention, dropout_pooled=drop_pooled, patience=values["patience"],
            init_from=init_from, track_coupling=track, match_fm=match_fm, task=task, fm_first=fm_first), dataset)


train_tab, load_tab = st.tabs(["Train a model", "Load a checkpoint"])
with train_tab:
    left, middle, right = st.columns([1, 2, 1])  # the preset's name is the long one
    model_name = left.selectbox("Model", ["afm", "fm", "fwfm"], format_func=str.upper)
    # The quick preset suits the small samples; on real data the paper's recipe is the sensible start.
    preset_name = middle.selectbox("Preset", [*PRESETS, training.TUNE], index=0 if dataset.name in BUNDLED_SAMPLES
                                   else 1, format_func=training.preset_label, help=PRESET_HELP)
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
