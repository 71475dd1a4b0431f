# Sourced by the install checks: build a wheel of this checkout into $work/dist (sets $wheel) and
# create a fresh virtual environment at $work/venv with the CPU torch pinned as the Makefile pins it.
# Needs $python, $root and $work set by the caller.
"$python" -m pip wheel --quiet --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/rqgmm-*.whl)
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet torch==2.13.0
