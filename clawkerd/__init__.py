"""clawkerd: the PID 1 supervisor inside every agent container (DESIGN §7).

It runs as root and never runs user code in its own process: it serves the control plane's
Session over mTLS gRPC, runs the steps the CP dispatches as the uid/gid the CP names, forks the
user CMD only on AgentReady, forwards signals to it, reaps every child, and exits with the CMD's
status. It imports nothing of clawker's but `proto`, because it ships into agent images.
"""

import os
from importlib import metadata

__all__ = ["CONTAINER_ENVIRONMENT", "__version__"]

# The environment the container gave clawkerd, before the change below; the CMD gets this one.
CONTAINER_ENVIRONMENT = dict(os.environ)
# gRPC's fork handlers abort a child forked while gRPC's threads run, and clawkerd must fork
# with them running (dropping privileges rules out vfork). Set before grpc is first imported.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"


def _distribution_version() -> str:
    try:
        return metadata.version("clawker")
    except metadata.PackageNotFoundError:
        return "0.0.0+source"


__version__ = _distribution_version()
