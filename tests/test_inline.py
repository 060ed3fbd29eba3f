"""zoo.server.InlinePolicy: which :predict requests are answered on the event loop."""

import math
import threading

import pytest

pytest.importorskip("fastapi")

from zoo.server import InlinePolicy  # noqa: E402


class Model:
    """Stands for a Servable: the policy keys its estimates by the object."""


def answer(policy, model, body, seconds=0.0, pooled=False, clock=None):
    """One successful request of ``body`` that took ``seconds`` (a fake clock)."""
    clock["now"] = 0.0
    with policy.timed(model, body, pooled=pooled):
        clock["now"] = seconds


@pytest.fixture
def clock(monkeypatch):
    now = {"now": 0.0}
    from zoo import server
    monkeypatch.setattr(server.time, "perf_counter", lambda: now["now"])
    return now


def test_a_model_goes_inline_only_once_measured_quick_enough(clock):
    policy, model = InlinePolicy(2.0), Model()
    small, large = b"x" * 1000, b"x" * 100_000
    assert not policy.cheap(model, small)              # never measured: the thread pool
    answer(policy, model, small, 0.0005, pooled=True, clock=clock)   # 0.5 us per byte
    assert policy.pooled == 1 and policy.inline == 0
    assert policy.cheap(model, small)                  # 0.5 ms predicted
    assert not policy.cheap(model, b"x" * 5000)        # 2.5 ms predicted
    assert not policy.cheap(model, small[:-20] + b'"b64"' + b"x" * 15)  # compressed images
    answer(policy, model, large, 0.01, clock=clock)    # 0.1 us per byte: the average moves
    assert policy.inline == 1
    rate, fastest = policy._costs[model]
    assert math.isclose(rate, 0.5e-6 + InlinePolicy.SMOOTHING * (0.1e-6 - 0.5e-6))
    assert fastest == 0.0005
    assert policy.cheap(model, b"x" * 5000)            # 2.0 ms predicted


def test_a_model_slower_than_the_limit_on_every_request_never_goes_inline(clock):
    policy, model = InlinePolicy(2.0), Model()
    answer(policy, model, b"x" * 10_000_000, 0.5, pooled=True, clock=clock)  # 0.05 us/byte
    assert policy._costs[model][0] * 20 < 0.002        # a 20-byte body "would be" quick ...
    assert not policy.cheap(model, b"x" * 20)          # ... but no request ever was


def test_failed_requests_leave_the_estimates_alone(clock):
    policy, model = InlinePolicy(2.0), Model()
    with pytest.raises(ValueError):
        with policy.timed(model, b"x" * 1000, pooled=True):
            raise ValueError("a bad request, answered fast")
    assert policy.pooled == 1 and model not in policy._costs
    assert not policy.cheap(model, b"x")


def test_no_inline_while_the_model_has_a_request_in_the_pool(clock):
    policy, model, other = InlinePolicy(2.0), Model(), Model()
    answer(policy, model, b"x" * 1000, 0.0001, clock=clock)
    answer(policy, other, b"x" * 1000, 0.0001, clock=clock)
    entered, release = threading.Event(), threading.Event()

    def pooled():
        with policy.pending(model), policy.timed(model, b"x" * 1000, pooled=True):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=pooled)
    thread.start()
    assert entered.wait(10)
    assert not policy.cheap(model, b"x" * 1000)        # it would wait for that request
    assert policy.cheap(other, b"x" * 1000)
    release.set()
    thread.join(10)
    assert policy.cheap(model, b"x" * 1000) and policy._pooled == {}
    with policy.pending(model), policy.pending(model):
        assert policy._pooled == {id(model): 2}
    with policy.pending(None):                         # a model not loaded yet
        assert policy._pooled == {}
    assert policy._pooled == {}


def test_zero_turns_it_off_and_bad_limits_are_refused(clock):
    policy, model = InlinePolicy(0), Model()
    answer(policy, model, b"x" * 1000, 0.0, clock=clock)
    assert not policy.cheap(model, b"x")
    for bad in (-1, math.nan, math.inf, "2", True, None):
        with pytest.raises(ValueError, match=f"max_ms must be a non-negative number of "
                                             f"milliseconds. Received: {bad!r}"):
            InlinePolicy(bad)


def test_estimates_go_with_the_model():
    import gc
    policy, model = InlinePolicy(2.0), Model()
    with policy.timed(model, b"x" * 100, pooled=False):
        pass
    assert len(policy._costs) == 1
    del model
    gc.collect()
    assert len(policy._costs) == 0                     # an unloaded version is not kept
