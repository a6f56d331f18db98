"""Rendering plans, outcomes and agent status: Terraform's plan shape, kubectl's result lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cli.style import Style, fail_mark, ok_mark
from reconciler.controlplane.runtime_spec import Effect
from reconciler.loop.plan import Action, AgentChange, ChangeKind, FieldChange, Plan

if TYPE_CHECKING:  # what apply and get render: diff loads neither the executor nor converge
    from reconciler.loop.converge import AgentOutcome, AgentStatus
    from reconciler.loop.execute import StepEvent

_SYMBOL = {
    ChangeKind.CREATE: ("+", "green", "will be created"),
    ChangeKind.UPDATE: ("~", "yellow", "will be updated in-place"),
    ChangeKind.REPLACE: ("-/+", "red", "must be replaced"),
    ChangeKind.DELETE: ("-", "red", "will be destroyed"),
}

_VERB = {
    Action.CREATE_NETWORK: "create network",
    Action.CREATE_VOLUME: "create volume",
    Action.CREATE_CONTAINER: "create container",
    Action.COPY_WORKSPACE: "copy workspace into",
    Action.SEED_CONFIG: "seed config volume of",
    Action.START_CONTAINER: "start container",
    Action.STOP_CONTAINER: "stop container",
    Action.REMOVE_CONTAINER: "remove container",
    Action.RENAME_CONTAINER: "rename container",
    Action.REMOVE_VOLUME: "remove volume",
    Action.BUILD_IMAGE: "build image",
    Action.COPY_BOOTSTRAP: "copy bootstrap material into",
    Action.UPDATE_FIREWALL: "update firewall allowlist of",
    Action.UPDATE_RUNTIME: "update control plane runtime of",
}

SENSITIVE = "(sensitive value)"


def _value(change: FieldChange, old: bool, show_secrets: bool) -> str:
    value = change.old if old else change.new
    if value is None:
        return "(absent)"
    if change.sensitive and not show_secrets:
        return SENSITIVE
    return json.dumps(value)


def render_plan(plan: Plan, style: Style, *, show_secrets: bool = False) -> str:
    """Terraform-style text; deterministic for golden tests (with a colourless style)."""
    if plan.empty:
        return "No changes. Docker matches the specs."
    lines = ["clawker will perform the following actions:", ""]
    for step in plan.steps:
        if step.action is Action.CREATE_NETWORK:
            lines += [
                f"  # network {step.target} will be created ({step.cause})",
                f'  {style("+", "green")} network "{step.target}"',
                "",
            ]
        elif step.action is Action.BUILD_IMAGE:
            lines += [
                f"  # image {step.target} will be built ({step.cause})",
                f"  {style('+', 'green')} build image {step.target}"
                + (f" (from {step.base_image})" if step.base_image else ""),
                "",
            ]
    for change in plan.changes:
        if change.kind is ChangeKind.NOOP:
            continue
        lines += _render_change(change, style, show_secrets)
    add, chg, destroy = plan.counts()
    builds = sum(s.action is Action.BUILD_IMAGE for s in plan.steps)
    extra = f" {builds} image{'s' if builds != 1 else ''} to build." if builds else ""
    lines.append(
        style(f"Plan: {add} to add, {chg} to change, {destroy} to destroy.{extra}", "bold")
    )
    return "\n".join(lines)


def _render_change(change: AgentChange, style: Style, show_secrets: bool) -> list[str]:
    symbol, color, verb = _SYMBOL[change.kind]
    if change.kind is ChangeKind.UPDATE and any(f.effect is not Effect.LIVE for f in change.fields):
        verb = "will be updated"  # not all of it in place: some waits for the next start
    why = "; ".join(change.reasons)
    lines = [
        f"  # agent {change.key} {verb}" + (f" ({why})" if why else ""),
        f'{style(symbol.rjust(3), color)} agent "{change.key}"',
    ]
    tilde = style("~", "yellow")
    groups: dict[Effect, list[FieldChange]] = {}
    for f in change.fields:
        if f.effect is Effect.REPLACE:
            forces = style(" # forces replacement", "red")
            lines.append(f"      {tilde} {_field_line(f, show_secrets)}{forces}")
        else:
            groups.setdefault(f.effect, []).append(f)
    for effect in sorted(groups, key=list(Effect).index):
        lines.append(f"      {tilde} {effect.heading}")
        lines += [f"          {tilde} {_field_line(f, show_secrets)}" for f in groups[effect]]
    for res in change.resources:
        sym, _, rest = res.partition(" ")
        col = {"+": "green", "-": "red", "~": "yellow", "-/+": "red"}.get(sym, "")
        lines.append(f"      {style(sym, col) if col else sym} {rest}")
    lines.append("")
    return lines


def _field_line(f: FieldChange, show_secrets: bool) -> str:
    if f.summary:
        return f"{f.path}: {f.summary}"
    return f"{f.path}: {_value(f, True, show_secrets)} -> {_value(f, False, show_secrets)}"


def plan_as_data(plan: Plan, *, show_secrets: bool = False) -> dict[str, Any]:
    add, chg, destroy = plan.counts()

    def field(f: FieldChange) -> dict[str, Any]:
        hide = f.sensitive and not show_secrets
        return {
            "path": f.path,
            "old": SENSITIVE if hide and f.old is not None else f.old,
            "new": SENSITIVE if hide and f.new is not None else f.new,
            "sensitive": f.sensitive,
            "effect": f.effect.heading,
            **({"summary": f.summary} if f.summary else {}),
        }

    return {
        "warnings": list(plan.warnings),
        "changes": [
            {
                "agent": c.key,
                "action": c.kind.value,
                "reasons": list(c.reasons),
                "fields": [field(f) for f in c.fields],
                "resources": list(c.resources),
            }
            for c in plan.changes
        ],
        "steps": [
            {
                "id": s.id,
                "action": s.action.value,
                "resource": f"{s.kind}:{s.target}",
                "cause": s.cause,
                "depends_on": list(s.depends_on),
                "agent": s.agent,
            }
            for s in plan.steps
        ],
        "summary": {"add": add, "change": chg, "destroy": destroy},
    }


def render_event(event: StepEvent, style: Style) -> str | None:
    """One ✓/✗ line per finished step; nothing for a step that has only started."""
    from reconciler.loop.execute import StepStatus  # noqa: PLC0415  # loaded by whoever executes

    step = event.step
    what = f"{_VERB[step.action]} {step.target}"
    if step.action is Action.RENAME_CONTAINER:
        what += f" → {step.new_name}"
    match event.status:
        case StepStatus.DONE:
            return f"  {ok_mark(style)} {what}"
        case StepStatus.FAILED:
            return f"  {fail_mark(style)} {what}: {event.error}"
        case StepStatus.SKIPPED:
            return f"  {style('-', 'dim')} {what}: skipped"
        case StepStatus.ROLLED_BACK:
            return f"  {style('↺', 'yellow')} {what}: undone ({step.kind} removed)"
    return None


def render_outcomes(outcomes: Sequence[AgentOutcome], style: Style) -> str:
    lines = []
    for o in outcomes:
        color = {"failed": "red", "unchanged": "dim", "deleted": "red"}.get(o.outcome, "green")
        line = f"agent/{o.key} {style(o.outcome, color)}"
        if o.detail:
            detail = o.detail.replace("\n", "\n    ")
            line += f"\n    {detail}"
        lines.append(line)
    return "\n".join(lines)


def status_rows(statuses: Sequence[AgentStatus]) -> list[list[str]]:
    def yn(v: bool | None) -> str:
        return "-" if v is None else ("yes" if v else "no")

    return [
        [
            s.project,
            s.name,
            "yes" if s.declared else "no",
            s.state,
            yn(s.up_to_date),
            str(s.ready),
            str(s.firewall_enrolled),
            str(s.initialized),
            ", ".join(s.pending) or "-",
            s.container,
        ]
        for s in statuses
    ]


STATUS_HEADERS = (
    "PROJECT",
    "AGENT",
    "DECLARED",
    "STATE",
    "UP-TO-DATE",
    "READY",
    "ENROLLED",
    "INITIALIZED",
    "PENDING-AT-NEXT-START",
    "CONTAINER",
)


def status_data(statuses: Sequence[AgentStatus]) -> list[dict[str, Any]]:
    return [
        {
            "agent": s.key,
            "project": s.project,
            "name": s.name,
            "desired": {"declared": s.declared, "workspace": s.workspace, "mode": s.mode},
            "observed": {"container": s.container, "id": s.container_id, "state": s.state},
            "upToDate": s.up_to_date,
            "pendingAtNextStart": list(s.pending),
            "conditions": [
                {"type": "Ready", "status": s.ready, "message": s.detail},
                {"type": "FirewallEnrolled", "status": s.firewall_enrolled},
                {"type": "Initialized", "status": s.initialized},
            ],
        }
        for s in statuses
    ]
