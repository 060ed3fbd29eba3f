"""zoo serve: a real server process answered by a real HTTP client (httpx)."""

import base64
import concurrent.futures
import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import zoo  # noqa: E402
from zoo import serving  # noqa: E402
from zoo.data import DatasetInfo  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = DatasetInfo(name="digits", task="classification", num_classes=10,
                   labels=[str(i) for i in range(10)], input_shape=(32, 32, 1),
                   mean=[80.0], std=[100.0], raw_shape=(8, 8, 1))
LIMIT_MB = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``zoo serve`` on a free localhost port over a directory holding lenet5 version 1."""
    base = tmp_path_factory.mktemp("served")
    tf.keras.utils.set_random_seed(11)
    zoo.export(zoo.lenet5(variant="modern"), base, info=INFO)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "serve", str(base), "--port", str(port), "--no-xla",
         "--max-request-mb", str(LIMIT_MB)], cwd=REPO, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=60)
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError("zoo serve exited: "
                                   + (base / "server.log").read_text()[-2000:])
            try:
                if client.get("/v1/models/lenet5").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("zoo serve did not start in 240 s")
            time.sleep(0.5)
        yield {"client": client, "base": base, "url": url, "proc": proc}
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def local(server):
    return serving.load(server["base"] / "lenet5" / "1", jit_compile=False)


def images(n, seed=0, size=8):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 1)).astype("uint8")


def png_b64(image):
    buf = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_shuts_the_server_down_silently_with_code_0(tmp_path, sig):
    """``zoo serve`` is a server: SIGTERM (a container stopping) and Ctrl-C shut it down
    (uvicorn's shutdown) with exit code 0 and no ``zoo: terminated`` / ``zoo: interrupted``
    line, where other commands end with 143 / 130 (README, Quick start)."""
    import signal
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "serve", str(tmp_path), "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal (a process started in the background inherits SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while True:   # up once it answers (uvicorn's handlers are in place)
            assert proc.poll() is None, proc.communicate()
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models/none", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "zoo serve did not start in 240 s"
                time.sleep(0.3)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == ""
    assert out.startswith("zoo serve: 0 model(s) under ") and len(out.splitlines()) == 1, out


def test_binds_to_localhost_only(server):
    proc = subprocess.run(["ss", "-ltn"], capture_output=True, text=True) \
        if os.path.exists("/usr/bin/ss") or os.path.exists("/bin/ss") else None
    port = server["url"].rsplit(":", 1)[1]
    if proc is not None and proc.returncode == 0:
        lines = [line for line in proc.stdout.splitlines() if f":{port} " in line]
        assert lines and all("127.0.0.1:" in line for line in lines), lines


def test_status_and_metadata(server):
    c = server["client"]
    r = c.get("/v1/models/lenet5")
    assert r.status_code == 200
    assert r.json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                          "error_message": ""}}]}
    assert c.get("/v1/models/lenet5/versions/1").json()["model_version_status"][0][
        "version"] == "1"
    meta = c.get("/v1/models/lenet5/metadata").json()
    assert meta["model_spec"] == {"name": "lenet5", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]
    assert list(sig) == ["serving_default"]
    sd = sig["serving_default"]
    assert sd["method_name"] == "tensorflow/serving/predict"
    assert sd["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sd["inputs"]["images"]["tensor_shape"]["dim"]] == \
        ["-1", "-1", "-1", "1"]
    assert sd["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sd["outputs"]["probabilities"]["tensor_shape"]["dim"]] == \
        ["-1", "10"]
    assert sd["outputs"]["classes"]["dtype"] == "DT_INT64"
    assert c.get("/v1/models/lenet5/versions/1/metadata").status_code == 200
    # Beside TensorFlow Serving's fields: what runs the model, as Servable.runtime_report.
    from zoo import serving
    want = serving.load(server["base"] / "lenet5" / "1").runtime_report()
    assert set(meta["runtime"]) == {"runtime", "runtimes", "choices", "best_ms_per_image"}
    assert [meta["runtime"][k] for k in ("runtime", "runtimes")] == [want["runtime"],
                                                                    want["runtimes"]]
    # Batches of 24 images (size class 16-31): timed on each runtime, then decided.
    images = np.random.RandomState(3).randint(0, 256, (24, 32, 32, 1)).tolist()
    # (at least _TRIAL_ROUNDS rounds; more, up to _TRIAL_MAX_ROUNDS, for LeNet-5's quick calls)
    for request in range(len(want["runtimes"]) * 2 * serving._TRIAL_MAX_ROUNDS + 1):
        runtime = c.get("/v1/models/lenet5/metadata").json()["runtime"]
        if "16-31" in runtime["choices"]:
            break
        assert c.post("/v1/models/lenet5:predict", json={"instances": images}).status_code == 200
    assert request >= len(want["runtimes"]) * 2 * serving._TRIAL_ROUNDS
    assert runtime["choices"]["16-31"] in want["runtimes"]
    assert set(runtime["best_ms_per_image"]["16-31"]) == set(want["runtimes"])
    assert all(ms > 0 for ms in runtime["best_ms_per_image"]["16-31"].values())


def test_row_and_columnar_requests(server, local):
    c = server["client"]
    x = images(3, seed=1)
    want = local.predict(x)
    r = c.post("/v1/models/lenet5:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert len(rows) == 3 and set(rows[0]) == {"probabilities", "classes"}
    np.testing.assert_allclose([p["probabilities"] for p in rows], want["probabilities"],
                               atol=1e-6)
    assert [p["classes"] for p in rows] == want["classes"].tolist()

    r = c.post("/v1/models/lenet5/versions/1:predict",
               json={"signature_name": "serving_default", "inputs": {"images": x.tolist()}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    np.testing.assert_allclose(out["probabilities"], want["probabilities"], atol=1e-6)
    assert out["classes"] == want["classes"].tolist()

    r = c.post("/v1/models/lenet5:predict", json={"inputs": x.tolist()})
    np.testing.assert_allclose(r.json()["outputs"]["probabilities"], want["probabilities"],
                               atol=1e-6)
    r = c.post("/v1/models/lenet5:predict",
               json={"instances": [{"images": v} for v in x.tolist()]})
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                               want["probabilities"], atol=1e-6)


def test_paths_match_in_any_case_as_tensorflow_serving_matches_them(server, local):
    """TensorFlow Serving's REST paths match their fixed words in any case (``(?i)`` in its
    path patterns); model names keep their case, and a verb must be lower case there too."""
    c = server["client"]
    x = images(2, seed=4)
    want = local.predict(x)
    for path in ("/V1/Models/lenet5:predict", "/v1/MODELS/lenet5/Versions/1:predict"):
        r = c.post(path, json={"instances": x.tolist()})
        assert r.status_code == 200, (path, r.text)
        assert [p["classes"] for p in r.json()["predictions"]] == want["classes"].tolist()
    status = c.get("/V1/MODELS/lenet5/VERSIONS/1")
    assert status.status_code == 200 and status.json()["model_version_status"][0][
        "version"] == "1"
    meta = c.get("/v1/Models/lenet5/Metadata")
    assert meta.status_code == 200 and meta.json()["model_spec"]["name"] == "lenet5"
    assert c.get("/v1/models/LENET5").status_code == 404          # names keep their case
    r = c.post("/v1/models/lenet5:PREDICT", json={"instances": x.tolist()})
    assert r.status_code == 404 and ":predict" in r.json()["error"]
    label = c.get("/V1/models/lenet5/Labels/stable")
    assert label.status_code == 400 and "'stable'" in label.json()["error"]


def test_b64_png_in_both_forms(server, local):
    c = server["client"]
    x = np.concatenate([images(1, seed=2, size=8), ], 0)
    big = images(1, seed=3, size=20)
    want_small = local.predict(x)["probabilities"]
    want_big = local.predict(big)["probabilities"]
    r = c.post("/v1/models/lenet5:predict",
               json={"instances": [{"b64": png_b64(x[0])}, {"b64": png_b64(big[0])}]})
    assert r.status_code == 200, r.text
    got = [p["probabilities"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(got, np.concatenate([want_small, want_big]), atol=1e-6)
    r = c.post("/v1/models/lenet5:predict", json={"inputs": {"images": [{"b64": png_b64(x[0])}]}})
    np.testing.assert_allclose(r.json()["outputs"]["probabilities"], want_small, atol=1e-6)


def _grey_png(side) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


ERRORS = [
    ("post", "/v1/models/lenet5:predict", b"{not json", 400, "malformed JSON"),
    ("post", "/v1/models/lenet5:predict", b"[1, 2]", 400, "JSON object"),
    ("post", "/v1/models/lenet5:predict", {"instances": [], "inputs": []}, 400, "both"),
    ("post", "/v1/models/lenet5:predict", {"signature_name": "serving_default"}, 400,
     "neither"),
    ("post", "/v1/models/lenet5:predict", {"instances": []}, 400, "non-empty"),
    ("post", "/v1/models/lenet5:predict", {"instances": [[[0.0]] * 8] * 8}, 400,
     "each instance must be one image"),
    ("post", "/v1/models/lenet5:predict", {"instances": np.zeros((1, 8, 8, 3)).tolist()}, 400,
     "1 channel"),
    ("post", "/v1/models/lenet5:predict", {"inputs": np.zeros((8, 8, 1)).tolist()}, 400,
     "must be a batch"),
    # an image's own check, named by the request's row or input (was "images[1]: ...")
    ("post", "/v1/models/lenet5:predict",
     {"instances": [np.zeros((8, 8, 1)).tolist(), np.zeros((8, 8, 2)).tolist()]}, 400,
     "instances[1]: lenet5 takes images with 1 channel(s); received 2 (array shape (8, 8, 2))"),
    ("post", "/v1/models/lenet5:predict",
     {"inputs": [{"b64": base64.b64encode(_grey_png(8)).decode()},
                 np.zeros((8, 8, 2)).tolist()]}, 400,
     "inputs[1]: lenet5 takes images with 1 channel(s); received 2 (array shape (8, 8, 2))"),
    # b64 images that decode to more pixels than --max-request-mb (1 MB here) in all
    ("post", "/v1/models/lenet5:predict",
     {"instances": [{"b64": base64.b64encode(_grey_png(800)).decode()}] * 2}, 413,
     "instances[1]: the request's images decode to more than the limit of 1048576 bytes of "
     "pixels (800x800x1 here, 1280000 bytes so far)"),
    ("post", "/v1/models/lenet5:predict", {"instances": [[[["a"]]]]}, 400,
     "pixel values must be numbers"),
    ("post", "/v1/models/lenet5:predict", {"instances": [[[[True]]]]}, 400,
     "pixel values must be numbers"),
    ("post", "/v1/models/lenet5:predict", {"instances": ["text"]}, 400, "expected an image"),
    # NaN and infinities, which TensorFlow Serving's parser reads, in a small and a 1 KB+ body
    ("post", "/v1/models/lenet5:predict", b'{"instances": [[[[0], [NaN]]]]}', 400,
     "pixel values must be finite numbers (no NaN or infinity); the request body holds"),
    ("post", "/v1/models/lenet5:predict",
     b'{"instances": [[' + b", ".join([b"[1.5]"] * 400) + b", [-Infinity]]]}", 400,
     "pixel values must be finite numbers (no NaN or infinity); the request body holds"),
    ("post", "/v1/models/lenet5:predict", {"instances": [[[[0]] * 8] * 8, [[[-1e308]] * 8] * 8]},
     400, "pixel values must be finite float32 numbers, from -3.403e+38 to 3.403e+38; image 1 "
          "holds -1e+308"),
    ("post", "/v1/models/lenet5:predict", {"instances": [[[[0]], [[0], [1]]]]}, 400,
     "instances[0] must form a regular numeric array (every image the same height, width and "
     "channels, every value a number): instances[0][1] is a list of 2 where instances[0][0] "
     "is a list of 1."),
    ("post", "/v1/models/lenet5:predict", {"inputs": [[[[0]]], [[[0]], [[1]]]]}, 400,
     "inputs must form a regular numeric array (every image the same height, width and "
     "channels, every value a number): inputs[1] is a list of 2 where inputs[0] is a list of "
     "1."),
    ("post", "/v1/models/lenet5:predict", {"instances": [{"b64": "***"}]}, 400,
     "invalid base64"),
    ("post", "/v1/models/lenet5:predict",
     {"instances": [{"b64": base64.b64encode(b"plain text").decode()}]}, 400,
     "instances[0]: could not decode the image bytes as an image (PNG, JPEG, ...): "
     "unrecognised image format"),
    ("post", "/v1/models/lenet5:predict", {"instances": [{"pixels": 1}]}, 400,
     "named inputs must be exactly"),
    # instances naming the input mixed with plain ones (were served)
    ("post", "/v1/models/lenet5:predict",
     {"instances": [{"images": [[[0]] * 8] * 8}, [[[0]] * 8] * 8]}, 400,
     'instances[1]: every instance must name the input ({"images": ...}) or none must; '
     'instances[0] does and instances[1] does not'),
    ("post", "/v1/models/lenet5:predict",
     {"instances": [{"b64": "AAAA"}, [[[0]] * 8] * 8, {"images": [[[0]] * 8] * 8}]}, 400,
     'instances[2]: every instance must name the input ({"images": ...}) or none must; '
     'instances[0] does not and instances[2] does'),
    # Pixels outside the model's raw range, or scaled to 0..1 for a 0..255 model: refused as
    # Servable.predict refuses them (they were predicted as some other image).
    ("post", "/v1/models/lenet5:predict", {"instances": [[[[0.25]], [[0.5]]]]}, 400,
     "lenet5 takes raw pixels from 0 to 255 (info['input']['raw_range']); image 0 holds "
     "fractions from 0.25 to 0.5: pixels scaled to 0..1? Multiply them by 255"),
    ("post", "/v1/models/lenet5:predict", {"inputs": [[[[0]], [[9]]], [[[300]], [[0]]]]}, 400,
     "lenet5 takes raw pixels from 0 to 255 (info['input']['raw_range']; it normalises them "
     "itself); image 1 holds values from 0 to 300."),
    ("post", "/v1/models/lenet5:predict", {"inputs": {"x": [1]}}, 400, "input"),
    # JSON's true and false among the pixels, small and large bodies (were read as 1 and 0)
    ("post", "/v1/models/lenet5:predict", {"instances": [[[[0], [True]], [[9], [9]]]]}, 400,
     "instances[0]: pixel values must be numbers (integers or floats). Received booleans "
     "(true or false) among them."),
    ("post", "/v1/models/lenet5:predict", {"inputs": [[[[0]] * 31 + [[False]]] * 32]}, 400,
     "inputs: pixel values must be numbers (integers or floats). Received booleans"),
    ("post", "/v1/models/lenet5:predict",
     {"signature_name": "classify", "instances": [[[[0]]]]}, 400, "signature_name"),
    ("post", "/v1/models/nope:predict", {"instances": [[[[0]]]]}, 404, "Servable not found"),
    ("post", "/v1/models/lenet5/versions/9:predict", {"instances": [[[[0]]]]}, 404,
     "version 9"),
    ("post", "/v1/models/lenet5/versions/x:predict", {"instances": [[[[0]]]]}, 400,
     "version must be"),
    # Digits that are not ASCII ("²" int() refuses, "١" it reads as 1): no version numbers
    # for TensorFlow Serving either.
    ("post", "/v1/models/lenet5/versions/²:predict", {"instances": [[[[0]]]]}, 400,
     "version must be a non-negative integer; received '²'"),
    ("get", "/v1/models/lenet5/versions/①/metadata", None, 400,
     "version must be a non-negative integer; received '①'"),
    ("get", "/v1/models/lenet5/versions/١", None, 400,
     "version must be a non-negative integer; received '١'"),
    ("post", "/v1/models/lenet5:classify", {"examples": []}, 400, "not supported"),
    ("post", "/v1/models/lenet5:explode", {"instances": []}, 404, "no such endpoint"),
    ("get", "/v1/models/nope", None, 404, "Servable not found"),
    ("get", "/v1/models/lenet5/versions/3", None, 404, "version 3"),
    ("get", "/v1/models/lenet5:predict", None, 405, "use POST"),
    ("get", "/v1/other", None, 404, "no such endpoint"),
    ("put", "/v1/models/lenet5", None, 405, "not allowed"),
    # Model names no directory can have: 400, not a 500 from the file system.
    ("post", "/v1/models/lenet5%00:predict", {"instances": [[[[0]]]]}, 400,
     "invalid model name 'lenet5\\x00': it contains a NUL character"),
    ("get", "/v1/models/lenet5%00", None, 400, "contains a NUL character"),
    ("post", "/v1/models/" + "m" * 256 + ":predict", {"instances": [[[[0]]]]}, 400,
     "(256 bytes): a model name is the name of a directory under the served directory, "
     "at most 255 bytes"),
    ("get", "/v1/models/" + "m" * 300, None, 400, "(300 bytes)"),
    ("get", "/v1/models/" + "m" * 300 + "/metadata", None, 400, "at most 255 bytes"),
    ("post", "/v1/models/lenet5:predict", {"instances": [{"b64": 5}]}, 400,
     "instances[0]: the \"b64\" value must be a base64 string; received int"),
    ("post", "/v1/models/lenet5:predict", {"inputs": {"b64": [1]}}, 400,
     "inputs: the \"b64\" value must be a base64 string; received list"),
    ("get", "/v1/models", None, 404, "GET /v1/models: a model name is needed"),
    ("post", "/v1/models", {"instances": [[[[0]]]]}, 404,
     "POST /v1/models: a model name is needed"),
    ("get", "/v1/models/", None, 404, "GET /v1/models/: a model name is needed"),
    # TensorFlow Serving's version labels: a model config assigns them; zoo serve has none.
    ("get", "/v1/models/lenet5/labels/stable", None, 400,
     "Unrecognized servable version label: 'stable': zoo serve assigns no version labels; "
     "name a version instead: /v1/models/lenet5/versions/N[/metadata|:predict]"),
    ("get", "/v1/models/lenet5/labels/stable/metadata", None, 400, "version label"),
    ("post", "/v1/models/lenet5/labels/canary:predict", {"instances": [[[[0]]]]}, 400,
     "Unrecognized servable version label: 'canary'"),
]


@pytest.mark.parametrize("method, path, body, status, message", ERRORS,
                         ids=[f"{e[0]}-{e[4][:20]}" for e in ERRORS])
def test_errors_are_4xx_json(server, method, path, body, status, message):
    c = server["client"]
    if isinstance(body, bytes):
        r = c.request(method, path, content=body)
    else:
        r = c.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert message in r.json()["error"], r.json()


def test_a_websocket_upgrade_is_answered_as_plain_http(server):
    # TensorFlow Serving's REST API has no WebSocket: the request is answered as the HTTP
    # request it also is (uvicorn with a WebSocket library would refuse it with a text/plain
    # 403), and a path that is no endpoint gets the JSON 404.
    port = int(server["url"].rsplit(":", 1)[1])
    upgrade = (b"Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    status, headers, body = _raw_answer(
        port, b"GET /v1/models/lenet5 HTTP/1.1\r\n" + upgrade + b"\r\n")
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
    status, headers, body = _raw_answer(port, b"GET /ws HTTP/1.1\r\n" + upgrade + b"\r\n")
    assert (status, headers["content-type"]) == (404, "application/json")
    assert json.loads(body) == {"error": "no such endpoint: GET /ws"}
    # A predict asking to switch protocols keeps its body (curl --http2 asks for h2c; it was
    # answered "malformed JSON ... zero-length"), and the log has no WebSocket warning.
    request = json.dumps({"instances": images(2).tolist()}).encode()
    for asks in (upgrade, b"Host: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                          b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"):
        status, _, body = _raw_answer(
            port, b"POST /v1/models/lenet5:predict HTTP/1.1\r\n" + asks
            + b"Content-Length: %d\r\n\r\n" % len(request) + request)
        assert status == 200, body
        assert [p["classes"] for p in json.loads(body)["predictions"]] == \
            [p["classes"] for p in server["client"].post(
                "/v1/models/lenet5:predict", content=request).json()["predictions"]]
    assert "WebSocket" not in (server["base"] / "server.log").read_text()


@pytest.mark.parametrize("request_line", [b"CONNECT 127.0.0.1:80 HTTP/1.1",
                                          b"CONNECT /v1/models/lenet5 HTTP/1.1"])
def test_a_connect_request_gets_a_json_405(server, request_line):
    # Found by generated requests: httptools stops at a CONNECT's headers as at an upgrade,
    # Upgrade header or not, and reading it again without one recursed until a
    # RecursionError dropped the connection, no answer, a traceback per level in the log.
    port = int(server["url"].rsplit(":", 1)[1])
    status, headers, body = _raw_answer(port, request_line + b"\r\nHost: x\r\n\r\n")
    assert (status, headers["content-type"], headers["allow"], headers["connection"]) == \
        (405, "application/json", "get, head, post", "close")   # (lowered by _raw_answer)
    assert json.loads(body) == {"error": "method CONNECT not allowed: zoo serve is no proxy "
                                         "(allowed: GET, HEAD, POST; requests are e.g. POST "
                                         "/v1/models/NAME:predict with a JSON body); the "
                                         "connection is closed"}
    assert server["client"].get("/v1/models/lenet5").status_code == 200
    assert "Traceback" not in (server["base"] / "server.log").read_text()


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_both_of_uvicorns_parsers_read_an_upgrade_request_as_plain_http(parser):
    """A request asking to switch protocols, which the server never does, is read whole:
    its body (Content-Length or chunked) and the requests after it on the connection."""
    if parser == "httptools":
        pytest.importorskip("httptools")
        # The mixin needs uvicorn's protocol internals; another uvicorn without them gets
        # uvicorn's own reading (this test then fails, saying so), never a broken server.
        from zoo import server as server_module
        assert server_module._PlainHTTPUpgrades in server_module.http_protocol(parser).__mro__

    async def echo(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    h2c = (b"Host: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")
    with _uvicorn_running(echo, parser) as port:
        for request in (b"POST / HTTP/1.1\r\n" + h2c + b"Content-Length: 5\r\n\r\nhello",
                        b"POST / HTTP/1.1\r\n" + h2c
                        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"):
            assert _raw_answer(port, request)[::2] == (200, b"hello")
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"GET / HTTP/1.1\r\n" + h2c + b"\r\n" + b"POST / HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b"\r\n\r\nabc"), data


def test_bad_model_names_answer_without_a_traceback_or_the_servers_paths(server):
    c = server["client"]
    for path in ("/v1/models/lenet5%00", "/v1/models/" + "m" * 300):
        assert c.get(path).status_code == 400
        assert c.post(path + ":predict", json={"instances": [[[[0]]]]}).status_code == 400
    r = c.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.json()["error"] == ("Servable not found for request: model 'nope' (no versions "
                                 "of it in the served directory; known models: lenet5)")
    assert str(server["base"]) not in r.text
    assert c.get("/v1/models/lenet5").status_code == 200
    log = (server["base"] / "server.log").read_text()
    assert "Traceback" not in log and "null byte" not in log, log[-2000:]


def test_a_client_that_disconnects_mid_body_leaves_no_traceback(server):
    port = int(server["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/models/lenet5:predict HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100000\r\n\r\n" + b'{"instances": [' + b"1," * 1000)
        time.sleep(0.3)
    c = server["client"]
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:   # the server notices the disconnect meanwhile
        assert c.get("/v1/models/lenet5").status_code == 200
        log = (server["base"] / "server.log").read_text()
        assert "Traceback" not in log and "ClientDisconnect" not in log, log[-3000:]
        time.sleep(0.5)


def _raw_answer(port, request):
    """``(status, headers, body)`` of the answer to the bytes ``request``."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        # the body: its declared length, else until the server closes the connection
        length = int(headers.get("content-length", -1))
        while (length < 0 or len(body) < length) and (chunk := s.recv(65536)):
            body += chunk
    return int(lines[0].split()[1]), headers, body


# Bytes no HTTP/1.1 parser takes: no request line; a header without a colon; a chunk size
# that is no hexadecimal number.
MALFORMED = [b"GARBAGE\r\n\r\n",
             b"GET /v1/models/lenet5 HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
             b"POST /v1/models/lenet5:predict HTTP/1.1\r\nHost: x\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"]


def test_malformed_http_is_answered_with_a_json_400(server):
    from zoo.server import MALFORMED_REQUEST
    port = int(server["url"].rsplit(":", 1)[1])
    for request in MALFORMED:
        status, headers, body = _raw_answer(port, request)
        assert (status, headers["content-type"]) == (400, "application/json"), request
        assert json.loads(body) == {"error": MALFORMED_REQUEST}
    assert server["client"].get("/v1/models/lenet5").status_code == 200


@contextlib.contextmanager
def _uvicorn_running(app, parser):
    """The port of a uvicorn server of ``app`` in a thread, on :func:`zoo.server.http_protocol`
    with ``parser``, as ``zoo serve`` runs it (no WebSocket)."""
    import threading

    import uvicorn

    from zoo.server import http_protocol
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws="none",
                                           http=http_protocol(parser), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_both_of_uvicorns_parsers_answer_malformed_http_with_json(parser):
    """:func:`zoo.server.http_protocol` with either parser uvicorn may pick, in a server of
    a one-line app: well-formed requests reach the app, malformed ones get the JSON 400."""
    from zoo.server import MALFORMED_REQUEST, http_protocol
    if parser == "httptools":
        pytest.importorskip("httptools")

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"app"})

    with _uvicorn_running(app, parser) as port:
        for request in MALFORMED:
            status, headers, body = _raw_answer(port, request)
            assert (status, headers["content-type"]) == (400, "application/json"), request
            assert headers["connection"] == "close"
            assert json.loads(body) == {"error": MALFORMED_REQUEST}
        status, _, body = _raw_answer(port, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n")
        assert status == 200 and body.endswith(b"app\r\n0\r\n\r\n")
    with pytest.raises(ValueError, match="parser must be None, 'httptools' or 'h11'. "
                                         "Received: 'auto'"):
        http_protocol("auto")


def test_request_size_limit(server):
    c = server["client"]
    body = b'{"instances": [' + b"0," * (LIMIT_MB * 1024 * 1024 // 2 + 10) + b"0]}"
    r = c.post("/v1/models/lenet5:predict", content=body)
    assert r.status_code == 413
    assert "exceeds the limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(LIMIT_MB * 4):
            yield b" " * (512 * 1024)

    r = c.post("/v1/models/lenet5:predict", content=chunks())
    assert r.status_code == 413
    # The server is still healthy afterwards.
    assert c.get("/v1/models/lenet5").status_code == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_closes_the_connection(server, framing):
    """The 413 of a body over the limit comes before the body has been read: the server
    closes the connection after it (it stayed open, reading and dropping the rest of the
    upload, gigabytes perhaps, while the client went on sending it)."""
    port = int(server["url"].rsplit(":", 1)[1])
    limit = LIMIT_MB * 1024 * 1024
    if framing == "content-length":
        head, part = b"Content-Length: %d\r\n\r\n" % (50 * limit), b" " * 1024
    else:
        head, part = b"Transfer-Encoding: chunked\r\n\r\n", b"%x\r\n%s\r\n" % (
            limit + 1, b" " * (limit + 1))
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"POST /v1/models/lenet5:predict HTTP/1.1\r\nHost: x\r\n" + head + part)
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):   # until the server closes (a timeout fails the test)
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and b"\r\nconnection: close" in head.lower(), head
    assert json.loads(body)["error"].startswith("request body ")


def test_32_concurrent_requests_all_answered_correctly(server, local):
    batches = [images(1 + i % 3, seed=100 + i) for i in range(32)]
    want = [local.predict(b)["probabilities"] for b in batches]

    def ask(i):
        with httpx.Client(base_url=server["url"], timeout=120) as c:
            body = ({"instances": batches[i].tolist()} if i % 2 else
                    {"inputs": {"images": batches[i].tolist()}})
            return c.post("/v1/models/lenet5:predict", json=body)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, range(32)))
    for i, r in enumerate(answers):
        assert r.status_code == 200, r.text
        data = r.json()
        got = ([p["probabilities"] for p in data["predictions"]] if i % 2 else
               data["outputs"]["probabilities"])
        np.testing.assert_allclose(got, want[i], atol=1e-6)


@pytest.fixture
def second_version(server):
    """Version 2 of lenet5 beside the served version 1, removed afterwards: the other tests
    of this module's server see version 1 alone, whatever order they run in."""
    tf.keras.utils.set_random_seed(12)
    zoo.export(zoo.lenet5(variant="modern"), server["base"], info=INFO)  # renamed into place
    yield server["base"] / "lenet5" / "2"
    shutil.rmtree(server["base"] / "lenet5" / "2")
    status = server["client"].get("/v1/models/lenet5").json()["model_version_status"]
    assert [s["version"] for s in status] == ["1"]


def wait_for_states(c, want, timeout=60):
    """Poll the lenet5 status until its ``[(version, state), ...]`` is ``want``; every state
    seen meanwhile (only a load in progress may show ``LOADING``)."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        status = c.get("/v1/models/lenet5").json()["model_version_status"]
        states = [(s["version"], s["state"]) for s in status]
        seen.append(states)
        if states == want:
            return seen
        assert time.monotonic() < deadline, seen[-5:]
        time.sleep(0.05)


def test_new_version_is_served_without_restart(server, local, second_version):
    c = server["client"]
    x = images(2, seed=7)
    new = serving.load(second_version, jit_compile=False).predict(x)
    old = local.predict(x)
    assert np.abs(new["probabilities"] - old["probabilities"]).max() > 1e-3

    # The loaded version answers while the new one loads in the background, as TensorFlow
    # Serving keeps the previous version serving: no request waits for a load. (The
    # server's poll may have loaded it already: then it answers.)
    r = c.post("/v1/models/lenet5:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    first = np.array([p["probabilities"] for p in r.json()["predictions"]])
    assert (np.abs(first - old["probabilities"]).max() < 1e-6
            or np.abs(first - new["probabilities"]).max() < 1e-6)
    seen = wait_for_states(c, [("2", "AVAILABLE"), ("1", "AVAILABLE")])
    assert all(states in ([("2", "LOADING"), ("1", "AVAILABLE")],
                          [("2", "AVAILABLE"), ("1", "AVAILABLE")]) for states in seen), seen
    r = c.post("/v1/models/lenet5:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                               new["probabilities"], atol=1e-6)
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"instances": x.tolist()})
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                               old["probabilities"], atol=1e-6)
    assert c.get("/v1/models/lenet5/metadata").json()["model_spec"]["version"] == "2"


def test_a_version_that_cannot_load_leaves_the_previous_one_answering(server, local,
                                                                      tmp_path):
    """As TensorFlow Serving's availability-preserving policy: a broken newest version is
    listed with its error and skipped; it is tried again once its files change."""
    c = server["client"]
    base, x = server["base"], images(2, seed=8)
    broken = base / "lenet5" / "2"
    shutil.copytree(base / "lenet5" / "1", base / ".v2")
    (base / ".v2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    os.rename(base / ".v2", broken)
    try:
        r = c.post("/v1/models/lenet5:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                                   local.predict(x)["probabilities"], atol=1e-5)
        assert c.get("/v1/models/lenet5/metadata").json()["model_spec"]["version"] == "1"
        wait_for_states(c, [("2", "END"), ("1", "AVAILABLE")])   # tried in the background
        status = c.get("/v1/models/lenet5").json()["model_version_status"]
        assert [(s["version"], s["state"], s["status"]["error_code"]) for s in status] == [
            ("2", "END", "UNKNOWN"), ("1", "AVAILABLE", "OK")]
        assert status[0]["status"]["error_message"].startswith(
            "model 'lenet5' version 2 could not be loaded: ")
        r = c.post("/v1/models/lenet5/versions/2:predict", json={"instances": x.tolist()})
        assert r.status_code == 503 and r.json()["error"] == status[0]["status"]["error_message"]
        assert str(base) not in r.text and "file 'lenet5/2/saved_model.pb'" in r.text
        log = (base / "server.log").read_text()
        assert log.count("model 'lenet5' version 2 could not be loaded") == 1, log[-2000:]

        # Its files replaced by a good export: tried again, and it answers.
        tf.keras.utils.set_random_seed(13)
        zoo.export(zoo.lenet5(variant="modern"), tmp_path, info=INFO)
        shutil.rmtree(broken)
        os.rename(tmp_path / "lenet5" / "1", broken)
        new = serving.load(broken, jit_compile=False).predict(x)
        r = c.post("/v1/models/lenet5:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text   # version 1, while version 2 loads
        wait_for_states(c, [("2", "AVAILABLE"), ("1", "AVAILABLE")])
        r = c.post("/v1/models/lenet5:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                                   new["probabilities"], atol=1e-5)
    finally:
        shutil.rmtree(broken, ignore_errors=True)


def test_store_loads_the_newest_version_that_loads(server, tmp_path):
    """A store started over a broken newest version answers from the one before it."""
    from zoo.server import ModelStore, ServingError
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / "3")
    for f in (tmp_path / "m" / "3" / "variables").iterdir():
        f.write_bytes(b"x")
    store = ModelStore(tmp_path)
    assert store.resolve("m") == 3 and store.loaded("m") is None
    assert store.get("m").version == 1
    assert store.resolve("m") == 1 and store.loaded("m").version == 1
    assert store.failure("m", 3).startswith("model 'm' version 3 could not be loaded: ")
    with pytest.raises(ServingError, match="version 3 could not be loaded") as err:
        store.get("m", 3)
    assert err.value.status == 503
    shutil.rmtree(tmp_path / "m" / "3")     # gone: forgotten
    assert store.resolve("m") == 1 and store.failure("m", 3) is None
    shutil.rmtree(tmp_path / "m" / "1")
    (tmp_path / "m" / "1").mkdir()
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"")
    store = ModelStore(tmp_path)
    with pytest.raises(ServingError, match="version 1 could not be loaded") as err:
        store.get("m")
    assert err.value.status == 503


def test_a_version_moved_away_while_it_loads_is_loaded_once_it_is_back(server, tmp_path,
                                                                       monkeypatch):
    """A load that fails because the version's files went (or changed) while it ran is not
    held against those files: moved back unchanged, the version loads (it used to stay END,
    "no such SavedModel directory", until its files changed); a request naming a version
    removed while it loaded gets 404, as any version not found (503 before)."""
    import threading

    from zoo.server import ModelStore, ServingError
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    store = ModelStore(tmp_path, jit_compile=False)
    assert store.get("m").version == 1
    entered, release = threading.Event(), threading.Event()
    real_load = serving.load

    def held_load(path, **kwargs):
        if os.path.basename(path) in ("2", "3"):
            entered.set()
            assert release.wait(30)
        return real_load(path, **kwargs)

    monkeypatch.setattr(serving, "load", held_load)
    shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / "2")
    store.poll()                                        # version 2 loads in the background
    assert entered.wait(30)
    os.rename(tmp_path / "m" / "2", tmp_path / ".2")    # moved away while it loads
    release.set()
    _wait(lambda: not store._background)                # the load has failed
    os.rename(tmp_path / ".2", tmp_path / "m" / "2")    # and back, unchanged
    assert store.failure("m", 2) is None
    store.poll()
    _wait(lambda: _loaded_keys(store) == [("m", 1), ("m", 2)])
    assert [(s["version"], s["state"]) for s in store.status("m")["model_version_status"]] == [
        ("2", "AVAILABLE"), ("1", "AVAILABLE")]

    entered.clear()
    release.clear()
    shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / "3")
    errors = []

    def ask():
        try:
            store.get("m", 3)
        except ServingError as exc:
            errors.append(exc)

    asking = threading.Thread(target=ask)
    asking.start()
    assert entered.wait(30)
    shutil.rmtree(tmp_path / "m" / "3")                 # removed while the request loads it
    release.set()
    asking.join(30)
    assert [e.status for e in errors] == [404], [e.message for e in errors]
    assert errors[0].message.startswith("Servable not found for request: model 'm' version 3")
    assert store.failure("m", 3) is None


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_metadata_of_a_version_removed_as_it_is_asked_for_is_the_loaded_models(
        server, tmp_path, monkeypatch):
    """The signatures are read when a version loads: a version removed from disk between a
    metadata request finding it and reading them is answered from the loaded model (it was a
    500 naming the server's path to saved_model.pb)."""
    from fastapi.testclient import TestClient

    from zoo.server import ModelStore, create_app
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    want = server["client"].get("/v1/models/lenet5/versions/1/metadata").json()
    app = create_app(tmp_path, jit_compile=False, parse_workers=0, poll_seconds=0,
                     preload=False)
    real_get = ModelStore.get

    def get_then_remove(self, name, version=None):
        servable = real_get(self, name, version)
        shutil.rmtree(tmp_path / "m" / "1", ignore_errors=True)   # removed just after
        return servable

    monkeypatch.setattr(ModelStore, "get", get_then_remove)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/v1/models/m/versions/1/metadata")
    assert r.status_code == 200, r.text
    assert r.json()["model_spec"] == {"name": "m", "signature_name": "", "version": "1"}
    assert r.json()["metadata"] == want["metadata"]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_requests_waiting_for_a_load_leave_the_thread_pool_to_other_models(
        server, tmp_path, monkeypatch):
    """Requests for a model not loaded yet wait for its load on threads of their own: 48 of
    them took every thread of the pool (anyio's 40), and a status check or request of another
    model waited for that load."""
    import threading

    from fastapi.testclient import TestClient

    from zoo.server import create_app
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    app = create_app(tmp_path, jit_compile=False, parse_workers=0, poll_seconds=0,
                     inline_ms=0)
    entered, release = threading.Event(), threading.Event()
    real_load = serving.load

    def held_load(path, **kwargs):
        if "new" in str(path):
            entered.set()
            assert release.wait(30)
        return real_load(path, **kwargs)

    monkeypatch.setattr(serving, "load", held_load)
    x = images(1, seed=3)
    with TestClient(app) as c, concurrent.futures.ThreadPoolExecutor(48) as pool:
        assert c.post("/v1/models/m:predict", json={"instances": x.tolist()}).status_code == 200
        shutil.copytree(tmp_path / "m" / "1", tmp_path / "new" / "1")
        waiting = [pool.submit(c.post, "/v1/models/new:predict", json={"instances": x.tolist()})
                   for _ in range(48)]
        assert entered.wait(30)
        time.sleep(0.5)                        # every request has arrived and waits
        timer = threading.Timer(10, release.set)   # (before: the answers below waited)
        timer.start()
        try:
            start = time.monotonic()
            assert c.get("/v1/models/m").status_code == 200
            r = c.post("/v1/models/m:predict", json={"instances": x.tolist()})
            assert r.status_code == 200, r.text
            assert time.monotonic() - start < 5 and not release.is_set()
        finally:
            release.set()
            timer.cancel()
        assert [f.result().status_code for f in waiting] == [200] * 48
    from zoo.server import LOAD_WAIT_THREADS
    assert LOAD_WAIT_THREADS < 40


def test_a_version_removed_from_disk_frees_its_model(server, tmp_path):
    """A loaded model holds reference cycles: the store collects them once it drops a
    version, so memory does not grow with every version a server has loaded."""
    import gc
    import weakref
    from zoo.server import ModelStore
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / "2")
    store = ModelStore(tmp_path, jit_compile=False)
    enabled = gc.isenabled()
    gc.disable()            # no collection but the store's own
    try:
        gone = weakref.ref(store.get("m", 1))
        assert store.get("m", 2).version == 2 and gone() is not None
        shutil.rmtree(tmp_path / "m" / "1")
        assert store.versions("m") == [2]
        assert gone() is None
        assert store.get("m").version == 2
    finally:
        if enabled:
            gc.enable()


def _loaded_keys(store):
    """The (model, version) pairs loaded, read without the store's look at the disk."""
    with store._lock:
        return sorted(store._servables)


def _wait(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_server_polls_its_directory_without_waiting_for_requests(server, tmp_path):
    """As TensorFlow Serving's file-system poll: a version exported while the server runs
    loads with no request asking for it (so the first request after its load is
    answered by it), a model added loads, and models removed from disk are dropped."""
    from fastapi.testclient import TestClient

    from zoo.server import create_app
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    app = create_app(tmp_path, jit_compile=False, parse_workers=0, poll_seconds=0.1)
    store = app.state.store
    with TestClient(app) as c:
        assert _loaded_keys(store) == [("m", 1)]
        shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / ".2")
        os.rename(tmp_path / "m" / ".2", tmp_path / "m" / "2")
        shutil.copytree(tmp_path / "m" / "1", tmp_path / ".n" / "1")
        os.rename(tmp_path / ".n", tmp_path / "n")
        _wait(lambda: _loaded_keys(store) == [("m", 1), ("m", 2), ("n", 1)])
        assert c.get("/v1/models/m/metadata").json()["model_spec"]["version"] == "2"
        shutil.rmtree(tmp_path / "n")
        shutil.rmtree(tmp_path / "m" / "1")
        _wait(lambda: _loaded_keys(store) == [("m", 2)])
        shutil.rmtree(tmp_path / "m")
        _wait(lambda: _loaded_keys(store) == [])
    # Polling off: only requests look.
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    app = create_app(tmp_path, jit_compile=False, parse_workers=0, poll_seconds=0)
    store = app.state.store
    with TestClient(app) as c:
        shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / "2")
        time.sleep(1.0)
        assert _loaded_keys(store) == [("m", 1)]
        assert c.get("/v1/models/m/metadata").json()["model_spec"]["version"] == "1"
        _wait(lambda: _loaded_keys(store) == [("m", 1), ("m", 2)])   # the request's load
    with pytest.raises(ValueError, match=r"poll_seconds must be a non-negative number of "
                                         r"seconds \(0: no polling\). Received: -1"):
        create_app(tmp_path, poll_seconds=-1, parse_workers=0)


def test_store_runtime_choice(server, local):
    from zoo.server import ModelStore, create_app
    x = images(3, seed=21)
    default = ModelStore(server["base"], jit_compile=False).get("lenet5", 1)
    on_tf = ModelStore(server["base"], jit_compile=False, runtime="tensorflow").get("lenet5", 1)
    assert (default.runtime, on_tf.runtime) == ("litert", "tensorflow")
    np.testing.assert_allclose(on_tf.predict(x)["probabilities"],
                               default.predict(x)["probabilities"], atol=1e-5)
    with pytest.raises(ValueError, match="runtime must be one of 'auto', 'litert', "
                                         "'openvino', 'tensorflow'. Received: 'onnx'"):
        create_app(server["base"], runtime="onnx")


REGULAR_CASES = [
    (b"[[1,2],[3,4]]", (2, 2)), (b"[1]", (1,)), (b"[[[1],[2]],[[3],[4]]]", (2, 2, 1)),
    (b"[ [1e3, -2.5] ,\n [3, 4] ]", (2, 2)), (b"[[1,2],[3,4],[5,6]]", (3, 2)),
    (b"[[1,2],[3]]", None), (b"[[1,2],3]", None), (b"[3,[1,2]]", None), (b"[]", None),
    (b"[[]]", None), (b"[[],[]]", None), (b"[[1],[]]", None), (b"[[1,2],[3,4,5],[6]]", None),
    (b"[[1,2,3],[4],[5,6]]", None),              # 6 values, as many as (3, 2): still ragged
    (b"[[[1],[2]],[[3,4]]]", None), (b"[[1,2],[[3],[4]]]", None),
    (b"[[1,2],[3,4],5,6]", None), (b'[[1,2],["a",4]]', None), (b"[[1,2],[true,4]]", None),
    # integers read as int64 unless one number has an exponent or exceeds int64
    (b"[[-3,4],[0,255]]", (2, 2)), (b"[1e3,2]", (2,)), (b"[18446744073709551615,1]", (2,)),
    (b"[9223372036854775807,-9223372036854775808]", (2,)), (b"[[1,2],[3,4.0]]", (2, 2)),
]


@pytest.mark.parametrize("text, shape", REGULAR_CASES, ids=[c[0].decode() for c in REGULAR_CASES])
def test_pixel_arrays_parse_straight_to_numpy_only_when_regular(text, shape):
    import json

    import simdjson

    from zoo.jsonarrays import numeric_array
    array = numeric_array(simdjson.Parser().parse(text))
    if shape is None:
        assert array is None
    else:
        values = np.ravel(np.array(json.loads(text), dtype=object))
        integers = all(isinstance(v, int) and -2**63 <= v < 2**63 for v in values)
        assert array.shape == shape
        assert array.dtype == (np.int64 if integers else np.float64)
        assert array.tolist() == (json.loads(text) if integers else
                                  np.array(json.loads(text), dtype=np.float64).tolist())


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "simdjson"])
def test_parse_body_fast_path_and_fallbacks(monkeypatch, compiled):
    import orjson

    from zoo import server as srv
    if not compiled:     # the compiled reader (zoo.jsonscan) off: simdjson reads the arrays
        monkeypatch.setattr(srv, "_scan_pixels", lambda *args: None)
    x = np.random.RandomState(8).randint(0, 256, (24, 32, 32, 1))
    simdjson_reads = []
    if compiled:         # every one-array form below is the compiled reader's, not simdjson's
        monkeypatch.setattr(srv, "_read_pixels", lambda body: simdjson_reads.append(body))
    for body, where in ((orjson.dumps({"instances": x.tolist()}), ("instances",)),
                        (orjson.dumps({"inputs": x.tolist()}), ("inputs",)),
                        (orjson.dumps({"signature_name": "serving_default",
                                       "inputs": {"images": x.tolist()}}),
                         ("inputs", "images")),
                        (orjson.dumps({"instances": x.tolist(),
                                       "signature_name": "serving_default"}),
                         ("instances",))):
        assert len(body) >= srv._FAST_JSON_BYTES
        payload = srv.parse_body(body, dtype=np.dtype(np.float32))
        value = payload[where[0]] if len(where) == 1 else payload[where[0]][where[1]]
        assert isinstance(value, np.ndarray) and np.array_equal(value, x)
        assert payload.keys() == orjson.loads(body).keys()
        assert payload.get("signature_name") == orjson.loads(body).get("signature_name")
    assert simdjson_reads == []
    monkeypatch.undo()
    if not compiled:
        monkeypatch.setattr(srv, "_scan_pixels", lambda *args: None)
    ragged = x.tolist()
    ragged[3][4][5] = [1, 2]
    payload = srv.parse_body(orjson.dumps({"instances": ragged}))
    assert isinstance(payload["instances"], list)          # orjson's lists: the 400 path
    with pytest.raises(srv.ServingError, match="malformed JSON"):
        srv.parse_body(b'{"instances": [' + b"1," * 40000 + b"]")
    monkeypatch.setitem(sys.modules, "simdjson", None)      # not installed: orjson parses
    payload = srv.parse_body(orjson.dumps({"instances": x.tolist()}))
    # ... what the compiled reader does not read (it needs no simdjson)
    assert isinstance(payload["instances"], np.ndarray if compiled else list)
    assert np.array_equal(payload["instances"], x)
    payload = srv.parse_body(orjson.dumps({"inputs": {"images": x.tolist()}}))
    assert isinstance(payload["inputs"]["images"], np.ndarray if compiled else list)
    payload = srv.parse_body(orjson.dumps({"inputs": {"images": x.tolist()}, "model": "m"}))
    assert isinstance(payload["inputs"]["images"], list) and payload["model"] == "m"
    named = orjson.dumps({"instances": [{"images": image} for image in x.tolist()]})
    assert isinstance(srv.parse_body(named)["instances"][0]["images"], list)


@pytest.mark.parametrize("images_per_value", [1, 6], ids=["small", "large"])
def test_a_name_given_twice_reads_as_its_last_value_at_any_body_size(images_per_value):
    """JSON leaves duplicate names open: every body size reads them as orjson (and Python's
    json) do, the last value counting, whichever parser answers it."""
    from zoo import server as srv
    first, last = (np.full((images_per_value, 8, 8, 1), v) for v in (1, 2))
    for top in ("instances", "inputs"):
        body = (f'{{"{top}": {first.tolist()}, "{top}": {last.tolist()}}}').encode()
        assert (len(body) >= srv._FAST_JSON_BYTES) == (images_per_value > 1)
        splitter = srv.jsonarrays.SplitParser(1, min_bytes=0, scan_min_bytes=0)
        try:   # ... also when a large body's parts are read by threads and a process
            for parser in (None, splitter):
                got = srv.parse_body(body, parser, np.dtype(np.float32))
                assert list(got) == [top] and np.array_equal(np.asarray(got[top]), last)
        finally:
            splitter.close()


def test_a_body_of_many_other_members_is_read_in_linear_time():
    # Found by generated requests: simdjson's reading looked each member up by name among
    # all of them, so a body of n other members took time n^2 (20,000 of them, 0.2 MB:
    # 2.6 s; 50,000: 13 s; 200,000, 2.4 MB: a request the server was still reading
    # minutes later); now ~0.3 s for 50,000 on the 2-core test machine.
    from zoo import server as srv
    pytest.importorskip("simdjson")
    body = (b"{" + b",".join(b'"k%d":[%d,{"a":null}]' % (i, i) for i in range(50_000))
            + b',"instances":[[[[0]]]]}')
    start = time.perf_counter()
    payload = srv.parse_body(body, None, np.dtype(np.float32))
    assert time.perf_counter() - start < 5
    assert isinstance(payload["instances"], np.ndarray)   # simdjson's reading, not orjson's
    assert len(payload) == 50_001 and payload["k49999"] == [49999, {"a": None}]


def _nested(depth, leaf=b"0"):
    return b"[" * depth + leaf + b"]" * depth


@pytest.mark.parametrize("body,message", [
    (b'{"instances": ' + _nested(990) + b"}", "instances[0] must form a regular numeric array"),
    (b'{"instances": [' + _nested(500) + b"]}", "instances[0] must form a regular numeric array"),
    (b'{"inputs": {"images": ' + _nested(990) + b"}}", "inputs must form a regular numeric array"),
    (b'{"instances": [{"images": ' + _nested(500) + b"}]}",
     "instances[0] must form a regular numeric array"),
    (b'{"signature_name": ' + _nested(1020) + b', "instances": [[[[0]]]]}',
     "'signature_name' must be a string; received list"),
    (b'{"signature_name": ' + b'{"a": ' * 1020 + b"0" + b"}" * 1020
     + b', "instances": [[[[0]]]]}', "'signature_name' must be a string; received dict"),
], ids=["instances", "instance", "inputs", "named-row", "signature-list", "signature-dict"])
def test_deeply_nested_values_get_a_400(server, body, message):
    # Found by generated requests: arrays of 65 levels or more were 500s (NumPy's "maximum
    # supported dimension for an ndarray"), and a signature_name nested 1,020 deep a 500
    # (RecursionError from its repr in the error message).
    r = server["client"].post("/v1/models/lenet5:predict", content=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(message), r.json()


_MANY_NAMES = b",".join(b'"n%05d": [[[[0]]]]' % i for i in range(50_000))


@pytest.mark.parametrize("body,message", [
    (b'{"inputs": {' + _MANY_NAMES + b"}}",
     "'inputs' must name the signature's input {\"images\": ...}; received keys ['n00000', "
     "'n00001', 'n00002', 'n00003', 'n00004', 'n00005', 'n00006', 'n00007', 'n00008', "
     "'n00009', ...] (50000 keys)"),
    (b'{"instances": [{' + _MANY_NAMES + b"}]}",
     "instances[0]: named inputs must be exactly {\"images\": ...}; received keys ['n00000', "
     "'n00001', 'n00002', 'n00003', 'n00004', 'n00005', 'n00006', 'n00007', 'n00008', "
     "'n00009', ...] (50000 keys)"),
    (b'{"inputs": {"b64": "AA==", "' + b"k" * 100_000 + b'": 1}}',
     "'inputs' must name the signature's input {\"images\": ...}; received keys "
     "['b64', '" + "k" * 40 + "'...]"),
    (b'{"instances": [{"images": {"b64": "AA==", "' + b"k" * 100_000 + b'": 1}}]}',
     "instances[0]: a binary value must be {\"b64\": \"<base64 string>\"}; received keys "
     "['b64', '" + "k" * 40 + "'...]"),
    (b'{"signature_name": "' + b"s" * 1_000_000 + b'", "instances": [[[[0]]]]}',
     "signature_name '" + "s" * 40 + "'... not found; this model has: serving_default"),
], ids=["inputs", "named-row", "long-name", "b64", "signature"])
def test_errors_repeat_a_bounded_part_of_the_names_received(server, body, message):
    # Found by generated requests: the names of a 1 MB body were echoed whole, a 1 MB error.
    r = server["client"].post("/v1/models/lenet5:predict", content=body)
    assert r.status_code == 400
    assert r.json() == {"error": message}


@pytest.mark.parametrize("images", [1, 6], ids=["small", "large"])
def test_a_byte_order_mark_is_malformed_json_at_any_body_size(images):
    """orjson (and TensorFlow Serving's parser) refuse a body that begins with a UTF-8 byte
    order mark; simdjson skipped it, so from 1 KB on such a body was answered."""
    from zoo import server as srv
    body = b"\xef\xbb\xbf" + json.dumps({"instances": [[[[0]] * 8] * 8] * images}).encode()
    assert (len(body) >= srv._FAST_JSON_BYTES) == (images > 1)
    splitter = srv.jsonarrays.SplitParser(1, min_bytes=0, scan_min_bytes=0)
    try:
        for parser in (None, splitter):
            with pytest.raises(srv.ServingError) as info:
                srv.parse_body(body, parser, np.dtype(np.float32))
            assert info.value.status == 400
            assert info.value.message.startswith(
                "malformed JSON in the request body: UTF-8 byte order mark (BOM) is not "
                "supported"), info.value.message
    finally:
        splitter.close()


def test_parse_body_reads_named_rows_into_numpy():
    """The row format with a named input ([{"images": [...]}, ...]): simdjson reads each
    instance into numpy; rows of other kinds go to orjson, for the usual errors."""
    import orjson

    from zoo import server as srv
    pytest.importorskip("simdjson")
    x = np.random.RandomState(9).randint(0, 256, (6, 32, 32, 1))
    named = [{"images": image} for image in x.tolist()]
    payload = srv.parse_body(orjson.dumps({"signature_name": "s", "instances": named}))
    assert payload["signature_name"] == "s" and len(payload["instances"]) == 6
    for row, image in zip(payload["instances"], x):
        assert list(row) == ["images"] and isinstance(row["images"], np.ndarray)
        assert np.array_equal(row["images"], image)
    decimals = [{"images": (image / 255).tolist()} for image in x]
    got = srv.parse_body(orjson.dumps({"instances": decimals}))["instances"]
    assert all(np.array_equal(r["images"], image / 255) for r, image in zip(got, x))
    for rows in (named[:3] + [{"images": "text"}] + named[3:],          # not numbers
                 named[:3] + [{"a": 1, "b": 2}] + named[3:],              # two keys
                 named[:3] + [[[[1]]]] + named[3:],                       # not an object
                 named[:3] + [{"images": [[1], [2, 3]]}] + named[3:],     # ragged
                 [{"b64": "aa"}] + named):                                # b64 first
        assert srv.parse_body(orjson.dumps({"instances": rows})) == {"instances": rows}


def test_parse_body_reuses_its_simdjson_parsers(monkeypatch):
    import orjson

    from zoo import jsonarrays as ja
    from zoo import server as srv
    monkeypatch.setattr(ja, "_PARSERS", [])
    monkeypatch.setattr(srv, "_scan_pixels", lambda *args: None)   # simdjson reads them all
    x = np.random.RandomState(9).randint(0, 256, (24, 32, 32, 1))
    body = orjson.dumps({"instances": x.tolist()})
    first = srv.parse_body(body)["instances"]
    (parser,) = ja._PARSERS                           # kept after the parse
    second = srv.parse_body(body)["instances"]         # parsed again by that parser
    assert ja._PARSERS == [parser]
    assert np.array_equal(first, x) and np.array_equal(second, x)
    # A malformed body and a ragged one (orjson's path) leave the parser usable.
    with pytest.raises(srv.ServingError, match="malformed JSON"):
        srv.parse_body(body[:-1])
    ragged = x.tolist()
    ragged[0][0] = [1, 2]
    assert isinstance(srv.parse_body(orjson.dumps({"instances": ragged}))["instances"], list)
    assert ja._PARSERS == [parser]
    assert np.array_equal(srv.parse_body(body)["instances"], x)
    # Parses at once in several threads each get a parser of their own.
    from concurrent.futures import ThreadPoolExecutor
    bodies = [orjson.dumps({"instances": (x + i).tolist()}) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        parsed = list(pool.map(lambda b: srv.parse_body(b)["instances"], bodies * 3))
    assert all(np.array_equal(p, x + i % 8) for i, p in enumerate(parsed))
    assert 1 <= len(ja._PARSERS) <= ja.PARSER_POOL
    # At most PARSER_POOL parsers are kept.
    monkeypatch.setattr(ja, "PARSER_POOL", 0)
    ja._PARSERS.clear()
    assert np.array_equal(srv.parse_body(body)["instances"], x)
    assert ja._PARSERS == []
    monkeypatch.setattr(ja, "PARSER_POOL", 2)
    # Bodies above PARSER_KEEP_BYTES: their parser is not kept.
    monkeypatch.setattr(ja, "PARSER_KEEP_BYTES", len(body) - 1)
    ja._PARSERS.clear()
    assert np.array_equal(srv.parse_body(body)["instances"], x)
    assert ja._PARSERS == []


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_json_bodies_parsed_in_parts_answer_alike(server, local):
    """create_app's parse workers: a pixel-list body parsed in parts answers like one parsed
    whole -- integers by the compiled reader's threads, 25-digit decimals by the worker
    processes; the workers start and stop with the application."""
    import json
    import re

    import orjson
    from fastapi.testclient import TestClient

    from zoo.server import create_app
    app = create_app(server["base"], parse_workers=1, preload=False)
    splitter = app.state.splitter
    splitter.min_bytes = splitter.scan_min_bytes = 0        # every body is cut
    x = images(40, seed=32, size=32)
    url = "/v1/models/lenet5/versions/1:predict"
    want = local.predict(x)
    with TestClient(app) as c:
        (worker,) = splitter._pool                          # started with the application
        # 25 decimals (beyond the compiled reader's 18 digits): simdjson's processes.
        long = json.dumps((x / 3.0).tolist()).encode()
        long = re.sub(rb"[0-9.e-]+", lambda m: f"{float(m.group()):.25f}".encode(), long)
        for body in (orjson.dumps({"instances": x.tolist()}), b'{"inputs": ' + long + b"}"):
            r = c.post(url, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
        assert splitter.scanned == 1 and splitter.parsed == 1
        got = r.json()["outputs"]["probabilities"]
        np.testing.assert_allclose(got, local.predict(x / 3.0)["probabilities"], atol=1e-6)
        r = c.post(url, json={"instances": x.tolist()})
        np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                                   want["probabilities"], atol=1e-6)
        # With a signature name, as TensorFlow Serving's clients send it: the same reader.
        for signature, status in (("serving_default", 200), ("classify", 400)):
            r = c.post(url, json={"signature_name": signature, "inputs": {"images": x.tolist()}})
            assert r.status_code == status, r.text
        np.testing.assert_allclose(c.post(url, json={
            "instances": x.tolist(), "signature_name": "serving_default"}).json()[
                "predictions"][0]["probabilities"], want["probabilities"][0], atol=1e-6)
        assert "signature_name 'classify' not found" in r.json()["error"]
        assert splitter.scanned == 5 and splitter.parsed == 1
        ragged = x.tolist()
        ragged[35][3] = ragged[35][3][:-1]                  # in the worker's part
        r = c.post(url, json={"instances": ragged})
        assert r.status_code == 400 and "regular numeric array" in r.json()["error"]
        assert splitter.scanned == 5 and splitter.parsed == 1
    assert not worker.process.is_alive() and splitter._pool == [] and splitter._threads is None
    assert create_app(server["base"], parse_workers=0).state.splitter.workers == 0
    for bad in (-1, "two", 1.5):
        with pytest.raises(ValueError, match=f"parse_workers must be 'auto' or a non-negative "
                                             f"integer. Received: {bad!r}"):
            create_app(server["base"], parse_workers=bad)


def test_large_pixel_list_requests_answer_like_small_ones(server, local):
    c = server["client"]
    x = images(40, seed=31, size=32)                        # ~100 KB of JSON: the fast path
    want = local.predict(x)
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                               want["probabilities"], atol=1e-6)
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"signature_name": "serving_default",
                                                  "inputs": {"images": x.tolist()}})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["classes"] == want["classes"].tolist()
    ragged = x.tolist()
    ragged[2][3] = ragged[2][3][:-1]
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"instances": ragged})
    assert r.status_code == 400 and r.json()["error"].endswith(
        ": instances[2][3] is a list of 31 where instances[2][0] is a list of 32."), r.text
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"inputs": x[0].tolist() * 30})
    assert r.status_code == 400 and "must be a batch" in r.json()["error"], r.text
    # The row format with a named input: each instance read into numpy, the same checks.
    named = [{"images": image} for image in x.tolist()]
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"instances": named})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                               want["probabilities"], atol=1e-6)
    for rows, message in (([{"pixels": image} for image in x.tolist()],
                           "instances[0]: named inputs must be exactly {\"images\": ...}; "
                           "received keys ['pixels']"),
                          (named[:5] + [{"images": x[0].tolist()[0]}] + named[5:],
                           "instances[5]: each instance must be one image"),
                          (named[:2] + [{"images": 1, "labels": 2}] + named[2:],
                           "instances[2]: named inputs must be exactly")):
        r = c.post("/v1/models/lenet5/versions/1:predict", json={"instances": rows})
        assert r.status_code == 400 and message in r.json()["error"], r.text


WORKERS_ALLOWED = (f"'auto' or an integer from 0 to {serving._usable_cpus()} (the usable "
                   f"CPUs: each worker reads a part of a body on a core of its own)")


@pytest.mark.parametrize("option, value, allowed", [
    ("--parse-workers", "two", "'auto' or a non-negative integer"),
    ("--parse-workers", "-1", "'auto' or a non-negative integer"),
    ("--parse-workers", "1.5", "'auto' or a non-negative integer"),
    ("--parse-workers", "", "'auto' or a non-negative integer"),
    ("--max-batch-size", "-1", "a non-negative integer"),
    ("--max-batch-size", "many", "a non-negative integer"),
    ("--max-batch-size", "2.5", "a non-negative integer"),
    ("--inline-ms", "-1", "a non-negative number of milliseconds"),
    ("--inline-ms", "soon", "a non-negative number of milliseconds"),
    ("--inline-ms", "nan", "a non-negative number of milliseconds"),
    ("--inline-ms", "inf", "a non-negative number of milliseconds"),
    ("--batch-wait-ms", "-2", "a non-negative number of milliseconds"),
    ("--batch-wait-ms", "later", "a non-negative number of milliseconds"),
    ("--poll-s", "-1", r"a non-negative number of seconds (0: no polling)"),
    ("--poll-s", "often", r"a non-negative number of seconds (0: no polling)"),
    ("--port", "99999", "a TCP port, 1-65535"),
    ("--port", "0", "a TCP port, 1-65535"),
    ("--port", "http", "a TCP port, 1-65535"),
    ("--max-request-mb", "-5", "a positive number of MB"),
    ("--max-request-mb", "0", "a positive number of MB"),
    ("--max-request-mb", "lots", "a positive number of MB"),
    ("--parse-workers", "1000", WORKERS_ALLOWED),
    ("--parse-workers", str(serving._usable_cpus() + 1), WORKERS_ALLOWED),
])
def test_cli_serve_counts_are_checked(capsys, tmp_path, option, value, allowed):
    from zoo import cli
    # An address that cannot be bound: were a value let through, the command would end at
    # once instead of serving (with, say, 1,000 parse-worker processes).
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", str(tmp_path), option, value, "--host", "999.1.1.1"])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert exc.value.code == 2 and len(lines) == 1 and "Traceback" not in err
    assert f"{option}: expected {allowed}; received {value!r}" in lines[0]


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_cors_headers_only_for_the_origins_allowed(server, local, tmp_path):
    from fastapi.testclient import TestClient

    from zoo.server import create_app
    page, other = "http://localhost:3000", "https://elsewhere.example"
    predict = "/v1/models/lenet5:predict"
    body = {"instances": images(2).tolist()}
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}

    def app(origins):
        return TestClient(create_app(server["base"], jit_compile=False, parse_workers=0,
                                     poll_seconds=0, allow_origins=origins))

    with app(()) as c:     # the default, as TensorFlow Serving: no CORS
        r = c.post(predict, json=body, headers={"Origin": page})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = c.options(predict, headers={"Origin": page, **preflight})
        assert (r.status_code, r.json()) == (405, {
            "error": f"method OPTIONS not allowed for {predict} (allowed: POST)"})
    with app([page + "/"]) as c:
        r = c.post(predict, json=body, headers={"Origin": page})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == page
        np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                                   local.predict(images(2))["probabilities"], atol=1e-5)
        r = c.get("/v1/models/nope", headers={"Origin": page})    # errors carry it too
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == page
        r = c.post(predict, json=body, headers={"Origin": other})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = c.options(predict, headers={"Origin": page, **preflight})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == page
        assert r.headers["access-control-allow-methods"] == "GET, HEAD, POST"
        assert int(r.headers["access-control-max-age"]) == 600
        r = c.options(predict, headers={"Origin": other, **preflight})
        assert (r.status_code, r.json()) == (400, {
            "error": f"CORS preflight refused: origin {other!r} not allowed (allowed: origins "
                     f"{page}; methods GET, HEAD, POST; headers Content-Type, "
                     f"Content-Encoding)"})
        r = c.options(predict, headers={"Origin": page,
                                        "Access-Control-Request-Method": "DELETE"})
        assert r.status_code == 400 and r.json()["error"].startswith(
            "CORS preflight refused: method 'DELETE' not allowed")
    with app("*") as c:
        r = c.post(predict, json=body, headers={"Origin": other})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origin", ["localhost:3000", "http://a.example/app", "ftp://a.example",
                                    "", "http://a.example:99999", "https://a.example:0"])
def test_allowed_origins_are_checked(capsys, tmp_path, origin):
    from zoo import cli
    from zoo.server import check_origins, create_app
    with pytest.raises(ValueError) as exc:
        create_app(tmp_path, preload=False, parse_workers=0, allow_origins=[origin])
    assert str(exc.value) == (
        f"an allowed origin is '*' (any web page) or scheme://host[:port] with scheme http "
        f"or https and no path, as browsers send it (e.g. https://example.com, "
        f"http://localhost:3000). Received: {origin!r}")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(tmp_path), "--allow-origin", origin, "--host", "999.1.1.1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.endswith("argument --allow-origin: expected * (any web page) or an origin "
                        "scheme://host[:port] with scheme http or https and no path (e.g. "
                        f"http://localhost:3000); received {origin!r}\n")
    assert check_origins(["*", "https://a.example:8443/", "http://[::1]:3000"]) == (
        "*", "https://a.example:8443", "http://[::1]:3000")


def test_cli_serve_passes_the_allowed_origins_on(tmp_path, monkeypatch):
    from zoo import cli, server
    seen = []
    monkeypatch.setattr(server, "serve", lambda base_dir, **kw: seen.append(kw))
    assert cli.main(["serve", str(tmp_path)]) == 0
    assert cli.main(["serve", str(tmp_path), "--allow-origin", "http://localhost:3000",
                     "--allow-origin", "https://a.example/"]) == 0
    assert [kw["allow_origins"] for kw in seen] == [
        [], ["http://localhost:3000", "https://a.example"]]


def test_parse_workers_are_at_most_the_usable_cpus(tmp_path):
    from zoo.server import create_app, parse_workers_for
    cpus = serving._usable_cpus()
    assert parse_workers_for(cpus) == cpus
    for bad in (cpus + 1, 1000):
        with pytest.raises(ValueError, match=f"parse_workers must be 'auto' or an integer "
                                             f"from 0 to {cpus} \\(the usable CPUs\\). "
                                             f"Received: {bad}"):
            create_app(tmp_path, parse_workers=bad, preload=False)


def one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return captured.out, lines[0]


def test_cli_serve_reports_an_address_it_cannot_bind_in_one_line(capsys, tmp_path):
    """A port in use or an unknown host: one line naming them, before any model loads or
    the address is announced."""
    from zoo import cli
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", str(tmp_path), "--port", str(port),
                         "--parse-workers", "0"]) == 1
        out, line = one_error_line(capsys)
    assert line == f"zoo: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert out == ""
    assert cli.main(["serve", str(tmp_path), "--host", "999.1.1.1", "--port", "8501",
                     "--parse-workers", "0"]) == 1
    out, line = one_error_line(capsys)
    assert line.startswith("zoo: error: cannot listen on 999.1.1.1:8501: ") and out == ""


def test_cli_serve_without_the_serve_extra_says_what_to_install(capsys, tmp_path,
                                                                 monkeypatch):
    """Without the serve extra: one line naming the missing packages and the extra, exit 2
    (was ``zoo: error: No module named 'fastapi'``, exit 1)."""
    from zoo import cli
    for name in ("fastapi", "orjson"):
        monkeypatch.setitem(sys.modules, name, None)    # what import finds: no such module
    monkeypatch.delitem(sys.modules, "zoo.server", raising=False)
    assert cli.main(["serve", str(tmp_path), "--parse-workers", "0"]) == 2
    out, line = one_error_line(capsys)
    assert line == ("zoo: error: zoo serve needs the serve extra, and fastapi, orjson are not "
                    "installed: pip install -e '.[serve]' in the zoo checkout") and out == ""


def test_cli_serve_refuses_a_model_or_version_directory(capsys, tmp_path):
    from zoo import cli
    for version in (1, 2):
        (tmp_path / "lenet5" / str(version)).mkdir(parents=True)
        (tmp_path / "lenet5" / str(version) / "saved_model.pb").write_bytes(b"")
    layout = "(the base directory holds MODEL/VERSION/saved_model.pb)"
    # A host that cannot be bound: the directory is refused first (and no server starts
    # if it were not).
    serve = ["serve", "--host", "999.1.1.1", "--parse-workers", "0"]
    assert cli.main(serve + [str(tmp_path / "lenet5")]) == 2
    assert one_error_line(capsys) == ("", (
        f"zoo: error: {tmp_path / 'lenet5'} is a model directory (it holds versions 1, 2), "
        f"not a base directory: serve {tmp_path} instead {layout}"))
    assert cli.main(serve + [str(tmp_path / "lenet5" / "2")]) == 2
    assert one_error_line(capsys) == ("", (
        f"zoo: error: {tmp_path / 'lenet5' / '2'} is a SavedModel version directory (it "
        f"holds saved_model.pb), not a base directory: serve {tmp_path} instead {layout}"))
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "saved_model.pb").write_bytes(b"")
    assert cli.main(serve + [str(tmp_path / "bare")]) == 2
    assert "move it to BASE_DIR/bare/1/ and serve BASE_DIR" in one_error_line(capsys)[1]
    # A file: named as one (was "no such model directory")
    assert cli.main(serve + [str(tmp_path / "bare" / "saved_model.pb")]) == 2
    assert one_error_line(capsys) == ("", (
        f"zoo: error: {tmp_path / 'bare' / 'saved_model.pb'} is a file, not a directory "
        f"{layout}"))
    # Nothing there: the base directory is named as one (was "no such model directory",
    # the name of a MODEL/ directory, which is refused as the served one)
    assert cli.main(serve + [str(tmp_path / "missing")]) == 2
    assert one_error_line(capsys) == ("", (
        f"zoo: error: no such directory: {tmp_path / 'missing'} {layout}"))
    # "": not the current directory (it was served)
    assert cli.main(serve + [""]) == 2
    assert one_error_line(capsys) == ("", (
        "zoo: error: base_dir (BASE_DIR) must be the path of a directory ('.' for the current "
        "directory; the base directory holds MODEL/VERSION/saved_model.pb). Received: "
        "base_dir=''"))


def test_serve_and_create_app_check_port_and_size_limit(tmp_path):
    from zoo.server import create_app, serve
    # --host "": uvicorn bound every interface (the default is this machine only)
    for bad in ("", " ", None):
        with pytest.raises(ValueError, match=re.escape(
                f"host (--host) must be the address to bind, such as 127.0.0.1 (this machine "
                f"only) or 0.0.0.0 (every IPv4 interface). Received: host={bad!r}")):
            serve(tmp_path / "missing", host=bad)
    for bad in (0, 65536, "8501", True):
        with pytest.raises(ValueError, match=f"port must be an integer from 1 to 65535. "
                                             f"Received: {bad!r}"):
            serve(tmp_path, port=bad)
    for bad in (0, -1, 1.5, None):
        with pytest.raises(ValueError, match=f"max_request_bytes must be a positive integer. "
                                             f"Received: {bad!r}"):
            create_app(tmp_path, max_request_bytes=bad)



def test_serve_and_create_app_check_load_options_before_any_model_loads(tmp_path):
    # A jit_compile serving.load refuses was each model's load error: the server started
    # and served none of them.
    from zoo.server import ModelStore, create_app, serve
    bad = "yes"
    message = re.escape(f"jit_compile must be 'auto', True or False. Received: "
                        f"jit_compile={bad!r}")
    with socket.socket() as taken:   # without the check, serve fails to bind, not runs
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for make in (lambda: serve(tmp_path, jit_compile=bad, port=port),
                     lambda: create_app(tmp_path, jit_compile=bad, parse_workers=0),
                     lambda: ModelStore(tmp_path, jit_compile=bad)):
            with pytest.raises(ValueError, match=message):
                make()
    with pytest.raises(ValueError, match="jit_compile=True compiles the TensorFlow function "
                                         "with XLA; it cannot be combined with "
                                         "runtime='litert'"):
        create_app(tmp_path, jit_compile=True, runtime="litert", parse_workers=0)
    with pytest.raises(ValueError, match=re.escape("create_app: preload must be True or "
                                                   "False. Received: preload='no'")):
        create_app(tmp_path, preload="no", parse_workers=0)
    # The errors name create_app's (and serve's) arguments, not those of the classes they
    # are passed to (max_ms, wait_ms).
    for name in ("inline_ms", "batch_wait_ms"):
        for make in (create_app, serve):
            with pytest.raises(ValueError, match=f"^{name} must be a non-negative number of "
                                                 f"milliseconds. Received: -1$"):
                make(tmp_path, **{name: -1})

def test_cli_serve_defaults_are_the_servers(tmp_path):
    from zoo import cli, server
    args = cli.build_parser("serve").parse_args(["serve", str(tmp_path)])
    assert (args.inline_ms, args.max_batch_size, args.parse_workers, args.batch_wait_ms,
            args.poll_s) == (server.DEFAULT_INLINE_MS, server._PREDICT_BATCH, "auto", 0.0,
                             server.DEFAULT_POLL_SECONDS)
    assert cli.build_parser("serve").parse_args(
        ["serve", str(tmp_path), "--poll-s", "0"]).poll_s == 0.0
    assert cli.build_parser("serve").parse_args(
        ["serve", str(tmp_path), "--inline-ms", "0.5"]).inline_ms == 0.5
    assert cli.build_parser("serve").parse_args(
        ["serve", str(tmp_path), "--batch-wait-ms", "2"]).batch_wait_ms == 2.0
    assert server.create_app(tmp_path, batch_wait_ms=3, parse_workers=0,
                             preload=False).state.batcher.wait_seconds == 0.003
    with pytest.raises(ValueError, match="wait_ms must be a non-negative number"):
        server.create_app(tmp_path, batch_wait_ms=-1, parse_workers=0)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_batch_wait_ms_combines_requests_sent_close_together(server, local):
    """With batch_wait_ms, requests sent within the window to an idle model run as one
    batch, each answered with its own rows."""
    from fastapi.testclient import TestClient

    from zoo.server import create_app
    xs = [images(n, seed=60 + n, size=32) for n in (1, 2, 3)]
    url = "/v1/models/lenet5/versions/1:predict"
    app = create_app(server["base"], inline_ms=0, parse_workers=0, batch_wait_ms=3000)
    with TestClient(app) as c:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda x: c.post(url, json={"instances": x.tolist()}), xs))
    assert (app.state.batcher.batches, app.state.batcher.requests) == (1, 3)
    for x, r in zip(xs, answers):       # (runtimes differ in the last bits)
        assert r.status_code == 200, r.text
        got = [p["probabilities"] for p in r.json()["predictions"]]
        np.testing.assert_allclose(got, local.predict(x)["probabilities"], atol=1e-5)


def test_request_batcher_with_a_real_servable_answers_each_request_alike(local):
    """Requests combined by the batcher get what each would get on its own."""
    from zoo.server import RequestBatcher
    batcher = RequestBatcher(64)
    batches = [images(1 + i % 4, seed=200 + i, size=32) for i in range(24)]
    want = [local.predict(b) for b in batches]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda b: batcher.predict(local, b, "serving_default"), batches))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g["probabilities"], w["probabilities"], atol=1e-5)
        assert g["classes"].tolist() == w["classes"].tolist()
    assert batcher.requests == 24                  # every request went through the queue


def test_small_pixel_bodies_take_the_fast_path_and_b64_bodies_skip_it(monkeypatch):
    import orjson

    from zoo import server as srv
    x = images(1, seed=40, size=32)                                # 6.8 KB of JSON
    body = orjson.dumps({"instances": x.tolist()})
    assert srv._FAST_JSON_BYTES <= len(body) < 8 * 1024
    parsed = srv.parse_body(body)["instances"]
    assert isinstance(parsed, np.ndarray) and np.array_equal(parsed, x)
    tiny = orjson.dumps({"instances": [[[[1]]]]})                  # below the threshold
    assert srv.parse_body(tiny) == {"instances": [[[[1]]]]}
    calls, scans = [], []
    monkeypatch.setattr(srv, "_read_pixels", lambda b: calls.append(b))
    scan = srv._scan_pixels
    monkeypatch.setattr(srv, "_scan_pixels", lambda *args: scans.append(scan(*args)))
    b64 = orjson.dumps({"instances": [{"b64": png_b64(x[0])}] * 4})
    assert len(b64) >= srv._FAST_JSON_BYTES
    assert srv.parse_body(b64)["instances"][0] == {"b64": png_b64(x[0])}
    assert calls == [] and scans == [None]        # refused by the compiled reader; orjson's
    srv.parse_body(tiny)
    assert len(scans) == 1                        # below the threshold: orjson's at once
    srv.parse_body(body)
    assert calls == [body] and len(scans) == 2    # (the spy returned None): simdjson's
    assert np.array_equal(scans[1][1], x)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_quick_requests_are_answered_on_the_event_loop_alike(server, local):
    """After a first request in the thread pool, a LeNet-5 request is answered on the event
    loop, with the same answer; inline_ms=0 keeps every request in the pool."""
    from fastapi.testclient import TestClient

    from zoo.server import ModelStore, ServingError, create_app
    x = images(3, seed=50, size=32)
    while local.runtime_for(len(x)) is None:   # its runtime for 3 images chosen: one answer
        local.predict(x)
    want = local.predict(x)["probabilities"]
    url = "/v1/models/lenet5/versions/1:predict"  # another test serves a version 2 for a while
    # (inline, pooled): the first request measures the model; the 400 is answered inline too
    for inline_ms, expect in ((1000.0, (6, 1)), (0, (0, 7))):
        app = create_app(server["base"], inline_ms=inline_ms, parse_workers=0)
        with TestClient(app) as c:
            for _ in range(6):
                r = c.post(url, json={"instances": x.tolist()})
                assert r.status_code == 200, r.text
                np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                                           want, atol=1e-5)
            r = c.post(url, json={"instances": [[[1]]]})          # a 400 on the event loop
            assert r.status_code == 400 and "error" in r.json()
        assert (app.state.inline.inline, app.state.inline.pooled) == expect
    store = ModelStore(server["base"])
    assert store.loaded("lenet5", 1) is None                       # never loads
    servable = store.get("lenet5", 1)
    assert store.loaded("lenet5", 1) is servable
    with pytest.raises(ServingError, match="model 'nothing'"):
        store.loaded("nothing")
    groups = local.to_batches(x)
    np.testing.assert_array_equal(local.predict_batches(groups)["probabilities"], want)
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None"):
        local.predict_batches(groups, 0)


def test_answers_carry_float32_exactly_in_fewer_bytes(server, local):
    """Answers are written from numpy: each float32 as the shortest text that reads back as
    the same float32 (as TensorFlow Serving writes them), not as Python floats."""
    import orjson
    c = server["client"]
    x = images(4, seed=7)
    # The server's batch ran on one of the runtimes, which differ in the last bits: the
    # answer must be one of theirs exactly.
    candidates = [serving.load(server["base"] / "lenet5" / "1", runtime=r).predict(x)
                  for r in ("litert", "openvino", "tensorflow")]
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    got = np.asarray([p["probabilities"] for p in rows], np.float32)
    same = [w for w in candidates if np.array_equal(got, w["probabilities"])]
    assert same, [np.abs(got - w["probabilities"]).max() for w in candidates]
    want = same[0]
    assert [p["classes"] for p in rows] == want["classes"].tolist()
    as_python_floats = orjson.dumps({"predictions": [
        {"probabilities": p, "classes": k} for p, k in zip(want["probabilities"].tolist(),
                                                           want["classes"].tolist())]})
    assert len(r.content) < len(as_python_floats)
    r = c.post("/v1/models/lenet5/versions/1:predict", json={"inputs": x.tolist()})
    got = np.asarray(r.json()["outputs"]["probabilities"], np.float32)
    assert any(np.array_equal(got, w["probabilities"]) for w in candidates)


def test_answer_arrays_for_json():
    import ml_dtypes

    from zoo import server as srv
    half = np.array([[0.1, 0.25]], ml_dtypes.bfloat16)
    assert srv.dumps({"p": srv._answer_array(half)}) == b'{"p":[[0.100097656,0.25]]}'
    strided = np.arange(6, dtype=np.float32).reshape(2, 3).T          # not C-contiguous
    assert (srv.dumps({"p": srv._answer_array(strided)})
            == b'{"p":[[0.0,3.0],[1.0,4.0],[2.0,5.0]]}')
    assert srv.dumps({"p": srv._answer_array(np.array([True, False]))}) == b'{"p":[true,false]}'
    assert srv.dumps({"p": srv._answer_array(np.float32([0.1]))}) == b'{"p":[0.1]}'
    assert srv.dumps({"p": srv._answer_array(np.int64([2**40]))}) == b'{"p":[1099511627776]}'


def test_nan_and_infinities_are_written_as_tensorflow_serving_writes_them(tmp_path):
    """NaN, Infinity and -Infinity (TensorFlow Serving's JSON, read by Python's json), not
    null, in both formats; the finite numbers beside them as the shortest float32 text."""
    import json

    from zoo.server import dumps, handle_predict

    class Odd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32,
                                                    name="images")])
        def serve(self, images):
            x = images[:, 0, 0, 0]
            zero = x - x
            return {"values": tf.stack([tf.math.log(zero - 1.0), 1.0 / zero, -1.0 / zero,
                                        zero + 0.1], axis=1),
                    "scalar": 1.0 / zero}

    module = Odd()
    tf.saved_model.save(module, str(tmp_path / "odd" / "1"),
                        signatures={"serving_default": module.serve})
    odd = serving.load(tmp_path / "odd" / "1")
    text = dumps(handle_predict(odd, {"instances": [[[[1]]], [[[2]]]]}))
    assert text.count(b'"values":[NaN,Infinity,-Infinity,0.1]') == 2, text
    assert text.count(b'"scalar":Infinity') == 2 and b"null" not in text, text
    rows = json.loads(text)["predictions"]
    assert np.isnan(rows[0]["values"][0]) and rows[1]["values"][1:] == [np.inf, -np.inf, 0.1]
    text = dumps(handle_predict(odd, {"inputs": [[[[1]]]]}))
    assert b'"values":[[NaN,Infinity,-Infinity,0.1]]' in text, text
    assert b'"scalar":[Infinity]' in text, text


def test_gzip_request_bodies_are_read_as_tensorflow_serving_reads_them(server, local):
    """Content-Encoding: gzip bodies are decompressed (TensorFlow Serving does), within
    --max-request-mb once decompressed; other encodings get 415."""
    import gzip
    import json
    c = server["client"]
    x = images(2, seed=31)
    body = json.dumps({"instances": x.tolist()}).encode()
    want = local.predict(x)["probabilities"]
    big = images(3, seed=32, size=128)                   # over 64 KB compressed
    big_body = gzip.compress(json.dumps({"inputs": big.tolist()}).encode())
    assert len(big_body) > 64 * 1024
    for data, encoding in ((gzip.compress(body), "gzip"), (gzip.compress(body), "x-gzip"),
                           (gzip.compress(body[:40]) + gzip.compress(body[40:]), "GZIP")):
        r = c.post("/v1/models/lenet5:predict", content=data,
                   headers={"Content-Encoding": encoding})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]],
                                   want, atol=1e-6)
    r = c.post("/v1/models/lenet5:predict", content=big_body,
               headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"]["probabilities"],
                               local.predict(big)["probabilities"], atol=1e-6)
    for data, encoding, status, message in (
            (body, "gzip", 400, "not valid gzip data, as its Content-Encoding: gzip says"),
            (gzip.compress(body)[:30], "gzip", 400, "is truncated: 30 bytes end inside"),
            (gzip.compress(b" " * (LIMIT_MB * 1024 * 1024 + 1)), "gzip", 413,
             f"decompresses to more than the limit of {LIMIT_MB * 1024 * 1024} bytes"),
            (body, "br", 415, "unsupported Content-Encoding 'br' of the request body; zoo "
                              "serve reads 'gzip' or uncompressed ('identity') bodies")):
        r = c.post("/v1/models/lenet5:predict", content=data,
                   headers={"Content-Encoding": encoding})
        assert r.status_code == status, r.text
        assert message in r.json()["error"], r.json()
    r = c.post("/v1/models/lenet5:predict", content=body,
               headers={"Content-Encoding": "identity"})
    assert r.status_code == 200, r.text


def test_head_and_the_allow_header_of_405_answers(server):
    c = server["client"]
    r = c.head("/v1/models/lenet5")
    assert r.status_code == 200 and r.content == b""
    assert c.head("/v1/models/lenet5/versions/1/metadata").status_code == 200
    assert c.head("/v1/models/nope").status_code == 404
    for method, path, allowed in (("put", "/v1/models/lenet5", "GET, HEAD"),
                                  ("delete", "/v1/models/lenet5/metadata", "GET, HEAD"),
                                  # POST on the status and metadata endpoints (was a 404
                                  # "no such endpoint" naming :predict)
                                  ("post", "/v1/models/lenet5", "GET, HEAD"),
                                  ("post", "/v1/models/lenet5/versions/1/metadata",
                                   "GET, HEAD"),
                                  ("put", "/v1/models/lenet5:predict", "POST"),
                                  ("get", "/v1/models/lenet5:predict", "POST"),
                                  ("options", "/v1/models/lenet5/versions/1:predict", "POST"),
                                  # the endpoint of :predict/ (was "GET, HEAD")
                                  ("delete", "/v1/models/lenet5:predict/", "POST"),
                                  # version labels' paths (400 for the methods they take)
                                  ("put", "/v1/models/lenet5/labels/stable", "GET, HEAD"),
                                  ("delete", "/v1/models/lenet5/labels/a:predict", "POST")):
        r = c.request(method, path)
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["allow"] == allowed, (method, path)
        assert r.json()["error"], r.text
    # No endpoint, whatever the method, as POST answers an unknown verb (GET, PUT, ... were
    # 405 "allowed: POST")
    for method in ("get", "head", "put", "delete", "post"):
        for path in ("/v1/models/lenet5:explode", "/v1/models/lenet5/versions/1:explode/",
                     "/v1/models/a:b/c"):
            r = c.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert "allow" not in r.headers
            if method != "head":
                error = r.json()["error"]
                assert error.startswith("no such endpoint: ") and path in error, r.text
    r = c.post("/v1/models/lenet5/versions/1", json={"instances": [[[[0]]]]})
    assert r.json() == {"error": "use GET for /v1/models/lenet5/versions/1"}


def test_store_answers_with_the_loaded_version_while_a_new_one_loads(server, tmp_path,
                                                                     monkeypatch):
    """A new version loads in the background: requests without a version go on being
    answered by the loaded one (none waits for the load), and the status says LOADING."""
    import threading

    from zoo.server import ModelStore
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    store = ModelStore(tmp_path, jit_compile=False)
    assert store.get("m").version == 1
    release = threading.Event()
    real_load = serving.load

    def slow_load(path, **kwargs):
        if os.path.basename(path) == "2":
            assert release.wait(30)
        return real_load(path, **kwargs)

    monkeypatch.setattr(serving, "load", slow_load)
    shutil.copytree(tmp_path / "m" / "1", tmp_path / "m" / ".2")
    os.rename(tmp_path / "m" / ".2", tmp_path / "m" / "2")
    start = time.monotonic()
    assert store.get("m").version == 1 and store.loaded("m").version == 1
    assert time.monotonic() - start < 5
    assert [(s["version"], s["state"]) for s in store.status("m")["model_version_status"]] == [
        ("2", "LOADING"), ("1", "AVAILABLE")]
    release.set()
    deadline = time.monotonic() + 30
    while store.loaded("m").version != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.get("m").version == 2
    assert [s["state"] for s in store.status("m")["model_version_status"]] == [
        "AVAILABLE", "AVAILABLE"]


def test_idle_connections_stay_open_longer_than_load_balancers_keep_theirs(tmp_path,
                                                                           monkeypatch):
    """uvicorn closes idle keep-alive connections after 5 s; a load balancer that keeps its
    own for 60 s (AWS's, nginx's) then reuses a closing one and answers 502."""
    import argparse

    import uvicorn

    from zoo import cli, server
    from zoo.serving import _seconds_arg
    args = cli.build_parser("serve").parse_args(["serve", str(tmp_path)])
    assert args.keep_alive_s == server.DEFAULT_KEEP_ALIVE_SECONDS == 75
    assert cli.build_parser("serve").parse_args(
        ["serve", str(tmp_path), "--keep-alive-s", "2.5"]).keep_alive_s == 2.5
    with pytest.raises(argparse.ArgumentTypeError,
                       match="expected a positive number of seconds; received '0'"):
        _seconds_arg("0")
    seen = []

    class Server:    # uvicorn's, recording its configuration instead of running
        def __init__(self, config):
            seen.append(config["timeout_keep_alive"])

        def run(self, sockets=None):
            pass

    monkeypatch.setattr(uvicorn, "Config", lambda app, **kwargs: kwargs)
    monkeypatch.setattr(uvicorn, "Server", Server)
    server.serve(tmp_path, port=free_port(), parse_workers=0)
    server.serve(tmp_path, port=free_port(), parse_workers=0, keep_alive_seconds=2.5)
    assert seen == [75, 2.5]
    with pytest.raises(ValueError, match="keep_alive_seconds must be a positive number of "
                                         "seconds. Received: 0"):
        server.serve(tmp_path, port=free_port(), parse_workers=0, keep_alive_seconds=0)


def test_a_version_spelt_with_leading_zeros_is_served_as_its_number(server, tmp_path):
    """TensorFlow Serving serves a version directory 00000123 (its example models' name) as
    version 123; zoo serve listed it so but loaded 123/, which is not there: state END,
    "no such SavedModel directory", and every request 503."""
    from zoo.server import ModelStore
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "00000123")
    store = ModelStore(tmp_path, jit_compile=False)
    assert store.get("m").version == 123 and store.get("m", 123).version == 123
    assert store.get("m").path == str(tmp_path / "m" / "00000123")
    assert store.status("m") == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]}
    assert store.failure("m", 123) is None


def test_a_model_directory_removed_is_freed_by_requests_for_other_models(server, tmp_path):
    """A whole model removed (or renamed) from the served directory is unloaded, as
    TensorFlow Serving unloads versions gone from disk, though no request names it again."""
    import gc
    import weakref

    from zoo.server import ModelStore
    for name in ("a", "b"):
        shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / name / "1")
    store = ModelStore(tmp_path, jit_compile=False)
    store.SWEEP_SECONDS = 0      # every request checks the other models' directories
    enabled = gc.isenabled()
    gc.disable()            # no collection but the store's own
    try:
        gone = weakref.ref(store.get("a"))
        assert store.get("b").version == 1 and gone() is not None
        os.rename(tmp_path / "a", tmp_path / ".a-old")
        assert store.get("b").version == 1
        assert gone() is None
        assert store.loaded("b").version == 1
        assert [s["state"] for s in store.status("b")["model_version_status"]] == [
            "AVAILABLE"]
    finally:
        if enabled:
            gc.enable()


def test_status_of_a_model_added_while_serving_is_loading_until_it_loads(server, tmp_path,
                                                                       monkeypatch):
    """A model that appears while the server runs is not AVAILABLE before it has loaded:
    asking for its status loads it in the background (LOADING), and one that cannot load
    goes to END, never through AVAILABLE, as a readiness check would otherwise see it."""
    import threading

    from zoo.server import ModelStore
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "good" / "1")
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    store = ModelStore(tmp_path, jit_compile=False)
    release = threading.Event()
    real_load = serving.load

    def slow_load(path, **kwargs):
        if "good" in str(path):
            assert release.wait(30)
        return real_load(path, **kwargs)

    monkeypatch.setattr(serving, "load", slow_load)

    def states(name, version=None):
        return [(s["version"], s["state"])
                for s in store.status(name, version)["model_version_status"]]

    assert states("good") == [("1", "LOADING")]
    assert states("good", 1) == [("1", "LOADING")]
    release.set()
    deadline = time.monotonic() + 30
    while states("good") != [("1", "AVAILABLE")]:
        assert states("good") == [("1", "LOADING")]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.loaded("good").version == 1

    seen = [states("bad")]
    while seen[-1] != [("1", "END")]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
        seen.append(states("bad"))
    assert set(map(tuple, seen)) <= {(("1", "LOADING"),), (("1", "END"),)}, seen
    assert store.status("bad")["model_version_status"][0]["status"]["error_message"].startswith(
        "model 'bad' version 1 could not be loaded: ")


def test_a_model_directory_without_versions_is_not_listed_as_known(tmp_path):
    from zoo.server import ModelStore, ServingError
    (tmp_path / "empty").mkdir()
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"")
    store = ModelStore(tmp_path)
    with pytest.raises(ServingError) as err:
        store.resolve("empty")
    assert (err.value.status, err.value.message) == (404, (
        "Servable not found for request: model 'empty' (its directory holds no version yet, "
        "such as 1/saved_model.pb; known models: m)"))
    with pytest.raises(ServingError) as err:
        store.resolve("nope")
    assert err.value.message == ("Servable not found for request: model 'nope' (no versions "
                                 "of it in the served directory; known models: m)")


def test_serve_names_the_models_it_serves_and_those_it_cannot(server, tmp_path, capsys,
                                                             monkeypatch):
    """A model that cannot load does not keep the others from serving; the start-up lines
    count only the models that answer, and name the others."""
    import uvicorn

    from zoo import server as zoo_server
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "good" / "1")
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (tmp_path / "empty").mkdir()
    stores = []

    class Server:    # uvicorn's, keeping the application instead of running it
        def __init__(self, config):
            stores.append(config["app"].state.store)

        def run(self, sockets=None):
            pass

    monkeypatch.setattr(uvicorn, "Config", lambda app, **kwargs: dict(kwargs, app=app))
    monkeypatch.setattr(uvicorn, "Server", Server)
    port = free_port()
    zoo_server.serve(tmp_path, port=port, parse_workers=0, jit_compile=False)
    out, err = capsys.readouterr()
    assert out == (f"zoo serve: 1 model(s) under {tmp_path} (good) at "
                   f"http://127.0.0.1:{port}/v1/models/NAME\n")
    assert ("zoo serve: not loaded (GET /v1/models/NAME gives the error; tried again once "
            "their files change): broken\n") in err
    assert ("zoo serve: no versions yet (NAME/VERSION/saved_model.pb, VERSION an integer): "
            "empty\n") in err
    (store,) = stores
    assert store.loaded("good").version == 1
    assert store.status("broken")["model_version_status"][0]["state"] == "END"


def test_an_ipv6_host_is_announced_and_named_in_brackets(tmp_path, capsys, monkeypatch):
    """``--host ::1``: the address announced is a URL (``http://[::1]:PORT/...``; was
    ``http://::1:PORT/...``), and so is the one a bind error names."""
    import uvicorn

    from zoo import server as zoo_server
    with socket.socket(socket.AF_INET6) as taken:
        try:
            taken.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as exc:
            zoo_server.serve(tmp_path, host="::1", port=port, parse_workers=0)
        assert str(exc.value) == f"cannot listen on [::1]:{port}: Address already in use"

    class Server:    # uvicorn's, without running
        def __init__(self, config):
            pass

        def run(self, sockets=None):
            pass

    monkeypatch.setattr(uvicorn, "Config", lambda app, **kwargs: kwargs)
    monkeypatch.setattr(uvicorn, "Server", Server)
    zoo_server.serve(tmp_path, host="::1", port=port, parse_workers=0)
    assert capsys.readouterr().out == (f"zoo serve: 0 model(s) under {tmp_path} (none yet) "
                                       f"at http://[::1]:{port}/v1/models/NAME\n")


def test_a_version_replaced_on_disk_is_loaded_again_at_the_next_poll(server, tmp_path,
                                                                     caplog):
    """zoo export --overwrite swaps another model in under a loaded version: the next poll
    loads it again in the background (the copy loaded before answers meanwhile), and it
    answers from then on. Replaced by files that do not load, the copy loaded before goes
    on answering, with a warning, and the files are not tried again until they change."""
    import logging

    from zoo.server import ModelStore
    shutil.copytree(server["base"] / "lenet5" / "1", tmp_path / "m" / "1")
    store = ModelStore(tmp_path, jit_compile=False)
    x = images(3, seed=4)
    first = store.get("m")
    before = first.predict(x)["probabilities"]
    store.poll()                                  # nothing changed: nothing loads
    assert not store._background and store.loaded("m") is first
    tf.keras.utils.set_random_seed(21)
    zoo.export(zoo.lenet5(variant="modern"), tmp_path, name="m", version=1, overwrite=True,
               info=INFO)
    want = serving.load(tmp_path / "m" / "1", jit_compile=False).predict(x)["probabilities"]
    assert np.abs(want - before).max() > 1e-3
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        store.poll()
        _wait(lambda: store.loaded("m") is not first and not store._background)
    np.testing.assert_allclose(store.get("m").predict(x)["probabilities"], want, atol=1e-6)
    assert "model 'm' version 1 was replaced on disk: reloaded" in caplog.text
    assert [(s["version"], s["state"]) for s in store.status("m")["model_version_status"]] == [
        ("1", "AVAILABLE")]

    second = store.loaded("m")
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        store.poll()
        _wait(lambda: not store._background)
        store.poll()                              # the same broken files: not tried again
        assert not store._background
    assert caplog.text.count("model 'm' version 1 was replaced on disk but could not be "
                             "loaded (the model loaded before goes on answering): ") == 1
    assert store.loaded("m") is second and store.get("m") is second
