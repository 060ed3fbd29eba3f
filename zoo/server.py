"""``zoo serve``: every model under a directory, over TensorFlow Serving's REST API.

Clients written for TensorFlow Serving work unchanged::

    GET  /v1/models/NAME[/versions/N]             version status (also HEAD)
    GET  /v1/models/NAME[/versions/N]/metadata    signature_def, as TensorFlow Serving prints it
    POST /v1/models/NAME[/versions/N]:predict     {"instances": [...]} or {"inputs": ...}
                                                  (plain or Content-Encoding: gzip)

Models live in ``BASE_DIR/NAME/VERSION/`` (what :func:`zoo.export.export` writes); the newest
version answers unless one is named. The model directory is rescanned on every request (one
``os.scandir``), so a version renamed into place is served with no restart: loaded in the
background while the version loaded before it goes on answering. Models load lazily, once,
in a worker thread; predictions and JSON encoding run in the thread pool,
except for requests their model is measured to answer within a few milliseconds, which are
answered on the event loop (:class:`InlinePolicy`). Requests that arrive while their model is
busy are batched (:class:`RequestBatcher`); JSON pixel-list bodies are read by compiled code
(:mod:`zoo.jsonscan`) or simdjson, large ones in parts by threads or worker processes
(:class:`zoo.jsonarrays.SplitParser`). Every client error is a 4xx answer
``{"error": "..."}``.

Built on FastAPI and uvicorn (the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import gc
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
import zlib

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from zoo import jsonarrays, jsonscan
from zoo.common import MAX_NAME_BYTES, is_digits
from zoo.export import SIGNATURE_NAME, list_versions, version_path

__all__ = ["InlinePolicy", "ModelStore", "PixelBudget", "RequestBatcher", "ServingError",
           "check_origins", "create_app", "http_protocol", "serve"]

#: Where load failures are reported: uvicorn's own log, beside its other lines.
_log = logging.getLogger("uvicorn.error")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: The path after ``/v1/models/``. TensorFlow Serving matches its paths' fixed words in any
#: case (``/V1/Models/NAME/Versions/2/Metadata``); model names keep theirs, and so do the
#: verbs (its handler compares them in lower case: ``:PREDICT`` is a malformed request).
_MODEL_PATH = re.compile(r"^(?P<name>[^/:]+)(?:(?i:/versions/)(?P<version>[^/:]+))?"
                         r"(?P<rest>(?i:/metadata)|:[A-Za-z]+)?/?$")
#: TensorFlow Serving's version labels (``/v1/models/NAME/labels/LABEL``), which a model
#: config assigns; zoo serve has none.
_LABEL_PATH = re.compile(
    r"^(?P<name>[^/:]+)(?i:/labels/)(?P<label>[^/:]+)(?P<rest>(?i:/metadata)|:[A-Za-z]+)?/?$")
_PREFIX = "/v1/models"
#: The verbs of TensorFlow Serving's POST endpoints (:classify and :regress are answered 400:
#: zoo models have a predict signature only).
_VERBS = (":predict", ":classify", ":regress")
_PREDICT_BATCH = 64
#: Bodies from this size on try the pixel-array fast path (one 32x32 greyscale image, 6.8 KB:
#: 0.03 ms that way against 0.25 ms through orjson and numpy.asarray; 452 bytes: the same).
_FAST_JSON_BYTES = 1024
#: Requests predicted to take less than this run on the event loop (:class:`InlinePolicy`).
DEFAULT_INLINE_MS = 5.0

#: Threads that requests for a model not loaded yet wait on for its load: beside the thread
#: pool's (anyio's 40), so such requests cannot take every thread of it while a model loads
#: (other models' requests and status checks then waited for the load too).
LOAD_WAIT_THREADS = 8

#: How often a running server looks at its directory for new and removed versions, in
#: seconds: TensorFlow Serving's ``--file_system_poll_wait_seconds`` default.
DEFAULT_POLL_SECONDS = 1.0
#: How long an idle keep-alive connection stays open, in seconds: longer than the idle
#: timeouts of the load balancers and proxies in front of servers (60 s for AWS's, nginx's
#: keepalive_timeout), which would otherwise reuse a connection the server is closing and
#: answer 502, and of clients' connection pools (uvicorn's own default is 5 s).
DEFAULT_KEEP_ALIVE_SECONDS = 75.0


# The headers of an answer given before the request's body was read to its end (a body over
# the size limit): the connection is closed after it, or the client would upload the rest
# (gigabytes, perhaps) for the server to read and drop before the next request.
_UNREAD_BODY = {"Connection": "close"}


class ServingError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status (and ``headers``,
    such as a 405's ``Allow``)."""

    def __init__(self, status: int, message: str, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# --------------------------------------------------------------------------------------
# Models on disk.

def check_model_name(name) -> None:
    """Raise a 400 :class:`ServingError` for a model name no directory can have."""
    shown = repr(name) if len(name) <= 40 else f"{name[:40]!r}..."
    if "\0" in name:
        raise ServingError(400, f"invalid model name {shown}: it contains a NUL character; a "
                           f"model name is the name of a directory under the served "
                           f"directory")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:
        raise ServingError(400, f"invalid model name {shown} ({size} bytes): a model name is "
                           f"the name of a directory under the served directory, at most "
                           f"{MAX_NAME_BYTES} bytes")


def check_base_dir(base_dir) -> None:
    """Raise ``ValueError`` for a model directory (``NAME/``, holding versions) or a version
    directory (``NAME/VERSION/``, holding ``saved_model.pb``) given as the base directory,
    which holds ``NAME/VERSION/saved_model.pb``, a file or an empty path (not taken for the
    current directory); ``FileNotFoundError`` for nothing there."""
    layout = "the base directory holds MODEL/VERSION/saved_model.pb"
    if not isinstance(base_dir, (str, os.PathLike)) or not os.fspath(base_dir):
        raise ValueError(f"base_dir (BASE_DIR) must be the path of a directory ('.' for the "
                         f"current directory; {layout}). Received: base_dir={base_dir!r}")
    path = os.path.abspath(os.fspath(base_dir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{base_dir} is a file, not a directory ({layout})")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no such directory: {base_dir} ({layout})")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        if is_digits(os.path.basename(path)):
            hint = f"serve {os.path.dirname(os.path.dirname(path))} instead"
        else:
            hint = f"move it to BASE_DIR/{os.path.basename(path)}/1/ and serve BASE_DIR"
        raise ValueError(f"{base_dir} is a SavedModel version directory (it holds "
                         f"saved_model.pb), not a base directory: {hint} ({layout})")
    versions = list_versions(path)
    if versions:
        raise ValueError(f"{base_dir} is a model directory (it holds version"
                         f"{'s' if len(versions) > 1 else ''} "
                         f"{', '.join(map(str, versions))}), not a base directory: serve "
                         f"{os.path.dirname(path)} instead ({layout})")


class ModelStore:
    """Finds models under ``base_dir`` and keeps the loaded versions.

    A request without a version is answered by the newest version that loads, as
    TensorFlow Serving's availability-preserving policy keeps the previous version serving
    while a new one loads or fails to load: a newer version than the one answering is
    loaded in a background thread (state ``LOADING``) while the loaded one goes on
    answering, so no request waits for a load while a version of its model is loaded; a
    version that could not be loaded is listed with its error (state ``END``) and skipped,
    and tried again only once its files change (a copy completed, a version replaced). A
    request naming such a version gets 503 with the error.

    Args:
        base_dir: directory of ``NAME/VERSION/`` SavedModels.
        jit_compile, runtime: passed to :func:`zoo.serving.load`.

    Raises:
        ValueError: a ``jit_compile`` or ``runtime`` :func:`zoo.serving.load` refuses.
    """

    def __init__(self, base_dir, *, jit_compile="auto", runtime="auto"):
        from zoo.serving import check_load_options
        self.base_dir = os.path.abspath(os.fspath(base_dir))
        self.jit_compile = check_load_options(jit_compile, runtime)
        self.runtime = runtime
        self._servables = {}
        self._loaded_stamps = {}   # (name, version) -> its files' stamp when it was loaded
        self._failed = {}     # (name, version) -> (message, the files' stamp when it failed)
        self._locks = {}
        self._loading = set()      # (name, version) being loaded now
        self._background = set()   # (name, version) with a background load started
        self._lock = threading.Lock()
        self._swept = -math.inf    # when the other models' directories were last checked

    def model_names(self) -> list:
        """The names of the model directories under ``base_dir`` now, sorted (hidden ones
        left out; none while ``base_dir`` does not exist)."""
        try:
            return sorted(e.name for e in os.scandir(self.base_dir)
                          if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def versions(self, name) -> list:
        """The versions of ``name`` on disk now (forgetting versions that vanished, and, at
        most once every :attr:`SWEEP_SECONDS`, the loaded versions of other models whose
        directories or versions were removed)."""
        if name.startswith(".") or "/" in name or name in ("", ".."):
            return []
        versions = list_versions(os.path.join(self.base_dir, name))
        dropped = self._forget(name, versions) + self._sweep(name)
        if dropped:
            # A loaded model holds reference cycles (Keras and TensorFlow objects), which
            # only the garbage collector frees: without this, every version dropped kept
            # its memory until a full collection happened to run (+7 MB a LeNet-5 version).
            del dropped
            gc.collect()
        return versions

    def _forget(self, name, versions) -> list:
        """Drop the loaded versions and failures of ``name`` not in ``versions``; the
        servables dropped."""
        with self._lock:
            dropped = [self._servables.pop(k) for k in list(self._servables)
                       if k[0] == name and k[1] not in versions]
            for key in [k for k in self._loaded_stamps if k[0] == name and k[1] not in versions]:
                del self._loaded_stamps[key]
            for key in [k for k in self._failed if k[0] == name and k[1] not in versions]:
                del self._failed[key]
        return dropped

    #: How often, at most, a request checks the other loaded models' directories, in
    #: seconds (TensorFlow Serving polls its model directories every second and unloads
    #: the versions removed from disk).
    SWEEP_SECONDS = 1.0

    def _sweep(self, name) -> list:
        """Drop the loaded versions (and failures) of models other than ``name`` (``None``:
        of every model) that are no longer on disk, such as a whole model directory removed or renamed, which no
        request for its old name would otherwise ever free; at most once every
        :attr:`SWEEP_SECONDS`. The servables dropped."""
        now = time.monotonic()
        with self._lock:
            if now - self._swept < self.SWEEP_SECONDS:
                return []
            self._swept = now
            names = {k[0] for k in self._servables} | {k[0] for k in self._failed}
        names.discard(name)
        dropped = []
        for other in sorted(names):
            dropped += self._forget(other, list_versions(os.path.join(self.base_dir, other)))
        return dropped

    def _all_versions(self, name) -> list:
        check_model_name(name)
        versions = self.versions(name)
        if not versions:
            names = self.model_names()
            known = [n for n in names if list_versions(os.path.join(self.base_dir, n))]
            where = ("its directory holds no version yet, such as 1/saved_model.pb"
                     if name in names else
                     "no versions of it in the served directory")
            raise ServingError(404, f"Servable not found for request: model {name!r} "
                               f"({where}; known models: {', '.join(known) or 'none'})")
        return versions

    def resolve(self, name, version=None) -> int:
        """The version that answers for ``name``: ``version`` if given, else the newest one
        that is loaded or may still load (the newest on disk if none may).

        Raises:
            ServingError: 400 for a name that cannot be a directory's (a NUL character, more
                than :data:`MAX_NAME_BYTES` bytes), 404 for a model or version not found.
        """
        versions = self._all_versions(name)
        if version is None:
            return next((v for v in reversed(versions) if self.failure(name, v) is None),
                        versions[-1])
        if version not in versions:
            raise ServingError(404, f"Servable not found for request: model {name!r} version "
                               f"{version} (available versions: "
                               f"{', '.join(map(str, versions))})")
        return version

    def _stamp(self, name, version):
        """The version's files as (path, size, mtime): a load that failed is tried again
        once this changes."""
        root = version_path(os.path.join(self.base_dir, name), version)
        stamp = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                path = os.path.join(folder, f)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                stamp.append((path, st.st_size, st.st_mtime_ns))
        return tuple(stamp)

    def failure(self, name, version):
        """Why ``version`` of ``name`` could not be loaded, or ``None`` (never tried, loaded,
        or its files changed since it failed: it may be tried again)."""
        with self._lock:
            failed = self._failed.get((name, version))
        if failed is None:
            return None
        message, stamp = failed
        return message if self._stamp(name, version) == stamp else None

    def _read(self, name, version):
        """``version`` of ``name`` loaded from disk (:func:`zoo.serving.load`), with its
        signatures kept: metadata answers need no file that may be removed meanwhile (a
        500 naming the server's path, before)."""
        from zoo.serving import load
        path = version_path(os.path.join(self.base_dir, name), version)
        servable = load(path, jit_compile=self.jit_compile, runtime=self.runtime)
        servable.signature_defs = signature_def_map(path)
        return servable

    def _load_error(self, exc) -> str:
        """A load's error ``exc`` naming the files under the served directory, not where
        that directory is (TensorFlow names them as bytes: b'/srv/models/m/2/...')."""
        text = re.sub(r"\bb'([^']*)'", r"'\1'", str(exc))
        return text.replace(self.base_dir + os.sep, "")

    def _load(self, name, version):
        key = (name, version)
        with self._lock:
            if key in self._servables:
                return self._servables[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._servables:
                    return self._servables[key]
            error = self.failure(name, version)
            if error is None:
                stamp = self._stamp(name, version)
                with self._lock:
                    self._loading.add(key)
                try:
                    servable = self._read(name, version)
                except Exception as exc:
                    error = (f"model {name!r} version {version} could not be loaded: "
                             f"{self._load_error(exc)}")
                    changed = self._stamp(name, version) != stamp
                    self.resolve(name, version)   # 404 for a version gone from disk
                    # Files that changed or went while it loaded are tried again: the
                    # failure says nothing of the files there now (kept, it kept a version
                    # moved away and back unchanged from ever loading).
                    if not changed:
                        with self._lock:
                            self._failed[key] = (error, stamp)
                        _log.warning("%s", error)
                else:
                    with self._lock:
                        self._servables[key] = servable
                        self._loaded_stamps[key] = stamp
                        self._failed.pop(key, None)
                    return servable
                finally:
                    with self._lock:
                        self._loading.discard(key)
            raise ServingError(503, error)

    def _in_background(self, key, work, what):
        """Run ``work()`` in a thread of its own named ``zoo-WHAT-NAME-VERSION``, with
        ``key`` in :attr:`_background` until it ends (the caller added it, under the lock)."""
        def run():
            try:
                work()
            finally:
                with self._lock:
                    self._background.discard(key)

        threading.Thread(target=run, name=f"zoo-{what}-{key[0]}-{key[1]}", daemon=True).start()

    def _load_in_background(self, name, version):
        """Load ``version`` of ``name`` in a thread of its own, unless it is loaded or such a
        load runs already (a failure is kept for the status, as any load's)."""
        key = (name, version)
        with self._lock:
            if key in self._servables or key in self._background:
                return
            self._background.add(key)

        def load():
            try:
                self._load(name, version)
            except ServingError:
                pass

        self._in_background(key, load, "load")

    def _reload_if_replaced(self, name, version):
        """Load ``version`` of ``name`` again, in the background, when its files changed
        since it was loaded (``zoo export --overwrite`` swapped in another model under the
        same version): the copy loaded before answers until the new one is loaded, and goes
        on answering if it fails to load (a warning says why; tried again once the files
        change again)."""
        key = (name, version)
        stamp = self._stamp(name, version)
        with self._lock:
            if (key not in self._servables or key in self._background
                    or self._loaded_stamps.get(key) == stamp):
                return
            self._background.add(key)
            self._loaded_stamps[key] = stamp   # tried once for these files

        def reload():
            try:
                servable = self._read(name, version)
            except Exception as exc:
                _log.warning("model %r version %s was replaced on disk but could not be "
                             "loaded (the model loaded before goes on answering): %s", name,
                             version, self._load_error(exc))
                return
            with self._lock:
                old = self._servables.get(key)
                if old is not None:   # not forgotten meanwhile (its directory removed)
                    self._servables[key] = servable
            if old is not None:
                _log.info("model %r version %s was replaced on disk: reloaded", name, version)
                del old
                gc.collect()   # as versions() does for a dropped version

        self._in_background(key, reload, "reload")

    def _answering(self, name, versions=None):
        """``(versions, the newest loaded version that may answer or None)`` for requests
        without a version; a newer version that may still load is loaded in the
        background meanwhile. ``versions``: the model's versions on disk, if just listed."""
        versions = versions or self._all_versions(name)
        newer = ready = None   # only versions newer than a loaded one are checked for failures
        for v in reversed(versions):
            with self._lock:
                if (name, v) in self._servables:
                    ready = v
                    break
            if newer is None and self.failure(name, v) is None:
                newer = v
        if ready is not None and newer is not None:
            self._load_in_background(name, newer)
        return versions, ready

    def get(self, name, version=None):
        """The loaded :class:`zoo.serving.Servable` (loads it once, thread-safely): of
        ``version``, or of the newest version that loads; while a newer version than a
        loaded one loads (in the background), the loaded one."""
        if version is not None:
            return self._load(name, self.resolve(name, version))
        versions, ready = self._answering(name)
        if ready is not None:
            with self._lock:
                servable = self._servables.get((name, ready))
            if servable is not None:   # not forgotten meanwhile
                return servable
        newest_error = None
        for v in reversed(versions):
            try:
                return self._load(name, v)
            except ServingError as exc:
                newest_error = newest_error or exc
        raise newest_error

    def loaded(self, name, version=None):
        """The :class:`zoo.serving.Servable` answering for ``name`` (and ``version``) if it is
        loaded already, else ``None`` (never loads: for the event loop)."""
        key = (name, self.resolve(name, version) if version is not None else
               self._answering(name)[1])
        with self._lock:
            return self._servables.get(key)

    def status(self, name, version=None) -> dict:
        """``{"model_version_status": [...]}`` as TensorFlow Serving answers it.

        A version is ``AVAILABLE`` once loaded: the version asked for, or for a model with
        no version loaded yet (one added while the server runs) the newest that may load,
        starts loading in the background and is ``LOADING`` until it is loaded
        (``AVAILABLE``) or has failed (``END``), so a readiness check never sees a model
        that cannot load as available. Older versions not loaded are listed as
        ``AVAILABLE``: a request naming one loads it."""
        if version is not None:
            versions = [self.resolve(name, version)]
            start = versions[0]
        else:
            found, ready = self._answering(name)
            versions = sorted(found, reverse=True)
            start = None if ready is not None else next(
                (v for v in versions if self.failure(name, v) is None), None)
        if start is not None and self.failure(name, start) is None:
            self._load_in_background(name, start)   # nothing if loaded or loading
        entries = []
        for v in versions:
            error = self.failure(name, v)
            with self._lock:
                loading = (((name, v) in self._loading or (name, v) in self._background)
                           and (name, v) not in self._servables)
            entries.append({"version": str(v),
                            "state": "END" if error else "LOADING" if loading else "AVAILABLE",
                            "status": {"error_code": "UNKNOWN" if error else "OK",
                                       "error_message": error or ""}})
        return {"model_version_status": entries}

    def poll(self):
        """One look at the served directory, as TensorFlow Serving's file-system poll takes
        one every second: the loaded versions of models and versions removed from disk are
        dropped, each model's newest version that may load, if it is not loaded, is
        loaded in the background (the loaded one answers meanwhile), and a loaded version
        whose files were replaced is loaded again (:meth:`_reload_if_replaced`). So a version exported
        while the server runs answers the requests that follow its load, and a model added
        is loaded, without a request having to ask for it first."""
        dropped = self._sweep(None)   # models whose directories were removed
        if dropped:
            del dropped
            gc.collect()   # as versions() does
        for name in self.model_names():
            versions = self.versions(name)
            if not versions:
                continue
            with self._lock:
                loaded = [v for n, v in self._servables if n == name]
            for v in loaded:
                self._reload_if_replaced(name, v)
            _, ready = self._answering(name, versions)   # a newer one loads if one is loaded
            if ready is None:
                newest = next((v for v in reversed(versions) if self.failure(name, v) is None),
                              None)
                if newest is not None:
                    self._load_in_background(name, newest)

    def preload(self):
        """Load the newest version of every model that loads (errors are kept for the
        status)."""
        for name in self.model_names():
            try:
                self.get(name)
            except ServingError:
                pass


def signature_def_map(version_dir) -> dict:
    """The SavedModel's ``signature_def`` map as TensorFlow Serving's metadata JSON."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    # The signatures alone: the whole graph as JSON took 22 ms for LeNet-5's 75 KB file.
    signatures = {k: v for k, v in proto.meta_graphs[0].signature_def.items()
                  if not k.startswith("__")}
    kwargs = {"preserving_proto_field_name": True}
    try:
        return {k: json_format.MessageToDict(v, always_print_fields_with_no_presence=True,
                                             **kwargs) for k, v in signatures.items()}
    except TypeError:  # protobuf < 5
        return {k: json_format.MessageToDict(v, including_default_value_fields=True,
                                             **kwargs) for k, v in signatures.items()}


# --------------------------------------------------------------------------------------
# Request bodies.

def _read_pixels(body: bytes):
    """A body whose images are one array of numbers, with that array parsed straight into
    numpy (no Python list per pixel); ``None`` when the body is anything else, or not valid
    JSON, or simdjson is not installed: then orjson parses it."""
    try:
        import simdjson  # noqa: F401
    except ImportError:
        return None
    return jsonarrays.parse_pooled(body, functools.partial(_pixels_payload, body=body))


def _pixels_payload(doc, body: bytes):
    """:func:`_read_pixels`' payload from the parsed document ``doc`` of ``body``."""
    import simdjson
    if not isinstance(doc, simdjson.Object):
        return None
    keys = list(doc.keys())
    if len(set(keys)) != len(keys):
        return None   # a name given twice: orjson's reading (the last one counts), as below 1 KB
    for top in ("instances", "inputs"):
        if top not in keys:
            continue
        value, named = doc[top], None
        if top == "inputs" and isinstance(value, simdjson.Object) and len(value) == 1:
            (named,) = value.keys()
            value = value[named]
        array = _named_instances(value) if top == "instances" else None
        if array is None:
            # The body alone holds just this array's brackets and commas when it is
            # {"instances": [...]} or {"inputs": [...]}: no copy of the array's text then.
            array = jsonarrays.numeric_array(
                value, body if keys == [top] and named is None else None)
        if array is None:
            return None
        payload = {}
        for key, item in doc.items():   # (doc[key] looks through the keys: 200,000 names
            # of a 2.4 MB body took minutes)
            if key != top:
                payload[key] = (item.as_dict() if isinstance(item, simdjson.Object) else
                                item.as_list() if isinstance(item, simdjson.Array) else item)
        payload[top] = array if named is None else {named: array}
        return payload
    return None


def _named_instances(value):
    """``[{name: array}, ...]`` from the row format with a named input
    (``[{"images": [...]}, ...]``), each instance's numbers read straight into numpy
    (:func:`zoo.jsonarrays.numeric_array`), for the usual checks of the name and the shape;
    ``None`` when ``value`` is not a non-empty array of such rows, or an instance is another
    object or not a regular array of numbers (a plain array of numbers is then read as one,
    and anything else goes to orjson, for the usual errors)."""
    import simdjson
    if not isinstance(value, simdjson.Array) or len(value) == 0:
        return None
    rows = []
    for row in value:
        if not isinstance(row, simdjson.Object) or len(row) != 1:
            return None
        (name,) = row.keys()
        array = None if name == "b64" else jsonarrays.numeric_array(row[name])
        if array is None:
            return None
        rows.append({name: array})
    return rows


def _scan_pixels(body: bytes, splitter, dtype):
    """``(key, array)`` from the compiled reader (:mod:`zoo.jsonscan`) for a body
    of one array (:func:`zoo.jsonarrays.array_span`) of integers or short decimals, in parts
    on the splitter's threads when it is large; ``None`` for every other body."""
    if splitter is not None:
        return splitter.scan(body, dtype)
    return jsonscan.scan_body(body, dtype)


def parse_body(body: bytes, splitter=None, dtype=None):
    """The request JSON. A body of pixel lists (from :data:`_FAST_JSON_BYTES` on) has its
    pixels as one numpy array (``instances`` ``[N, H, W, C]`` or ``inputs``), not Python lists:
    ``{"instances" | "inputs": [...]}`` (also with ``"signature_name"``, or the input named:
    :func:`zoo.jsonarrays.array_span`) of integers or short decimals through the compiled
    reader (:mod:`zoo.jsonscan`; a batch of 32 RGB 160x160 images, 12.9 MB: 17 ms on two
    threads), other such bodies through simdjson (in parts by the splitter's worker
    processes when large, else :func:`_read_pixels`: ~0.1 s, against 1.0-1.4 s through
    orjson and ``numpy.asarray``); everything else goes through orjson.

    Args:
        splitter: a :class:`zoo.jsonarrays.SplitParser` whose threads and worker processes
            read a large body of one array in parts.
        dtype: the dtype wanted for that array (the model's input dtype: converted as it is
            read); default: exact (int64 or float64). The simdjson path without the
            splitter gives the exact dtype.
    """
    if body.startswith(_UTF8_BOM):
        # simdjson skips a byte order mark that orjson refuses, as TensorFlow Serving's
        # parser does: bodies of every size get the same answer.
        splitter = None
    elif len(body) >= _FAST_JSON_BYTES:
        parsed = _scan_pixels(body, splitter, dtype)
        payload = None if parsed is None else jsonarrays.payload_of(body, *parsed)
        if payload is not None:
            return payload
    if splitter is not None:
        parsed = splitter.parse(body, dtype)
        payload = None if parsed is None else jsonarrays.payload_of(body, *parsed)
        if payload is not None:
            return payload
    # Bodies of b64 images go to orjson at once: no numbers to read into numpy there.
    if (len(body) >= _FAST_JSON_BYTES and b'"b64"' not in body
            and not body.startswith(_UTF8_BOM)):
        payload = _read_pixels(body)
        if payload is not None:
            return payload
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if _NON_FINITE_TOKEN.search(body):
            # TensorFlow Serving's parser reads these tokens; an image cannot hold them.
            raise ServingError(400, "pixel values must be finite numbers (no NaN or "
                               "infinity); the request body holds NaN, Infinity or "
                               "-Infinity") from None
        raise ServingError(400, f"malformed JSON in the request body: {exc}") from None


#: A UTF-8 byte order mark, which JSON texts do not begin with (RFC 8259, 8.1).
_UTF8_BOM = b"\xef\xbb\xbf"
#: NaN and infinity as TensorFlow Serving's JSON parser reads them (and Python's json).
_NON_FINITE_TOKEN = re.compile(rb"[\[,:]\s*-?(?:NaN|Infinity)\s*[\],}]")


#: ``Content-Encoding`` values of request bodies read as they are, and of gzip bodies.
_IDENTITY_ENCODINGS = ("", "identity")
_GZIP_ENCODINGS = ("gzip", "x-gzip")
#: gzip bodies from this size on are decompressed in the thread pool, off the event loop.
_INLINE_GUNZIP_BYTES = 64 * 1024


def _gzipped(content_encoding) -> bool:
    """Whether a request body with this ``Content-Encoding`` header is gzip data (as
    TensorFlow Serving, which decompresses such bodies); a 415 :class:`ServingError` for an
    encoding that is neither gzip nor identity."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in _IDENTITY_ENCODINGS:
        return False
    if encoding in _GZIP_ENCODINGS:
        return True
    raise ServingError(415, f"unsupported Content-Encoding {content_encoding!r} of the "
                       f"request body; zoo serve reads 'gzip' or uncompressed ('identity') "
                       f"bodies")


def gunzip_body(data, max_bytes: int) -> bytes:
    """The decompressed body of a ``Content-Encoding: gzip`` request (one gzip member or
    several in a row); a 413 :class:`ServingError` as soon as it grows beyond ``max_bytes``
    (never decompressed in full), a 400 one for data that is not gzip."""
    out = bytearray()
    data = memoryview(data)
    try:
        while True:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise ServingError(413, f"the gzip request body decompresses to more than "
                                   f"the limit of {max_bytes} bytes")
            if not inflater.eof:
                raise ServingError(400, f"the gzip request body (Content-Encoding: gzip) "
                                   f"is truncated: {len(data)} bytes end inside the data")
            data = memoryview(inflater.unused_data)
            if not data:
                return bytes(out)
    except zlib.error as exc:
        raise ServingError(400, f"the request body is not valid gzip data, as its "
                           f"Content-Encoding: gzip says ({exc})") from None


class PixelBudget:
    """The bytes of pixels a request's ``{"b64": ...}`` images may decode to in all, as a
    gzip body may decompress to at most the request size limit: a few hundred kilobytes
    of compressed images of zeros hold gigabytes of pixels (six 9000x9000 grey PNGs in a
    630 KB body took 13 s and 3 GB of memory to decode and predict). Each image's size is
    read from its header, before it is decoded."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.taken = 0

    def take(self, img, channels: int, where: str, data: bytes = b"") -> None:
        """Count the pixels of ``img``, a Pillow image opened from its header (width x
        height x ``channels``; every frame of a GIF, which TensorFlow's decoder decodes in
        full, counted in its encoded ``data``); a 413 :class:`ServingError` beyond the
        limit."""
        width, height = img.size
        frame = max(width * height * channels, 1)
        frames = most = 1
        if img.format == "GIF":
            most = (self.max_bytes - self.taken) // frame + 1   # enough to go beyond
            frames = _gif_frames(data, most + 1)                # (+1: are there more?)
        self.taken += frame * frames
        if self.taken > self.max_bytes:
            animation = (f" in more than {most} frames" if frames > most else
                         f" in {frames} frames" if frames > 1 else "")
            raise ServingError(413, f"{where}: the request's images decode to more than the "
                               f"limit of {self.max_bytes} bytes of pixels ({width}x{height}"
                               f"x{channels}{animation} here, {self.taken} bytes so far)")


def _gif_frames(data: bytes, most: int) -> int:
    """The frames (image descriptors) of GIF ``data``, counted up to ``most``, walking its
    blocks without decoding any (Pillow's ``n_frames`` took ~50 us a frame: seconds for a
    body of tiny frames); where the blocks end early or go wrong, those counted so far
    (the decoder then says what is wrong), at least 1."""
    frames, size = 0, len(data)
    pos = 13                                               # header, screen descriptor
    if size > 10 and data[10] & 0x80:                      # a global colour table
        pos += 3 << ((data[10] & 7) + 1)
    while pos < size and frames < most:
        block = data[pos]
        if block == 0x21:                                  # an extension: label, blocks
            pos += 2
        elif block == 0x2C:                                # an image descriptor
            frames += 1
            if pos + 9 < size and data[pos + 9] & 0x80:    # a local colour table
                pos += 3 << ((data[pos + 9] & 7) + 1)
            pos += 11                                      # descriptor, LZW code size
        else:                                              # the trailer, or damage
            break
        while pos < size and data[pos]:                    # data sub-blocks
            pos += data[pos] + 1
        pos += 1
    return max(frames, 1)


#: How much of a client's names an error message repeats: a body of a million bytes of
#: names was echoed whole.
_SHOWN_KEYS = 10
_SHOWN_CHARS = 40


def _cut(text: str) -> str:
    """``repr(text)``, cut to :data:`_SHOWN_CHARS` characters (``'abc'...``)."""
    return repr(text) if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]!r}..."


def _keys_shown(keys) -> str:
    """The sorted names of a JSON object for an error message, the first
    :data:`_SHOWN_KEYS` of them (each cut: :func:`_cut`) and how many there are."""
    names = sorted(keys)
    shown = "[" + ", ".join(_cut(name) for name in names[:_SHOWN_KEYS])
    return shown + "]" if len(names) <= _SHOWN_KEYS else f"{shown}, ...] ({len(names)} keys)"


#: The characters TensorFlow Serving's base64 decoder (``absl::Base64Unescape``) skips
#: wherever they are: ASCII whitespace, such as the line breaks of ``base64`` without ``-w0``
#: or Python's ``base64.encodebytes``.
_B64_SPACE = re.compile(r"[ \t\n\v\f\r]+")
_B64_NOT_DATA = re.compile(r"[^A-Za-z0-9+/]")


def _b64decode(text: str, where: str) -> bytes:
    """The bytes of a ``{"b64": text}`` value, read as TensorFlow Serving reads them
    (``absl::Base64Unescape``): the standard alphabet, whitespace anywhere skipped, and the
    padding either left out or exactly right (``=``, or ``.`` as absl also takes); a 400
    :class:`ServingError` otherwise. Strict base64 alone refused the line-wrapped, unpadded
    and dot-padded strings that TensorFlow Serving's clients may send."""
    try:
        return base64.b64decode(text, validate=True)   # the usual case, at C speed
    except (binascii.Error, ValueError):
        pass   # read again as below, for the message too
    data = _B64_SPACE.sub("", text)
    body = data.rstrip("=.")
    pads, missing = len(data) - len(body), -len(body) % 4
    bad = _B64_NOT_DATA.search(body)
    if bad:
        problem = (f"it holds {bad.group()!r}; base64 is A-Z, a-z, 0-9, + and /, with = "
                   f"padding at the end")
    elif len(body) % 4 == 1:
        problem = f"{len(body)} base64 characters, which encode no whole number of bytes"
    elif pads not in (0, missing):
        problem = (f"{len(body)} base64 characters followed by {pads} padding characters, "
                   f"where {missing} or none fit")
    else:
        return base64.b64decode(body + "=" * missing, validate=True)
    raise ServingError(400, f"{where}: invalid base64 data ({problem})")


def _decode_value(value, servable, where, budget=None):
    """One image from a JSON value: nested numbers or ``{"b64": "..."}`` (its pixels
    counted by ``budget``, a :class:`PixelBudget`, before it is decoded)."""
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise ServingError(400, f"{where}: a binary value must be {{\"b64\": \"<base64 "
                               f"string>\"}}; received keys {_keys_shown(value)}")
        if not isinstance(value["b64"], str):
            raise ServingError(400, f"{where}: the \"b64\" value must be a base64 string; "
                               f"received {type(value['b64']).__name__}")
        data = _b64decode(value["b64"], where)
        from zoo.serving import decode_image
        count = None if budget is None else functools.partial(
            budget.take, channels=servable.channels, where=where, data=data)
        try:
            return decode_image(data, servable.channels, before_decode=count)
        except ValueError as exc:
            raise ServingError(400, f"{where}: {exc}") from None
    if isinstance(value, (str, bool)) or value is None:
        raise ServingError(400, f"{where}: expected an image as nested lists of numbers "
                           f"[height][width][channels] or {{\"b64\": ...}}; received "
                           f"{type(value).__name__} {str(value)[:40]!r}")
    from zoo.serving import _as_array
    try:
        array = _as_array(value, name=where)
    except ValueError as exc:   # a ragged list's message names its place from `where` on
        message = str(exc)
        raise ServingError(400, message if message.startswith(where)
                           else f"{where}: {message}") from None
    return array


def _images_from_instances(instances, servable, input_name, budget=None):
    if isinstance(instances, np.ndarray):  # pixel lists parsed straight into an array
        if instances.ndim != 4:
            raise ServingError(400, f"instances[0]: each instance must be one image "
                               f"[height][width][channels]; received shape "
                               f"{instances.shape[1:]}")
        return instances
    if not isinstance(instances, list) or not instances:
        raise ServingError(400, "'instances' must be a non-empty list (one entry per image)")
    def names_input(row):
        return isinstance(row, dict) and set(row) != {"b64"}

    named = names_input(instances[0])
    for i, row in enumerate(instances):   # before any decoding
        if names_input(row) != named:     # (TensorFlow Serving refuses such a list too)
            raise ServingError(400, f"instances[{i}]: every instance must name the input "
                               f"({{\"{input_name}\": ...}}) or none must; instances[0] "
                               f"{'does' if named else 'does not'} and instances[{i}] "
                               f"{'does not' if named else 'does'}")
    images = []
    for i, row in enumerate(instances):
        if named:
            if set(row) != {input_name}:
                raise ServingError(400, f"instances[{i}]: named inputs must be exactly "
                                   f"{{\"{input_name}\": ...}}; received keys {_keys_shown(row)}")
            row = row[input_name]
        image = _decode_value(row, servable, f"instances[{i}]", budget)
        if image.ndim != 3:
            raise ServingError(400, f"instances[{i}]: each instance must be one image "
                               f"[height][width][channels]; received shape {image.shape}")
        images.append(image)
    return images


def _images_from_inputs(inputs, servable, input_name, budget=None):
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        if set(inputs) != {input_name}:
            raise ServingError(400, f"'inputs' must name the signature's input "
                               f"{{\"{input_name}\": ...}}; received keys {_keys_shown(inputs)}")
        inputs = inputs[input_name]
    if isinstance(inputs, dict):  # one b64 image
        return [_decode_value(inputs, servable, "inputs", budget)]
    if isinstance(inputs, np.ndarray):  # pixel lists parsed straight into an array
        if inputs.ndim != 4:
            raise ServingError(400, f"'inputs' must be a batch [batch][height][width]"
                               f"[channels]; received shape {inputs.shape}")
        return inputs
    if not isinstance(inputs, list) or not inputs:
        raise ServingError(400, "'inputs' must be a non-empty batch of images "
                           "[batch][height][width][channels] or a list of {\"b64\": ...}")
    if any(isinstance(v, dict) for v in inputs):
        return [_decode_value(v, servable, f"inputs[{i}]", budget)
                for i, v in enumerate(inputs)]
    batch = _decode_value(inputs, servable, "inputs")
    if batch.ndim != 4:
        raise ServingError(400, f"'inputs' must be a batch [batch][height][width][channels]; "
                           f"received shape {batch.shape}")
    return batch


class _Pending:
    """One request's images waiting in a :class:`RequestBatcher` queue."""

    __slots__ = ("images", "event", "result", "error", "lead")

    def __init__(self, images):
        self.images = images
        self.event = threading.Event()
        self.result = self.error = None
        self.lead = False


def _check_ms(name, value) -> None:
    """``value`` must be a finite number of milliseconds >= 0; the error names ``name``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a non-negative number of milliseconds. "
                         f"Received: {value!r}")


class RequestBatcher:
    """Server-side batching of concurrent requests.

    A request that finds its model idle runs at once, or with ``wait_ms`` after up to that
    long for others to join it (TensorFlow Serving's ``batch_timeout_micros``). Requests
    that arrive while a batch of the same model version, signature and image size runs
    queue up, and when it finishes the queued ones run together as the next batch (up to
    ``max_batch`` images; the thread of the first of them runs it, then hands on to the next
    request still queued). Each request gets its own rows of the batch's outputs. Requests
    of several image sizes, or of ``max_batch`` images or more, run on their own. The model
    runs up to :attr:`step` images per call (``max_batch``, at least 64), so a combined batch
    is one call, however large ``max_batch`` is.

    Args:
        max_batch: the most images in one combined batch; below 2, requests are never
            combined.
        wait_ms: how long a request that finds its model idle waits for more requests, in
            milliseconds; it runs as soon as ``max_batch`` images have arrived. 0 (the
            default): no waiting.

    Raises:
        ValueError: ``max_batch`` is no integer >= 0, ``wait_ms`` no finite number >= 0.
    """

    def __init__(self, max_batch: int = _PREDICT_BATCH, wait_ms: float = 0.0):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 0:
            raise ValueError(f"max_batch must be a non-negative integer. Received: "
                             f"{max_batch!r}")
        _check_ms("wait_ms", wait_ms)
        self.max_batch = max_batch
        #: the most images per model call: a combined batch runs whole (a max_batch above
        #: 64 ran as calls of 64), a large request in batches of this many
        self.step = max(max_batch, _PREDICT_BATCH)
        self.wait_seconds = wait_ms / 1000.0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)   # a request joined a queue
        self._queues: dict = {}
        self._running: set = set()
        #: batches run and the requests they answered (combined ones count once)
        self.batches = 0
        self.requests = 0

    def predict(self, servable, images, signature_name, *, wait=True) -> dict:
        """``servable.predict(images, signature_name=...)``, batched with concurrent calls;
        ``wait=False``: no waiting for others if the model is idle (a request answered on
        the event loop, where no other request can arrive meanwhile)."""
        groups = servable.to_batches(images)
        if len(groups) != 1 or len(groups[0][1]) >= self.max_batch:
            return servable.predict_batches(groups, self.step,
                                            signature_name=signature_name)
        (_, batch), = groups                  # one group: every image, in order
        key = (servable, signature_name, batch.shape[1:])
        me = _Pending(batch)
        with self._lock:
            queue = self._queues.setdefault(key, [])
            queue.append(me)
            me.lead = key not in self._running
            self._running.add(key)
            if me.lead and wait and self.wait_seconds > 0:
                self._gather(queue)
            elif len(queue) > 1:
                self._arrived.notify_all()
        if not me.lead:
            me.event.wait()                   # answered, or handed the lead
        if me.lead:
            self._run_next(servable, signature_name, key)
        if me.error is not None:
            raise me.error
        return me.result

    def _gather(self, queue):
        """Wait (holding ``_lock``, which the wait releases) until ``queue`` holds
        ``max_batch`` images or ``wait_seconds`` have passed."""
        deadline = time.monotonic() + self.wait_seconds
        while sum(len(p.images) for p in queue) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.wait(left)

    def _run_next(self, servable, signature_name, key):
        with self._lock:
            queue = self._queues[key]
            taken, count = [], 0
            while queue and (not taken or count + len(queue[0].images) <= self.max_batch):
                taken.append(queue.pop(0))
                count += len(taken[-1].images)
        try:
            batch = (taken[0].images if len(taken) == 1 else
                     np.concatenate([p.images for p in taken]))
            outputs = servable.predict_batches([(np.arange(len(batch)), batch)],
                                               self.step, signature_name=signature_name)
            start = 0
            for p in taken:
                p.result = {k: v[start:start + len(p.images)] for k, v in outputs.items()}
                start += len(p.images)
        except BaseException as exc:  # every request of the batch gets the error
            for p in taken:
                p.error = exc
        finally:  # hand on, whatever happened: the queue never stalls
            with self._lock:
                self.batches += 1
                self.requests += len(taken)
                if queue:
                    queue[0].lead = True
                    queue[0].event.set()
                else:
                    del self._queues[key]
                    self._running.discard(key)
            for p in taken:
                p.lead = False
                p.event.set()


class InlinePolicy:
    """Which ``:predict`` requests are answered on the event loop, not in the thread pool.

    A trip to the thread pool and back costs ~0.2 ms of the event loop's and the worker
    thread's time, more than the whole work of a small model's request (LeNet-5, one image:
    0.16 ms to parse, predict and encode). A request runs on the event loop when its model is
    predicted to answer it within ``max_ms``, from the model's own requests so far:

    - the model has answered a request within ``max_ms`` (a model whose every request takes
      longer, ResNet-50's 25 ms for one image, never runs there, however small the body);
    - the body's size times the model's seconds per body byte (a moving average over its
      successful requests) is within ``max_ms``;
    - the body holds pixel lists, not ``{"b64": ...}`` images (a compressed image's bytes say
      little of its size);
    - none of the model's requests is in the thread pool, sent there or running (this one
      would wait for it in the batcher, holding up the event loop).

    Until a model has answered a request, its requests go to the thread pool. An answer on
    the event loop delays other requests by at most about ``max_ms``, but work of that size
    holds the GIL for most of its time anyway (parsing, encoding, a small model's kernels),
    and on 2 cores small models gained more than batching gave them: LeNet-5 and ResNet-18
    at 32x32 and 64x64 answered 1.05-1.3x as many requests per second from 1 and 8 clients
    (benchmarks/README.md, item 18).

    Args:
        max_ms: the longest predicted work, in milliseconds, answered on the event loop;
            0: every request goes to the thread pool.

    Raises:
        ValueError: ``max_ms`` is no finite number >= 0.
    """

    #: weight of the newest request in the moving average of seconds per byte
    SMOOTHING = 0.25

    def __init__(self, max_ms: float = DEFAULT_INLINE_MS):
        _check_ms("max_ms", max_ms)
        self.max_seconds = max_ms / 1000.0
        self._lock = threading.Lock()
        # servable -> [seconds per body byte (moving average), fastest request in seconds]
        self._costs = weakref.WeakKeyDictionary()
        self._pooled: dict = {}              # id(servable) -> its requests in the pool now
        #: requests answered on the event loop, and in the thread pool
        self.inline = 0
        self.pooled = 0

    def cheap(self, servable, body: bytes) -> bool:
        """Whether ``servable`` is predicted to answer ``body`` within ``max_ms``."""
        if self.max_seconds <= 0:
            return False
        with self._lock:
            cost = self._costs.get(servable)
            busy = self._pooled.get(id(servable), 0)
        return (cost is not None and not busy and cost[1] <= self.max_seconds
                and cost[0] * len(body) <= self.max_seconds and b'"b64"' not in body)

    @contextlib.contextmanager
    def pending(self, servable):
        """Mark a request of ``servable`` as sent to the thread pool, from before it is sent
        (on the event loop) until it is answered; ``None``: a model not loaded yet."""
        if servable is None:
            yield
            return
        key = id(servable)
        with self._lock:
            self._pooled[key] = self._pooled.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._pooled[key] - 1
                if left:
                    self._pooled[key] = left
                else:
                    del self._pooled[key]

    @contextlib.contextmanager
    def timed(self, servable, body: bytes, pooled: bool):
        """Time the work of answering ``body`` with ``servable`` (in the thread pool if
        ``pooled``); a successful answer updates the model's estimates."""
        start = time.perf_counter()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.perf_counter() - start
            with self._lock:
                if pooled:
                    self.pooled += 1
                else:
                    self.inline += 1
                if ok:  # a quick 400 says nothing of the model's speed
                    rate = seconds / max(len(body), 1)
                    cost = self._costs.get(servable)
                    if cost is None:
                        self._costs[servable] = [rate, seconds]
                    else:
                        cost[0] += self.SMOOTHING * (rate - cost[0])
                        cost[1] = min(cost[1], seconds)


def handle_predict(servable, payload, batcher=None, *, wait=True,
                   max_image_bytes=None) -> dict:
    """Answer one ``:predict`` request body (already parsed JSON), its prediction batched
    with concurrent requests' by ``batcher`` (a :class:`RequestBatcher`) if given
    (``wait``: see :meth:`RequestBatcher.predict`); ``max_image_bytes``: the most bytes of
    pixels its ``{"b64": ...}`` images may decode to in all (413 beyond: :class:`PixelBudget`;
    ``None``: no limit)."""
    if not isinstance(payload, dict):
        raise ServingError(400, "the request body must be a JSON object with 'instances' or "
                           "'inputs'")
    signature = payload.get("signature_name", SIGNATURE_NAME)
    if not isinstance(signature, str):
        shown = repr(signature) if not isinstance(signature, (list, dict)) else \
            type(signature).__name__   # (the repr of a deeply nested one raised RecursionError)
        raise ServingError(400, f"'signature_name' must be a string; received {shown}")
    if signature == "":
        signature = SIGNATURE_NAME
    if signature not in servable.signature_names:
        raise ServingError(400, f"signature_name {_cut(signature)} not found; this model has: "
                           f"{', '.join(servable.signature_names)}")
    has_instances, has_inputs = "instances" in payload, "inputs" in payload
    if has_instances == has_inputs:
        raise ServingError(400, "the request must contain exactly one of 'instances' (row "
                           "format) or 'inputs' (columnar format)"
                           + ("; it has both" if has_instances else "; it has neither" + (
                               f" (its keys: {', '.join(repr(k) for k in list(payload)[:8])})"
                               if payload else "")))
    name = servable.input_name
    budget = None if max_image_bytes is None else PixelBudget(max_image_bytes)
    if has_instances:
        images = _images_from_instances(payload["instances"], servable, name, budget)
    else:
        images = _images_from_inputs(payload["inputs"], servable, name, budget)
    try:
        if batcher is None:
            outputs = servable.predict(images, batch_size=_PREDICT_BATCH,
                                       signature_name=signature)
        else:
            outputs = batcher.predict(servable, images, signature, wait=wait)
    except ValueError as exc:
        message = str(exc)
        if isinstance(images, list) and message.startswith("images["):
            # the Servable numbers a list's images; the request's are its rows or inputs
            message = ("instances" if has_instances else "inputs") + message[len("images"):]
        raise ServingError(400, message) from None
    except Exception as exc:
        import tensorflow as tf
        if isinstance(exc, tf.errors.InvalidArgumentError):
            raise ServingError(400, exc.message.splitlines()[0]) from None
        raise
    outputs = {k: _answer_array(v) for k, v in outputs.items()}
    if has_instances:
        n = len(next(iter(outputs.values())))
        keys = list(outputs)
        if len(keys) == 1:
            return {"predictions": outputs[keys[0]]}
        return {"predictions": [{k: outputs[k][i] for k in keys} for i in range(n)]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values()))}
    return {"outputs": outputs}


#: Output dtypes orjson writes straight from numpy (``OPT_SERIALIZE_NUMPY``).
_NUMPY_JSON_KINDS = frozenset("biuf")


def _answer_array(value):
    """An output as :func:`dumps` writes it: a C-contiguous numpy array of a dtype orjson
    writes itself (float32 as the shortest text that reads back as the same float32, as
    TensorFlow Serving writes it: ~40% fewer bytes than through Python floats), other
    floats (bfloat16) as float32, anything else as Python lists."""
    value = np.asarray(value)
    if not (value.dtype.kind in _NUMPY_JSON_KINDS and value.dtype.itemsize <= 8):
        if "float" not in value.dtype.name:
            return value.tolist()
        value = value.astype(np.float32)   # ml_dtypes' bfloat16 and float8 types
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        return _non_finite_answer(value)
    return np.ascontiguousarray(value)


#: How TensorFlow Serving writes the floats JSON has no number for (orjson: ``null``).
_NON_FINITE_JSON = {"nan": orjson.Fragment(b"NaN"), "inf": orjson.Fragment(b"Infinity"),
                    "-inf": orjson.Fragment(b"-Infinity")}


def _non_finite_answer(value):
    """A float array holding NaN or infinities as nested lists for :func:`dumps`: its
    numbers as numpy scalars (each written as the shortest text of its own type, as the
    array would be), NaN and infinities as ``NaN``, ``Infinity`` and ``-Infinity``, as
    TensorFlow Serving writes them (and Python's ``json`` reads them)."""
    items = np.empty(value.size, object)
    items[:] = list(value.ravel())
    for i in np.flatnonzero(~np.isfinite(value.ravel())):
        items[i] = _NON_FINITE_JSON[str(float(items[i]))]
    return items.reshape(value.shape).tolist()


def dumps(answer) -> bytes:
    """The JSON text of a :func:`handle_predict` answer."""
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


# --------------------------------------------------------------------------------------
# The application.

def parse_workers_for(parse_workers) -> int:
    """The number of JSON parsing workers ``parse_workers`` asks for: ``"auto"`` is
    one fewer than the usable CPUs, at most 3 (none on one CPU). At most the usable CPUs:
    each worker reads its part of a body beside the request's thread, so more could not
    run at once, and each worker process takes ~65 MB."""
    from zoo.serving import _usable_cpus
    if parse_workers == "auto":
        return max(0, min(3, _usable_cpus() - 1))
    if isinstance(parse_workers, bool) or not isinstance(parse_workers, int) or (
            parse_workers < 0):
        raise ValueError(f"parse_workers must be 'auto' or a non-negative integer. Received: "
                         f"{parse_workers!r}")
    if parse_workers > _usable_cpus():
        raise ValueError(f"parse_workers must be 'auto' or an integer from 0 to "
                         f"{_usable_cpus()} (the usable CPUs). Received: {parse_workers!r}")
    return parse_workers


def create_app(base_dir, *, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES, jit_compile="auto",
               runtime="auto", preload=True, parse_workers="auto", max_batch=_PREDICT_BATCH,
               inline_ms=DEFAULT_INLINE_MS, batch_wait_ms=0.0,
               poll_seconds=DEFAULT_POLL_SECONDS, allow_origins=()):
    """The FastAPI application serving ``base_dir``.

    Args:
        base_dir: directory of ``NAME/VERSION/`` SavedModels.
        max_request_bytes: larger request bodies are refused with 413, and so are
            requests whose ``{"b64": ...}`` images decode to more bytes of pixels in all
            (:class:`PixelBudget`).
        jit_compile, runtime: passed to :func:`zoo.serving.load`.
        preload: load the newest version of every model at start-up.
        parse_workers: threads of the compiled reader (:mod:`zoo.jsonscan`) and worker
            processes for simdjson (bodies it does not take) that parse large JSON
            pixel-list bodies in parts beside the request's thread
            (:class:`zoo.jsonarrays.SplitParser`); ``"auto"``: one fewer than the usable
            CPUs, at most 3; 0: none; at most the usable CPUs. The processes start with the
            application, or with the first such body.
        max_batch: concurrent requests' images are combined into batches of up to this
            many (:class:`RequestBatcher`: those that arrive while the model is busy, or
            within ``batch_wait_ms``); 0 or 1: every request runs on its own.
        inline_ms: requests a model is predicted to answer within this many milliseconds
            are answered on the event loop, the others in the thread pool
            (:class:`InlinePolicy`); 0: all in the thread pool.
        batch_wait_ms: how long a request that finds its model idle waits for others to
            join its batch (:class:`RequestBatcher`'s ``wait_ms``; requests answered on the
            event loop never wait); 0 (the default): no waiting.
        poll_seconds: while the application runs, a thread looks at ``base_dir`` this
            often (:meth:`ModelStore.poll`): new versions and models are loaded without
            waiting for a request, removed ones are dropped. 0: no polling; requests look
            (a request without a version is answered by the loaded version while a newer
            one loads, then by the newer one).
        allow_origins: web pages whose scripts may call the server from a browser (CORS,
            Starlette's ``CORSMiddleware``): origins ``scheme://host[:port]``, or ``"*"``
            for any page; empty (the default, as TensorFlow Serving): no CORS headers, so
            browsers keep other sites' pages from reading the answers.

    Returns:
        A ``fastapi.FastAPI`` application (its ``state.store`` is the :class:`ModelStore`,
        ``state.splitter`` the :class:`~zoo.jsonarrays.SplitParser`, ``state.batcher`` the
        :class:`RequestBatcher`, ``state.inline`` the :class:`InlinePolicy`).

    Raises:
        ValueError: a bad argument (checked before anything starts; ``base_dir`` is not:
            the models are looked for while the application runs): a ``jit_compile`` or
            ``runtime`` :func:`zoo.serving.load` refuses, a ``preload`` that is not
            ``True`` or ``False``, a number out of its range, ``allow_origins`` that are no
            origins (:func:`check_origins`).
    """
    from zoo.common import check_bool
    from zoo.serving import check_load_options
    if (isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int)
            or max_request_bytes < 1):
        raise ValueError(f"max_request_bytes must be a positive integer. Received: "
                         f"{max_request_bytes!r}")
    # Checked here, not when each model loads (a bad jit_compile was every model's load
    # error, and the server ran with none).
    jit_compile = check_load_options(jit_compile, runtime)
    check_bool("create_app", preload=preload)
    _check_ms("inline_ms", inline_ms)           # (InlinePolicy named its own max_ms)
    _check_ms("batch_wait_ms", batch_wait_ms)   # (RequestBatcher's wait_ms)
    if (isinstance(poll_seconds, bool) or not isinstance(poll_seconds, (int, float))
            or not 0 <= poll_seconds < math.inf):
        raise ValueError(f"poll_seconds must be a non-negative number of seconds (0: no "
                         f"polling). Received: {poll_seconds!r}")
    allow_origins = check_origins(allow_origins)
    splitter = jsonarrays.SplitParser(parse_workers_for(parse_workers))
    batcher = RequestBatcher(max_batch, batch_wait_ms)
    inline = InlinePolicy(inline_ms)
    store = ModelStore(base_dir, jit_compile=jit_compile, runtime=runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # The compiled reader is compiled (or loaded from numba's cache: 0.6 s, 2.7 s the
        # first time) while the models load, not on the first request.
        warm_up = asyncio.ensure_future(run_in_threadpool(jsonscan.warm_up,
                                                          (np.float32, None)))
        if preload:
            await run_in_threadpool(store.preload)
        if splitter.workers:
            await run_in_threadpool(splitter.start)
        await warm_up
        stop = threading.Event()
        poller = None
        if poll_seconds:
            poller = threading.Thread(target=_poll_loop, args=(store, poll_seconds, stop),
                                      name="zoo-poll", daemon=True)
            poller.start()
        try:
            yield
        finally:
            stop.set()
            if poller is not None:
                await run_in_threadpool(poller.join, 5.0)
            await run_in_threadpool(splitter.close)

    app = FastAPI(title="zoo serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    if allow_origins:
        # Preflights (OPTIONS) are answered by the middleware; the methods and headers are
        # the ones TensorFlow Serving's REST API takes.
        app.add_middleware(_cors_middleware(), allow_origins=list(allow_origins),
                           allow_methods=list(CORS_METHODS), allow_headers=list(CORS_HEADERS),
                           max_age=CORS_MAX_AGE_SECONDS)
    app.add_middleware(_FoldedPrefix)
    app.state.store = store
    app.state.splitter = splitter
    app.state.batcher = batcher
    app.state.inline = inline

    load_threads = None   # an anyio.CapacityLimiter of LOAD_WAIT_THREADS, made on the loop

    async def get_servable(name, version):
        """:meth:`ModelStore.get` on a thread of :data:`LOAD_WAIT_THREADS`: it may wait
        for a load."""
        import anyio
        nonlocal load_threads
        if load_threads is None:
            load_threads = anyio.CapacityLimiter(LOAD_WAIT_THREADS)
        return await anyio.to_thread.run_sync(store.get, name, version, limiter=load_threads)

    def error(status, message, headers=None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        path = request.url.path
        message = {404: f"no such endpoint: {request.method} {path}",
                   405: f"method {request.method} not allowed for {path}"}.get(
            exc.status_code, str(exc.detail))
        headers = None
        if exc.status_code == 405:   # the methods of the endpoint, not of the route
            tail = path[len(_PREFIX) + 1:] if path.startswith(_PREFIX + "/") else None
            match = tail and (_MODEL_PATH.match(tail) or _LABEL_PATH.match(tail))
            verb = match and match.group("rest")
            verb = verb if verb and verb[0] == ":" else None
            if not match or verb is not None and verb not in _VERBS:
                # as the endpoint's own methods answer it (no such endpoint)
                return error(404, f"no such endpoint: {request.method} {path}")
            allowed = "GET, HEAD" if verb is None else "POST"
            message += f" (allowed: {allowed})"
            headers = {"Allow": allowed}
        return error(exc.status_code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error(400, str(exc))

    @app.exception_handler(ServingError)
    async def serving_error(request, exc):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request, exc):  # a bug or resource failure, still as JSON
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    def parse_path(path, method):
        if path == "":
            raise no_model(method, "/v1/models/")
        match = _MODEL_PATH.match(path)
        if not match:
            label = _LABEL_PATH.match(path)
            if label:   # TensorFlow Serving answers a label it does not know with 400
                raise ServingError(400, f"Unrecognized servable version label: "
                                   f"{label.group('label')!r}: zoo serve assigns no version "
                                   f"labels; name a version instead: /v1/models/"
                                   f"{label.group('name')}/versions/N[/metadata|:predict]")
            raise ServingError(404, f"no such endpoint: /v1/models/{path}")
        version = match.group("version")
        if version is not None:
            if not is_digits(version):
                raise ServingError(400, f"version must be a non-negative integer; received "
                                   f"{version!r}")
            version = int(version)
        rest = match.group("rest")
        if rest is not None and rest[0] == "/":
            rest = "/metadata"
        return match.group("name"), version, rest

    async def read_body(request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise ServingError(400, f"invalid Content-Length {length!r}") from None
            if declared > max_request_bytes:
                raise ServingError(413, f"request body of {declared} bytes exceeds the limit "
                                   f"of {max_request_bytes} bytes", _UNREAD_BODY)
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_request_bytes:
                    raise ServingError(413, f"request body exceeds the limit of "
                                       f"{max_request_bytes} bytes", _UNREAD_BODY)
        except ClientDisconnect:
            # Nobody to answer (uvicorn drops the answer): logged as a 400, no traceback.
            raise ServingError(400, f"the client disconnected after {len(body)} bytes of "
                               f"the request body") from None
        if not _gzipped(request.headers.get("content-encoding")):
            return bytes(body)
        if len(body) < _INLINE_GUNZIP_BYTES:
            return gunzip_body(body, max_request_bytes)
        return await run_in_threadpool(gunzip_body, body, max_request_bytes)

    def no_model(method, path):
        return ServingError(404, f"no such endpoint: {method} {path}: a model name is "
                            f"needed (/v1/models/NAME[/versions/N], [...]/metadata or "
                            f"[...]:predict)")

    @app.api_route("/v1/models", methods=["GET", "POST"])
    async def models_root(request: Request):
        raise no_model(request.method, request.url.path)

    @app.api_route("/v1/models/{path:path}", methods=["GET", "HEAD"])
    async def get_model(path: str):
        name, version, rest = parse_path(path, "GET")
        if rest is None:
            return JSONResponse(await run_in_threadpool(store.status, name, version))
        if rest not in ("/metadata", *_VERBS):   # no endpoint, as POST answers it
            raise ServingError(404, f"no such endpoint: GET /v1/models/{path} (use POST "
                               f"/v1/models/{name}[/versions/N]:predict)")
        if rest != "/metadata":
            raise ServingError(405, f"use POST for /v1/models/{path}", {"Allow": "POST"})
        servable = await get_servable(name, version)
        signatures = servable.signature_defs   # read when it loaded
        runtime = await run_in_threadpool(servable.runtime_report)   # waits out a trial call
        return JSONResponse({
            "model_spec": {"name": name, "signature_name": "",
                           "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": signatures}},
            # Not in TensorFlow Serving's answer: what runs the model here.
            "runtime": runtime,
        })

    async def post_model(request: Request):
        path = request.path_params["path"]
        name, version, rest = parse_path(path, "POST")
        if rest != ":predict":
            if rest is None or rest == "/metadata":   # the status and metadata endpoints
                raise ServingError(405, f"use GET for /v1/models/{path}",
                                   {"Allow": "GET, HEAD"})
            if rest in (":classify", ":regress"):
                raise ServingError(400, f"{rest[1:]} is not supported: zoo models export a "
                                   "predict signature only; use :predict")
            raise ServingError(404, f"no such endpoint: POST /v1/models/{path} (use "
                               f"/v1/models/{name}[/versions/N]:predict)")
        body = await read_body(request)

        def answer(servable, wait=True):
            # Request bodies of pixel lists are megabytes of JSON numbers: simdjson reads
            # them into numpy, orjson parses the rest and writes answers ~20x faster than
            # the json module (benchmarks/).
            dtype = np.dtype(servable.input_dtype.as_numpy_dtype)
            payload = parse_body(body, splitter,
                                 dtype if np.issubdtype(dtype, np.floating) else None)
            return dumps(handle_predict(servable, payload, batcher, wait=wait,
                                        max_image_bytes=max_request_bytes))

        servable = store.loaded(name, version)
        if servable is None:   # not loaded yet: its load is waited for off the thread pool
            servable = await get_servable(name, version)
        # A model that answers such a body within inline_ms: on the event loop.
        if inline.cheap(servable, body):
            with inline.timed(servable, body, pooled=False):
                content = answer(servable, wait=False)   # nothing can arrive meanwhile
            return Response(content, media_type="application/json")

        def work():
            # One trip to the thread pool per request: the parse, the prediction, the answer.
            with inline.timed(servable, body, pooled=True):
                return answer(servable)

        # Marked busy before it leaves the event loop: no later request of the model goes
        # inline to wait there for this one in the batcher.
        with inline.pending(servable):
            content = await run_in_threadpool(work)
        return Response(content, media_type="application/json")

    # A plain Starlette route: FastAPI's parameter handling cost ~0.05 ms per request.
    app.add_route("/v1/models/{path:path}", post_model, methods=["POST"])
    return app


def _poll_loop(store, seconds, stop):
    """:meth:`ModelStore.poll` every ``seconds`` until ``stop`` is set; a failed look is
    logged and the next one made."""
    while not stop.wait(seconds):
        try:
            store.poll()
        except Exception as exc:   # a directory unreadable for a moment, ...
            _log.warning("looking for model versions under %s failed: %s", store.base_dir,
                         exc)


def serve(base_dir, *, host="127.0.0.1", port=8501, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES,
          jit_compile="auto", runtime="auto", parse_workers="auto", max_batch=_PREDICT_BATCH,
          inline_ms=DEFAULT_INLINE_MS, batch_wait_ms=0.0,
          keep_alive_seconds=DEFAULT_KEEP_ALIVE_SECONDS, log_level="warning",
          poll_seconds=DEFAULT_POLL_SECONDS, allow_origins=()):
    """Run the REST server until interrupted (uvicorn).

    Args:
        base_dir: directory of ``NAME/VERSION/`` SavedModels.
        host: address to bind; the default ``127.0.0.1`` accepts local clients only.
        port: TCP port (TensorFlow Serving's REST default, 8501).
        max_request_bytes: request size limit (413 above it; see :func:`create_app`).
        jit_compile, runtime: passed to :func:`zoo.serving.load`.
        parse_workers: JSON parsing worker processes (see :func:`create_app`).
        max_batch: the largest batch concurrent requests are combined into (see
            :func:`create_app`).
        inline_ms: requests predicted to take less are answered on the event loop (see
            :func:`create_app`).
        batch_wait_ms: how long a request that finds its model idle waits for others (see
            :func:`create_app`).
        keep_alive_seconds: how long an idle keep-alive connection stays open (uvicorn's
            ``timeout_keep_alive``; see :data:`DEFAULT_KEEP_ALIVE_SECONDS`).
        log_level: uvicorn's log level.
        poll_seconds: how often the served directory is looked at for new and removed
            versions (see :func:`create_app`); 0: requests look.
        allow_origins: web pages allowed to call the server from a browser (CORS; see
            :func:`create_app`).

    Raises:
        FileNotFoundError: ``base_dir`` does not exist.
        ValueError: ``base_dir`` is a model or version directory or a file (see
            :func:`check_base_dir`), or another bad argument.
        OSError: ``host`` and ``port`` cannot be bound (an unknown host, a port in use).
    """
    import uvicorn
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535. Received: {port!r}")
    if (isinstance(keep_alive_seconds, bool)
            or not isinstance(keep_alive_seconds, (int, float))
            or not 0 < keep_alive_seconds < math.inf):
        raise ValueError(f"keep_alive_seconds must be a positive number of seconds. "
                         f"Received: {keep_alive_seconds!r}")
    if not isinstance(host, str) or not host.strip():   # "" would bind every interface
        raise ValueError(f"host (--host) must be the address to bind, such as 127.0.0.1 "
                         f"(this machine only) or 0.0.0.0 (every IPv4 interface). "
                         f"Received: host={host!r}")
    check_base_dir(base_dir)
    app = create_app(base_dir, max_request_bytes=max_request_bytes, jit_compile=jit_compile,
                     runtime=runtime, preload=False, parse_workers=parse_workers,
                     max_batch=max_batch, inline_ms=inline_ms, batch_wait_ms=batch_wait_ms,
                     poll_seconds=poll_seconds, allow_origins=allow_origins)
    # Bound before the models load and the address is announced: an address that cannot be
    # bound is an error at once. uvicorn listens on this socket.
    sock = _bind(host, port)
    try:
        store = app.state.store
        store.preload()
        served, failed, empty = [], [], []
        for name in store.model_names():
            if not store.versions(name):
                empty.append(name)
            elif store.loaded(name) is None:
                failed.append(name)
            else:
                served.append(name)
        print(f"zoo serve: {len(served)} model(s) under {os.path.abspath(base_dir)} "
              f"({', '.join(served) or 'none yet'}) at http://{_host_port(host, port)}"
              f"/v1/models/NAME", flush=True)
        # Beside the load errors logged above: which models answer no request.
        if failed:
            print(f"zoo serve: not loaded (GET /v1/models/NAME gives the error; tried again "
                  f"once their files change): {', '.join(failed)}", file=sys.stderr,
                  flush=True)
        if empty:
            print(f"zoo serve: no versions yet (NAME/VERSION/saved_model.pb, VERSION an "
                  f"integer): {', '.join(empty)}", file=sys.stderr, flush=True)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port,
                                               timeout_keep_alive=keep_alive_seconds,
                                               log_level=log_level, http=http_protocol(),
                                               ws="none"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
    finally:
        sock.close()


#: How long browsers may keep a CORS preflight's answer (seconds).
CORS_MAX_AGE_SECONDS = 600
#: What pages of the allowed origins may send: TensorFlow Serving's REST API's methods, and
#: the request headers beyond the ones browsers always allow.
CORS_METHODS = ("GET", "HEAD", "POST")
CORS_HEADERS = ("Content-Type", "Content-Encoding")


class _FoldedPrefix:
    """Routes ``/V1/Models...`` as ``/v1/models...``: TensorFlow Serving's REST paths match
    in any case, and its clients may spell them so. A pure ASGI middleware: one string
    comparison per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if not path.startswith(_PREFIX) and path[:len(_PREFIX)].lower() == _PREFIX:
                scope = dict(scope, path=_PREFIX + path[len(_PREFIX):])
        await self.app(scope, receive, send)


def _cors_middleware():
    """Starlette's ``CORSMiddleware``, refusing a preflight with ``{"error": ...}`` as every
    other client error (Starlette's own answer is text/plain)."""
    from starlette.middleware.cors import CORSMiddleware

    class JSONErrorCORSMiddleware(CORSMiddleware):
        def preflight_response(self, request_headers):
            response = super().preflight_response(request_headers)
            if response.status_code < 400:
                return response
            refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
            asked = {"origin": request_headers.get("origin"),
                     "method": request_headers.get("access-control-request-method"),
                     "headers": request_headers.get("access-control-request-headers")}
            received = "; ".join(f"{k} {asked.get(k)!r}" for k in refused.split(", "))
            allowed = ("*" if self.allow_all_origins
                       else ", ".join(sorted(self.allow_origins)))
            headers = {k: v for k, v in response.headers.items()
                       if k not in ("content-length", "content-type")}
            return JSONResponse(
                {"error": f"CORS preflight refused: {received} not allowed (allowed: origins "
                          f"{allowed}; methods {', '.join(CORS_METHODS)}; headers "
                          f"{', '.join(CORS_HEADERS)})"},
                status_code=response.status_code, headers=headers)
    return JSONErrorCORSMiddleware

_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def check_origins(origins) -> tuple:
    """``origins`` (``zoo serve --allow-origin``, :func:`create_app`'s ``allow_origins``) as
    a tuple: each ``"*"`` or an origin ``http(s)://host[:port]`` without a path (a browser's
    ``Origin`` header; a trailing ``/`` is dropped), else ValueError naming it."""
    if isinstance(origins, str):
        origins = (origins,)
    try:
        origins = tuple(origins)
    except TypeError:
        raise ValueError(f"allow_origins must be a list of origins. Received: "
                         f"{origins!r}") from None
    checked = []
    for origin in origins:
        text = origin.rstrip("/") if isinstance(origin, str) else origin
        match = isinstance(text, str) and _ORIGIN.fullmatch(text)
        if match and match.group(2) and not 1 <= int(match.group(2)[1:]) <= 65535:
            match = None   # no browser sends port 0 or 99999 (they were taken)
        if text != "*" and not match:
            raise ValueError(f"an allowed origin is '*' (any web page) or "
                             f"scheme://host[:port] with scheme http or https and no path, "
                             f"as browsers send it (e.g. https://example.com, "
                             f"http://localhost:3000). Received: {origin!r}")
        checked.append(text)
    return tuple(checked)


#: The answer to bytes that are not an HTTP/1.1 request (uvicorn's own is text/plain).
MALFORMED_REQUEST = ("malformed HTTP request: the request line, a header or the body's "
                     "framing is not valid HTTP/1.1 (requests are e.g. POST "
                     "/v1/models/NAME:predict with a JSON body); the connection is closed")


def _send_json_400(self, msg):
    """uvicorn's ``send_400_response`` (a request its parser refused: uvicorn logs ``msg``
    and closes the connection), answering ``{"error": ...}`` as every other client error."""
    _send_json_error(self, b"400 Bad Request", MALFORMED_REQUEST)


def _send_json_error(self, status: bytes, message: str, headers=()):
    """Answer ``{"error": message}`` with ``status`` (``b"400 Bad Request"``) from a uvicorn
    protocol, outside the app, and close the connection."""
    body = orjson.dumps({"error": message})
    head = [b"HTTP/1.1 " + status + b"\r\n"]
    for name, value in [*self.server_state.default_headers, *headers]:   # server, date
        head += [name, b": ", value, b"\r\n"]
    head += [b"content-type: application/json\r\n",
             b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
             b"connection: close\r\n\r\n"]
    self.transport.write(b"".join(head) + body)
    self.transport.close()


def _no_upgrade_warning(self):
    """A request asking to switch protocols is answered as plain HTTP, which is no fault:
    uvicorn's warning would tell the operator to install a WebSocket library."""


def _new_httptools_parser(protocol):
    """A request parser for ``protocol``, as uvicorn's ``HttpToolsProtocol`` makes it."""
    import httptools
    parser = httptools.HttpRequestParser(protocol)
    try:
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    except AttributeError:  # httptools < 0.6.3
        pass
    return parser


#: What :class:`_PlainHTTPUpgrades` calls of uvicorn's ``HttpToolsProtocol`` (0.55).
_UVICORN_INTERNALS = ("_should_upgrade", "_unset_keepalive_if_required",
                      "handle_websocket_upgrade", "on_headers_complete", "on_message_complete",
                      "send_400_response", "_unsupported_upgrade_warning")


class _PlainHTTPUpgrades:
    """For uvicorn's ``HttpToolsProtocol``: a request asking to switch protocols
    (``Upgrade: h2c`` from ``curl --http2``, ``Upgrade: websocket``) that the server does not
    switch is read as the plain HTTP request it also is, as h11 reads it. httptools stops at
    the end of such a request's headers, so uvicorn ran it without its body (a ``:predict``
    got "malformed JSON ... zero-length") and dropped what followed on the connection."""

    def _cut_by_upgrade(self) -> bool:
        return self.parser.should_upgrade() and not self._should_upgrade()

    def on_headers_complete(self):
        if not self._cut_by_upgrade():  # else run once read again in data_received
            super().on_headers_complete()

    def on_message_complete(self):
        if not self._cut_by_upgrade():
            super().on_message_complete()

    def data_received(self, data):
        import httptools
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # as uvicorn's
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade as exc:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                return
            if self.parser.get_method() == b"CONNECT":
                # httptools takes what follows a CONNECT's headers for a tunnel's bytes,
                # Upgrade header or not: read again, the request stopped the parser again,
                # until a RecursionError dropped the connection without an answer.
                _send_json_error(self, b"405 Method Not Allowed",
                                 "method CONNECT not allowed: zoo serve is no proxy "
                                 "(allowed: GET, HEAD, POST; requests are e.g. POST "
                                 "/v1/models/NAME:predict with a JSON body); the connection "
                                 "is closed", [(b"allow", b"GET, HEAD, POST")])
                return
            # The request again without its Upgrade header, then its body and whatever
            # followed it, through a new parser (httptools' stays stopped).
            head = [self.parser.get_method(), b" ", self.url, b" HTTP/",
                    self.parser.get_http_version().encode("ascii"), b"\r\n"]
            for name, value in self.headers:
                if name != b"upgrade":
                    head += [name, b": ", value, b"\r\n"]
            self.parser = _new_httptools_parser(self)
            self.data_received(b"".join(head) + b"\r\n" + data[exc.args[0]:])


def http_protocol(parser=None):
    """The uvicorn HTTP protocol class :func:`serve` runs: uvicorn's own (httptools' where it
    is installed, as uvicorn's ``http="auto"`` picks, else h11's, or ``parser``) answering
    a request it cannot parse with a JSON 400 (:data:`MALFORMED_REQUEST`), and a request
    asking to switch protocols (which the server never does) as plain HTTP, body included,
    without a warning."""
    if parser not in (None, "httptools", "h11"):
        raise ValueError(f"parser must be None, 'httptools' or 'h11'. Received: {parser!r}")
    bases = None
    if parser in (None, "httptools"):
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
            # The mixin leans on uvicorn's protocol internals: without them (another uvicorn
            # version), uvicorn's own reading of such requests.
            known = all(hasattr(HttpToolsProtocol, a) for a in _UVICORN_INTERNALS)
            bases = ((_PlainHTTPUpgrades,) if known else ()) + (HttpToolsProtocol,)
        except ImportError:
            if parser == "httptools":
                raise
    if bases is None:
        from uvicorn.protocols.http.h11_impl import H11Protocol
        bases = (H11Protocol,)
    return type(f"JSONError{bases[-1].__name__}", bases,
                {"send_400_response": _send_json_400,
                 "_unsupported_upgrade_warning": _no_upgrade_warning})


def _bind(host, port):
    """A TCP socket bound to ``host:port`` (as uvicorn binds it), or an ``OSError`` that
    names them."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {_host_port(host, port)}: "
                      f"{exc.strerror or exc}") from None
    return sock


def _host_port(host, port) -> str:
    """``host:port`` as URLs write it: an IPv6 address in brackets (``[::1]:8501``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
