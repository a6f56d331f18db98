"""The reconciler: everything between a parsed spec and a converged Docker engine.

One `apply` flows top to bottom through these folders (each may import only those below it;
import-linter enforces the order, see pyproject.toml):

- `watch.py`      watch mode: the generic controller fed by spec files, Docker events, a resync.
- `loop/`         one pass: desired → observe → plan (pure) → execute → ready; status for `get`.
- `controlplane/` the root host process: `api/` (the CLI ↔ CP channel), `runtime/` (every
                  container start: enrol, dial clawkerd, drive the Session), `identity/` (PKI,
                  bootstrap material), `bridge/` (ssh/gpg agents and the git credential proxy).
- `firewall/`     the firewall's user-space half: allowlists, enforcement, the DNS resolver.
- `images/`       agent and base images: inputs, Dockerfile, wheelhouse, harness, builds.
- `host/`         the host side of an agent: workspace, ignore rules, git layout, config seed.
- `controller/`   the controller shape both watch mode and the CP use: keyed queue, backoff,
                  event sources.
- `docker/`       the one typed port over docker-py (the only place docker-py is imported).
- `naming.py`     names and labels of every Docker object (the state itself).
- `in_container/` stdlib-only scripts that run inside agent containers (imports nothing else).
"""
