#!/usr/bin/python3
"""The peers `make bench` measures `kube-cert-agent check` against (benches/check_inventory.rs).

    check_peers.py parse  DIR   every *.crt in DIR: parse it and report subject, issuer,
                                serial, validity, SANs, isCA (the floor: no key is decoded)
    check_peers.py verify DIR   what `check` does: the same plus the key type (the public key
                                decoded), the signature against the CA that issued it, and
                                whether the *.key beside a certificate matches it

Both print one JSON array, as `check --output json` does. python3-cryptography (Debian's
package) does the X.509 work. (Debian 12's OpenSSL 3.0 takes ~1 ms to decode an EC public
key, which is most of `verify`'s time.)
"""

import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def key_type(pub):
    if isinstance(pub, rsa.RSAPublicKey):
        return f"RSA {pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return f"ECDSA {pub.curve.name}"
    return type(pub).__name__


def sans(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(x509.DNSName), [
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    ]


def is_ca(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def row(path, cert):
    dns, ips = sans(cert)
    # No keyType here: decoding the public key is not parsing (see the module doc).
    return {
        "path": path,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "notBefore": cert.not_valid_before.isoformat() + "Z",
        "notAfter": cert.not_valid_after.isoformat() + "Z",
        "isCA": is_ca(cert),
        "dnsNames": dns,
        "ipAddresses": ips,
    }


def signed_by(cert, pub):
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                ec.ECDSA(cert.signature_hash_algorithm),
            )
        else:
            pub.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                padding.PKCS1v15(),
                cert.signature_hash_algorithm,
            )
        return True
    except Exception:
        return False


def main():
    mode, directory = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(directory) if n.endswith(".crt"))
    certs = []
    for n in names:
        path = os.path.join(directory, n)
        with open(path, "rb") as f:
            certs.append((path, x509.load_pem_x509_certificate(f.read())))
    rows = [row(p, c) for p, c in certs]
    if mode == "verify":
        cas = {}
        for (p, c), r in zip(certs, rows):
            if r["isCA"]:
                # Each CA's public key decoded once.
                cas.setdefault(c.subject.public_bytes(), []).append((p, c.public_key()))
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        for (p, c), r in zip(certs, rows):
            r["keyType"] = key_type(c.public_key())
            r["chainsTo"] = next(
                (cp for cp, pub in cas.get(c.issuer.public_bytes(), []) if signed_by(c, pub)),
                None,
            )
            key_path = p[: -len(".crt")] + ".key"
            if os.path.exists(key_path):
                with open(key_path, "rb") as f:
                    key = serialization.load_pem_private_key(f.read(), None)
                r["keyMatches"] = key.public_key().public_bytes(der, spki) == c.public_key().public_bytes(der, spki)
    elif mode != "parse":
        sys.exit(f"check_peers.py: unknown mode {mode!r} (parse or verify)")
    json.dump(rows, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
