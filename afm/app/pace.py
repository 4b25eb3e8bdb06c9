"""How long a running training has left, from its pace so far: the progress bar's "about ... left in
this epoch, at most ... more" (afm.app.jobs.TrainingJob.snapshot)."""

from __future__ import annotations

PACE_EPOCHS = 5  # finished epochs whose mean pace the estimate goes by


def time_left(epoch: int, batch: int, batches: int, epochs: int, seconds_in_epoch: float,
              history: list[dict]) -> tuple[float, float]:
    """(seconds left in epoch `epoch`, seconds left in the whole run) when `batch` of its `batches`
    took `seconds_in_epoch`. Each epoch to come takes the mean of the last PACE_EPOCHS finished
    ones (the first left out once others ran: compiling, a cold cache), plus their mean tail, the
    time after training (`tail_seconds`: evaluation, the coupling tracker, the best weights kept;
    at least `eval_seconds`). Before #27 one epoch's pace and its evaluation alone went: the
    figure swung from 7 s to 62 s on a busy machine, and the Quick preset's was 0.7 of its time.
    The running epoch goes at that pace until half of it has run, then at its own. An upper
    bound: early stopping may end the run sooner."""
    done = [r for r in history if r.get("epoch", 0) > 0 and r.get("seconds")]
    steady = (done[1:] or done)[-PACE_EPOCHS:]
    own = seconds_in_epoch / batch
    whole = sum(r["seconds"] for r in steady) / len(steady) if steady else batches * own
    per_batch = own if not steady or 2 * batch >= batches else whole / batches
    tails = [max(r.get("eval_seconds", 0.0), r.get("tail_seconds", 0.0)) for r in (done or history)[-PACE_EPOCHS:]]
    tail = sum(tails) / len(tails) if tails else 0.0
    this_epoch = (batches - batch) * per_batch
    return this_epoch, this_epoch + tail + (epochs - epoch) * (whole + tail)
