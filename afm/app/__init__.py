"""What the Streamlit pages share (the only part of `afm` that imports Streamlit): per-session
state (`state`), caches of data, checkpoints and analyses (`cache`), and uploads (`uploads`).

Importing it also makes sure app.py runs first. Streamlit decides per server, before any script
has called `st.navigation`, whether the app is a folder of pages: `pages/` exists, so the first
run of a fresh server, if it is for a page's address (a bookmarked `/lesson`), runs that page file
alone, without app.py (no wide layout, no sidebar, the files' names for a menu), and every later
session does too until someone opens the front page. The first import of this package happens in
that run, by the page: it tells Streamlit the app is not a folder of pages and runs it again, now
through app.py's `st.navigation`, which opens the same page (tests/test_browser.py)."""


def _run_through_the_app() -> None:
    from streamlit import rerun
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    try:  # Streamlit's own flag (streamlit 1.67, requirements.txt); a version without it has nothing to mend
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    context = get_script_run_ctx(suppress_warning=True)
    if context is None or not getattr(PagesManager, "uses_pages_directory", False):
        return  # not in a script run (tests, the CLI), or app.py's st.navigation already decided
    PagesManager.uses_pages_directory = False
    pages = context.pages_manager
    if pages.current_page_script_hash != pages.main_script_hash:
        rerun()  # a page file ran without app.py: run again through it


_run_through_the_app()
