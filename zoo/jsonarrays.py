"""JSON arrays of numbers straight into numpy: the REST server's pixel-list request bodies.

TensorFlow Serving's row format sends images as nested JSON lists of numbers: a batch of 32
RGB 160x160 images is 12.9 MB of text. simdjson parses such an array and copies its numbers
into numpy without a Python object per number, and a check of the text's brackets and commas
keeps ragged arrays out (:func:`parse_array`).

simdjson holds the GIL while it parses, so threads cannot share that work. A body of one large
array (``{"instances": [...]}`` or ``{"inputs": [...]}``, :func:`array_span`) is instead cut
between its images and the parts parsed at once: the calling thread parses the first, worker
processes the rest (:class:`SplitParser`), through buffers they share with the caller -- on 2
cores 41-43 ms instead of 70 ms for those 12.9 MB (into float32).

This module imports numpy and simdjson only: the worker processes start from it.
"""

from __future__ import annotations

import functools
import mmap
import multiprocessing
import os
import re
import signal
import tempfile
import threading
from typing import Optional

import numpy as np

__all__ = ["SplitParser", "array_span", "is_regular", "numeric_array", "parse_array",
           "payload_of"]

#: simdjson parsers kept for reuse, and the largest text after which one is still kept (it
#: holds ~6x the text's size: ~200 MB at this limit).
PARSER_POOL = 2
PARSER_KEEP_BYTES = 32 * 1024 * 1024
_PARSERS: list = []
_PARSERS_LOCK = threading.Lock()

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[],")


def is_regular(text: bytes, shape) -> bool:
    """Whether JSON ``text``, an array whose leaves are all numbers, has the regular
    ``shape`` (a candidate read from its first elements).

    With no strings in it, every bracket and comma is structural, and a regular array's
    brackets and commas form one fixed pattern (``(2, 2)``: ``[[,],[,]]``): the check
    compares the two. With the count of numbers equal to ``prod(shape)`` (the caller's
    check), this excludes ragged arrays, numbers beside arrays and empty arrays.
    """
    structure = text.translate(None, _NOT_STRUCTURE)
    return structure == regular_pattern(tuple(shape))


@functools.lru_cache(maxsize=4)
def regular_pattern(shape) -> bytes:
    """The brackets and commas of a regular array of ``shape`` (cached: ~6 ms to build for
    32 RGB 160x160 images)."""
    pattern = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        pattern = b"[" + b",".join([pattern] * size) + b"]"
    return pattern


#: The most dimensions :func:`numeric_array` gives an array (NumPy 1's limit; NumPy 2's is
#: 64): deeper nesting is left to the general path and its error (reshaping it raised
#: NumPy's ValueError, a 500 from ``zoo serve``).
_MAX_NDIM = 32


def first_shape(value):
    """The shape read along the first elements of a simdjson array (``None`` if empty)."""
    import simdjson
    shape = []
    while isinstance(value, simdjson.Array):
        if len(value) == 0:
            return None
        shape.append(len(value))
        value = value[0]
    return tuple(shape)


def numeric_array(value, text=None):
    """A simdjson array of numbers as a numpy array (int64 when they are all integers,
    else float64), or ``None``.

    ``text``: JSON whose brackets and commas are exactly the array's (the parsed text when
    the array is all of it); default: the array's own minified JSON.
    """
    import simdjson
    if not isinstance(value, simdjson.Array):
        return None
    if text is None:
        text = value.mini
    flat = None
    # Integers (raw pixels) read as int64 ~20% faster than as doubles; a number with a
    # fraction or exponent, or beyond int64, makes simdjson refuse and doubles are read.
    kinds = ([("i", np.int64)] if b"." not in text else []) + [("d", np.float64)]
    for kind, dtype in kinds:
        try:
            flat = np.frombuffer(value.as_buffer(of_type=kind), dtype)
            break
        except (TypeError, ValueError):  # not all of this type; not numbers at all
            continue
    if flat is None:
        return None
    shape = first_shape(value)
    if (shape is None or len(shape) > _MAX_NDIM or int(np.prod(shape)) != flat.size
            or not is_regular(text, shape)):
        return None
    return flat.reshape(shape)


def _borrow_parser():
    """A simdjson parser from the pool (a new one if it is empty).

    A parser keeps the memory it grew to, and a new one pays for it again in page faults --
    82 ms instead of 28 ms to parse 32 RGB 160x160 images (12.9 MB) on the AVX-512 AMD EPYC.
    Every simdjson object of a document must be gone before :func:`_return_parser`: simdjson
    refuses to parse again while one is alive.
    """
    import simdjson
    with _PARSERS_LOCK:
        return _PARSERS.pop() if _PARSERS else simdjson.Parser()


def _return_parser(parser, size: int) -> None:
    """Keep ``parser`` for reuse (at most :data:`PARSER_POOL` of them) unless the text it
    parsed (``size`` bytes) was larger than :data:`PARSER_KEEP_BYTES`."""
    if size <= PARSER_KEEP_BYTES:
        with _PARSERS_LOCK:
            if len(_PARSERS) < PARSER_POOL:
                _PARSERS.append(parser)


def parse_pooled(text: bytes, read):
    """``read(document)`` for JSON ``text`` parsed by a pooled simdjson parser; ``None`` for
    malformed JSON. ``read`` must return no simdjson object (plain values, numpy arrays)."""
    parser = _borrow_parser()
    result = _read_with(parser, text, read)
    # The document went with _read_with's frame, so the parser may parse again. Not reached
    # on an exception, whose traceback keeps that frame: the parser is dropped then.
    _return_parser(parser, len(text))
    return result


def _read_with(parser, text, read):
    try:
        doc = parser.parse(text)
    except Exception:  # malformed JSON
        return None
    return read(doc)


def parse_array(text: bytes):
    """``text``, one JSON array of numbers of a regular shape, as a numpy array (see
    :func:`numeric_array`); ``None`` for anything else, or malformed JSON."""
    return parse_pooled(text, lambda doc: numeric_array(doc, text))


# --------------------------------------------------------------------------------------
# One large array, parsed in parts at once.

#: A JSON string (the escapes JSON allows; no control characters).
_STRING = rb'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_SIGNATURE = rb'"signature_name"\s*:\s*(' + _STRING + rb')'
#: The opening of a body of one array: ``{"instances": [`` or ``{"inputs": [``, the
#: columnar form's ``{"inputs": {"<input name>": [``, each with an optional
#: ``"signature_name": "..."`` member first.
_OPENING = re.compile(rb'\s*\{\s*(?:' + _SIGNATURE + rb'\s*,\s*)?"(instances|inputs)"\s*:\s*'
                      rb'(?:\{\s*(' + _STRING + rb')\s*:\s*)?\[')
#: Its closing ``]}`` (``]}}`` after an input name), with an optional ``"signature_name"``
#: member last; searched in the body's last :data:`_TAIL_BYTES`.
_CLOSING = re.compile(rb"\](\s*\})?\s*(?:,\s*" + _SIGNATURE + rb"\s*)?\}\s*\Z")
_OPENERS = re.compile(rb"(?:\s*\[)+")
#: The deepest elements :func:`cut_runs` cuts between (an image is 3 deep, a batch's
#: elements; the compiled reader reads arrays of at most 8 dimensions): the cut's pattern
#: grows with the depth, and its search took time depth^2 (100,000 brackets, a 0.2 MB
#: body: 7 s, twice per request).
_MAX_CUT_DEPTH = 8
_TAIL_BYTES = 1024


def _body_form(body: bytes):
    """``(key, start, end, members)`` for a body of one array (:data:`_OPENING`): its key,
    the byte range between the array's brackets, and how the payload holds the array
    (``members``: ``signature_name``'s value, the input's name); ``None`` for another
    form, or a signature name given twice."""
    opening = _OPENING.match(body)
    if opening is None:
        return None
    closing = _CLOSING.search(body, max(opening.end(), len(body) - _TAIL_BYTES))
    if closing is None:
        return None
    first_signature, key, name = opening.groups()
    named, last_signature = closing.groups()
    if (name is None) != (named is None) or (first_signature and last_signature):
        return None
    if name is not None and key != b"inputs":
        return None
    return (key.decode(), opening.end(), closing.start(),
            (first_signature or last_signature, name))


def array_span(body: bytes):
    """``(key, start, end)`` for a body of one array of images --
    ``{"instances" | "inputs": [...]}``, ``{"inputs": {"<input name>": [...]}}``, each with
    an optional ``"signature_name"`` member first or last: its key and the byte range
    between its array's brackets; ``None`` for a body of another form (:func:`payload_of`
    builds the payload around the array read from that range)."""
    form = _body_form(body)
    return None if form is None else form[:3]


def payload_of(body: bytes, key: str, array):
    """The request payload of a body of one array (:func:`array_span`), with ``array`` --
    read from the body's array -- in its place: ``{key: array}``, or ``{"inputs":
    {"<input name>": array}}``, plus ``"signature_name"`` when the body has it. ``None``
    when the body has another form, or a member string that is not valid JSON."""
    import orjson
    form = _body_form(body)
    if form is None or form[0] != key:
        return None
    signature, name = form[3]
    try:
        payload = {} if signature is None else {"signature_name": orjson.loads(signature)}
        payload[key] = array if name is None else {orjson.loads(name): array}
    except orjson.JSONDecodeError:
        return None
    return payload


def cut_runs(body: bytes, start: int, end: int, parts: int):
    """Byte ranges of up to ``parts`` runs of whole elements of the array whose elements lie
    in ``body[start:end]`` (without the commas between runs); ``None`` when the elements
    are not arrays, or too few to cut. The cuts are found textually, after an element
    depth's worth of closing brackets (white space between them allowed) and a comma; an
    array that is not regular may be cut anywhere, and then its parts fail to parse."""
    if parts < 2:
        return None
    openers = _OPENERS.match(body, start, end)
    if openers is None:  # the elements are not arrays
        return None
    depth = openers.group().count(b"[")
    if depth > _MAX_CUT_DEPTH:   # read in one part (refused by the model's shape check)
        return None
    cut = re.compile(rb"(\]" + rb"(?:\s*\])" * (depth - 1) + rb")\s*,\s*")
    ranges, begin = [], start
    for i in range(1, parts):
        match = cut.search(body, max(begin, start + (end - start) * i // parts), end)
        if match is None:
            break
        ranges.append((begin, match.end(1)))
        begin = match.end()
    if not ranges:
        return None
    ranges.append((begin, end))
    return ranges


def split_points(body: bytes, parts: int):
    """Where to cut ``body``, a body of one array ``[e1, e2, ...]`` (:func:`array_span`)
    whose elements are arrays, into ``parts`` runs of whole elements.

    Returns:
        ``(key, [(start, end), ...])``: byte ranges of the element runs (without the
        enclosing brackets and the commas between runs), or ``None`` when the body has
        another form, or too few elements (:func:`array_span`, :func:`cut_runs`); a body
        that is not a regular array may be cut anywhere, and then its parts fail
        :func:`parse_array`.
    """
    span = array_span(body)
    if span is None:
        return None
    key, start, end = span
    ranges = cut_runs(body, start, end, parts)
    return None if ranges is None else (key, ranges)


class NoBufferRoom(Exception):
    """No room for a buffer shared with a parse worker."""


def _aligned(n: int) -> int:
    return (n + 63) // 64 * 64


def _map_file(path: str, size: int) -> mmap.mmap:
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _worker(conn) -> None:
    """A worker process. A task is one message, ``"<dtype> <n> [<path> <size>]"``: the
    dtype wanted (``-``: the exact one :func:`numeric_array` gives), and the length of the
    element run, in brackets, at the start of the shared buffer (first a new buffer to map,
    when a path is given). The answer goes into the buffer after the run (from the next
    multiple of 64 bytes), and the message back is its dtype and shape -- or empty when the
    run is not a regular numeric array. An empty message, or the server's end of the pipe
    closing, stops the worker. A Ctrl-C at the terminal, which reaches the server's whole
    process group, is left to the server, which stops its workers: it printed a
    KeyboardInterrupt traceback of each worker as ``zoo serve`` shut down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    buffer = None
    while True:
        try:
            task = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not task:
            return
        fields = task.decode().split()
        if len(fields) == 4:
            if buffer is not None:
                buffer.close()
            buffer = _map_file(fields[2], int(fields[3]))
            conn.send_bytes(b"mapped")
            continue
        wanted, n = fields[0], int(fields[1])
        array = parse_array(buffer[:n])
        if array is None:
            conn.send_bytes(b"")
            continue
        dtype = array.dtype if wanted == "-" else np.dtype(wanted)
        out = np.ndarray(array.shape, dtype, buffer=buffer, offset=_aligned(n))
        np.copyto(out, array, casting="unsafe")
        conn.send_bytes(" ".join([dtype.str, *map(str, array.shape)]).encode())


class _Worker:
    """A parser process and the buffer it shares with the server (a file in ``/dev/shm``
    where there is one, mapped by both and unlinked once the worker has it): element runs
    go in and arrays come out through it, not through the pipe -- 6.4 MB out and 4.8 MB back
    took 11 ms over the pipe, a third of parsing them."""

    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child,), daemon=True,
                                       name="zoo-json-parser")
        self.process.start()
        child.close()
        self.lock = threading.Lock()
        self.buffer = None
        self.size = 0

    def ensure(self, size: int) -> None:
        """A buffer of at least ``size`` bytes, shared with the worker.

        Raises:
            NoBufferRoom: no room for it in ``/dev/shm`` or the temporary directory.
            OSError, EOFError, ValueError: the worker did not answer.
        """
        if size <= self.size:
            return
        size = max(size + size // 2, 1 << 20)
        errors = []
        for directory in ("/dev/shm", tempfile.gettempdir()):
            if not os.path.isdir(directory):
                continue
            fd, path = tempfile.mkstemp(prefix="zoo-json-", dir=directory)
            try:
                try:
                    # Reserved now: a full tmpfs fails here, not with SIGBUS on a write.
                    os.posix_fallocate(fd, 0, size)
                    buffer = mmap.mmap(fd, size)
                except OSError as exc:
                    errors.append(f"{directory}: {exc}")
                    continue
                finally:
                    os.close(fd)
                self.conn.send_bytes(f"- 0 {path} {size}".encode())
                if self.conn.recv_bytes() != b"mapped":
                    buffer.close()
                    raise ValueError("the worker did not map its buffer")
            finally:
                os.unlink(path)
            self._close_buffer()
            self.buffer, self.size = buffer, size
            return
        raise NoBufferRoom("; ".join(errors) or "no directory for it")

    def _close_buffer(self) -> None:
        if self.buffer is not None:
            self.buffer.close()
            self.buffer, self.size = None, 0

    def stop(self) -> None:
        try:
            self.conn.send_bytes(b"")
        except OSError:
            pass
        self.conn.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self._close_buffer()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        self._close_buffer()


class SplitParser:
    """Parses a large body of one array of numbers (:func:`array_span`) in parts at once:
    the calling thread reads the first run of images, ``workers`` helpers one run each.

    :meth:`scan` is the compiled reader (:mod:`zoo.jsonscan`: integers and decimals it
    reads exactly) on ``workers`` threads, :meth:`parse` simdjson on ``workers`` worker processes (started
    on first use, or by :meth:`start`) for the bodies it leaves. A ``parse`` call uses the
    processes that are free at that moment (none free: it returns ``None`` and the caller
    parses the whole body itself). A worker that fails is replaced on a later call.
    """

    def __init__(self, workers: int, *, min_bytes: int = 2 * 1024 * 1024,
                 scan_min_bytes: int = 128 * 1024):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be a non-negative integer. Received: {workers!r}")
        self.workers = workers
        self.min_bytes = min_bytes
        self.scan_min_bytes = scan_min_bytes
        self._threads = None
        self._pool: list = []
        self._lock = threading.Lock()
        self._closed = False
        self.error: Optional[str] = None
        #: bodies parsed in parts by the worker processes so far
        self.parsed = 0
        #: bodies read in parts by the compiled reader's threads so far
        self.scanned = 0

    def start(self) -> None:
        """Start the worker processes now (else the first large body starts them)."""
        with self._lock:
            if self._closed or self.error is not None:
                return
            self._pool = [w for w in self._pool if w.process.is_alive()]
            try:
                context = multiprocessing.get_context("spawn")
                while len(self._pool) < self.workers:
                    self._pool.append(_Worker(context))
            except Exception as exc:  # no processes here: parse in the calling thread
                self.error = f"worker processes could not start ({exc})"

    def scan(self, body: bytes, dtype=None):
        """``(key, array)`` for a body the compiled reader takes
        (:func:`zoo.jsonscan.scan_body`), else ``None``; from
        ``scan_min_bytes`` on its images are cut into ``workers + 1`` runs read at once, the
        first in the calling thread, the others in this parser's threads (the reader
        releases the GIL: no processes are needed for it)."""
        from zoo import jsonscan
        if self.workers and not self._closed and len(body) >= self.scan_min_bytes:
            with self._lock:
                if self._threads is None:
                    from concurrent.futures import ThreadPoolExecutor
                    self._threads = ThreadPoolExecutor(
                        self.workers, thread_name_prefix="zoo-json-scan")
                threads = self._threads
            try:
                parsed = jsonscan.scan_body(body, dtype, executor=threads,
                                            parts=self.workers + 1)
            except RuntimeError:    # closed meanwhile: read it in this thread
                parsed = jsonscan.scan_body(body, dtype)
            else:
                if parsed is not None:
                    self.scanned += 1
            return parsed
        return jsonscan.scan_body(body, dtype)

    def close(self) -> None:
        """Stop the worker processes and threads; :meth:`parse` returns ``None`` and
        :meth:`scan` reads in the calling thread afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, []
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)
        for worker in pool:
            with worker.lock:
                worker.stop()

    def _acquire(self) -> list:
        if self._closed or self.error is not None:
            return []
        if len(self._pool) < self.workers or not all(w.process.is_alive() for w in self._pool):
            self.start()
        with self._lock:
            return [w for w in self._pool if w.lock.acquire(blocking=False)]

    def parse(self, body: bytes, dtype=None):
        """``(key, array)`` for a body ``{key: [...]}`` of one regular array of numbers,
        parsed in parts; ``None`` when it is smaller than ``min_bytes``, has another form or
        is not such an array, or no worker is free -- :func:`parse_array` and the general
        JSON path answer it then.

        Args:
            body: the request body (bytes of JSON text).
            dtype: the array's dtype (each part is converted where it is parsed); default:
                int64 when every number is an integer, else float64 (exact).
        """
        if len(body) < self.min_bytes or self.workers == 0 or _OPENING.match(body) is None:
            return None
        workers = self._acquire()
        try:
            if not workers:
                return None
            layout = split_points(body, len(workers) + 1)
            if layout is None:
                return None
            key, ranges = layout
            return self._parse_parts(body, key, ranges, workers[:len(ranges) - 1],
                                     None if dtype is None else np.dtype(dtype))
        finally:
            for worker in workers:
                worker.lock.release()

    def _parse_parts(self, body, key, ranges, workers, dtype):
        sent = []
        view = memoryview(body)
        lengths = []   # of the runs, in brackets, in the workers' buffers
        # Room for a run's array after it: a number takes >= 2 bytes of the run.
        itemsize = 8 if dtype is None else dtype.itemsize
        try:
            for worker, (begin, end) in zip(workers, ranges[1:]):
                n = end - begin + 2
                try:
                    worker.ensure(_aligned(n) + (n // 2 + 1) * itemsize)
                except NoBufferRoom as exc:   # from now on the calling thread parses alone
                    self.error = f"no room for a shared buffer ({exc})"
                    return None
                sent.append(worker)
                buffer = worker.buffer
                buffer[0:1] = b"["
                buffer[1:n - 1] = view[begin:end]
                buffer[n - 1:n] = b"]"
                worker.conn.send_bytes(f"{'-' if dtype is None else dtype.str} {n}".encode())
                lengths.append(n)
            first_begin, first_end = ranges[0]
            first = parse_array(b"[" + body[first_begin:first_end] + b"]")
            headers = []
            for worker in sent:
                header = worker.conn.recv_bytes().split()
                headers.append((np.dtype(header[0].decode()), tuple(map(int, header[1:])))
                               if header else None)
            sent = []
            if first is None or not all(
                    h is not None and h[1][1:] == first.shape[1:] for h in headers):
                return None
            total = len(first) + sum(h[1][0] for h in headers)
            arrays = np.empty((total, *first.shape[1:]), np.result_type(
                first.dtype, *(h[0] for h in headers)) if dtype is None else dtype)
            arrays[:len(first)] = first
            offset = len(first)
            for worker, n, (part_dtype, shape) in zip(workers, lengths, headers):
                arrays[offset:offset + shape[0]] = np.ndarray(
                    shape, part_dtype, buffer=worker.buffer, offset=_aligned(n))
                offset += shape[0]
            self.parsed += 1
            return key, arrays
        except (OSError, EOFError, ValueError, multiprocessing.BufferTooShort):
            return None  # a worker failed: the caller parses the body itself
        finally:
            for worker in sent:  # a reply not read in full: this worker cannot be reused
                worker.kill()
