"""A real Mosquitto broker for the MQTT tests: Debian's ``mosquitto`` started on a free
loopback port with a password file, stoppable and restartable on the same port."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

USER, PASSWORD = "opsgraph", "s3cret-test"


def mosquitto_or_skip() -> str:
    """The broker binary; CI installs it and sets OPSGRAPH_REQUIRE_BROKER so it never skips."""
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if path is None:
        if os.environ.get("OPSGRAPH_REQUIRE_BROKER"):
            pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mosquitto:
    def __init__(self, directory: Path) -> None:
        self.binary = mosquitto_or_skip()
        self.port = _free_port()
        self.directory = directory
        passwords = directory / "passwords"
        passwords.write_text("")
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwords), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        passwords.chmod(0o600)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # as root, mosquitto would switch to its own user, who cannot read pytest's tmp
            f"user {getpass.getuser()}\n"
            "allow_anonymous false\n"
            f"password_file {passwords}\n"
            "persistence false\n"
            f"log_dest file {directory / 'mosquitto.log'}\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
