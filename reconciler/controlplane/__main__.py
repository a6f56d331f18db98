"""`python -m reconciler.controlplane serve [SETTINGS_JSON]`: the control plane process.

The CLI passes its own Settings as JSON; started by hand, the CP reads its environment."""

import sys

from reconciler.controlplane.daemon import serve
from reconciler.settings import Settings, SettingsError, settings_from_env

if __name__ == "__main__":
    if not sys.argv[1:] or sys.argv[1] != "serve" or len(sys.argv) > 3:
        sys.exit("usage: python -m reconciler.controlplane serve [SETTINGS_JSON]")
    try:
        settings = Settings.from_json(sys.argv[2]) if len(sys.argv) == 3 else settings_from_env()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    sys.exit(serve(settings))
