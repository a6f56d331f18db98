#!/usr/bin/env bash
# make setup: everything `make run` and `make test` need, from this repository's own files.
# Idempotent and quick the second time: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG_DIR=${CLAWKER_LOG_DIR:-/var/log/clawker}
say() { printf '  %s %s\n' "$1" "$2"; }

# 1. Debian packages: the Docker engine, compose (benchmark baseline), mmdebstrap (base image),
#    clang + libbpf (the firewall's programs); for the tests: iproute2 (network namespaces),
#    git, ssh and gpg agents (credential forwarding), npm (fetching the Claude Code binary).
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg -s libbpf-dev >/dev/null 2>&1 || need+=(libbpf-dev)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v git >/dev/null 2>&1 || need+=(git)
command -v ssh-agent >/dev/null 2>&1 || need+=(openssh-client)
command -v gpg-agent >/dev/null 2>&1 || need+=(gpg-agent)
command -v npm >/dev/null 2>&1 || need+=(npm)
if ((${#need[@]})); then
  say "…" "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
  }
fi
say "✓" "packages"

# 2. A Docker engine that answers. Never a second daemon with --bridge=none.
if ! docker info >/dev/null 2>&1; then
  mkdir -p "$LOG_DIR"
  say "…" "starting dockerd (log: $LOG_DIR/dockerd.log)"
  nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "dockerd did not answer within 60s; the end of its log:" >&2
    tail -n 25 "$LOG_DIR/dockerd.log" >&2
    exit 1
  fi
fi
say "✓" "docker engine $(docker version --format '{{.Server.Version}}')"

# 3. The virtualenv with the project and its dev tools; reinstalled when pyproject.toml changes.
stamp=.venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "…" "creating .venv"
  python3 -m venv .venv
  # pip warns about every absent local index folder of this machine's pip.conf; keep real errors.
  .venv/bin/pip install -q -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" >"$stamp"
fi
say "✓" "python environment (.venv)"

# 4. Generated protocol modules (never edited by hand).
.venv/bin/python scripts/gen_proto.py
say "✓" "protocol modules (proto/gen)"

# 4b. Bytecode for clawker's own packages. pip compiles what it installs into site-packages, but
#     this editable install runs from the tree, and where PYTHONDONTWRITEBYTECODE is set (this
#     machine) every CLI run compiled ~60 modules again (~65 ms of `clawker diff`). Python still
#     checks each .pyc against its source's mtime, so an edited module is compiled as before.
.venv/bin/python -m compileall -q -j 0 cli reconciler specs clawkerd proto/gen >/dev/null
say "✓" "bytecode (__pycache__)"

# 5. The firewall's eBPF programs, compiled with clang (make rebuilds them when a source changed).
make -s bpf
say "✓" "eBPF programs (bpf/build)"

# 6. The base image, built offline from this host's apt sources.
.venv/bin/clawker image base >/dev/null
say "✓" "base image clawker-base:bookworm"
