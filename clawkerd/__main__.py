"""`python -m clawkerd [--] CMD...`: how every agent container starts its PID 1.

clawkerd's imports (asyncio, gRPC, protobuf) are most of the time between a container's start
and its listener answering the control plane, so before them this process turns off what it
would only pay for at start-up: the cyclic collector while modules are imported (cli.main()
turns it back on) and the stdlib's OpenSSL binding, which asyncio imports and clawkerd never
uses (its TLS is gRPC's own; asyncio works without `ssl`). Only when run as the program: a
process that imports this module keeps both.
"""

from __future__ import annotations

import gc
import sys

if __name__ == "__main__":
    gc.disable()
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]  # None: "not importable"

from clawkerd.cli import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    main()
