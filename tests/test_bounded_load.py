"""The app's loads are bounded (afm.data.bounded): a text file is parsed in a child process that
is killed at the time limit or when its session ends, and a load that works gives exactly what
`load_dataset` gives. A child that never finishes is made by a `sitecustomize` that only the child
imports (this folder's PYTHONPATH), so no test waits on a file being slow enough."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from afm.data import load_dataset
from afm.data.bounded import LoadAbandoned, load_bounded, load_seconds, needs_child
from afm.errors import AFMError
from tests.conftest import planted_csv

# Imported by every Python started with this folder on its path; acts only in the loader's child.
SITECUSTOMIZE = """
import os, sys, time
if sys.orig_argv[-2:] == ["-m", "afm.data.bounded"]:
    if os.environ.get("AFM_TEST_LOADER") == "hang":
        open(os.environ["AFM_TEST_LOADER_STARTED"], "w").close()
        time.sleep(3600)
    elif os.environ.get("AFM_TEST_LOADER") == "die":
        os._exit(9)
"""


def loader_children(parent: int) -> list[int]:
    """PIDs of running `python -m afm.data.bounded` children of `parent` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == parent and b"afm.data.bounded" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def misbehaving_child(tmp_path, monkeypatch):
    """Set the loader's child to 'hang' or 'die'; yields a function doing so, and the file the
    hanging child touches once it runs."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    started = tmp_path / "started"
    monkeypatch.setenv("AFM_TEST_LOADER_STARTED", str(started))

    def behave(how: str) -> Path:
        monkeypatch.setenv("AFM_TEST_LOADER", how)
        return started

    return behave


@pytest.fixture
def user_csv(tmp_path) -> Path:
    path = tmp_path / "mine.csv"
    path.write_bytes(planted_csv(3))
    return path


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the child")


def test_a_bounded_load_gives_what_load_dataset_gives(user_csv):
    bounded, direct = load_bounded(user_csv), load_dataset(user_csv)
    assert bounded.fingerprint == direct.fingerprint
    assert bounded.schema == direct.schema
    assert loader_children(os.getpid()) == []


def test_a_bad_file_gives_the_same_one_line_error_through_the_child(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,3\n4,5,6,7\n")
    with pytest.raises(AFMError) as direct:
        load_dataset(bad)
    with pytest.raises(AFMError) as bounded:
        load_bounded(bad)
    assert str(bounded.value) == str(direct.value)
    assert "line 3" in str(bounded.value)


def test_the_bundled_samples_and_arrays_open_in_this_process(tmp_path):
    assert not needs_child("sample") and not needs_child("sample-fixed")
    from afm.data.arrays import write_arrays

    write_arrays(load_dataset("sample"), tmp_path / "arrays")
    assert not needs_child(tmp_path / "arrays")
    assert needs_child("frappe") and needs_child(tmp_path / "mine.csv")


def test_a_load_past_its_time_limit_is_stopped_with_the_limit_named(misbehaving_child, user_csv):
    started = misbehaving_child("hang")
    begun = time.monotonic()
    with pytest.raises(AFMError, match=r"mine\.csv: reading it took longer than 2 s.*AFM_LOAD_SECONDS"):
        load_bounded(user_csv, seconds=2)
    assert started.exists(), "the child never ran, so nothing was bounded"
    assert time.monotonic() - begun < 60
    assert loader_children(os.getpid()) == [], "the child outlived its load"


def test_a_load_nobody_wants_any_more_is_stopped(misbehaving_child, user_csv):
    started = misbehaving_child("hang")
    with pytest.raises(LoadAbandoned):
        load_bounded(user_csv, seconds=3600, wanted=lambda: not started.exists())
    assert loader_children(os.getpid()) == []


def test_a_child_that_dies_is_a_message_not_a_hang(misbehaving_child, user_csv):
    misbehaving_child("die")
    with pytest.raises(AFMError, match=r"mine\.csv: reading it stopped the reading process \(exit code 9"):
        load_bounded(user_csv, seconds=3600)


def test_the_time_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("AFM_LOAD_SECONDS", "42")
    assert load_seconds() == 42
    for unusable in ("", "soon", "-1", "0"):
        monkeypatch.setenv("AFM_LOAD_SECONDS", unusable)
        assert load_seconds() == 600


APP_WAITING_ON_A_LOAD = """
import streamlit as st
from afm.app import cache
st.title("Loading")
cache.dataset({spec!r}, None, None, 0.0)
st.write("loaded")
"""


@pytest.mark.slow
@pytest.mark.browser
def test_closing_the_tab_stops_its_load(misbehaving_child, user_csv, tmp_path):
    """A real server: a session starts a load that never ends; once its tab is closed, the
    child is killed and nothing of it is left running."""
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    from afm.app.local_server import CHROMIUM, CHROMIUM_ARGS, app_server

    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium (apt-get install chromium)")
    started = misbehaving_child("hang")
    script = tmp_path / "waiting.py"
    script.write_text(APP_WAITING_ON_A_LOAD.format(spec=str(user_csv)))
    with app_server(script=script, log=tmp_path / "server.log") as (url, server), \
            playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_context().new_page()
        tab.goto(url)
        tab.get_by_role("heading", name="Loading").wait_for(timeout=60_000)
        waited = time.monotonic()
        while not started.exists() and time.monotonic() - waited < 60:
            time.sleep(0.2)
        assert started.exists(), "the session's load never started its child"
        assert len(loader_children(server.pid)) == 1
        tab.context.close()
        waited = time.monotonic()
        while loader_children(server.pid) and time.monotonic() - waited < 60:
            time.sleep(0.2)
        assert loader_children(server.pid) == [], "the load outlived its session"
        assert server.poll() is None
        browser.close()
