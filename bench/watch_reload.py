"""Spec saved → reload begins: watch mode's file source, before and after issue 12d, one save
timed by both at once.

    .venv/bin/python bench/watch_reload.py --runs 20

Two `SpecFileSource`s watch the same folder, each on its own thread: one as watch mode ran
before (a 0.1 s quiet period on top of watchfiles, checked on a yield every 50 ms), one as now
(watchfiles' own 20 ms step only, a yield every 20 ms). Each run replaces the spec file as an
editor does (a temporary file renamed over it) and times, for each source, from the rename to
its `on_change` call, i.e. to the moment watch mode would begin re-reading the specs. No Docker,
no clawker process: only the part of *spec saved → Ready* the file source decides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# Run as a script (`python bench/watch_reload.py`): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.controller.sources import Debouncer, SpecFileSource

VARIANTS = {
    "before (quiet 0.1 s, yield 50 ms)": (0.1, 50),
    "now (watchfiles' 20 ms, yield 20 ms)": (0.0, 20),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clawker-reload-") as tmp:
        spec = Path(tmp) / "agents.yaml"
        spec.write_text("kind: Project\n")
        stop = threading.Event()
        fired: dict[str, threading.Event] = {}
        when: dict[str, float] = {}
        sources = {}
        for name, (quiet, every) in VARIANTS.items():
            fired[name] = threading.Event()

            def on_change(_files: list[str], name: str = name) -> None:
                when[name] = time.perf_counter()
                fired[name].set()

            source = SpecFileSource(
                [str(spec)], on_change, stop, debouncer=Debouncer(quiet=quiet), yield_every_ms=every
            )
            sources[name] = source
            threading.Thread(target=source.run, daemon=True).start()
        for source in sources.values():
            source.ready.wait(5)
        time.sleep(0.3)
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        load_before = os.getloadavg()[0]
        for i in range(args.runs):
            for event in fired.values():
                event.clear()
            new = Path(tmp) / ".agents.yaml.tmp"
            new.write_text(f"kind: Project\n# save {i}\n")
            saved = time.perf_counter()
            os.replace(new, spec)
            for name, event in fired.items():
                if not event.wait(5):
                    raise SystemExit(f"{name}: no reload within 5 s")
                samples[name].append(when[name] - saved)
            time.sleep(0.5)  # past every quiet period and max_wait window
        stop.set()
        load_after = os.getloadavg()[0]
    print(f"spec saved -> reload begins, {args.runs} saves, each timed by both sources at once")
    print(f"load average before {load_before:.1f}, after {load_after:.1f}")
    print(f"{'':40}{'median':>9}{'min':>9}{'max':>9}")
    for name, values in samples.items():
        print(
            f"{name:40}{statistics.median(values) * 1000:7.1f}ms"
            f"{min(values) * 1000:7.1f}ms{max(values) * 1000:7.1f}ms"
        )


if __name__ == "__main__":
    main()
