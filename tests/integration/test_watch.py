"""Watch mode against the real engine: a real `clawker apply --watch` process, real edits,
real `docker rm -f` / `docker stop`, and a private dockerd that is restarted under the watcher.

Every wait has a deadline and polls; no test sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from reconciler.controlplane import lifecycle
from reconciler.controlplane.paths import StatePaths
from tests.integration.conftest import REPO, Scope

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
  agent: {env: {GREETING: hello}}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: a, project: PROJECT}
spec:
  command: [sleep, infinity]
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: b, project: PROJECT}
spec:
  command: [sleep, infinity]
"""

A_SPEC = "metadata: {name: a, project: PROJECT}\nspec:\n  command: [sleep, infinity]\n"


class WatchProcess:
    """`clawker apply -f SPEC --watch` as a subprocess; its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def mark(self) -> int:
        """A position in the output: `wait_for(..., after=mark)` looks only past it."""
        with self._cond:
            return len(self.lines)

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = 120.0) -> int:
        """The index of the first line past `after` that matches `pattern` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(after, len(self.lines)):
                    if regex.search(self.lines[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.5))
        raise AssertionError(
            f"no line matching {pattern!r} within {timeout:.0f}s "
            f"(exit {self.proc.poll()})\n--- output\n{self.output}"
        )

    def stop(self, signum: int = signal.SIGINT, timeout: float = 60.0) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def context(self) -> str:
        return f"--- watch output\n{self.output}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def start_watch(scope: Scope) -> Iterator[Callable[..., WatchProcess]]:
    started: list[WatchProcess] = []

    def start(
        spec: Path, *extra: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
    ) -> WatchProcess:
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "cli.main",
            "apply",
            "-f",
            str(spec),
            "--watch",
            *extra,
        ]
        watcher = WatchProcess(argv, {**scope.env, **(env or {})})
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.kill()  # by its own pid; a test that passed has stopped it already


def _name(scope: Scope, agent: str) -> str:
    return f"clawker.{scope.project}.{agent}"


def _state(api: docker.APIClient, name: str) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    return info


def _eventually(
    check: Callable[[], Any], what: str, timeout: float = 120.0, context: Callable[[], str] = str
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s\n{context()}")
        time.sleep(0.2)


def _ready(scope: Scope, spec: Path, env: dict[str, str] | None = None) -> dict[str, bool]:
    """`clawker get agents -o json`: agent -> Ready, as the control plane sees it."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "get", "agents", "-f", str(spec), "-o", "json"],
        env={**scope.env, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        return {}
    items = json.loads(proc.stdout)["items"]
    return {
        item["agent"]: any(c["type"] == "Ready" and c["status"] for c in item["conditions"])
        for item in items
    }


def _all_ready(scope: Scope, spec: Path, env: dict[str, str] | None = None) -> bool:
    ready = _ready(scope, spec, env)
    return bool(ready) and all(ready.values())


def _converged(scope: Scope, watcher: WatchProcess, spec: Path) -> None:
    watcher.wait_for(r"watching .* and Docker events")
    _eventually(lambda: _all_ready(scope, spec), "the agents are not Ready", 60, watcher.context)


# -- on the main engine -------------------------------------------------------------------------


def test_editing_env_recreates_that_agent_and_only_that_agent(
    scope: Scope, start_watch: Callable[..., WatchProcess]
) -> None:
    spec = scope.write_spec(SPEC)
    watcher = start_watch(spec, "--resync", "300")
    _converged(scope, watcher, spec)
    a, b = scope.inspect(_name(scope, "a")), scope.inspect(_name(scope, "b"))

    mark = watcher.mark()
    text = spec.read_text()
    a_spec = A_SPEC.replace("PROJECT", scope.project)
    spec.write_text(text.replace(a_spec, a_spec + "  agent: {env: {EXTRA: one}}\n"))
    header = watcher.wait_for(
        rf"pass \d+: {scope.project}/a \(file changed: agents\.yaml\)", after=mark
    )
    watcher.wait_for(rf"^agent/{scope.project}/a recreated$", after=header)
    new_a = scope.inspect(_name(scope, "a"))
    assert new_a["Id"] != a["Id"] and new_a["State"]["Running"]
    assert "EXTRA=one" in new_a["Config"]["Env"]
    same_b = scope.inspect(_name(scope, "b"))
    assert (same_b["Id"], same_b["State"]["StartedAt"]) == (b["Id"], b["State"]["StartedAt"])
    assert not re.search(rf"pass \d+: {scope.project}/b", "\n".join(watcher.lines[mark:]))
    _eventually(lambda: _all_ready(scope, spec), "the agents are not Ready", 60)

    assert watcher.stop(signal.SIGINT) == 0
    assert "stopped watching; the agents keep running" in watcher.output
    assert all(scope.inspect(_name(scope, n))["State"]["Running"] for n in ("a", "b"))


def test_docker_rm_f_of_an_agent_container_brings_it_back(
    scope: Scope, start_watch: Callable[..., WatchProcess]
) -> None:
    spec = scope.write_spec(SPEC)
    watcher = start_watch(spec, "--resync", "300")  # the event, not the resync, must do it
    _converged(scope, watcher, spec)
    old = scope.inspect(_name(scope, "a"))["Id"]
    volumes = scope.volumes()

    mark = watcher.mark()
    scope.api.remove_container(_name(scope, "a"), force=True)
    # `rm -f` is kill, die, destroy: the pass may say either or both, but it is the event's.
    watcher.wait_for(rf"pass \d+: {scope.project}/a \(.*container (removed|died)", after=mark)

    def back() -> bool:
        info = _state(scope.api, _name(scope, "a"))
        return bool(info and info["Id"] != old and info["State"]["Running"])

    _eventually(back, "the container did not come back", 60, watcher.context)
    _eventually(lambda: _all_ready(scope, spec), "the agents are not Ready", 60)
    assert scope.volumes() == volumes  # watch never removes (or replaces) a volume
    assert watcher.stop(signal.SIGTERM) == 0


def test_docker_stop_brings_the_agent_back_to_running(
    scope: Scope, start_watch: Callable[..., WatchProcess]
) -> None:
    spec = scope.write_spec(SPEC)
    watcher = start_watch(spec, "--resync", "300")
    _converged(scope, watcher, spec)
    before = scope.inspect(_name(scope, "b"))

    mark = watcher.mark()
    scope.api.stop(_name(scope, "b"), timeout=10)
    watcher.wait_for(rf"pass \d+: {scope.project}/b \(.*container died", after=mark)

    def restarted() -> bool:
        info = scope.inspect(_name(scope, "b"))
        return bool(
            info["State"]["Running"] and info["State"]["StartedAt"] != before["State"]["StartedAt"]
        )

    _eventually(restarted, "the container is not running again", 60, watcher.context)
    assert scope.inspect(_name(scope, "b"))["Id"] == before["Id"]  # started in place
    _eventually(lambda: _all_ready(scope, spec), "the agents are not Ready", 60)
    assert watcher.stop() == 0


def test_an_invalid_edit_changes_nothing_and_the_next_valid_edit_applies(
    scope: Scope, start_watch: Callable[..., WatchProcess]
) -> None:
    spec = scope.write_spec(SPEC)
    watcher = start_watch(spec, "--resync", "300")
    _converged(scope, watcher, spec)
    ids = {c["Id"] for c in scope.containers()}

    mark = watcher.mark()
    good = spec.read_text()
    spec.write_text(good.replace("  agent: {env: {GREETING: hello}}\n", "  agnet: {}\n"))
    failed = watcher.wait_for(r"the specs do not validate; keeping the last good state", after=mark)
    watcher.wait_for(
        rf"error: {re.escape(str(spec))}:7:3: spec\.agnet: unknown key 'agnet'.*did you mean",
        after=failed,
    )
    assert {c["Id"] for c in scope.containers()} == ids
    assert all(c["State"] == "running" for c in scope.containers())

    mark = watcher.mark()
    spec.write_text(good.replace("GREETING: hello", "GREETING: bonjour"))
    watcher.wait_for(rf"^agent/{scope.project}/a recreated$", after=mark)
    watcher.wait_for(rf"^agent/{scope.project}/b recreated$", after=mark)
    for agent in ("a", "b"):
        assert "GREETING=bonjour" in scope.inspect(_name(scope, agent))["Config"]["Env"]
    assert watcher.stop() == 0


def test_a_build_change_builds_the_project_image_once_for_both_agents(
    scope: Scope, start_watch: Callable[..., WatchProcess]
) -> None:
    spec = scope.write_spec(SPEC)
    watcher = start_watch(spec, "--resync", "300")
    _converged(scope, watcher, spec)
    image = scope.inspect(_name(scope, "a"))["Image"]

    mark = watcher.mark()
    # Naming the base the default resolves to anyway: new image inputs, same layers (cached).
    spec.write_text(
        spec.read_text().replace(
            "build: {harness: none}", "build: {harness: none, base_image: clawker-base:bookworm}"
        )
    )
    for agent in ("a", "b"):
        watcher.wait_for(rf"^agent/{scope.project}/{agent} recreated$", after=mark)
    after = watcher.lines[mark:]
    # Both passes planned the build; the second found it done under the image's lock.
    assert sum("+ build image" in line for line in after) == 2, watcher.context()
    assert sum("✓ build image" in line for line in after) == 1, watcher.context()
    new = {scope.inspect(_name(scope, agent))["Image"] for agent in ("a", "b")}
    assert len(new) == 1 and image not in new
    assert watcher.stop() == 0


# -- a private dockerd, restarted under the watcher ---------------------------------------------


class PrivateDockerd:
    """A dockerd of its own: socket, data-root, exec-root, pid file, config file and bridge,
    without iptables rules, in a network namespace of its own.

    The namespace matters: a dockerd started with `--bridge=<another>` deletes the host's
    docker0 (seen here), which every other test's image builds need. Inside its own namespace
    it can only touch that namespace's links. Only the network namespace is entered
    (`nsenter --net`), so cgroups and bpffs stay the host's, as the firewall needs."""

    def __init__(self, root: Path, bridge: str, n: int, netns: str) -> None:
        self.root, self.bridge, self.netns = root, bridge, netns
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        (root / "daemon.json").write_text("{}")
        self.argv = [
            *in_netns(netns),
            "dockerd",
            f"--host={self.host}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'docker.pid'}",
            f"--config-file={root / 'daemon.json'}",
            f"--bridge={bridge}",
            "--iptables=false",
            "--ip-masq=false",
            f"--default-address-pool=base=10.232.{16 * n}.0/20,size=24",
            "--shutdown-timeout=2",
            "--log-level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                docker.APIClient(base_url=self.host, version="auto").ping()
                return
            except Exception:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        log_tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"the private dockerd did not come up\n{log_tail}")

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # by its own pid: never the main daemon
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="auto")


def in_netns(netns: str) -> list[str]:
    """The argv prefix that runs a command in `netns`'s network only (see PrivateDockerd)."""
    return ["nsenter", f"--net=/var/run/netns/{netns}"]


def _free_subnet_index() -> int:
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    for n in range(1, 16):
        if f"10.231.{n}." not in routes and f"10.232.{16 * n}." not in routes:
            return n
    raise AssertionError("no free 10.231.n.0/24 subnet for the private dockerd's bridge")


def _unmount_under(root: Path) -> None:
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{root}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def private_dockerd(scope: Scope, docker_api: docker.APIClient) -> Iterator[PrivateDockerd]:
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root")
    if not docker_api.images(name="clawker-base:bookworm", quiet=True):
        pytest.fail("clawker-base:bookworm is missing on the main engine; run `make setup`")
    root = Path(tempfile.mkdtemp(prefix="clwd-", dir="/tmp"))  # short: unix socket paths
    n = _free_subnet_index()
    tag = uuid.uuid4().hex[:8]
    bridge, ns = f"clwd{tag}", f"clwd-{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    daemon = PrivateDockerd(root, bridge, n, ns)
    try:
        for argv in (
            ["link", "set", "lo", "up"],
            ["link", "add", "name", bridge, "type", "bridge"],
            ["addr", "add", f"10.231.{n}.1/24", "dev", bridge],
            ["link", "set", bridge, "up"],
        ):
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        daemon.start()
        # The agent image builds FROM the base image: copy it over (no registry is reachable).
        save = subprocess.Popen(["docker", "save", "clawker-base:bookworm"], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "-H", daemon.host, "load", "-q"],
            stdin=save.stdout,
            check=True,
            capture_output=True,
        )
        assert save.wait(120) == 0
        yield daemon
    finally:
        lifecycle.stop(StatePaths(Path(scope.env["CLAWKER_STATE_DIR"])))  # it talks to this daemon
        if daemon.proc is not None and daemon.proc.poll() is None:
            api = daemon.api()
            for c in api.containers(all=True):
                api.remove_container(c["Id"], force=True)
        daemon.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)  # its bridge goes with it
        _unmount_under(root)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)


@pytest.mark.root
def test_a_docker_daemon_restart_under_the_watcher_ends_converged(
    scope: Scope, private_dockerd: PrivateDockerd, start_watch: Callable[..., WatchProcess]
) -> None:
    env = {"DOCKER_HOST": private_dockerd.host}
    spec = scope.write_spec(SPEC)
    # A long resync: coming back must be the event stream's reconnect-and-re-list, not a timer.
    # The watcher (and the control plane it starts) share the daemon's network: the CP dials
    # clawkerd at container addresses that exist only there.
    watcher = start_watch(spec, "--resync", "300", env=env, prefix=in_netns(private_dockerd.netns))
    watcher.wait_for(r"watching .* and Docker events", timeout=180)
    _eventually(lambda: _all_ready(scope, spec, env), "not Ready on the private dockerd", 60)
    api = private_dockerd.api()
    names = [_name(scope, "a"), _name(scope, "b")]
    started = {n: api.inspect_container(n)["State"]["StartedAt"] for n in names}
    assert not _state(scope.api, names[0])  # nothing went to the main engine

    mark = watcher.mark()
    private_dockerd.stop()
    lost = watcher.wait_for(r"docker event stream (ended|failed)", after=mark, timeout=60)
    # Down for good while the watcher tries again: at least one reconnect must fail and back off.
    watcher.wait_for(r"docker event stream failed: .*; reconnecting in", after=lost, timeout=60)
    private_dockerd.start()
    watcher.wait_for(r"docker event stream reconnected; re-listing every agent", after=mark)

    def running_again() -> bool:
        api = private_dockerd.api()
        states = [api.inspect_container(n)["State"] for n in names]
        return all(s["Running"] and s["StartedAt"] not in started.values() for s in states)

    _eventually(running_again, "the agents are not running again", 90, watcher.context)
    _eventually(
        lambda: _all_ready(scope, spec, env), "not Ready after the restart", 90, watcher.context
    )
    assert watcher.stop() == 0
