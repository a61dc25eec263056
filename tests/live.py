"""Real servers for tests: daphne processes on free ports, sharing the test database.

A test that talks to a live server must commit its data (``transaction=True``), because the
server is another process with its own connection.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database the test run created, for server processes to share it."""
    conf = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


class ManagedProcess:
    """A child process of the test run; ``start`` returns once its log shows ``ready_line``
    (read from the log, not slept)."""

    name = "process"
    ready_line = ""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout: float = 30):
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line)
                if self.ready_line in line:
                    ready.set()
            ready.set()  # exited: let start() report it

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.log[-40:]))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def tracebacks(self) -> list[str]:
        return [line for line in self.log if "Traceback" in line]


class DaphneServer(ManagedProcess):
    """One daphne process on a free port (kept across restarts), on the test database."""

    name = "daphne"
    ready_line = "Listening on TCP address"

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None) -> None:
        super().__init__()
        self.port = port or free_port()
        self.extra_env = env or {}

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "chatroom.serve", "-b", "127.0.0.1", "-p", str(self.port)),
            "chatroom.asgi:application",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": test_database_url(),
                "DJANGO_SETTINGS_MODULE": "chatroom.settings",
                "PYTHONUNBUFFERED": "1",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        if not env.get("REDIS_URL"):
            env.pop("REDIS_URL", None)
        return env


class WorkerProcess(ManagedProcess):
    """``manage.py botworker`` with the environment of a daphne (``server.environment()``)."""

    name = "the bot worker"
    ready_line = "ready"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__()
        self.env = env

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "botworker"]

    def environment(self) -> dict[str, str]:
        return self.env


def limits_env(**overrides: int) -> dict[str, str]:
    return {"CHAT_LIMITS": json.dumps(overrides)}
