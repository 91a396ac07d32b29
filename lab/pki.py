"""The lab's certificate authority for libvirtd's TLS on its network: a CA, a certificate per host, the dashboard's.

Made with openssl once and kept across `down`, as a real site's would be. The dashboard's files sit in
the layout libvirt's pkipath parameter wants (cacert.pem, clientcert.pem, clientkey.pem). A host's
certificate serves QEMU's VNC TLS too (its usage and names fit), linked under the names QEMU reads.
"""

from __future__ import annotations

import tempfile
from ipaddress import IPv4Address
from pathlib import Path

from lab.process import run

DAYS = 3650
# A host is a client too: in a peer-to-peer migration its libvirtd connects to the other host's.
_HOST_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:{address},DNS:{name}
"""
_CLIENT_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
"""


def ensure_authority(directory: Path) -> None:
    """The CA in directory, and the dashboard's client files in directory/client; made once."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "cacert.pem", directory / "cakey.pem"
    if not ca_cert.exists():
        run(["openssl", "req", "-x509", "-new", *_NEW_KEY, "-keyout", str(ca_key), "-out", str(ca_cert),
             "-days", str(DAYS), "-subj", "/O=vmportal lab/CN=vmportal lab CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    client = directory / "client"
    client.mkdir(mode=0o700, exist_ok=True)
    (client / "cacert.pem").write_bytes(ca_cert.read_bytes())
    if not (client / "clientcert.pem").exists():
        _issue(directory, client / "clientkey.pem", client / "clientcert.pem", "/O=vmportal lab/CN=vmportal dashboard",
               _CLIENT_EXTENSIONS)


def ensure_host_certificate(authority: Path, directory: Path, *, name: str, address: IPv4Address) -> None:
    """The host's key and certificate in directory (serverkey.pem, servercert.pem, cacert.pem); made once.

    The same files under QEMU's names in qemu_credentials(directory), for its VNC TLS.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "cacert.pem").write_bytes((authority / "cacert.pem").read_bytes())
    if not (directory / "servercert.pem").exists():
        _issue(authority, directory / "serverkey.pem", directory / "servercert.pem", f"/O=vmportal lab/CN={name}",
               _HOST_EXTENSIONS.format(name=name, address=address))
    qemu = qemu_credentials(directory)
    qemu.mkdir(mode=0o700, exist_ok=True)
    for qemu_name, libvirt_name in _QEMU_NAMES.items():
        (qemu / qemu_name).unlink(missing_ok=True)
        (qemu / qemu_name).symlink_to(Path("..", libvirt_name))


def qemu_credentials(directory: Path) -> Path:
    """Where a host's certificate is linked under QEMU's names: its qemu.conf's vnc_tls_x509_cert_dir."""
    return directory / "qemu"


# QEMU's x509 credentials directory (tls-creds-x509 dir=) -> the file of the host's libvirtd.
_QEMU_NAMES = {"ca-cert.pem": "cacert.pem", "server-cert.pem": "servercert.pem", "server-key.pem": "serverkey.pem"}


_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc")


def _issue(authority: Path, key: Path, certificate: Path, subject: str, extensions: str) -> None:
    with tempfile.TemporaryDirectory() as work:
        request, extensions_file = Path(work, "request.pem"), Path(work, "extensions.cnf")
        extensions_file.write_text(extensions)
        run(["openssl", "req", "-new", *_NEW_KEY, "-keyout", str(key), "-out", str(request), "-subj", subject])
        run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(authority / "cacert.pem"),
             "-CAkey", str(authority / "cakey.pem"), "-CAcreateserial", "-days", str(DAYS),
             "-extfile", str(extensions_file), "-out", str(certificate)])
