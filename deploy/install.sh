#!/bin/sh
# Install the bot as production runs it: a fresh virtualenv, the locked dependencies (hash-checked,
# nothing unpinned), then the wheel alone, and pip's check that nothing it needs is missing.
# The Dockerfile and tests/test_wheel.py run exactly this.
# Usage: deploy/install.sh VENV REQUIREMENTS WHEELDIR
set -eu
venv=${1:?usage: deploy/install.sh VENV REQUIREMENTS WHEELDIR}
requirements=${2:?usage: deploy/install.sh VENV REQUIREMENTS WHEELDIR}
wheels=${3:?usage: deploy/install.sh VENV REQUIREMENTS WHEELDIR}
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --require-hashes --no-deps -r "$requirements"
"$venv/bin/python" -m pip install --no-deps --no-index "$wheels"/seatbot-*.whl
"$venv/bin/python" -m pip check
