"""Loading PEM texts (e.g. from link secrets) into an `ssl.SSLContext`.

`ssl` loads certificates and keys only from files: the texts are written to a private
temporary directory (mode 0600 files), loaded, and removed at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile


def load_cert_chain_pem(ctx: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    """`ctx.load_cert_chain` from PEM texts; raises `ssl.SSLError` / `OSError` like it."""
    with tempfile.TemporaryDirectory(prefix="wsp-tls-") as tmp:
        cert_path = _write_private(tmp, "cert.pem", cert_pem)
        key_path = _write_private(tmp, "key.pem", key_pem) if key_pem else None
        ctx.load_cert_chain(cert_path, key_path)


def _write_private(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path
