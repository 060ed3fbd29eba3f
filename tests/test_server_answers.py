"""zoo.server in-process, without a model or a server process: the answer forms of
``:predict`` (TensorFlow Serving's row and columnar formats, one output or several) and the
version a request without one is answered by."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("fastapi")

from zoo.server import ModelStore, ServingError, dumps, handle_predict  # noqa: E402


class FakeServable:
    """A model of ``outputs`` whose every output is the images' pixel sums times a factor."""

    input_name = "images"
    signature_names = ("serving_default", "other")
    channels = 1

    def __init__(self, *outputs):
        self.outputs = outputs
        self.signatures = []

    def predict(self, images, batch_size=None, *, signature_name=None):
        self.signatures.append(signature_name)
        sums = np.asarray(images, np.float32).reshape(len(images), -1).sum(1)
        return {name: sums * (i + 1) for i, name in enumerate(self.outputs)}


IMAGES = [[[[1.0], [2.0]], [[3.0], [4.0]]], [[[0.0], [0.0]], [[0.0], [0.5]]]]


def answer(servable, payload):
    """The JSON answer as a client reads it."""
    return json.loads(dumps(handle_predict(servable, payload)))


def test_one_output_is_answered_without_its_name_in_both_formats():
    servable = FakeServable("probabilities")
    assert answer(servable, {"instances": IMAGES}) == {"predictions": [10.0, 0.5]}
    assert answer(servable, {"inputs": IMAGES}) == {"outputs": [10.0, 0.5]}


def test_several_outputs_are_rows_of_named_values_or_named_columns():
    servable = FakeServable("probabilities", "classes")
    assert answer(servable, {"instances": IMAGES}) == {"predictions": [
        {"probabilities": 10.0, "classes": 20.0}, {"probabilities": 0.5, "classes": 1.0}]}
    assert answer(servable, {"inputs": {"images": IMAGES}}) == {"outputs": {
        "probabilities": [10.0, 0.5], "classes": [20.0, 1.0]}}


def test_an_empty_signature_name_is_the_default_one():
    servable = FakeServable("probabilities")
    handle_predict(servable, {"signature_name": "", "instances": IMAGES})
    handle_predict(servable, {"instances": IMAGES})
    handle_predict(servable, {"signature_name": "other", "inputs": IMAGES})
    assert servable.signatures == ["serving_default", "serving_default", "other"]


@pytest.mark.parametrize("payload, ending", [
    ({"instances": IMAGES, "inputs": IMAGES}, "; it has both"),
    ({"signature_name": "other"}, "; it has neither (its keys: 'signature_name')"),
    ({"instance": IMAGES, "signature_name": ""}, "; it has neither (its keys: 'instance', "
                                                 "'signature_name')"),
    ({}, "; it has neither"),
])
def test_exactly_one_of_instances_and_inputs(payload, ending):
    with pytest.raises(ServingError) as info:
        handle_predict(FakeServable("probabilities"), payload)
    assert info.value.status == 400
    assert info.value.message == ("the request must contain exactly one of 'instances' (row "
                                  "format) or 'inputs' (columnar format)" + ending)


def _versions(base, name, versions):
    for v in versions:
        os.makedirs(base / name / str(v))
        (base / name / str(v) / "saved_model.pb").write_bytes(b"")


def test_the_newest_version_that_may_load_answers_and_others_must_exist(tmp_path):
    _versions(tmp_path, "m", [1, 3, 10])
    (tmp_path / "m" / "20").mkdir()                  # no saved_model.pb: not a version
    store = ModelStore(str(tmp_path))
    assert store.resolve("m") == 10                   # 10 > 3 as numbers, not as text
    assert store.resolve("m", 3) == 3
    store._failed[("m", 10)] = ("could not be loaded", store._stamp("m", 10))
    assert store.resolve("m") == 3                    # the newest that may still load
    store._failed[("m", 3)] = ("could not be loaded", store._stamp("m", 3))
    store._failed[("m", 1)] = ("could not be loaded", store._stamp("m", 1))
    assert store.resolve("m") == 10                   # none may: the newest on disk
    with pytest.raises(ServingError) as info:
        store.resolve("m", 2)
    assert info.value.status == 404
    assert info.value.message == ("Servable not found for request: model 'm' version 2 "
                                  "(available versions: 1, 3, 10)")
    with pytest.raises(ServingError) as info:
        store.resolve("other")
    assert info.value.status == 404 and "known models: m)" in info.value.message


def test_a_version_spelt_twice_is_one_version(tmp_path):
    """2 and 02 are both version 2 (as for TensorFlow Serving): listed once, not twice."""
    from zoo.export import list_versions, version_path
    _versions(tmp_path, "m", [1, 2])
    (tmp_path / "m" / "02").mkdir()
    (tmp_path / "m" / "02" / "saved_model.pb").write_bytes(b"")
    assert list_versions(tmp_path / "m") == [1, 2]
    assert version_path(tmp_path / "m", 2) == str(tmp_path / "m" / "2")   # its own spelling
    store = ModelStore(str(tmp_path))
    for v in (1, 2):   # (no load started in the background by the status)
        store._failed[("m", v)] = ("could not be loaded", store._stamp("m", v))
    assert [s["version"] for s in store.status("m")["model_version_status"]] == ["2", "1"]
    with pytest.raises(ServingError) as info:
        store.resolve("m", 3)
    assert info.value.message.endswith("(available versions: 1, 2)")


def test_a_version_that_failed_to_load_is_end_with_its_error(tmp_path):
    _versions(tmp_path, "m", [1, 2])
    store = ModelStore(str(tmp_path))
    for v in (1, 2):
        store._failed[("m", v)] = (f"version {v} could not be loaded", store._stamp("m", v))
    ended = [{"version": str(v), "state": "END",
              "status": {"error_code": "UNKNOWN",
                         "error_message": f"version {v} could not be loaded"}} for v in (2, 1)]
    assert store.status("m") == {"model_version_status": ended}
    assert store.status("m", 1) == {"model_version_status": ended[1:]}


def test_an_unknown_signature_name_is_a_400_naming_the_models_signatures():
    with pytest.raises(ServingError) as info:
        handle_predict(FakeServable("probabilities"), {"signature_name": "classify",
                                                       "instances": IMAGES})
    assert info.value.status == 400
    assert info.value.message == ("signature_name 'classify' not found; this model has: "
                                  "serving_default, other")


@pytest.mark.parametrize("payload, message", [
    ({"instances": [{"images": IMAGES[0], "labels": 1}]},
     "instances[0]: named inputs must be exactly {\"images\": ...}; received keys ['images', "
     "'labels']"),
    ({"inputs": {"images": IMAGES, "labels": [1, 2]}},
     "'inputs' must name the signature's input {\"images\": ...}; received keys ['images', "
     "'labels']"),
])
def test_a_named_input_beside_the_models_own_is_refused(payload, message):
    """Not ignored: a model of one input given two was asked something it cannot answer."""
    with pytest.raises(ServingError) as info:
        handle_predict(FakeServable("probabilities"), payload)
    assert (info.value.status, info.value.message) == (400, message)


def test_a_gzip_body_may_decompress_to_exactly_the_limit():
    import gzip

    from zoo.server import gunzip_body
    body = b"[" + b"0," * 49 + b"0]"                  # 101 bytes
    assert gunzip_body(gzip.compress(body), 101) == body
    with pytest.raises(ServingError) as info:
        gunzip_body(gzip.compress(body), 100)
    assert info.value.status == 413


def _b64_image(shape, format="PNG", frames=1) -> str:
    import base64
    import io

    from PIL import Image
    images = [Image.fromarray(np.full(shape, 25 * i, np.uint8)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format=format, save_all=frames > 1, append_images=images[1:])
    return base64.b64encode(buffer.getvalue()).decode()


def test_b64_images_may_decode_to_at_most_the_limit_of_pixels():
    """As a gzip body may decompress to at most the request limit: a few hundred KB of PNGs
    of zeros hold gigabytes of pixels, which were decoded and predicted (six 9000x9000 ones
    in a 630 KB body: 13 s and 3 GB). Sizes come from the headers, before any decoding."""
    servable = FakeServable("probabilities")
    payload = {"instances": [{"b64": _b64_image((10, 10))}] * 3}     # 3 x 100 bytes
    assert len(json.loads(dumps(handle_predict(servable, payload, max_image_bytes=300)))[
        "predictions"]) == 3
    with pytest.raises(ServingError) as info:
        handle_predict(servable, payload, max_image_bytes=299)
    assert (info.value.status, info.value.message) == (
        413, "instances[2]: the request's images decode to more than the limit of 299 bytes "
             "of pixels (10x10x1 here, 300 bytes so far)")
    # TensorFlow's GIF decoder decodes every frame: each counts, as far as the limit
    servable.channels = 3
    for frames, limit, shown, taken in ((3, 899, "3 frames", 900),
                                        (9, 1000, "more than 4 frames", 1500)):
        payload = {"inputs": {"images": [{"b64": _b64_image((10, 10), "GIF", frames)}]}}
        with pytest.raises(ServingError) as info:
            handle_predict(servable, payload, max_image_bytes=limit)
        assert (info.value.status, info.value.message) == (
            413, f"inputs[0]: the request's images decode to more than the limit of {limit} "
                 f"bytes of pixels (10x10x3 in {shown} here, {taken} bytes so far)")


def test_b64_values_are_read_as_tensorflow_serving_reads_them():
    """Its decoder (absl's Base64Unescape) skips whitespace anywhere and takes the padding
    left out, or ``.`` for ``=``: line-wrapped base64 (``base64`` without ``-w0``, Python's
    ``base64.encodebytes``) and unpadded base64 were refused with 400. Other alphabets,
    wrong padding and stray characters still are, naming what is wrong."""
    import base64

    servable = FakeServable("probabilities")
    image = _b64_image((5, 5))
    raw = base64.b64decode(image)
    assert image.endswith("=")   # (padded, so leaving it out is a different string)
    want = answer(servable, {"instances": [{"b64": image}]})
    for text in (base64.encodebytes(raw).decode(), image.rstrip("="),
                 image.replace("=", "."), " " + image[:5] + "\r\n\t" + image[5:] + " \n"):
        assert answer(servable, {"instances": [{"b64": text}]}) == want
        assert answer(servable, {"inputs": {"images": [{"b64": text}]}}) == {
            "outputs": want["predictions"]}
    for text, problem in [
            (image.rstrip("=") + "===", f"{len(image.rstrip('='))} base64 characters "
                                        f"followed by 3 padding characters, where "
                                        f"{image.count('=')} or none fit"),
            (image.rstrip("=") + "A" * (5 - len(image.rstrip("=")) % 4),
             f"{len(image.rstrip('=')) + 5 - len(image.rstrip('=')) % 4} base64 characters, "
             f"which encode no whole number of bytes"),
            ("ab-_", "it holds '-'; base64 is A-Z, a-z, 0-9, + and /, with = padding at the end"),
            ("AA=A", "it holds '='; base64 is A-Z, a-z, 0-9, + and /, with = padding at the end"),
    ]:
        with pytest.raises(ServingError) as info:
            handle_predict(servable, {"instances": [IMAGES[0], {"b64": text}]})
        assert (info.value.status, info.value.message) == (
            400, f"instances[1]: invalid base64 data ({problem})")


@pytest.mark.parametrize("options", [{}, {"comment": b"zoo"}, {"loop": 0, "duration": 40},
                                     {"disposal": 2}, {"optimize": False}])
def test_gif_frames_are_counted_from_their_blocks_as_pillow_counts_them(options):
    """Without decoding them, in ~0.4 us a frame (Pillow's n_frames: ~50 us)."""
    import base64
    import io

    from PIL import Image

    from zoo.server import _gif_frames
    rng = np.random.RandomState(0)
    for frames, shape in ((1, (5, 5)), (3, (10, 10)), (7, (30, 40)), (4, (8, 8, 3))):
        images = [Image.fromarray(rng.randint(0, 256, shape).astype(np.uint8))
                  for _ in range(frames)]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                       **options)
        data = buffer.getvalue()
        with Image.open(io.BytesIO(data)) as img:
            assert _gif_frames(data, 100) == img.n_frames == frames
        assert _gif_frames(data, 2) == min(frames, 2)
    for damaged in (b"", b"GIF89a", b"GIF89a" + b"\xff" * 20):   # the decoder says why
        assert _gif_frames(damaged, 5) == 1


def test_request_limits_and_version_numbers_before_any_model(tmp_path):
    """A body of exactly ``max_request_bytes`` is read (and answered 404: no such model), one
    byte more is a 413; a version of digits that are not ASCII is a 400."""
    fastapi_testclient = pytest.importorskip("fastapi.testclient")
    from zoo.server import create_app
    app = create_app(tmp_path, max_request_bytes=1000, preload=False, parse_workers=0,
                     poll_seconds=0, jit_compile=False)
    with fastapi_testclient.TestClient(app) as c:
        for size, status in ((1000, 404), (1001, 413)):
            body = b'{"instances": [' + b" " * (size - 18) + b'0]}'
            assert len(body) == size
            r = c.post("/v1/models/m:predict", content=body)
            assert r.status_code == status, r.text
        r = c.post("/v1/models/m/versions/\u00b2:predict", content=b'{"instances": [0]}')
        assert r.status_code == 400
        assert r.json()["error"] == "version must be a non-negative integer; received '\u00b2'"


def test_a_model_name_may_take_255_bytes_as_a_directory_name_may(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(ServingError) as info:
        store.resolve("m" * 255)
    assert info.value.status == 404
    for name in ("m" * 256, "é" * 128):   # bytes in UTF-8, not characters
        with pytest.raises(ServingError) as info:
            store.resolve(name)
        assert info.value.status == 400
        assert "(256 bytes)" in info.value.message and "at most 255 bytes" in info.value.message
