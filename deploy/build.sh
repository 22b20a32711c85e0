#!/bin/sh
# Build the sdist, then the wheel from that sdist (so a file missing from the sdist fails here), with
# the build tools pinned in requirements-build.txt. Run from the checkout with the Python to build
# with ($PYTHON, else python3; it installs the tools into that one: use a throwaway virtualenv or
# image stage). The Dockerfile's build stage and tests/test_wheel.py run exactly this.
# Usage: deploy/build.sh OUTDIR
set -eu
out=${1:?usage: deploy/build.sh OUTDIR}
"${PYTHON:-python3}" -m pip install --require-hashes --no-deps -r requirements-build.txt
"${PYTHON:-python3}" -m build --no-isolation --outdir "$out" .
