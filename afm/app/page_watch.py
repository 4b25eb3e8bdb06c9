"""Whether the browser tab that started a job is still connected, for the scheduler's watchdog.

A job whose page has not polled it for a while is stopped as abandoned (afm.scheduler). Polls
come from the browser's timers, so a page on a starved machine (twenty browsers on one class
server) can poll late while its tab is open; Streamlit's runtime knows whether the session is
still connected, and a connected page keeps its job.
"""

from __future__ import annotations

from collections.abc import Callable


def current_page_open() -> Callable[[], bool] | None:
    """A check of whether the session running this script is still connected; None outside a
    Streamlit script (the command line, tests without a server), where only polls count."""
    try:
        from streamlit import runtime
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:
        return None
    context = get_script_run_ctx(suppress_warning=True)
    if context is None or not runtime.exists():
        return None
    server, session_id = runtime.get_instance(), context.session_id
    return lambda: server.is_active_session(session_id)
