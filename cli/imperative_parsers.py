"""The parsers of the imperative verbs (DESIGN §1): run, create, start, attach, exec, logs,
stop, restart, rm, ps, container ..., volume ls|prune, cp. Each handler imports its
implementation only when it runs (cli.run_verb, cli.container_verbs)."""

# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
from collections.abc import Callable

from cli.durations import seconds_flag

__all__ = ["add_imperative_verbs"]

Handler = Callable[[argparse.Namespace], int]


def _run_verb(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from cli import run_verb

        fn: Handler = getattr(run_verb, name)
        return fn(args)

    return handler


def _container_verb(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from cli import container_verbs

        fn: Handler = getattr(container_verbs, name)
        return fn(args)

    return handler


def _files(p: argparse.ArgumentParser, *, short: bool = True) -> None:
    p.add_argument(
        *(("-f",) if short else ()),
        "--filename",
        action="append",
        default=[],
        metavar="PATH",
        help="spec file or directory (repeatable); default: the first clawker.yaml, "
        ".clawker.yaml or agents.yaml here or in a parent directory",
    )


def _agent_arg(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    what = "agents" if many else "agent"
    p.add_argument(
        "agents" if many else "agent_ref",
        nargs="*" if many else "?",
        metavar="AGENT",
        help=f"the {what}: NAME, PROJECT/NAME or the container name",
    )
    p.add_argument("--agent", metavar="NAME", help="the agent (instead of AGENT)")


def _timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=seconds_flag(0, 24 * 3600),
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for readiness (default 120)",
    )


def _run_flags(p: argparse.ArgumentParser, *, run: bool) -> None:
    p.add_argument(
        "image", metavar="IMAGE", help="@: the project's image (clawker-<project>:default)"
    )
    p.add_argument(
        "--agent",
        metavar="NAME",
        help="the agent: NAME or PROJECT/NAME; a declared agent starts from its spec, any "
        "other from the Project's defaults (default: a new run-xxxxxx)",
    )
    _files(p)
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open and attach it")
    p.add_argument("-t", "--tty", action="store_true", help="give the CMD a terminal")
    if run:
        p.add_argument(
            "--rm", action="store_true", help="remove the container when it exits (volumes stay)"
        )
        p.add_argument(
            "-d", "--detach", action="store_true", help="wait until Ready, print the name, leave"
        )
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VAL", help="set an env var"
    )
    p.add_argument("--mode", choices=["bind", "snapshot"], help="the workspace mode")
    p.add_argument("--workdir", metavar="DIR", help="the host directory to use as workspace")
    p.add_argument(
        "--worktree",
        metavar="BRANCH",
        help="use a git worktree of the workspace on BRANCH (made beside the repository)",
    )
    _timeout(p)
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="replaces the spec's command",
    )


def add_imperative_verbs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="make an agent from the project and flags, start it, attach",
        description="Make an agent from the project's defaults (or its declared spec) plus "
        "flags, exactly as apply would, start it and attach: the boot log, then the CMD. "
        "Exits with the CMD's code. Example: clawker run -it --rm --agent dev @",
    )
    _run_flags(p, run=True)
    p.set_defaults(func=_run_verb("cmd_run"))

    c = sub.add_parser("container", help="agent containers: create, start, stop, ls, ...")
    csub = c.add_subparsers(dest="container_verb", metavar="COMMAND", required=True)
    for parent in (sub, csub):
        _container_parsers(parent, top=parent is sub)

    p = sub.add_parser("ps", help="list agent containers (as `container ls`)")
    _ls_flags(p)

    v = sub.add_parser("volume", help="agents' volumes: ls, prune")
    vsub = v.add_subparsers(dest="volume_verb", metavar="COMMAND", required=True)
    p = vsub.add_parser("ls", help="each volume with its agent and whether a container uses it")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_container_verb("cmd_volume_ls"))
    p = vsub.add_parser(
        "prune",
        help="remove volumes whose agent has no container (config/history only with --all)",
        description="Remove the volumes of agents that have no container. Config and history "
        "volumes hold logins, sessions and shell history: they are kept unless --all, and "
        "then named in the prompt.",
    )
    p.add_argument("--all", action="store_true", help="include config and history volumes")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=_container_verb("cmd_volume_prune"))

    p = sub.add_parser(
        "cp",
        help="copy between an agent and the host (how work leaves a snapshot agent)",
        description="clawker cp AGENT:PATH HOST_PATH, or clawker cp HOST_PATH AGENT:PATH.",
    )
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    _files(p)
    p.set_defaults(func=_container_verb("cmd_cp"))


def _ls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="stopped containers too")
    p.add_argument("--project", metavar="P", help="only this project's agents")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_container_verb("cmd_ps"))


def _container_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], *, top: bool
) -> None:
    if not top:
        p = sub.add_parser("ls", help="list agent containers")
        _ls_flags(p)
    p = sub.add_parser(
        "create",
        help="make an agent from the project and flags, without starting it",
        description="As run, but the container is only created (start it with `start -a -i`).",
    )
    _run_flags(p, run=False)
    p.set_defaults(func=_run_verb("cmd_create"), rm=False, detach=False)

    p = sub.add_parser("start", help="start an agent's container (-a -i: attach, as run -it)")
    _agent_arg(p)
    _files(p)
    p.add_argument("-a", "--attach", action="store_true", help="attach: boot log, then the CMD")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    _timeout(p)
    p.set_defaults(func=_run_verb("cmd_start"))

    p = sub.add_parser("attach", help="attach to a running agent's CMD (detach: ctrl-p ctrl-q)")
    _agent_arg(p)
    _files(p)
    p.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    p.set_defaults(func=_run_verb("cmd_attach"))

    p = sub.add_parser("exec", help="run a command in a running agent (as claude by default)")
    _agent_arg(p)
    _files(p)
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("-t", "--tty", action="store_true", help="give it a terminal")
    p.add_argument("-u", "--user", default="claude", help="user (default claude)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VAL")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    p.set_defaults(func=_run_verb("cmd_exec"))

    p = sub.add_parser("logs", help="an agent container's output (--clawkerd: clawkerd's log)")
    _agent_arg(p)
    _files(p, short=False)
    p.add_argument("-f", "--follow", action="store_true", help="keep following")
    p.add_argument("--since", metavar="WHEN", help="seconds since the epoch, or 10m, 2h, ...")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument(
        "--clawkerd", action="store_true", help="render clawkerd's JSON log as lines instead"
    )
    p.set_defaults(func=_container_verb("cmd_logs"))

    p = sub.add_parser("stop", help="stop agents' containers")
    _agent_arg(p, many=True)
    _files(p)
    p.add_argument("-t", "--time", type=int, default=10, metavar="S", help="seconds before kill")
    p.set_defaults(func=_container_verb("cmd_stop"))

    p = sub.add_parser("restart", help="restart agents' containers and wait until Ready")
    _agent_arg(p, many=True)
    _files(p)
    p.add_argument("-t", "--time", type=int, default=10, metavar="S", help="seconds before kill")
    _timeout(p)
    p.set_defaults(func=_container_verb("cmd_restart"))

    p = sub.add_parser("rm", help="remove agents' containers (volumes stay unless --volumes)")
    _agent_arg(p, many=True)
    _files(p, short=False)
    p.add_argument("-f", "--force", action="store_true", help="remove running ones too")
    p.add_argument("--volumes", action="store_true", help="also remove the agents' volumes")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=_container_verb("cmd_rm"))
