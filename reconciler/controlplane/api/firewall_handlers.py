"""The control plane API methods of the firewall (`clawker firewall ...` and apply's step)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from reconciler.controlplane.api.channel import Handler
from reconciler.firewall.enforcement import Firewall
from reconciler.firewall.state import AgentFirewall
from reconciler.firewall.suggest import suggest

__all__ = ["firewall_handlers"]


def _policy(state: AgentFirewall, fw: Firewall) -> dict[str, Any]:
    return fw.status(state.agent_key)["agents"][0]  # type: ignore[no-any-return]


def firewall_handlers(fw: Firewall) -> dict[str, Handler]:
    """`firewall_<verb>` methods; `agent` may be `project/agent` or a unique agent name."""

    def agent(params: dict[str, Any]) -> str:
        return fw.resolve_agent(str(params["agent"]))

    def status(params: dict[str, Any]) -> dict[str, Any]:
        return fw.status(agent(params) if params.get("agent") else None)

    def listing(params: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [agent(params)] if params.get("agent") else fw.known_agents()
        return [fw.listing(k) for k in keys]

    def add(params: dict[str, Any]) -> dict[str, Any]:
        return _policy(fw.add_domains(agent(params), params["domains"]), fw)

    def remove(params: dict[str, Any]) -> dict[str, Any]:
        return _policy(fw.remove_domains(agent(params), params["domains"]), fw)

    def enable(params: dict[str, Any]) -> dict[str, Any]:
        return _policy(fw.set_disabled(agent(params), False), fw)

    def disable(params: dict[str, Any]) -> dict[str, Any]:
        return _policy(fw.set_disabled(agent(params), True), fw)

    def bypass(params: dict[str, Any]) -> dict[str, Any]:
        return _policy(fw.bypass(agent(params), float(params["seconds"])), fw)

    def set_allowlist(params: dict[str, Any]) -> list[str]:
        # apply's UpdateFirewall step: the spec names the agent exactly, known or not yet.
        return list(fw.set_allowlist(str(params["agent"]), params["domains"]).domains)

    def allowlists(_params: dict[str, Any]) -> dict[str, list[str]]:
        return fw.allowlists()

    def journal(params: dict[str, Any]) -> dict[str, Any]:
        # `after`: the last sequence number the caller has seen (a follower's cursor).
        key = agent(params)
        entries = fw.journal.entries(key, int(params.get("after") or 0))
        return {"agent": key, "entries": [e.as_dict() for e in entries]}

    def suggestion(params: dict[str, Any]) -> dict[str, Any]:
        key = agent(params)
        return asdict(suggest(key, fw.state(key).domains, fw.journal.entries(key)))

    return {
        "firewall_status": status,
        "firewall_list": listing,
        "firewall_add": add,
        "firewall_remove": remove,
        "firewall_enable": enable,
        "firewall_disable": disable,
        "firewall_bypass": bypass,
        "firewall_set": set_allowlist,
        "firewall_allowlists": allowlists,
        "firewall_log": journal,
        "firewall_suggest": suggestion,
    }
