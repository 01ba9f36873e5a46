"""The local Argilla stack behind `icm argilla up|status|down`.

Four processes, all on 127.0.0.1: Redis (apt), osmem-server (in-memory OpenSearch), the Argilla server and
its rq worker. The server runs in its own virtual environment (its pins clash with the ML stack) through
``server_main.py``, which adds the script-less search engine. Everything lives under one home folder:

    HOME/credentials.json   password, API key, auth secret, Redis password (mode 0600, made on first up)
    HOME/stack.json         ports and the pids this home started (what `down` stops, and nothing else)
    HOME/data/argilla.db    SQLite: the source of truth; the search index is rebuilt from it on every up
    HOME/logs/*.log         one log per process (never holds a secret); the previous start's as *.log.1
    HOME/venv               the server's virtual environment unless ICM_ARGILLA_VENV names another
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from icm_plugin.errors import ICMError

SERVER_REQUIREMENTS = ("argilla-server==2.8.0", "click<8.2", "osmem-server==0.1.6")
DEFAULT_PORT = 6900
USERNAME = "argilla"  # argilla-server's default owner user
ENGINE_NAME = "osmem"  # registered by server_main.py
SERVER_MAIN = Path(__file__).with_name("server_main.py")
# stop order: clients of Redis and osmem first
PROCESSES = ("worker", "server", "osmem", "redis")


def make_secret(nbytes: int) -> str:
    """A URL-safe secret that does not begin with "-": one that does reads as an option after ``--api-key``
    (ours and Argilla's own command lines), so a fresh stack would fail one time in 64."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token


def default_home() -> Path:
    """``$ICM_ARGILLA_HOME`` or ``~/.cache/icm-plugin/argilla``."""
    return Path(os.environ.get("ICM_ARGILLA_HOME") or Path.home() / ".cache" / "icm-plugin" / "argilla")


@dataclass(frozen=True)
class Credentials:
    password: str
    api_key: str
    auth_secret_key: str
    redis_password: str
    username: str = USERNAME


@dataclass(frozen=True)
class StackInfo:
    """What `up`/`status` show: where the server answers and how to sign in."""

    home: Path
    url: str
    credentials: Credentials
    pids: dict[str, int]
    running: dict[str, bool]

    def describe(self) -> str:
        lines = [
            f"Argilla   {self.url}",
            f"user      {self.credentials.username}",
            f"password  {self.credentials.password}",
            f"API key   {self.credentials.api_key}",
            f"home      {self.home}",
            f"processes {', '.join(f'{n}={self.pids[n]}' + ('' if self.running.get(n) else ' (not running)') for n in PROCESSES if n in self.pids)}",
            f"use it:   export ARGILLA_API_URL={self.url} ARGILLA_API_KEY={self.credentials.api_key}",
        ]
        return "\n".join(lines)


class LocalStack:
    """One local Argilla home: start, inspect, stop. ``venv`` defaults to ``$ICM_ARGILLA_VENV`` or HOME/venv."""

    def __init__(self, home: str | Path | None = None, venv: str | Path | None = None):
        self.home = Path(home) if home else default_home()
        self.venv = Path(venv or os.environ.get("ICM_ARGILLA_VENV") or self.home / "venv")

    # ---- files under the home -------------------------------------------------------------
    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def osmem_binary(self) -> Path:
        found = sorted(self.venv.glob("lib/python3*/site-packages/osmem_server/bin/osmem-server"))
        if not found:
            raise ICMError(f"{self.venv}: osmem-server is missing from the server venv; remove {self.venv} and run `icm argilla up` again")
        return found[0]

    def _path(self, name: str) -> Path:
        return self.home / name

    def _make_home(self) -> None:
        """The home folder, only this user's (mode 0700 whatever the umask or whoever made it first)."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)

    def credentials(self) -> Credentials:
        """Read the home's secrets, making them (mode 0600) on first use."""
        path = self._path("credentials.json")
        if not path.exists():
            self._make_home()
            creds = {
                "password": make_secret(12),
                "api_key": make_secret(24),
                "auth_secret_key": secrets.token_hex(32),
                "redis_password": make_secret(24),
            }
            # O_EXCL: never overwrite the secrets another `up` just wrote
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    json.dump(creds, fh)
        try:
            data = json.loads(path.read_text())
            return Credentials(**data)
        except (ValueError, TypeError) as err:
            raise ICMError(f"{path}: unreadable ({err}); remove it to make new credentials (the stack's data stays)") from None

    def _state(self) -> dict:
        path = self._path("stack.json")
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}

    def _write_state(self, state: dict) -> None:
        tmp = self._path("stack.json.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self._path("stack.json"))

    # ---- the server venv ----------------------------------------------------------------------
    def ensure_venv(self, echo=print) -> None:
        """Build the server venv with pip unless it is complete for SERVER_REQUIREMENTS.

        A marker file written last says the venv is complete, so an interrupted build is redone, never used.
        """
        marker = self.venv / ".icm-requirements"
        wanted = "\n".join(SERVER_REQUIREMENTS)
        if marker.exists() and marker.read_text() == wanted:
            return
        if self.venv.parent == self.home:
            self._make_home()
        self.venv.parent.mkdir(parents=True, exist_ok=True)
        # two set-ups (or tests) at once: the second waits for the first one's venv instead of deleting it
        with open(self.venv.with_name(self.venv.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists() and marker.read_text() == wanted:
                return
            self._build_venv(marker, wanted, echo)

    def _build_venv(self, marker: Path, wanted: str, echo) -> None:
        shutil.rmtree(self.venv, ignore_errors=True)
        echo(f"building the Argilla server venv in {self.venv} (once; about a minute)")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, capture_output=True, text=True)
            subprocess.run([str(self.venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                            *SERVER_REQUIREMENTS], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as err:
            raise ICMError(f"could not build the Argilla server venv in {self.venv}: {err.stderr.strip()[-800:]}") from None
        marker.write_text(wanted)

    # ---- processes ------------------------------------------------------------------------------
    def _alive(self, name: str, state: dict) -> bool:
        entry = state.get("pids", {}).get(name)
        return bool(entry) and _same_process(entry["pid"], entry["start"])

    def status(self) -> StackInfo | None:
        """The stack as recorded in HOME/stack.json, or None if this home never started one."""
        state = self._state()
        if not state.get("pids"):
            return None
        return StackInfo(
            home=self.home,
            url=state["url"],
            credentials=self.credentials(),
            pids={n: e["pid"] for n, e in state["pids"].items()},
            running={n: self._alive(n, state) for n in state["pids"]},
        )

    def is_up(self) -> bool:
        info = self.status()
        return info is not None and all(info.running.values()) and _answers(info.url, info.credentials.api_key)

    def up(self, port: int | None = None, timeout: float = 180.0, echo=print) -> StackInfo:
        """Start the stack (or report the one already running). Raises ICMError if it does not come up."""
        if self.is_up():
            return self.status()  # type: ignore[return-value]
        self.down(echo=lambda _msg: None)  # leftovers of a half-dead stack
        for tool in ("redis-server",):
            if shutil.which(tool) is None:
                raise ICMError(f"{tool} is not installed; install it (Debian: apt-get install redis-server) or run .ci/argilla.sh")
        self.ensure_venv(echo=echo)
        creds = self.credentials()
        self._make_home()
        for sub in ("data", "logs", "redis"):
            # the SQLite file holds the users' API keys: only this user may read it
            self._path(sub).mkdir(exist_ok=True, mode=0o700)
            os.chmod(self._path(sub), 0o700)

        previous = self._state().get("port")
        port = port or int(os.environ.get("ICM_ARGILLA_PORT", 0)) or previous or DEFAULT_PORT
        if not _port_free(port):
            if port == previous or port == DEFAULT_PORT:
                port = _free_port()
            else:
                raise ICMError(f"port {port} on 127.0.0.1 is taken; pass another --port or leave it out to pick a free one")
        redis_port, osmem_port = _free_port(), _free_port()
        url = f"http://127.0.0.1:{port}"
        state: dict = {"url": url, "port": port, "pids": {}}

        redis_conf = self._path("redis/redis.conf")
        fd = os.open(redis_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            # the password keeps other local users from queueing rq jobs (pickles) as us
            fh.write(f"bind 127.0.0.1\nport {redis_port}\nrequirepass {creds.redis_password}\n"
                     f"save \"\"\nappendonly no\ndir {self._path('redis')}\n")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "ICM_ARGILLA_"))},
            "ARGILLA_HOME_PATH": str(self._path("data")),
            "ARGILLA_ELASTICSEARCH": f"http://127.0.0.1:{osmem_port}",
            "ARGILLA_SEARCH_ENGINE": ENGINE_NAME,
            "ARGILLA_REDIS_URL": f"redis://:{creds.redis_password}@127.0.0.1:{redis_port}/0",
            "ARGILLA_AUTH_SECRET_KEY": creds.auth_secret_key,
            "ARGILLA_ENABLE_TELEMETRY": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        server = [str(self.python), str(SERVER_MAIN)]
        try:
            self._spawn("redis", ["redis-server", str(redis_conf)], env, state)
            self._spawn("osmem", [str(self.osmem_binary), "--addr", f"127.0.0.1:{osmem_port}", "--no-stdin-watch",
                                  "--no-ja"], env, state)
            _wait_port(redis_port, 20, "redis", self._path("logs/redis.log"))
            _wait_port(osmem_port, 20, "osmem", self._path("logs/osmem.log"))
            prep_env = {**env, "ICM_ARGILLA_API_KEY": creds.api_key, "ICM_ARGILLA_PASSWORD": creds.password}
            with open(_fresh_log(self._path("logs/prepare.log")), "w") as log:
                done = subprocess.run([*server, "prepare"], env=prep_env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.home)
            if done.returncode != 0:
                raise ICMError(f"preparing the Argilla database failed; see {self._path('logs/prepare.log')}")
            self._spawn("server", [*server, "start", "--host", "127.0.0.1", "--port", str(port)], env, state)
            self._spawn("worker", [*server, "worker", "--num-workers", "1"], env, state)
            self._wait_ready(url, creds.api_key, timeout, state)
        except BaseException:
            self.down(echo=lambda _msg: None)
            raise
        return self.status()  # type: ignore[return-value]

    def _spawn(self, name: str, argv: list[str], env: dict, state: dict) -> None:
        log = open(_fresh_log(self._path(f"logs/{name}.log")), "w")  # the child keeps its own copy of the descriptor
        with log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.home, start_new_session=True)
        state["pids"][name] = {"pid": proc.pid, "start": _start_time(proc.pid)}
        self._write_state(state)  # recorded at once, so `down` can stop it even if `up` dies next

    def _wait_ready(self, url: str, api_key: str, timeout: float, state: dict) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(url, api_key):
                return
            for name in state["pids"]:
                if not self._alive(name, state):
                    raise ICMError(f"the Argilla {name} process exited during start; see {self._path(f'logs/{name}.log')}")
            time.sleep(0.3)
        raise ICMError(f"Argilla did not answer {url}/api/v1/status within {timeout:.0f} s; see {self._path('logs')}")

    def down(self, echo=print, grace: float = 15.0) -> list[str]:
        """Stop exactly the processes this home started (by recorded pid and start time); returns their names."""
        state = self._state()
        stopped = []
        for name in PROCESSES:
            entry = state.get("pids", {}).get(name)
            if entry and _same_process(entry["pid"], entry["start"]):
                # each child was started as its own session leader: its group is it and its workers
                _signal_group(entry["pid"], signal.SIGTERM)
                stopped.append(name)
        deadline = time.monotonic() + grace
        for name in stopped:
            entry = state["pids"][name]
            while _same_process(entry["pid"], entry["start"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _same_process(entry["pid"], entry["start"]):
                _signal_group(entry["pid"], signal.SIGKILL)
        if state.get("pids"):
            state["pids"] = {}
            self._write_state(state)
        echo(f"stopped {', '.join(stopped)}" if stopped else "nothing to stop")
        return stopped


def _fresh_log(path: Path) -> Path:
    """``path``, with the log an earlier start left there kept as ``NAME.log.1`` (a crashed server's log
    survives the restart that follows it)."""
    if path.exists() and path.stat().st_size:
        os.replace(path, path.with_name(path.name + ".1"))
    return path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _same_process(pid: int, start: str | None) -> bool:
    now = _start_time(pid)
    if now is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and (start is None or now == start)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # as uvicorn binds: a port left in TIME_WAIT by our own last server is free to reuse
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, name: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise ICMError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s; see {log}")


def _answers(url: str, api_key: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/status", headers={"X-Argilla-Api-Key": api_key}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
