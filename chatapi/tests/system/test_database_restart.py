"""PostgreSQL restarting under load, behind gunicorn.

The database is a private instance (the `private_postgres` fixture), never
the shared server other tests run on.
"""

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from .servers import (
    DATABASE_UNAVAILABLE,
    PACED_AGENT,
    Gunicorn,
    HttpResult,
    PrivatePostgres,
    record_figures,
    user_with_session,
)

pytestmark = pytest.mark.postgresql

CONNECT_TIMEOUT = 2
STATEMENT_TIMEOUT_MS = 5000
AGENT_TIMEOUT = 2
# Longest a request may take: connecting, one statement, the agent, slack.
REQUEST_BOUND = CONNECT_TIMEOUT + STATEMENT_TIMEOUT_MS / 1000 + AGENT_TIMEOUT + 3
# Longest from the database accepting connections to a request succeeding.
RECOVERY_BOUND = CONNECT_TIMEOUT + 5
CLIENTS = 4
OK_BEFORE = 8  # successes before the restart
OK_AFTER = 8  # successes of requests sent after it
DOWN_SECONDS = 2
RETRY_PAUSE = 0.02  # after a failure, as a client retrying would


@dataclass(frozen=True)
class Sent:
    content: str
    result: HttpResult


class Clients:
    """Threads sending chat messages, each to a conversation of its own,
    until stopped; every message's content is unique."""

    def __init__(self, server: Gunicorn, user_id: str, token: str) -> None:
        self.server = server
        self.user_id = user_id
        self.token = token
        self.sent: list[Sent] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(number,), daemon=True)
            for number in range(CLIENTS)
        ]

    def run(self, number: int) -> None:
        conversation_id: str | None = None
        count = 0
        while not self.stopping.is_set():
            count += 1
            content = f"restart client {number} message {count}"
            result = self.server.chat(
                self.user_id, self.token, content, conversation_id, timeout=30
            )
            with self.lock:
                self.sent.append(Sent(content, result))
            if result.status == 200:
                conversation_id = result.json()["conversation_id"]
            else:
                time.sleep(RETRY_PAUSE)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=40)

    def wait_for(self, condition: Callable[[list[Sent]], bool], limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self.lock:
                if condition(list(self.sent)):
                    return
            time.sleep(0.05)
        pytest.fail(f"not reached within {limit} s: {self.summary()}")

    def summary(self) -> Counter[int | None]:
        with self.lock:
            return Counter(sent.result.status for sent in self.sent)


def test_database_restart_answers_503_then_recovers_without_losing_messages(
    private_postgres: PrivatePostgres,
    gunicorn: Callable[..., Gunicorn],
    request: pytest.FixtureRequest,
) -> None:
    user_id, token = user_with_session(private_postgres)
    server = gunicorn(
        private_postgres.url,
        AGENT_BACKEND=PACED_AGENT,  # answers in 0.2 s
        AGENT_TIMEOUT_SECONDS=str(AGENT_TIMEOUT),
        DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="4",
    )
    workers_before = server.worker_pids()
    clients = Clients(server, user_id, token)
    clients.start()
    try:
        clients.wait_for(
            lambda sent: sum(s.result.status == 200 for s in sent) >= OK_BEFORE, 20
        )
        stopping = time.monotonic()
        private_postgres.stop("fast")
        time.sleep(DOWN_SECONDS)
        private_postgres.start()
        back = time.monotonic()  # accepting connections again
        clients.wait_for(
            lambda sent: (
                sum(s.result.status == 200 and s.result.started >= back for s in sent)
                >= OK_AFTER
            ),
            RECOVERY_BOUND + 10,
        )
    finally:
        clients.stop()
    workers_after = server.worker_pids()
    sent = clients.sent

    statuses = Counter(s.result.status for s in sent)
    unexpected = [
        (s.content, s.result.status, s.result.body[:300], s.result.error)
        for s in sent
        if s.result.status not in (200, 503)
    ]
    assert unexpected == []
    unavailable = [s.result for s in sent if s.result.status == 503]
    assert unavailable, "no request met the database down: the test proved nothing"
    for result in unavailable:
        assert result.content_type == "application/json"
        assert json.loads(result.body) == DATABASE_UNAVAILABLE
    slowest = max(s.result.seconds for s in sent)
    assert slowest < REQUEST_BOUND
    first_ok_after = min(
        s.result.finished
        for s in sent
        if s.result.status == 200 and s.result.started >= back
    )
    recovery = first_ok_after - back
    assert recovery < RECOVERY_BOUND
    # Recovered by itself: the same workers, none restarted.
    assert workers_after == workers_before

    answered = {s.content: s.result.json() for s in sent if s.result.status == 200}
    with private_postgres.connect() as db:
        stored = db.execute(
            "SELECT m.content, m.id::text, m.conversation_id::text, r.id::text, "
            "r.content FROM messages m LEFT JOIN messages r ON r.reply_to_id = m.id "
            "WHERE m.role = 'user'"
        ).fetchall()
        sequences = db.execute(
            "SELECT c.id::text, c.last_sequence, array_agg(m.sequence ORDER BY "
            "m.sequence) FROM conversations c JOIN messages m "
            "ON m.conversation_id = c.id GROUP BY c.id"
        ).fetchall()
    # No message stored twice, whatever its request's fate.
    assert [
        content
        for content, count in Counter(row[0] for row in stored).items()
        if count > 1
    ] == []
    by_content = {row[0]: row[1:] for row in stored}
    missing = sorted(set(answered) - set(by_content))
    assert missing == []
    for content, body in answered.items():
        assert by_content[content] == (
            body["user_message_id"],
            body["conversation_id"],
            body["assistant_message_id"],
            f"echo: {content}",
        )
    for conversation_id, last_sequence, numbers in sequences:
        assert numbers == list(range(1, last_sequence + 1)), conversation_id

    record_figures(
        request,
        requests=len(sent),
        ok=statuses[200],
        unavailable_503=statuses[503],
        database_down_seconds=round(back - stopping, 2),
        first_200_after_database_back_s=round(recovery, 2),
        slowest_request_s=round(slowest, 2),
        slowest_503_s=round(max(result.seconds for result in unavailable), 2),
        workers_unchanged=workers_after == workers_before,
    )
