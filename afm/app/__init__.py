"""What the Streamlit pages share (the only part of `afm` that imports Streamlit): per-session
state (`state`), caches of data, checkpoints and analyses (`cache`), and uploads (`uploads`)."""
