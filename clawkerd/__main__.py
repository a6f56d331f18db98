"""`python -m clawkerd [--] CMD...`: how every agent container starts its PID 1.

clawkerd's imports (asyncio, gRPC, protobuf) are most of the time between a container's start
and its listener answering the control plane, so before them this process turns off what it
would only pay for at start-up:
- the cyclic collector while modules are imported (cli.main() turns it back on);
- the stdlib's OpenSSL binding, which asyncio imports and clawkerd never uses (its TLS is
  gRPC's own; asyncio works without `ssl`);
- protobuf's pure-Python message classes (`python_message`, with `text_format` and the rest
  they import), which protobuf's descriptor pool imports even when its C implementation (upb)
  builds the messages: that module loads on its first use instead (importlib's LazyLoader),
  which with upb is never. 5 % of the start-up's instructions (callgrind, in the agent image).
Only when run as the program: a process that imports this module keeps all three.
"""

from __future__ import annotations

import gc
import sys

_DEFERRED = frozenset({"google.protobuf.internal.python_message"})


class _DeferredImports:
    """A meta-path finder that gives the modules of `_DEFERRED` a lazy loader: importing one
    binds a module object whose code runs on the first attribute read."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> object:
        if name not in _DEFERRED:
            return None
        import importlib.machinery  # noqa: PLC0415 - only for the deferred modules
        import importlib.util  # noqa: PLC0415

        spec = importlib.machinery.PathFinder.find_spec(name, path)  # type: ignore[arg-type]
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


if __name__ == "__main__":
    gc.disable()
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]  # None: "not importable"
    sys.meta_path.insert(0, _DeferredImports)  # type: ignore[arg-type]

from clawkerd.cli import main, run  # noqa: E402 - after the start-up switches above

__all__ = ["main", "run"]

if __name__ == "__main__":
    main()
