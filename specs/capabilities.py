"""The one capability policy of agent containers: what every agent has, what a spec may add,
and what is refused with the reason the user reads (the `cap_add` rule of specs.values).

Plain constants, so that building a container (reconciler.loop.desired) needs no validator."""

from __future__ import annotations

__all__ = [
    "ADDABLE_CAPABILITIES",
    "AGENT_BASE_CAPABILITIES",
    "LINUX_CAPABILITIES",
    "REFUSED_CAPABILITIES",
]

LINUX_CAPABILITIES = frozenset(
    {
        "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF",
        "CHECKPOINT_RESTORE", "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID",
        "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE",
        "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT",
        "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM",
    }
)  # fmt: skip

# The one capability policy of agent containers. A container starts from nothing (Docker's
# cap_drop ALL) and gets AGENT_BASE_CAPABILITIES, which clawkerd needs to drop to the agent user,
# plus what the spec's cap_add names, which must be in ADDABLE_CAPABILITIES. Capabilities are not
# namespaced without a user namespace: each one left out acts on the host's kernel, network or
# clock, or would put the firewall within the agent's reach. The reasons below reach the user.
AGENT_BASE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
ADDABLE_CAPABILITIES = AGENT_BASE_CAPABILITIES | {
    "IPC_LOCK", "IPC_OWNER", "LEASE", "LINUX_IMMUTABLE", "SYS_NICE", "SYS_RESOURCE",
}  # fmt: skip
_BPF_REACH = "it would let the agent load, detach or rewrite the firewall's BPF programs"
REFUSED_CAPABILITIES = {
    "NET_RAW": "it opens packet and raw sockets, which send traffic past the firewall's hooks",
    "NET_ADMIN": "it would let the agent detach the firewall's BPF programs or reroute traffic",
    "SYS_ADMIN": _BPF_REACH,
    "BPF": _BPF_REACH,
    "PERFMON": "with BPF it loads tracing programs; alone it reads the host kernel's events",
    "SYS_MODULE": "it would let the agent load kernel modules that bypass the firewall",
    "SYS_RAWIO": "it gives raw access to host devices, I/O ports and kernel memory",
    "SYS_TIME": "it sets the host's clock (for every container and the host itself)",
    "SYS_PTRACE": "it lets the agent read and rewrite other processes' memory",
    "DAC_READ_SEARCH": "it opens host files by handle, outside the container (open_by_handle_at)",
    "SYSLOG": "it reads the host kernel's log, which shows host and other containers' activity",
    "SYS_BOOT": "it reboots or kexecs the host",
    "SYS_PACCT": "it switches process accounting on for the whole host",
    "AUDIT_CONTROL": "it changes the host's audit rules",
    "MAC_ADMIN": "it changes the host's mandatory access control policy",
    "MAC_OVERRIDE": "it overrides the host's mandatory access control policy",
    "CHECKPOINT_RESTORE": "it reads and sets other processes' state (map_files, last pid)",
    "WAKE_ALARM": "it sets alarms that wake the host from suspend",
    "BLOCK_SUSPEND": "it keeps the host from suspending",
}
