"""zoo.jsonscan: the compiled one-pass reader of JSON pixel lists, against orjson and simdjson."""

import json
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest

pytest.importorskip("numba")

from zoo import jsonscan as js  # noqa: E402


@pytest.fixture(scope="module")
def threads():
    with ThreadPoolExecutor(3) as pool:
        yield pool


def body_of(x, key="instances", **dumps):
    return json.dumps({key: x.tolist() if isinstance(x, np.ndarray) else x}, **dumps).encode()


def pixels(n, seed=0, size=6, channels=3):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, channels))


def test_the_kernel_is_available_and_matches_its_constant():
    from zoo import _jsonkernel
    assert js.available() is None
    assert js.MAX_DEPTH == _jsonkernel.MAX_DEPTH


@pytest.mark.parametrize("dumps", [{}, {"separators": (",", ":")}, {"indent": 1},
                                   {"indent": "\t"}], ids=["spaced", "compact", "indented",
                                                           "tabs"])
@pytest.mark.parametrize("parts", [1, 2, 4])
def test_integer_pixels_read_exactly_in_any_layout(dumps, parts, threads):
    x = pixels(7, seed=parts)
    for key in ("instances", "inputs"):
        body = body_of(x, key, **dumps)
        got_key, array = js.scan_body(body, executor=threads, parts=parts)
        assert got_key == key and array.dtype == np.int64 and array.shape == x.shape
        assert np.array_equal(array, x)
        for dtype in (np.float32, np.float64, np.float16, np.uint8):
            _, array = js.scan_body(body, dtype, executor=threads, parts=parts)
            assert array.dtype == dtype and np.array_equal(array, x.astype(dtype))


@pytest.mark.parametrize("form", [
    '{{"signature_name": "serving_default", "instances": {}}}',
    '{{"instances": {}, "signature_name": "serving_default"}}',
    '{{"inputs": {{"images": {}}}}}',
    '{{"signature_name": "s", "inputs": {{"images": {}}}}}',
], ids=["signature-first", "signature-last", "named", "named-signature"])
@pytest.mark.parametrize("parts", [1, 3])
def test_bodies_with_a_signature_name_or_a_named_input(form, parts, threads):
    """TensorFlow Serving's other one-array forms are read as the plain one, in parts too."""
    from zoo.jsonarrays import payload_of
    x = pixels(7, seed=11)
    body = form.format(json.dumps(x.tolist())).encode()
    key, array = js.scan_body(body, np.float32, executor=threads, parts=parts)
    assert array.dtype == np.float32 and np.array_equal(array, x)
    payload = payload_of(body, key, array)
    want = json.loads(body)
    assert payload.keys() == want.keys() and payload.get("signature_name") == \
        want.get("signature_name")
    # Two named inputs: the span from the first array to the body's end holds a key, which
    # the reader refuses.
    two = b'{"inputs": {"images": [[1], [2]], "labels": [[1], [2]]}}'
    assert js.scan_body(two) is None and js.scan_body(two, executor=threads, parts=2) is None


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 1, 2), (1, 1, 1, 1, 1, 1, 1, 2)])
def test_every_depth_up_to_the_limit(shape):
    x = np.arange(int(np.prod(shape))).reshape(shape) - 7
    key, array = js.scan_body(body_of(x))
    assert array.shape == shape and np.array_equal(array, x)
    if len(shape) == js.MAX_DEPTH:   # one more dimension: left to the general parsers
        assert js.scan_body(body_of(x[None])) is None


def test_decimals_round_like_python_and_numpy():
    """Every decimal the kernel takes is the correctly rounded double (Python's float) and,
    as float32, numpy's rounding of that double -- what simdjson's path gives."""
    rng = np.random.RandomState(3)
    texts = []
    for _ in range(4000):
        digits = rng.randint(1, 16)
        mantissa = rng.randint(0, 10 ** min(digits, 15), dtype=np.int64)
        point = rng.randint(0, digits + 1)
        s = str(mantissa).rjust(point + 1, "0")
        text = (s[:len(s) - point] + "." + s[len(s) - point:]) if point else s
        if rng.rand() < 0.3:
            text += rng.choice(["e", "E"]) + rng.choice(["", "+", "-"]) + str(rng.randint(0, 8))
        if rng.rand() < 0.5:
            text = "-" + text
        texts.append(text)
    texts += ["0.1", "0.2", "0.3", "1e22", "1e-22", "9007199254740992e0", "-0.0", "0.0",
              "2.5e-3", "123456789012345e7", "0.000000000000001"]
    body = ('{"inputs": [' + ", ".join(texts) + "]}").encode()
    _, got = js.scan_body(body)
    want = np.array([float(t) for t in texts])
    assert got.dtype == np.float64
    assert np.array_equal(got.view(np.int64), want.view(np.int64))    # bit for bit, -0.0 too
    _, got32 = js.scan_body(body, np.float32)
    assert np.array_equal(got32.view(np.int32), want.astype(np.float32).view(np.int32))


def test_integers_and_a_decimal_give_float64_when_exact(threads):
    x = pixels(6, seed=4).tolist()
    x[5][0][0][0] = 0.5                     # in the last part
    _, array = js.scan_body(body_of(x), executor=threads, parts=3)
    assert array.dtype == np.float64 and array[5, 0, 0, 0] == 0.5
    assert np.array_equal(array[:5], np.asarray(x[:5]))
    _, big = js.scan_body(b'{"instances": [999999999999999999, -5]}')     # 18 digits
    assert big.dtype == np.int64 and big.tolist() == [999999999999999999, -5]


@pytest.mark.parametrize("text, into_float32", [
    ("1234567890123456789", False),     # 19 digits
    ("0.12345678901234567", True),      # 17 significant digits (a float64 repr)
    ("1e23", False), ("1e-23", False), ("1.5e300", False),     # beyond 10**22
    ("9007199254740993.0", True),       # mantissa beyond 2**53
    ("1234567890.1234567891", False),   # 20 significant digits
    # exponents beyond int64 (Python: inf and 0.0), not wrapped round to 10 and 1.5
    ("1e18446744073709551617", False), ("1.5e18446744073709551616", False),
    ("1e-18446744073709551615", False),
], ids=["19-digits", "17-significant", "1e23", "1e-23", "1.5e300", "beyond-2**53",
        "20-significant", "exponent-2**64+1", "exponent-2**64", "exponent-minus-2**64"])
def test_numbers_beyond_the_fast_path_are_left_to_the_general_parsers(text, into_float32):
    """... except long decimals into float32 (test_long_decimals_round_like_numpy_...)."""
    body = f'{{"instances": [[1, 2], [3, {text}]]}}'.encode()
    assert js.scan_body(body) is None and js.scan_body(body, np.float64) is None
    got = js.scan_body(body, np.float32)
    if into_float32:
        assert got[1][1, 1] == np.float32(float(text))
    else:
        assert got is None


@pytest.mark.parametrize("body", [
    '{"instances": []}', '{"instances": [[]]}', '{"instances": [[1], []]}',
    '{"instances": [1, 2,]}', '{"instances": [1 2]}', '{"instances": [,1]}',
    '{"instances": [01]}', '{"instances": [-]}', '{"instances": [1.]}', '{"instances": [.5]}',
    '{"instances": [1e]}', '{"instances": [+1]}', '{"instances": [1e+]}',
    '{"instances": [-01]}', '{"instances": [0x10]}', '{"instances": [NaN]}',
    '{"instances": [Infinity]}', '{"instances": [true]}', '{"instances": [null]}',
    '{"instances": ["1"]}', '{"instances": [{"b64": "aa"}]}',
    '{"instances": [[1, 2], [3]]}', '{"instances": [[1, 2], 3]}', '{"instances": [1, [2]]}',
    '{"instances": [[1, 2], [[3, 4]]]}', '{"instances": [[1, 2]], [3]}',
    '{"instances": [1], [2]}',
    '{"instances": [[1, 2]]]}', '{"instances": [[1, 2]}', '{"instances": [1]',
    '{"instances": [1]}x', '{"instances": [1], "model": "a"}',
    '{"model": "a", "instances": [1]}', '{"inputs": {"x": [1], "y": [2]}}',
    '{"signature_name": "a", "instances": [1], "signature_name": "b"}', '[1, 2]',
    '{"instances": [1\x00]}', '{"instances": [1\x0b]}', '{"instances": [1\u00a0]}',
], ids=lambda b: b[13:30])
def test_everything_else_is_left_to_the_general_parsers(body, threads):
    data = body.encode()
    assert js.scan_body(data) is None
    assert js.scan_body(data, np.float32, executor=threads, parts=2) is None


def test_parts_must_agree(threads):
    """Each run is regular alone; the runs must also agree with each other."""
    x = pixels(4, seed=5)
    good = body_of(x)
    assert np.array_equal(js.scan_body(good, executor=threads, parts=2)[1], x)
    other_size = body_of(x[:2].tolist() + pixels(2, seed=6, size=5).tolist())
    assert js.scan_body(other_size, executor=threads, parts=2) is None
    assert js.scan_body(other_size) is None
    ragged = x.tolist()
    ragged[3][2][1] = [1, 2]                  # in the last run only
    assert js.scan_body(body_of(ragged), executor=threads, parts=2) is None
    # Runs regular alone and of the same inner length, but of different depths: rows of
    # two numbers, then images of two rows of one number each (4 numbers for 4 images).
    deeper = b'{"instances": [[100000, 100000], [100000, 100000], [[1], [2]], [[3], [4]]]}'
    from zoo.jsonarrays import array_span, cut_runs
    start, end = array_span(deeper)[1:]
    assert [deeper[b:e] for b, e in cut_runs(deeper, start, end, 2)] == [
        b"[100000, 100000], [100000, 100000]", b"[[1], [2]], [[3], [4]]"]
    assert js.scan_body(deeper, executor=threads, parts=2) is None
    assert js.scan_body(deeper) is None


def test_carriage_returns_are_white_space(threads):
    """JSON's white space is space, tab, line feed and carriage return: a body written with
    CRLF line ends (or lone CRs) reads as the plain one, in parts too."""
    x = pixels(3, seed=13)
    for newline in (b"\r\n", b"\r"):
        body = body_of(x, indent=1).replace(b"\n", newline)
        assert newline in body
        for parts in (1, 2):
            key, array = js.scan_body(body, executor=threads, parts=parts)
            assert key == "instances" and np.array_equal(array, x)


def test_one_digit_numbers_without_spaces_fill_their_range():
    """n one-digit numbers and their n - 1 commas take 2n - 1 bytes: the most numbers a
    range of that length can hold, room for every one of them."""
    for values in ([7], [1, 2, 3], list(range(10))):
        body = body_of(values, separators=(",", ":"))
        for dtype in (None, np.float32):
            key, array = js.scan_body(body, dtype)
            assert array.tolist() == values


def test_whatever_the_kernel_takes_is_json_of_the_same_numbers():
    """Random edits of small bodies: whenever the kernel reads one, orjson reads the same
    body to the same regular array (the kernel never takes what JSON does not say)."""
    rng = random.Random(7)
    alphabet = b"0123456789-+.eE[], \n\t\r{}\"ax"
    seeds = [body_of(pixels(2, seed=8, size=2, channels=2)), body_of([[1.5, -2], [3e2, 0]]),
             body_of([1, 2, 3], separators=(",", ":")), body_of([[[-0.25]]]),
             body_of([[0.12345678901234567, 2], [3, 4.5e-7]])]
    taken = refused = 0
    for _ in range(6000):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            op, at = rng.random(), rng.randrange(len(body))
            if op < 0.4:
                body[at] = rng.choice(alphabet)
            elif op < 0.7:
                body.insert(at, rng.choice(alphabet))
            else:
                del body[at]
        body = bytes(body)
        got, as_float32 = js.scan_body(body), js.scan_body(body, np.float32)
        if got is None and as_float32 is None:
            refused += 1
            continue
        taken += 1
        doc = orjson.loads(body)                 # raises if the kernel took invalid JSON
        ((key, value),) = doc.items()
        want = np.asarray(value)
        assert want.dtype != object, body
        if got is not None:
            assert key == got[0] and want.shape == got[1].shape, body
            assert np.array_equal(want, got[1]), body
            assert (want.dtype.kind == "i") == (got[1].dtype.kind == "i"), body
            assert as_float32 is not None, body
        if as_float32 is not None:             # long decimals too
            assert key == as_float32[0], body
            assert np.array_equal(as_float32[1],
                                  want.astype(np.float64).astype(np.float32)), body
    assert taken > 100 and refused > 100


def test_without_numba_nothing_is_read(monkeypatch):
    monkeypatch.setattr(js, "_KERNEL", None)
    monkeypatch.setattr(js, "_KERNEL_ERROR", None)
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "zoo._jsonkernel", raising=False)
    assert "ModuleNotFoundError" in js.available() or "ImportError" in js.available()
    assert js.scan_body(body_of(pixels(2))) is None


def test_split_parser_scans_large_bodies_on_its_threads():
    from zoo.jsonarrays import SplitParser
    s = SplitParser(2, scan_min_bytes=1000)
    try:
        x = pixels(9, seed=9)
        key, array = s.scan(body_of(x), np.float32)
        assert key == "instances" and array.dtype == np.float32 and np.array_equal(array, x)
        assert s.scanned == 1 and s._threads is not None and s._pool == []   # no processes
        small = body_of(pixels(1, size=2))
        assert len(small) < 1000 and np.array_equal(s.scan(small)[1], pixels(1, size=2))
        assert s.scanned == 1                                  # read in the calling thread
        assert s.scan(b'{"instances": [[1, 2], [3]]}' + b" " * 1000) is None
        exact = body_of(pixels(2, size=3))
        exact = exact[:-1] + b" " * (1000 - len(exact)) + b"}"
        assert len(exact) == 1000 and np.array_equal(s.scan(exact)[1], pixels(2, size=3))
        assert s.scanned == 2                                  # from scan_min_bytes on
    finally:
        s.close()
    assert s._threads is None
    assert np.array_equal(s.scan(body_of(x))[1], x)           # after close: this thread
    assert s.scanned == 2
    # Threads shut down by close() in another thread after this scan took them: the body
    # is read in the calling thread.
    late = SplitParser(1, scan_min_bytes=0)
    late._threads = ThreadPoolExecutor(1)
    late._threads.shutdown()
    assert np.array_equal(late.scan(body_of(x))[1], x) and late.scanned == 0


def test_split_parser_cuts_from_128_kb_by_default():
    """A LeNet-5 batch of 32 (~180 KB of JSON) is read in parts (0.31 against 0.45 ms on 2
    cores, benchmarks/README.md item 30); 12 images (~67 KB) gained nothing and are not."""
    from zoo.jsonarrays import SplitParser
    s = SplitParser(1)
    try:
        assert s.scan_min_bytes == 128 * 1024
        for n, scanned in ((12, 0), (32, 1)):
            x = np.random.RandomState(n).randint(0, 256, (n, 32, 32, 1))
            body = orjson.dumps({"instances": x.tolist()})
            assert (len(body) >= 128 * 1024) == bool(scanned)
            assert np.array_equal(s.scan(body, np.float32)[1], x)
            assert s.scanned == scanned
    finally:
        s.close()


def test_from_zoo_import_jsonscan_loads_no_tensorflow():
    code = ("import sys; from zoo import jsonscan; assert jsonscan.available() is None; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_the_kernel_compiles_without_a_cache_directory(monkeypatch):
    """numba refuses cache=True where it has no writable directory for its cache: the
    kernel is then compiled in each process instead."""
    import importlib

    import numba

    from zoo import _jsonkernel
    njit = numba.njit

    def no_cache(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function '_scan': no locator available")
        return njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", no_cache)
    try:
        module = importlib.reload(_jsonkernel)
        out, shape = np.empty(4, np.float32), np.empty(js.MAX_DEPTH + 1, np.int64)
        assert module.scan(np.frombuffer(b"[1, 2], [3, 4]", np.uint8), 0, 14, out, shape,
                           False, True) == (1, 4)
        assert out.tolist() == [1, 2, 3, 4] and shape[:2].tolist() == [2, 2]
        assert type(module.scan._cache).__name__ == "NullCache"      # numba's "no cache"
    finally:
        monkeypatch.undo()
        importlib.reload(_jsonkernel)


def test_long_decimals_round_like_numpy_into_float32():
    """Decimals of 16-18 significant digits (Python's repr of a float64) are read into
    float32 as numpy rounds the correctly rounded double; into float64, and near a float32
    rounding tie, they are left to simdjson."""
    rng = np.random.RandomState(11)
    values = np.concatenate([
        rng.rand(3000), rng.randint(0, 256, 3000) / 255.0, rng.rand(3000) * 255,
        (rng.rand(3000) * 255).astype(np.float32).astype(np.float64),
        -rng.rand(3000) * 1e6, 1e-4 + rng.rand(3000) * 1e-3])
    texts = [repr(float(v)) for v in values]
    body = ('{"instances": [' + ", ".join(texts) + "]}").encode()
    _, got = js.scan_body(body, np.float32)
    want = np.array([float(t) for t in texts]).astype(np.float32)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert js.scan_body(body) is None and js.scan_body(body, np.float64) is None
    # Exactly between two float32s (a double, written exactly in <= 17 digits) and next to
    # such a tie: read as numpy rounds them, or left to simdjson -- never rounded the other way.
    floats = rng.rand(2000).astype(np.float32) * np.float32(100)
    ties = (floats.astype(np.float64) + np.nextafter(floats, np.float32(1e9)).astype(
        np.float64)) / 2
    near = [np.nextafter(t, t + (1 if i % 2 else -1)) for i, t in enumerate(ties)]
    long = 0
    for v in list(ties) + near:
        text = repr(float(v))
        got = js.scan_body(f'{{"inputs": [{text}]}}'.encode(), np.float32)
        digits = text.split("e")[0].replace(".", "").lstrip("-0")
        if int(digits) > 2 ** 53:       # read approximately: must be left alone
            long += 1
            assert got is None, text
        else:                           # read exactly: numpy's rounding, ties to even
            assert got[1].view(np.int32)[0] == np.float32(float(text)).view(np.int32), text
    assert long > 1000


def test_too_little_room_is_read_again_with_enough(monkeypatch, threads):
    """The output's room is estimated from a range's first bytes; a range holding more
    numbers than that is read again with room for the most it can hold."""
    x = pixels(5, seed=12)
    body = body_of(x)
    estimates = []
    monkeypatch.setattr(js, "_room", lambda buf, b, e: estimates.append(e - b) or 7)
    for parts in (1, 3):
        for dtype in (None, np.float32):
            key, array = js.scan_body(body, dtype, executor=threads, parts=parts)
            assert np.array_equal(array, x)
    assert len(estimates) == 2 * (1 + 3)                    # then the bound of every range
    # Room for all but the last number: that one is not written past the output's end.
    monkeypatch.setattr(js, "_room", lambda buf, b, e: x.size - 1)
    for dtype in (None, np.float32):
        assert np.array_equal(js.scan_body(body, dtype)[1], x)
    # Short numbers first, long ones later: the estimate from the start falls short.
    monkeypatch.undo()
    mixed = [[1] * 30000 + [123456789] * 30000]
    _, array = js.scan_body(body_of(mixed))
    assert np.array_equal(array, mixed)
    assert js._room(np.frombuffer(body_of(mixed), np.uint8), 15, 100000) < 60000


def test_the_kernel_reads_nothing_past_the_end_of_its_range():
    """A range is read up to its end only, whatever bytes follow it in the buffer: a minus
    sign or a number cut at the range's end is not completed from the bytes beyond."""
    assert js.scan_elements(b"1, -5", 0, 4) is None            # "1, -": no number after "-"
    assert js.scan_elements(b"1, -5", 0, 5).tolist() == [1, -5]
    assert js.scan_elements(b"1, 25", 0, 4).tolist() == [1, 2]  # "1, 2", the 5 beyond
    assert js.scan_elements(b"1, 2.5", 0, 5) is None           # "1, 2." has no fraction
