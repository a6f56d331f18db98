"""The bootstrap material a new agent container receives before its first start: its leaf
certificate and key, the CA, and a single-use registration token, streamed with `put_archive`
into `/run/clawker/bootstrap/` (dir 0700, files 0400, root)."""

from __future__ import annotations

import io
import tarfile

from reconciler.controlplane.identity.pki import ClawkerPKI, thumbprint

__all__ = ["BOOTSTRAP_DIR", "bootstrap_archive"]

BOOTSTRAP_DIR = "run/clawker/bootstrap"


def bootstrap_archive(pki: ClawkerPKI, agent_key: str, container_id: str) -> bytes:
    """A tar to unpack at `/`: the leaf for container `container_id` and a token bound to that
    container and that leaf (by id, not name: a recreate's successor takes the name)."""
    leaf = pki.issue_leaf(agent_key, container_id)
    token = pki.issue_registration_jwt(
        agent_key, container_id, cert_thumbprint=thumbprint(leaf.cert_pem)
    )
    files = {
        "cert.pem": leaf.cert_pem,
        "key.pem": leaf.key_pem,
        "ca.pem": leaf.ca_pem,
        "register.jwt": token.encode(),
    }
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
