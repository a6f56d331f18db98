"""The mTLS gRPC listener, and the check that the peer is the clawker control plane.

TLS rejects a client without a certificate, or with one that does not chain to the clawker CA
(`require_client_auth=True`, the CA as the only root). The servicer then checks what TLS cannot:
that the certificate is the CP's (subject CN `clawker-controlplane`), not another certificate
the same CA issued, such as a clawkerd leaf from some other container.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from clawkerd.bootstrap import BootstrapMaterial
from clawkerd.bridge import BridgeHost
from clawkerd.logging_setup import EventLog
from clawkerd.session import Session, SessionBackend
from proto import CONTROLPLANE_CN
from proto.gen import clawkerd_pb2 as pb
from proto.gen import clawkerd_pb2_grpc as pb_grpc

__all__ = ["ClawkerdServicer", "ListenError", "peer_common_names", "start_server"]

SERVER_OPTIONS = (
    # Fail loudly if the port is taken instead of silently sharing it.
    ("grpc.so_reuseport", 0),
    # Notice a CP that vanished without closing its connection.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Let the CP keep its idle connection alive with pings of its own.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
)


class ListenError(Exception):
    """The listener could not be started (address in use, unusable certificate)."""


def peer_common_names(context: grpc.aio.ServicerContext[Any, Any]) -> list[str]:
    """Subject CNs of the verified client certificate (empty without one)."""
    values = context.auth_context().get("x509_common_name", [])
    return [value.decode("utf-8", errors="replace") for value in values]


class ClawkerdServicer(pb_grpc.ClawkerdServicer):
    """Serves Session and Bridge to the control plane, and to nobody else."""

    def __init__(self, backend: SessionBackend, log: EventLog) -> None:
        self._backend = backend
        self._log = log
        self._bridges = BridgeHost(log)

    async def close_streams(self) -> None:
        """At exit: end the long-lived Bridge stream, so that the server's stop need not wait
        out its grace for it (the Session stream ends by itself once clawkerd is exiting)."""
        await self._bridges.close()

    async def _refuse_unless_cp(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        names = peer_common_names(context)
        if names != [CONTROLPLANE_CN]:
            self._log.warning("peer_refused", peer=context.peer(), common_names=names)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"clawkerd serves only the clawker control plane (CN {CONTROLPLANE_CN!r}); "
                f"peer certificate CN: {', '.join(names) or 'none'}",
            )

    async def Session(  # noqa: N802 (the RPC's name in the proto)
        self,
        request_iterator: AsyncIterator[pb.Command],
        context: grpc.aio.ServicerContext[pb.Command, pb.Response],
    ) -> AsyncIterator[pb.Response]:
        """One CP connection: check the peer, then serve the Session stream."""
        peer = context.peer()
        await self._refuse_unless_cp(context)
        self._log.info("session_opened", peer=peer)
        try:
            async for response in Session(self._backend, self._log, peer).responses(
                request_iterator
            ):
                yield response
        finally:
            self._log.info("session_closed", peer=peer)

    async def Bridge(  # noqa: N802 (the RPC's name in the proto)
        self,
        request_iterator: AsyncIterator[pb.Frame],
        context: grpc.aio.ServicerContext[pb.Frame, pb.Frame],
    ) -> AsyncIterator[pb.Frame]:
        """The socket bridge (clawkerd/bridge.py), for the CP only."""
        await self._refuse_unless_cp(context)
        async for frame in self._bridges.serve(request_iterator, context.peer()):
            yield frame


async def start_server(
    listen: str, material: BootstrapMaterial, servicer: ClawkerdServicer
) -> tuple[grpc.aio.Server, int]:
    """Start the mTLS listener on `listen` (host:port; port 0 picks one); return it and the port."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    pb_grpc.add_ClawkerdServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(material.key_pem, material.cert_pem)],
        root_certificates=material.ca_pem,
        require_client_auth=True,
    )
    try:
        port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise ListenError(f"cannot listen on {listen} (address in use or not local?)")
    try:
        await server.start()
    except Exception as exc:
        raise ListenError(
            f"cannot serve TLS on {listen} with the bootstrap certificate: {exc}"
        ) from exc
    return server, port
