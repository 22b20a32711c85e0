#!/bin/sh
# Build the sdist, then the wheel from that sdist (so a file missing from the sdist fails here), with
# the build tools pinned in requirements-build.txt. Run from the checkout with the `python` to build
# with: the Dockerfile's build stage and tests/test_wheel.py run exactly this.
# Usage: deploy/build.sh OUTDIR
set -eu
out=${1:?usage: deploy/build.sh OUTDIR}
python -m pip install --require-hashes --no-deps -r requirements-build.txt
python -m build --no-isolation --outdir "$out" .
