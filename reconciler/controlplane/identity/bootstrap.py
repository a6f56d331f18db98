"""The bootstrap material a new agent container receives before its first start: its leaf
certificate and key, the CA, and a single-use registration token, in `/run/clawker/bootstrap/`
(dir 0700, files 0400, root). The control plane writes them into the container's host
directory, which is bound there (controlplane/host_dirs.py); a container made without one gets
them as an archive to copy in."""

from __future__ import annotations

import io
import tarfile

from reconciler.controlplane.identity.pki import ClawkerPKI, thumbprint

__all__ = ["BOOTSTRAP_DIR", "bootstrap_archive", "bootstrap_files"]

BOOTSTRAP_DIR = "run/clawker/bootstrap"


def bootstrap_files(pki: ClawkerPKI, agent_key: str, container_id: str) -> dict[str, bytes]:
    """The leaf for container `container_id` and a token bound to that container and that leaf
    (by id, not name: a recreate's successor takes the name), by file name."""
    leaf = pki.issue_leaf(agent_key, container_id)
    token = pki.issue_registration_jwt(
        agent_key, container_id, cert_thumbprint=thumbprint(leaf.cert_pem)
    )
    return {
        "cert.pem": leaf.cert_pem,
        "key.pem": leaf.key_pem,
        "ca.pem": leaf.ca_pem,
        "register.jwt": token.encode(),
    }


def bootstrap_archive(files: dict[str, bytes]) -> bytes:
    """`files` as a tar to unpack at `/`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory, mode in (("run/clawker", 0o755), (BOOTSTRAP_DIR, 0o700)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(f"{BOOTSTRAP_DIR}/{name}")
            info.size, info.mode = len(content), 0o400
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()
