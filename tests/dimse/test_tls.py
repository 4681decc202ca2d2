"""DIMSE over TLS with client certificates (certificates made here with ``cryptography``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.data import get_testdata_file

from pixels import Catalog
from pixels.dimse.config import DimseError, ServerConfig, check_listen, client_tls
from pixels.dimse.scu import Client
from pixels.dimse.server import DimseServer


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    folder: str,
    stem: str,
    cn: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    with open(os.path.join(folder, stem + ".pem"), "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(folder, stem + ".key"), "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert, key


def test_tls_with_client_certificates(tmp_path: pytest.TempPathFactory) -> None:
    d = str(tmp_path)
    ca = _cert(d, "ca", "pixels test CA", None, ca=True)
    _cert(d, "server", "localhost", ca)
    _cert(d, "client", "modality", ca)
    other_ca = _cert(d, "other-ca", "someone else", None, ca=True)
    _cert(d, "stranger", "stranger", other_ca)
    p = lambda name: os.path.join(d, name)  # noqa: E731
    config = ServerConfig(
        port=0, tls_cert=p("server.pem"), tls_key=p("server.key"), tls_ca=p("ca.pem"), timeout=5
    )
    # client certificates count as authentication: another address than loopback is allowed
    check_listen(ServerConfig(host="0.0.0.0", tls_cert="x", tls_ca="y"))
    catalog = os.path.join(d, "catalog")
    Catalog(catalog).catalog(str(get_testdata_file("CT_small.dcm")), workers=0)
    server = DimseServer(catalog, config).start()
    peer = f"PIXELS@127.0.0.1:{server.port}"
    try:
        good = client_tls(p("ca.pem"), p("client.pem"), p("client.key"))
        client = Client(peer, tls=good, timeout=10)
        assert client.echo() == 0
        assert len(client.find({"StudyInstanceUID": ""}, "STUDY")) == 1
        # no client certificate, one from another CA, or no TLS at all: no association
        for tls in (
            client_tls(p("ca.pem")),
            client_tls(p("ca.pem"), p("stranger.pem"), p("stranger.key")),
            None,
        ):
            with pytest.raises(DimseError):
                Client(peer, tls=tls, timeout=5).echo()
    finally:
        server.stop()
