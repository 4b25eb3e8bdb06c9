"""Training from the Data & model page: the form's values made into a job (or the two steps of a
recipe: the FM, then the AFM started from it), and the panel that follows the running job until
its run joins the session. The page draws the widgets and calls these."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import streamlit as st
import torch

from afm.analysis.coupling import CouplingTracker
from afm.app import state
from afm.app.jobs import FollowUp, TrainingJob, TuningJob, epoch_table, epoch_zero_note
from afm.data import Dataset
from afm.data.tabular import describe_columns
from afm.errors import AFMError
from afm.figures import learning_curves
from afm.humanize import duration
from afm.presets import PRESET_LABELS
from afm.recipe import AFM_ONLY, SEARCH_SIZES, Recipe, pretraining

STOP_CAUSES = {"you": "stopped early at your request", "time budget": "stopped by this server's time limit",
               "abandoned": "stopped because its page was closed"}
TRACKED_ROWS = 512  # validation rows the coupling tracker measures after every epoch
TUNE = "tune"  # the preset menu's last choice: search the settings with Optuna instead (afm.tune)
SEARCHED = "search"  # the Tune form's k choice that lets the study search k (and t)


def preset_label(name: str) -> str:
    return "Tune (Optuna)" if name == TUNE else PRESET_LABELS.get(name, name)


FORM_FIELDS = tuple(spec for spec in fields(Recipe) if spec.metadata["app"] is True)  # drawn from metadata


def applies(name: str, model: str) -> bool:
    """Whether a Recipe setting means anything for `model` (AFM's own are greyed out elsewhere)."""
    return model == "afm" or (name not in AFM_ONLY and name != "attention_dim")


def recipe_widgets(base: Recipe, key: str, columns: int = 4) -> dict:
    """A widget for every Recipe field the form draws (FORM_FIELDS), from its metadata (label,
    help, range, choices), opening on `base`'s values; keyed by `key` so a new preset or model
    opens on its own values. Returns the values of the settings that apply to the model."""
    grid = st.grid(columns, min_column_width=160)  # cells in call order; wraps, never cuts names
    values = {}
    for spec in FORM_FIELDS:
        meta, name, value = spec.metadata, spec.name, getattr(base, spec.name)
        common = {"label": meta["label"], "help": meta["help"], "key": f"recipe_{name}_{key}",
                  "disabled": not applies(name, base.model)}
        if spec.type == "bool":
            chosen = grid.checkbox(value=value, **common)
        elif meta["choices"] is not None:
            chosen = grid.selectbox(options=list(meta["choices"]), index=meta["choices"].index(value), **common)
        elif spec.type == "float" and meta["high"] <= 1.0:  # a share: a slider below 1
            chosen = grid.slider(min_value=0.0, max_value=0.95, value=value, step=meta["step"], **common)
        elif spec.type == "float":
            chosen = grid.number_input(min_value=1e-5 if meta["above_low"] else float(meta["low"]),
                                       max_value=float(meta["high"]), value=value, step=meta["step"],
                                       format="%.4f" if (meta["step"] or 1) < 0.01 else "%.2f", **common)
        else:
            chosen = grid.number_input(min_value=int(meta["low"]), max_value=int(meta["high"]) - meta["below_high"],
                                       value=value, step=1, **common)
        if applies(name, base.model):
            values[name] = chosen
    return values


def device_widget(column) -> str:
    """The Device choice: CUDA when there is a GPU (and chosen), else the CPU."""
    cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    return column.selectbox("Device", devices, index=len(devices) - 1,
                            help=f"Detected: {torch.cuda.get_device_name(0) if cuda else 'no CUDA GPU, CPU only'}")


def fitting_fm_runs(dataset: Dataset, k: int) -> list[str]:
    """The session's FMs of embedding size `k` that can score `dataset`: what *Start from* offers."""
    return [name for name, run in st.session_state.runs.items() if run.model_config.model == "fm"
            and state.fit_problem(run, dataset) is None and run.model_config.embedding_dim == k]


def start_training(recipe: Recipe, dataset: Dataset, track_coupling: bool) -> None:
    """Queue the job the form's recipe asks for (the session's `job`), or say why it cannot start:
    a `pretrain` recipe is two jobs, its FM (afm.recipe.pretraining), then it from that FM."""
    try:
        probe = dataset.valid.tensors(np.arange(min(TRACKED_ROWS, len(dataset.valid))))
        trackers = [lambda m: CouplingTracker(m, *probe, task=recipe.task)] if track_coupling else []
        start = st.session_state.runs.get(recipe.init_from)
        number = len(st.session_state.runs) + 1
        k = recipe.embedding_dim
        name = f"{recipe.model.upper()} k={k} on {dataset.name} #{number + recipe.pretrain}"
        recipe.model_config(dataset.schema)  # its errors now, before any job is queued
        if recipe.pretrain:  # step 1 now, this AFM when it has finished (afm.app.jobs.FollowUp)
            st.session_state.follow_up = FollowUp(name, recipe, tuple(trackers))  # its start: step 1's run
            job = TrainingJob(f"FM k={k} on {dataset.name} #{number}", dataset, pretraining(recipe),
                              callbacks=trackers)
        else:
            st.session_state.follow_up = None
            job = TrainingJob(name, dataset, recipe, init_from=start.model if start else None, callbacks=trackers)
        st.session_state.job = job.start()
        st.session_state.job_collected = False
    except AFMError as exc:
        st.error(f"Cannot start training: {exc}")
        return
    st.rerun()  # the form was drawn before the job existed: draw it again, its Train button disabled


def poll_seconds() -> float | None:
    """How often the panel redraws: every 2 s for a job running when the page is drawn, 5 s for one
    queued then (a class of 20 polling at 1 Hz kept a 2-core server busy redrawing: bench/soak.py),
    never when idle."""
    job = st.session_state.get("job")
    if job is None or job.finished:
        return None
    return 2.0 if job.status == "running" else 5.0


def job_panel() -> None:
    """The running job's progress, curve and epoch table, redrawn by one timer (poll_seconds); a
    finished job's run joins the session, and the whole page is drawn again to show it active.
    One timer, not one for the progress and a slower one for the curves: a full rerun asked from
    one fragment while another's timer runs can crash Streamlit's frontend ("Bad delta path index",
    a blank page: 3 of 100 soak sessions with two timers, bench/soak.py, docs/benchmarks.md)."""

    @st.fragment(run_every=poll_seconds())
    def panel() -> None:
        job = st.session_state.job
        if job is None:
            return
        snapshot = job.snapshot()
        for note in job.notes:
            st.caption(f"Note: {note}.")
        if not job.finished:
            _progress(job, snapshot)
        if job.finished and not st.session_state.get("job_collected"):
            _collect(job)
            st.rerun()
        if job.finished:
            _outcome(job, snapshot)
        if snapshot["history"]:
            _curves(job, snapshot["history"])

    panel()


def _progress(job: TrainingJob, snapshot: dict) -> None:
    if snapshot["status"] == "queued" and snapshot["queue"]:
        place, at_most, expected = snapshot["queue"]
        about = f", at most about {duration(at_most)} to wait" if at_most is not None else ""
        if expected is not None and at_most is not None and duration(expected) != duration(at_most):
            about = (f", about {duration(expected)} to wait (at most {duration(at_most)}, if the trainings ahead "
                     "run every epoch instead of stopping early as recent ones here did)")
        st.info(f"Queued: number {place} in line{about}. {snapshot['running_jobs']} training(s) run now on "
                f"this server, {snapshot['slots']} at a time; Stop takes it out of the queue.")
    if isinstance(job, TuningJob):
        _tuning_progress(job, snapshot)
        return
    epoch, batch, batches = snapshot["progress"]
    total = job.train_config.epochs
    done = (max(epoch - 1, 0) + (batch / batches if batches else 0)) / total
    left = snapshot["time_left"]
    # "in all" counts from the click (the queue and the start included): the number a user checks (#27)
    step = " for this step" if st.session_state.follow_up else ""
    left = (f"; about {duration(left[0])} left in this epoch, at most {duration(left[1])} more "
            f"({duration(snapshot['elapsed'] + left[1])} in all{step})" if left else "")
    st.progress(min(done, 1.0), text=f"{job.name}: epoch {epoch}/{total}, batch {batch}/{batches} "
                                     f"({duration(snapshot['elapsed'])}{left})")
    st.button("Stop training", on_click=job.request_stop,
              help="Stops after the current batch; the best epoch so far is kept.")
    if snapshot["path"].get("compiled") and epoch <= 1 and batch == 0:
        st.caption("Compiling the training step first (it pays back over a long run): the first batch "
                   "takes 5-30 s on a CPU.")
    if st.session_state.follow_up is not None:
        st.caption(f"Step 1 of 2: when this FM has finished, {st.session_state.follow_up.name} starts from it.")


def _curves(job: TrainingJob, history: list[dict]) -> None:
    """The curve and the epoch table, built once an epoch: the panel redraws every poll, and building
    the Plotly figure (~20 ms) every 2 s in each session took interpreter time from batch-128
    trainings, whose short steps wait for it; sending a built one costs ~1 ms."""
    note = epoch_zero_note(job.model_config.model, job.init_from_name, job.match_fm, job.model_config.num_pairs)
    if note:
        st.caption(note)
    built = st.session_state.get("live_curves")  # (job, epochs drawn, figure, table)
    if built is None or built[0] is not job or built[1] != len(history):
        metric = "rmse" if job.train_config.task == "regression" else "auc"
        built = job, len(history), learning_curves({job.name: history}, metric), epoch_table(history)
        st.session_state.live_curves = built
    _, _, figure, table = built
    st.plotly_chart(figure, config=state.PLOTLY_CONFIG, key=f"live_{job.name}")
    st.dataframe(table, hide_index=True, placeholder="")  # epoch 0 has no training numbers


def _collect(job: TrainingJob) -> None:
    """The finished job's run joins the session; a two-step recipe's second step starts."""
    st.session_state.job_collected = True
    if job.run is not None:
        state.add_run(job.run)
        if isinstance(job, TuningJob) and job.tuned is not None:  # the study stays with the session's run
            st.session_state.setdefault("studies", {})[job.run.name] = (job.tuned.study, job.tuned.history)
    follow_up = st.session_state.follow_up
    if follow_up is not None:
        st.session_state.follow_up = None
        second = follow_up.start_after(job)
        if second is not None:
            st.session_state.job, st.session_state.job_collected = second, False
        else:
            st.session_state.follow_up_dropped = follow_up.name


def _outcome(job: TrainingJob, snapshot: dict) -> None:
    if st.session_state.pop("follow_up_dropped", None):
        st.caption("Step 2 was not started: the FM did not finish as planned.")
    if snapshot["status"] == "failed":
        st.error(f"Training stopped: {snapshot['error']}")
    elif job.run is None:
        why = "" if snapshot["stop_cause"] in (None, "you") else f" ({STOP_CAUSES[snapshot['stop_cause']]})"
        st.info(f"{job.name} was taken out of the queue before it started{why}.")
    else:
        best = job.run.best
        verb = STOP_CAUSES.get(snapshot["stop_cause"], "finished")
        metric = "valid_rmse" if job.run.task == "regression" else "valid_auc"
        if isinstance(job, TuningJob):
            states = [r["state"] for r in job.tuned.history]
            verb += (f" after {len(states)} trial(s) ({states.count('COMPLETE')} complete, {states.count('PRUNED')} "
                     f"pruned, {states.count('FAIL')} failed); its best trial {job.tuned.summary['best']['number']}")
        if snapshot["error"]:  # finished, but no epoch beat the start: not to be read as a trained model
            st.warning(f"{job.name} {verb}, untrained: {snapshot['error']}")
            return
        st.success(f"{job.name} {verb}: best epoch {job.run.best_epoch}, {metric} "
                   f"{best.get(metric, float('nan')):.4f}. It is now the active model.")


def proposed_task(dataset: Dataset, uploaded: bool) -> tuple[int, str | None]:
    """(index of the proposed task in TASKS, what the page says about it). An uploaded file whose
    labels take two values is proposed the binary task, with which value is positive; Frappe,
    MovieLens-tag and the samples keep the paper's regression."""
    values = dataset.distinct_labels
    if values is None or len(values) != 2:
        return 0, None
    low, high = dataset.label_classes or tuple(f"{v:g}" for v in values)
    if not dataset.is_binary:
        return 0, (f"The labels take two values, {low} and {high}. To train the binary task (log loss, AUC), "
                   f"recode them as 0 and 1 (e.g. {high} → 1) and upload again.")
    if not uploaded:
        return 0, None
    read_as = " (read as 0 and 1)" if dataset.label_classes else ""
    return 1, (f"The labels take two values, {low} and {high}{read_as}: the binary task (log loss, AUC) is proposed, "
               f"with {high} as the positive class and {low} as the negative. Choose regression to fit them as "
               "numbers.")


def task_widget(dataset: Dataset, uploaded: bool) -> str:
    """The Task choice, offered when the labels are two classes, opening on `proposed_task`'s."""
    proposed, why = proposed_task(dataset, uploaded)
    task = "regression"
    if dataset.is_binary:
        task = st.radio("Task", ["regression", "binary"], index=proposed, horizontal=True,
                        key=f"task_{dataset.fingerprint}",
                        help="Regression: squared loss and RMSE, as the paper. Binary: log loss, AUC.")
    if why:
        st.caption(why)
    return task


# ----------------------------------------------------------------------------- tuning (afm.tune)
def tune_form(dataset: Dataset, model: str, device: str, uploaded: bool) -> None:
    """The Tune choice: how many trials and minutes (and a fixed k, the epochs per trial, the seed)."""
    st.caption("Optuna's TPE sampler searches Adagrad or Adam, lr, k and t, the dropouts, L2 on attention and on the "
               "embeddings, the batch size and, for AFM, whether to pretrain an FM first, on the validation rows, "
               "starting from the recipe sized to the data; successive halving stops trials that fall behind "
               "after 1 epoch, then 3, 9, ..., so most of the budget goes to the promising ones. "
               "One training slot for the whole study; the best trial becomes a run (`python -m afm tune` does "
               "the same from the command line).")
    with st.form("tune_form"):
        a, b, c, d, e = st.columns(5)
        trials = a.number_input("Trials (at most)", 1, 500, 20, key="tune_trials")
        minutes = b.number_input("Minutes (at most)", 0.5, 600.0, 5.0, 0.5, key="tune_minutes")
        epochs = c.number_input("Epochs per trial (at most)", 1, 500, 40, key="tune_epochs")
        k = d.selectbox("Embedding size k" + (" (= t)" if model == "afm" else ""), [SEARCHED, *SEARCH_SIZES],
                        key="tune_k", format_func=lambda v: "searched" if v == SEARCHED else str(v))
        seed = e.number_input("Seed", 0, 2**31 - 1, 0, key="tune_seed")
        task = task_widget(dataset, uploaded)
        busy = st.session_state.job is not None and not st.session_state.job.finished
        submitted = st.form_submit_button("Tune", type="primary", disabled=busy)
    if submitted:
        start_tuning(dataset, model, device, task, trials=int(trials), minutes=float(minutes), epochs=int(epochs),
                     k=None if k == SEARCHED else int(k), seed=int(seed))


def start_tuning(dataset: Dataset, model: str, device: str, task: str, **budget) -> None:
    """Queue the study (the session's `job`), or say why it cannot start."""
    try:
        name = f"{model.upper()} tuned on {dataset.name} #{len(st.session_state.runs) + 1}"
        st.session_state.follow_up = None
        st.session_state.job = TuningJob(name, dataset, model, task=task, device=device, **budget).start()
        st.session_state.job_collected = False
    except AFMError as exc:
        st.error(f"Cannot start tuning: {exc}")
        return
    st.rerun()


def trials_table(records: list[dict]) -> list[dict]:
    """One flat row per trial of a study (afm.tune's records): number, state, value, then its parameters."""
    return [{"trial": r["number"], "state": r["state"].lower(), "value": r.get("value"), "seconds": r.get("seconds"),
             "best_epoch": r.get("best_epoch"), **r["params"], "note": r.get("note") or ""} for r in records]


def _tuning_progress(job: TuningJob, snapshot: dict) -> None:
    """Trial i/N, the running trial's epoch, the best so far and the time left; the trials so far."""
    tuning, (epoch, batch, batches) = snapshot["tuning"], snapshot["progress"]
    metric = "valid_rmse" if job.train_config.task == "regression" else "valid_auc"
    if tuning is None:
        st.progress(0.0, text=f"{job.name}: starting the study…")
    else:
        finished = tuning["trial"] - (tuning["event"] != "trial_end")
        done = max(finished / tuning["trials"], min(job.elapsed_running() / (job.minutes * 60), 1.0))
        best = (f"best {metric} so far {tuning['best_value']:.4f} (trial {tuning['best_trial']})"
                if tuning["best_value"] is not None else "no trial finished yet")
        phase = "FM pretraining, " if tuning["event"] == "pretrain_start" else ""
        st.progress(min(done, 1.0), text=f"{job.name}: trial {tuning['trial']}/{tuning['trials']} ({phase}epoch "
                                         f"{epoch}/{job.train_config.epochs}, batch {batch}/{batches}); {best}; at "
                                         f"most {duration(tuning['seconds_left'])} left")
    st.button("Stop tuning", on_click=job.request_stop, help="Stops after the current batch; the best trial so far "
                                                              "is kept.")
    if snapshot["trial_records"]:
        st.dataframe(trials_table(snapshot["trial_records"]), hide_index=True, placeholder="")


MIN_TRIALS_FOR_IMPORTANCE = 5  # fewer finished trials: the importances say nothing (#27)


def study_panel() -> None:
    """The active run's study when it was tuned in this session: Optuna's optimisation history and
    parameter importances, every trial, and the commands that train its recipe again."""
    run = state.active_run()
    studies = st.session_state.get("studies", {})
    if run is None or run.name not in studies:
        return
    import optuna.visualization as views

    study, records = studies[run.name]
    st.subheader(f"Tuning study of {run.name}")
    st.plotly_chart(views.plot_optimization_history(study), config=state.PLOTLY_CONFIG, key=f"study_{run.name}")
    finished = sum(trial.state.name == "COMPLETE" for trial in study.trials)
    if finished < MIN_TRIALS_FOR_IMPORTANCE:  # with one trial every parameter reads as equally important
        st.caption(f"Parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} finished trials to say "
                   f"anything; this study finished {finished}. Give it more minutes to see which settings matter.")
        importances = None
    else:
        try:
            importances = views.plot_param_importances(study)
        except (ValueError, RuntimeError) as exc:  # none that differ
            st.caption(f"No parameter importances yet: {exc}")
            importances = None
    if importances is not None:
        st.plotly_chart(importances, config=state.PLOTLY_CONFIG, key=f"importances_{run.name}")
    st.dataframe(trials_table(records), hide_index=True, placeholder="")
    st.caption("The best trial's recipe, as `afm train` commands (its model is the run itself, not retrained):")
    st.code("\n".join(run.train_config.get("tuned", {}).get("commands", [])), language="bash")


def column_kinds(dataset: Dataset) -> None:
    """A CSV's columns as they were read: categorical (with how many values) or numeric (range)."""
    described = describe_columns(dataset.schema.csv_encoding)
    if not described:
        return
    frame = pd.DataFrame([{**d, "examples": ", ".join(map(str, d.get("examples", [])))} if "examples" in d else d
                          for d in described])
    st.caption("Each column's kind: text and whole-number codes are categories (each value one feature); numbers "
               "with a fraction are one real-valued feature, standardised on the training rows.")
    st.dataframe(frame, hide_index=True)


def say_unfit(problem: str | None, dataset: Dataset) -> None:
    """Why the active model cannot score the data, if it cannot: a warning, except while a model
    trains on this very data (it becomes the active one), when the warning would be stale news."""
    if not problem:
        return
    job = st.session_state.get("job")
    if job is not None and not job.finished and job.dataset.fingerprint == dataset.fingerprint:
        st.caption(f"The active model cannot score this dataset ({problem}); {job.name}, training on it now, "
                   "takes its place when it finishes.")
    else:
        state.unfit_notice(state.active_run(), dataset, problem, active=True)
