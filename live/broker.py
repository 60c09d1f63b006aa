"""The private MQTT broker under the twin's data folder (``twin broker start|stop|status|url``).

Mosquitto (Debian's ``/usr/sbin/mosquitto``) runs with its own config in
``<TWIN_DATA_DIR>/mqtt``: one listener on 127.0.0.1, ``allow_anonymous false``, one user
(``twin``) whose password lives in the 0600 file ``<TWIN_DATA_DIR>/secrets/mqtt.pw`` and, hashed
(PBKDF2-SHA512, mosquitto's ``$7$`` format), in the broker's password file; persistence on, so
QoS 1 messages queued for a persistent session survive a restart; a pid file and a log file.

Mosquitto started as root would drop to the ``mosquitto`` system user and then could not read a
root-only folder; as :mod:`twin.pgcluster` does for PostgreSQL, when root the broker's folder
belongs to that system user (0700) and the broker runs as it through ``runuser``; otherwise it
runs as whoever owns the data folder. The port is ``TWIN_MQTT_PORT`` or a free one chosen on the
first start and kept in the config. ``TWIN_MQTT_URL`` names another broker instead.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from twin.errors import ConfigError
from twin.secretfiles import create_private, private_dir, read_secret, secret, secrets_dir
from twin.settings import TwinSettings

__all__ = ["Broker", "local_broker", "broker_url", "MqttTarget", "mqtt_target", "password_line",
           "MOSQUITTO", "MQTT_USER"]

MOSQUITTO = Path("/usr/sbin/mosquitto")
#: The one user of the private broker.
MQTT_USER = "twin"
#: The system user the broker runs as when started by root (Debian's package makes it).
SYSTEM_USER = "mosquitto"


def password_line(user: str, password: str, *, iterations: int = 101) -> str:
    """A line of mosquitto's password file: PBKDF2-SHA512 in its ``$7$`` form."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{user}:$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


@dataclass
class Broker:
    """A Mosquitto broker owned by this checkout."""

    root: Path  # <data>/mqtt
    secrets: Path  # <data>/secrets
    port_setting: int | None = None

    conf = property(lambda self: self.root / "mosquitto.conf")
    passwd = property(lambda self: self.root / "passwd")
    pid_file = property(lambda self: self.root / "mosquitto.pid")
    log_file = property(lambda self: self.root / "mosquitto.log")
    store = property(lambda self: self.root / "data")
    password_file = property(lambda self: self.secrets / "mqtt.pw")

    # -- state ---------------------------------------------------------------------------------
    def configured_port(self) -> int | None:
        """The port in the config file (None before the first start)."""
        try:
            for line in self.conf.read_text().splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "listener":
                    return int(words[1])
        except (FileNotFoundError, PermissionError, ValueError):
            return None
        return None

    @property
    def port(self) -> int | None:
        return self.port_setting or self.configured_port()

    def pid(self) -> int | None:
        """The running broker's process id, None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, PermissionError, ProcessLookupError):
            return None
        return pid if b"mosquitto" in cmdline and str(self.conf).encode() in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    @property
    def url(self) -> str:
        """``mqtt://twin:<password>@127.0.0.1:<port>`` (the password from its 0600 file)."""
        password = read_secret(self.password_file)
        if password is None or self.port is None:
            raise ConfigError("the private broker was never started: run `twin broker start`",
                              zh="专用消息代理从未启动：请运行 `twin broker start`")
        return f"mqtt://{MQTT_USER}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    # -- start and stop ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.secrets)
        fd = os.open(self.secrets / ".broker.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def start(self, timeout_s: float = 10.0) -> bool:
        """Start the broker; False when it was already running."""
        if not MOSQUITTO.exists():
            raise ConfigError(f"{MOSQUITTO} not found; install it with: sudo apt-get install -y mosquitto",
                              zh=f"找不到 {MOSQUITTO}；请安装：sudo apt-get install -y mosquitto")
        with self._locked():
            if self.running():
                return False
            port = self.port_setting or self.configured_port() or _free_port()
            if _port_busy(port):
                raise ConfigError(f"port {port} is taken by another server; set TWIN_MQTT_PORT",
                                  zh=f"端口 {port} 已被其他服务占用；请设置 TWIN_MQTT_PORT")
            self._write_files(port)
            args = [str(MOSQUITTO), "-c", str(self.conf), "-d"]
            if os.geteuid() == 0:
                args = ["runuser", "-u", SYSTEM_USER, "--", *args]
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ConfigError(f"mosquitto did not start: {proc.stderr.strip() or self._log_tail()}",
                                  zh=f"mosquitto 未能启动：{proc.stderr.strip() or self._log_tail()}")
            deadline = time.monotonic() + timeout_s
            while not (self.running() and _port_busy(port)):
                if time.monotonic() > deadline:
                    raise ConfigError(f"mosquitto did not come up on port {port}: {self._log_tail()}",
                                      zh=f"mosquitto 未在端口 {port} 上启动：{self._log_tail()}")
                time.sleep(0.05)
            return True

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the broker (it saves its persistence file first); False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        return True

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "no log"

    def _write_files(self, port: int) -> None:
        """The folder (the broker's alone), its config and its password file, written afresh."""
        private_dir(self.root)
        self.store.mkdir(mode=0o700, exist_ok=True)
        password = secret(self.password_file)
        for path, text in ((self.conf, self._config(port)),
                           (self.passwd, password_line(MQTT_USER, password) + "\n")):
            path.unlink(missing_ok=True)
            with os.fdopen(create_private(path), "w") as f:
                f.write(text)
        if os.geteuid() == 0:
            for path in (self.root, self.store, self.conf, self.passwd, *self.store.iterdir()):
                shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
            for path in (self.log_file, self.pid_file):
                if path.exists():
                    shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
            probe = subprocess.run(["runuser", "-u", SYSTEM_USER, "--", "test", "-r", str(self.conf)])
            if probe.returncode != 0:
                raise ConfigError(f"the {SYSTEM_USER} user cannot reach {self.root}: a parent folder is "
                                  "not traversable; set TWIN_DATA_DIR to a folder it can reach",
                                  zh=f"{SYSTEM_USER} 用户无法访问 {self.root}：某个上级文件夹不可进入；"
                                     "请把 TWIN_DATA_DIR 设为它能访问的文件夹")

    def _config(self, port: int) -> str:
        return (
            "# PipeTwin private broker (written by twin broker start)\n"
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {self.passwd}\n"
            "persistence true\n"
            f"persistence_location {self.store}/\n"
            "autosave_interval 5\n"
            "persistent_client_expiration 14d\n"
            # a subscriber that is down for a while keeps every QoS 1 reading queued for it
            "max_queued_messages 2000000\n"
            "max_inflight_messages 10000\n"
            f"pid_file {self.pid_file}\n"
            f"log_dest file {self.log_file}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "log_type subscribe\n"  # who subscribed to what: rare, and what an operator asks
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def local_broker(settings: TwinSettings) -> Broker:
    """The private broker of this checkout (not necessarily started)."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ConfigError(f"no {SYSTEM_USER} system user; install Debian's mosquitto package",
                              zh=f"没有 {SYSTEM_USER} 系统用户；请安装 Debian 的 mosquitto 软件包") from None
    return Broker(root=(settings.data_dir / "mqtt").resolve(), secrets=secrets_dir(settings),
                  port_setting=settings.mqtt_port)


def broker_url(settings: TwinSettings) -> str:
    """The broker in use: ``TWIN_MQTT_URL``, else the private broker's URL with its credentials."""
    if settings.mqtt_url is not None:
        return settings.mqtt_url.get_secret_value()
    return local_broker(settings).url


@dataclass(frozen=True)
class MqttTarget:
    """Where and as whom an MQTT client connects."""

    host: str
    port: int
    user: str | None
    password: str | None
    tls: bool


def mqtt_target(url: str) -> MqttTarget:
    """Parse ``mqtt://user:password@host:port`` (``mqtts://`` for TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError("an MQTT URL reads mqtt://user:password@host:port (mqtts:// for TLS)",
                          zh="MQTT 地址格式为 mqtt://用户:密码@主机:端口（TLS 用 mqtts://）")
    tls = parts.scheme in ("mqtts", "ssl")
    return MqttTarget(host=parts.hostname, port=parts.port or (8883 if tls else 1883),
                      user=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None, tls=tls)
