"""Load the compiled egress programs and attach them, once, to the agents' parent cgroup.

Everything that must outlive the control plane is pinned under one bpffs directory: the maps
(so enrolments and allowed addresses survive a CP restart) and one cgroup link per program (so
enforcement does too: a link stays attached while its pin exists). Installing again is
idempotent: a live link running the same program is kept, one running an older program is
switched in place with `bpf_link_update` (never a moment without a program), and a link whose
cgroup was removed is replaced.

A map whose layout changed is not reused: the new programs get fresh maps (so every cgroup is
unknown, hence denied, until the control plane re-enrols it) and the old pins are replaced.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bpf.libbpf import (
    BpfError,
    LinkInfo,
    MapInfo,
    ProgInfo,
    captured_log,
    check,
    check_ptr,
    libbpf,
    obj_info,
)
from bpf.maps import MAP_LAYOUTS, RING_BUFFERS, WallConfig
from bpf.tc import VETH_WALL_PIN

__all__ = [
    "BPF_FS",
    "PROGRAMS",
    "Attachment",
    "attach_egress",
    "cgroup2_root",
    "cgroup_id",
    "default_object",
    "detach_egress",
    "ensure_bpffs",
    "load_object",
    "open_object",
]

BPF_FS = Path("/sys/fs/bpf")
_BPF_FS_MAGIC = 0xCAFE4A11
_BPF_LINK_TYPE_CGROUP = 3

# Program name in egress.bpf.c -> what it guards (for status and errors).
PROGRAMS: dict[str, str] = {
    "clawker_connect4": "connect4",
    "clawker_sendmsg4": "sendmsg4",
    "clawker_recvmsg4": "recvmsg4",
    "clawker_connect6": "connect6",
    "clawker_sendmsg6": "sendmsg6",
    "clawker_recvmsg6": "recvmsg6",
    "clawker_sock_create": "sock_create",
    "clawker_setsockopt": "setsockopt",
    "clawker_sockops": "sockops",
    "clawker_egress_skb": "egress_skb",
}

# Maps only the programs use (no Python mirror), pinned like the others so that what they hold
# (which sockets were accepted from outside) survives a control plane restart or an upgrade.
KERNEL_ONLY_MAPS = ("inbound", "report_budget")

# Programs not attached to the cgroup: pinned, for the control plane to attach elsewhere.
VETH_WALL = "clawker_veth_wall"


@dataclass(frozen=True)
class Attachment:
    cgroup: Path
    cgroup_id: int
    pin_dir: Path
    programs: dict[str, str]  # hook -> attached | updated | kept
    maps_replaced: bool


def default_object() -> Path:
    """The compiled object, bpf/build/egress.bpf.o (`make bpf`); Settings.bpf_object
    (`CLAWKER_BPF_OBJECT`) reaches attach_egress as `object_path` instead."""
    return Path(__file__).resolve().parent / "build/egress.bpf.o"


def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid)."""
    best: Path | None = None
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                point = Path(left.split()[4])
                if best is None or len(point.parts) < len(best.parts):
                    best = point
    if best is None:
        raise BpfError("no cgroup v2 hierarchy is mounted; the firewall needs one")
    return best


def cgroup_id(path: Path) -> int:
    """A cgroup v2 directory's id: the number bpf_get_current_cgroup_id() returns for it."""
    return os.stat(path).st_ino


def _is_bpffs(path: Path) -> bool:
    class _StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]

    buf = _StatFs()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(str(path).encode(), ctypes.byref(buf)) != 0:
        return False
    return bool(buf.f_type & 0xFFFFFFFF == _BPF_FS_MAGIC)


def ensure_bpffs(pin_dir: Path) -> None:
    """Mount bpffs at /sys/fs/bpf when it is not mounted; `pin_dir` must be on a bpffs."""
    if not _is_bpffs(BPF_FS) and pin_dir.is_relative_to(BPF_FS):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"bpf", str(BPF_FS).encode(), b"bpf", 0, None) != 0:
            raise BpfError(f"mount bpffs at {BPF_FS}", ctypes.get_errno())
    parent = pin_dir if pin_dir.exists() else pin_dir.parent
    if not _is_bpffs(parent):
        raise BpfError(f"{pin_dir} is not on a bpf filesystem; pick a directory under {BPF_FS}")


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One installer at a time per pin directory (two control planes may share one)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def open_object(path: Path) -> Iterator[int]:
    """A libbpf `struct bpf_object *` for a compiled object, closed on exit (which closes this
    process's fds only: what was pinned or attached through a pinned link stays)."""
    if not path.is_file():
        raise BpfError(f"the firewall's compiled programs are missing at {path}; run `make bpf`")
    lib = libbpf()
    with captured_log() as log:
        obj = lib.bpf_object__open_file(str(path).encode(), None)
    check_ptr(obj, f"open {path}", "".join(log))
    try:
        yield obj
    finally:
        lib.bpf_object__close(obj)


def load_object(obj: int, what: str) -> None:
    """Load the object's maps and programs into the kernel; a refusal raises BpfError with
    libbpf's log, which holds the verifier's own explanation."""
    with captured_log() as log:
        loaded = libbpf().bpf_object__load(obj)
    check(loaded, f"load {what} (the kernel refused it)", "".join(log))


def _pinned_map_matches(path: Path, bpf_map: int) -> bool:
    """Whether the map pinned at `path` has the layout the object declares (libbpf's test)."""
    lib = libbpf()
    fd = lib.bpf_obj_get(str(path).encode())
    if fd < 0:
        return False
    try:
        info = MapInfo()
        obj_info(fd, info, f"inspect pinned map {path}")
    finally:
        os.close(fd)
    return bool(
        info.type == lib.bpf_map__type(bpf_map)
        and info.key_size == lib.bpf_map__key_size(bpf_map)
        and info.value_size == lib.bpf_map__value_size(bpf_map)
        and info.max_entries == lib.bpf_map__max_entries(bpf_map)
        and info.map_flags == lib.bpf_map__map_flags(bpf_map)
    )


def _check_layouts(obj: int) -> dict[str, int]:
    """The object's maps by name, after checking their sizes against bpf/maps.py's mirrors."""
    lib = libbpf()
    found = {}
    for name, (key_type, value_type) in MAP_LAYOUTS.items():
        m = check_ptr(lib.bpf_object__find_map_by_name(obj, name.encode()), f"find map {name}")
        sizes = (lib.bpf_map__key_size(m), lib.bpf_map__value_size(m))
        want = (ctypes.sizeof(key_type), ctypes.sizeof(value_type))
        if sizes != want:
            raise BpfError(
                f"map {name}: the object has key/value sizes {sizes}, bpf/maps.py expects {want}; "
                "egress.h and bpf/maps.py disagree"
            )
        found[name] = m
    for name in (*RING_BUFFERS, *KERNEL_ONLY_MAPS):  # no mirror: the pin check compares types
        found[name] = check_ptr(
            lib.bpf_object__find_map_by_name(obj, name.encode()), f"find map {name}"
        )
    return found


def _prog_tag(prog_fd: int) -> bytes:
    info = ProgInfo()
    obj_info(prog_fd, info, "inspect program")
    return bytes(info.tag)


def _live_link(path: Path, want_cgroup: int) -> tuple[int, bytes] | None:
    """(link fd, tag of its program) for a pinned link still attached to `want_cgroup`."""
    lib = libbpf()
    fd = lib.bpf_obj_get(str(path).encode())
    if fd < 0:
        return None
    info = LinkInfo()
    obj_info(fd, info, f"inspect link {path}")
    if info.type != _BPF_LINK_TYPE_CGROUP or info.cgroup_id == 0:
        os.close(fd)  # not a cgroup link, or defunct (its cgroup was removed): replaced
        return None
    if info.cgroup_id != want_cgroup:
        os.close(fd)
        # Replacing it would detach another parent's programs: its agents would run unfiltered.
        raise BpfError(
            f"{path} is attached to cgroup id {info.cgroup_id}, not to {want_cgroup}: this pin "
            "directory serves another cgroup parent (or the old parent is still being removed); "
            "give each cgroup parent its own CLAWKER_BPF_PIN_DIR"
        )
    prog_fd = check(lib.bpf_prog_get_fd_by_id(info.prog_id), f"open the program of {path}")
    try:
        return fd, _prog_tag(prog_fd)
    finally:
        os.close(prog_fd)


def attach_egress(cgroup: Path, pin_dir: Path, object_path: Path | None = None) -> Attachment:
    """Load the programs and make sure each is attached to `cgroup` through a pinned link.

    Creates `cgroup` (v2) and `pin_dir` when missing. Raises BpfError with libbpf's log (the
    verifier's, when a program is refused) on failure."""
    object_path = object_path or default_object()
    ensure_bpffs(pin_dir)
    pin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cgroup.mkdir(parents=True, exist_ok=True)
    target_id = cgroup_id(cgroup)
    lib = libbpf()
    with _locked(pin_dir), open_object(object_path) as obj:
        maps = _check_layouts(obj)
        stale = [
            name
            for name, m in maps.items()
            if (pin_dir / name).exists() and not _pinned_map_matches(pin_dir / name, m)
        ]
        if not stale:
            for name, m in maps.items():
                check(lib.bpf_map__set_pin_path(m, str(pin_dir / name).encode()), f"pin {name}")
        load_object(obj, str(object_path))

        cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        done: dict[str, str] = {}
        try:
            for name, hook in PROGRAMS.items():
                prog = check_ptr(
                    lib.bpf_object__find_program_by_name(obj, name.encode()), f"find {name}"
                )
                prog_fd = check(lib.bpf_program__fd(prog), f"program {name}")
                done[hook] = _ensure_link(pin_dir / f"link_{hook}", prog, prog_fd, cg_fd, target_id)
        finally:
            os.close(cg_fd)
        if stale:
            # The links now run programs on fresh maps; swap the pins to those maps.
            for name, m in maps.items():
                path = pin_dir / name
                path.unlink(missing_ok=True)
                check(lib.bpf_obj_pin(lib.bpf_map__fd(m), str(path).encode()), f"pin {path}")
        _configure_veth_wall(obj, maps["wall_config"], cgroup, target_id, pin_dir)
    return Attachment(cgroup, target_id, pin_dir, done, bool(stale))


def _configure_veth_wall(
    obj: int, config_map: int, cgroup: Path, parent: int, pin_dir: Path
) -> None:
    """Tell the veth wall which cgroup is the parent, and pin this object's veth wall program
    (filters attached earlier keep running the program they hold until they are re-attached)."""
    lib = libbpf()
    level = len(cgroup.resolve().relative_to(cgroup2_root()).parts)
    key, value = ctypes.c_uint32(0), WallConfig(parent_cgroup_id=parent, parent_level=level)
    check(
        lib.bpf_map_update_elem(
            lib.bpf_map__fd(config_map), ctypes.byref(key), ctypes.byref(value), 0
        ),
        "configure the veth wall",
    )
    prog = check_ptr(
        lib.bpf_object__find_program_by_name(obj, VETH_WALL.encode()), "find the veth wall"
    )
    path = pin_dir / VETH_WALL_PIN
    path.unlink(missing_ok=True)
    check(
        lib.bpf_obj_pin(check(lib.bpf_program__fd(prog), VETH_WALL), str(path).encode()),
        f"pin {path}",
    )


def _ensure_link(path: Path, prog: int, prog_fd: int, cg_fd: int, cgroup: int) -> str:
    lib = libbpf()
    live = _live_link(path, cgroup)
    if live is not None:
        link_fd, tag = live
        try:
            if tag == _prog_tag(prog_fd):
                return "kept"
            check(lib.bpf_link_update(link_fd, prog_fd, None), f"update link {path}")
            return "updated"
        finally:
            os.close(link_fd)
    path.unlink(missing_ok=True)
    with captured_log() as log:
        link = lib.bpf_program__attach_cgroup(prog, cg_fd)
    check_ptr(link, f"attach {path.name} to the cgroup", "".join(log))
    try:
        check(lib.bpf_link__pin(link, str(path).encode()), f"pin {path}")
    finally:
        lib.bpf_link__destroy(link)  # closes our fd only: the pin keeps the link attached
    return "attached"


def detach_egress(pin_dir: Path) -> list[str]:
    """Remove every pin under `pin_dir`, and the directory: links go (programs detach), maps go
    once nothing uses them. Returns the names removed. For uninstalling and test teardown."""
    removed: list[str] = []
    if not pin_dir.is_dir():
        return removed
    for entry in sorted(pin_dir.iterdir()):
        try:
            entry.unlink()
            removed.append(entry.name)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    pin_dir.rmdir()
    return removed
