"""A ctypes binding of the few libbpf.so.1 calls the firewall needs, and nothing else.

libbpf 1.x returns negative errno values (and sets errno) on failure; every wrapper here turns
that into a `BpfError` naming the call and the object it acted on. libbpf's own messages (among
them the verifier's log when a program is refused) go through one print callback, which
`captured_log()` collects so the loader can put them into its error.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_NOEXIST",
    "RING_BUFFER_SAMPLE_FN",
    "BpfError",
    "LinkInfo",
    "MapInfo",
    "ProgInfo",
    "captured_log",
    "check",
    "check_ptr",
    "libbpf",
    "obj_info",
]

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
_LIBBPF_DEBUG = 2
_LOG_BUFFER = 1 << 20  # the verifier's log comes as one message; keep up to 1 MiB of it


class BpfError(Exception):
    """A libbpf or bpf(2) call failed; `errno` is the kernel's reason, `log` libbpf's output."""

    def __init__(self, message: str, code: int = 0, log: str = "") -> None:
        reason = f": {os.strerror(code)} (errno {code})" if code else ""
        text = f"{message}{reason}"
        if log.strip():
            text += f"\n--- libbpf log ---\n{log.rstrip()}"
        super().__init__(text)
        self.errno = code
        self.log = log


class MapInfo(ctypes.Structure):
    """The head of `struct bpf_map_info` (the kernel accepts a shorter buffer)."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", ctypes.c_char * 16),
    ]


class ProgInfo(ctypes.Structure):
    """The head of `struct bpf_prog_info`, up to the program's name."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", ctypes.c_char * 16),
    ]


class LinkInfo(ctypes.Structure):
    """`struct bpf_link_info` with its union read as the cgroup member."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("prog_id", c_uint32),
        ("_pad", c_uint32),
        ("cgroup_id", c_uint64),
        ("attach_type", c_uint32),
        ("_pad2", c_uint32),
    ]


_PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
RING_BUFFER_SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

# (name, return type, argument types)
_SIGNATURES: tuple[tuple[str, Any, list[Any]], ...] = (
    ("libbpf_set_print", c_void_p, [_PRINT_FN]),
    ("bpf_object__open_file", c_void_p, [c_char_p, c_void_p]),
    ("bpf_object__load", c_int, [c_void_p]),
    ("bpf_object__close", None, [c_void_p]),
    ("bpf_object__find_map_by_name", c_void_p, [c_void_p, c_char_p]),
    ("bpf_object__find_program_by_name", c_void_p, [c_void_p, c_char_p]),
    ("bpf_map__set_pin_path", c_int, [c_void_p, c_char_p]),
    ("bpf_map__fd", c_int, [c_void_p]),
    ("bpf_map__type", c_int, [c_void_p]),
    ("bpf_map__key_size", c_uint32, [c_void_p]),
    ("bpf_map__value_size", c_uint32, [c_void_p]),
    ("bpf_map__max_entries", c_uint32, [c_void_p]),
    ("bpf_map__map_flags", c_uint32, [c_void_p]),
    ("bpf_program__fd", c_int, [c_void_p]),
    ("bpf_program__set_autoload", c_int, [c_void_p, c_bool]),
    ("bpf_program__attach_cgroup", c_void_p, [c_void_p, c_int]),
    ("bpf_link__pin", c_int, [c_void_p, c_char_p]),
    ("bpf_link__fd", c_int, [c_void_p]),
    ("bpf_link__disconnect", None, [c_void_p]),
    ("bpf_link__destroy", c_int, [c_void_p]),
    ("bpf_link_update", c_int, [c_int, c_int, c_void_p]),
    ("bpf_obj_get", c_int, [c_char_p]),
    ("bpf_obj_pin", c_int, [c_int, c_char_p]),
    ("bpf_obj_get_info_by_fd", c_int, [c_int, c_void_p, POINTER(c_uint32)]),
    ("bpf_prog_get_fd_by_id", c_int, [c_uint32]),
    ("bpf_map_update_elem", c_int, [c_int, c_void_p, c_void_p, c_uint64]),
    ("bpf_map_lookup_elem", c_int, [c_int, c_void_p, c_void_p]),
    ("bpf_map_delete_elem", c_int, [c_int, c_void_p]),
    ("bpf_map_get_next_key", c_int, [c_int, c_void_p, c_void_p]),
    ("ring_buffer__new", c_void_p, [c_int, RING_BUFFER_SAMPLE_FN, c_void_p, c_void_p]),
    ("ring_buffer__poll", c_int, [c_void_p, c_int]),
    ("ring_buffer__free", None, [c_void_p]),
)


class _Process:
    """Process-wide state: one libbpf, one print callback, one log sink at a time."""

    lock = threading.Lock()
    capture_lock = threading.Lock()
    lib: ctypes.CDLL | None = None
    log_lines: list[str] | None = None
    buffer = ctypes.create_string_buffer(_LOG_BUFFER)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
_libc.vsnprintf.restype = c_int


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    # On x86-64 and arm64 a va_list argument arrives as a pointer that vsnprintf can consume.
    sink = _Process.log_lines
    if sink is None or level == _LIBBPF_DEBUG or fmt is None:
        return 0
    if _libc.vsnprintf(_Process.buffer, _LOG_BUFFER, fmt, args) > 0:
        sink.append(_Process.buffer.value.decode(errors="replace"))
    return 0


_print_callback = _PRINT_FN(_on_print)  # module-level: libbpf keeps the pointer


def libbpf() -> ctypes.CDLL:
    """libbpf.so.1 with argument and return types declared (loaded on first use)."""
    with _Process.lock:
        if _Process.lib is None:
            try:
                lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
            except OSError as exc:
                raise BpfError(
                    "libbpf.so.1 is not installed; install it with `apt-get install libbpf1` "
                    "(make setup does)"
                ) from exc
            for name, restype, argtypes in _SIGNATURES:
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = restype, argtypes
            lib.libbpf_set_print(_print_callback)
            _Process.lib = lib
        return _Process.lib


@contextmanager
def captured_log() -> Iterator[list[str]]:
    """Collect libbpf's warnings and infos (one process-wide sink, so one capture at a time)."""
    with _Process.capture_lock:
        lines: list[str] = []
        _Process.log_lines = lines
        try:
            yield lines
        finally:
            _Process.log_lines = None


def check(result: int, what: str, log: str = "") -> int:
    """`result` when it is not an error, else BpfError (libbpf returns -errno)."""
    if result < 0:
        code = -result if result != -1 else (ctypes.get_errno() or errno.EIO)
        raise BpfError(what, code, log)
    return result


def check_ptr(ptr: int | None, what: str, log: str = "") -> int:
    """A pointer libbpf returned; NULL means failure with errno set."""
    if not ptr:
        raise BpfError(what, ctypes.get_errno() or errno.EINVAL, log)
    return ptr


def obj_info(fd: int, info: ctypes.Structure, what: str) -> None:
    size = c_uint32(ctypes.sizeof(info))
    check(libbpf().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), what)
