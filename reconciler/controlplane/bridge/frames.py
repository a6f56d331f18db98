"""The frame vocabulary the host side of the socket bridge speaks (the Bridge RPC's FrameKind).

A channel is one connection a client made to a listener inside the container; the host side
answers it with DATA, ends its sending with EOF (a half close) and closes it with CLOSE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from proto import BRIDGE_MAX_CHANNELS, BRIDGE_MAX_PAYLOAD
from proto.gen import clawkerd_pb2 as pb

__all__ = ["CLOSE", "DATA", "EOF", "MAX_CHANNELS", "MAX_PAYLOAD", "OPEN", "FrameKind", "Send"]

FrameKind: TypeAlias = pb.FrameKind.ValueType
OPEN: FrameKind = pb.FRAME_KIND_OPEN
DATA: FrameKind = pb.FRAME_KIND_DATA
EOF: FrameKind = pb.FRAME_KIND_EOF
CLOSE: FrameKind = pb.FRAME_KIND_CLOSE
MAX_PAYLOAD = BRIDGE_MAX_PAYLOAD
MAX_CHANNELS = BRIDGE_MAX_CHANNELS

# How a channel sends a frame (kind, channel, payload) towards the container.
Send = Callable[[FrameKind, int, bytes], None]
