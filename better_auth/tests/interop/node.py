"""The real Better Auth (interop/better-auth/server.mjs), run and driven.

`BetterAuthServer` installs the pinned npm packages when needed, starts the
Node process on the test database and stops it; `BetterAuthClient` talks to
one Better Auth instance over HTTP as a frontend would.
"""

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote

# The password every test user signs up with.
PASSWORD = "correct-horse-battery-staple"
SKIP_REASON = "Node.js/npm not found: real Better Auth interop tests skipped"
START_TIMEOUT_SECONDS = 60
NPM_TIMEOUT_SECONDS = 600
HTTP_TIMEOUT_SECONDS = 10


class NodeMissing(Exception):
    pass


def node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeMissing(SKIP_REASON)
    return node, npm


def npm_ci_when_stale(directory: Path, npm: str) -> bool:
    """`npm ci` when node_modules is missing or older than the lockfile.

    Returns whether it ran; raises RuntimeError with npm's output if it
    failed.
    """
    lockfile = directory / "package-lock.json"
    # npm writes this copy of the lockfile on every install.
    installed = directory / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime:
        return False
    result = subprocess.run(  # noqa: S603 (fixed arguments)
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"npm ci failed in {directory} ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return True


def database_url(settings_dict: dict[str, Any]) -> str:
    """A postgres:// URL for a Django PostgreSQL settings dict."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or "5432"
    name = quote(settings_dict["NAME"], safe="")
    return f"postgres://{credentials}{host}:{port}/{name}"


class BetterAuthServer:
    """server.mjs running the configured Better Auth instances."""

    def __init__(
        self, *, node: str, directory: Path, database_url: str, config: dict[str, Any]
    ) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "DATABASE_URL": database_url}
        env.pop("NODE_OPTIONS", None)
        self._process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [node, "server.mjs", json.dumps(config)],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            ready = self._first_line()
            self.urls: dict[str, str] = json.loads(ready)["instances"]
        except Exception:
            self.stop()
            raise

    def client(self, name: str) -> "BetterAuthClient":
        return BetterAuthClient(self.urls[name])

    def stop(self) -> None:
        process = self._process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.close()  # server.mjs ends when its stdin closes
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.terminate()
                process.wait(timeout=10)
        self._stderr.close()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def _first_line(self) -> str:
        lines: queue.Queue[str] = queue.Queue()
        stdout = self._process.stdout
        assert stdout is not None
        threading.Thread(
            target=lambda: lines.put(stdout.readline()), daemon=True
        ).start()
        try:
            line = lines.get(timeout=START_TIMEOUT_SECONDS)
        except queue.Empty:
            line = ""
        if not line:
            self._process.poll()
            raise RuntimeError(
                "Better Auth did not start (exit code "
                f"{self._process.returncode}):\n{self.stderr()}"
            )
        return line


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: Any


@dataclass(frozen=True)
class SignedIn:
    """What Better Auth hands a frontend on sign-up or sign-in."""

    user_id: str
    # The session token from the JSON body (authClient's session.token).
    token: str
    # The bearer plugin's `set-auth-token` header.
    set_auth_token: str
    # The session cookie exactly as Set-Cookie carried it.
    cookie_name: str
    cookie_value: str


class BetterAuthClient:
    """One Better Auth instance, called over HTTP as its frontend would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jwks_url = f"{base_url}/api/auth/jwks"

    def sign_up(self, *, email: str, password: str, name: str) -> SignedIn:
        reply = self.request(
            "POST",
            "/sign-up/email",
            {"email": email, "password": password, "name": name},
        )
        return self._signed_in(reply)

    def sign_in(self, *, email: str, password: str) -> SignedIn:
        reply = self.request(
            "POST", "/sign-in/email", {"email": email, "password": password}
        )
        return self._signed_in(reply)

    def sign_out(self, bearer: str) -> Reply:
        return self.request("POST", "/sign-out", {}, bearer=bearer)

    def get_session(
        self, bearer: str | None = None, cookie: str | None = None
    ) -> Reply:
        """Better Auth's own view of a credential (body None: no session)."""
        headers = {"Cookie": cookie} if cookie is not None else {}
        return self.request("GET", "/get-session", bearer=bearer, headers=headers)

    def jwt(self, bearer: str) -> str:
        """A JWT from the JWT plugin's /token endpoint."""
        reply = self.request("GET", "/token", bearer=bearer)
        assert reply.status == 200, reply.body
        token: str = reply.body["token"]
        return token

    def request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        bearer: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        headers = {
            "Origin": self.base_url,
            "Accept": "application/json",
            **(headers or {}),
        }
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        request = urllib.request.Request(  # noqa: S310 (http on 127.0.0.1)
            f"{self.base_url}/api/auth{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 (http on 127.0.0.1)
                request, timeout=HTTP_TIMEOUT_SECONDS
            ) as response:
                return Reply(response.status, response.headers, _json(response.read()))
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.headers, _json(error.read()))

    @staticmethod
    def _signed_in(reply: Reply) -> SignedIn:
        assert reply.status == 200, (reply.status, reply.body)
        cookies = [
            header.split(";", 1)[0].split("=", 1)
            for header in reply.headers.get_all("Set-Cookie") or []
        ]
        session_cookies = [c for c in cookies if c[0].endswith(".session_token")]
        assert len(session_cookies) == 1, cookies
        [(cookie_name, cookie_value)] = session_cookies
        return SignedIn(
            user_id=reply.body["user"]["id"],
            token=reply.body["token"],
            set_auth_token=reply.headers["set-auth-token"],
            cookie_name=cookie_name,
            cookie_value=cookie_value,
        )


def _json(raw: bytes) -> Any:
    return json.loads(raw) if raw else None
