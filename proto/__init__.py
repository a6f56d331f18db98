"""The wire contract between the control plane and clawkerd (proto/clawkerd.proto).

The generated modules live in `proto.gen` (made by `python scripts/gen_proto.py`, never edited
by hand). The names below are the identity half of the contract, shared by both ends: the CP
issues certificates with them and clawkerd checks its peer against them.
"""

__all__ = [
    "BRIDGE_MAX_CHANNELS",
    "BRIDGE_MAX_PAYLOAD",
    "CLAWKERD_CN",
    "CLAWKERD_PORT",
    "CLAWKERD_TLS_NAME",
    "CONTROLPLANE_CN",
]

# Subject CN of the CP's client certificate; clawkerd accepts no other peer.
CONTROLPLANE_CN = "clawker-controlplane"
# Subject CN of every clawkerd leaf certificate.
CLAWKERD_CN = "clawker-clawkerd"
# DNS SAN of every clawkerd leaf: the CP dials with ssl_target_name_override set to it.
CLAWKERD_TLS_NAME = "clawkerd"
CLAWKERD_PORT = 7700
# The socket bridge (the Bridge RPC): the largest DATA payload either end sends, and the most
# connections open through one container's bridge at once (more are closed as they come).
BRIDGE_MAX_PAYLOAD = 64 * 1024
BRIDGE_MAX_CHANNELS = 64
