"""Inference benchmarks: the exported ``Servable`` against ``model.predict``, the bare
SavedModel signature and PyTorch; ``zoo serve`` over HTTP against in-process predictions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.core import Row, Variant, log, measure, model_gflop, rows_from
from benchmarks.data import images as _images, images_per_run
from benchmarks.worker import Reference
from benchmarks.training import (KERAS_APPLICATIONS, bench_shape, TORCH_MODELS,
                                 torch_available, torch_variant)

TARGET_VS_PREDICT = 1.5
TARGET_SERVE = 0.85        # zoo serve throughput / in-process at batch 32: <= 15% overhead


def serving_available() -> str:
    """``""`` when ``zoo.export`` and ``zoo.serving`` import, else why not."""
    try:
        import zoo.export  # noqa: F401
        import zoo.server  # noqa: F401
        import zoo.serving  # noqa: F401
    except ImportError as exc:
        return f"zoo.export / zoo.serving not available ({exc})"
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return "aiohttp (the load generator) is not installed: pip install -e '.[bench]'"
    return ""


def _export(model, base_dir, name, precision="float32"):
    from zoo.export import export
    return export(model, base_dir=base_dir, name=name, overwrite=True, version=1,
                  precision=precision)


def _settle_runtime(servable, batch) -> str:
    """Predict ``batch`` until ``servable`` has chosen its runtime for that batch size and
    return it: ``runtime="auto"`` times its runtimes on the first batches of each size
    class, and the repetitions must see the steady state."""
    while servable.runtime_for(len(batch)) is None:
        servable.predict(batch)
    return servable.runtime_for(len(batch))


def inference_section(names, *, image_size, batch_sizes, images, repeats, warmup,
                      with_torch=True, bfloat16=False, torch_threads=None) -> list:
    """Inference images/s per model and batch size.

    Variants: ``zoo.serving.load(path).predict(x, batch_size=b)`` on the export (the
    subject; on CPUs the runtime ``runtime="auto"`` timed fastest for the batch size),
    ``keras.applications``' ``model.predict(x, batch_size=b)`` in a reference process
    with TensorFlow's own settings (:mod:`benchmarks.worker`; the target), the same
    export on the LiteRT and TensorFlow runtimes (those not chosen), the zoo Keras model's
    ``model.predict`` in this process (on the images, and where ``zoo.data`` turns tf.data's
    autotuning off, on a dataset of them without it), the exported ``serving_default``
    signature from ``tf.saved_model.load`` called on each batch, and a PyTorch eager ResNet-50
    (``eval()``, ``torch.inference_mode()``) in a process of its own without TensorFlow
    (``torch_threads``: its intra-op threads). ``bfloat16``: on CPUs where bfloat16 is fast
    (AMX-BF16, or AVX512_BF16 on AMD: :func:`zoo.common.cpu_prefers_bfloat16`), also a
    ``precision="bfloat16"`` export of the same model (opt-in; its largest probability
    difference to the float32 export on the batch is in the note). A repetition predicts
    ``images`` raw-pixel images (at least one batch).
    """
    import keras
    import tensorflow as tf

    import zoo
    from zoo import data as zdata
    from zoo.common import cpu_prefers_bfloat16
    from zoo.registry import model_info

    missing = serving_available()
    if missing:
        log(f"inference: skipped, {missing}")
        return [Row(section="inference", model=", ".join(names), variant="-", metric="",
                    unit="", values=[], note=f"skipped: {missing}")]
    from zoo import serving

    rows = []
    for name in names:
        info = model_info(name)
        shape = bench_shape(name, image_size)
        size, _, channels = shape
        keras.backend.clear_session()
        model = zoo.get_model(name, input_shape=shape)
        gflop = model_gflop(model)
        with tempfile.TemporaryDirectory() as base:
            path = _export(model, base, name)
            servable = serving.load(path)
            on_tf = serving.load(path, runtime="tensorflow")
            on_lite = serving.load(path, runtime="litert")
            on_bf16 = None
            if bfloat16 and cpu_prefers_bfloat16():
                on_bf16 = serving.load(_export(model, base, f"{name}-bf16", "bfloat16"))
            log(f"inference: {name} Servable runtime {servable.runtime}"
                + (f" ({servable.runtime_note})" if servable.runtime_note else ""))
            signature = tf.saved_model.load(path).signatures["serving_default"]
            with_torch_here = with_torch and name in TORCH_MODELS and torch_available()
            for b in batch_sizes:
                n = images_per_run(b, images)
                x = _images(shape, n)
                log(f"inference: {name} {shape} batch {b}, {n} images per repetition")
                batches = [x[i:i + b] for i in range(0, n, b)]

                def run_servable():
                    servable.predict(x, batch_size=b)
                    return n

                def run_servable_tf():
                    on_tf.predict(x, batch_size=b)
                    return n

                def run_servable_lite():
                    on_lite.predict(x, batch_size=b)
                    return n

                def run_predict():
                    model.predict(x, batch_size=b, verbose=0)
                    return n

                # Keras' predict on the same images as a dataset without tf.data's
                # autotuning, where zoo.data turns it off (item 29).
                no_autotune = None if zdata.autotune_by_default() else zdata.without_autotune(
                    tf.data.Dataset.from_tensor_slices(x).batch(b))

                def run_predict_no_autotune():
                    model.predict(no_autotune, verbose=0)
                    return n

                def run_bf16():
                    on_bf16.predict(x, batch_size=b)
                    return n

                def run_signature():
                    for xb in batches:   # each output to the host, as predict's: on a GPU
                        for out in signature(images=tf.constant(xb)).values():  # a call
                            out.numpy()   # returns once its kernels are queued
                    return n

                runtime = _settle_runtime(servable, x[:b])
                note = ""
                size_class = serving._size_class(b)
                if size_class in servable.runtime_timing:
                    ms = ", ".join(f"{min(v) * 1e3:.2f} on {serving._ENGINE_NAMES[k]}"
                                   for k, v in servable.runtime_timing[size_class].items())
                    note = (f"runtime='auto' chose {runtime} for batches of "
                            f"{serving.size_class_text(size_class)}: best ms/image {ms}")
                log(f"inference: {name} batch {b}: the Servable runs {runtime}"
                    + (f" ({note})" if note else ""))
                subject = f"zoo Servable.predict ({runtime})"
                variants = [Variant(subject, run_servable, note=note)]
                reference = torch_ref = None
                if name in KERAS_APPLICATIONS:
                    cls_name = KERAS_APPLICATIONS[name]
                    try:
                        reference = Reference(kind="predict", model=cls_name,
                                              shape=list(shape), batch=b, images=n,
                                              classes=info.default_num_classes)
                        variants.append(Variant(
                            f"keras.applications.{cls_name}.predict, Keras/TensorFlow "
                            "defaults", reference.run, target=TARGET_VS_PREDICT,
                            note=f"own process without zoo (oneDNN "
                                 f"{'on' if reference.info['onednn'] else 'off'})"))
                    except RuntimeError as exc:
                        log(f"  reference process failed: {exc}")
                if runtime != "litert":
                    variants.append(Variant(
                        "zoo Servable.predict (litert)", run_servable_lite,
                        note="the same export on the LiteRT runtime"))
                if runtime != "tensorflow":
                    variants.append(Variant(
                        "zoo Servable.predict (tensorflow)", run_servable_tf,
                        note="the same export on the TensorFlow runtime"
                             + (", XLA" if on_tf.jit_compiled else "")))
                variants += [
                    Variant("model.predict, this process", run_predict,
                            target=None if reference else TARGET_VS_PREDICT,
                            note="the zoo model's Keras predict, Keras' defaults, with the "
                                 "zoo's process settings"),
                    *([] if no_autotune is None else [Variant(
                        "model.predict, this process, dataset without autotuning",
                        run_predict_no_autotune,
                        note="the zoo model's Keras predict on zoo.data.without_autotune("
                             "Dataset.from_tensor_slices(x).batch(b)), as zoo.data's "
                             "pipelines come on a CPU (item 29)")]),
                    Variant("tf.saved_model.load signature", run_signature,
                            note="the exported serving_default, called per batch")]
                if with_torch_here:
                    torch_ref, torch_row = torch_variant(
                        name, kind="predict", shape=shape, batch=b, images=n,
                        classes=info.default_num_classes, threads=torch_threads)
                    if torch_row is not None:
                        variants.append(torch_row)
                if on_bf16 is not None:
                    diff = np.abs(on_bf16.predict(x[:b])["probabilities"]
                                  - on_tf.predict(x[:b])["probabilities"]).max()
                    variants.append(Variant(
                        "zoo Servable.predict, bfloat16 export (opt-in)", run_bf16,
                        note=f"zoo export --precision bfloat16 ({on_bf16.runtime}; oneDNN's "
                             f"bfloat16 kernels); largest probability difference to the float32 "
                             f"export on this batch {diff:.1e}", precision="bfloat16"))
                try:
                    measured = measure(variants, repeats=repeats, warmup=warmup)
                finally:
                    for ref in (reference, torch_ref):
                        if ref is not None:
                            ref.close()
                rows += rows_from(measured, variants, section="inference", model=name,
                                  input=f"{size}x{size}x{channels}", batch=b,
                                  metric="inference images/s", unit="img/s", subject=subject,
                                  gflop_per_item=gflop)
            del servable, on_tf, on_lite, on_bf16, signature
        del model
        keras.backend.clear_session()
    return rows


# ---------------------------------------------------------------------------------------
# zoo serve.

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def zoo_server(base_dir, *, timeout=300.0, extra_args=()):
    """Run ``zoo serve base_dir`` on a free 127.0.0.1 port; yields its base URL."""
    import urllib.error
    import urllib.request
    port = _free_port()
    cmd = [sys.executable, "-m", "zoo", "serve", os.fspath(base_dir), "--host", "127.0.0.1",
           "--port", str(port), *extra_args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    log_file = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"

    def answers(name):
        with urllib.request.urlopen(f"{url}/v1/models/{name}", timeout=5) as r:
            return r.status == 200

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log_file.seek(0)
                tail = log_file.read().decode(errors="replace")[-800:]
                raise RuntimeError(f"zoo serve exited with {proc.returncode}: {tail}")
            try:
                names = [d for d in os.listdir(base_dir) if not d.startswith(".")]
                if all(answers(n) for n in names):
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"zoo serve did not answer within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


def _b64_png_body(images) -> bytes:
    """TensorFlow Serving's binary form: ``{"instances": [{"b64": <PNG>}, ...]}``."""
    import base64

    import tensorflow as tf
    pngs = [base64.b64encode(tf.io.encode_png(im.astype("uint8")).numpy()).decode()
            for im in images]
    return json.dumps({"instances": [{"b64": p} for p in pngs]}).encode()


#: The load generator's request headers.
_JSON = {"content-type": "application/json"}


def _client_session(clients):
    """An aiohttp session keeping up to ``clients`` connections. aiohttp, not httpx, is the
    load generator: on 2 cores shared with the server, httpx's client took more CPU than the
    server (LeNet-5, one image: 0.72 cores against the server's 0.46 from one client; from 32,
    1.07 cores while the server, at 0.23, waited), so the serve rows measured the client."""
    import aiohttp
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                 timeout=aiohttp.ClientTimeout(total=600))


async def _burst(url, body, requests, clients, expect):
    """Send ``requests`` POSTs from ``clients`` concurrent clients over connections opened
    beforehand; returns the latencies and the wall time of the requests, in seconds. Every
    answer is read and (``expect``: its number of predictions) checked, as a client would,
    with orjson (the server's own dependency): the ``json`` module took 2.0 ms alone and ~5
    ms beside the server per ResNet-50 batch-32 answer (32,000 probabilities, 340 KB),
    orjson 0.5 ms alone."""
    import orjson
    latencies = []
    todo = iter(range(requests))
    async with _client_session(clients) as session:
        # Open the connections first: a client keeps its connection between requests.
        status = url.rsplit(":", 1)[0]

        async def connect():
            async with session.get(status) as r:
                await r.read()
        await asyncio.gather(*(connect() for _ in range(clients)))

        async def worker():
            for _ in todo:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=_JSON) as r:
                    data = await r.read()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {data[:200].decode(errors='replace')}")
                if expect is not None:
                    n = len(orjson.loads(data)["predictions"])
                    if n != expect:
                        raise RuntimeError(f"{n} predictions for {expect} images")
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - start
    return latencies, seconds


async def _round_trips(url, requests):
    """Latencies in seconds of ``requests`` GETs of ``url``, one after the other on one
    connection opened beforehand: HTTP's own cost, without model work."""
    latencies = []
    async with _client_session(1) as session:
        async with session.get(url) as r:
            await r.read()
            r.raise_for_status()
        for _ in range(requests):
            t0 = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
    return latencies


def server_runtimes(url, name) -> dict:
    """The ``runtime`` part of ``zoo serve``'s metadata answer for model ``name``."""
    import urllib.request
    with urllib.request.urlopen(f"{url}/v1/models/{name}/metadata", timeout=30) as r:
        return json.loads(r.read())["runtime"]


def _settle_server(url, name, endpoint, body, batch, most) -> None:
    """Send ``body`` (``batch`` images) until the server has chosen its runtime for that
    batch size, as its metadata answer tells, a round of the trial at a time (at most
    ``most`` requests, ``Servable.trial_calls``): a trial goes on longer for quick calls."""
    from zoo import serving
    size_class = serving.size_class_text(serving._size_class(batch))
    per_round = max(1, most // serving._TRIAL_MAX_ROUNDS)
    for _ in range(0, most, per_round):
        if size_class in server_runtimes(url, name)["choices"]:
            return
        asyncio.run(_burst(endpoint, body, per_round, 1, batch))


#: Bursts at most before a serve repetition of many clients (see :func:`_settle_batches`).
SETTLE_BURSTS = 10


def _settle_batches(url, name, endpoint, body, clients, batch, requests) -> dict:
    """Send bursts of ``requests`` requests from ``clients`` clients until, after one that
    added no runtime choice in the server, every batch size it has timed is decided (at
    most :data:`SETTLE_BURSTS`); returns its choices.

    Concurrent requests are run together in batches of several sizes, and each new size
    class is first timed on every runtime (``runtime="auto"``; TensorFlow too from 16
    images): the first repetitions of 32 one-image clients ran at 54-74 img/s, the later
    ones at 84-102 (ResNet-50, benchmarks/README.md, item 26)."""
    before = server_runtimes(url, name)["choices"]
    for _ in range(SETTLE_BURSTS):
        asyncio.run(_burst(endpoint, body, requests, clients, batch))
        report = server_runtimes(url, name)
        if report["choices"] == before and set(report["best_ms_per_image"]) <= set(before):
            break
        before = report["choices"]
    return before


def _runtimes_note(url, name, servable, batch) -> str:
    """``; runtimes: the server's ..., in process ...`` for a serve row's note."""
    try:
        choices = server_runtimes(url, name)["choices"]
    except (OSError, KeyError, ValueError) as exc:
        return f"; the server's runtimes unknown ({exc})"
    mine = servable.runtime_for(batch)
    server = ", ".join(f"{k}: {v}" for k, v in choices.items()) or "none decided"
    return f"; runtime by batch size in the server {server}; in process {mine}"


def http_ceiling(in_process_ms: float, round_trip_ms: float) -> float:
    """The most a request served one at a time can reach, as a fraction of in-process
    throughput, when HTTP alone takes ``round_trip_ms`` and the work ``in_process_ms``."""
    return in_process_ms / (in_process_ms + round_trip_ms)


def timed_latencies(latencies, per_repetition, repetitions) -> list:
    """The latencies of a serve variant's ``repetitions`` timed repetitions of
    ``per_repetition`` requests each, out of all its runs' (the warm-up's first; a run whose
    burst failed added none, and none ran after it)."""
    return latencies[max(0, len(latencies) - per_repetition * repetitions):]


#: A serve repetition lasts at least this long (more requests for quick ones, up to
#: SERVE_MAX_REQUESTS): two LeNet-5 requests, ~4 ms, measured the connection's start more
#: than the server.
SERVE_REPETITION_SECONDS = 0.25
SERVE_MAX_REQUESTS = 512


def requests_for(rate: float, floor: int, seconds: float = SERVE_REPETITION_SECONDS,
                 cap: int = SERVE_MAX_REQUESTS) -> int:
    """Calls per repetition: enough for ``seconds`` at ``rate`` calls/s, at least ``floor``,
    at most ``cap`` (unless ``floor`` is more)."""
    if not rate > 0 or not math.isfinite(rate):
        return floor
    return max(floor, min(cap, math.ceil(seconds * rate)))


def serve_section(configs, *, image_sizes, repeats, warmup, requests_per_client,
                  min_requests, seconds=SERVE_REPETITION_SECONDS, batch_waits=()) -> list:
    """``zoo serve`` images/s and latency vs ``Servable.predict`` in the same process.

    Both models are exported to one directory that one ``zoo serve`` process serves on
    127.0.0.1. A client request is TensorFlow Serving's row format
    ``{"instances": [...]}`` of raw pixels (integers 0..255) for ``batch`` images, encoded
    once, and for batches of more than one image also the binary form
    ``{"instances": [{"b64": <PNG>}, ...]}`` (with the first client count); a repetition
    sends at least ``max(min_requests, clients * requests_per_client)`` requests from
    ``clients`` concurrent aiohttp clients, and as many more as a burst says fill
    ``seconds`` (:func:`requests_for`; for many clients, a burst after
    :func:`_settle_batches`, in the server's steady state). The reference is
    ``Servable.predict`` on the same batch in this process, called one after the other,
    as many times as fill that time too. The one-client
    rows also say what HTTP alone costs (the median of GETs of the model's status) and the
    ratio that leaves at most (:func:`http_ceiling`). With ``batch_waits``, one more server
    per wait (``zoo serve --batch-wait-ms W``) answers the JSON requests of every client
    count above 1 in the same interleaved repetitions.

    Args:
        configs: ``[(model name, batch, [clients, ...]), ...]``.
        image_sizes: model name -> input size (square).
        seconds: the least time a repetition of quick requests (or in-process calls) fills.
        batch_waits: milliseconds a request that finds its model idle waits for others
            (``zoo serve --batch-wait-ms``), one server each; the main server waits none.
    """
    import contextlib

    import keras

    import zoo
    from zoo.registry import model_info

    missing = serving_available()
    if missing:
        log(f"serve: skipped, {missing}")
        return [Row(section="serve", model=", ".join(dict.fromkeys(c[0] for c in configs)),
                    variant="-", metric="", unit="", values=[], note=f"skipped: {missing}")]
    from zoo import serving

    rows = []
    with tempfile.TemporaryDirectory() as base:
        shapes, paths = {}, {}
        for name in dict.fromkeys(c[0] for c in configs):
            info = model_info(name)
            size = max(image_sizes.get(name) or info.default_input_shape[0],
                       info.min_input_size)
            shapes[name] = (size, size, info.default_input_shape[-1] or 3)
            keras.backend.clear_session()
            paths[name] = _export(zoo.get_model(name, input_shape=shapes[name]), base, name)
        log(f"serve: starting zoo serve for {', '.join(paths)}"
            + (f", and one per batch wait {batch_waits} ms" if batch_waits else ""))
        with contextlib.ExitStack() as servers:
            url = servers.enter_context(zoo_server(base))
            waiting = {w: servers.enter_context(
                zoo_server(base, extra_args=["--batch-wait-ms", str(w)])) for w in batch_waits}
            for name, batch, clients_list in configs:
                servable = serving.load(paths[name])
                x = _images(shapes[name], batch)
                body = json.dumps({"instances": x.astype("uint8").tolist()}).encode()
                b64_body = _b64_png_body(x)
                endpoint = f"{url}/v1/models/{name}:predict"
                log(f"serve: {name} batch {batch}, clients {clients_list}, "
                    f"request {len(body) / 1e6:.2f} MB (b64 PNG {len(b64_body) / 1e6:.2f} MB)")
                latencies = {c: [] for c in clients_list}
                floors = {c: max(min_requests, c * requests_per_client) for c in clients_list}
                # The server's Servable settles its choice on requests of the batch.
                _settle_runtime(servable, x)
                if serving._size_class(batch) in servable.runtime_timing:
                    for u in (url, *waiting.values()):
                        _settle_server(u, name, f"{u}/v1/models/{name}:predict", body, batch,
                                       servable.trial_calls(batch))
                    log(f"serve: {name} batch {batch} in process on "
                        f"{servable.runtime_for(batch)}")
                def count_for(data, c, to=endpoint):
                    """Requests per repetition, from a first burst (a warm-up too)."""
                    _, took = asyncio.run(_burst(to, data, floors[c], c, batch))
                    return requests_for(floors[c] / took, floors[c], seconds)

                def settled_count(u, to, c, first):
                    """Bursts of ``c`` clients to server ``u`` (sized from ``first``
                    requests) until its choices settle (:func:`_settle_batches`), then
                    requests per repetition sized again in that steady state: the first
                    burst ran during the trials. Returns ``(choices, count)``."""
                    choices = _settle_batches(u, name, to, body, c, batch, max(first, 4 * c))
                    return choices, count_for(body, c, to)

                counts = {c: count_for(body, c) for c in clients_list}
                for c in (c for c in clients_list if c > 1):
                    choices, counts[c] = settled_count(url, endpoint, c, counts[c])
                    log(f"serve: {name} batch {batch}, {c} clients: the server's runtimes "
                        f"by batch size {choices}")
                t0 = time.perf_counter()
                servable.predict(x)
                ref_count = requests_for(1 / (time.perf_counter() - t0), min(floors.values()),
                                         seconds)

                def in_process(count):
                    def run():
                        for _ in range(count):
                            servable.predict(x)
                        return count * batch
                    return run

                def over_http(c, key, data, to=endpoint):
                    def run():
                        lat, seconds = asyncio.run(_burst(to, data, counts[key], c, batch))
                        latencies[key].extend(lat)
                        return counts[key] * batch, seconds
                    return run

                ref = "in-process Servable.predict"
                variants = [Variant(ref, in_process(ref_count))]
                # (variant, clients, latency key): JSON pixel lists with every client count;
                # for batches, also base64 PNG instances with the first client count.
                http = [(Variant(f"zoo serve, {c} clients", over_http(c, c, body),
                                 target=TARGET_SERVE if batch >= 32 and c == 1 else None), c, c)
                        for c in clients_list]
                if batch > 1:
                    c = clients_list[0]
                    latencies["b64"] = []
                    counts["b64"] = count_for(b64_body, c)
                    http.append((Variant(f"zoo serve, {c} clients, b64 PNG",
                                         over_http(c, "b64", b64_body),
                                         target=TARGET_SERVE if batch >= 32 and c == 1 else None),
                                 c, "b64"))
                for w, u in waiting.items():
                    to = f"{u}/v1/models/{name}:predict"
                    for c in clients_list:
                        if c > 1:
                            key = (c, w)
                            latencies[key] = []
                            _, counts[key] = settled_count(u, to, c, count_for(body, c, to))
                            http.append((Variant(f"zoo serve, {c} clients, batch wait {w:g} ms",
                                                 over_http(c, key, body, to)), c, key))
                variants += [v for v, _, _ in http]
                measured = measure(variants, repeats=repeats, warmup=warmup)
                for v, _, key in http:
                    latencies[key] = timed_latencies(latencies[key], counts[key],
                                                     len(measured[v.name]["rates"]))
                refs = measured[ref]["rates"]
                trips = asyncio.run(_round_trips(f"{url}/v1/models/{name}", 20))
                round_trip_ms = float(np.median(trips)) * 1000
                work_ms = batch / float(np.median(refs)) * 1000 if refs else float("nan")
                ceiling = (f"; HTTP alone (GET model status) {round_trip_ms:.2f} ms per "
                           f"request, {work_ms:.2f} ms of work in process: at most "
                           f"{http_ceiling(work_ms, round_trip_ms):.2f}x one at a time"
                           + _runtimes_note(url, name, servable, batch))
                common = dict(section="serve", model=name,
                              input="x".join(str(s) for s in shapes[name]), batch=batch,
                              metric="images/s", unit="img/s")
                rows.append(Row(variant=ref, values=refs, clients=1, reference=True,
                                first_seconds=measured[ref]["first"],
                                note=measured[ref]["error"], **common))
                for v, c, key in http:
                    m = measured[v.name]
                    rates = m["rates"]
                    k = min(len(rates), len(refs))
                    lat = np.asarray(latencies[key]) * 1000
                    rps = np.median(rates) / batch if rates else float("nan")
                    note = (f"{counts[key]} requests per repetition, median {rps:.3g} "
                            f"requests/s")
                    if c == 1:
                        note += ceiling
                    if m["error"]:
                        note += f"; failed: {m['error']}"
                    rows.append(Row(variant=v.name, values=rates, clients=c,
                                    ratio_of=f"this / {ref}",
                                    ratios=[rates[i] / refs[i] for i in range(k)],
                                    target=v.target,
                                    p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
                                    p99_ms=float(np.percentile(lat, 99)) if lat.size else None,
                                    first_seconds=m["first"], note=note, **common))
                del servable
    return rows
