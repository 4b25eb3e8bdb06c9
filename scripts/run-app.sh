#!/usr/bin/env bash
# Set up from scratch and start the app on the bundled sample data (CPU, no network needed
# once the packages are installed). Extra arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -e .
exec .venv/bin/streamlit run app.py "$@"
