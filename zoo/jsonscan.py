"""JSON pixel lists read in one pass by compiled code: ``{"instances": [...]}`` of integers.

A REST client sends images as nested JSON lists of numbers: 32 RGB 160x160 images are 12.9 MB
of text. simdjson (:mod:`zoo.jsonarrays`) builds its document of them, copies the numbers out
and a second pass checks that the array is regular; here one loop, compiled by numba, reads
the text once: it checks the grammar and the array's regular shape as it goes and writes
each number into a numpy array of the model's input dtype -- 32 ms for those 12.9 MB on one
core against ~63 ms. It releases the GIL, so a large body's images are read in parts by
threads at once (:func:`scan_body`).

What it reads: a body of one array -- ``{"instances": [...]}``, ``{"inputs": [...]}`` or
``{"inputs": {"<input name>": [...]}}``, each with an optional ``"signature_name"`` member
first or last (:func:`zoo.jsonarrays.array_span`; white space anywhere JSON allows it) --
whose array is regular, of at most :data:`MAX_DEPTH`
dimensions, of integers of up to 18 digits, or of decimals whose power of ten is within
10**±22 and whose digits make a number of at most 2**53 (each then one correctly rounded
division or multiplication, as every JSON parser's fast path) -- or, into float32, of up to
18 digits (Python's repr of a float64): approximated within a few ulps of the correctly
rounded double, which rounds to the same float32 unless a float32 rounding tie lies that
close, and then the body is left to simdjson. Anything else -- other keys, b64 images,
longer numbers, malformed or ragged arrays -- gives ``None`` and the general parsers answer
it, with their error messages.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from zoo.jsonarrays import array_span, cut_runs

__all__ = ["MAX_DEPTH", "available", "scan_body", "scan_elements"]

#: The most dimensions of an array read (a batch of images has 4; the kernel's constant).
MAX_DEPTH = 8
#: The kernel's answers for a decimal in an integer-only read and for an output too short
#: (its other answers below zero: -1 malformed, irregular or another form; -2 a number beyond
#: the fast path).
_DECIMAL, _NO_ROOM = -3, -4
#: The output's room is estimated from the numbers in a range's first bytes (this many),
#: with this margin; a range that holds more is read again with room for the most it can.
_SAMPLE_BYTES = 64 * 1024
_ROOM_MARGIN = 1.5
#: Dtypes the kernel writes as asked; for any other (or none) it reads exactly -- int64, or
#: float64 once a decimal shows -- and the array is then cast.
_DIRECT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_KERNEL = None
_KERNEL_ERROR: Optional[str] = None
_KERNEL_LOCK = threading.Lock()


def _compile():
    from zoo._jsonkernel import scan   # not "from zoo import": that looks up builders
    return scan


def _kernel():
    """The compiled kernel (compiled on first use, cached on disk by numba); ``None`` when
    numba is not installed or cannot compile here (:func:`available` says why)."""
    global _KERNEL, _KERNEL_ERROR
    if _KERNEL is None and _KERNEL_ERROR is None:
        with _KERNEL_LOCK:
            if _KERNEL is None and _KERNEL_ERROR is None:
                try:
                    _KERNEL = _compile()
                except Exception as exc:  # numba missing or broken: the general parsers
                    from zoo.common import exception_line
                    _KERNEL_ERROR = exception_line(exc)
    return _KERNEL


def available() -> Optional[str]:
    """``None`` when the kernel can run, else why not."""
    _kernel()
    return _KERNEL_ERROR


def warm_up(dtypes=(np.float32,)) -> None:
    """Compile (or load from numba's cache) the kernel for ``dtypes``' outputs now, not on
    the first request."""
    for dtype in dtypes:
        scan_elements(b"[1.5]", 1, 4, dtype)


def _room(buf, begin: int, end: int) -> int:
    """How many numbers ``buf[begin:end]`` probably holds, with :data:`_ROOM_MARGIN`: from
    the commas among its first :data:`_SAMPLE_BYTES` (every number but the last is followed
    by one)."""
    sample = buf[begin:min(end, begin + _SAMPLE_BYTES)]
    commas = int(np.count_nonzero(sample == 44)) + 1
    return int((end - begin) * commas / max(len(sample), 1) * _ROOM_MARGIN) + 16


def _scan_ranges(buf, ranges, dtype, executor):
    """Each range's elements through the kernel (the first in this thread, the others on
    ``executor``), into one array; ``None`` if any range is refused or they disagree."""
    kernel = _kernel()
    if kernel is None:
        return None
    direct = dtype is not None and np.dtype(dtype) in _DIRECT_DTYPES
    ints_only, estimate = not direct, True
    while True:
        out_dtype = np.dtype(dtype) if direct else np.dtype(np.int64 if ints_only else
                                                             np.float64)
        to_float32 = out_dtype == np.float32
        # Room for the numbers of each range: at most (its length + 1) // 2; usually far
        # fewer (~2.6 bytes a number for spaced pixels, ~21 for float64 reprs), so first
        # as many as its first bytes promise. A large fresh allocation costs its page
        # faults (100 MB: 12 ms, and up to 175 ms when two threads fault it at once).
        bounds = [(end - begin + 1) // 2 for begin, end in ranges]
        if estimate:
            bounds = [min(bound, _room(buf, begin, end)) for bound, (begin, end)
                      in zip(bounds, ranges)]
        starts = np.cumsum([0] + bounds)
        out = np.empty(int(starts[-1]), out_dtype)
        shapes = [np.empty(MAX_DEPTH + 1, np.int64) for _ in ranges]

        def run(i, out=out, shapes=shapes):
            begin, end = ranges[i]
            return kernel(buf, begin, end, out[starts[i]:starts[i + 1]], shapes[i], ints_only,
                          to_float32)

        futures = [executor.submit(run, i) for i in range(1, len(ranges))]
        results = [run(0)] + [f.result() for f in futures]
        codes = [code for code, _ in results]
        if _NO_ROOM in codes and estimate:
            estimate = False                # more numbers than estimated: read again
            continue
        if _DECIMAL in codes and ints_only:
            ints_only = False               # decimals among them: read again as float64
            continue
        if min(codes) < 0 or len(set(codes)) != 1:
            return None
        leaf = codes[0]
        inner = [tuple(int(s) for s in shape[1:leaf + 1]) for shape in shapes]
        if len(set(inner)) != 1:
            return None
        # Move each run's numbers up behind the previous run's (numpy copes with the overlap).
        total = 0
        for i, (_, count) in enumerate(results):
            if starts[i] != total:
                out[total:total + count] = out[starts[i]:starts[i] + count]
            total += count
        images = int(sum(int(shape[0]) for shape in shapes))
        array = out[:total].reshape((images, *inner[0]))
        if dtype is not None and array.dtype != np.dtype(dtype):
            array = array.astype(dtype)
        return array


def scan_elements(text, begin: int, end: int, dtype=None) -> Optional[np.ndarray]:
    """The elements of a JSON array (``text[begin:end]``, without its brackets) as a numpy
    array of ``dtype`` (default: int64 when every number is an integer, else float64);
    ``None`` when the kernel does not read them (see the module's docstring)."""
    buf = np.frombuffer(text, np.uint8)
    return _scan_ranges(buf, [(begin, end)], dtype, None)


def scan_body(body: bytes, dtype=None, *, executor=None, parts: int = 1):
    """``(key, array)`` for a body of one array the kernel reads (module docstring;
    :func:`zoo.jsonarrays.payload_of` builds the request's payload from them), else
    ``None``.

    Args:
        body: the request body (bytes of JSON text).
        dtype: the array's dtype (numbers are converted as they are read); default: int64
            when every number is an integer, else float64.
        executor: a ``concurrent.futures`` executor whose threads read ``parts - 1`` runs of
            the images while the calling thread reads the first.
        parts: into how many runs of whole images the body is cut (fewer if it has fewer).
    """
    span = array_span(body)
    if span is None:
        return None
    key, start, end = span
    ranges = cut_runs(body, start, end, parts) if executor is not None else None
    array = _scan_ranges(np.frombuffer(body, np.uint8), ranges or [(start, end)], dtype,
                         executor)
    return None if array is None else (key, array)
