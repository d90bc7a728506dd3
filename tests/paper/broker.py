"""A private Mosquitto broker on a free port, for tests and benchmarks that stop it.

Options add what the shared broker does not have: user names with passwords
(``allow_anonymous false`` and a ``password_file``) and a TLS listener with a
throw-away certificate authority (:func:`make_certificates`).
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Certificates:
    """A certificate authority and a server certificate signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(folder: Path, *, hosts: tuple[str, ...] = ("127.0.0.1",)) -> Certificates:
    """A throw-away CA and a server certificate for ``hosts`` (IPs or DNS names), valid
    for a day, written into ``folder`` with ``openssl`` (EC P-256 keys: fast to make)."""
    import ipaddress

    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_file = folder / "ca.key", folder / "ca.crt"
    key_file, request, cert_file = (
        folder / "server.key",
        folder / "server.csr",
        folder / "server.crt",
    )
    names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    extensions = folder / "server.ext"
    extensions.write_text(
        f"subjectAltName = {','.join(names)}\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
    )
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [OPENSSL, "req", "-x509", *key, "-keyout", ca_key, "-out", ca_file, "-days", "1",
         "-subj", "/CN=emarl test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [OPENSSL, "req", *key, "-keyout", key_file, "-out", request, "-subj", f"/CN={hosts[0]}"],
        [OPENSSL, "x509", "-req", "-in", request, "-CA", ca_file, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert_file, "-days", "1", "-extfile", extensions],
    ]  # fmt: skip
    for command in commands:
        done = subprocess.run([str(part) for part in command], capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command[:3]))} failed: {done.stderr!r}")
    return Certificates(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


class Mosquitto:
    """``mosquitto`` with its own config: unlimited queues, optional persistence.

    The system broker's default of 1,000 queued messages per offline client would
    drop bars during a fast replay into a killed subscriber; this one queues all, or
    ``max_queued`` per client.

    ``users`` (name -> password) turns anonymous access off and writes a password
    file with ``mosquitto_passwd``. ``tls`` makes the listener TLS-only with those
    certificates; :attr:`url` is then ``mqtts://``.
    """

    def __init__(
        self,
        folder: Path,
        *,
        persistence: bool = False,
        users: Mapping[str, str] | None = None,
        tls: Certificates | None = None,
        max_queued: int = 0,
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.host = "127.0.0.1"
        scheme = "mqtts" if tls is not None else "mqtt"
        self.url = f"{scheme}://{self.host}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "set_tcp_nodelay true",
            f"max_queued_messages {max_queued}",
            "max_inflight_messages 20",
            # started as root, mosquitto would switch to a user that cannot write here
            f"user {getpass.getuser()}",
        ]
        if users:
            passwords = folder / "passwords"
            for i, (name, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", *create, str(passwords), name, password],
                    capture_output=True,
                    check=True,
                )
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_file}",
                f"certfile {tls.cert_file}",
                f"keyfile {tls.key_file}",
                "tls_version tlsv1.2",
            ]
        if persistence:
            lines += ["persistence true", f"persistence_location {folder}/"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = folder / "mosquitto.log"

    def url_with(self, username: str, password: str) -> str:
        """:attr:`url` with a user name and password in it."""
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{username}:{password}@{rest}"

    @staticmethod
    def available() -> bool:
        return Path(MOSQUITTO).exists()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()}") from None
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM): a persistent broker saves its sessions and queues."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
