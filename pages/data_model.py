"""Data & model: choose a dataset, then train a model (live progress) or load a checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import streamlit as st
import torch

from afm.analysis.coupling import CouplingTracker
from afm.app import cache, state, uploads
from afm.checkpoint import load_checkpoint
from afm.data.registry import BUNDLED_SAMPLES
from afm.download import download_dataset
from afm.errors import AFMError
from afm.figures import learning_curves
from afm.jobs import FollowUp, Run, TrainingJob, duration, epoch_table, epoch_zero_note
from afm.models import ModelConfig
from afm.paths import runs_dir, sample_dir
from afm.presets import PRESET_LABELS, PRESET_RECIPES, PRESETS, preset, preset_configs
from afm.train import TrainConfig

state.init_state()
st.title("Data & model")
st.caption("Pick the data, then train FM, FwFM or AFM on it, or load a saved checkpoint. "
           "The other pages inspect the *active* model.")

# ----------------------------------------------------------------------------- data
SOURCES = {"sample": "Bundled sample (synthetic)", "frappe": "Frappe", "ml-tag": "MovieLens tag (ml-tag)",
           "upload": "Upload a file"}
for key in ("dataset_source", "data_dir", "label_column"):  # first visit: start from the defaults
    st.session_state.setdefault(key, state.setting(key))
source = st.radio("Dataset", list(SOURCES), format_func=SOURCES.get, key="dataset_source", horizontal=True,
                  persist_state="session")
if source in ("frappe", "ml-tag"):
    st.text_input("Data directory (holds frappe/ or ml-tag/)", key="data_dir", persist_state="session",
                  help="Get the data with `python -m afm download frappe --dest data`. Licensed for research use only.")
elif source == "upload":
    uploaded = st.file_uploader("A CSV with a header row, or a libfm file (`label id:value ...`)",
                                type=["csv", "libfm", "txt"])
    if uploaded is None:
        st.session_state.upload = None  # removed (or never given): forget it, and its errors
        st.info("Upload a file to use it.")
        st.stop()
    if st.session_state.upload is None or st.session_state.upload[1] != uploaded.name \
            or st.session_state.get("upload_id") != uploaded.file_id:
        st.session_state.upload = uploads.save_upload(uploaded)
        st.session_state.upload_id = uploaded.file_id
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
    st.stop()
counts = st.grid(5, min_column_width=110)  # one row when wide; wraps rather than cutting "10,500" to "10,…"
for name, value in [("train rows", len(dataset.train)), ("valid rows", len(dataset.valid)),
                    ("test rows", len(dataset.test)), ("fields", dataset.schema.num_fields),
                    ("features", dataset.schema.num_features)]:
    counts.metric(name, f"{value:,}")
with st.expander("Preview (first training rows, decoded)"):
    st.dataframe(dataset.preview(), hide_index=True)
    for note in dataset.notes:
        st.caption(note)

# ----------------------------------------------------------------------------- model
train_tab, load_tab = st.tabs(["Train a model", "Load a checkpoint"])

with train_tab:
    cuda = torch.cuda.is_available()
    left, middle, right = st.columns(3)
    model_name = left.selectbox("Model", ["afm", "fm", "fwfm"], format_func=str.upper)
    # The quick preset suits the small samples; on real data the paper's recipe is the sensible start.
    preset_name = middle.selectbox("Preset", list(PRESETS), index=0 if dataset.name in BUNDLED_SAMPLES else 1,
                                   format_func=lambda n: PRESET_LABELS.get(n, n))
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    device = right.selectbox("Device", devices, index=len(devices) - 1,
                             help=f"Detected: {torch.cuda.get_device_name(0) if cuda else 'no CUDA GPU, CPU only'}")
    values = preset(preset_name, model_name)
    fm_runs = [n for n, r in st.session_state.runs.items() if r.model_config.model == "fm"
               and state.fit_problem(r, dataset) is None and r.model_config.embedding_dim == values["embedding_dim"]]
    two_step = preset_name in PRESET_RECIPES and model_name == "afm"
    if two_step and not fm_runs:
        st.info(PRESET_RECIPES[preset_name])
    fm_first = two_step and st.checkbox(
        "Train the FM first (step 1 of the recipe)", value=not fm_runs, key=f"fm_first_{preset_name}",
        help="One click for both steps: an FM with this preset's settings and k, then this AFM started from it.")
    with st.form("train_form"):
        a, b, c, d = st.columns(4)
        k = a.number_input("Embedding size k", 1, 1024, values["embedding_dim"], key=f"k_{preset_name}")
        t = b.number_input("Attention size t", 1, 1024, values["attention_dim"], key=f"t_{preset_name}",
                           disabled=model_name != "afm")
        epochs = c.number_input("Epochs (at most)", 1, 500, values["epochs"], key=f"ep_{preset_name}_{model_name}")
        batch = d.number_input("Batch size", 1, 65536, values["batch_size"], key=f"bs_{preset_name}_{model_name}")
        a, b, c, d = st.columns(4)
        lr = a.number_input("Learning rate", 1e-5, 10.0, values["lr"], format="%.4f",
                            key=f"lr_{preset_name}_{model_name}")
        optimizer = b.selectbox("Optimizer", ["adagrad", "adam"], key=f"opt_{preset_name}")
        l2 = c.number_input("L2 on attention W", 0.0, 1000.0, values["l2_attention"],
                            key=f"l2_{preset_name}_{model_name}", disabled=model_name != "afm")
        seed = d.number_input("Seed", 0, 2**31 - 1, 0)
        a, b, c, d = st.columns(4)
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
        task = "regression"
        if dataset.is_binary:
            task = st.radio("Task", ["regression", "binary"], horizontal=True,
                            help="Regression: squared loss and RMSE, as the paper. Binary: log loss, AUC.")
        busy = st.session_state.job is not None and not st.session_state.job.finished
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if submitted:
        try:
            config = ModelConfig(model=model_name, num_features=dataset.schema.num_features,
                                 num_fields=dataset.schema.num_fields, embedding_dim=int(k), attention_dim=int(t),
                                 dropout_attention=float(drop_attention) if model_name == "afm" else 0.0,
                                 dropout_pooled=float(drop_pooled))
            train_config = TrainConfig(task=task, epochs=int(epochs), batch_size=int(batch), lr=float(lr),
                                       optimizer=optimizer, l2_attention=float(l2) if model_name == "afm" else 0.0,
                                       seed=int(seed), device=device, patience=values["patience"])
            probe = dataset.valid.tensors(np.arange(min(512, len(dataset.valid))))
            trackers = [lambda m: CouplingTracker(m, *probe, task=task)] if track else []
            start = st.session_state.runs.get(init_from)
            number = len(st.session_state.runs) + 1
            name = f"{model_name.upper()} k={int(k)} on {dataset.name} #{number + fm_first}"
            if fm_first:  # step 1 now, this AFM when it has finished (afm.jobs.FollowUp)
                fm_config, fm_train = preset_configs(preset_name, "fm", dataset.schema,
                                                     {"embedding_dim": int(k), "attention_dim": int(k)},
                                                     task=task, seed=int(seed), device=device)
                st.session_state.follow_up = FollowUp(name, config, train_config, match_fm, tuple(trackers))
                job = TrainingJob(f"FM k={int(k)} on {dataset.name} #{number}", dataset, fm_config, fm_train,
                                  callbacks=trackers)
            else:
                st.session_state.follow_up = None
                job = TrainingJob(name, dataset, config, train_config, init_from=start.model if start else None,
                                  init_from_name=start.name if start else None, match_fm=match_fm,
                                  callbacks=trackers)
            st.session_state.job = job.start()
            st.session_state.job_collected = False
        except AFMError as exc:
            st.error(f"Cannot start training: {exc}")

    # Poll a running job every 2 s, a queued one every 5 s: a class of 20 polling at 1 Hz kept a
    # 2-core server busy redrawing (bench/soak.py). A job that starts switches the rate by a rerun.
    job = st.session_state.job
    run_every = None if job is None or job.finished else 2.0 if job.status == "running" else 5.0

    @st.fragment(run_every=run_every)
    def job_panel() -> None:
        job = st.session_state.job
        if job is None:
            return
        snapshot = job.snapshot()
        if run_every == 5.0 and snapshot["status"] == "running":
            st.rerun()
        epoch, batch_number, batches = snapshot["progress"]
        history = snapshot["history"]
        for note in job.notes:
            st.caption(f"Note: {note}.")
        if snapshot["status"] == "queued" and snapshot["queue"]:
            place, wait = snapshot["queue"]
            about = f", about {max(1, round(wait / 60))} min to wait" if wait is not None else ""
            st.info(f"Queued: number {place} in line{about}. {snapshot['running_jobs']} training(s) run now on "
                    f"this server, {snapshot['slots']} at a time; Stop takes it out of the queue.")
        if not job.finished:
            total = job.train_config.epochs
            done = (max(epoch - 1, 0) + (batch_number / batches if batches else 0)) / total
            left = snapshot["time_left"]
            left = f"; about {duration(left[0])} left in this epoch, at most {duration(left[1])} in all" if left else ""
            st.progress(min(done, 1.0), text=f"{job.name}: epoch {epoch}/{total}, batch {batch_number}/{batches} "
                                             f"({duration(snapshot['elapsed'])}{left})")
            st.button("Stop training", on_click=job.request_stop,
                      help="Stops after the current batch; the best epoch so far is kept.")
            if snapshot["path"].get("compiled") and epoch <= 1 and batch_number == 0:
                st.caption("Compiling the training step first (it pays back over a long run): the first batch "
                           "takes 5-30 s on a CPU.")
            if st.session_state.follow_up is not None:
                st.caption(f"Step 1 of 2: when this FM has finished, {st.session_state.follow_up.name} starts "
                           "from it.")
        if history:
            note = epoch_zero_note(job.model_config.model, job.init_from_name, job.match_fm,
                                   job.model_config.num_pairs)
            if note:
                st.caption(note)
            metric = "rmse" if job.train_config.task == "regression" else "auc"
            st.plotly_chart(learning_curves({job.name: history}, metric), config=state.PLOTLY_CONFIG,
                            key=f"live_{job.name}_{len(history)}")
            st.dataframe(epoch_table(history), hide_index=True, placeholder="")  # epoch 0 has no training numbers
        follow_up = st.session_state.follow_up
        if job.finished and not st.session_state.get("job_collected"):
            st.session_state.job_collected = True
            if job.run is not None:
                state.add_run(job.run)
            if follow_up is not None:
                st.session_state.follow_up = None
                second = follow_up.start_after(job)
                if second is not None:
                    st.session_state.job, st.session_state.job_collected = second, False
                else:
                    st.session_state.follow_up_dropped = follow_up.name
            st.rerun()
        if job.finished and st.session_state.pop("follow_up_dropped", None):
            st.caption("Step 2 was not started: the FM did not finish as planned.")
        if job.finished:
            if snapshot["status"] == "failed":
                st.error(f"Training stopped: {snapshot['error']}")
            elif job.run is None:
                st.info(f"{job.name} was taken out of the queue before it started.")
            elif job.run is not None:
                best = job.run.best
                verb = {"you": "stopped early at your request", "time budget": "stopped by this server's time limit",
                        "abandoned": "stopped because its page was closed"}.get(snapshot["stop_cause"], "finished")
                metric = "valid_rmse" if job.run.task == "regression" else "valid_auc"
                st.success(f"{job.name} {verb}: best epoch {job.run.best_epoch}, {metric} "
                           f"{best.get(metric, float('nan')):.4f}. It is now the active model.")

    job_panel()

with load_tab:
    uploaded_checkpoint = st.file_uploader("A checkpoint saved by this tool (.safetensors)", type=["safetensors"])
    folders = {"runs": runs_dir(), "sample_data": sample_dir()}
    saved = {f"{label}/{p.relative_to(folder)}": p for label, folder in folders.items() if folder.is_dir()
             for p in sorted(folder.glob("**/*.safetensors"))}
    picked = st.selectbox("…or one saved on this machine", ["(none)", *saved])
    if st.button("Load checkpoint"):
        try:
            if uploaded_checkpoint is not None:
                data = uploaded_checkpoint.getvalue()
                checkpoint, key = load_checkpoint(data, name=uploaded_checkpoint.name), cache.content_key(data)
                label = uploaded_checkpoint.name
            elif picked != "(none)":
                checkpoint, key = cache.checkpoint_file(str(saved[picked]), cache.file_stamp(str(saved[picked])))
                label = picked
            else:
                raise AFMError("choose a file to upload or a saved checkpoint first")
            run = Run.from_checkpoint(checkpoint, f"{checkpoint.model_config.model.upper()} from {label}",
                                      f"loaded: {label}", key=key)
            problem = state.fit_problem(run, state.dataset_for(run, dataset))
            if problem:
                st.warning(f"It cannot score the current dataset: {problem}")
            else:
                for warning in run.check_fits(state.dataset_for(run, dataset)):
                    st.warning(warning)
            state.add_run(run)
            st.success(f"Loaded {label}; it is now the active model.")
        except AFMError as exc:
            st.error(f"Cannot use this checkpoint: {exc}")

# ----------------------------------------------------------------------------- runs
st.subheader("Models in this session")
if st.session_state.runs:
    rows = [{"name": name, "model": run.model_config.model.upper(), "k": run.model_config.embedding_dim,
             "data": run.dataset.get("name"), "best epoch": run.best_epoch,
             "valid": run.best.get("valid_rmse", run.best.get("valid_auc")),
             "test": run.best.get("test_rmse", run.best.get("test_auc")), "source": run.source}
            for name, run in st.session_state.runs.items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, placeholder="")
    run, problem = state.fitting_active_run(dataset)
    state.run_picker("Active model")
    run = state.active_run()
    if problem:
        st.warning(f"The active model cannot score this dataset: {problem}.")
    st.download_button("Download the active model's checkpoint", data=run.to_bytes,
                       file_name=f"{run.name.replace(' ', '_').replace('/', '_')}.safetensors",
                       mime="application/octet-stream")
