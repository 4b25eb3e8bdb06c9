"""Would this ranking survive another seed? The Attention page's stability check: one job in the
server's scheduler retrains the model's recipe with other seeds (afm.fitting.refit_seeds),
explains each model on the same rows and compares the rankings (afm.analysis.stability)."""

from __future__ import annotations

import streamlit as st

from afm.analysis.pairs import DEFAULT_BACKGROUND
from afm.analysis.stability import MEASURES, SeedStability, compare_seeds
from afm.app import cache, state
from afm.app.jobs import Run, TrainingJob
from afm.data import Dataset
from afm.figures import rank_range_figure
from afm.fitting import refit_seeds
from afm.humanize import duration

DEFAULT_SEEDS = 3
JOBS = "stability_jobs"  # session state: (run key, data fingerprint, split, rows, coalitions) -> job


class StabilityJob(TrainingJob):
    """`seeds - 1` trainings of a run's recipe, then the explanations, as one scheduler job. The
    page polls `snapshot()`; `stability` is the comparison once done."""

    def __init__(self, run: Run, dataset: Dataset, seeds: int, split: str, rows: int, coalitions: str,
                 runs: dict[str, Run]):
        """`runs`: the session's, where an AFM started from an FM finds that FM by name."""
        super().__init__(f"{run.name}: stability over {seeds} seeds", dataset, run.recipe)
        self.source, self.seeds, self.split, self.rows, self.coalitions = run, seeds, split, rows, coalitions
        self.runs = dict(runs)
        self.stability: SeedStability | None = None

    def estimated_seconds(self, expected: bool = False) -> float | None:
        one = super().estimated_seconds(expected)
        return None if one is None else one * (self.seeds - 1)

    def _time_left(self) -> tuple[float, float] | None:
        return None  # several trainings: the per-training estimate would mislead

    def _train(self, scheduler) -> None:
        start = self.runs.get(self.recipe.init_from) if self.recipe.init_from else None
        models = refit_seeds(self.source, self.dataset, self.seeds, init_from=start.model if start else None,
                             callbacks=[self],
                             should_stop=self._stop.is_set, seed_process=False)
        if self._stop.is_set():
            self._finish("stopped")
            return
        self.stability = compare_seeds(models, self.dataset.splits[self.split], self.dataset, rows=self.rows,
                                       coalitions=self.coalitions, background=DEFAULT_BACKGROUND,
                                       split_name=self.split, label_gates=cache.label_gates(self.dataset))
        self._finish("done")


def stability_section(run: Run, dataset: Dataset, split: str, rows: int, coalitions: str) -> None:
    """The button that starts the check, its progress while it runs, and its verdicts once done."""
    key = (run.key, dataset.fingerprint, split, rows, coalitions)
    jobs = st.session_state.setdefault(JOBS, {})
    job: StabilityJob | None = jobs.get(key)
    if job is None:
        seeds = st.number_input("Seeds to compare", 2, 10, DEFAULT_SEEDS, key=f"seeds_{run.key}",
                                help="This model's seed and that many minus one retrainings of its recipe.")
        st.caption(f"Trains {seeds - 1} more model{'s' if seeds > 2 else ''} with this model's recipe and other "
                   "seeds, explains each on the same rows, and compares the rankings.")
        if st.button("Check stability", key=f"stability_{run.key}"):
            try:
                jobs[key] = StabilityJob(run, dataset, int(seeds), split, rows, coalitions,
                                        st.session_state.runs).start()
            except Exception as exc:  # noqa: BLE001 - an AFMError or a plan that does not fit: said, not raised
                st.error(str(exc))
                return
            st.rerun()
        return
    _progress_or_result(job)


@st.fragment(run_every=3.0)
def _progress_or_result(job: StabilityJob) -> None:
    snapshot = job.snapshot()
    if not job.finished:
        trained = max(len(snapshot["history"]) - 1, 0)
        estimate = job.estimated_seconds()
        st.info(f"Checking stability: {snapshot['status']}, {trained} epochs trained so far"
                + (f", at most {duration(estimate)} in all." if estimate else "."))
        if st.button("Stop the check", key=f"stop_{id(job)}"):
            job.request_stop()
        return
    if job.stability is None:
        st.warning(f"The stability check {snapshot['status']}" + (f": {job.error}" if job.error else "."))
        return
    for sentence in job.stability.verdicts():
        st.markdown(f"- {sentence}")
    measure = st.radio("Rank ranges by", list(job.stability.ranks), horizontal=True,
                       key=f"stability_measure_{id(job)}", format_func=lambda m: MEASURES[m].replace("_", " "))
    st.plotly_chart(rank_range_figure(job.stability.rank_ranges(), measure), config=state.PLOTLY_CONFIG)
