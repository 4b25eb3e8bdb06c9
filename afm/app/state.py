"""Per-session state behind an init guard: the session's runs, the active run, the dataset
choice, and the checks that turn user mistakes into `st.error` messages instead of tracebacks."""

from __future__ import annotations

import streamlit as st

from afm.app import cache
from afm.app.jobs import Run
from afm.app.screen import collapse_sidebar_when_narrow
from afm.data import Dataset
from afm.data.registry import BUNDLED_SAMPLES
from afm.errors import AFMError
from afm.humanize import duration
from afm.models import MODEL_NAMES
from afm.paths import data_roots, inside_data_roots
from afm.samples.checkpoints import sample_checkpoint_path

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
# Widget values that outlive the page that draws them (the widgets use persist_state="session");
# until the Data & model page first draws them, these defaults hold.
PERSISTENT_DEFAULTS = {"dataset_source": "sample", "data_dir": None, "label_column": ""}
DATASET_CHOICES = {"sample": "Bundled sample (synthetic)", "sample-fixed": "Fixed-pairs sample (synthetic)",
                   "frappe": "Frappe", "ml-tag": "MovieLens tag (ml-tag)", "upload": "Upload a file"}


def end_page(show_job: bool = True) -> None:
    """Stop the page here, with the sidebar's status drawn first. app.py draws it after the page,
    but a page that stops never returns there, and what app.py drew before the page is dropped by
    the stop: the Dataset and Active model lines vanished while a page waited for an upload."""
    sidebar_status(st.sidebar, show_job=show_job)
    st.stop()


def setting(key: str):
    """One of the persistent widget values, or its default (the data directory's is found on disk)."""
    value = st.session_state.get(key)
    if value is not None:
        return value
    if key == "data_dir":
        return default_data_dir()
    return PERSISTENT_DEFAULTS[key]


def init_state() -> None:
    """Create this session's state once."""
    if "runs" in st.session_state:
        return
    st.session_state.runs = {}
    st.session_state.active_run = None
    st.session_state.upload = None  # (path on the server, name the user gave it)
    st.session_state.job = None
    st.session_state.follow_up = None  # afm.app.jobs.FollowUp: a two-step preset's second training
    for sample in BUNDLED_SAMPLES:
        for name in MODEL_NAMES:
            path = sample_checkpoint_path(name, sample)
            if path.is_file():
                try:
                    checkpoint, key = cache.checkpoint_file(str(path), path.stat().st_mtime)
                    add_run(Run.from_checkpoint(checkpoint, f"{sample} {name.upper()}", "bundled", key=key),
                            make_active=(sample, name) == ("sample", "afm"))
                except AFMError as exc:  # a damaged bundle must not take the app down
                    st.session_state.startup_error = str(exc)


def default_data_dir() -> str:
    roots = data_roots()
    for root in roots:
        if (root / "frappe").is_dir() or (root / "ml-tag").is_dir():
            return str(root)
    return str(roots[0])


def dataset_spec() -> str | None:
    """What `load_dataset` is given: a registry name or the uploaded file (None: nothing yet)."""
    source = setting("dataset_source")
    if source != "upload":
        return source
    upload = st.session_state.get("upload")
    if upload and upload[1].lower().endswith(".csv") and not st.session_state.get("label_column"):
        return None  # a CSV whose label is not picked yet: nothing to load, never its last column in silence
    return upload[0] if upload else None


def upload_name() -> str | None:
    """The name the user gave the chosen upload (None: the data is not an upload)."""
    upload = st.session_state.get("upload")
    return upload[1] if upload and setting("dataset_source") == "upload" else None


def user_message(exc: Exception) -> str:
    """The error as the user should read it: uploads by the name they gave, not a server path."""
    message = str(exc)
    upload = st.session_state.get("upload")
    return message.replace(upload[0], upload[1]) if upload else message


def load_current(schema=None, show_errors: bool = True) -> Dataset | None:
    """The chosen dataset (read with a model's `schema` when given), or None with the reason shown."""
    spec = dataset_spec()
    if spec is None:
        return None
    if spec in ("frappe", "ml-tag") and not inside_data_roots(setting("data_dir")):
        if show_errors:
            st.error(data_dir_problem())
        return None
    try:
        return cache.dataset(spec, setting("data_dir"), setting("label_column") or None, cache.file_stamp(spec),
                             schema, upload_name())
    except AFMError as exc:
        if show_errors:
            st.error(f"Cannot load the dataset: {user_message(exc)}")
            if spec in ("frappe", "ml-tag"):
                st.info(f"Download it with `python -m afm download {spec} --dest data` and set the data directory "
                        "to that `data` folder on the Data & model page.")
        return None


def data_dir_problem() -> str | None:
    """Why the chosen data directory may not be used (None when it may): a visitor reads and
    downloads only inside the data roots the server was started with."""
    if inside_data_roots(setting("data_dir")):
        return None
    roots = ", ".join(str(r) for r in data_roots())
    return (f"The data directory must be inside one of this server's data folders ({roots}); whoever runs the "
            "app can add one with AFM_DATA_DIR.")


def dataset_for(run: Run, dataset: Dataset) -> Dataset:
    """The dataset as `run` must see it: read with the run's own schema (a CSV with its saved
    encoding, libfm ids with its field layout), as the CLI does. When the data cannot be read that
    way, the dataset as it is, so that `fit_problem` says why the run does not fit."""
    if run.schema == dataset.schema:
        return dataset
    spec = dataset_spec()
    if spec is None:
        return dataset
    where = (spec, setting("data_dir"), setting("label_column") or None, cache.file_stamp(spec))
    if cache.dataset_problem(*where, run.schema, upload_name()) is not None:
        return dataset
    return cache.dataset(*where, run.schema, upload_name())


def fit_problem(run: Run, dataset: Dataset) -> str | None:
    """None when the run can score the dataset, else the reason it cannot."""
    try:
        run.check_fits(dataset)
    except AFMError as exc:
        return user_message(exc)
    return None


def add_run(run: Run, make_active: bool = True) -> None:
    name, number = run.name, 2
    while name in st.session_state.runs and st.session_state.runs[name].key != run.key:
        name, number = f"{run.name} ({number})", number + 1
    run.name = name
    st.session_state.runs[name] = run
    if make_active:
        choose_active(name)


def choose_active(name: str) -> None:
    """The user made `name` the active run: it stays active on this data even when it cannot score
    it (it says why, and offers its own data), where a run that was active before data changed
    gives way to one that fits (`fitting_active_run`)."""
    st.session_state.active_run = name
    st.session_state.active_chosen = (name, dataset_spec())


def active_run() -> Run | None:
    name = st.session_state.get("active_run")
    return st.session_state.runs.get(name) if name else None


def fitting_active_run(dataset: Dataset) -> tuple[Run | None, str | None]:
    """The active run if it can score `dataset`, or if the user chose it on this data (then with
    why it cannot: the choice is forgotten once the data changes); else it switches to a run that
    can (one trained on this very data first, AFM first) and says so; else (active run, why it
    cannot)."""
    run = active_run()
    problem = fit_problem(run, dataset_for(run, dataset)) if run else None
    chosen_on = st.session_state.get("active_chosen")
    if chosen_on and chosen_on[1] != dataset_spec():
        st.session_state.active_chosen = None  # a choice holds for the data it was made on
    if run is None or problem is None or st.session_state.get("active_chosen") == (run.name, dataset_spec()):
        return run, problem
    fitting = [r for r in st.session_state.runs.values() if fit_problem(r, dataset_for(r, dataset)) is None]
    if not fitting:
        return run, problem
    chosen = min(fitting, key=lambda r: (r.trained_on.fingerprint != dataset.fingerprint,
                                         r.model_config.model != "afm"))
    st.session_state.active_run = chosen.name
    st.info(f"The active model is now **{chosen.name}**: {run.name!r} cannot score {dataset.name!r} ({problem}).")
    return chosen, None


def require_data() -> Dataset:
    """The current dataset, or a message and a stop."""
    init_state()
    dataset = load_current()
    if dataset is None:
        if dataset_spec() is None:
            st.info("No data yet: upload a file on the **Data & model** page.")
        end_page()
    return dataset


def page_run(dataset: Dataset, label: str, key: str) -> Run:
    """A model for this page alone: it opens on the active model (one that fits when the active
    one gives way) and picking another leaves the active model as it is, unless the button
    under the box says otherwise (#27). Stops with a message when there is no model."""
    active, _ = fitting_active_run(dataset)
    if active is None:
        st.info("No model yet: train or load one on the **Data & model** page.")
        end_page()
    names = list(st.session_state.runs)
    picked = st.selectbox(label, names, index=names.index(active.name), key=key,
                          format_func=lambda n: f"{n} (active)" if n == active.name else n)
    if picked != active.name:
        st.button("Make it the active model", on_click=choose_active, args=(picked,), key=f"{key}_make_active",
                  help=f"The other pages show the active model, now {active.name}.")
    return st.session_state.runs[picked]


def require_fit(run: Run, dataset: Dataset, active: bool = False) -> Dataset:
    """The dataset as `run` sees it, or why the run cannot score it (with its own data offered)
    and a stop."""
    seen = dataset_for(run, dataset)
    problem = fit_problem(run, seen)
    if problem:
        unfit_notice(run, seen, problem, active)
        st.caption("Or pick another model, or train one on this data on the **Data & model** page.")
        end_page()
    return seen


def unfit_reason(run: Run, dataset: Dataset, problem: str, subject: str = "it") -> str:
    """Why `run` cannot score `dataset`, as one sentence a user can act on."""
    own = run.trained_on.name or "other data"
    ours, theirs = list(run.schema.field_names), list(dataset.schema.field_names)
    if ours != theirs:
        shown = lambda names: ", ".join(names[:10]) + (", …" if len(names) > 10 else "")  # noqa: E731
        return f"{subject} was trained on {own}, whose fields ({shown(ours)}) are not this data's ({shown(theirs)})"
    if run.model_config.num_features != dataset.schema.num_features or "feature ids" in problem:
        return (f"{subject} was trained on {own}, whose fields have the same names as {dataset.name}'s but other "
                f"values ({run.model_config.num_features:,} features there, {dataset.schema.num_features:,} here), "
                "and its embeddings belong to those values")
    return f"{subject} was trained on {own}: {problem}"


def unfit_notice(run: Run, dataset: Dataset, problem: str, active: bool = False) -> None:
    """Say why the run cannot score the data and, when its own data is one the app can switch to,
    offer that switch in one click."""
    who, subject = ("The active model", f"**{run.name}**") if active else (f"**{run.name}**", "it")
    st.warning(f"{who} cannot score this dataset: {unfit_reason(run, dataset, problem, subject)}.")
    own = run.trained_on.name
    uploaded = (run.trained_on.location or "").startswith("uploaded file")
    if own in DATASET_CHOICES and own != "upload" and not uploaded and own != setting("dataset_source"):
        st.button(f"Switch the data to {own}", on_click=switch_data, args=(own,), key=f"switch_data_{run.name}",
                  type="primary", help=f"Makes {own!r} the session's dataset on every page.")


def switch_data(source: str) -> None:
    st.session_state.dataset_source = source


def run_picker(label: str = "Model", key: str = "picker_active_run") -> None:
    """Choose the active run. `active_run` is the one source of truth: the widget is synced from
    it before drawing and writes back on change; the choice holds on this data (`choose_active`)."""
    names = list(st.session_state.runs)
    if not names:
        return
    if st.session_state.active_run not in names:
        st.session_state.active_run = names[0]
    st.session_state[key] = st.session_state.active_run
    st.selectbox(label, names, key=key, on_change=lambda: choose_active(st.session_state[key]))


def sidebar_status(container, show_job: bool = True) -> None:
    """What is loaded, drawn after the page ran so it shows the page's changes. `show_job`: the
    running job's line (the Data & model page shows the job itself)."""
    with container.container():
        run = active_run()
        upload = st.session_state.get("upload")
        source = setting("dataset_source")
        st.caption("Dataset")
        shown = (f"`{upload[1]}`" if upload else "an upload: none yet") if source == "upload" else f"`{source}`"
        st.write(shown)
        st.caption("Active model")
        st.write(run.name if run else "none")
        job = st.session_state.get("job")
        if show_job and job is not None and not job.finished:
            job_status(job)
        if st.session_state.get("startup_error"):
            st.warning(f"A bundled checkpoint could not be loaded: {st.session_state.startup_error}")
        collapse_sidebar_when_narrow(st)  # below 1,000 px the page gets the width (#27)



@st.fragment(run_every=5.0)
def job_status(job) -> None:
    """The running job in the sidebar of every page. Its polling also tells the server that
    someone still looks at the job: a job whose tab was closed is stopped after a while."""
    snapshot = job.snapshot()
    epoch, batch, batches = snapshot["progress"]
    if snapshot["status"] == "queued" and snapshot["queue"]:
        st.info(f"{job.name}: queued, number {snapshot['queue'][0]} in line")
    elif not job.finished:
        left = f", at most {duration(snapshot['time_left'][1])} left" if snapshot["time_left"] else ""
        st.info(f"Training {job.name}: epoch {epoch}/{job.train_config.epochs}, batch {batch}/{batches}{left}")
    else:
        st.success(f"{job.name}: {snapshot['status']} (see Data & model)")
