"""Streamed replies under load (docs/STREAMING.md), alone or from bench.run.

    python -m bench.stream [--database-url URL] [--streams 100] [--threads 64]
                           [--workers 2] [--compare-threads 4] [--skip-seed]

With an agent that takes BENCH_AGENT_SECONDS (2 s) to stream its reply
(bench.agents.PacedAgent), against gunicorn with gunicorn.conf.py:

- first text: the time from sending to the first `text-delta`, five
  streams one after another;
- concurrent streams: `--streams` streams opened at once, each read to its
  end; "nothing lost" = every stream ended with `finish` and `[DONE]`, and
  every reply is stored with exactly the text and tool call it streamed;
- JSON speed: GET messages (20 in the conversation) with wrk, without and
  with `--streams` streams held open, and the workers' RSS and threads.

`--compare-threads` runs the same on a server with that many threads per
worker (the former default), in the same run, then the JSON endpoints
alone on both servers, alternating, so that the ratios hold on a shared
machine.
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import seed
from bench.run import (
    RESULTS,
    Scenario,
    Server,
    app_env,
    memory_kb,
    running,
    scenarios,
    wrk,
)

AGENT = "bench.agents.PacedAgent"
AGENT_SECONDS = 2.0
FIRST_TEXT_RUNS = 5
JSON_SECONDS = 5
JSON_CONNECTIONS = 8
# A stream still open this long after the others are done has hung.
STREAM_TIMEOUT = 60.0


@dataclass
class StreamResult:
    status: int | None = None
    first_text: float | None = None
    seconds: float = 0.0
    kinds: list[str] = field(default_factory=list)
    message_id: str | None = None
    text: str = ""
    tools: int = 0
    error: str = ""

    @property
    def complete(self) -> bool:
        return self.status == 200 and self.kinds[-2:] == ["finish", "[DONE]"]


def stream_one(port: int, user: str, message: str) -> StreamResult:
    """POST a chat stream and read it to its end."""
    result = StreamResult()
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STREAM_TIMEOUT)
    try:
        conn.request(
            "POST",
            f"/api/v1/users/{seed.user_id(user)}/chat/stream",
            body=json.dumps({"message": message}),
            headers={
                "Authorization": f"Bearer {seed.token(user)}",
                "Content-Type": "application/json",
            },
        )
        response = conn.getresponse()
        result.status = response.status
        while line := response.readline():
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                result.kinds.append("[DONE]")
                continue
            part = json.loads(data)
            result.kinds.append(part["type"])
            if part["type"] == "start":
                result.message_id = part["messageId"]
            elif part["type"] == "text-delta":
                if result.first_text is None:
                    result.first_text = time.monotonic() - started
                result.text += part["delta"]
            elif part["type"] == "tool-input-available":
                result.tools += 1
    except OSError as exc:
        result.error = repr(exc)
    finally:
        conn.close()
        result.seconds = time.monotonic() - started
    return result


def streams_at_once(
    port: int, count: int, user: str, prefix: str
) -> list[StreamResult]:
    """`count` streams from `count` threads released together."""
    barrier = threading.Barrier(count)
    results: list[StreamResult] = [StreamResult() for _ in range(count)]

    def run(number: int) -> None:
        barrier.wait()
        results[number] = stream_one(port, user, f"{prefix}-{number}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STREAM_TIMEOUT + 10)
    return results


def lost(database_url: str, results: list[StreamResult]) -> int:
    """Streams that did not end well, or whose stored reply differs from
    what they carried (text, one tool call)."""
    ids = [r.message_id for r in results if r.complete and r.message_id]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT m.id::text, m.content, count(t.id) FROM messages m "
            "LEFT JOIN tool_calls t ON t.message_id = m.id "
            "WHERE m.id = ANY(%s::uuid[]) GROUP BY m.id, m.content",
            [ids],
        ).fetchall()
    stored = {row[0]: (row[1], row[2]) for row in rows}
    good = sum(
        1
        for r in results
        if r.complete and stored.get(r.message_id or "") == (r.text, r.tools)
    )
    return len(results) - good


def workers_memory(server: Server) -> dict[str, float]:
    pids = server.workers()
    return {
        "rss_mb": max((memory_kb(pid, "VmRSS") for pid in pids), default=0) / 1024,
        "threads": max((memory_kb(pid, "Threads") for pid in pids), default=0),
    }


def database_connections(database_url: str) -> int:
    """Connections open to the bench database, but this one."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def json_scenario() -> Scenario:
    reader = seed.user_id("reader")
    conversation = seed.messages_conversation(20)
    return Scenario(
        "get_messages_20",
        "GET messages, 20 in the conversation",
        "GET",
        "reader",
        f"/api/v1/users/{reader}/conversations/{conversation}/messages",
    )


def json_compare(
    database_url: str, *, workers: int, threads: list[int], rounds: int
) -> dict[str, dict[int, float]]:
    """req/s of the JSON endpoints (GET messages of 20, POST chat over 16
    conversations) on one server per thread count, all running, alternating
    runs of JSON_SECONDS, medians over `rounds`: how the thread count alone
    changes their speed, with no stream open."""
    database = seed.database_name(database_url)
    chosen = [json_scenario(), *(s for s in scenarios() if s.name == "post_rotating")]
    servers = {
        count: Server(
            f"json-{count}",
            "chatapi.wsgi:application",
            app_env(database_url),
            workers,
            count,
        )
        for count in threads
    }
    found: dict[str, dict[int, list[float]]] = {
        s.name: {count: [] for count in threads} for s in chosen
    }
    with running(*servers.values()):
        for scenario in chosen:
            for server in servers.values():
                wrk(server, scenario, 1, JSON_CONNECTIONS, database)
        for round_number in range(rounds):
            order = list(servers.items())
            if round_number % 2:
                order.reverse()
            for scenario in chosen:
                for count, server in order:
                    result = wrk(
                        server, scenario, JSON_SECONDS, JSON_CONNECTIONS, database
                    )
                    found[scenario.name][count].append(result["rps"])
    return {
        name: {count: statistics.median(runs) for count, runs in by_count.items()}
        for name, by_count in found.items()
    }


def measure(
    database_url: str, *, workers: int, threads: int, streams: int
) -> dict[str, Any]:
    """Every figure of one server configuration."""
    database = seed.database_name(database_url)
    env = app_env(database_url) | {
        "AGENT_BACKEND": AGENT,
        "BENCH_AGENT_SECONDS": str(AGENT_SECONDS),
    }
    server = Server(
        f"stream-{threads}", "chatapi.wsgi:application", env, workers, threads
    )
    scenario = json_scenario()
    figures: dict[str, Any] = {"workers": workers, "threads": threads}
    with running(server):
        stream_one(server.port, "writer", "warm-up")
        wrk(server, scenario, 1, JSON_CONNECTIONS, database)
        figures["idle"] = workers_memory(server)
        firsts = [
            stream_one(server.port, "writer", f"first-{uuid.uuid4()}")
            for _ in range(FIRST_TEXT_RUNS)
        ]
        figures["first_text_s"] = statistics.median(
            r.first_text if r.first_text is not None else float("inf") for r in firsts
        )
        figures["first_stream_s"] = statistics.median(r.seconds for r in firsts)
        json_alone = wrk(server, scenario, JSON_SECONDS, JSON_CONNECTIONS, database)

        # The streams, and the JSON load while they are open.
        held: list[StreamResult] = []
        opened = threading.Thread(
            target=lambda: held.extend(
                streams_at_once(server.port, streams, "writer", f"c-{uuid.uuid4()}")
            )
        )
        started = time.monotonic()
        opened.start()
        time.sleep(0.5)
        during = workers_memory(server)
        json_during = wrk(server, scenario, 1, JSON_CONNECTIONS, database)
        figures["db_connections_with_streams"] = database_connections(database_url)
        opened.join()
        figures["streams"] = {
            "count": streams,
            "complete": sum(r.complete for r in held),
            "lost": lost(database_url, held),
            "first_text_p50_s": statistics.median(
                r.first_text or float("inf") for r in held
            ),
            "first_text_max_s": max(r.first_text or float("inf") for r in held),
            "slowest_s": max(r.seconds for r in held),
            "wall_s": time.monotonic() - started,
            "errors": sorted({r.error for r in held if r.error})[:3],
        }
        figures["during"] = during
        figures["json_rps_alone"] = json_alone["rps"]
        figures["json_rps_with_streams"] = json_during["rps"]
        figures["json_p99_ms_with_streams"] = json_during["p99_us"] / 1000
    return figures


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Measured {report['date']} with `{report['command']}` (agent: "
        f"{AGENT_SECONDS:g} s per reply, streamed in 20 pieces; "
        f"{report['streams']} streams at once; JSON: GET messages of 20, wrk "
        f"{JSON_CONNECTIONS} connections).",
        "",
        "| gunicorn gthread | first text (median of 5) | whole reply "
        f"| {report['streams']} streams: complete / lost "
        "| first text p50 / max under load | slowest stream "
        "| JSON req/s with the streams open "
        "| worker RSS MB idle / with streams | threads / worker with streams "
        "| database connections with the streams open |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in report["configurations"]:
        s = row["streams"]
        lines.append(
            f"| {row['workers']} workers x {row['threads']} threads "
            f"| {row['first_text_s'] * 1000:.0f} ms | {row['first_stream_s']:.2f} s "
            f"| {s['complete']} / {s['lost']} "
            f"| {s['first_text_p50_s']:.2f} / {s['first_text_max_s']:.2f} s "
            f"| {s['slowest_s']:.2f} s "
            f"| {row['json_rps_with_streams']:.0f} "
            f"| {row['idle']['rss_mb']:.0f} / {row['during']['rss_mb']:.0f} "
            f"| {row['during']['threads']:.0f} "
            f"| {row['db_connections_with_streams']} |"
        )
    compared = report.get("json_compare")
    if compared:
        counts = sorted({count for by_count in compared.values() for count in by_count})
        lines += [
            "",
            f"JSON endpoints alone, req/s by threads per worker ({JSON_SECONDS} s runs "
            "alternating between the servers, medians):",
            "",
            "| scenario | " + " | ".join(f"{c} threads" for c in counts) + " |",
            "|---|" + "--:|" * len(counts),
        ]
        for name, by_count in compared.items():
            lines.append(
                f"| {name} | " + " | ".join(f"{by_count[c]:.0f}" for c in counts) + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=seed.DEFAULT_DATABASE_URL)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--compare-threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="JSON comparison")
    parser.add_argument("--skip-seed", action="store_true")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not args.skip_seed:
        seed.seed(args.database_url)
    configurations = [
        measure(
            args.database_url,
            workers=args.workers,
            threads=threads,
            streams=args.streams,
        )
        for threads in dict.fromkeys([args.threads, args.compare_threads])
        if threads
    ]
    counts = [c for c in dict.fromkeys([args.threads, args.compare_threads]) if c]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench.stream " + " ".join(argv),
        "streams": args.streams,
        "configurations": configurations,
        "json_compare": json_compare(
            args.database_url, workers=args.workers, threads=counts, rounds=args.rounds
        )
        if len(counts) > 1
        else None,
    }
    RESULTS.mkdir(exist_ok=True)
    Path(RESULTS / "stream.json").write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(render(report) + "\n")
    return report


if __name__ == "__main__":
    main()
