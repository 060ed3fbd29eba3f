"""zoo.jsonarrays: JSON pixel arrays into numpy, and large bodies parsed in parts by worker
processes."""

import json
import os
import threading
import time

import numpy as np
import pytest

simdjson = pytest.importorskip("simdjson")

from zoo import jsonarrays as ja  # noqa: E402


def body_of(x, key="instances", **dumps):
    return json.dumps({key: x.tolist() if isinstance(x, np.ndarray) else x}, **dumps).encode()


def pixels(n, seed=0, size=6, channels=3):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, channels))


@pytest.fixture(scope="module")
def splitter():
    """Two worker processes; every body is large enough to be cut."""
    s = ja.SplitParser(2, min_bytes=0)
    s.start()
    yield s
    s.close()


def worker_pids(s):
    return [w.process.pid for w in s._pool]


@pytest.mark.parametrize("dumps", [{}, {"separators": (",", ":")}, {"indent": 1}],
                         ids=["spaced", "compact", "indented"])
def test_split_points_cut_between_whole_elements(dumps):
    x = pixels(7)
    body = body_of(x, **dumps)
    key, ranges = ja.split_points(body, 3)
    assert key == "instances" and len(ranges) == 3
    parts = [json.loads(b"[" + body[b:e] + b"]") for b, e in ranges]
    assert sum(parts, []) == x.tolist()                     # every image once, in order
    assert all(parts)
    # The runs cover the array exactly: only commas and white space between them.
    for (_, end), (begin, _) in zip(ranges, ranges[1:]):
        assert body[end:begin].strip() == b","
    assert ja.split_points(body_of(x, key="inputs"), 2)[0] == "inputs"


def test_split_points_after_a_long_first_element():
    """A first element longer than the places the later cuts are looked for from: each
    cut is still the first after the one before, and every run holds whole elements."""
    body = b'{"instances": [[1,' + b" " * 200 + b'2], [3, 4], [5, 6]]}'
    key, ranges = ja.split_points(body, 3)
    assert [json.loads(b"[" + body[b:e] + b"]") for b, e in ranges] == [[[1, 2]], [[3, 4]],
                                                                       [[5, 6]]]


@pytest.mark.parametrize("body", [
    b'{"instances": [1, 2, 3, 4]}',                           # elements are numbers
    b'{"instances": [{"b64": "aa"}, {"b64": "bb"}]}',          # elements are objects
    b'{"model": "x", "instances": [[1], [2]]}',               # another key first
    b'{"instances": [[1], [2]], "model": "x"}',               # another key after
    b'[[1], [2]]',                                            # not an object
    b'{"instances": [[1, 2, 3]]}',                            # one element: nothing to cut
], ids=["numbers", "objects", "key-before", "key-after", "bare-array", "one"])
def test_split_points_refuse_other_forms(body):
    assert ja.split_points(body, 2) is None


# Bodies of one array, as TensorFlow Serving's clients send them, and the payload each is.
ONE_ARRAY_FORMS = [
    (b'{"instances": [[1, 2], [3, 4], [5, 6], [7, 8]]}', {"instances": "A"}),
    (b' {\n "inputs" :\t[[1, 2], [3, 4], [5, 6], [7, 8]] } \n', {"inputs": "A"}),
    (b'{"signature_name": "serving_default", "instances": [[1, 2], [3, 4], [5, 6], [7, 8]]}',
     {"signature_name": "serving_default", "instances": "A"}),
    (b'{"instances": [[1, 2], [3, 4], [5, 6], [7, 8]], "signature_name": ""}',
     {"signature_name": "", "instances": "A"}),
    (b'{"inputs": {"images": [[1, 2], [3, 4], [5, 6], [7, 8]]}}', {"inputs": {"images": "A"}}),
    (b'{"signature_name":"s","inputs":{"images":[[1, 2], [3, 4], [5, 6], [7, 8]]}}',
     {"signature_name": "s", "inputs": {"images": "A"}}),
    (b'{"inputs": { "images" : [[1, 2], [3, 4], [5, 6], [7, 8]] } , '
     b'"signature_name": "a\\"]}\\u00e9"}',
     {"signature_name": 'a"]}\u00e9', "inputs": {"images": "A"}}),
]


@pytest.mark.parametrize("body,payload", ONE_ARRAY_FORMS,
                         ids=["instances", "inputs", "signature-first", "signature-last",
                              "named", "named-signature-first", "named-escapes"])
def test_one_array_forms_span_and_payload(body, payload):
    """array_span finds the array of each form and payload_of rebuilds the request's payload
    around it, as a JSON parser reads the body."""
    key, start, end = ja.array_span(body)
    array = [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert json.loads(b"[" + body[start:end] + b"]") == array
    got = ja.payload_of(body, key, "A")
    assert got == payload
    want = json.loads(body)
    if "signature_name" in want:
        assert got["signature_name"] == want["signature_name"]
    cut_key, ranges = ja.split_points(body, 2)
    assert cut_key == key and len(ranges) == 2
    assert sum((json.loads(b"[" + body[b:e] + b"]") for b, e in ranges), []) == array


@pytest.mark.parametrize("body", [
    b'{"signature_name": "a", "instances": [[1], [2]], "signature_name": "b"}',   # twice
    b'{"instances": {"images": [[1], [2]]}}',                 # a named form of instances
    b'{"inputs": {"images": [[1], [2]]}',                     # a brace short
    b'{"inputs": [[1], [2]]}}',                               # a brace too many
    b'{"signature_name": 1, "instances": [[1], [2]]}',        # not a string
    b'{"signature_name": "a\x01", "instances": [[1], [2]]}',  # a control character
    b'{"signature_name": "\\x", "instances": [[1], [2]]}',    # not a JSON escape
    b'{"instances": [[1], [2]], "signature_name": "' + b"x" * 2000 + b'"}',   # past the tail
], ids=["signature-twice", "named-instances", "brace-short", "brace-extra",
        "signature-number", "control-character", "bad-escape", "long-signature-last"])
def test_one_array_forms_refuse_the_rest(body):
    """Other bodies are not one array: the general parsers answer them."""
    assert ja.array_span(body) is None
    assert ja.split_points(body, 2) is None
    assert ja.payload_of(body, "instances", "A") is None
    assert ja.payload_of(body, "inputs", "A") is None


def test_spans_with_more_than_numbers_are_left_to_the_general_parsers(splitter):
    """array_span finds the array textually, from the body's first and last bytes; the
    readers take only numbers and brackets, so a span that holds more (here two named
    inputs) is refused by them, and the body goes to the general parsers."""
    body = b'{"inputs": {"images": [[1], [2], [3]], "labels": [[1], [2]]}}'
    key, start, end = ja.array_span(body)
    assert b'"labels"' in body[start:end]
    assert splitter.parse(body) is None and ja.parse_array(b"[" + body[start:end] + b"]") is None


def test_elements_deeper_than_any_image_array_are_not_cut():
    # Found by generated requests: a body of 100,000 nested brackets (0.2 MB) took 17 s to
    # answer, the cut's pattern (one group per level) searched at every closing bracket.
    def body_of_depth(depth):   # four elements, each `depth` deep
        element = b"[" * depth + b"0" + b"]" * depth
        return b'{"instances": [' + b", ".join([element] * 4) + b"]}"

    body = body_of_depth(9)
    assert ja.cut_runs(body, *ja.array_span(body)[1:], 2) is None
    body = body_of_depth(8)
    assert len(ja.cut_runs(body, *ja.array_span(body)[1:], 2)) == 2
    n = 100_000
    body = b'{"instances": ' + b"[" * n + b"]" * n + b"}"
    begin = time.perf_counter()
    assert ja.cut_runs(body, *ja.array_span(body)[1:], 2) is None
    assert time.perf_counter() - begin < 1


@pytest.mark.parametrize("depth", [33, 65, 990])
def test_numeric_array_leaves_arrays_deeper_than_numpy_takes_to_the_caller(depth):
    # Found by generated requests: reshaping 65 or more levels raised NumPy's "maximum
    # supported dimension for an ndarray" ValueError, which zoo serve answered 500.
    parser = simdjson.Parser()
    doc = parser.parse(b"[" * depth + b"7" + b"]" * depth)
    assert ja.numeric_array(doc) is None
    del doc
    doc = parser.parse(b"[" * 32 + b"7" + b"]" * 32)
    assert ja.numeric_array(doc).shape == (1,) * 32


def test_payload_of_needs_the_body_key():
    assert ja.payload_of(b'{"instances": [[1], [2]]}', "inputs", "A") is None


def test_split_parser_reads_every_one_array_form(splitter):
    """The worker processes read the array of each form, as of the plain one."""
    x = pixels(5)
    text = json.dumps(x.tolist())
    for form in ('{{"instances": {}}}', '{{"signature_name": "s", "inputs": {}}}',
                 '{{"inputs": {{"images": {}}}, "signature_name": "s"}}'):
        body = form.format(text).encode()
        key, array = splitter.parse(body)
        assert np.array_equal(array, x)
        assert ja.payload_of(body, key, array).keys() == json.loads(body).keys()


def test_split_parser_gives_the_single_parse_array(splitter):
    before = splitter.parsed
    x = pixels(9, seed=1)
    for key in ("instances", "inputs"):
        got_key, array = splitter.parse(body_of(x, key))
        assert got_key == key and array.dtype == np.int64 and np.array_equal(array, x)
    floats = x / 7.0 - 3
    key, array = splitter.parse(body_of(floats, indent=2))
    assert array.dtype == np.float64 and np.array_equal(array, floats)
    # Integers in one part, a fraction in another: float64 for all.
    mixed = x.tolist()
    mixed[8][0][0][0] = 0.5
    _, array = splitter.parse(body_of(mixed))
    assert array.dtype == np.float64 and array[8, 0, 0, 0] == 0.5
    assert np.array_equal(array[:8], x[:8])
    # A dtype asked for: each part converted where it is parsed, as astype would.
    for values in (x, floats):
        _, array = splitter.parse(body_of(values), np.float32)
        assert array.dtype == np.float32 and np.array_equal(array, values.astype(np.float32))
    # Two images: two parts (one worker used); a 1-D element array works too.
    _, array = splitter.parse(body_of(x[:2]))
    assert np.array_equal(array, x[:2])
    _, array = splitter.parse(b'{"instances": [[1, 2], [3, 4], [5, 6]]}')
    assert array.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert splitter.parsed - before == 8                    # all of them in parts


def _ragged(where):
    x = pixels(9, seed=2).tolist()
    if where == "ragged-first":
        x[0][1][2] = [1, 2]
    elif where == "ragged-last":
        x[8][5] = x[8][5][:-1]
    elif where == "deeper-last":
        x[8][0][0] = [[1, 2, 3]] * 3
    elif where == "string-middle":
        x[4][0][0][0] = "7"
    elif where == "bool-last":
        x[8][0][0][0] = True
    elif where == "shapes-differ":                 # every part regular, not the same shape
        x = pixels(4, size=6).tolist() + pixels(5, size=5).tolist()
    elif where == "empty-last":
        x[8] = []
    elif where == "channels-differ":   # every part regular; one image's shape broadcasts
        x = pixels(4, size=6).tolist() + pixels(4, size=6, channels=1).tolist()
        assert [ja.parse_array(b"[" + body_of(x)[begin:end] + b"]").shape for begin, end
                in ja.split_points(body_of(x), 3)[1]] == [(2, 6, 6, 3), (2, 6, 6, 3),
                                                          (4, 6, 6, 1)]
    return body_of(x)


@pytest.mark.parametrize("where", ["ragged-first", "ragged-last", "deeper-last",
                                   "string-middle", "bool-last", "shapes-differ",
                                   "empty-last", "channels-differ"])
def test_split_parser_refuses_irregular_arrays_and_stays_usable(splitter, where):
    pids = worker_pids(splitter)
    assert splitter.parse(_ragged(where)) is None
    assert splitter.parse(_ragged(where), np.float32) is None
    # The workers answered in step: the same processes parse the next body correctly.
    x = pixels(9, seed=3)
    assert np.array_equal(splitter.parse(body_of(x))[1], x)
    assert worker_pids(splitter) == pids


@pytest.mark.parametrize("text", [b"[[1], [2, 3], []]", b"[[1, 2], [3], [4]]",
                                  b"[[1, [2]], [3, 4]]"])
def test_ragged_arrays_with_as_many_numbers_as_their_first_shape_are_refused(text):
    """simdjson flattens a ragged array: [[1], [2, 3], []] gives 3 numbers, as many as its
    first elements' shape (3, 1) holds; only the check of its brackets refuses it."""
    assert ja.parse_array(text) is None


def test_split_parser_refuses_malformed_json_and_stays_usable(splitter):
    body = body_of(pixels(9, seed=4))
    cut = body.rindex(b"]", 0, len(body) - 10)
    for bad in (body[:cut] + body[cut + 1:],                    # a bracket missing
                body.replace(b", ", b", ,", 1),                   # an empty element
                body.replace(b"1", b"1x", 1)):
        assert splitter.parse(bad) is None
    x = pixels(9, seed=5)
    assert np.array_equal(splitter.parse(body_of(x))[1], x)


def test_split_parser_buffers_grow_and_leave_no_files(monkeypatch):
    """Runs and arrays pass through a buffer each worker shares with the caller: a larger
    body gets a larger one, and no file is left behind (unlinked once both mapped it)."""
    made = []
    mkstemp = ja.tempfile.mkstemp

    def recorded(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        made.append(path)
        return fd, path
    monkeypatch.setattr(ja.tempfile, "mkstemp", recorded)
    s = ja.SplitParser(1, min_bytes=0)
    try:
        small, large = pixels(4, seed=8, size=8), pixels(6, seed=9, size=200)
        assert np.array_equal(s.parse(body_of(small))[1], small)
        (worker,) = s._pool
        size = worker.size
        assert size >= 1 << 20 and worker.buffer is not None and len(made) == 1
        _, array = s.parse(body_of(large))                 # 3 images x 200x200x3 in the part
        assert array.dtype == np.int64 and np.array_equal(array, large)    # 8 bytes a number
        assert worker.size > size and s._pool == [worker] and len(made) == 2
        _, array = s.parse(body_of(large), np.float32)
        assert array.dtype == np.float32 and np.array_equal(array, large.astype(np.float32))
        assert s._pool == [worker] and len(made) == 2 and s.parsed == 3
        assert np.array_equal(s.parse(body_of(small))[1], small)   # the larger one stays
        assert worker.size > size and len(made) == 2
        assert made[0].startswith("/dev/shm/zoo-json-") or not os.path.isdir("/dev/shm")
        assert not any(os.path.exists(p) for p in made)
    finally:
        s.close()
    assert worker.buffer is None


def test_no_room_for_buffers_leaves_bodies_to_the_caller(monkeypatch):
    """Space for the buffers is reserved up front: where there is none (a full /dev/shm and
    temporary directory), the splitter says so and leaves every body to the caller."""
    import errno
    s = ja.SplitParser(1, min_bytes=0)
    try:
        s.start()

        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(ja.os, "posix_fallocate", full)
        x = pixels(5, seed=10)
        assert s.parse(body_of(x)) is None
        assert s.error.startswith("no room for a shared buffer (") and "No space" in s.error
        assert s.parse(body_of(x)) is None and s.parsed == 0
        assert all(w.process.is_alive() for w in s._pool)     # not killed for it
    finally:
        s.close()


def test_split_parser_leaves_small_bodies_and_no_workers_to_the_caller():
    x = pixels(9)
    assert ja.SplitParser(1, min_bytes=10 ** 9).parse(body_of(x)) is None
    none = ja.SplitParser(0, min_bytes=0)
    assert none.parse(body_of(x)) is None and none._pool == []
    other = ja.SplitParser(1, min_bytes=0)          # another form: no process started
    assert other.parse(b'{"model": "m", "instances": [[1], [2]]}') is None
    assert other._pool == []
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=f"workers must be a non-negative integer. "
                                             f"Received: {bad!r}"):
            ja.SplitParser(bad)


def test_split_parser_replaces_a_dead_worker_and_stops_on_close():
    s = ja.SplitParser(1, min_bytes=0)
    x = pixels(5, seed=6)
    assert np.array_equal(s.parse(body_of(x))[1], x)       # started by the first body
    (first,) = s._pool
    first.process.kill()
    first.process.join()
    assert np.array_equal(s.parse(body_of(x))[1], x)       # a new worker parsed it
    (second,) = s._pool
    assert second.process.pid != first.process.pid and second.process.is_alive()
    # A worker dying while it holds a part: that body is left to the caller, the next
    # one is parsed by a new worker.
    second.process.kill()
    second.process.join()
    s._pool[0] = second                                     # still listed as the worker
    s.start = lambda: None                                  # not replaced before the call
    assert s.parse(body_of(x)) is None
    del s.start
    assert np.array_equal(s.parse(body_of(x))[1], x)
    (third,) = s._pool
    assert third.process.pid not in (first.process.pid, second.process.pid)
    s.close()
    assert not third.process.is_alive() and third.process.exitcode == 0
    assert s.parse(body_of(x)) is None and s._pool == []


def test_a_worker_leaves_a_ctrl_c_to_the_server():
    """A Ctrl-C at the terminal reaches the server's whole process group: each worker
    printed a KeyboardInterrupt traceback and died as zoo serve shut down. It goes on
    until the server closes it."""
    import signal
    s = ja.SplitParser(1, min_bytes=0)
    try:
        x = pixels(5, seed=8)
        assert np.array_equal(s.parse(body_of(x))[1], x)   # the worker is in its loop
        (worker,) = s._pool
        os.kill(worker.process.pid, signal.SIGINT)
        assert np.array_equal(s.parse(body_of(x))[1], x)   # answered by the same worker
        assert s._pool == [worker] and worker.process.is_alive()
    finally:
        s.close()
    assert worker.process.exitcode == 0


def test_a_worker_failing_mid_body_takes_the_unanswered_one_down_too():
    """The second worker dead when a body is sent: the first already holds its part, and
    its answer, never read, would be read as the answer to its next part -- it is stopped
    and replaced too, and the next bodies (of other image sizes) answer right."""
    s = ja.SplitParser(2, min_bytes=0)
    try:
        x = pixels(9, seed=6)
        assert np.array_equal(s.parse(body_of(x))[1], x)    # the buffers are mapped
        first, second = s._pool
        second.process.kill()
        second.process.join()
        s.start = lambda: None                              # not replaced before the call
        assert s.parse(body_of(x)) is None
        del s.start
        assert not first.process.is_alive()
        for size in (5, 4):
            y = pixels(9, seed=size, size=size)
            assert np.array_equal(s.parse(body_of(y))[1], y)
        assert not {first, second} & set(s._pool)
    finally:
        s.close()


def test_busy_workers_leave_the_body_to_the_caller(splitter):
    """Bodies parsed at once in several threads: each gets the workers free at that moment
    (none: ``None``), and every answer is right."""
    bodies = [(pixels(9, seed=s), body_of(pixels(9, seed=s))) for s in range(6)]
    results, errors = [], []

    def run(x, body):
        try:
            for _ in range(5):
                got = splitter.parse(body)
                if got is None:
                    got = ("caller", ja.parse_array(json.dumps(x.tolist()).encode()))
                results.append(np.array_equal(got[1], x))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=b) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(results) and len(results) >= 30


def test_a_body_does_not_wait_for_busy_workers(splitter):
    """Every worker held by another body: parse answers ``None`` at once (the caller parses
    the body itself), it does not wait for one to be free."""
    x = pixels(9, seed=7)
    splitter.parse(body_of(x))                                 # the workers started
    held = [w for w in splitter._pool if w.lock.acquire(blocking=False)]
    got = []
    thread = threading.Thread(target=lambda: got.append(splitter.parse(body_of(x))))
    try:
        assert len(held) == 2
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive() and got == [None]
    finally:
        for worker in held:
            worker.lock.release()
        if thread.ident is not None:
            thread.join()
    assert np.array_equal(splitter.parse(body_of(x))[1], x)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc (Linux)")
def test_workers_import_no_tensorflow(splitter):
    """The worker processes start from zoo.jsonarrays alone (numpy and simdjson)."""
    for pid in worker_pids(splitter):
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
        assert "_pywrap_tensorflow" not in maps and "libtensorflow" not in maps



def test_from_zoo_import_jsonarrays_loads_no_tensorflow():
    """``from zoo import jsonarrays`` (a submodule asked for as an attribute first) imports
    that module alone, not the builders and TensorFlow."""
    import subprocess
    import sys
    code = ("import sys; from zoo import jsonarrays, tables; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, jsonarrays.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         check=True).stdout.split()
    assert out == ["False", "False", "zoo.jsonarrays"]
