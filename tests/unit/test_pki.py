"""The control plane's PKI: certificates that chain and say what DESIGN §6 says, and
registration tokens that are refused for every reason they should be."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import stat
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from reconciler.controlplane.identity.pki import (
    ClawkerPKI,
    PKIError,
    RegistrationTokenError,
    RegistrationTokenExpiredError,
    RegistrationTokenReplayedError,
    container_tls_name,
    thumbprint,
)

AGENT_KEY = "myapp/dev"
CONTAINER = "ab" * 32  # a Docker container id
OTHER_CONTAINER = "cd" * 32


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClawkerPKI:
    return ClawkerPKI.load_or_create(tmp_path_factory.mktemp("pki") / "ca")


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


class _SeenJti:
    """The registry's check-and-record, in memory."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, jti: str) -> bool:
        already = jti in self.seen
        self.seen.add(jti)
        return already


def _signing_key(pki: ClawkerPKI) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (pki.directory / "register-signing.key").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _claims(**overrides: object) -> dict[str, object]:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims: dict[str, object] = {
        "iss": "clawker-controlplane",
        "sub": AGENT_KEY,
        "aud": "clawker-register",
        "jti": "handmade",
        "iat": now,
        "exp": now + 3600,
        "cid": CONTAINER,
    }
    claims.update(overrides)
    return claims


# -- directory -------------------------------------------------------------------------------


def test_the_pki_directory_is_private_and_reloads_to_the_same_ca(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    first = ClawkerPKI.load_or_create(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    files = sorted(p.name for p in root.iterdir())
    assert files == sorted(
        ["ca.pem", "ca.key", "controlplane.pem", "controlplane.key", "register-signing.key"]
    )
    for path in root.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    second = ClawkerPKI.load_or_create(root)
    assert second.ca_pem == first.ca_pem
    assert second.controlplane_cert_pem == first.controlplane_cert_pem
    token = first.issue_registration_jwt(AGENT_KEY, CONTAINER)
    assert second.verify_registration_jwt(token, CONTAINER, _SeenJti()).agent_key == AGENT_KEY


def test_a_partial_pki_directory_is_refused_not_replaced(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    ClawkerPKI.load_or_create(root)
    (root / "ca.key").unlink()
    with pytest.raises(PKIError, match=r"incomplete: missing ca\.key"):
        ClawkerPKI.load_or_create(root)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    ClawkerPKI.load_or_create(root)
    (root / "register-signing.key").chmod(0o644)
    with pytest.raises(PKIError, match="readable by others"):
        ClawkerPKI.load_or_create(root)


def test_the_controlplane_certificate_is_renewed_when_it_is_about_to_expire(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pki"
    old = ClawkerPKI.load_or_create(root)
    expiry = _cert(old.controlplane_cert_pem).not_valid_after_utc
    renewed = ClawkerPKI.load_or_create(root, now=expiry - dt.timedelta(days=1))
    assert renewed.controlplane_cert_pem != old.controlplane_cert_pem
    assert renewed.ca_pem == old.ca_pem
    assert (root / "controlplane.pem").read_bytes() == renewed.controlplane_cert_pem


# -- certificates ----------------------------------------------------------------------------


def test_the_ca_is_a_self_signed_p256_ca(pki: ClawkerPKI) -> None:
    ca = _cert(pki.ca_pem)
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert lifetime >= dt.timedelta(days=3650)


def test_the_leaf_chains_to_the_ca_and_names_agent_and_container(pki: ClawkerPKI) -> None:
    bundle = pki.issue_leaf(AGENT_KEY, CONTAINER)
    assert bundle.ca_pem == pki.ca_pem
    leaf = _cert(bundle.cert_pem)
    ca = _cert(pki.ca_pem)
    # A full path validation with the name the CP dials (ssl_target_name_override).
    name = x509.DNSName(container_tls_name(CONTAINER))
    chain = PolicyBuilder().store(Store([ca])).build_server_verifier(name).verify(leaf, [])
    assert chain[-1] == ca
    assert _cn(leaf) == "clawker-clawkerd"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [container_tls_name(CONTAINER), "clawkerd"]
    assert sorted(san.get_values_for_type(x509.UniformResourceIdentifier)) == [
        "clawker://agent/myapp/dev",
        f"clawker://container/{CONTAINER}",
    ]
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = serialization.load_pem_private_key(bundle.key_pem, password=None)
    assert key.public_key() == leaf.public_key()


def test_the_leaf_does_not_verify_under_another_name_or_another_ca(
    pki: ClawkerPKI, tmp_path: Path
) -> None:
    leaf = _cert(pki.issue_leaf(AGENT_KEY, CONTAINER).cert_pem)
    ca = _cert(pki.ca_pem)
    wrong_name = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("other"))
    with pytest.raises(x509.verification.VerificationError):
        wrong_name.verify(leaf, [])
    other_ca = _cert(ClawkerPKI.load_or_create(tmp_path / "other").ca_pem)
    other = PolicyBuilder().store(Store([other_ca])).build_server_verifier(x509.DNSName("clawkerd"))
    with pytest.raises(x509.verification.VerificationError):
        other.verify(leaf, [])


def test_a_leaf_does_not_verify_as_another_container(pki: ClawkerPKI) -> None:
    """What the CP's TLS checks on every dial: a successor at the same address is refused."""
    leaf = _cert(pki.issue_leaf(AGENT_KEY, CONTAINER).cert_pem)
    store = Store([_cert(pki.ca_pem)])
    other = x509.DNSName(container_tls_name(OTHER_CONTAINER))
    with pytest.raises(x509.verification.VerificationError):
        PolicyBuilder().store(store).build_server_verifier(other).verify(leaf, [])


@pytest.mark.parametrize("container_id", ["clawker.myapp.dev", "AB" * 32, "ab" * 31, ""])
def test_leaves_and_tokens_need_a_docker_container_id(pki: ClawkerPKI, container_id: str) -> None:
    with pytest.raises(ValueError, match="container id"):
        pki.issue_leaf(AGENT_KEY, container_id)
    with pytest.raises(ValueError, match="container id"):
        pki.issue_registration_jwt(AGENT_KEY, container_id)


def test_the_controlplane_certificate_is_a_client_cert_with_its_cn(pki: ClawkerPKI) -> None:
    cert = _cert(pki.controlplane_cert_pem)
    ca = _cert(pki.ca_pem)
    PolicyBuilder().store(Store([ca])).build_client_verifier().verify(cert, [])
    assert _cn(cert) == "clawker-controlplane"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = serialization.load_pem_private_key(pki.controlplane_key_pem, password=None)
    assert key.public_key() == cert.public_key()


@pytest.mark.parametrize("agent_key", ["dev", "myapp/", "/dev", "my app/dev", "a/b/c"])
def test_a_malformed_agent_key_is_refused(pki: ClawkerPKI, agent_key: str) -> None:
    with pytest.raises(ValueError, match=r"agent key|name"):
        pki.issue_leaf(agent_key, CONTAINER)


def test_thumbprint_is_the_sha256_of_the_der(pki: ClawkerPKI) -> None:
    pem = pki.issue_leaf(AGENT_KEY, CONTAINER).cert_pem
    der = _cert(pem).public_bytes(serialization.Encoding.DER)
    assert thumbprint(pem) == hashlib.sha256(der).hexdigest()
    assert thumbprint(pem.decode()) == thumbprint(pem)
    assert thumbprint(pki.issue_leaf(AGENT_KEY, CONTAINER).cert_pem) != thumbprint(pem)


# -- registration tokens ---------------------------------------------------------------------


def test_a_registration_token_round_trips(pki: ClawkerPKI) -> None:
    token = pki.issue_registration_jwt(AGENT_KEY, CONTAINER)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    claims = pki.verify_registration_jwt(token, CONTAINER, _SeenJti())
    assert claims.agent_key == AGENT_KEY
    assert claims.container_id == CONTAINER
    assert claims.expires_at - claims.issued_at == dt.timedelta(hours=24)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["iss"] == "clawker-controlplane"
    assert raw["aud"] == "clawker-register"
    assert raw["sub"] == AGENT_KEY
    assert raw["cid"] == CONTAINER
    assert raw["jti"] == claims.jti
    other = pki.issue_registration_jwt(AGENT_KEY, CONTAINER)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != claims.jti


def test_an_expired_token_is_refused(pki: ClawkerPKI) -> None:
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    token = pki.issue_registration_jwt(AGENT_KEY, CONTAINER, now=issued)
    with pytest.raises(RegistrationTokenExpiredError, match="expired"):
        pki.verify_registration_jwt(token, CONTAINER, _SeenJti())


def test_a_replayed_token_is_refused(pki: ClawkerPKI) -> None:
    seen = _SeenJti()
    token = pki.issue_registration_jwt(AGENT_KEY, CONTAINER)
    pki.verify_registration_jwt(token, CONTAINER, seen)
    with pytest.raises(RegistrationTokenReplayedError, match="already used"):
        pki.verify_registration_jwt(token, CONTAINER, seen)


def test_a_token_refused_for_another_reason_does_not_burn_its_jti(pki: ClawkerPKI) -> None:
    seen = _SeenJti()
    token = pki.issue_registration_jwt(AGENT_KEY, CONTAINER)
    with pytest.raises(RegistrationTokenError):
        pki.verify_registration_jwt(token, OTHER_CONTAINER, seen)
    assert seen.seen == set()
    pki.verify_registration_jwt(token, CONTAINER, seen)


def test_a_token_for_another_container_is_refused(pki: ClawkerPKI) -> None:
    token = pki.issue_registration_jwt(AGENT_KEY, CONTAINER)
    with pytest.raises(RegistrationTokenError, match="names container"):
        pki.verify_registration_jwt(token, OTHER_CONTAINER, _SeenJti())


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "something-else"}, "audience"),
        ({"iss": "someone-else"}, "issuer"),
        ({"sub": "not-an-agent-key"}, "subject"),
    ],
)
def test_a_token_with_wrong_claims_is_refused(
    pki: ClawkerPKI, overrides: dict[str, object], reason: str
) -> None:
    token = jwt.encode(_claims(**overrides), _signing_key(pki), algorithm="ES256")
    with pytest.raises(RegistrationTokenError, match=reason):
        pki.verify_registration_jwt(token, CONTAINER, _SeenJti())


def test_a_token_missing_a_claim_is_refused(pki: ClawkerPKI) -> None:
    claims = _claims()
    del claims["jti"]
    token = jwt.encode(claims, _signing_key(pki), algorithm="ES256")
    with pytest.raises(RegistrationTokenError, match="jti"):
        pki.verify_registration_jwt(token, CONTAINER, _SeenJti())


def test_a_tampered_token_is_refused(pki: ClawkerPKI) -> None:
    header, payload, signature = pki.issue_registration_jwt(AGENT_KEY, CONTAINER).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(RegistrationTokenError, match="signature"):
        pki.verify_registration_jwt(f"{header}.{payload}.{forged}", CONTAINER, _SeenJti())
    # A payload swapped under a valid signature (another container's claims) fails the same way.
    other_payload = pki.issue_registration_jwt(AGENT_KEY, OTHER_CONTAINER).split(".")[1]
    with pytest.raises(RegistrationTokenError, match="signature"):
        pki.verify_registration_jwt(
            f"{header}.{other_payload}.{signature}", OTHER_CONTAINER, _SeenJti()
        )


def test_a_token_signed_by_another_pki_or_unsigned_is_refused(
    pki: ClawkerPKI, tmp_path: Path
) -> None:
    stranger = ClawkerPKI.load_or_create(tmp_path / "stranger")
    token = stranger.issue_registration_jwt(AGENT_KEY, CONTAINER)
    with pytest.raises(RegistrationTokenError, match="signature"):
        pki.verify_registration_jwt(token, CONTAINER, _SeenJti())
    unsigned = jwt.encode(_claims(), key="", algorithm="none")
    with pytest.raises(RegistrationTokenError):
        pki.verify_registration_jwt(unsigned, CONTAINER, _SeenJti())
