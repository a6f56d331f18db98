"""The firewall's pinned maps: ctypes mirrors of the C structs in egress.h, and typed access.

Addresses and ports are kept as the kernel keeps them, in network byte order inside native
integers; `ip4_key()`/`port_key()` convert from the dotted form and back.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import struct
from collections.abc import Callable, Iterator
from ctypes import c_uint16, c_uint32, c_uint64
from pathlib import Path
from typing import TypeVar

from bpf.libbpf import (
    BPF_ANY,
    BPF_NOEXIST,
    RING_BUFFER_SAMPLE_FN,
    BpfError,
    check,
    check_ptr,
    libbpf,
)

__all__ = [
    "DENIAL_HOOKS",
    "MAP_LAYOUTS",
    "PACKET_HOOKS",
    "POLICY_DISABLED",
    "RING_BUFFERS",
    "AllowKey",
    "Counters",
    "Denial",
    "DenialReader",
    "DnsOrigin",
    "PinnedMaps",
    "Policy",
    "WallConfig",
    "ip4_from_key",
    "ip4_key",
    "port_from_key",
    "port_key",
]

POLICY_DISABLED = 0x1


class Policy(ctypes.Structure):
    """`struct policy`: which agent a cgroup is, where its DNS goes, and whether it is filtered."""

    _fields_ = [
        ("agent_id", c_uint64),
        ("bypass_until", c_uint64),  # CLOCK_BOOTTIME ns; 0: no bypass
        ("dns_ip4", c_uint32),
        ("dns_port", c_uint16),
        ("flags", c_uint16),
    ]


class AllowKey(ctypes.Structure):
    _fields_ = [("agent_id", c_uint64), ("ip4", c_uint32), ("pad", c_uint32)]


class Counters(ctypes.Structure):
    _fields_ = [("allowed", c_uint64), ("denied", c_uint64)]


class DnsOrigin(ctypes.Structure):
    _fields_ = [
        ("orig_ip4", c_uint32),
        ("orig_port", c_uint32),
        ("dns_ip4", c_uint32),
        ("dns_port", c_uint32),
    ]


class Denial(ctypes.Structure):
    """`struct denial`: one operation the programs refused (the `denials` ring buffer)."""

    _fields_ = [
        ("cgroup_id", c_uint64),
        ("agent_id", c_uint64),
        ("ip4", c_uint32),
        ("ip6", c_uint32 * 4),
        ("port", c_uint16),
        ("hook", ctypes.c_uint8),
        ("family", ctypes.c_uint8),
        ("type", c_uint32),
        ("protocol", c_uint32),
        ("uid", c_uint32),
        ("pad", c_uint32),
        ("comm", ctypes.c_char * 16),
    ]

    @property
    def address(self) -> str:
        """The refused destination ("" for a refused socket)."""
        if any(self.ip6):
            return str(ipaddress.IPv6Address(struct.pack("=4I", *self.ip6)))
        return ip4_from_key(self.ip4) if self.ip4 else ""


class WallConfig(ctypes.Structure):
    """`struct wall_config`: the agents' parent cgroup, for the veth wall (the loader's)."""

    _fields_ = [("parent_cgroup_id", c_uint64), ("parent_level", c_uint32), ("pad", c_uint32)]


DENIAL_HOOKS = {
    1: "connect4",
    2: "sendmsg4",
    3: "connect6",
    4: "sendmsg6",
    5: "sock_create",
    6: "setsockopt",
    7: "wall",  # a packet the per-packet wall dropped (rate-limited)
    8: "veth",  # a frame the veth wall dropped (rate-limited)
}
PACKET_HOOKS = frozenset({7, 8})  # no task is known: uid and comm are unset

# Ring buffers (name -> size in bytes); they have no key or value layout to mirror.
RING_BUFFERS = {"denials": 256 * 1024}

# Map name (also its pin name) -> (key type, value type); checked against the object file.
MAP_LAYOUTS: dict[str, tuple[type[ctypes._SimpleCData | ctypes.Structure], ...]] = {  # type: ignore[type-arg]
    "policy": (c_uint64, Policy),
    "allow": (AllowKey, c_uint64),
    "counters": (c_uint64, Counters),
    "unenrolled": (c_uint32, Counters),
    "dns_origin": (c_uint64, DnsOrigin),
    "wall_config": (c_uint32, WallConfig),
}


def ip4_key(address: str) -> int:
    """The u32 whose bytes in memory are `address` in network order (as the kernel stores it)."""
    packed = ipaddress.IPv4Address(address).packed
    value: int = struct.unpack("=I", packed)[0]
    return value


def ip4_from_key(value: int) -> str:
    return str(ipaddress.IPv4Address(struct.pack("=I", value)))


def port_key(port: int) -> int:
    value: int = struct.unpack("=H", struct.pack("!H", port))[0]
    return value


def port_from_key(value: int) -> int:
    port: int = struct.unpack("!H", struct.pack("=H", value & 0xFFFF))[0]
    return port


_T = TypeVar("_T", bound=ctypes.Structure | ctypes._SimpleCData)  # type: ignore[type-arg]


class _Map:
    """One pinned map, opened by path; keys and values are ctypes objects of fixed types."""

    def __init__(self, path: Path, key_type: type, value_type: type) -> None:
        self.path = path
        self.key_type, self.value_type = key_type, value_type
        self.fd = check(libbpf().bpf_obj_get(str(path).encode()), f"open pinned map {path}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def update(self, key: ctypes._CData, value: ctypes._CData, flags: int = BPF_ANY) -> bool:
        """False when `flags` is BPF_NOEXIST and the key exists."""
        lib = libbpf()
        result = lib.bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value), flags)
        if result == -errno.EEXIST and flags == BPF_NOEXIST:
            return False
        check(result, f"update {self.path.name}")
        return True

    def lookup(self, key: ctypes._CData) -> ctypes._CData | None:
        value = self.value_type()
        result = libbpf().bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(value))
        if result == -errno.ENOENT:
            return None
        check(result, f"look up {self.path.name}")
        found: ctypes._CData = value
        return found

    def delete(self, key: ctypes._CData) -> bool:
        result = libbpf().bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if result == -errno.ENOENT:
            return False
        check(result, f"delete from {self.path.name}")
        return True

    def snapshot_keys(self) -> Iterator[ctypes._CData]:
        """All keys; a snapshot is taken first, so deleting while iterating is safe."""
        found = []
        current: ctypes._CData | None = None
        while True:
            nxt = self.key_type()
            prev = ctypes.byref(current) if current is not None else None
            result = libbpf().bpf_map_get_next_key(self.fd, prev, ctypes.byref(nxt))
            if result == -errno.ENOENT:
                break
            check(result, f"iterate {self.path.name}")
            found.append(nxt)
            current = nxt
        return iter(found)


class PinnedMaps:
    """The firewall's maps under a pin directory, as the control plane reads and writes them."""

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir
        opened: list[_Map] = []
        try:
            for name, (key_type, value_type) in MAP_LAYOUTS.items():
                opened.append(_Map(pin_dir / name, key_type, value_type))
        except BpfError:
            for m in opened:
                m.close()
            raise
        self._policy, self._allow, self._counters, self._unenrolled, self._dns, self._wall = opened

    def close(self) -> None:
        for m in (self._policy, self._allow, self._counters, self._unenrolled, self._dns):
            m.close()

    # -- policy: cgroup id -> agent ------------------------------------------------------------
    def put_policy(self, cgroup_id: int, policy: Policy) -> None:
        self._policy.update(c_uint64(cgroup_id), policy)

    def policy(self, cgroup_id: int) -> Policy | None:
        found = self._policy.lookup(c_uint64(cgroup_id))
        return found if isinstance(found, Policy) else None

    def delete_policy(self, cgroup_id: int) -> bool:
        return self._policy.delete(c_uint64(cgroup_id))

    def policies(self) -> dict[int, Policy]:
        result = {}
        for key in self._policy.snapshot_keys():
            assert isinstance(key, c_uint64)
            if (found := self.policy(key.value)) is not None:
                result[key.value] = found
        return result

    # -- allow: (agent, address) -> expiry -----------------------------------------------------
    def allow(self, agent_id: int, address: str, expires_ns: int) -> None:
        """Allow `address` for the agent until `expires_ns`; never shortens a later expiry."""
        key = AllowKey(agent_id, ip4_key(address), 0)
        current = self._allow.lookup(key)
        if isinstance(current, c_uint64) and current.value >= expires_ns:
            return
        self._allow.update(key, c_uint64(expires_ns))

    def allowed(self, agent_id: int) -> dict[str, int]:
        """The agent's allowed addresses and their expiries (expired ones included)."""
        result = {}
        for key in self._allow.snapshot_keys():
            assert isinstance(key, AllowKey)
            if key.agent_id != agent_id:
                continue
            value = self._allow.lookup(key)
            if isinstance(value, c_uint64):
                result[ip4_from_key(key.ip4)] = value.value
        return result

    def revoke(self, agent_id: int, address: str | None = None) -> int:
        """Forget one address of the agent, or all of them; the number removed."""
        removed = 0
        for key in self._allow.snapshot_keys():
            assert isinstance(key, AllowKey)
            if key.agent_id != agent_id:
                continue
            if address is not None and key.ip4 != ip4_key(address):
                continue
            removed += self._allow.delete(key)
        return removed

    def sweep(self, now_ns: int) -> int:
        """Remove expired allow entries (the map is an LRU too, so this only tidies)."""
        removed = 0
        for key in self._allow.snapshot_keys():
            value = self._allow.lookup(key)
            if isinstance(value, c_uint64) and value.value <= now_ns:
                removed += self._allow.delete(key)
        return removed

    # -- counters ---------------------------------------------------------------------------
    def ensure_counters(self, agent_id: int) -> None:
        """Create the agent's counters at zero unless they exist (they survive re-enrolment)."""
        self._counters.update(c_uint64(agent_id), Counters(0, 0), BPF_NOEXIST)

    def counters(self, agent_id: int) -> Counters:
        found = self._counters.lookup(c_uint64(agent_id))
        return found if isinstance(found, Counters) else Counters(0, 0)

    def delete_counters(self, agent_id: int) -> bool:
        return self._counters.delete(c_uint64(agent_id))

    def unenrolled(self) -> Counters:
        """Decisions about cgroups nobody enrolled (all of them denials)."""
        found = self._unenrolled.lookup(c_uint32(0))
        return found if isinstance(found, Counters) else Counters(0, 0)


class DenialReader:
    """Reads the pinned `denials` ring buffer; one reader per pin directory gets each event."""

    def __init__(self, pin_dir: Path, on_denial: Callable[[Denial], None]) -> None:
        lib = libbpf()
        self._fd = check(
            lib.bpf_obj_get(str(pin_dir / "denials").encode()), f"open {pin_dir}/denials"
        )

        def sample(_ctx: int | None, data: int | None, size: int) -> int:
            if data is not None and size >= ctypes.sizeof(Denial):
                on_denial(Denial.from_buffer_copy(ctypes.string_at(data, ctypes.sizeof(Denial))))
            return 0

        self._callback = RING_BUFFER_SAMPLE_FN(sample)  # kept: libbpf holds the pointer
        try:
            self._rb = check_ptr(
                lib.ring_buffer__new(self._fd, self._callback, None, None),
                f"read {pin_dir}/denials",
            )
        except BpfError:
            os.close(self._fd)
            raise

    def poll(self, timeout_ms: int) -> int:
        """Deliver what is waiting (up to `timeout_ms` for the first event); the count."""
        result: int = libbpf().ring_buffer__poll(self._rb, timeout_ms)
        if result == -errno.EINTR:
            return 0
        return check(result, "poll the denials ring buffer")

    def close(self) -> None:
        if self._rb:
            libbpf().ring_buffer__free(self._rb)
            self._rb = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
