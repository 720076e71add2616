"""Private Dovecot instances for the engine tests and bench/imap_copy.py (tests code, not production code).

Each instance has its own directory (config, base_dir, logs, passwd-file, maildirs), listens on a free
127.0.0.1 port with TLS (a self-signed certificate made here, for real verification) and plain text allowed,
and is stopped by killing exactly the master pid it started. Never `pkill dovecot`: other people's servers
may run on the same machine.
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; it is also the CA file clients are given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Dovecot:
    """One running instance. `separator` is the hierarchy separator its users see ('/' or '.')."""

    root: Path
    port: int  # plain text and STARTTLS
    tls_port: int  # implicit TLS
    separator: str
    ca_file: Path
    process: subprocess.Popen
    pool: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)  # handed out by new_user()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def new_user(self, *, small: bool = False) -> str:
        """A user nobody has used yet (so an empty mailbox); the password is PASSWORD. small=True gives one
        with a SMALL_QUOTA storage quota and SMALL_MAX_MAIL message size limit."""
        prefix = "small" if small else "user"
        name = next(user for user in self.pool if user.startswith(prefix) and user not in self.users)
        self.users[name] = PASSWORD
        return name

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master takes its children down with it
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def _mail_owner() -> tuple[int, int]:
    """Dovecot will not run mail processes as root: as root use nobody, otherwise ourselves."""
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    return os.getuid(), os.getgid()


CONFIG = """\
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
{users}
first_valid_uid = {first_uid}
first_valid_gid = {first_gid}
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{ssl_dh}
mail_location = maildir:~/Maildir{layout}
mail_max_userip_connections = 200
{quota}
{extra}

namespace inbox {{
  inbox = yes
  separator = {separator}
  prefix =
}}
auth_master_user_separator = *
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/master-users
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
  process_min_avail = 2
  chroot =
}}
service imap {{
  process_limit = 256
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


QUOTA = """\
mail_plugins = quota
protocol imap {
  mail_plugins = quota imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=0
}
"""
PASSWORD = "secret"  # noqa: S105 - a test server
MASTER_USER = "migrator"
SMALL_QUOTA = "100K"
SMALL_MAX_MAIL = "60k"  # the server refuses a bigger message: NO [LIMIT] or [TOOBIG]


def start_dovecot(
    separator: str = "/",
    *,
    users: int = 200,
    quota: bool = True,
    extra: str = "",
    directory: Path | None = None,
) -> Dovecot:
    """Start an instance; raise RuntimeError (with its log) if it does not come up within 10 s.

    `port` takes plain text and STARTTLS, `tls_port` implicit TLS; both use the certificate in `ca_file`.
    quota=True loads the quota plugins: unlimited for userNNN, SMALL_QUOTA for smallNN users.
    """
    binary = dovecot_binary()
    if binary is None:
        raise RuntimeError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    # Not under pytest's tmp_path: its parent is 0700 root, which Dovecot's unprivileged processes
    # cannot traverse. A private directory of our own, removed by stop().
    root = Path(tempfile.mkdtemp(prefix="dovecot-test-", dir=directory))
    root.chmod(0o755)
    (root / "mail").mkdir()
    uid, gid = _mail_owner()
    os.chown(root / "mail", uid, gid)
    # All users up front: Dovecot re-reads a changed passwd-file at most once a second, so users added
    # while it runs are not reliably there for the next login.
    pool = [f"user{n:03d}" for n in range(1, users + 1)] + [f"small{n:02d}" for n in range(1, 11)]
    (root / "passwd").write_text(
        "".join(
            f"{name}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{root / 'mail' / name}::"
            + (
                f"userdb_quota_rule=*:storage={SMALL_QUOTA} userdb_quota_max_mail_size={SMALL_MAX_MAIL}"
                if name.startswith("small")
                else ""
            )
            + "\n"
            for name in pool
        )
    )
    # A master user (as a migration service account is): logs in as any user with "<user>*migrator".
    (root / "master-users").write_text(f"{MASTER_USER}:{{PLAIN}}{PASSWORD}\n")
    cert, key = make_certificate(root)
    port, tls_port = free_port(), free_port()
    if os.geteuid() == 0:
        users = "default_internal_user = dovecot\ndefault_login_user = dovenull"
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        users = f"default_internal_user = {me}\ndefault_login_user = {me}"
    dh = Path("/usr/share/dovecot/dh.pem")
    (root / "dovecot.conf").write_text(
        CONFIG.format(
            instance=f"dovecot-test-{port}",
            root=root,
            users=users,
            first_uid=min(uid, 500),
            first_gid=min(gid, 1),
            cert=cert,
            key=key,
            ssl_dh=f"ssl_dh = <{dh}" if dh.exists() else "",
            # '/' with LAYOUT=fs lets names hold a '.'; '.' is the classic Maildir++ layout.
            layout=":LAYOUT=fs" if separator != "." else "",
            separator=separator,
            port=port,
            tls_port=tls_port,
            quota=QUOTA if quota else "",
            extra=extra,
        )
    )
    process = subprocess.Popen(
        [binary, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "stderr.log", "wb"),  # noqa: SIM115 - the child owns it
    )
    instance = Dovecot(
        root=root, port=port, tls_port=tls_port, separator=separator, ca_file=cert, process=process, pool=pool
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(100).startswith(b"* OK"):
                    return instance
        except OSError:
            time.sleep(0.05)
    errors = (root / "stderr.log").read_text(errors="replace") + instance.log()
    instance.stop()
    raise RuntimeError(f"dovecot did not start: {errors[-2000:]}")
