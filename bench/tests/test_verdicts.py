"""The bench's memory verdict (bench/run.py), on made-up samples."""

from bench.run import memory_verdict

# Growth while the first round meets each scenario, then flat: the clean
# clone's run of 2026-11-26 (requests served, MB).
WARMING_THEN_FLAT = [
    (0, 94.9),
    (12150, 95.0),
    (14740, 100.4),
    (17569, 103.4),
    (23158, 103.4),
    (47279, 103.7),
    (70429, 103.7),
]


def test_memory_verdict_judges_from_the_warm_sample_on() -> None:
    verdict = memory_verdict(WARMING_THEN_FLAT, long=False, warm_after=17569)

    assert verdict["ok"] is True
    assert verdict["measured"].startswith("103.4 MB after 17 569 requests → 103.7 MB")


def test_memory_verdict_fails_growth_after_warm_up() -> None:
    leaking = [*WARMING_THEN_FLAT, (90000, 109.0)]

    verdict = memory_verdict(leaking, long=True, warm_after=17569)

    assert verdict["ok"] is False
    assert "(`--long` run)" in verdict["measured"]


def test_memory_verdict_counts_warm_up_growth_when_told_to() -> None:
    verdict = memory_verdict(WARMING_THEN_FLAT, long=False, warm_after=5000)

    assert verdict["ok"] is False


def test_memory_verdict_without_a_late_enough_sample_takes_the_last() -> None:
    verdict = memory_verdict(WARMING_THEN_FLAT, long=False, warm_after=10**9)

    assert verdict["ok"] is True
    assert verdict["measured"].startswith("103.7 MB after 70 429 requests")
