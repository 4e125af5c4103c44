"""The streaming bench's verdicts and table (bench/stream.py), on made-up
results."""

from typing import Any

from bench.run import streaming_targets
from bench.stream import StreamResult, render

CONFIGURATION: dict[str, Any] = {
    "workers": 2,
    "threads": 64,
    "idle": {"rss_mb": 86.0, "threads": 9},
    "during": {"rss_mb": 94.0, "threads": 145},
    "first_text_s": 0.008,
    "first_stream_s": 2.03,
    "db_connections_with_streams": 12,
    "streams": {
        "count": 100,
        "complete": 100,
        "lost": 0,
        "first_text_p50_s": 0.27,
        "first_text_max_s": 0.57,
        "slowest_s": 2.63,
        "wall_s": 2.7,
        "errors": [],
    },
    "json_rps_alone": 694.0,
    "json_rps_with_streams": 760.0,
}


def test_stream_result_is_complete_only_with_finish_and_done() -> None:
    assert StreamResult(200, kinds=["start", "finish", "[DONE]"]).complete is True
    assert StreamResult(200, kinds=["start", "error", "[DONE]"]).complete is False
    assert StreamResult(None, kinds=[]).complete is False


def test_render_has_a_row_per_configuration_and_the_json_comparison() -> None:
    text = render(
        {
            "date": "today",
            "command": "python -m bench.stream",
            "streams": 100,
            "configurations": [CONFIGURATION],
            "json_compare": {"get_messages_20": {4: 900.0, 64: 880.0}},
        }
    )

    assert "| 2 workers x 64 threads | 8 ms | 2.03 s | 100 / 0 |" in text
    assert "| get_messages_20 | 900 | 880 |" in text


def test_streaming_targets_pass_and_fail() -> None:
    lost = {**CONFIGURATION, "streams": {**CONFIGURATION["streams"], "lost": 1}}
    slow = {**CONFIGURATION, "first_text_s": 0.9}

    assert [t["ok"] for t in streaming_targets(CONFIGURATION)] == [True, True]
    assert [t["ok"] for t in streaming_targets(lost)] == [True, False]
    assert [t["ok"] for t in streaming_targets(slow)] == [False, True]
