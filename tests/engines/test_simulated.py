"""The simulated engine: deterministic, honest about its failure rates, resumable, instant when asked."""

from __future__ import annotations

import contextlib
import time

import pytest

from migrations_app.engines import (
    AUTH_FAILED,
    OVER_QUOTA,
    THROTTLED,
    EndpointSpec,
    EngineError,
    MailboxSpec,
    PermanentError,
    RetryableError,
    get_engine,
)

SIM = EndpointSpec(kind="simulated")


def spec(n: int = 1, *, size: int = 2_000_000_000, items: int = 40_000, seed: int = 7) -> MailboxSpec:
    return MailboxSpec(f"user{n}@example.nhs.uk", SIM, SIM, size_bytes=size, item_count=items, seed=seed)


def outcome(engine, mailbox, checkpoint=None):
    calls = []
    try:
        result = engine.sync(mailbox, checkpoint, lambda *args: calls.append(args))
        return ("ok", result.items_copied, result.bytes_copied, result.checkpoint), calls
    except EngineError as exc:
        return (exc.code, exc.checkpoint), calls


def test_the_same_seed_and_inputs_give_the_same_outcome():
    rates = {"THROTTLED": 0.3, "NETWORK": 0.2, "AUTH_FAILED": 0.1}
    first = [outcome(get_engine("simulated", instant=True, failure_rates=rates), spec(n)) for n in range(200)]
    second = [
        outcome(get_engine("simulated", instant=True, failure_rates=rates), spec(n)) for n in range(200)
    ]
    assert first == second
    other_seed = [
        outcome(get_engine("simulated", instant=True, failure_rates=rates), spec(n, seed=8))
        for n in range(200)
    ]
    assert other_seed != first


def test_failure_rates_are_roughly_honoured_over_many_mailboxes():
    engine = get_engine("simulated", instant=True, failure_rates={"THROTTLED": 0.05, "AUTH_FAILED": 0.01})
    counts = {}
    for n in range(20_000):
        try:
            engine.sync(spec(n), None, None)
        except EngineError as exc:
            counts[exc.code] = counts.get(exc.code, 0) + 1
            assert isinstance(exc, RetryableError if exc.code == THROTTLED else PermanentError)
    # Binomial: mean 1000 (sd ~31) and ~200 (sd ~14) over 20,000.
    assert 880 < counts[THROTTLED] < 1120
    assert 150 < counts[AUTH_FAILED] < 250


def test_a_retry_from_the_saved_checkpoint_resumes_and_finishes():
    engine = get_engine("simulated", instant=True, chunk_bytes=100_000_000, failure_rates={"THROTTLED": 0.5})
    # Find a mailbox whose first attempt is throttled part-way through.
    for n in range(100):
        (code, *rest), calls = outcome(engine, spec(n))
        if code == THROTTLED and calls and calls[-1][1] > 0:
            break
    saved = calls[-1][2]
    assert rest[0] == saved  # the error carries the same checkpoint progress() last saw
    copied_before = saved["bytes"]

    checkpoint, total_bytes = saved, copied_before
    for _ in range(20):  # each retry gets a fresh roll; the work already done is never redone
        result, calls = outcome(engine, spec(n), checkpoint)
        if result[0] == "ok":
            total_bytes += result[2]
            break
        checkpoint = result[1]
        total_bytes = checkpoint["bytes"]
    assert result[0] == "ok"
    assert total_bytes == spec(n).size_bytes
    assert result[3]["items"] == spec(n).item_count
    # And a sync of a finished mailbox copies nothing more.
    (status, items, size, _), _ = outcome(engine, spec(n), result[3])
    assert (status, items, size) == ("ok", 0, 0)


def test_progress_comes_in_chunks_with_running_totals():
    engine = get_engine("simulated", instant=True, chunk_bytes=500_000_000)
    calls = []
    result = engine.sync(spec(size=2_000_000_000, items=1000), None, lambda *a: calls.append(a))
    assert [c[1] for c in calls] == [500_000_000, 1_000_000_000, 1_500_000_000, 2_000_000_000]
    assert calls[-1][0] == 1000 and calls[-1][2] == result.checkpoint
    assert sum(f.items_copied for f in result.folders) == 1000


def test_throughput_sets_the_duration_and_zero_means_no_waiting():
    waited = []
    engine = get_engine("simulated", throughput_bytes_per_s=1_000_000, sleep=waited.append)
    engine.sync(spec(size=30_000_000), None, None)
    assert sum(waited) == pytest.approx(30.0)

    started = time.perf_counter()
    zero = get_engine("simulated", throughput_bytes_per_s=0, failure_rates={"THROTTLED": 0.02})
    for n in range(22_000):
        with contextlib.suppress(EngineError):
            zero.sync(spec(n), None, lambda *a: None)
    assert time.perf_counter() - started < 3  # well under a second on a quiet machine; CI is shared


def test_permanent_failures_stay_and_preflight_sees_login_failures():
    engine = get_engine("simulated", instant=True, failure_rates={"AUTH_FAILED": 0.2, "OVER_QUOTA": 0.2})
    for n in range(100):
        first, _ = outcome(engine, spec(n))
        preflight = engine.preflight(spec(n))
        if first[0] == AUTH_FAILED:
            assert (preflight.ok, preflight.code) == (False, AUTH_FAILED)
            assert outcome(engine, spec(n), first[1])[0][0] == AUTH_FAILED
        elif first[0] == OVER_QUOTA:
            assert preflight.ok
            assert outcome(engine, spec(n), first[1])[0][0] == OVER_QUOTA


def test_skipped_items_are_listed_and_verify_balances():
    engine = get_engine("simulated", instant=True, skip_rate=1.0)
    result = engine.sync(spec(), None, None)
    [skipped] = result.skipped
    assert skipped.reason.startswith("TOO_BIG") and skipped.subject
    assert engine.verify(spec()).ok


def test_unknown_error_codes_are_refused():
    with pytest.raises(ValueError):
        get_engine("simulated", failure_rates={"GREMLINS": 0.1})
    with pytest.raises(ValueError):
        get_engine("warp-drive")
