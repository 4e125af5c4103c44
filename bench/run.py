"""Benchmark our API against the raw-psycopg ceiling (issue #8).

    python -m bench.run [--duration 10] [--rounds 3] [--long] [--no-docs]
                        [--only SCENARIO,...]

One invocation: seeds the `bench` database (bench/seed.py), counts the SQL
statements of one request of each scenario on the wire (bench/pgcount.py),
starts our app (`chatapi.wsgi:application`) and the ceiling
(`bench.ceiling:application`) under gunicorn with the same
gunicorn.conf.py, and drives each scenario with wrk (bench/load.lua),
alternating ours and the ceiling, for `--rounds` rounds of `--duration`
seconds; it reports medians. It then writes the table into
docs/PERFORMANCE.md between the bench markers and the raw figures into
bench/results/latest.json. `--long` adds the memory run: 100 000 more
requests to our app, sampling the workers' RSS as they go. `--only` runs
the named scenarios alone (`--list` names them), for a quick check: it
leaves docs/PERFORMANCE.md alone and writes bench/results/only.json.

Everything runs on 127.0.0.1: PostgreSQL at --database-url, the two
servers, and wrk (Debian's package: `apt-get install wrk`).
"""

import argparse
import base64
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import seed
from bench.pgcount import StatementCounter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")
DOC = ROOT / "docs" / "PERFORMANCE.md"
LUA = Path(__file__).with_name("load.lua")
START_MARKER = "<!-- bench:start -->"
END_MARKER = "<!-- bench:end -->"
CHAT_MESSAGE = "add buy milk"  # the stub answers with one add_task tool call
TICKS = os.sysconf("SC_CLK_TCK")
LONG_REQUESTS = 100_000
LONG_SLICE_SECONDS = 5
LONG_WARM_REQUESTS = 10_000  # the memory run is judged from here on
RSS_TOLERANCE = 0.05  # "steady": at most 5 % above the warm figure


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    method: str
    user: str
    path: str
    bodies: tuple[str, ...] = ()
    min_ratio: float = 0.6
    max_statements: int = 2

    @property
    def is_post(self) -> bool:
        return self.method == "POST"


def scenarios() -> list[Scenario]:
    def chat_body(number: int) -> str:
        conversation = str(seed.post_conversation(number))
        return json.dumps({"message": CHAT_MESSAGE, "conversation_id": conversation})

    writer = seed.user_id("writer")
    reader = seed.user_id("reader")
    found = [
        Scenario(
            "post_contended",
            "POST chat, 1 conversation (contended)",
            "POST",
            "writer",
            f"/api/v1/users/{writer}/chat",
            (chat_body(0),),
            min_ratio=0.5,
            max_statements=6,
        ),
        Scenario(
            "post_rotating",
            f"POST chat, {seed.ROTATING_CONVERSATIONS} conversations (uncontended)",
            "POST",
            "writer",
            f"/api/v1/users/{writer}/chat",
            tuple(
                chat_body(number)
                for number in range(1, seed.ROTATING_CONVERSATIONS + 1)
            ),
            min_ratio=0.5,
            max_statements=6,
        ),
    ]
    for size in seed.MESSAGE_SIZES:
        conversation = seed.messages_conversation(size)
        found.append(
            Scenario(
                f"get_messages_{size}",
                "GET messages, " + _number(size) + " in the conversation",
                "GET",
                "reader",
                f"/api/v1/users/{reader}/conversations/{conversation}/messages",
            )
        )
    tools = seed.tools_conversation()
    found.append(
        Scenario(
            "get_messages_tools",
            "GET messages, 100 with tool calls (75 calls)",
            "GET",
            "reader",
            f"/api/v1/users/{reader}/conversations/{tools}/messages",
        )
    )
    many = seed.user_id("many")
    found.append(
        Scenario(
            "get_conversations",
            "GET conversations, user with "
            + _number(seed.MANY_CONVERSATIONS)
            + " of them",
            "GET",
            "many",
            f"/api/v1/users/{many}/conversations",
        )
    )
    found += [
        Scenario(
            "get_conversation_list",
            "GET conversations/list, first page of " + _number(seed.MANY_CONVERSATIONS),
            "GET",
            "many",
            f"/api/v1/users/{many}/conversations/list",
        ),
        Scenario(
            "get_conversation_list_last",
            "GET conversations/list, last page of " + _number(seed.MANY_CONVERSATIONS),
            "GET",
            "many",
            f"/api/v1/users/{many}/conversations/list?cursor="
            + list_cursor(*seed.list_last_page_after()),
        ),
    ]
    return found


def list_cursor(updated_at: datetime, conversation_id: Any) -> str:
    """The conversation list's cursor for a position (the format of
    conversations.selectors.cursor_encode; bench/tests check they agree)."""
    micros = (updated_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    text = f"1:{micros}:{conversation_id.hex}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _number(value: int) -> str:
    return f"{value:,}".replace(",", " ")


# --- processes ---------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces: fields start after its ")".
    return text[text.rindex(")") + 2 :].split()


def cpu_ticks_by_pid(pids: Sequence[int]) -> dict[int, int]:
    found = {}
    for pid in pids:
        fields = _proc_stat(pid)
        if fields is not None:
            found[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return found


def cpu_ticks_since(before: dict[int, int], pids: Sequence[int]) -> int:
    """CPU ticks `pids` used since `before` was read (new ones: all theirs).

    A process that ended in between is left out, with what it used.
    """
    after = cpu_ticks_by_pid(pids)
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


_BACKEND_TITLE = re.compile(r"^postgres: (?:\S+: )?\S+ (?P<database>\S+) ")


def postgres_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database`.

    Only those: the machine's other databases (other people's tests) and
    the server's background processes are left out.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            match = _BACKEND_TITLE.match(title.decode(errors="replace"))
            if match and match["database"] == database:
                pids.append(int(entry.name))
    return pids


def machine_busy_ticks() -> int:
    """CPU time the whole machine spent busy (all cores, not idle or iowait)."""
    fields = [
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    return sum(fields) - fields[3] - fields[4]


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def memory_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One gunicorn, run with gunicorn.conf.py as production runs it."""

    def __init__(
        self, name: str, app: str, env: dict[str, str], workers: int, threads: int
    ) -> None:
        self.name = name
        self.port = free_port()
        self.env = {
            **env,
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
        }
        self.command = [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--no-control-socket",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        RESULTS.mkdir(exist_ok=True)
        log = (RESULTS / f"{self.name}.log").open("wb")
        # gunicorn.conf.py turns gunicorn's access log off for both; our
        # app's own JSON request line is below LOG_LEVEL=WARNING (app_env).
        self.process = subprocess.Popen(  # noqa: S603
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {log.name}")
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not start; see {log.name}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def workers(self) -> list[int]:
        return children(self.pid)

    def cpu_ticks(self) -> dict[int, int]:
        return cpu_ticks_by_pid([self.pid, *self.workers()])

    def rss_mb(self, key: str = "VmRSS") -> float:
        """The largest `key` (VmRSS, VmHWM) among the workers, in MB."""
        return max((memory_kb(pid, key) for pid in self.workers()), default=0) / 1024

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: str | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


@contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


def app_env(database_url: str) -> dict[str, str]:
    """Our app's environment: production settings, rate limits off."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "BETTER_AUTH_", "RATE_LIMIT_", "AGENT_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatapi.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
            "BETTER_AUTH_SECRET": "bench-only-better-auth-secret",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "RATE_LIMIT_CHAT": "off",
            "RATE_LIMIT_READ": "off",
            # Blank wins over a developer's .env (load_dotenv never overrides).
            "REDIS_URL": "",
            "DATABASE_POOLER": "",
            "BETTER_AUTH_JWKS_URL": "",
            "BETTER_AUTH_JWKS_TABLE": "",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def ceiling_env(database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "AGENT_CONTEXT_MESSAGES")
    }
    env["CEILING_DATABASE_URL"] = database_url
    return env


# --- statements per request -----------------------------------------------------


def classify(statement: str) -> str:
    head = statement.split(" ", 1)[0].upper()
    if head in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}:
        return "transaction"
    if '"session"' in statement:
        return "auth"
    if statement.strip().upper() == "SELECT 1":
        return "health check"
    return "query"


def statements_count(
    database_url: str, scenario_list: list[Scenario], repeat: int = 5
) -> dict[str, dict[str, Any]]:
    """Statements per request of each scenario, for ours and the ceiling.

    Each server runs alone (1 worker, 1 thread) behind the counting proxy;
    two requests warm it up (connection setup), then `repeat` requests are
    counted. Also checks that both answer the same JSON.
    """
    parts = urlsplit(database_url)
    counter = StatementCounter(parts.hostname or "127.0.0.1", parts.port or 5432)
    counter.start()
    proxied = urlunsplit(
        parts._replace(
            netloc=f"{parts.username or 'postgres'}@127.0.0.1:{counter.port}",
            query="sslmode=disable&gssencmode=disable",
        )
    )
    ours = Server("count-ours", "chatapi.wsgi:application", app_env(proxied), 1, 1)
    ceiling = Server(
        "count-ceiling", "bench.ceiling:application", ceiling_env(proxied), 1, 1
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        with running(ours, ceiling):
            for scenario in scenario_list:
                entry: dict[str, Any] = {}
                bodies: dict[str, bytes] = {}
                for side, server in (("ours", ours), ("ceiling", ceiling)):
                    token = seed.token(scenario.user)
                    body = scenario.bodies[0] if scenario.bodies else None
                    for _ in range(2):
                        server.request(scenario.method, scenario.path, token, body)
                    counter.take()
                    per_request: list[list[str]] = []
                    for _ in range(repeat):
                        status, data = server.request(
                            scenario.method, scenario.path, token, body
                        )
                        if status != 200:
                            raise SystemExit(
                                f"{server.name} {scenario.name}: {status} "
                                f"{data[:200]!r}"
                            )
                        time.sleep(0.05)  # let the last Execute reach the proxy
                        per_request.append(counter.take())
                    bodies[side] = data
                    last = per_request[-1]
                    entry[side] = {
                        "statements": statistics.mean(len(s) for s in per_request),
                        "auth": sum(classify(s) == "auth" for s in last),
                        "transaction": sum(classify(s) == "transaction" for s in last),
                        "health_check": statistics.mean(
                            sum(classify(s) == "health check" for s in request)
                            for request in per_request
                        ),
                        "log": last,
                    }
                entry["same_json"] = same_json(
                    scenario, bodies["ours"], bodies["ceiling"]
                )
                results[scenario.name] = entry
    finally:
        counter.stop()
    return results


def same_json(scenario: Scenario, ours: bytes, ceiling: bytes) -> bool:
    """GETs: byte for byte. POST: same keys, reply and tool calls but ids."""
    if not scenario.is_post:
        return ours == ceiling
    mine, theirs = json.loads(ours), json.loads(ceiling)

    def without_ids(body: dict[str, Any]) -> Any:
        calls = [
            {k: v for k, v in call.items() if k != "id"} for call in body["tool_calls"]
        ]
        return sorted(body), body["conversation_id"], body["response"], calls

    return bool(without_ids(mine) == without_ids(theirs))


# --- load --------------------------------------------------------------------


def wrk(
    server: Server,
    scenario: Scenario,
    duration: int,
    connections: int,
    database: str,
) -> dict[str, Any]:
    """Run one wrk load and measure CPU around it."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{server.port}",
        "--",
        scenario.method,
        seed.token(scenario.user),
        scenario.path,
        *scenario.bodies,
    ]
    app_before = server.cpu_ticks()
    pg_before = cpu_ticks_by_pid(postgres_pids(database))
    busy_before, wrk_before = machine_busy_ticks(), children_cpu_seconds()
    output = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, check=True
    ).stdout
    busy = machine_busy_ticks() - busy_before
    wrk_seconds = children_cpu_seconds() - wrk_before
    app = cpu_ticks_since(app_before, [server.pid, *server.workers()])
    # Django reconnects every CONN_MAX_AGE seconds: backends come and go.
    pg = cpu_ticks_since(pg_before, postgres_pids(database))
    line = next((x for x in output.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result:\n{output}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(v for k, v in result.items() if k.startswith("errors_"))
    ok = max(result["requests"] - result["errors_status"], 1)
    result.update(
        {
            "errors": errors,
            "rps": result["requests"] / (result["duration_us"] / 1e6),
            "app_cpu_ms": app * 1000 / TICKS / ok,
            "pg_cpu_ms": pg * 1000 / TICKS / ok,
            "wrk_cpu_ms": wrk_seconds * 1000 / ok,
            # The share of the machine's CPU that went to anything else
            # (other people's work on a shared machine, the kernel's).
            "other_cpu_share": max(busy - app - pg - wrk_seconds * TICKS, 0)
            / (result["duration_us"] / 1e6 * TICKS * (os.cpu_count() or 1)),
            "rss_peak_mb": server.rss_mb("VmHWM"),
        }
    )
    return result


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": median_of(runs, "rps"),
        "p50_ms": median_of(runs, "p50_us") / 1000,
        "p99_ms": median_of(runs, "p99_us") / 1000,
        "app_cpu_ms": median_of(runs, "app_cpu_ms"),
        "pg_cpu_ms": median_of(runs, "pg_cpu_ms"),
        "wrk_cpu_ms": median_of(runs, "wrk_cpu_ms"),
        "other_cpu_share": median_of(runs, "other_cpu_share"),
        "rss_peak_mb": max(run["rss_peak_mb"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "requests": sum(run["requests"] for run in runs),
    }


# Pairs whose p99 with one connection must be within noise of each other:
# the same request against a small and a large history or list.
FLATNESS_PAIRS = (
    ("get_messages_1000", "get_messages_100000"),
    ("get_conversation_list", "get_conversation_list_last"),
)
FLATNESS_SCENARIOS = tuple(name for pair in FLATNESS_PAIRS for name in pair)


def single_connection_p99(
    server: Server,
    scenario_list: list[Scenario],
    rounds: int,
    duration: int,
    database: str,
    say: Any,
) -> dict[str, float]:
    """p99 of the FLATNESS_SCENARIOS (GET messages at 1 000 and 100 000
    messages, the first and last page of a list of 10 000) with one
    connection, alternating, medians over `rounds`: what one request costs,
    without the queueing that 8 connections on 2 shared cores add."""
    chosen = [s for s in scenario_list if s.name in FLATNESS_SCENARIOS]
    found: dict[str, list[dict[str, Any]]] = {s.name: [] for s in chosen}
    for round_number in range(rounds):
        for scenario in chosen if round_number % 2 == 0 else chosen[::-1]:
            result = wrk(server, scenario, duration, 1, database)
            found[scenario.name].append(result)
            say(
                f"one connection, round {round_number + 1} {scenario.name}: "
                f"p99 {result['p99_us'] / 1000:.1f} ms"
            )
    return {name: median_of(runs, "p99_us") / 1000 for name, runs in found.items()}


def memory_run(
    server: Server,
    scenario_list: list[Scenario],
    connections: int,
    database: str,
    requests: int,
) -> list[tuple[int, float]]:
    """`requests` requests to `server`, the scenarios in turn; RSS samples."""
    samples: list[tuple[int, float]] = [(0, server.rss_mb())]
    served = 0
    turn = 0
    while served < requests:
        scenario = scenario_list[turn % len(scenario_list)]
        served += wrk(server, scenario, LONG_SLICE_SECONDS, connections, database)[
            "requests"
        ]
        samples.append((served, server.rss_mb()))
        turn += 1
    return samples


# --- report ------------------------------------------------------------------


def versions(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    wrk_version = (
        subprocess.run(
            ["wrk", "-v"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        .stdout.split(" Copyright")[0]
        .removeprefix("wrk ")
    )
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": cpu,
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "Django": version("Django"),
        "Django REST framework": version("djangorestframework"),
        "psycopg": f"{psycopg.__version__} (libpq {psycopg.pq.version()})",
        "PostgreSQL": row[0] if row else "?",
        "gunicorn": version("gunicorn"),
        "wrk": wrk_version.strip(),
    }


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _mark(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def render(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"Measured {report['date']} with `{report['command']}` "
        f"({settings['rounds']} rounds of {settings['duration']:g} s per scenario "
        f"and server, alternating, medians; wrk {settings['connections']} "
        f"connections; gunicorn {settings['workers']} workers x "
        f"{settings['threads']} threads, gthread, for both).",
        "",
        "| scenario | ours req/s | ceiling req/s | ratio | ours p50 / p99 ms "
        "| ceiling p50 / p99 ms | SQL statements / request ours (ceiling) "
        "| CPU ms / request ours: app + PostgreSQL | ceiling: app + PostgreSQL "
        "| CPU ratio | peak RSS / worker MB ours (ceiling) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["scenarios"].values():
        ours, ceiling, counts = row["ours"], row["ceiling"], row["statements"]
        lines.append(
            f"| {row['label']} | {ours['rps']:.0f} | {ceiling['rps']:.0f} "
            f"| {row['ratio']:.2f} "
            f"| {_ms(ours['p50_ms'])} / {_ms(ours['p99_ms'])} "
            f"| {_ms(ceiling['p50_ms'])} / {_ms(ceiling['p99_ms'])} "
            f"| {counts['ours']['statements']:g} ({counts['ceiling']['statements']:g}) "
            f"| {_ms(ours['app_cpu_ms'])} + {_ms(ours['pg_cpu_ms'])} "
            f"| {_ms(ceiling['app_cpu_ms'])} + {_ms(ceiling['pg_cpu_ms'])} "
            f"| {row['cpu_ratio']:.2f} "
            f"| {ours['rss_peak_mb']:.0f} ({ceiling['rss_peak_mb']:.0f}) |"
        )
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for target in report["targets"]:
        lines.append(
            f"| {target['target']} | {target['measured']} | {_mark(target['ok'])} |"
        )
    errors = {
        name: row["ours"]["errors"] + row["ceiling"]["errors"]
        for name, row in report["scenarios"].items()
        if row["ours"]["errors"] + row["ceiling"]["errors"]
    }
    if errors:
        lines += ["", f"Requests that failed (non-2xx, timeouts): {errors}."]
    different = [
        name for name, row in report["scenarios"].items() if not row["same_json"]
    ]
    lines += [
        "",
        "Same JSON from both servers: "
        + ("yes, every scenario." if not different else f"**no** for {different}."),
        "",
        "Statements our app sends, one request of each scenario "
        "(`[auth]`, `[transaction]`, `[health check]` as counted):",
        "",
    ]
    for row in report["scenarios"].values():
        log = row["statements"]["ours"]["log"]
        lines.append(f"- {row['label']}: {len(log)}")
        for statement in log:
            text = statement if len(statement) <= 110 else statement[:107] + "..."
            kind = classify(statement)
            tag = f"[{kind}] " if kind != "query" else ""
            lines.append(f"  - {tag}`{text}`")
    shares = [
        side["other_cpu_share"]
        for row in report["scenarios"].values()
        for side in (row["ours"], row["ceiling"])
    ]
    lines += [
        "",
        f"Other processes (not the server under test, its PostgreSQL backends "
        f"or wrk) used {statistics.median(shares):.0%} of the machine's CPU "
        f"during a typical run (median), at most {max(shares):.0%}.",
    ]
    if report.get("streaming"):
        from bench import stream  # it builds on this module

        lines += [
            "",
            "Streamed chat (bench/stream.py, docs/STREAMING.md):",
            "",
            stream.render(
                {
                    "date": report["date"],
                    "command": report["command"],
                    "streams": report["streaming"]["streams"]["count"],
                    "configurations": [report["streaming"]],
                }
            ).split("\n", 2)[2],
        ]
    memory = report["memory"]
    lines += [
        "",
        f"Worker RSS (largest worker): {memory['summary']}",
        "",
        "Machine and versions: "
        + "; ".join(f"{key} {value}" for key, value in report["versions"].items())
        + ".",
    ]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = report["scenarios"]
    found: list[dict[str, Any]] = []
    ran = [s for s in scenarios() if s.name in rows]
    for scenario in ran:
        row = rows[scenario.name]
        found.append(
            {
                "target": f"{scenario.label}: throughput ≥ {scenario.min_ratio}x "
                "the ceiling's",
                "measured": f"{row['ratio']:.2f}x",
                "ok": row["ratio"] >= scenario.min_ratio,
            }
        )
    single = report["single_connection_p99_ms"]
    for small, large in FLATNESS_PAIRS:
        if small not in single or large not in single:
            continue
        one_small, one_large = single[small], single[large]
        p99_small = rows[small]["ours"]["p99_ms"]
        p99_large = rows[large]["ours"]["p99_ms"]
        found.append(
            {
                "target": f"{rows[large]['label']}: p99 ≤ 1.2x p99 of "
                f"{rows[small]['label']} (one connection)",
                "measured": f"{one_large:.2f} ms / {one_small:.2f} ms = "
                f"{one_large / one_small:.2f}x (under the 8-connection load: "
                f"{p99_large:.1f} / {p99_small:.1f} ms = "
                f"{p99_large / p99_small:.2f}x)",
                "ok": one_large <= 1.2 * one_small,
            }
        )
    getter = next(s for s in scenarios() if s.name in rows and not s.is_post)
    auth = rows[getter.name]["statements"]["ours"]["auth"]
    found.append(
        {
            "target": "authentication: 1 statement",
            "measured": str(auth),
            "ok": auth == 1,
        }
    )
    for scenario in ran:
        counted = rows[scenario.name]["statements"]["ours"]
        # Django's connection health check (`SELECT 1` before the first
        # query of a request, CONN_HEALTH_CHECKS) is kept on purpose and
        # shown apart (docs/PERFORMANCE.md, "SQL per request").
        health = counted.get("health_check", 0)
        count = counted["statements"] - health
        found.append(
            {
                "target": f"{scenario.label}: ≤ {scenario.max_statements} statements"
                + (" incl. transaction control" if scenario.is_post else "")
                + " (health check apart)",
                "measured": f"{count:g}"
                + (f" + {health:g} health check" if health else ""),
                "ok": count <= scenario.max_statements,
            }
        )
    if report.get("streaming"):
        found += streaming_targets(report["streaming"])
    memory = report["memory"]
    found.append(
        {
            "target": "worker RSS steady (no growth over 100 000 requests)",
            "measured": memory["measured"],
            "ok": memory["ok"],
        }
    )
    return found


def streaming_targets(streaming: dict[str, Any]) -> list[dict[str, Any]]:
    """The streamed chat's targets, from bench.stream.measure's figures."""
    from bench import stream  # it builds on this module

    streams = streaming["streams"]
    return [
        {
            "target": "streamed chat: first text event far below the agent's "
            f"{stream.AGENT_SECONDS:g} s (< 0.5 s)",
            "measured": f"{streaming['first_text_s'] * 1000:.0f} ms",
            "ok": streaming["first_text_s"] < 0.5,
        },
        {
            "target": f"{streams['count']} concurrent open streams, nothing lost",
            "measured": f"{streams['complete']} complete, {streams['lost']} lost",
            "ok": streams["lost"] == 0 and streams["complete"] == streams["count"],
        },
    ]


def memory_verdict(
    samples: list[tuple[int, float]], long: bool, warm_after: int
) -> dict[str, Any]:
    """Steady: the last sample at most RSS_TOLERANCE above the first one
    taken once `warm_after` requests were served (every code path has run
    and the allocator has reached its working size by then)."""
    warm_index = next(
        (i for i, (served, _) in enumerate(samples) if served >= warm_after),
        len(samples) - 1,
    )
    warm_served, warm = samples[warm_index]
    last_served, last = samples[-1]
    ok = last <= warm * (1 + RSS_TOLERANCE)
    measured = (
        f"{warm:.1f} MB after {warm_served:,} requests → {last:.1f} MB after"
        f" {last_served:,}".replace(",", " ")
        + (" (`--long` run)" if long else " (default run; `--long` for 100 000)")
    )
    # The samples themselves go to bench/results/latest.json only.
    summary = f"{measured}; every sample in bench/results/latest.json."
    return {"samples": samples, "ok": ok, "measured": measured, "summary": summary}


def doc_write(text: str) -> None:
    content = DOC.read_text() if DOC.exists() else f"{START_MARKER}\n{END_MARKER}\n"
    start, end = content.find(START_MARKER), content.find(END_MARKER)
    if start < 0 or end < start:
        content = f"{content.rstrip()}\n\n{START_MARKER}\n{END_MARKER}\n"
        start, end = content.find(START_MARKER), content.find(END_MARKER)
    DOC.write_text(
        content[: start + len(START_MARKER)] + "\n" + text + "\n" + content[end:]
    )


# --- main --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", default=seed.DEFAULT_DATABASE_URL)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--long", action="store_true", help="100 000-request RSS run")
    parser.add_argument("--long-requests", type=int, default=LONG_REQUESTS)
    parser.add_argument("--no-docs", action="store_true", help="leave the doc alone")
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument(
        "--only",
        default="",
        help="comma list of scenarios to run alone (a quick check: no docs)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument(
        "--stream-threads",
        type=int,
        default=64,
        help="threads per worker for the streaming run (gunicorn.conf.py's)",
    )
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--no-streams", action="store_true", help="skip streaming")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.list:
        for scenario in scenarios():
            sys.stdout.write(f"{scenario.name}: {scenario.label}\n")
        return
    only = {name for name in args.only.split(",") if name}
    unknown = only - {scenario.name for scenario in scenarios()}
    if unknown:
        raise SystemExit(f"Unknown scenarios: {sorted(unknown)} (see --list)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (Debian's package)")
    if seed.database_name(args.database_url) == "test":
        raise SystemExit("The bench never uses the `test` database.")

    started = time.monotonic()
    scenario_list = [s for s in scenarios() if not only or s.name in only]
    database = seed.database_name(args.database_url)

    def say(text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - started:5.0f}s] {text}\n")

    if not args.skip_seed:
        say(f"seeded in {seed.seed(args.database_url):.1f}s")
    counts = statements_count(args.database_url, scenario_list)
    say(
        "counted statements: "
        + ", ".join(
            f"{name} {entry['ours']['statements']:g}/{entry['ceiling']['statements']:g}"
            for name, entry in counts.items()
        )
    )

    ours = Server(
        "ours",
        "chatapi.wsgi:application",
        app_env(args.database_url),
        args.workers,
        args.threads,
    )
    ceiling = Server(
        "ceiling",
        "bench.ceiling:application",
        ceiling_env(args.database_url),
        args.workers,
        args.threads,
    )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.name: {"ours": [], "ceiling": []} for s in scenario_list
    }
    with running(ours, ceiling):
        for scenario in scenario_list:  # warm-up, not recorded
            for server in (ours, ceiling):
                wrk(server, scenario, 1, args.connections, database)
        samples: list[tuple[int, float]] = [(0, ours.rss_mb())]
        served = warm_after = 0
        for round_number in range(args.rounds):
            for scenario in scenario_list:
                pair = [("ours", ours), ("ceiling", ceiling)]
                if round_number % 2:
                    pair.reverse()
                for side, server in pair:
                    result = wrk(
                        server, scenario, args.duration, args.connections, database
                    )
                    runs[scenario.name][side].append(result)
                    if side == "ours":
                        served += result["requests"]
                        samples.append((served, ours.rss_mb()))
                    say(
                        f"round {round_number + 1} {scenario.name} {side}: "
                        f"{result['rps']:.0f} req/s, p99 {result['p99_us'] / 1000:.1f}"
                        f" ms, errors {result['errors']}"
                    )
            if round_number == 0:
                # Every scenario has now run in full on ours.
                warm_after = served
        if args.rounds < 2:
            warm_after = min(LONG_WARM_REQUESTS, served // 10)
        single = single_connection_p99(
            ours, scenario_list, args.rounds, args.duration, database, say
        )
        if args.long:
            say(f"memory run: {args.long_requests} requests to ours")
            samples = memory_run(
                ours, scenario_list, args.connections, database, args.long_requests
            )
            warm_after = LONG_WARM_REQUESTS

    streaming = None
    if not args.no_streams and not only:
        from bench import stream  # it builds on this module

        say(f"streaming: {args.streams} streams, {args.stream_threads} threads")
        streaming = stream.measure(
            args.database_url,
            workers=args.workers,
            threads=args.stream_threads,
            streams=args.streams,
        )
    report: dict[str, Any] = {
        "streaming": streaming,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench" + (f" BENCH_ARGS='{' '.join(argv)}'" if argv else ""),
        "settings": {
            "duration": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "workers": args.workers,
            "threads": args.threads,
        },
        "versions": versions(args.database_url),
        "scenarios": {},
        "memory": memory_verdict(samples, args.long, warm_after),
        "single_connection_p99_ms": single,
    }
    for scenario in scenario_list:
        mine = summarise(runs[scenario.name]["ours"])
        theirs = summarise(runs[scenario.name]["ceiling"])
        report["scenarios"][scenario.name] = {
            "label": scenario.label,
            "ours": mine,
            "ceiling": theirs,
            "ratio": mine["rps"] / theirs["rps"],
            # What the ratio would be if CPU were the only limit: less
            # sensitive to other load on the machine than req/s.
            "cpu_ratio": (theirs["app_cpu_ms"] + theirs["pg_cpu_ms"])
            / (mine["app_cpu_ms"] + mine["pg_cpu_ms"]),
            "statements": counts[scenario.name],
            "same_json": counts[scenario.name]["same_json"],
            "runs": runs[scenario.name],
        }
    report["targets"] = targets(report)
    text = render(report)
    RESULTS.mkdir(exist_ok=True)
    results = "only.json" if only else "latest.json"
    (RESULTS / results).write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_docs and not only:
        doc_write(text)
    sys.stdout.write(text + "\n")
    say("done")


if __name__ == "__main__":
    main()
