-- Benchmark data for the `bench` database, written straight in SQL.
-- Deterministic ids: conversation and message ids are md5(<name>)::uuid,
-- which bench/fixtures.py computes the same way in Python.
--
--   bench-reader  conversations of 20, 1 000 and 100 000 messages, and
--                 one of 100 whose assistant messages each carry one or two
--                 tool calls (bench:tools:100)
--   bench-writer  17 conversations of 20 messages: #0 takes the contended
--                 POST load, #1-#16 the rotating one
--   bench-many    10 000 conversations of 2 messages each, updated a minute
--                 apart back from a fixed time (so that bench/run.py can
--                 name the list's last page without asking the database)
BEGIN;

TRUNCATE tool_calls, messages, conversations;
TRUNCATE "session", "user";

INSERT INTO "user" (id, name, email, "emailVerified", image, "createdAt", "updatedAt")
SELECT 'bench-' || u, 'Bench ' || u, u || '@bench.invalid', true, NULL, now(), now()
FROM unnest(ARRAY['reader', 'writer', 'many']) AS u;

INSERT INTO "session" (id, token, "userId", "expiresAt", "ipAddress", "userAgent",
                       "createdAt", "updatedAt")
SELECT 'bench-session-' || u, 'bench-token-' || u, 'bench-' || u,
       now() + interval '30 days', '127.0.0.1', 'bench', now(), now()
FROM unnest(ARRAY['reader', 'writer', 'many']) AS u;

CREATE TEMPORARY TABLE bench_conversations (
    key text NOT NULL, owner_id text NOT NULL, size integer NOT NULL,
    updated_at timestamptz NOT NULL
) ON COMMIT DROP;

INSERT INTO bench_conversations
SELECT 'bench:messages:' || n, 'bench-reader', n, now() - interval '1 hour'
FROM unnest(ARRAY[20, 1000, 100000]) AS n;

INSERT INTO bench_conversations
VALUES ('bench:tools:100', 'bench-reader', 100, now() - interval '2 hours');

INSERT INTO bench_conversations
SELECT 'bench:post:' || k, 'bench-writer', 20, now() - interval '1 hour'
FROM generate_series(0, 16) AS k;

INSERT INTO bench_conversations
SELECT 'bench:many:' || k, 'bench-many', 2,
       timestamptz '2026-01-01 00:00:00+00' - k * interval '1 minute'
FROM generate_series(1, 10000) AS k;

INSERT INTO conversations
    (id, owner_id, title, title_set_by_user, last_sequence, created_at, updated_at)
SELECT md5(key)::uuid, owner_id, 'Please add a task to call the plumber about '
       || 'the kitchen sink, number 1', false, size, updated_at - interval '1 day',
       updated_at
FROM bench_conversations;

-- Alternating user / assistant messages; each assistant message replies to
-- the user message before it. Contents are of a chat's usual length.
INSERT INTO messages (id, conversation_id, sequence, role, content, reply_to_id,
                      created_at)
SELECT md5(c.key || ':' || s)::uuid,
       md5(c.key)::uuid,
       s,
       CASE WHEN s % 2 = 1 THEN 'user' ELSE 'assistant' END,
       CASE WHEN s % 2 = 1
            THEN 'Please add a task to call the plumber about the kitchen sink, '
                 || 'number ' || s
            ELSE '(stub assistant, turn ' || s / 2 || ') You said: please add a '
                 || 'task. I can manage your tasks. Try: "add buy milk", "list '
                 || 'tasks", "complete <task id>", "update <task id> to <new '
                 || 'title>" or "delete <task id>".'
       END,
       CASE WHEN s % 2 = 0 THEN md5(c.key || ':' || (s - 1))::uuid END,
       c.updated_at - interval '1 day' + s * interval '10 milliseconds'
FROM bench_conversations AS c, generate_series(1, c.size) AS s;

-- bench:tools:100: each assistant message made one tool call, every other
-- one two, as the stub's add_task would store them.
INSERT INTO tool_calls (id, message_id, position, tool_name, parameters, result,
                        status, created_at)
SELECT md5('bench:tools:100:' || s || ':' || p)::uuid,
       md5('bench:tools:100:' || s)::uuid,
       p,
       'add_task',
       jsonb_build_object('title', 'call the plumber ' || s, 'user_id', 'bench-reader'),
       jsonb_build_object('task_id', s * 10 + p, 'status', 'created',
                          'title', 'call the plumber ' || s),
       'success',
       timestamptz '2026-01-01 00:00:00+00' + s * interval '10 milliseconds'
FROM generate_series(2, 100, 2) AS s, generate_series(0, 1) AS p
WHERE p = 0 OR s % 4 = 0;

COMMIT;
