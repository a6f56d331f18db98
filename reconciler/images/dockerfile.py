"""The agent image's Dockerfile, rendered from a project's build spec (pure: no I/O).

What the image holds is fixed by DESIGN §9; the order of the steps is chosen for the layer
cache: what changes least comes first, and the 400 MB harness comes before clawkerd's sources,
which change with every clawker release.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reconciler import naming
from reconciler.images.agent_prompt import AGENT_PROMPT_PATH
from reconciler.images.base import BASE_PACKAGES
from reconciler.images.wheelhouse import PYTHON_VERSION, REQUIREMENTS

__all__ = [
    "BASE_IMAGE_ARG",
    "CLAWKERD_LAUNCHER",
    "CONTEXT_FILES",
    "CONTEXT_HARNESS",
    "CONTEXT_SOURCES",
    "CONTEXT_WHEELS",
    "CREDENTIAL_HELPER_PATH",
    "ENTRYPOINT",
    "OPT",
    "SOURCES_DIR",
    "VENV",
    "clawkerd_launcher",
    "render_dockerfile",
]

# The build argument that carries the base image actually used (see building.resolve_base_image).
BASE_IMAGE_ARG = "CLAWKER_BASE_IMAGE"

# Paths in the build context.
CONTEXT_WHEELS = "wheels"
CONTEXT_SOURCES = "src"
CONTEXT_FILES = "files"
CONTEXT_HARNESS = "harness/claude"

# Paths in the image.
OPT = "/opt/clawker"
VENV = f"{OPT}/venv"
SOURCES_DIR = f"{OPT}/src"
ENTRYPOINT = "/usr/local/bin/clawkerd"
CREDENTIAL_HELPER_PATH = "/usr/local/bin/git-credential-clawker"
HARNESS_PATH = "/usr/local/bin/claude"
CLAWKERD_LAUNCHER = "clawkerd"

_PURELIB = "'import sysconfig; print(sysconfig.get_path(\"purelib\"))'"
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:_-]+)?$")


def clawkerd_launcher() -> str:
    """/usr/local/bin/clawkerd: exec clawker's own Python on `-m clawkerd` (it becomes PID 1).

    `-I` keeps the root supervisor free of PYTHON* variables, the user site and the cwd.
    """
    return f'#!/bin/sh\nexec {VENV}/bin/python -I -m clawkerd "$@"\n'


def _python_check() -> str:
    want = PYTHON_VERSION
    message = (
        f'"clawker: the base image has Python " + v + "; clawkerd wheels are built for Python '
        f'{want} (Debian bookworm): use a bookworm-based build.base_image"'
    )
    return (
        'python3 -c \'import sys; v = "%d.%d" % sys.version_info[:2]; '
        f'sys.exit(0 if v == "{want}" else {message})\''
    )


def _apt_install(packages: Sequence[str]) -> str:
    return (
        "RUN apt-get update -qq \\\n"
        f" && apt-get install -y -qq --no-install-recommends {' '.join(packages)} \\\n"
        " && rm -rf /var/lib/apt/lists/*"
    )


def render_dockerfile(
    *,
    base_image: str,
    packages: Sequence[str],
    harness: str,
    user: naming.AgentUser = naming.DEFAULT_AGENT_USER,
    requirements: Sequence[str] = REQUIREMENTS,
    runtime_packages: Sequence[str] = BASE_PACKAGES,
) -> str:
    """The Dockerfile of a project image; `packages` are installed sorted and de-duplicated;
    the user `claude` gets `user`'s uid and gid (never 0)."""
    wanted = sorted(set(packages))
    bad = [p for p in (*wanted, *runtime_packages) if not _PACKAGE.match(p)]
    if bad:
        raise ValueError(f"not Debian package names: {', '.join(bad)}")
    if harness not in ("claude", "none"):
        raise ValueError(f"unknown harness {harness!r}")
    if user.uid <= 0 or user.gid <= 0:
        raise ValueError(f"the agent user is never root (uid {user.uid} gid {user.gid})")
    runtime = " ".join(runtime_packages)
    lines = [
        "# Rendered by clawker (reconciler/images/dockerfile.py) for one project; do not edit.",
        f"ARG {BASE_IMAGE_ARG}={base_image}",
        f"FROM ${{{BASE_IMAGE_ARG}}}",
        'SHELL ["/bin/sh", "-eu", "-c"]',
        "ARG DEBIAN_FRONTEND=noninteractive",
        "",
        "# 1. What clawkerd, the agent user and git need at run time. clawker-base has all of it,",
        "#    so this step goes to the Debian mirrors only for a base image that lacks something.",
        'RUN missing=""; \\',
        f"    for p in {runtime}; do \\",
        "      dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'ok installed' \\",
        '        || missing="$missing $p"; \\',
        "    done; \\",
        '    if [ -n "$missing" ]; then \\',
        '      echo "clawker: installing$missing (the base image lacks them)"; \\',
        "      apt-get update -qq; \\",
        "      apt-get install -y -qq --no-install-recommends $missing; \\",
        "      rm -rf /var/lib/apt/lists/*; \\",
        "    fi",
        "",
    ]
    if wanted:
        lines += ["# 2. The project's build.packages, from the Debian mirrors."]
        lines += [_apt_install(wanted)]
    else:
        lines += ["# 2. No build.packages."]
    lines += [
        "",
        "# 3. The directories clawkerd uses.",
        "RUN install -d -o root -g root -m 0755 /var/log/clawker /run/clawker /etc/claude-code",
        "",
        "# 4. clawkerd's Python: a venv of the base's python3, filled from the wheelhouse built on",
        "#    the host (no network); pip runs from its own wheel and is not installed.",
        f"COPY {CONTEXT_WHEELS}/ /tmp/clawker-wheels/",
        f"RUN {_python_check()} \\",
        f" && python3 -m venv --without-pip {VENV} \\",
        " && set -- /tmp/clawker-wheels/pip-*.whl \\",
        f' && {VENV}/bin/python "$1/pip" install --quiet --no-index --no-cache-dir \\',
        "      --disable-pip-version-check --root-user-action=ignore \\",
        f"      --find-links /tmp/clawker-wheels {' '.join(requirements)} \\",
        f' && site="$({VENV}/bin/python -c {_PURELIB})" \\',
        f" && printf '%s\\n' {SOURCES_DIR} > \"$site/clawker.pth\" \\",
        " && rm -rf /tmp/clawker-wheels",
        "",
    ]
    if harness == "claude":
        lines += [
            "# 5. The harness: the Claude Code CLI's native binary, fetched on the host.",
            f"COPY {CONTEXT_HARNESS} {HARNESS_PATH}",
            "ENV DISABLE_AUTOUPDATER=1",
        ]
    else:
        lines += ["# 5. No harness (build.harness: none): the spec's command runs as it is."]
    lines += [
        "",
        "# 6. clawkerd and the protocol modules it serves; the import proves the wheels fit.",
        f"COPY {CONTEXT_SOURCES}/ {SOURCES_DIR}/",
        f"RUN {VENV}/bin/python -m compileall -q {SOURCES_DIR} \\",
        f" && {VENV}/bin/python -I -c 'import clawkerd, proto.gen.clawkerd_pb2_grpc, cryptography'",
        "",
        "# 7. The launcher, git's credential helper and the agent awareness prompt.",
        f"COPY {CONTEXT_FILES}/{CLAWKERD_LAUNCHER} {CONTEXT_FILES}/git-credential-clawker "
        "/usr/local/bin/",
        f"COPY {CONTEXT_FILES}/CLAUDE.md {AGENT_PROMPT_PATH}",
        f"ENV HISTFILE={naming.HISTORY_MOUNT}/.bash_history",
        "",
        *_agent_user(user),
        f'ENTRYPOINT ["{ENTRYPOINT}"]',
        'CMD ["claude"]' if harness == "claude" else 'CMD ["bash"]',
        "",
    ]
    return "\n".join(lines)


def _agent_user(user: naming.AgentUser) -> list[str]:
    """The user `claude` with the workspace owner's ids and passwordless sudo, last: a change of
    owner rebuilds only this layer. A base-image user or group already holding those ids (a
    `node` or `ubuntu` user at 1000) moves to one free id (a pair stays a pair), with the files
    it owns. A base image that already has a user or group named `claude` keeps it, moved to
    those ids with its files, its home and primary group set as clawker's agent user needs. The
    directories volumes mount on are made here, so a new volume starts owned by the agent
    user."""
    uid, gid, home = user.uid, user.gid, naming.AGENT_HOME
    return [
        f"# 8. The agent user (uid {uid} gid {gid}: the workspace owner's), moving aside a user",
        "#    or group of the base image that has those ids.",
        f"RUN uid={uid} gid={gid}; \\",
        "    free_id() { n=59999; \\",
        '      while getent passwd "$n" >/dev/null || getent group "$n" >/dev/null; do \\',
        '        n=$((n - 1)); done; echo "$n"; }; \\',
        "    n=$(free_id); \\",
        '    other=$(getent group "$gid" | cut -d: -f1); \\',
        '    if [ -n "$other" ] && [ "$other" != claude ]; then \\',
        '      echo "clawker: moving group $other from gid $gid to $n"; \\',
        '      groupmod --gid "$n" "$other"; \\',
        '      find / -xdev -gid "$gid" -exec chgrp -h "$n" {} +; \\',
        "    fi; \\",
        '    other=$(getent passwd "$uid" | cut -d: -f1); \\',
        '    if [ -n "$other" ] && [ "$other" != claude ]; then \\',
        '      echo "clawker: moving user $other from uid $uid to $n"; \\',
        '      usermod --uid "$n" "$other"; \\',
        '      find / -xdev -uid "$uid" -exec chown -h "$n" {} +; \\',
        "    fi; \\",
        "    old=$(getent group claude | cut -d: -f3); \\",
        '    if [ -z "$old" ]; then groupadd --gid "$gid" claude; \\',
        '    elif [ "$old" != "$gid" ]; then \\',
        '      echo "clawker: moving the base image\'s group claude from gid $old to $gid"; \\',
        '      groupmod --gid "$gid" claude; \\',
        '      find / -xdev -gid "$old" -exec chgrp -h "$gid" {} +; \\',
        "    fi; \\",
        "    old=$(getent passwd claude | cut -d: -f3); \\",
        '    if [ -z "$old" ]; then \\',
        f'      useradd --uid "$uid" --gid "$gid" --create-home --home-dir {home} '
        "--shell /bin/bash claude; \\",
        "    else \\",
        '      if [ "$old" != "$uid" ]; then \\',
        '        echo "clawker: moving the base image\'s user claude from uid $old to $uid"; \\',
        '        usermod --uid "$uid" claude; \\',
        '        find / -xdev -uid "$old" -exec chown -h "$uid" {} +; \\',
        "      fi; \\",
        '      usermod --gid "$gid" --shell /bin/bash claude; \\',
        f'      if [ "$(getent passwd claude | cut -d: -f6)" != {home} ]; then \\',
        f"        if [ -e {home} ]; then usermod --home {home} claude; \\",
        f"          chown -R claude:claude {home}; \\",
        f"        else usermod --home {home} --move-home claude; fi; \\",
        "      fi; \\",
        f"      install -d -o claude -g claude {home}; \\",
        "    fi; \\",
        "    printf 'claude ALL=(ALL:ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/claude; \\",
        "    chmod 0440 /etc/sudoers.d/claude; \\",
        f"    install -d -o claude -g claude -m 0755 {naming.CONFIG_MOUNT} {naming.HISTORY_MOUNT}"
        "; \\",
        '    [ "$(id -u claude):$(id -g claude)" = "$uid:$gid" ]',
    ]
