"""The control plane's half of the firewall: install the programs once, enrol every container
start, run the resolver, and apply each agent's policy (allowlist, disable, bypass).

The kernel holds the decisions (pinned maps, see bpf/); this class only writes them. What must
survive a restart of the control plane is in the kernel (enrolments, allowed addresses, a
bypass deadline on CLOCK_BOOTTIME, which the programs compare themselves) or in the registry
(each agent's allowlist, disable flag and bypass deadline, also on CLOCK_BOOTTIME with the boot's
id, re-applied on the next enrolment of the same boot).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bpf.libbpf import BpfError
from bpf.loader import Attachment, attach_egress, cgroup2_root, cgroup_id
from bpf.maps import (
    DENIAL_HOOKS,
    PACKET_HOOKS,
    POLICY_DISABLED,
    Denial,
    DenialReader,
    PinnedMaps,
    Policy,
    ip4_key,
    port_from_key,
    port_key,
)
from reconciler import naming
from reconciler.errors import ClawkerError
from reconciler.firewall.allowlist import agent_id, normalise_domain
from reconciler.firewall.journal import DENIED, FirewallJournal
from reconciler.firewall.resolver import (
    MIN_TTL,
    SUBDOMAIN_LIMIT,
    Answerer,
    Asker,
    DnsResolver,
    Resolution,
    SubdomainThrottle,
    Upstream,
    host_upstream,
)
from reconciler.firewall.state import (
    MAX_BYPASS_SECONDS,
    AgentFirewall,
    BootInstant,
    FirewallStore,
    boot_now,
    bypass_seconds,
)
from reconciler.settings import Settings

__all__ = [
    "PIN_DIR_DEFAULT",
    "AgentFirewall",
    "Enrolment",
    "Firewall",
    "FirewallConfig",
    "FirewallError",
    "FirewallStore",
    "monotonic_ns",
]

log = logging.getLogger("clawker.firewall")

PIN_DIR_DEFAULT = "/sys/fs/bpf/clawker"


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() reads."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


_U64_NEVER = (1 << 64) - 1


def kernel_deadline(seconds: float) -> int:
    """A CLOCK_BOOTTIME deadline in ns for the policy map: saturated, never wrapped past 2^64."""
    if not seconds > 0:  # also NaN
        return 0
    ns = seconds * 1e9
    return _U64_NEVER if ns >= _U64_NEVER else int(ns)


_FAMILIES = {1: "unix", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet"}
_TYPES = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket"}


def _protocol(denial: Denial) -> str:
    """`tcp`/`udp` for a refused connect, datagram or packet, `socket <family>/<type>/<proto>`
    for a refused socket (or a frame of a packet socket), `setsockopt <level>/<name>` for a
    refused routing header or IP option."""
    if denial.hook == 6:
        return f"setsockopt {denial.type}/{denial.protocol}"
    if denial.hook not in (5, 8) and denial.type in (1, 2):
        return "tcp" if denial.type == 1 else "udp"
    if denial.hook == 8 and denial.family in (0, 2, 10) and denial.type in (1, 2):
        return "tcp" if denial.type == 1 else "udp"
    family = _FAMILIES.get(denial.family, str(denial.family))
    return f"socket {family}/{_TYPES.get(denial.type, str(denial.type))}/{denial.protocol}"


class FirewallError(ClawkerError):
    """The firewall cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class FirewallConfig:
    cgroup_parent: str  # as given to Docker: "/clawker"
    pin_dir: Path
    upstream: tuple[str, int]
    dns_port: int = 0  # 0: a free port per resolver, written into each enrolment
    object_path: Path | None = None
    subdomain_limit: int = SUBDOMAIN_LIMIT  # new names per leading-dot entry per minute

    network: str = naming.NETWORK_NAME_DEFAULT

    @classmethod
    def from_settings(cls, settings: Settings) -> FirewallConfig:
        return cls(
            cgroup_parent=settings.cgroup_parent,
            pin_dir=settings.bpf_pin_dir,
            upstream=host_upstream(settings.dns_upstream),
            dns_port=settings.dns_port,
            object_path=settings.bpf_object,
            network=settings.network,
            subdomain_limit=settings.dns_subdomain_limit,
        )


@dataclass(frozen=True)
class Enrolment:
    """One container start, admitted to the firewall."""

    container_id: str
    agent_key: str
    cgroup_id: int
    cgroup: str
    address: str  # the container's address on the agent network: how the resolver knows it
    resolver: str  # ip:port the container's DNS is redirected to
    enrolled_at: float


class Firewall:
    def __init__(
        self,
        config: FirewallConfig,
        store: FirewallStore,
        *,
        clock: Callable[[], float] = time.time,
        boot_clock: Callable[[], BootInstant] = boot_now,
    ) -> None:
        self.config = config
        self._store = store
        self._clock = clock
        self._boot_clock = boot_clock
        self._lock = threading.RLock()
        self._maps: PinnedMaps | None = None
        self.attachment: Attachment | None = None
        self._cgroup_root = Path("/")
        self._resolvers: dict[str, DnsResolver] = {}
        self._enrolments: dict[str, Enrolment] = {}  # container id -> its current start
        self._by_address: dict[str, str] = {}  # container address -> container id
        self._states: dict[str, AgentFirewall] = {}
        self.journal = FirewallJournal()  # what was refused, for `clawker firewall log`
        self._denials: DenialReader | None = None
        self._agent_keys: dict[int, str] = {}  # agent id -> key, for the kernel's denials
        self._denial_thread: threading.Thread | None = None
        self._stop_denials = threading.Event()
        self._throttle = SubdomainThrottle(config.subdomain_limit)  # shared by all resolvers

    # -- install -----------------------------------------------------------------------------
    @property
    def parent(self) -> Path:
        """The cgroup v2 directory every agent container is created under."""
        return self._cgroup_root / self.config.cgroup_parent.strip("/")

    def install(self) -> Attachment:
        """Attach the programs to the parent cgroup (idempotent) and open the pinned maps."""
        try:
            self._cgroup_root = cgroup2_root()
            self.attachment = attach_egress(
                self.parent, self.config.pin_dir, self.config.object_path
            )
            self._maps = PinnedMaps(self.config.pin_dir)
            self._start_denial_reader()
        except (BpfError, OSError) as exc:
            raise FirewallError(f"cannot install the egress firewall: {exc}") from exc
        log.info(
            "firewall on cgroup %s (pins %s): %s%s",
            self.parent,
            self.config.pin_dir,
            ", ".join(f"{h} {s}" for h, s in self.attachment.programs.items()),
            "; maps replaced (new layout)" if self.attachment.maps_replaced else "",
        )
        return self.attachment

    def _start_denial_reader(self) -> None:
        """Journal what the kernel refuses, from the programs' ring buffer (a thread)."""
        if self._denials is not None:
            return
        self._denials = DenialReader(self.config.pin_dir, self._journal_denial)
        reader, stop = self._denials, self._stop_denials

        def pump() -> None:
            while not stop.is_set():
                try:
                    reader.poll(200)
                except BpfError as exc:
                    log.warning("reading the firewall's denials failed: %s", exc)
                    stop.wait(1.0)

        self._denial_thread = threading.Thread(target=pump, name="fw-denials", daemon=True)
        self._denial_thread.start()

    def _journal_denial(self, denial: Denial) -> None:
        agent = ""
        if denial.agent_id:  # 0: a cgroup nobody enrolled
            if denial.agent_id not in self._agent_keys:  # a new agent: look again, once
                self._agent_keys = {agent_id(key): key for key in self.known_agents()}
            agent = self._agent_keys.get(denial.agent_id, "")
        self.journal.add(
            agent,
            DENIED,
            address=denial.address,
            port=port_from_key(denial.port) if denial.address else 0,
            protocol=_protocol(denial),
            hook=DENIAL_HOOKS.get(denial.hook, str(denial.hook)),
            uid=-1 if denial.hook in PACKET_HOOKS else denial.uid,
            command=denial.comm.decode(errors="replace"),
        )

    def close(self) -> None:
        self._stop_denials.set()
        if self._denial_thread is not None:
            self._denial_thread.join(timeout=2.0)
            self._denial_thread = None
        if self._denials is not None:
            self._denials.close()
            self._denials = None
        with self._lock:
            for resolver in self._resolvers.values():
                resolver.stop()
            self._resolvers.clear()
            if self._maps is not None:
                self._maps.close()
                self._maps = None

    @property
    def maps(self) -> PinnedMaps:
        if self._maps is None:
            raise FirewallError("the firewall is not installed")
        return self._maps

    # -- policy state ------------------------------------------------------------------------
    def state(self, agent_key: str, default_domains: Iterable[str] = ()) -> AgentFirewall:
        """The agent's policy; the first time, seeded from the spec's allowlist and stored."""
        with self._lock:
            if agent_key in self._states:
                return self._states[agent_key]
            found = self._store.firewall(agent_key)
            if found is None:
                domains = tuple(sorted({normalise_domain(d) for d in default_domains}))
                found = AgentFirewall(agent_key, domains)
                self._store.put_firewall(found)
            self._states[agent_key] = found
            return found

    def _save(self, state: AgentFirewall) -> AgentFirewall:
        with self._lock:
            self._store.put_firewall(state)
            self._states[state.agent_key] = state
        return state

    def enrolments(self) -> list[Enrolment]:
        """The container starts enrolled now (one per live container)."""
        with self._lock:
            return list(self._enrolments.values())

    def known_agents(self) -> list[str]:
        with self._lock:
            keys = {s.agent_key for s in self._store.firewalls()}
            keys |= {e.agent_key for e in self._enrolments.values()}
        return sorted(keys)

    def _policy(self, state: AgentFirewall, resolver: tuple[str, int] | None) -> Policy:
        bypass = 0
        now = self._boot_clock()
        left = state.bypass_left(now)
        if left > 0:
            # Capped again here: a deadline stored by a clawker without the cap must not linger.
            bypass = kernel_deadline(now.seconds + min(left, MAX_BYPASS_SECONDS))
        return Policy(
            agent_id=agent_id(state.agent_key),
            bypass_until=bypass,
            dns_ip4=ip4_key(resolver[0]) if resolver else 0,
            dns_port=port_key(resolver[1]) if resolver else 0,
            flags=POLICY_DISABLED if state.disabled else 0,
        )

    def _rewrite_policies(self, state: AgentFirewall) -> int:
        """Apply a changed policy to every enrolled cgroup of the agent (resolver unchanged)."""
        aid = agent_id(state.agent_key)
        changed = 0
        for cgroup, current in self.maps.policies().items():
            if current.agent_id != aid:
                continue
            fresh = self._policy(state, None)
            fresh.dns_ip4, fresh.dns_port = current.dns_ip4, current.dns_port
            self.maps.put_policy(cgroup, fresh)
            changed += 1
        return changed

    # -- enrolment ---------------------------------------------------------------------------
    def enrol(
        self,
        container_id: str,
        agent_key: str,
        *,
        pid: int,
        address: str,
        gateway: str,
        domains: Iterable[str] = (),
    ) -> Enrolment:
        """Admit the container's current cgroup: its traffic is filtered as `agent_key`'s.

        `domains` seeds the agent's allowlist the first time the agent is seen."""
        if not address or not gateway:
            raise FirewallError(
                f"container {container_id[:12]} has no address on the agent network "
                f"{self.config.network}; its DNS cannot be redirected"
            )
        cgroup = self._container_cgroup(container_id, pid)
        cid = cgroup_id(cgroup)
        resolver = self._resolver_for(gateway)
        state = self.state(agent_key, domains)
        policy = self._policy(state, (gateway, resolver.port))
        with self._lock:
            self.maps.ensure_counters(policy.agent_id)
            self.maps.put_policy(cid, policy)
            enrolment = Enrolment(
                container_id,
                agent_key,
                cid,
                str(cgroup),
                address,
                f"{gateway}:{resolver.port}",
                self._clock(),
            )
            previous = self._enrolments.get(container_id)
            if previous is not None:
                self._by_address.pop(previous.address, None)
            if previous is None or previous.cgroup_id != cid:
                log.info("%s %s: enrolled cgroup %d", agent_key, container_id[:12], cid)
            self._enrolments[container_id] = enrolment
            self._by_address[address] = container_id
        self.remove_stale()
        return enrolment

    def is_enrolled(self, container_id: str, pid: int) -> bool:
        """Whether the kernel's policy map holds the cgroup this container runs in now (read
        from /proc: a restart makes a new cgroup, and an older start's enrolment does not count)."""
        try:
            cid = cgroup_id(self._container_cgroup(container_id, pid))
        except (FirewallError, OSError):
            return False
        return cid in self.maps.policies()

    def enrolled_containers(self, container_ids: Iterable[str]) -> set[str]:
        """Which of these containers run now in a cgroup the kernel's policy map holds: one
        listing of the parent cgroup and one read of the map for all of them, no Docker call
        and no /proc read per container (`get agents` asks about every agent at once).

        A running container's cgroup is the directory under the parent whose name carries its
        full id (Docker's `<id>`, or `docker-<id>.scope` with systemd); a restart makes a new
        one and a stopped container has none, so an older start's enrolment does not count,
        as with `is_enrolled`."""
        wanted = set(container_ids)
        if not wanted:
            return set()
        try:
            policies = self.maps.policies()
            entries = [e for e in os.scandir(self.parent) if e.is_dir(follow_symlinks=False)]
        except (FirewallError, OSError):
            return set()
        enrolled = set()
        for entry in entries:
            for cid in wanted:
                if cid in entry.name:
                    try:
                        if cgroup_id(Path(entry.path)) in policies:
                            enrolled.add(cid)
                    except OSError:  # gone since the listing: stopped
                        pass
                    break
        return enrolled

    def _container_cgroup(self, container_id: str, pid: int) -> Path:
        """The cgroup v2 directory of the container's first process, checked to be under ours."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError as exc:
            raise FirewallError(
                f"container {container_id[:12]}: its process {pid} is gone ({exc})"
            ) from exc
        relative = next((line[3:] for line in lines if line.startswith("0::")), None)
        if relative is None:
            raise FirewallError(f"container {container_id[:12]} has no cgroup v2 membership")
        path = self._cgroup_root / relative.lstrip("/")
        if not path.is_relative_to(self.parent) or container_id[:12] not in path.name:
            raise FirewallError(
                f"container {container_id[:12]} runs in cgroup {relative}, not under the "
                f"firewall's {self.config.cgroup_parent}: it would be unfiltered, so it is not "
                "admitted; recreate it with `clawker apply` (containers are created under "
                f"{self.config.cgroup_parent})"
            )
        return path

    def _resolver_for(self, gateway: str) -> DnsResolver:
        with self._lock:
            resolver = self._resolvers.get(gateway)
            if resolver is None:
                answerer = Answerer(
                    identify=self.identify,
                    upstream=Upstream(self.config.upstream),
                    record=self.record,
                    journal=self.journal,
                    throttle=self._throttle,
                )
                try:
                    resolver = DnsResolver(gateway, answerer, port=self.config.dns_port)
                except OSError as exc:
                    raise FirewallError(f"cannot start the DNS resolver: {exc}") from exc
                resolver.start()
                self._resolvers[gateway] = resolver
            return resolver

    def remove_stale(self) -> int:
        """Forget enrolments whose cgroup no longer exists (the container stopped or went).

        The enrolments are read *before* the live cgroups are listed: an entry is written only
        after its cgroup exists, so one missing from the later listing is really gone, even
        while other threads or control planes enrol new containers."""
        with self._lock:
            enrolled = list(self.maps.policies())
            remembered = list(self._enrolments.items())
        try:
            live = {cgroup_id(entry) for entry in self.parent.iterdir() if entry.is_dir()}
        except OSError as exc:  # not knowing what is live is no reason to forget anything
            log.warning("cannot list %s: %s", self.parent, exc)
            return 0
        removed = 0
        with self._lock:
            for cgroup in enrolled:
                if cgroup not in live and self.maps.delete_policy(cgroup):
                    removed += 1
            for cid, enrolment in remembered:
                if enrolment.cgroup_id not in live and self._enrolments.get(cid) == enrolment:
                    del self._enrolments[cid]
                    if self._by_address.get(enrolment.address) == cid:
                        del self._by_address[enrolment.address]
        return removed

    # -- the resolver's callbacks -----------------------------------------------------------
    def identify(self, address: str) -> Asker | None:
        with self._lock:
            cid = self._by_address.get(address)
            enrolment = self._enrolments.get(cid) if cid else None
        if enrolment is None:
            return None
        state = self.state(enrolment.agent_key)
        return Asker(state.agent_key, agent_id(state.agent_key), state.domains)

    def record(self, asker: Asker, resolution: Resolution) -> None:
        now = monotonic_ns()
        for address, ttl in resolution.addresses:
            self.maps.allow(asker.agent_id, address, now + max(ttl, MIN_TTL) * 1_000_000_000)
        log.info(
            "%s resolved %s: allowed %s",
            asker.agent_key,
            resolution.name,
            ", ".join(a for a, _ in resolution.addresses),
        )

    # -- per-agent verbs ---------------------------------------------------------------------
    def resolve_agent(self, name: str) -> str:
        """`project/agent`, or a bare agent name when exactly one project has it."""
        known = self.known_agents()
        if name in known:
            return name
        matches = [k for k in known if k.split("/", 1)[1] == name] if "/" not in name else []
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise FirewallError(f"agent {name!r} is ambiguous: {', '.join(matches)}; use one")
        hint = f"; known agents: {', '.join(known)}" if known else ""
        raise FirewallError(f"the control plane knows no agent {name!r}{hint}")

    def set_allowlist(self, agent_key: str, domains: Iterable[str]) -> AgentFirewall:
        """Replace the allowlist. Addresses of removed domains are revoked (all of the agent's:
        they are re-resolved on demand), so a narrowing takes effect at once."""
        state = self.state(agent_key, domains)
        wanted = tuple(sorted({normalise_domain(d) for d in domains}))
        revoked = set(state.domains) - set(wanted)
        state = self._save(replace(state, domains=wanted))
        if revoked:
            self.maps.revoke(agent_id(agent_key))
        return state

    def forget(self, agent_key: str) -> None:
        """A deleted agent: its stored policy and the addresses it was allowed go, so it is no
        longer a known agent (`firewall status --agent dev` is not ambiguous with it)."""
        with self._lock:
            self._states.pop(agent_key, None)
            self._store.forget_firewall(agent_key)
            if self._maps is not None:
                self._maps.revoke(agent_id(agent_key))

    def add_domains(self, agent_key: str, domains: Iterable[str]) -> AgentFirewall:
        state = self.state(agent_key)
        return self.set_allowlist(agent_key, (*state.domains, *domains))

    def remove_domains(self, agent_key: str, domains: Iterable[str]) -> AgentFirewall:
        state = self.state(agent_key)
        gone = {normalise_domain(d) for d in domains}
        missing = sorted(gone - set(state.domains))
        if missing:
            raise FirewallError(f"{agent_key} does not allow {', '.join(missing)}")
        return self.set_allowlist(agent_key, [d for d in state.domains if d not in gone])

    def set_disabled(self, agent_key: str, disabled: bool) -> AgentFirewall:
        state = self._save(replace(self.state(agent_key), disabled=disabled))
        self._rewrite_policies(state)
        return state

    def bypass(self, agent_key: str, seconds: float) -> AgentFirewall:
        """Let the agent's traffic through unfiltered for `seconds` (0 ends a bypass). The
        kernel ends it on time, whether or not the control plane is still running."""
        try:
            seconds = bypass_seconds(seconds)
        except ValueError as exc:
            raise FirewallError(str(exc)) from exc
        now = self._boot_clock()
        until = now.seconds + seconds if seconds > 0 else 0.0
        state = self._save(
            replace(self.state(agent_key), bypass_until=until, bypass_boot=now.boot_id)
        )
        self._rewrite_policies(state)
        return state

    # -- reporting ---------------------------------------------------------------------------
    def allowlists(self) -> dict[str, list[str]]:
        return {s.agent_key: list(s.domains) for s in self._store.firewalls()}

    def status(self, agent_key: str | None = None) -> dict[str, Any]:
        keys = [agent_key] if agent_key else self.known_agents()
        policies = self.maps.policies()
        now = self._boot_clock()
        mono = monotonic_ns()
        agents = []
        for key in keys:
            state = self.state(key)
            aid = agent_id(key)
            counters = self.maps.counters(aid)
            with self._lock:
                enrolled = [e for e in self._enrolments.values() if e.agent_key == key]
            mine = {c for c, p in policies.items() if p.agent_id == aid}
            addresses = self.maps.allowed(aid)
            dns = {"allowed": 0, "denied": 0}
            for resolver in list(self._resolvers.values()):
                for k, v in resolver.answerer.answered.get(key, {}).items():
                    dns[k] += v
            agents.append(
                {
                    "agent": key,
                    "enabled": not state.disabled,
                    "bypassSeconds": round(state.bypass_left(now), 1),
                    "enrolled": [asdict(e) for e in enrolled],
                    "enrolledCgroups": sorted(mine),
                    "allowed": counters.allowed,
                    "denied": counters.denied,
                    "domains": len(state.domains),
                    "addresses": sum(1 for exp in addresses.values() if exp > mono),
                    "dns": dns,
                }
            )
        attachment = self.attachment
        return {
            "cgroup": str(self.parent),
            "pinDir": str(self.config.pin_dir),
            "programs": dict(attachment.programs) if attachment else {},
            "upstream": f"{self.config.upstream[0]}:{self.config.upstream[1]}",
            "resolvers": sorted(f"{r.address}:{r.port}" for r in self._resolvers.values()),
            "unenrolledDenied": self.maps.unenrolled().denied,
            "agents": agents,
        }

    def listing(self, agent_key: str) -> dict[str, Any]:
        state = self.state(agent_key)
        mono = monotonic_ns()
        addresses = {
            address: round((expires - mono) / 1e9, 1)
            for address, expires in sorted(self.maps.allowed(agent_id(agent_key)).items())
            if expires > mono
        }
        return {
            "agent": agent_key,
            "domains": list(state.domains),
            "addresses": addresses,  # address -> seconds it stays allowed
        }

    def sweep(self) -> int:
        """Drop expired addresses and stale enrolments (periodic housekeeping)."""
        return self.maps.sweep(monotonic_ns()) + self.remove_stale()
