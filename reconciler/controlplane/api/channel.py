"""The CLI ↔ control plane channel: JSON lines over a unix socket that only root can open."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reconciler.errors import ClawkerError

__all__ = [
    "ApiError",
    "ApiServer",
    "ControlPlaneNotRunningError",
    "ControlPlanePermissionError",
    "Handler",
    "call",
]

Handler = Callable[[dict[str, Any]], Any]


class ApiError(ClawkerError):
    """The control plane refused or failed a call; the message says what to do."""


class ControlPlaneNotRunningError(ApiError):
    """Nothing listens on the control plane's socket."""


class ControlPlanePermissionError(ApiError):
    """The socket exists but this user may not open it (root or the clawker group only)."""


class ApiServer:
    """Serves `{"method": m, "params": {...}}` lines with `handlers[m](params)`."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        # Here, not at the top: only the control plane serves, and every CLI verb that asks it
        # something imports this module (socketserver is ~3 ms of a diff's start-up).
        import socketserver  # noqa: PLC0415

        if path.exists():
            path.unlink()
        routes = handlers

        class _Conn(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:
                    try:
                        request = json.loads(raw)
                        handler = routes[request["method"]]
                        reply = {"ok": True, "result": handler(request.get("params") or {})}
                    except KeyError as exc:
                        reply = {"ok": False, "error": f"unknown method {exc}"}
                    except Exception as exc:  # a bad request must not take the CP down
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    self.wfile.write(json.dumps(reply).encode() + b"\n")
                    self.wfile.flush()

        old_umask = os.umask(0o177)  # the socket is born 0600: root (or the CP's user) only
        try:
            self._server = socketserver.ThreadingUnixStreamServer(str(path), _Conn)
        finally:
            os.umask(old_umask)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cp-api", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def call(path: Path, method: str, params: Mapping[str, Any], *, timeout: float = 10.0) -> Any:
    """One request, one reply; the typed client (api/client.py) is the only caller."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"method": method, "params": params}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except PermissionError as exc:
        raise ControlPlanePermissionError(
            f"permission denied on the control plane's socket {path}: run clawker as root "
            "(or as a member of the clawker group)"
        ) from exc
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlPlaneNotRunningError(
            f"the control plane is not running (no answer at {path}); start it with "
            "`sudo clawker controlplane up`"
        ) from exc
    except OSError as exc:
        raise ApiError(f"the control plane does not answer at {path} ({exc})") from exc
    reply = json.loads(data or b'{"ok": false, "error": "empty reply"}')
    if not reply.get("ok"):
        raise ApiError(str(reply.get("error")))
    return reply.get("result")
