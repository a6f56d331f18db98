"""A stub of the Messages API for the API relay's tests and bench: HTTPS on a test host in a
network namespace the test made (testhosts.make_test_hosts), with a CA of its own.

It records every request (method, path, headers, body) and answers `POST /v1/messages` with a
short answer: server-sent events, one event per write with a pause between them, when the body
asks for `"stream": true`, else one JSON message. Anything else is a 404.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyroute2 import netns

ANSWER = "Hi from the clawker test stub!"
API_PORT = 443


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def tls_material(address: str, directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for the IP `address`: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clawker test API CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = (directory / "api-ca.pem", directory / "api-cert.pem", directory / "api-key.pem")
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def sse_events(model: str, text: str = ANSWER) -> list[bytes]:
    """A streamed Messages answer, as the API sends it: one server-sent event per item."""
    message: dict[str, Any] = {
        "id": "msg_clawker_stub",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    words = text.split(" ")
    deltas = [w if i == 0 else " " + w for i, w in enumerate(words)]
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        *(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": delta},
                },
            )
            for delta in deltas
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def json_message(model: str, text: str = ANSWER) -> bytes:
    return json.dumps(
        {
            "id": "msg_clawker_stub",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 5},
        }
    ).encode()


@dataclass
class MessagesStub:
    """The stub's server, serving on `address`:443 inside the namespace `netns_name`."""

    address: str
    ca: Path
    event_gap: float = 0.1  # between streamed events: the answer arrives in pieces
    requests: list[Recorded] = field(default_factory=list)
    last_event_at: float = 0.0  # time.time() when the last streamed event was written
    _server: ThreadingHTTPServer | None = None

    port: int = API_PORT

    @property
    def url(self) -> str:
        return f"https://{self.address}" + ("" if self.port == API_PORT else f":{self.port}")

    def start(self, listener: socket.socket, cert: Path, key: Path) -> None:
        """Serve on `listener` (bound and listening) with TLS."""
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.requests.append(Recorded(self.command, self.path, headers, body))
                return body

            def do_GET(self) -> None:
                self._record()
                self._send(404, b'{"type":"error","error":{"type":"not_found_error"}}')

            def do_POST(self) -> None:
                body = self._record()
                if self.path.split("?", 1)[0] != "/v1/messages":
                    self._send(404, b'{"type":"error","error":{"type":"not_found_error"}}')
                    return
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    request = {}
                model = str(request.get("model", "claude-stub"))
                if not request.get("stream"):
                    self._send(200, json_message(model))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in sse_events(model):
                    self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                    self.wfile.flush()
                    stub.last_event_at = time.time()
                    time.sleep(stub.event_gap)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        server = ThreadingHTTPServer(listener.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = context.wrap_socket(listener, server_side=True)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="messages-stub", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_messages_stub(netns_name: str, address: str, directory: Path) -> MessagesStub:
    """The stub on `address` (a test host's address in `netns_name`), with its CA in
    `directory`."""
    ca, cert, key = tls_material(address, directory)
    listener = netns.create_socket(netns_name, socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, API_PORT))
    listener.listen(64)
    stub = MessagesStub(address, ca)
    stub.start(listener, cert, key)
    return stub


def start_loopback_stub(directory: Path) -> MessagesStub:
    """The stub on 127.0.0.1 (a free port): for tests of the relay's host half alone."""
    ca, cert, key = tls_material("127.0.0.1", directory)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stub = MessagesStub("127.0.0.1", ca, port=listener.getsockname()[1])
    stub.start(listener, cert, key)
    return stub
