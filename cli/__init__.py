"""The `clawker` command: argument parsing and rendering; the reconciler does the work."""

import time

# `apply --profile` counts from here: the interpreter's own start-up is what precedes it.
STARTED = time.perf_counter()
