"""zoo.server.RequestBatcher: concurrent requests combined while the model is busy."""

import re
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")

from zoo.server import RequestBatcher  # noqa: E402


class FakeServable:
    """``to_batches``, ``predict`` and ``predict_batches`` as a Servable has them; a prediction
    records each batch's size and, while ``hold`` is clear, blocks (the model is busy)."""

    def __init__(self):
        self.calls = []
        self.steps = []   # the batch_size of each predict_batches call
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail = None

    def to_batches(self, images):
        images = [np.asarray(i, np.float32) for i in images]
        groups = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        return [(np.asarray(idx), np.stack([images[i] for i in idx])) for idx in groups.values()]

    def predict(self, images, batch_size=None, *, signature_name=None):
        return self.predict_batches(self.to_batches(images), batch_size,
                                    signature_name=signature_name)

    def predict_batches(self, groups, batch_size=None, *, signature_name=None):
        (_, batch), *rest = groups
        self.steps.append(batch_size)
        self.calls.append((signature_name, len(batch) + sum(len(b) for _, b in rest)))
        self.entered.set()
        assert self.hold.wait(10)
        if self.fail is not None:
            raise self.fail
        return {"sums": batch.reshape(len(batch), -1).sum(1), "first": batch[:, 0, 0, 0]}


def image_batch(n, value, size=4):
    return [np.full((size, size, 1), value + i, np.float32) for i in range(n)]


def run_at_once(batcher, servable, requests, queued=None, running=1):
    """Start a first request that holds the model, queue ``requests`` behind it (``queued``
    of them wait in queues, the others run their own batch: ``running`` batches in all),
    then let the model go; returns the answers (or exceptions) in order, the first's
    first."""
    answers = [None] * (len(requests) + 1)

    def ask(i, images, signature):
        try:
            answers[i] = batcher.predict(servable, images, signature)
        except Exception as exc:
            answers[i] = exc

    servable.hold.clear()
    servable.entered.clear()
    first = threading.Thread(target=ask, args=(0, image_batch(1, 1000.0), "serving_default"))
    first.start()
    assert servable.entered.wait(10)                 # the first request holds the model
    threads = [threading.Thread(target=ask, args=(i + 1, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    queued = len(requests) if queued is None else queued
    while (sum(len(q) for q in batcher._queues.values()) < queued
           or len(servable.calls) < running):
        assert time.time() < deadline
        time.sleep(0.005)
    servable.hold.set()
    for t in [first, *threads]:
        t.join(10)
    return answers


def test_requests_queued_while_the_model_is_busy_run_as_one_batch():
    servable, batcher = FakeServable(), RequestBatcher(64)
    sizes = [3, 1, 2, 5]
    requests = [(image_batch(n, 10.0 * (i + 1)), "serving_default")
                for i, n in enumerate(sizes)]
    answers = run_at_once(batcher, servable, requests)
    assert servable.calls == [("serving_default", 1), ("serving_default", sum(sizes))]
    assert (batcher.batches, batcher.requests) == (2, 5)
    assert answers[0]["first"].tolist() == [1000.0]
    for (images, _), answer in zip(requests, answers[1:]):
        want = np.stack(images)
        assert answer["first"].tolist() == want[:, 0, 0, 0].tolist()   # its own rows only
        assert answer["sums"].tolist() == want.reshape(len(want), -1).sum(1).tolist()
    assert batcher._queues == {} and batcher._running == set()


def test_batches_stop_at_max_batch_and_keep_the_order():
    servable, batcher = FakeServable(), RequestBatcher(7)
    requests = [(image_batch(3, 10.0 * (i + 1)), "serving_default") for i in range(4)]
    answers = run_at_once(batcher, servable, requests)
    assert [n for _, n in servable.calls] == [1, 6, 6]
    for (images, _), answer in zip(requests, answers[1:]):
        assert answer["first"].tolist() == [im[0, 0, 0] for im in images]


def test_other_signatures_and_sizes_are_not_mixed():
    servable, batcher = FakeServable(), RequestBatcher(64)
    requests = [(image_batch(2, 10.0), "serving_default"), (image_batch(2, 20.0), "other"),
                (image_batch(2, 30.0, size=5), "serving_default"),
                (image_batch(2, 40.0), "serving_default"), (image_batch(2, 50.0), "other")]
    # Queued: the two default 4x4 requests and the second "other" one; the first "other"
    # and the 5x5 one find their model idle and run at once.
    answers = run_at_once(batcher, servable, requests, queued=3, running=3)
    assert sorted(servable.calls[1:]) == [("other", 2), ("other", 2), ("serving_default", 2),
                                          ("serving_default", 4)]
    for (images, _), answer in zip(requests, answers[1:]):
        assert answer["first"].tolist() == [im[0, 0, 0] for im in images]


def test_large_or_mixed_requests_and_max_batch_0_run_alone():
    servable = FakeServable()
    batcher = RequestBatcher(4)
    batcher.predict(servable, image_batch(4, 0.0), "serving_default")      # >= max_batch
    batcher.predict(servable, image_batch(1, 0.0) + image_batch(1, 0.0, size=5),
                    "serving_default")                                        # two sizes
    off = RequestBatcher(0)
    off.predict(servable, image_batch(2, 0.0), "serving_default")
    assert [n for _, n in servable.calls] == [4, 2, 2]
    assert batcher.batches == off.batches == 0                     # none went through a queue
    for bad in (-1, 2.0, True, "64"):
        with pytest.raises(ValueError, match=f"max_batch must be a non-negative integer. "
                                             f"Received: {bad!r}"):
            RequestBatcher(bad)


def test_a_max_batch_above_64_reaches_the_model_in_one_call():
    servable, batcher = FakeServable(), RequestBatcher(128)
    requests = [(image_batch(50, 100.0 * (i + 1)), "serving_default") for i in range(2)]
    answers = run_at_once(batcher, servable, requests)
    assert [n for _, n in servable.calls] == [1, 100]
    assert servable.steps[1] >= 100          # one call of 100 images, not 64 and 36
    for (images, _), answer in zip(requests, answers[1:]):
        assert answer["first"].tolist() == [im[0, 0, 0] for im in images]
    batcher.predict(servable, image_batch(300, 0.0), "serving_default")   # on its own
    assert servable.steps[-1] == 128
    RequestBatcher(8).predict(servable, image_batch(100, 0.0), "serving_default")
    assert servable.steps[-1] == 64          # a small max_batch: requests' own batches


def test_an_error_reaches_every_request_of_its_batch_and_the_queue_goes_on():
    servable, batcher = FakeServable(), RequestBatcher(64)
    servable.fail = ValueError("bad batch")
    answers = run_at_once(batcher, servable, [(image_batch(2, 1.0), "serving_default")] * 3)
    assert all(isinstance(a, ValueError) and str(a) == "bad batch" for a in answers)
    assert batcher._queues == {} and batcher._running == set()
    servable.fail = None
    answer = batcher.predict(servable, image_batch(2, 7.0), "serving_default")
    assert answer["first"].tolist() == [7.0, 8.0]


def ask_later(batcher, servable, images, delay, answers, **kwargs):
    """A thread that sends ``images`` after ``delay`` seconds; its answer goes to
    ``answers``."""
    def run():
        time.sleep(delay)
        answers.append(batcher.predict(servable, images, "serving_default", **kwargs))
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_ms_gathers_requests_that_arrive_while_the_first_waits():
    servable, batcher = FakeServable(), RequestBatcher(64, wait_ms=2000)
    answers = []
    start = time.perf_counter()
    # The first finds the model idle and waits; the others join it within the window.
    threads = [ask_later(batcher, servable, image_batch(n, 10.0 * n), delay, answers)
               for n, delay in ((1, 0.0), (2, 0.1), (3, 0.2))]
    for t in threads:
        t.join(10)
    took = time.perf_counter() - start
    assert servable.calls == [("serving_default", 6)]
    assert (batcher.batches, batcher.requests) == (1, 3)
    assert sorted(a["first"].tolist() for a in answers) == [[10.0], [20.0, 21.0],
                                                            [30.0, 31.0, 32.0]]
    assert 1.9 < took < 9          # the whole window: 6 images never fill max_batch
    assert batcher._queues == {} and batcher._running == set()


def test_wait_ms_ends_once_max_batch_images_have_arrived():
    servable, batcher = FakeServable(), RequestBatcher(4, wait_ms=60_000)
    answers = []
    start = time.perf_counter()
    threads = [ask_later(batcher, servable, image_batch(2, 10.0 * i), 0.1 * i, answers)
               for i in range(2)]
    for t in threads:
        t.join(30)
    assert time.perf_counter() - start < 20          # not the 60 s window
    assert servable.calls == [("serving_default", 4)] and len(answers) == 2


def test_no_wait_without_wait_ms_or_with_wait_false():
    """wait_ms=0: the first request runs at once, a later one in a batch of its own; a
    request with wait=False (answered on the event loop) does not wait either."""
    for batcher, kwargs in ((RequestBatcher(64), {}),
                            (RequestBatcher(64, wait_ms=60_000), {"wait": False})):
        servable, answers = FakeServable(), []
        start = time.perf_counter()
        threads = [ask_later(batcher, servable, image_batch(1, 5.0), delay, answers, **kwargs)
                   for delay in (0.0, 0.3)]
        for t in threads:
            t.join(30)
        assert time.perf_counter() - start < 20
        assert servable.calls == [("serving_default", 1)] * 2 and len(answers) == 2
        assert batcher.batches == 2


def test_wait_ms_is_checked():
    assert RequestBatcher(8, wait_ms=2.5).wait_seconds == 0.0025
    assert RequestBatcher(8).wait_seconds == 0.0
    for bad in (-1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ValueError, match=re.escape(
                f"wait_ms must be a non-negative number of milliseconds. Received: {bad!r}")):
            RequestBatcher(8, wait_ms=bad)
