"""What a person reads: a duration said as one would say it (the CLI's progress, the app's waits)."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """'45 s', '3 min 10 s', '2 h 5 min': what a person reads for a wait."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds < 600 else f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60)} min"
