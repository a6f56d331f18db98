"""`clawker logs|stop|restart|rm|ps|volume ls|volume prune|cp`: an agent's container by hand.

Every verb names agents as `run` does (NAME, PROJECT/NAME or the container name) and acts
only on what clawker made (the Docker port filters by label).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile

from cli.agent_verbs import UsageError, _confirm
from cli.render import render_event, render_outcomes, render_plan
from cli.run_verb import target_container
from cli.style import Style, fail_mark
from cli.table import render_table
from cli.terminal import docker_frames
from reconciler import naming
from reconciler.controlplane import lifecycle
from reconciler.controlplane.paths import StatePaths
from reconciler.docker.engine import ContainerInfo, DockerEngine, DockerError
from reconciler.loop.converge import apply_plan
from reconciler.loop.observe import ObservedState, observe
from reconciler.loop.plan import KEEPSAKE_ROLES, plan_delete, plan_volume_prune
from reconciler.loop.ready import wait_ready

__all__ = [
    "cmd_cp",
    "cmd_logs",
    "cmd_ps",
    "cmd_restart",
    "cmd_rm",
    "cmd_stop",
    "cmd_volume_ls",
    "cmd_volume_prune",
]

EXIT_OK, EXIT_FAIL = 0, 1
CLAWKERD_LOG = "/var/log/clawker/clawkerd.log"


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _key(c: ContainerInfo) -> str:
    return naming.agent_key(c.labels.get(naming.PROJECT, ""), c.labels.get(naming.AGENT, ""))


# -- logs --------------------------------------------------------------------------------------


def cmd_logs(args: argparse.Namespace) -> int:
    container = target_container(args)
    port = DockerEngine(scope=args.settings)
    if args.clawkerd:
        return _clawkerd_log(port, container, follow=args.follow, tail=args.tail)
    for stream, data in port.logs_stream(
        container.id, follow=args.follow, since=args.since, tail=args.tail
    ):
        target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
        target.write(data)
        target.flush()
    return EXIT_OK


def _read_container_file(port: DockerEngine, container: str, path: str) -> bytes:
    data = b"".join(port.get_archive(container, path))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member is not None else None
        return handle.read() if handle is not None else b""


def render_clawkerd_line(raw: str) -> str:
    """One JSON line of clawkerd's log as `time level event key=value ...`."""
    try:
        record = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(record, dict):
        return raw
    when = str(record.pop("ts", record.pop("time", "")))
    level = str(record.pop("level", "")).upper()
    event = str(record.pop("event", record.pop("msg", "")))
    rest = " ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in record.items()
    )
    return " ".join(part for part in (when, f"{level:<7}", event, rest) if part)


def _clawkerd_log(
    port: DockerEngine, container: ContainerInfo, *, follow: bool, tail: int | None
) -> int:
    try:
        text = _read_container_file(port, container.id, CLAWKERD_LOG).decode(errors="replace")
    except DockerError as exc:
        raise UsageError(f"{container.name} has no clawkerd log yet ({exc})") from exc
    lines = text.splitlines()
    if follow and container.state == "running":
        return _follow_clawkerd_log(port, container, skip=len(lines), shown=lines, tail=tail)
    for line in lines[-tail:] if tail is not None else lines:
        _out(render_clawkerd_line(line))
    return EXIT_OK


def _follow_clawkerd_log(
    port: DockerEngine, container: ContainerInfo, *, skip: int, shown: list[str], tail: int | None
) -> int:
    """`logs --clawkerd -f`: what the log holds now, then each line as clawkerd writes it, through
    `tail -F` inside the container (rotation at 50 MB is followed; nothing is re-read), until
    the container stops or the person presses ctrl-c."""
    for line in shown[-tail:] if tail is not None else shown:
        _out(render_clawkerd_line(line))
    try:
        sock = port.exec_socket(
            container.id, ["tail", "-F", "-q", "-n", f"+{skip + 1}", CLAWKERD_LOG], user="root"
        )
    except DockerError:
        return EXIT_OK  # it stopped between the read and the follow
    pending, text = b"", b""
    with sock:
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            frames, pending = docker_frames(pending + chunk)
            for stream, payload in frames:
                if stream != 1:
                    continue  # tail's own notes ("has been replaced"): rotation is not news
                text += payload
                *complete, text = text.split(b"\n")
                for raw in complete:
                    _out(render_clawkerd_line(raw.decode(errors="replace")))
                skip += len(complete)
    # The container's end kills `tail` too, maybe before it read clawkerd's last lines.
    with contextlib.suppress(DockerError):
        last = _read_container_file(port, container.id, CLAWKERD_LOG).decode(errors="replace")
        for line in last.splitlines()[skip:]:
            _out(render_clawkerd_line(line))
    return EXIT_OK


# -- stop / restart / rm -----------------------------------------------------------------------


def _targets(args: argparse.Namespace) -> list[ContainerInfo]:
    refs = list(args.agents) or ([args.agent] if getattr(args, "agent", None) else [])
    if not refs:
        raise UsageError("name at least one agent: AGENT, PROJECT/AGENT or its container name")
    return [target_container(args, ref) for ref in refs]


def cmd_stop(args: argparse.Namespace) -> int:
    port = DockerEngine(scope=args.settings)
    for container in _targets(args):
        port.stop_container(container.id, timeout=args.time)
        _out(container.name)
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    port = DockerEngine(scope=args.settings)
    style = Style(sys.stderr)
    code = EXIT_OK
    for container in _targets(args):
        port.restart_container(container.id, timeout=args.time)
        verdicts = wait_ready(
            port,
            lifecycle.client(StatePaths(args.settings.state_dir)),
            [container.name],
            network=args.settings.network,
            timeout=args.timeout,
            on_step=lambda _c, r: _err(f"  {'✓' if r.ok else '✗'} {r.name}"),
        )
        verdict = verdicts.get(container.name)
        if verdict is not None and not verdict.ready:
            _err(f"{fail_mark(style)} {container.name}: not ready: {verdict.detail}")
            code = EXIT_FAIL
        else:
            _out(container.name)
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    port = DockerEngine(scope=args.settings)
    targets = _targets(args)
    running = [c.name for c in targets if c.state == "running"]
    if running and not args.force:
        raise UsageError(f"{', '.join(running)} running; stop it first (`clawker stop`) or pass -f")
    prepared_plan = plan_delete([_key(c) for c in targets], observe(port), volumes=args.volumes)
    style = Style(sys.stdout)
    _out(render_plan(prepared_plan, style))
    _out()
    question = "Remove these containers" + (
        " AND their volumes (sessions, logins, history are lost)?" if args.volumes else "?"
    )
    if not _confirm(question, args.yes):
        _err("Remove cancelled.")
        return EXIT_FAIL
    err_style = Style(sys.stderr)
    _, outcomes = apply_plan(
        port,
        prepared_plan,
        settings=args.settings,
        wait=False,
        on_event=lambda e: _err(line) if (line := render_event(e, err_style)) else None,
    )
    _out(render_outcomes(outcomes, style))
    if not args.volumes:
        _out("Volumes were kept; `clawker rm --volumes` or `clawker volume prune` removes them.")
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAIL


# -- ps / container ls -------------------------------------------------------------------------


def cmd_ps(args: argparse.Namespace) -> int:
    observed = observe(DockerEngine(scope=args.settings))
    rows = []
    for key in sorted(observed.agents):
        agent = observed.agents[key]
        for c in (agent.container, *agent.leftovers):
            if c is None or (not args.all and c.state != "running"):
                continue
            if args.project and agent.project != args.project:
                continue
            rows.append((agent, c))
    if args.output == "json":
        items = [
            {
                "agent": a.key,
                "project": a.project,
                "name": a.name,
                "container": c.name,
                "id": c.id,
                "state": c.state,
                "status": c.status,
                "madeBy": c.labels.get(naming.MADE_BY, "apply"),
                "applySet": c.labels.get(naming.APPLY_SET, ""),
                "workspace": c.labels.get(naming.WORKSPACE_PATH, ""),
                "created": dt.datetime.fromtimestamp(c.created, dt.UTC).isoformat()
                if c.created
                else "",
                "volumes": list(c.volumes),
            }
            for a, c in rows
        ]
        _out(json.dumps({"kind": "ContainerList", "items": items}, indent=2))
        return EXIT_OK
    if not rows:
        _err("No agent containers" + ("." if args.all else " running (-a shows stopped ones)."))
        return EXIT_OK
    headers = ["AGENT", "CONTAINER", "STATE", "STATUS", "MADE BY"]
    table = [
        [a.key, c.name, c.state, c.status, c.labels.get(naming.MADE_BY, "apply")] for a, c in rows
    ]
    _out(render_table(headers, table))
    return EXIT_OK


# -- volume ls / prune -------------------------------------------------------------------------


def _volume_users(observed: ObservedState) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for agent in observed.agents.values():
        for c in (agent.container, *agent.leftovers):
            if c is not None:
                for volume in c.volumes:
                    users.setdefault(volume, []).append(c.name)
    return users


def cmd_volume_ls(args: argparse.Namespace) -> int:
    observed = observe(DockerEngine(scope=args.settings))
    users = _volume_users(observed)
    items = []
    table: list[tuple[str, str, str, list[str]]] = []
    for name, labels in sorted(observed.volumes.items()):
        project, agent = labels.get(naming.PROJECT, ""), labels.get(naming.AGENT, "")
        key = naming.agent_key(project, agent) if project and agent else ""
        table.append((name, key, labels.get(naming.VOLUME_ROLE, ""), sorted(users.get(name, []))))
        items.append(
            {
                "name": name,
                "agent": naming.agent_key(project, agent) if project and agent else "",
                "role": labels.get(naming.VOLUME_ROLE, ""),
                "inUse": bool(users.get(name)),
                "usedBy": sorted(users.get(name, [])),
            }
        )
    if args.output == "json":
        _out(json.dumps({"kind": "VolumeList", "items": items}, indent=2))
        return EXIT_OK
    if not items:
        _err("No volumes.")
        return EXIT_OK
    rows = [[name, agent, role, ", ".join(used) or "-"] for name, agent, role, used in table]
    _out(render_table(["VOLUME", "AGENT", "ROLE", "USED BY"], rows))
    return EXIT_OK


def cmd_volume_prune(args: argparse.Namespace) -> int:
    port = DockerEngine(scope=args.settings)
    observed = observe(port)
    the_plan = plan_volume_prune(observed, all_roles=args.all)
    kept = [
        name
        for name, labels in sorted(observed.volumes.items())
        if labels.get(naming.VOLUME_ROLE) in KEEPSAKE_ROLES
        and not any(s.target == name for s in the_plan.steps)
    ]
    if the_plan.empty:
        _out("No volumes to prune.")
        if kept and not args.all:
            _out(
                f"Kept {len(kept)} config/history volume(s); `--all` includes those of agents "
                "without a container."
            )
        return EXIT_OK
    names = [s.target for s in the_plan.steps]
    keepsakes = [
        n for n in names if observed.volumes.get(n, {}).get(naming.VOLUME_ROLE) in KEEPSAKE_ROLES
    ]
    _out("Volumes to remove (their agents have no container):")
    for name in names:
        _out(f"  - {name}")
    question = "Remove these volumes?"
    if keepsakes:
        question = (
            "Remove these volumes, INCLUDING config/history volumes that hold logins, "
            f"sessions and shell history ({', '.join(keepsakes)})?"
        )
    if not _confirm(question, args.yes):
        _err("Prune cancelled.")
        return EXIT_FAIL
    failed = 0
    for name in names:
        try:
            port.remove_volume(name)
            _out(f"removed {name}")
        except DockerError as exc:
            _err(f"error: {exc}")
            failed += 1
    return EXIT_FAIL if failed else EXIT_OK


# -- cp ----------------------------------------------------------------------------------------


def _split_cp(arg: str) -> tuple[str | None, str]:
    if ":" in arg and not arg.startswith(("/", ".")):
        ref, _, path = arg.partition(":")
        return ref, path
    return None, arg


def cmd_cp(args: argparse.Namespace) -> int:
    src_ref, src = _split_cp(args.source)
    dst_ref, dst = _split_cp(args.destination)
    if (src_ref is None) == (dst_ref is None):
        raise UsageError("cp copies between an agent and the host: AGENT:PATH HOST_PATH, or back")
    port = DockerEngine(scope=args.settings)
    if src_ref is not None:
        container = target_container(args, src_ref)
        _copy_out(port, container, src, dst)
    else:
        assert dst_ref is not None
        container = target_container(args, dst_ref)
        _copy_in(port, container, src, dst)
    return EXIT_OK


def _copy_out(port: DockerEngine, container: ContainerInfo, src: str, dst: str) -> None:
    """Like `docker cp`: into `dst` when it is a directory, else as `dst`."""
    data = b"".join(port.get_archive(container.id, src))
    with tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.extractall(scratch, filter="data")
        entries = os.listdir(scratch)
        if len(entries) != 1:
            raise DockerError(f"copy from {container.name}:{src}: unexpected archive")
        extracted = os.path.join(scratch, entries[0])
        target = os.path.join(dst, entries[0]) if os.path.isdir(dst) else dst
        if os.path.exists(target) and os.path.isdir(extracted):
            shutil.copytree(extracted, target, dirs_exist_ok=True)
        else:
            shutil.move(extracted, target)
    _out(f"{container.name}:{src} → {target}")


def _copy_in(port: DockerEngine, container: ContainerInfo, src: str, dst: str) -> None:
    if not os.path.exists(src):
        raise UsageError(f"{src}: no such file or directory")
    stat = port.path_stat(container.id, dst)
    is_dir = stat is not None and bool(int(stat.get("mode", 0)) & (1 << 31))
    if is_dir:
        parent, name = dst, os.path.basename(os.path.normpath(src))
    else:
        parent, name = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(src, arcname=name, filter=_agent_owned)
    port.put_archive(container.id, parent, buffer.getvalue())
    _out(f"{src} → {container.name}:{os.path.join(parent, name)}")


def _agent_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """What is copied in belongs to the agent user, who must be able to change it."""
    info.uid, info.gid = naming.AGENT_UID, naming.AGENT_GID
    info.uname = info.gname = "claude"
    return info
