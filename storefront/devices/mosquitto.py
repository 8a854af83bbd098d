"""Mosquitto configuration for store devices, and a private broker process for tests.

One username and password per device, and an ACL that lets a device publish only on
its own events topic and read only its own commands topic (both inside
``stores/{store}/devices/{device}/#``); the gateway user may read and write the
whole store. Passwords are hashed by ``mosquitto_passwd`` (PBKDF2-SHA512); no
plain password is kept once the file is hashed.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from hardware.messages import MAX_MESSAGE_BYTES
from hardware.topics import commands_topic, events_topic
from storefront.errors import InvalidInput


def acl_text(store: str, devices: Iterable[str], gateway_user: str) -> str:
    """The ACL file for ``store``: the gateway reads/writes the store, devices their topics."""
    lines = [f"user {gateway_user}", f"topic readwrite stores/{store}/#", ""]
    for device in devices:
        lines += [f"user {device}", f"topic write {events_topic(store, device)}",
                  f"topic read {commands_topic(store, device)}", ""]
    return "\n".join(lines)


def write_password_file(path: Path, users: Mapping[str, str]) -> None:
    """Write ``users`` (name -> password) to ``path`` hashed with ``mosquitto_passwd -U``.

    Raises InvalidInput if ``mosquitto_passwd`` is not installed, a name or password
    holds ``:`` or a line break, or the tool fails.
    """
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise InvalidInput("mosquitto_passwd is not installed (it comes with mosquitto)")
    for name, password in users.items():
        if any(c in name + password for c in ":\n\r") or not name:
            raise InvalidInput(f"user {name!r}: names and passwords cannot hold ':' or newlines")
    path.write_text("".join(f"{n}:{p}\n" for n, p in users.items()), encoding="utf-8")
    path.chmod(0o600)
    done = subprocess.run([tool, "-U", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        raise InvalidInput(f"mosquitto_passwd failed: {done.stderr.strip()[:300]}")


def add_password(path: Path, user: str, password: str) -> None:
    """Add or replace one user in an existing (or new) Mosquitto password file."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise InvalidInput("mosquitto_passwd is not installed (it comes with mosquitto)")
    args = [tool, "-b", str(path), user, password]
    if not path.exists():
        args.insert(1, "-c")
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InvalidInput(f"mosquitto_passwd failed: {done.stderr.strip()[:300]}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MosquittoProcess:
    """A private ``mosquitto`` on 127.0.0.1 with a generated config (tests, benchmarks).

    Persistence is on (``persistence true``, store in ``folder``), so QoS 1 messages
    queued for persistent sessions survive :meth:`restart`. Queues are unbounded so
    an offline gateway loses nothing; packets up to twice the message limit pass, so
    the gateway (not the broker) refuses and audits oversized payloads.
    """

    def __init__(self, folder: Path, *, password_file: Path | None, acl_file: Path | None,
                 port: int | None = None) -> None:
        if shutil.which("mosquitto") is None:
            raise InvalidInput("mosquitto is not installed")
        self.folder = folder
        self.port = port or free_port()
        self.log_file = folder / "mosquitto.log"
        self.config_file = folder / "mosquitto.conf"
        folder.mkdir(parents=True, exist_ok=True)
        auth = (["allow_anonymous false", f"password_file {password_file}"]
                if password_file else ["allow_anonymous true"])
        acl = [f"acl_file {acl_file}"] if acl_file else []
        self.config_file.write_text("\n".join([
            "per_listener_settings false", f"listener {self.port} 127.0.0.1", *auth, *acl,
            "persistence true", f"persistence_location {folder}/", "autosave_interval 1",
            "max_queued_messages 0", "max_queued_bytes 0", "max_inflight_messages 100",
            f"max_packet_size {2 * MAX_MESSAGE_BYTES}", f"user {getpass.getuser()}",
            f"log_dest file {self.log_file}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "log_type debug", "connection_messages true", ""]), encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:{port}``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections; raises RuntimeError."""
        self._process = subprocess.Popen(["mosquitto", "-c", str(self.config_file)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err[:500]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port}")

    def stop(self) -> None:
        """SIGTERM (the broker saves its persistent store) and wait for the exit."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistent store."""
        self.stop()
        self.start()

    def log_count(self, text: str) -> int:
        """How many lines of the broker's log contain ``text``."""
        if not self.log_file.exists():
            return 0
        return sum(text in line for line in self.log_file.read_text(errors="replace")
                   .splitlines())
