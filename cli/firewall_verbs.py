"""`clawker firewall status|list|add|remove|enable|disable|bypass|log|suggest`: parsing and
rendering only.

Every verb is one control plane call; the control plane owns the firewall's state. Registered
by cli.main with `add_firewall_verbs(sub)`; the control plane's client and the spec language
load when a verb runs, not at start-up.
"""

# Each verb imports what it uses inside its handler: registering them loads nothing heavy.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cli.durations import bypass_duration, format_duration, parse_duration
from cli.style import Style, ok_mark
from cli.table import render_table

if TYPE_CHECKING:  # the client loads only when a verb runs (start-up stays cheap)
    from reconciler.controlplane.api.client import ControlPlaneClient

__all__ = [
    "add_firewall_verbs",
    "format_duration",
    "log_line",
    "parse_duration",
    "render_suggestion",
    "status_rows",
]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
STATUS_HEADERS = (
    "AGENT",
    "ENROLLED",
    "FILTER",
    "ALLOWED",
    "DENIED",
    "DOMAINS",
    "ADDRESSES",
    "DNS OK/NX",
)


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _filter_state(agent: dict[str, Any]) -> str:
    if not agent["enabled"]:
        return "disabled"
    if agent["bypassSeconds"] > 0:
        return f"bypass {format_duration(agent['bypassSeconds'])}"
    return "on"


def status_rows(status: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in status["agents"]:
        cgroups = len(a["enrolledCgroups"])
        rows.append(
            [
                a["agent"],
                f"yes ({cgroups})" if cgroups else "no",
                _filter_state(a),
                str(a["allowed"]),
                str(a["denied"]),
                str(a["domains"]),
                str(a["addresses"]),
                f"{a['dns']['allowed']}/{a['dns']['denied']}",
            ]
        )
    return rows


@contextlib.contextmanager
def _controlplane(args: argparse.Namespace) -> Iterator[ControlPlaneClient]:
    """The typed client of the CP this CLI's settings name, checked to share them."""
    from reconciler.controlplane import lifecycle
    from reconciler.controlplane.api.client import ApiError, ControlPlaneNotRunningError
    from reconciler.controlplane.paths import StatePaths

    client = lifecycle.client(StatePaths(args.settings.state_dir))
    try:
        client.check_agreement(args.settings.agreement())
    except ControlPlaneNotRunningError:
        raise lifecycle.ControlPlaneError(
            "the control plane is not running (it owns the firewall); "
            "start it with `clawker controlplane up`"
        ) from None
    try:
        yield client
    except ApiError as exc:  # the control plane names the exception type; the user needs less
        raise ApiError(str(exc).removeprefix("FirewallError: ")) from None


def _domains(values: Sequence[str]) -> list[str] | str:
    """The normalised domains, or the first error in the spec language's words."""
    from pydantic import ValidationError

    from specs.models import FirewallSpec

    try:
        return list(FirewallSpec.model_validate({"add_domains": list(values)}).add_domains)
    except ValidationError as exc:
        first = exc.errors()[0]
        hint = (first.get("ctx") or {}).get("hint")
        return f"{first['msg']}" + (f"; {hint}" if hint else "")


def cmd_status(args: argparse.Namespace) -> int:
    with _controlplane(args) as cp:
        status = cp.firewall_status(args.agent or "")
    if args.output == "json":
        _out(json.dumps(status, indent=2))
        return EXIT_OK
    style = Style(sys.stdout)
    _out(
        f"{ok_mark(style)} egress firewall on cgroup {status['cgroup']} "
        f"(pins {status['pinDir']}; upstream DNS {status['upstream']})"
    )
    if status["agents"]:
        _out(render_table(STATUS_HEADERS, status_rows(status)))
    else:
        _out("No agents enrolled yet.")
    if status["unenrolledDenied"]:
        _out(f"Denied from cgroups nobody enrolled: {status['unenrolledDenied']}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with _controlplane(args) as cp:
        listing = cp.firewall_list(args.agent or "")
    if args.output == "json":
        _out(json.dumps(listing, indent=2))
        return EXIT_OK
    style = Style(sys.stdout)
    for i, entry in enumerate(listing):
        if i:
            _out()
        _out(style(f"agent {entry['agent']}", "bold"))
        for domain in entry["domains"]:
            scope = style(" (and subdomains)", "dim") if domain.startswith(".") else ""
            _out(f"  allow    {domain.lstrip('.')}{scope}")
        if not entry["domains"]:
            _out(f"  {style('no domains: every name is NXDOMAIN', 'dim')}")
        for address, left in entry["addresses"].items():
            _out(f"  resolved {address} {style(f'(for {format_duration(left)})', 'dim')}")
    if not listing:
        _out("No agents known to the control plane.")
    return EXIT_OK


def cmd_change(args: argparse.Namespace) -> int:
    style = Style(sys.stdout)
    params: dict[str, Any] = {}
    verb = args.fw_verb
    if verb in ("add", "remove"):
        domains = _domains(args.domains)
        if isinstance(domains, str):
            _err(f"error: {domains}")
            return EXIT_USAGE
        params["domains"] = domains
    if verb == "bypass":
        params["seconds"] = args.duration  # bypass_duration parsed and bounded it
    with _controlplane(args) as cp:
        result = cp.firewall_change(verb, args.agent, **params)
    agent = result["agent"]
    match verb:
        case "add":
            what = f"now allows {', '.join(params['domains'])} ({result['domains']} domains)"
        case "remove":
            what = f"no longer allows {', '.join(params['domains'])} ({result['domains']} domains)"
        case "enable":
            what = "is filtered again"
        case "disable":
            what = "is NOT filtered until `clawker firewall enable`"
        case _:
            left = result["bypassSeconds"]
            what = f"bypasses the firewall for {format_duration(left)}" if left else "is filtered"
    mark = style("!", "yellow") if verb == "disable" else ok_mark(style)
    _out(f"{mark} {agent} {what}")
    if verb in ("add", "remove"):
        _out(style("  until the next `clawker apply`, which restores the spec's allowlist", "dim"))
    return EXIT_OK


def log_line(entry: dict[str, Any], style: Style) -> str:
    """One journal entry as a line: time, kind, then what was refused and by whom."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["at"]))
    kind = entry["kind"]
    if kind == "denied":
        target = f"{entry['address']}:{entry['port']} {entry['protocol']}"
        if not entry["address"]:
            target = entry["protocol"]  # a refused socket: no destination yet
        who = f"uid {entry['uid']} {entry['command']}".rstrip() if entry["uid"] >= 0 else ""
        what = f"{target}  {style(entry['hook'], 'dim')}  {who}"
    else:
        what = f"{entry['name']} ({entry['qtype']})"
    color = "red" if kind == "denied" else "yellow"
    return f"{style(stamp, 'dim')}  {style(f'{kind:<9}', color)}  {what}"


def cmd_log(args: argparse.Namespace) -> int:
    style = Style(sys.stdout)
    after = 0
    printed_json: list[dict[str, Any]] = []
    try:
        while True:
            with _controlplane(args) as cp:
                result = cp.firewall_log(args.agent, after)
            for entry in result["entries"]:
                after = max(after, entry["seq"])
                if args.output == "json" and not args.follow:
                    printed_json.append(entry)
                elif args.output == "json":
                    _out(json.dumps(entry))
                else:
                    _out(log_line(entry, style))
            if not args.follow:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        return EXIT_OK
    if args.output == "json" and not args.follow:
        _out(json.dumps(printed_json, indent=2))
    elif not after and not args.follow:
        _out(
            style(f"Nothing refused for {result['agent']} since the control plane started.", "dim")
        )
    return EXIT_OK


def render_suggestion(suggestion: dict[str, Any], style: Style) -> str:
    """The spec change as a diff of `security.firewall.add_domains`, with what it cannot fix
    as comments."""
    lines = [
        style(
            f"# What would allow what {suggestion['agent']} was refused. Review it: an agent "
            "can ask for any name.",
            "dim",
        ),
        "  security:",
        "    firewall:",
        "      add_domains:",
    ]
    lines += [f"        - {d}" for d in suggestion["spec_domains"]]
    for refusal in suggestion["add"]:
        note = style(f"  # NXDOMAIN x{refusal['count']}", "dim")
        lines.append(style(f"+       - {refusal['what']}", "green") + note)
    if not suggestion["add"]:
        lines.append(style("# no refused names: nothing to add", "dim"))
    if suggestion["addresses"]:
        lines.append(
            style(
                "# refused addresses no allowed name resolved to (connecting by "
                "address, or a name resolved elsewhere):",
                "dim",
            )
        )
        for r in suggestion["addresses"]:
            by = f" by {r['detail']}" if r["detail"] else ""
            lines.append(style(f"#   {r['what']} x{r['count']}{by}", "dim"))
    if suggestion["throttled"]:
        lines.append(
            style(
                "# throttled (already allowed, over the per-minute cap for new "
                "subdomains; an exact entry is not capped):",
                "dim",
            )
        )
        lines += [style(f"#   {r['what']} x{r['count']}", "dim") for r in suggestion["throttled"]]
    if suggestion["sockets"]:
        lines.append(style("# refused sockets (never allowed):", "dim"))
        lines += [style(f"#   {r['what']} x{r['count']}", "dim") for r in suggestion["sockets"]]
    return "\n".join(lines)


def cmd_suggest(args: argparse.Namespace) -> int:
    with _controlplane(args) as cp:
        suggestion = cp.firewall_suggest(args.agent)
    if args.output == "json":
        _out(json.dumps(suggestion, indent=2))
    else:
        _out(render_suggestion(suggestion, Style(sys.stdout)))
    return EXIT_OK


def add_firewall_verbs(sub: Any) -> None:
    """`clawker firewall ...` under the top-level subparsers `sub`."""
    p = sub.add_parser(
        "firewall",
        help="inspect and change agents' egress firewall",
        description="The egress firewall lets an agent reach only the names on its allowlist "
        "(the harness's built-in domains and the spec's security.firewall.add_domains). "
        "Changes made here last until the next `clawker apply`.",
    )
    fw = p.add_subparsers(dest="fw_verb", metavar="COMMAND", required=True)

    def agent_arg(q: argparse.ArgumentParser, required: bool = True) -> None:
        q.add_argument(
            "--agent",
            required=required,
            metavar="NAME",
            help="project/agent, or the agent's name when only one project has it",
        )

    q = fw.add_parser("status", help="enrolment and allowed/denied counters per agent")
    agent_arg(q, required=False)
    q.add_argument("-o", "--output", choices=["text", "json"], default="text")
    q.set_defaults(func=cmd_status)

    q = fw.add_parser("list", help="an agent's allowlist and the addresses it resolved")
    agent_arg(q, required=False)
    q.add_argument("-o", "--output", choices=["text", "json"], default="text")
    q.set_defaults(func=cmd_list)

    q = fw.add_parser("add", help="allow more domains (a leading dot: apex and subdomains)")
    q.add_argument("domains", nargs="+", metavar="DOMAIN")
    agent_arg(q)
    q.set_defaults(func=cmd_change)

    q = fw.add_parser("remove", help="stop allowing domains (their addresses are revoked)")
    q.add_argument("domains", nargs="+", metavar="DOMAIN")
    agent_arg(q)
    q.set_defaults(func=cmd_change)

    q = fw.add_parser("enable", help="filter the agent again after `disable`")
    agent_arg(q)
    q.set_defaults(func=cmd_change)

    q = fw.add_parser("disable", help="stop filtering the agent until `enable` (persisted)")
    agent_arg(q)
    q.set_defaults(func=cmd_change)

    q = fw.add_parser(
        "bypass",
        help="let the agent's traffic through unfiltered for DURATION (30s, 5m, 1h; 0 ends it)",
        description="The deadline is kept in the kernel and in the control plane's registry: "
        "the bypass ends on time even if the control plane stops or restarts. A bypass lasts "
        "at most 30 days (720h).",
    )
    q.add_argument("duration", metavar="DURATION", type=bypass_duration)
    agent_arg(q)
    q.set_defaults(func=cmd_change)

    q = fw.add_parser(
        "log",
        help="what the firewall refused for an agent, newest last",
        description="Denied connects, datagrams and sockets (address, port, protocol, uid and "
        "command name, from the kernel), names answered NXDOMAIN and throttled queries, since "
        "the control plane started (the newest 1000 per agent).",
    )
    agent_arg(q)
    q.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    q.add_argument("-o", "--output", choices=["text", "json"], default="text")
    q.set_defaults(func=cmd_log)

    q = fw.add_parser(
        "suggest",
        help="the add_domains change that would allow what an agent was refused",
        description="Prints a diff of the spec's security.firewall.add_domains for a person to "
        "review; it changes nothing.",
    )
    agent_arg(q)
    q.add_argument("-o", "--output", choices=["text", "json"], default="text")
    q.set_defaults(func=cmd_suggest)
