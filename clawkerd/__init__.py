"""clawkerd: the PID 1 supervisor inside every agent container (DESIGN §7).

It runs as root and never runs user code in its own process: it serves the control plane's
Session over mTLS gRPC, runs the steps the CP dispatches as the uid/gid the CP names, forks the
user CMD only on AgentReady, forwards signals to it, reaps every child, and exits with the CMD's
status. It imports nothing of clawker's but `proto`, because it ships into agent images.
"""

import os

__all__ = ["CONTAINER_ENVIRONMENT", "__version__"]

# The environment the container gave clawkerd, before the change below; the CMD gets this one.
CONTAINER_ENVIRONMENT = dict(os.environ)
# gRPC's fork handlers abort a child forked while gRPC's threads run, and clawkerd must fork
# with them running (dropping privileges rules out vfork). Set before grpc is first imported.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

# pyproject.toml's version (a unit test keeps them equal). Not importlib.metadata: importing it
# was about a quarter of clawkerd's imports before its listener answered, and in an agent
# image, where the sources are on a .pth and no distribution is installed, it found nothing.
__version__ = "0.1.0"
