"""The control plane's PKI: a private CA, the CP's client certificate, one leaf per agent
container, and single-use registration tokens (DESIGN §6).

Everything lives in one directory (0700, files 0600) that only the CP reads. clawkerd accepts
only a peer that chains to this CA with CN `clawker-controlplane`. The CP dials clawkerd with
`ssl_target_name_override` set to the DNS form of the container id it drives
(`container_tls_name`), so TLS itself refuses any other container's clawkerd on every connect,
reconnects included: an IP that Docker handed to a successor never reaches the wrong container.
A registration JWT is signed with its own key (not the CA key), so a token leak never helps to
forge certificates. Pure `cryptography` + `pyjwt`: no Docker, no network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proto import CLAWKERD_CN, CLAWKERD_TLS_NAME, CONTROLPLANE_CN
from reconciler.errors import ClawkerError

__all__ = [
    "CLAWKERD_CN",
    "CLAWKERD_DNS_NAME",
    "CONTROLPLANE_CN",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "ClawkerPKI",
    "LeafBundle",
    "PKIError",
    "RegistrationClaims",
    "RegistrationTokenError",
    "RegistrationTokenExpiredError",
    "RegistrationTokenReplayedError",
    "agent_uri",
    "container_tls_name",
    "container_uri",
    "thumbprint",
]

CLAWKERD_DNS_NAME = CLAWKERD_TLS_NAME
CONTROLPLANE_URI = "clawker://controlplane"
CA_CN = "clawker-ca"
JWT_ISSUER = "clawker-controlplane"
JWT_AUDIENCE = "clawker-register"
JWT_ALGORITHM = "ES256"

CA_VALIDITY = dt.timedelta(days=3650)
CONTROLPLANE_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=5 * 365)
# Re-issue the CP's own certificate when it has less than this left (it is ours to renew).
CONTROLPLANE_RENEW_BEFORE = dt.timedelta(days=30)
# Tolerate small clock differences between the host and a freshly started container.
CLOCK_SKEW = dt.timedelta(minutes=5)
DEFAULT_JWT_TTL = dt.timedelta(hours=24)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CONTROLPLANE_CERT = "controlplane.pem"
CONTROLPLANE_KEY = "controlplane.key"
JWT_SIGNING_KEY = "register-signing.key"
_ALL_FILES = (CA_CERT, CA_KEY, CONTROLPLANE_CERT, CONTROLPLANE_KEY, JWT_SIGNING_KEY)
_KEY_FILES = (CA_KEY, CONTROLPLANE_KEY, JWT_SIGNING_KEY)

# Docker's rule for object names; also what keeps our URIs free of reserved characters.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# A Docker container id: what leaves and tokens are bound to (a name moves on a recreate).
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


class PKIError(ClawkerError):
    """The PKI directory is unusable (partial, unreadable, or too open)."""


class RegistrationTokenError(Exception):
    """A registration JWT was refused; the message says why."""


class RegistrationTokenExpiredError(RegistrationTokenError):
    """The token's `exp` has passed."""


class RegistrationTokenReplayedError(RegistrationTokenError):
    """The token's `jti` was already used: tokens are single use."""


@dataclass(frozen=True)
class LeafBundle:
    """What is streamed into a container's /run/clawker/bootstrap/ (cert.pem, key.pem, ca.pem)."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


@dataclass(frozen=True)
class RegistrationClaims:
    """The verified content of a registration JWT."""

    agent_key: str
    container_id: str
    jti: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    cert_thumbprint: str = ""  # the leaf issued with the token (RFC 8705 `cnf.x5t#S256`)


def agent_uri(agent_key: str) -> str:
    """URI SAN naming an agent: `clawker://agent/<project>/<name>`."""
    project, name = _split_agent_key(agent_key)
    return f"clawker://agent/{project}/{name}"


def container_uri(container_id: str) -> str:
    """URI SAN naming a container: `clawker://container/<container id>`."""
    _check_container_id(container_id)
    return f"clawker://container/{container_id}"


def container_tls_name(container_id: str) -> str:
    """The leaf's DNS SAN for one container, the name the CP verifies on every dial.

    gRPC matches `ssl_target_name_override` against DNS SANs only, and a DNS label holds at
    most 63 characters, so the 64-hex id is split in two labels.
    """
    _check_container_id(container_id)
    return f"{container_id[:32]}.{container_id[32:]}.container.clawker"


def thumbprint(cert_pem: bytes | str) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex (what the registry records)."""
    data = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
    cert = x509.load_pem_x509_certificate(data)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class ClawkerPKI:
    """The CA, the CP client identity and the registration signing key, rooted at a directory."""

    def __init__(
        self,
        directory: Path,
        *,
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        controlplane_cert: x509.Certificate,
        controlplane_key: ec.EllipticCurvePrivateKey,
        signing_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self.directory = directory
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self._controlplane_cert = controlplane_cert
        self._controlplane_key = controlplane_key
        self._signing_key = signing_key

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load_or_create(cls, directory: Path | str, *, now: dt.datetime | None = None) -> ClawkerPKI:
        """Load the PKI from `directory`, creating all of it on first use.

        A directory holding only some of the files is an error rather than a silent new CA:
        a new CA would orphan every container already bootstrapped with the old one.
        """
        root = Path(directory)
        moment = now or _utcnow()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        present = [name for name in _ALL_FILES if (root / name).exists()]
        if not present:
            return cls._create(root, moment)
        missing = [name for name in _ALL_FILES if name not in present]
        if missing:
            raise PKIError(
                f"PKI directory {root} is incomplete: missing {', '.join(missing)}. "
                "Restore the files from a backup; or, to start over (every agent container must "
                f"then be recreated), move {root} away and run the command again."
            )
        pki = cls._load(root)
        pki._renew_controlplane_cert_if_due(moment)
        return pki

    @classmethod
    def _create(cls, root: Path, now: dt.datetime) -> ClawkerPKI:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_CN)])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        signing_key = ec.generate_private_key(ec.SECP256R1())
        cp_cert, cp_key = _issue_controlplane_cert(ca_cert, ca_key, now)
        _write_private(root / CA_KEY, _key_pem(ca_key))
        _write_private(root / JWT_SIGNING_KEY, _key_pem(signing_key))
        _write_private(root / CONTROLPLANE_KEY, _key_pem(cp_key))
        _write_private(root / CONTROLPLANE_CERT, _cert_pem(cp_cert))
        # Written last: its presence marks a complete PKI.
        _write_private(root / CA_CERT, _cert_pem(ca_cert))
        return cls(
            root,
            ca_cert=ca_cert,
            ca_key=ca_key,
            controlplane_cert=cp_cert,
            controlplane_key=cp_key,
            signing_key=signing_key,
        )

    @classmethod
    def _load(cls, root: Path) -> ClawkerPKI:
        for name in _KEY_FILES:
            mode = stat.S_IMODE((root / name).stat().st_mode)
            if mode & 0o077:
                raise PKIError(
                    f"{root / name} is readable by others (mode {mode:04o}); "
                    f"run `chmod 600 {root / name}` and consider the key compromised"
                )
        try:
            return cls(
                root,
                ca_cert=x509.load_pem_x509_certificate((root / CA_CERT).read_bytes()),
                ca_key=_load_ec_key(root / CA_KEY),
                controlplane_cert=x509.load_pem_x509_certificate(
                    (root / CONTROLPLANE_CERT).read_bytes()
                ),
                controlplane_key=_load_ec_key(root / CONTROLPLANE_KEY),
                signing_key=_load_ec_key(root / JWT_SIGNING_KEY),
            )
        except ValueError as exc:
            raise PKIError(f"PKI directory {root} holds an unreadable file: {exc}") from exc

    def _renew_controlplane_cert_if_due(self, now: dt.datetime) -> None:
        if self._controlplane_cert.not_valid_after_utc - now > CONTROLPLANE_RENEW_BEFORE:
            return
        self._controlplane_cert, self._controlplane_key = _issue_controlplane_cert(
            self._ca_cert, self._ca_key, now
        )
        _write_private(self.directory / CONTROLPLANE_KEY, _key_pem(self._controlplane_key))
        _write_private(self.directory / CONTROLPLANE_CERT, _cert_pem(self._controlplane_cert))

    # -- certificates --------------------------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (the trust root on both sides)."""
        return _cert_pem(self._ca_cert)

    @property
    def controlplane_cert_pem(self) -> bytes:
        """The CP's client certificate (CN `clawker-controlplane`)."""
        return _cert_pem(self._controlplane_cert)

    @property
    def controlplane_key_pem(self) -> bytes:
        """The CP's client private key (PKCS#8 PEM)."""
        return _key_pem(self._controlplane_key)

    def issue_leaf(
        self, agent_key: str, container_id: str, *, now: dt.datetime | None = None
    ) -> LeafBundle:
        """Issue clawkerd's server certificate for one agent container.

        CN `clawker-clawkerd`; SANs: DNS `container_tls_name(id)` (the name the CP verifies),
        DNS `clawkerd`, URI `clawker://agent/<project>/<name>` and URI
        `clawker://container/<container id>`.
        """
        moment = now or _utcnow()
        san = x509.SubjectAlternativeName(
            [
                x509.DNSName(container_tls_name(container_id)),
                x509.DNSName(CLAWKERD_DNS_NAME),
                x509.UniformResourceIdentifier(agent_uri(agent_key)),
                x509.UniformResourceIdentifier(container_uri(container_id)),
            ]
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _sign_end_entity(
            self._ca_cert,
            self._ca_key,
            common_name=CLAWKERD_CN,
            key=key,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            now=moment,
            validity=LEAF_VALIDITY,
            san=san,
        )
        return LeafBundle(cert_pem=_cert_pem(cert), key_pem=_key_pem(key), ca_pem=self.ca_pem)

    # -- registration tokens -------------------------------------------------------------------

    def issue_registration_jwt(
        self,
        agent_key: str,
        container_id: str,
        ttl: dt.timedelta = DEFAULT_JWT_TTL,
        *,
        now: dt.datetime | None = None,
        cert_thumbprint: str = "",
    ) -> str:
        """Sign a single-use registration token (ES256) bound to one container's id."""
        _split_agent_key(agent_key)
        _check_container_id(container_id)
        issued = now or _utcnow()
        claims: dict[str, Any] = {
            "iss": JWT_ISSUER,
            "sub": agent_key,
            "aud": JWT_AUDIENCE,
            "jti": secrets.token_urlsafe(18),
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "cid": container_id,
        }
        if cert_thumbprint:
            claims["cnf"] = {"x5t#S256": cert_thumbprint}
        return jwt.encode(claims, self._signing_key, algorithm=JWT_ALGORITHM)

    def verify_registration_jwt(
        self,
        token: str,
        expected_container_id: str,
        seen_jti: Callable[[str], bool],
    ) -> RegistrationClaims:
        """Verify signature, expiry, claims and single use; return the claims.

        `seen_jti(jti)` must record the jti and return True if it was already recorded (the
        registry does this atomically). It is called last, so a token refused for another
        reason does not burn its jti. Raises RegistrationTokenError (or a subclass).
        """
        try:
            claims = jwt.decode(
                token,
                self._signing_key.public_key(),
                algorithms=[JWT_ALGORITHM],
                audience=JWT_AUDIENCE,
                issuer=JWT_ISSUER,
                options={"require": ["iss", "sub", "aud", "jti", "iat", "exp", "cid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise RegistrationTokenExpiredError(
                "registration token expired; recreate the container to get a new one"
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise RegistrationTokenError(
                "registration token signature is invalid (not signed by this control plane)"
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise RegistrationTokenError(
                f"registration token has the wrong audience (want {JWT_AUDIENCE!r})"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise RegistrationTokenError(
                f"registration token has the wrong issuer (want {JWT_ISSUER!r})"
            ) from exc
        except jwt.PyJWTError as exc:
            raise RegistrationTokenError(f"registration token refused: {exc}") from exc

        container_id = claims["cid"]
        if container_id != expected_container_id:
            raise RegistrationTokenError(
                f"registration token names container {str(container_id)[:12]!r}, "
                f"but it came from {expected_container_id[:12]!r}"
            )
        agent_key = claims["sub"]
        try:
            _split_agent_key(agent_key)
        except ValueError as exc:
            raise RegistrationTokenError(f"registration token has a bad subject: {exc}") from exc
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise RegistrationTokenError("registration token has an empty jti")
        if seen_jti(jti):
            raise RegistrationTokenReplayedError(
                f"registration token was already used (jti {jti}); tokens are single use"
            )
        return RegistrationClaims(
            agent_key=agent_key,
            container_id=container_id,
            jti=jti,
            issued_at=dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
            expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
            cert_thumbprint=str((claims.get("cnf") or {}).get("x5t#S256", "")),
        )


def _issue_controlplane_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign_end_entity(
        ca_cert,
        ca_key,
        common_name=CONTROLPLANE_CN,
        key=key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        now=now,
        validity=CONTROLPLANE_VALIDITY,
        # Web PKI profiles (and cryptography's client verifier) want a SAN on every leaf.
        san=x509.SubjectAlternativeName([x509.UniformResourceIdentifier(CONTROLPLANE_URI)]),
    )
    return cert, key


def _sign_end_entity(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    now: dt.datetime,
    validity: dt.timedelta,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    # A certificate never outlives the CA that vouches for it.
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _split_agent_key(agent_key: str) -> tuple[str, str]:
    project, sep, name = agent_key.partition("/")
    if not sep:
        raise ValueError(f"agent key {agent_key!r} must look like <project>/<name>")
    _check_name(project, "project name")
    _check_name(name, "agent name")
    return project, name


def _check_name(value: str, what: str) -> None:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")


def _check_container_id(value: str) -> None:
    if not _CONTAINER_ID.fullmatch(value):
        raise ValueError(f"container id {value!r} must be Docker's 64 lowercase hex digits")


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path} is not an EC private key")
    return key


def _write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file atomically: a crash never leaves half a key behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
