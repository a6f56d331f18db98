"""`clawker verify [--agent NAME]`: the firewall's self-test inside each live agent.

The control plane runs the probes (reconciler/controlplane/verify.py) against targets it sets up
on this machine; this module asks for them and prints PASS/ESCAPE per probe. Exit 0 only when
nothing escaped.
"""

# The control plane's client loads when the verb runs, not at start-up.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.style import Style, fail_mark, ok_mark
from cli.table import render_table

__all__ = ["add_verify_verb", "verify_rows"]

EXIT_OK, EXIT_FAIL = 0, 1
VERIFY_TIMEOUT_SECONDS = 300.0  # a few seconds per agent; far more than that means trouble


def verify_rows(results: list[dict[str, Any]], style: Style) -> list[list[str]]:
    colors = {"PASS": "green", "ESCAPE": "red", "SKIP": "dim"}
    return [
        [r["agent"], r["probe"], style(r["verdict"], colors.get(r["verdict"], "")), r["detail"]]
        for r in results
    ]


def cmd_verify(args: argparse.Namespace) -> int:
    from reconciler.controlplane import lifecycle
    from reconciler.controlplane.api.client import ControlPlaneClient, ControlPlaneNotRunningError
    from reconciler.controlplane.paths import StatePaths

    paths = StatePaths(args.settings.state_dir)
    client = ControlPlaneClient(paths.socket, timeout=VERIFY_TIMEOUT_SECONDS)
    try:
        client.check_agreement(args.settings.agreement())
    except ControlPlaneNotRunningError:
        raise lifecycle.ControlPlaneError(
            "the control plane is not running (it runs the probes); "
            "start it with `clawker controlplane up`"
        ) from None
    results = client.verify(args.agent or "")
    escapes = [r for r in results if r["verdict"] == "ESCAPE"]
    if args.output == "json":
        print(json.dumps(results, indent=2), flush=True)
        return EXIT_FAIL if escapes else EXIT_OK
    style = Style(sys.stdout)
    if not results:
        print("No live agents to verify.", flush=True)
        return EXIT_OK
    print(render_table(("AGENT", "PROBE", "RESULT", "DETAIL"), verify_rows(results, style)))
    agents = len({r["container"] for r in results})
    if escapes:
        print(f"{fail_mark(style)} {len(escapes)} escape(s) in {agents} agent(s)", flush=True)
        return EXIT_FAIL
    print(f"{ok_mark(style)} no escapes in {agents} agent(s)", flush=True)
    return EXIT_OK


def add_verify_verb(sub: Any) -> None:
    """`clawker verify` under the top-level subparsers `sub`."""
    p = sub.add_parser(
        "verify",
        help="try every known way out from inside each live agent: PASS or ESCAPE per probe",
        description="Runs a self-test inside each live agent (as root there): a direct IP, an "
        "unlisted name, Docker's own resolver, packet, raw and ping sockets, IPv6 and "
        "v4-mapped IPv6, DNS over TCP, the gateway and a peer agent, against targets the "
        "control plane sets up on this machine. No probe can send a packet off the machine, "
        "even when the firewall is broken (docs/firewall.md). Exit 0 only with no escapes.",
    )
    p.add_argument("--agent", metavar="NAME", help="project/agent, or a unique agent name")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_verify)
