#!/usr/bin/python3
"""The peer `make bench` measures the agent's /metrics scrape against (benches/metrics_scrape.rs).

    scrape_peer.py DIR ROUNDS

What x509-certificate-exporter (v3) does on every scrape, in python3-cryptography: walk DIR,
read every *.crt / *.pem / *.cer, parse every PEM certificate in it, and render the
x509_cert_not_before / x509_cert_not_after / x509_cert_expired families with the exporter's
labels (filepath, filename, serial_number in decimal, subject_* and issuer_*), plus
x509_read_errors. ROUNDS scrapes in one process; prints one JSON object: the median seconds
per scrape, the series rendered per family and the process's peak RSS (kB).
"""

import json
import os
import resource
import sys
import time

from cryptography import x509
from cryptography.x509.oid import NameOID

EXTENSIONS = (".crt", ".pem", ".cer")
FIELDS = [
    ("C", NameOID.COUNTRY_NAME),
    ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ("L", NameOID.LOCALITY_NAME),
    ("O", NameOID.ORGANIZATION_NAME),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
    ("CN", NameOID.COMMON_NAME),
]
BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"


def escape(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def name_labels(prefix, name, out):
    for attr, oid in FIELDS:
        values = name.get_attributes_for_oid(oid)
        if values:
            out.append((f"{prefix}_{attr}", str(values[0].value)))


def pem_blocks(data):
    start = data.find(BEGIN)
    while start >= 0:
        end = data.find(END, start)
        if end < 0:
            return
        yield data[start : end + len(END)]
        start = data.find(BEGIN, end)


def scrape(root, now):
    families = {"x509_cert_not_before": [], "x509_cert_not_after": [], "x509_cert_expired": []}
    errors = 0
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(EXTENSIONS):
                continue
            path = os.path.join(d, f)
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                certs = [x509.load_pem_x509_certificate(b) for b in pem_blocks(data)]
                if not certs:
                    raise ValueError("no certificate")
            except Exception:
                errors += 1
                continue
            for c in certs:
                labels = [("filename", f), ("filepath", path), ("serial_number", str(c.serial_number))]
                name_labels("subject", c.subject, labels)
                name_labels("issuer", c.issuer, labels)
                labels.sort()
                text = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
                not_after = c.not_valid_after.timestamp()
                families["x509_cert_not_before"].append(f"{{{text}}} {c.not_valid_before.timestamp()}")
                families["x509_cert_not_after"].append(f"{{{text}}} {not_after}")
                families["x509_cert_expired"].append(f"{{{text}}} {1.0 if now > not_after else 0.0}")
    out = []
    for name, samples in families.items():
        out.append(f"# TYPE {name} gauge\n")
        out.extend(f"{name}{s}\n" for s in samples)
    out.append(f"# TYPE x509_read_errors gauge\nx509_read_errors {float(errors)}\n")
    return "".join(out), {k: len(v) for k, v in families.items()}


def main():
    root, rounds = sys.argv[1], int(sys.argv[2])
    times, series = [], {}
    for _ in range(rounds):
        t = time.perf_counter()
        _, series = scrape(root, time.time())
        times.append(time.perf_counter() - t)
    times.sort()
    print(
        json.dumps(
            {
                "median_s": times[len(times) // 2],
                "series": series,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main()
