"""The veth wall's attachment: the pinned `clawker_veth_wall` program as a tc (clsact ingress,
direct-action) filter on the host-side end of a container's veth, and how that end is found.

A tc filter holds its own reference to the program, so it outlives the control plane; it goes
when its interface does (Docker deletes the veth with the container's network endpoint).
Nothing here changes any interface but the one it is given.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Sequence
from ctypes import c_int, c_size_t, c_uint32, c_void_p
from pathlib import Path

from bpf.libbpf import BpfError, ProgInfo, check, libbpf, obj_info

__all__ = [
    "VETH_WALL_PIN",
    "LinkMonitor",
    "attach_veth_wall",
    "host_veths_of",
    "veth_peers",
    "veth_wall_program_id",
    "veths_on",
]

VETH_WALL_PIN = "prog_veth_wall"
_BPF_TC_INGRESS = 1
_BPF_TC_F_REPLACE = 1
_HANDLE = 0xC1A  # clawker's filter on the interface: one handle, one priority
_PRIORITY = 1


class _TcHook(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
        ("_tail", c_size_t),
    ]


class _TcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
        ("_tail", c_size_t),
    ]


def _lib() -> ctypes.CDLL:
    lib = libbpf()
    for name, args in (
        ("bpf_tc_hook_create", [c_void_p]),
        ("bpf_tc_attach", [c_void_p, c_void_p]),
        ("bpf_tc_query", [c_void_p, c_void_p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = c_int, args
    return lib


def _hook(ifindex: int) -> _TcHook:
    return _TcHook(ctypes.sizeof(_TcHook), ifindex, _BPF_TC_INGRESS, 0, 0)


def veth_wall_program_id(ifindex: int) -> int:
    """The id of the program clawker's filter runs on `ifindex`'s ingress (0: none)."""
    lib = _lib()
    opts = _TcOpts(ctypes.sizeof(_TcOpts), 0, 0, 0, _HANDLE, _PRIORITY, 0)
    hook = _hook(ifindex)
    result = lib.bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
    if result in (-errno.ENOENT, -errno.EINVAL):
        return 0
    check(result, f"query the tc filter on interface {ifindex}")
    return int(opts.prog_id)


def attach_veth_wall(pin_dir: Path, ifindex: int) -> str:
    """Make sure `ifindex` runs the pinned veth wall at ingress: "kept" when it already runs
    this program, "attached" otherwise (an older program is replaced in one netlink call)."""
    lib = _lib()
    prog_fd = check(lib.bpf_obj_get(str(pin_dir / VETH_WALL_PIN).encode()), "open the veth wall")
    try:
        info = ProgInfo()
        obj_info(prog_fd, info, "inspect the veth wall")
        if veth_wall_program_id(ifindex) == info.id:
            return "kept"
        hook = _hook(ifindex)
        created = lib.bpf_tc_hook_create(ctypes.byref(hook))
        if created < 0 and created != -errno.EEXIST:
            check(created, f"add a clsact qdisc to interface {ifindex}")
        opts = _TcOpts(ctypes.sizeof(_TcOpts), prog_fd, _BPF_TC_F_REPLACE, 0, _HANDLE, _PRIORITY, 0)
        check(
            lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)),
            f"attach the veth wall to interface {ifindex}",
        )
        return "attached"
    finally:
        os.close(prog_fd)


# ---- rtnetlink: which interfaces of this namespace are veths whose peer is in another -----
_RTM_GETLINK, _RTM_NEWLINK, _RTM_GETNSID, _RTM_NEWNSID = 18, 16, 90, 88
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFLA_MASTER, _IFLA_LINKINFO, _IFLA_LINK_NETNSID, _IFLA_INFO_KIND = 10, 18, 37, 1
_RTMGRP_LINK = 1
_NETNSA_NSID, _NETNSA_FD = 1, 3


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x7FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _request(kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
    """Send one rtnetlink request; the (type, payload) of every reply message until done."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags | _NLM_F_REQUEST, 1, 0) + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
                payload = data[offset + 16 : offset + length]
                if mtype == _NLMSG_DONE:
                    return replies
                if mtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise BpfError(f"rtnetlink request {kind}", code)
                    return replies
                replies.append((mtype, payload))
                offset += (length + 3) & ~3
            if not flags & _NLM_F_DUMP and replies:
                return replies


def _nsid_of(netns: Path) -> int | None:
    """The id this namespace gives the network namespace at `netns` (None: none assigned)."""
    fd = os.open(netns, os.O_RDONLY)
    try:
        attr = struct.pack("=HHI", 8, _NETNSA_FD, fd)
        for mtype, payload in _request(_RTM_GETNSID, 0, struct.pack("=Bxxx", 0) + attr):
            if mtype == _RTM_NEWNSID:
                value = _attrs(payload, 4).get(_NETNSA_NSID)
                if value is not None:
                    nsid: int = struct.unpack("=i", value)[0]
                    return nsid if nsid >= 0 else None
    finally:
        os.close(fd)
    return None


def _veth(payload: bytes) -> tuple[int, int, int | None] | None:
    """(ifindex, master ifindex or 0, peer's namespace id) of a veth's RTM_NEWLINK payload."""
    ifindex = struct.unpack_from("=i", payload, 4)[0]
    attrs = _attrs(payload, 16)
    kind = _attrs(attrs.get(_IFLA_LINKINFO, b""), 0).get(_IFLA_INFO_KIND, b"")
    if kind.rstrip(b"\0") != b"veth":
        return None
    master = attrs.get(_IFLA_MASTER)
    peer_ns = attrs.get(_IFLA_LINK_NETNSID)
    return (
        ifindex,
        struct.unpack("=i", master)[0] if master else 0,
        struct.unpack("=i", peer_ns)[0] if peer_ns is not None else None,
    )


def _all_veths() -> list[tuple[int, int, int | None]]:
    body = struct.pack("=BxHiII", 0, 0, 0, 0, 0)
    found = []
    for mtype, payload in _request(_RTM_GETLINK, _NLM_F_DUMP, body):
        veth = _veth(payload) if mtype == _RTM_NEWLINK else None
        if veth is not None:
            found.append(veth)
    return found


def veths_on(master: int) -> list[int]:
    """The veths of this namespace enslaved to the bridge `master` (an ifindex)."""
    return [ifindex for ifindex, m, _ in _all_veths() if m == master]


class LinkMonitor:
    """rtnetlink's link notifications: every veth that gets (or has) a master, as it happens."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, _RTMGRP_LINK))
        self._sock.settimeout(0.5)

    def next_batch(self) -> list[tuple[int, int]]:
        """(ifindex, master) of the veths named in the next notifications ([] on a timeout).
        An overrun (ENOBUFS) raises OSError: the caller rescans."""
        try:
            data = self._sock.recv(1 << 16)
        except TimeoutError:
            return []
        found = []
        offset = 0
        while offset + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if mtype == _RTM_NEWLINK:
                veth = _veth(data[offset + 16 : offset + length])
                if veth is not None and veth[1]:
                    found.append((veth[0], veth[1]))
            offset += (length + 3) & ~3
        return found

    def close(self) -> None:
        self._sock.close()


def veth_peers() -> list[tuple[int, int]]:
    """(ifindex, the peer's namespace id) of every veth of this namespace whose other end is in
    another namespace: one link dump, which `host_veths_of` can share between containers."""
    return [(ifindex, peer) for ifindex, _, peer in _all_veths() if peer is not None]


def host_veths_of(netns: Path, peers: Sequence[tuple[int, int]] | None = None) -> list[int]:
    """The interfaces (ifindex) of this network namespace that are veths whose other end is in
    the namespace at `netns` (a container's: Docker's SandboxKey, or /proc/PID/ns/net).

    `peers`: a `veth_peers()` dump taken earlier, for asking about many namespaces at once (a
    dump per container made a pass over N containers cost N dumps of N links). A veth created
    after that dump is not in it: a caller that finds none asks again without it."""
    links = veth_peers() if peers is None else peers
    nsid = _nsid_of(netns)  # after the dump: a dump assigns ids to the peers' namespaces
    if nsid is None:
        return []
    return [ifindex for ifindex, peer in links if peer == nsid]
