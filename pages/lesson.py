"""Lesson: "Why attention helps FM, and when it does not", in steps with Back and Next, each one
screen (a figure, what to see, one thing to try), on the bundled models; a presenter toggle for
larger type and one figure per screen. The steps: afm.lesson; their drawing: afm.app.lesson."""

from __future__ import annotations

import streamlit as st

from afm.app import lesson as draw
from afm.lesson import STEPS

# One step, one screen: less empty space above the step than Streamlit's default 6rem.
SCREEN_CSS = """<style>[data-testid="stMainBlockContainer"] { padding-top: 3rem; padding-bottom: 1rem; }</style>"""
PRESENTER_CSS = """<style>
[data-testid="stMainBlockContainer"] p, [data-testid="stMainBlockContainer"] li { font-size: 1.45rem; }
[data-testid="stMainBlockContainer"] h2 { font-size: 2.4rem; }
</style>"""

st.session_state.setdefault("lesson_step", 0)
st.markdown(SCREEN_CSS, unsafe_allow_html=True)
if not draw.lesson_files_present():
    st.error("The lesson needs the bundled sample models (sample_data/); remake them with "
             "`python -m afm sample --checkpoints`.")
    st.stop()


def go(offset: int) -> None:
    st.session_state.lesson_step = min(max(st.session_state.lesson_step + offset, 0), len(STEPS) - 1)


number = st.session_state.lesson_step
step = STEPS[number]
back, where, ahead, toggle = st.columns([1.4, 5, 1.4, 2], vertical_alignment="center")
back.button("← Back", on_click=go, args=(-1,), disabled=number == 0, width="stretch")
ahead.button("Next →", on_click=go, args=(1,), disabled=number == len(STEPS) - 1, width="stretch",
             type="primary")
where.progress((number + 1) / len(STEPS), text=f"Why attention helps FM, and when it does not · step {number + 1} "
                                               f"of {len(STEPS)}")
presenter = toggle.toggle("Presenter", key="lesson_presenter", help="Larger type and one figure per screen, for a "
                          "projector.")
if presenter:
    st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
st.subheader(f"{number + 1}. {step.title}")
st.markdown(f"**{step.see}**")
draw.DRAW[step.key](presenter)
st.caption(f"Try: {step.try_this}")
