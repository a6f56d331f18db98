"""The seccomp profile of agent containers: no packet or raw sockets, whatever the capabilities.

The firewall's socket hooks see only inet sockets, and its packet wall only IP packets that go
through the IP stack; a packet socket (AF_PACKET) writes frames straight to the interface. The
capability policy (specs.capabilities) keeps NET_RAW from agents; this profile makes the same
refusal hold even where a capability slipped through, and refuses io_uring, whose socket
operation does not pass through seccomp.

Docker replaces its default profile with this one (a profile cannot be layered over another
through the API), so the profile also refuses what the default refuses that matters for a
container without SYS_ADMIN: namespaces, mounts, module and kexec loading, the clock, keyrings,
BPF, perf, handles (the "Shocker" escape) and the rest listed in `_REFUSED`. Its default action is
to allow; the architecture list is the host's own only, so 32-bit and x32 calls (socketcall among
them) are refused as a foreign architecture.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

__all__ = ["agent_seccomp_profile"]

AF_INET, AF_INET6, AF_PACKET = 2, 10, 17
SOCK_RAW, SOCK_TYPE_MASK = 3, 0xF

# The Linux clone flags that make a namespace; each is refused on its own (seccomp compares
# one masked value per argument, so "any of them" is one rule per flag).
_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

_REFUSED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup",
    "ioperm", "iopl", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount",
    "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "open_tree", "perf_event_open", "pivot_root", "query_module", "quotactl", "quotactl_fd",
    "reboot", "request_key", "setns", "settimeofday", "stime", "swapoff", "swapon", "syslog",
    "_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old",
)  # fmt: skip

_ARCHITECTURES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def _refuse(names: list[str], *args: dict[str, Any], code: int = errno.EPERM) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": code}
    if args:
        rule["args"] = list(args)
    return rule


def _arg(index: int, value: int, mask: int | None = None) -> dict[str, Any]:
    if mask is None:
        return {"index": index, "value": value, "op": "SCMP_CMP_EQ"}
    return {"index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}


def profile() -> dict[str, Any]:
    """The profile as data (Docker's seccomp JSON)."""
    machine = os.uname().machine
    rules = [
        _refuse(["socket"], _arg(0, AF_PACKET)),
        _refuse(["socket"], _arg(0, AF_INET), _arg(1, SOCK_RAW, SOCK_TYPE_MASK)),
        _refuse(["socket"], _arg(0, AF_INET6), _arg(1, SOCK_RAW, SOCK_TYPE_MASK)),
        _refuse(sorted(_REFUSED)),
        # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc use clone.
        _refuse(["clone3"], code=errno.ENOSYS),
    ]
    # clone's flags are its first argument on x86-64 and arm64 alike.
    rules += [_refuse(["clone"], _arg(0, flag, flag)) for flag in _NAMESPACE_FLAGS]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [_ARCHITECTURES.get(machine, f"SCMP_ARCH_{machine.upper()}")],
        "syscalls": rules,
    }


def agent_seccomp_profile() -> str:
    """The profile as the `seccomp=` security option's JSON text."""
    return json.dumps(profile(), sort_keys=True, separators=(",", ":"))
