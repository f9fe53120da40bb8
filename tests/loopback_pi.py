"""A real OpenSSH server on 127.0.0.1 standing in for the Raspberry Pi, and a link that drops.

``LoopbackPi`` runs Debian's ``sshd`` (package openssh-server) in the foreground with its
own config, host key and authorized_keys in a temporary folder, as the current user: the
flash command meets real host-key checking, public-key authentication, scp and remote
shell commands. Only what needs Raspberry Pi OS hardware is a test double, put on the
"Pi" through sshd's ``SetEnv``: ``imx500-package`` (tests/fakes/imx500-package) on its
PATH, and picamera2 (tests/fakes/picamera2) beside NumPy on its PYTHONPATH, as
python3-picamera2 and python3-numpy sit in a Pi's system Python. The Pi's Python is this
machine's base interpreter without the test virtualenv, so the remote side can only use
the modules ``picosam flash`` sends.

``CuttingProxy`` forwards TCP to the server and cuts a connection once the client has
sent more than a given number of bytes: a Wi-Fi link dropping in the middle of a transfer.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

FAKES = Path(__file__).resolve().parent / "fakes"
SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def public_key(path: Path) -> str:
    """``type base64`` of a key pair, as known_hosts and authorized_keys lines want it."""
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


class LoopbackPi:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host_key = keygen(folder / "ssh_host_ed25519_key")
        self.client_key = keygen(folder / "client_key")
        self.authorized_keys = folder / "authorized_keys"
        self.authorized_keys.write_text(public_key(self.client_key) + "\n")
        self.known_hosts = folder / "known_hosts"
        self.remote_dir = folder / "pi-home" / "picosam"
        self.python = self._python_like_a_pi()
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self.trusted_ports: List[int] = []

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1"

    def _python_like_a_pi(self) -> Path:
        """``pi-bin/python3``: the base interpreter; ``pi-site``: NumPy and the fake picamera2."""
        import numpy

        site = self.folder / "pi-site"
        site.mkdir()
        numpy_dir = Path(numpy.__file__).resolve().parent
        for source in (numpy_dir, numpy_dir.with_name("numpy.libs"), FAKES / "picamera2"):
            if source.exists():
                (site / source.name).symlink_to(source)
        base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        for name in ("pi-bin", "pi-bin-without-packager"):
            (self.folder / name).mkdir()
            wrapper = self.folder / name / "python3"
            wrapper.write_text(f'#!/bin/sh\nexec "{base}" "$@"\n')
            wrapper.chmod(0o755)
        (self.folder / "pi-bin" / "imx500-package").symlink_to(FAKES / "imx500-package")
        return self.folder / "pi-bin" / "python3"

    def start(self, packager: bool = True, **fake_env: str) -> "LoopbackPi":
        """Start sshd on a free port; ``fake_env`` (FAKE_CAMERA=..., ...) reaches the doubles."""
        self.stop()
        if os.geteuid() == 0:
            # Debian's sshd refuses to start as root without its privilege-separation folder
            # (systemd creates it for the system service).
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.port = free_port()
        bin_dir = self.folder / ("pi-bin" if packager else "pi-bin-without-packager")
        env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(self.folder / "pi-site"),
               "FAKE_PACKAGER_RPK": str(self.vendor_rpk), **fake_env}
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PidFile none",
            "Subsystem sftp internal-sftp",
            "SetEnv " + " ".join(f"{key}={value}" for key, value in env.items()),
        ]) + "\n")
        self.log = self.folder / "sshd.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log,
                                             stderr=subprocess.STDOUT)
        self._wait_until_listening()
        self.trust(self.port)
        return self

    @property
    def vendor_rpk(self) -> Path:
        from conftest import RPK_FIXTURES

        return RPK_FIXTURES / "imx500_network_inputtensoronly.rpk"

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log.read_text()[-2000:]}")

    def trust(self, port: int) -> None:
        """Add the host key for ``[127.0.0.1]:port`` to known_hosts (the server's, or a proxy's port)."""
        self.trusted_ports.append(port)
        lines = [f"[127.0.0.1]:{p} {public_key(self.host_key)}" for p in self.trusted_ports]
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def flash_args(self, port: Optional[int] = None) -> List[str]:
        """The connection options of `picosam flash` for this Pi."""
        return ["--host", self.destination, "--port", str(port or self.port), "--identity", str(self.client_key),
                "--known-hosts", str(self.known_hosts), "--remote-dir", str(self.remote_dir),
                "--remote-python", str(self.python)]

    # What is on the "Pi" now.
    def current(self) -> Optional[str]:
        link = self.remote_dir / "current.rpk"
        return os.readlink(link) if link.is_symlink() else None

    def installed(self) -> List[str]:
        folder = self.remote_dir / "firmware"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def leftovers(self) -> Dict[str, List[str]]:
        """Entries under incoming/ and staging/ (transfers and unpacked bundles)."""
        return {name: sorted(p.name for p in (self.remote_dir / name).iterdir())
                for name in ("incoming", "staging") if (self.remote_dir / name).is_dir()}


class CuttingProxy:
    """TCP forwarder to 127.0.0.1:``target_port`` that cuts the first ``cuts`` connections
    (None: all) sending more than ``cut_after`` bytes to the server."""

    def __init__(self, target_port: int, cut_after: int, cuts: Optional[int] = 1):
        self.target_port, self.cut_after, self.cuts_left = target_port, cut_after, cuts
        self.cut_count = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as server:
            downstream = threading.Thread(target=self._pump, args=(server, client, False), daemon=True)
            downstream.start()
            self._pump(client, server, True)
            downstream.join(timeout=30)

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sent += len(data)
                if upstream and sent > self.cut_after and self._take_cut():
                    for sock in (source, sink):  # an abrupt reset, as a dropped link looks
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        sock.close()
                    return
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _take_cut(self) -> bool:
        with self.lock:
            if self.cuts_left is not None and self.cuts_left <= 0:
                return False
            if self.cuts_left is not None:
                self.cuts_left -= 1
            self.cut_count += 1
            return True

    def close(self) -> None:
        self.listener.close()
