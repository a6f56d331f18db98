"""Host credentials an agent uses but never holds (docs/credentials.md): HTTPS git credentials
through the control plane's proxy, and the host's ssh and gpg agents through the socket bridge.

Everything here is the test's own: an HTTPS git server in a container it starts on its network
(its name resolves through the test's upstream resolver, and the spec allows it), a
`git credential` store in its host home, an ssh-agent and a gpg-agent it starts and stops by pid.
"""

from __future__ import annotations

import datetime
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from reconciler import naming
from tests.cleanup import TEST_LABEL
from tests.integration.conftest import Scope
from tests.integration.test_workspace_git import agent_exec, host_git

pytestmark = pytest.mark.docker

SPEC = """\
apiVersion: clawker.dev/v1alpha1
kind: Project
metadata: {name: PROJECT}
spec:
  workspace: {path: ./ws, mode: bind}
  build: {harness: none}
---
apiVersion: clawker.dev/v1alpha1
kind: Agent
metadata: {name: dev, project: PROJECT}
spec:
  command: [sleep, infinity]
"""

# An HTTPS server for git's "dumb" protocol that wants HTTP basic auth: run with python3 in a
# container of the test's own, on the test's network.
GIT_SERVER = """\
import base64, functools, http.server, ssl, sys
expected = "Basic " + base64.b64encode(sys.argv[1].encode()).decode()
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
server = http.server.ThreadingHTTPServer(("", 8443), functools.partial(Handler, directory="/srv"))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/cert.pem", "/tls/key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""
SERVER_IMAGE = "clawker-base:bookworm"


class NameServer:
    """The upstream resolver of the test's control plane, on 127.0.0.1: the test's names only."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()
        self._stop = threading.Event()
        threading.Thread(target=self._serve, name="test-nameserver", daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                continue
            request = DNSRecord.parse(data)
            name = str(request.q.qname).rstrip(".").lower()
            reply = request.reply()
            address = self.records.get(name)
            if address is None:
                reply.header.rcode = RCODE.NXDOMAIN
            elif request.q.qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=300))
            self._sock.sendto(reply.pack(), peer)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def _name(scope: Scope) -> str:
    return f"clawker.{scope.project}.dev"


def _host_home(scope: Scope) -> Path:
    return Path(scope.env["CLAWKER_HOST_HOME"])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def _tls_material(host: str) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) in PEM, the server's for `host`."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: object, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False
            )
        assert isinstance(signer, ec.EllipticCurvePrivateKey)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("clawker test CA", ca_key, "clawker test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(host, key, "clawker test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    return (
        ca.public_bytes(pem),
        leaf.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tree_tar(root: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(root), arcname=prefix)
    return buf.getvalue()


def _start_git_server(scope: Scope, upstream: NameServer, host: str, password: str) -> bytes:
    """An HTTPS git server named `host` on the test network serving repo.git; returns the CA."""
    source = scope.workdir / "source"
    source.mkdir()
    (source / "README.md").write_text("served over https\n")
    host_git(scope, "init", "-q", "-b", "main", cwd=source)
    host_git(scope, "add", "-A", cwd=source)
    host_git(scope, "commit", "-q", "-m", "served", cwd=source)
    bare = scope.workdir / "repo.git"
    host_git(scope, "clone", "-q", "--bare", str(source), str(bare), cwd=scope.workdir)
    host_git(scope, "update-server-info", cwd=bare)
    ca, cert, key = _tls_material(host)
    network = scope.env["CLAWKER_NETWORK"]
    container = scope.api.create_container(
        SERVER_IMAGE,
        ["python3", "-c", GIT_SERVER, f"clawker:{password}"],
        name=f"gitsrv-{scope.run_id}",
        labels={TEST_LABEL: scope.run_id},
        host_config=scope.api.create_host_config(network_mode=network),
        networking_config=scope.api.create_networking_config(
            {network: scope.api.create_endpoint_config(aliases=[host])}  # type: ignore[arg-type]
        ),
    )
    scope.api.put_archive(container, "/srv", _tree_tar(bare, "repo.git"))
    scope.api.put_archive(container, "/", _tar({"tls/cert.pem": cert, "tls/key.pem": key}))
    scope.api.start(container)
    address = scope.api.inspect_container(container)["NetworkSettings"]["Networks"][network][
        "IPAddress"
    ]

    def listening() -> bool:
        try:
            socket.create_connection((address, 8443), timeout=0.5).close()
        except OSError:
            return False
        return True

    _wait_for(listening, f"the test git server at {address}:8443")
    upstream.records[host] = address  # the firewall's resolver asks the test's upstream
    return ca


@pytest.fixture
def upstream(scope: Scope) -> Iterator[NameServer]:
    """The upstream resolver of this test's control plane: only the test's own names."""
    resolver = NameServer()
    scope.env["CLAWKER_DNS_UPSTREAM"] = f"{resolver.address[0]}:{resolver.address[1]}"
    try:
        yield resolver
    finally:
        resolver.close()


def test_git_clone_over_https_uses_the_host_credentials_without_holding_them(
    scope: Scope, upstream: NameServer
) -> None:
    password = "pw-" + secrets.token_hex(12)
    server = f"gitsrv.{scope.run_id}.clawker-test.invalid"
    home = _host_home(scope)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Agent Smith\n\temail = agent@example.invalid\n"
        "[credential]\n\thelper = store\n"
        f'[credential "https://{server}:8443"]\n\tusername = clawker\n'
        '[http "https://example.invalid/"]\n\textraHeader = Authorization: Bearer hdr-secret\n'
    )
    (home / ".git-credentials").write_text(f"https://clawker:{password}@{server}:8443\n")
    spec = SPEC.replace("build:", f"security: {{firewall: {{add_domains: [{server}]}}}}\n  build:")
    scope.clawker("apply", "-f", str(scope.write_spec(spec)), check=0)
    ca = _start_git_server(scope, upstream, server, password)
    ws = (scope.workdir / "ws").resolve()
    (ws / "test-ca.pem").write_bytes(ca)
    name = _name(scope)

    code, out = agent_exec(
        scope,
        name,
        "env",
        f"GIT_SSL_CAINFO={ws}/test-ca.pem",
        "GIT_TERMINAL_PROMPT=0",
        "git",
        "clone",
        "-q",
        f"https://{server}:8443/repo.git",
        "/tmp/clone",
    )
    assert code == 0, out
    assert agent_exec(scope, name, "cat", "/tmp/clone/README.md") == (0, "served over https\n")

    # The identity came along; the credential sections and the header did not.
    code, gitconfig = agent_exec(scope, name, "cat", "/home/claude/.gitconfig")
    assert code == 0 and "Agent Smith" in gitconfig
    assert "credential" not in gitconfig and "hdr-secret" not in gitconfig.lower()
    # The password is nowhere in the container's filesystem (volumes and mounts included)...
    code, out = agent_exec(
        scope,
        name,
        "grep",
        "-rlsF",
        "--exclude-dir=proc",
        "--exclude-dir=sys",
        "--exclude-dir=dev",
        password,
        "/",
        user="root",
    )
    assert (code, out) == (1, "")
    # ... nor in its Docker configuration.
    assert password not in str(scope.inspect(name))
    assert password in (home / ".git-credentials").read_text()  # still the host's

    # Only for hosts on the agent's allowlist: the same store knows this one, but the agent
    # may not reach it, so the proxy does not ask the host's helpers about it at all.
    other = f"other.{scope.run_id}.clawker-test.invalid"
    with (home / ".git-credentials").open("a") as store:
        store.write(f"https://clawker:{password}@{other}\n")
    ask = "printf 'protocol=https\\nhost=%s\\n\\n' {} | git-credential-clawker get"
    assert agent_exec(scope, name, "sh", "-c", ask.format(other)) == (0, "")
    code, out = agent_exec(scope, name, "sh", "-c", ask.format(f"{server}:8443"))
    assert code == 0 and f"password={password}" in out  # the helper does work, for the server
    log = (Path(scope.env["CLAWKER_STATE_DIR"]) / "controlplane.log").read_text()
    assert f"host '{other}' is not on the agent's allowlist" in log


@pytest.fixture
def ssh_agent(scope: Scope, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A test ssh-agent with one key loaded: (its socket, the public key file)."""
    sock = tmp_path / "ssh-agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for(sock.exists, "the test ssh-agent's socket")
        key = tmp_path / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "clawker-test", "-f", str(key)],
            check=True,
        )
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        yield str(sock), key.with_suffix(".pub")
    finally:
        agent.terminate()
        agent.wait(timeout=10)


@pytest.fixture
def gpg_agent(tmp_path: Path) -> Iterator[str]:
    """A test gpg-agent in its own home; yields its extra socket."""
    if shutil.which("gpg-agent") is None:
        pytest.skip("gpg-agent is not installed on this host")
    gnupg = Path("/tmp") / f"clawker-gpg-{secrets.token_hex(4)}"  # socket paths must be short
    gnupg.mkdir(mode=0o700)
    extra = gnupg / "S.gpg-agent.extra"
    agent = subprocess.Popen(
        ["gpg-agent", "--homedir", str(gnupg), "--daemon", "--no-detach"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(extra.exists, "the test gpg-agent's extra socket")
        yield str(extra)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
        shutil.rmtree(gnupg, ignore_errors=True)


def test_the_host_ssh_and_gpg_agents_answer_inside_and_follow_restarts(
    scope: Scope, ssh_agent: tuple[str, Path], gpg_agent: str, tmp_path: Path
) -> None:
    sock, public_key = ssh_agent
    scope.env.update(SSH_AUTH_SOCK=sock, CLAWKER_HOST_GPG_SOCKET=gpg_agent)
    ws = (scope.workdir / "ws").resolve()
    shutil.copy(public_key, ws / "key.pub")
    scope.clawker("apply", "-f", str(scope.write_spec(SPEC)), check=0)
    name = _name(scope)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]

    code, env = agent_exec(scope, name, "env")
    assert code == 0 and "SSH_AUTH_SOCK=/run/clawker/ssh-agent.sock" in env.splitlines()
    code, out = agent_exec(scope, name, "ssh-add", "-l")
    assert code == 0 and fingerprint in out

    # Signing happens in the host's agent: the key never enters the container.
    code, signature = agent_exec(
        scope, name, "sh", "-c", f"echo payload | ssh-keygen -Y sign -f {ws}/key.pub -n clawker"
    )
    assert code == 0 and "BEGIN SSH SIGNATURE" in signature, signature
    (tmp_path / "payload.sig").write_text(signature[signature.index("-----BEGIN") :])
    check = ["ssh-keygen", "-Y", "check-novalidate", "-n", "clawker", "-f", str(public_key)]
    verified = subprocess.run(
        [*check, "-s", str(tmp_path / "payload.sig")],
        input="payload\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr

    code, out = agent_exec(scope, name, "gpg-connect-agent", "GETINFO version", "/bye")
    assert code == 0 and out.startswith("D ") and "OK" in out, out

    # A restart gives the container a new start, and the control plane a new bridge for it.
    scope.api.restart(name, timeout=2)

    def listed() -> bool:
        code, out = agent_exec(scope, name, "ssh-add", "-l")
        return code == 0 and fingerprint in out

    _wait_for(listed, "ssh-add -l after a restart", timeout=60)


def _agent_identities(pid: int) -> bool:
    """The ssh agent answers through the bridge, asked from the host through the container's
    own mount namespace (/proc/PID/root): no `docker exec`, so nothing of the test's own shows
    up in the container's events."""
    path = f"/proc/{pid}/root{naming.SSH_AGENT_SOCKET}"
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)
            client.sendall(b"\x00\x00\x00\x01\x0b")  # SSH_AGENTC_REQUEST_IDENTITIES
            answer = client.recv(5)
    except OSError:
        return False
    return len(answer) == 5 and answer[4] == 12  # SSH_AGENT_IDENTITIES_ANSWER


def _execs(scope: Scope, container_id: str, since: float) -> list[str]:
    """The exec_create events Docker recorded for the container from `since` until now."""
    events = scope.api.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        filters={"type": "container", "container": container_id},
        decode=True,
    )
    return [e.get("Action", "") for e in events if e.get("Action", "").startswith("exec_")]


def test_the_bridge_comes_up_without_a_docker_exec_on_a_restart_and_after_a_cp_restart(
    scope: Scope, ssh_agent: tuple[str, Path]
) -> None:
    sock, _ = ssh_agent
    scope.env.update(SSH_AUTH_SOCK=sock, CLAWKER_RESYNC_SECONDS="2")
    scope.clawker("apply", "-f", str(scope.write_spec(SPEC)), check=0)
    name = _name(scope)
    container_id = scope.inspect(name)["Id"]

    def pid() -> int:
        return int(scope.inspect(name)["State"]["Pid"])

    assert _agent_identities(pid())  # up by the time apply saw the agent Ready

    began = time.time()
    scope.api.restart(name, timeout=2)
    _wait_for(lambda: _agent_identities(pid()), "the ssh agent after a restart", timeout=60)
    assert _execs(scope, container_id, began) == []

    scope.clawker("controlplane", "down", check=0)
    _wait_for(lambda: not _agent_identities(pid()), "the bridge to end with the CP", timeout=30)
    began = time.time()
    scope.clawker("controlplane", "up", check=0)
    _wait_for(lambda: _agent_identities(pid()), "the ssh agent after a CP restart", timeout=60)
    assert _execs(scope, container_id, began) == []
    # The events do show an exec when there is one: the test's own.
    began = time.time()
    assert agent_exec(scope, name, "true")[0] == 0
    assert _execs(scope, container_id, began)
