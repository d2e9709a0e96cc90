"""Token buckets with explicit time (deterministic)."""

from __future__ import annotations

from provider.ratelimit import ConnectionRateLimiter, SessionLimiter, TokenBucket


def test_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.allow(1, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.allow(1, 0.1)  # 0.1 s at 10/s = one token
    assert not bucket.allow(1, 0.1)
    assert [bucket.allow(1, 100.0) for _ in range(6)] == [True] * 5 + [False]  # capped at burst
    assert not bucket.allow(6, 200.0)  # more than the burst is never allowed


def test_session_limiter_counts_strikes_and_bytes() -> None:
    limiter = SessionLimiter(msgs=2, burst=None, bytes_per_s=100, now=0.0)  # burst = 4
    assert [limiter.allow(10, 0.0) for _ in range(5)] == [True] * 4 + [False]
    assert limiter.strikes == 1
    assert not limiter.allow(10, 0.0)
    assert limiter.strikes == 2
    assert limiter.allow(10, 1.0) and limiter.strikes == 0
    bytes_only = SessionLimiter(msgs=None, burst=None, bytes_per_s=100, now=0.0)
    assert bytes_only.allow(60, 0.0) and not bytes_only.allow(60, 0.0)
    assert bytes_only.allow(60, 0.6)


def test_connection_limiter_per_ip_and_bounded() -> None:
    limiter = ConnectionRateLimiter(rate=1, max_ips=2)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)
    assert limiter.allow("c", 0.0)  # "a" is forgotten (least recently seen)
    assert limiter.allow("a", 0.0)
