"""A throw-away OpenLDAP server (Debian's slapd) for the LDAP sign-in tests: its own cn=config and entries loaded
by slapadd from LDIF (mdb backend), checked by slaptest, listening on a free loopback port until stopped.

It offers StartTLS with a certificate for 127.0.0.1 from a CA made for it (lab.pki's, with openssl): `ca_file`
is that CA, for a portal that trusts it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import ldap
import pytest

from lab import pki
from tests.support.portal import free_port, stop_process, wait_for_port

SUFFIX = "dc=example,dc=org"
PEOPLE, GROUPS = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
BIND_DN, BIND_PASSWORD = f"cn=portal,ou=services,{SUFFIX}", "portal-bind-secret"
ADMINS_GROUP, OPERATORS_GROUP, TENANTS_GROUP = (f"cn={name},{GROUPS}" for name in ("vmadmins", "vmops", "vmtenants"))
# Passwords stay clear text in the directory: slapd compares a simple bind against them as they are.
USERS = {"ada": ("ada-ldap-password", ADMINS_GROUP), "tom": ("tom-ldap-password", TENANTS_GROUP)}

# cn=config as an LDIF, loaded with `slapadd -n 0` into an empty configuration directory.
CONFIG_LDIF = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {home}/slapd.pid
olcTLSCACertificateFile: {home}/tls/cacert.pem
olcTLSCertificateFile: {home}/tls/servercert.pem
olcTLSCertificateKeyFile: {home}/tls/serverkey.pem

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcRootDN: cn=root,{suffix}
olcDbDirectory: {home}/data
olcDbMaxSize: 16777216
olcAccess: {{0}}to attrs=userPassword by anonymous auth by self read by * none
olcAccess: {{1}}to * by * read
"""


def _entries() -> str:
    blocks = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
              f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people",
              f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups",
              f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services",
              f"dn: {BIND_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: portal\nsn: portal\n"
              f"userPassword: {BIND_PASSWORD}"]
    for uid, (password, _group) in USERS.items():
        blocks.append(f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid.title()} Example\n"
                      f"sn: Example\ngivenName: {uid.title()}\nmail: {uid}@example.org\nuserPassword: {password}")
    for group in (ADMINS_GROUP, OPERATORS_GROUP, TENANTS_GROUP):
        # groupOfNames needs a member; the bind account stands in for an empty group.
        members = [f"uid={uid},{PEOPLE}" for uid, (_, in_group) in USERS.items() if in_group == group] or [BIND_DN]
        blocks.append(f"dn: {group}\nobjectClass: groupOfNames\ncn: {group[3:].split(',')[0]}\n"
                      + "\n".join(f"member: {member}" for member in members))
    return "\n\n".join(blocks) + "\n"


def _run(*command: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({completed.returncode}): {completed.stderr.strip()}")


@dataclass
class Slapd:
    home: Path
    process: subprocess.Popen[bytes] | None = None
    uri: str = ""

    @property
    def ca_file(self) -> Path:
        return self.home / "tls" / "cacert.pem"

    def start(self) -> Slapd:
        """Builds the configuration, certificate and data, starts slapd, and returns once it answers a bind."""
        config, data = self.home / "slapd.d", self.home / "data"
        config.mkdir()
        data.mkdir()
        pki.ensure_authority(self.home / "ca")
        pki.ensure_host_certificate(self.home / "ca", self.home / "tls", name="localhost",
                                    address=IPv4Address("127.0.0.1"))
        (self.home / "config.ldif").write_text(CONFIG_LDIF.format(home=self.home, suffix=SUFFIX))
        (self.home / "entries.ldif").write_text(_entries())
        _run("/usr/sbin/slapadd", "-n", "0", "-F", str(config), "-l", str(self.home / "config.ldif"))
        _run("/usr/sbin/slapadd", "-F", str(config), "-b", SUFFIX, "-l", str(self.home / "entries.ldif"))
        _run("/usr/sbin/slaptest", "-F", str(config))
        port = free_port()
        self.uri = f"ldap://127.0.0.1:{port}"
        log = self.home / "slapd.log"
        with log.open("wb") as output:
            # -d 0: stays in the foreground (so the test owns the process) and logs nothing but errors.
            self.process = subprocess.Popen(["/usr/sbin/slapd", "-F", str(config), "-h", f"{self.uri}/", "-d", "0"],
                                            stdout=output, stderr=subprocess.STDOUT)
        wait_for_port(port, self.process, log, timeout=20)
        connection = ldap.initialize(self.uri)
        connection.simple_bind_s(BIND_DN, BIND_PASSWORD)
        connection.unbind_s()
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextmanager
def running_slapd(home: Path) -> Iterator[Slapd]:
    """A started slapd, stopped afterwards; one that cannot start fails the test (never skips it)."""
    server = Slapd(home)
    try:
        server.start()
    except (RuntimeError, OSError) as error:
        server.stop()
        pytest.fail(f"slapd did not start: {error}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One directory server for a test module (imported by the modules that sign in through LDAP)."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server
