"""Train/serve skew: the serving path's decoder (``zoo.serving.decode_image``, used by
``Servable.predict``, ``zoo predict`` and ``zoo serve``'s ``{"b64": ...}`` inputs) must give
the pixels the training pipeline of a ``folder:`` dataset (``zoo.data._decode`` in a
``tf.data`` map) gives for the same file, exactly.

Before serving decoded with the training pipeline's own function, Pillow's decoding
differed: every JPEG by up to 9 levels (Pillow's accurate IDCT against TensorFlow's
default fast one; for one channel also Pillow's RGB -> L against libjpeg's own luma), and
the grey conversion of RGB PNG, palette PNG, GIF and BMP by 1 level in 17-67% of pixels
(Pillow rounds, libpng and ``tf.image.rgb_to_grayscale`` truncate), which was a bias of
about half a level in the mean.
"""

import os
import struct
import zlib

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from PIL import Image, PngImagePlugin  # noqa: E402

from zoo import data, serving  # noqa: E402


def _photo(h, w, seed=0):
    """Gradients, hard colour edges and noise: content on which decoders disagree."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(x / 5.0 + y / 9.0)
    g = 128 + 90 * np.cos(y / 4.0) * np.sin(x / 11.0)
    b = 255.0 * ((x // 7 + y // 5) % 2)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _png16(path, arr16, color_type):
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB)."""
    h, w = arr16.shape[:2]
    raw = b"".join(b"\x00" + arr16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _build(d):
    """The files, odd-sized (37 wide, 53 high), in every form a dataset folder may hold."""
    h, w = 53, 37
    rgb = _photo(h, w)
    im = Image.fromarray(rgb)
    alpha = (np.arange(w)[None, :] * 7 % 256).repeat(h, 0).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    palette = im.quantize(64)
    gamma = PngImagePlugin.PngInfo()                   # a gAMA chunk of 1/2.2
    gamma.add(b"gAMA", (45455).to_bytes(4, "big"))
    exif = Image.Exif()
    exif[0x0112] = 6                                   # orientation: rotated 90 degrees
    files = {
        "baseline_q50.jpg": (im, {"quality": 50}),
        "baseline_q75.jpg": (im, {"quality": 75}),
        "baseline_q95.jpg": (im, {"quality": 95}),
        "big_q90.jpg": (Image.fromarray(_photo(96, 131, seed=1)), {"quality": 90}),
        "progressive.jpg": (im, {"quality": 85, "progressive": True}),
        "s444.jpg": (im, {"quality": 90, "subsampling": 0}),
        "s422.jpg": (im, {"quality": 90, "subsampling": 1}),
        "s420.jpg": (im, {"quality": 90, "subsampling": 2}),
        "grey.jpg": (im.convert("L"), {"quality": 85}),
        "cmyk.jpg": (im.convert("CMYK"), {"quality": 90}),
        "exif_orientation_6.jpg": (im, {"quality": 90, "exif": exif.tobytes()}),
        "rgb.png": (im, {}),
        "rgba.png": (rgba, {}),
        "palette.png": (palette, {}),
        "palette_transparent.png": (palette, {"transparency": 3}),
        "grey.png": (im.convert("L"), {}),
        "gamma.png": (im, {"pnginfo": gamma}),
        "grey_gamma.png": (im.convert("L"), {"pnginfo": gamma}),
        "bilevel.png": (im.convert("1"), {}),
        "grey16.png": (Image.fromarray((rgb[..., 0].astype(np.uint16) * 257
                                        + rgb[..., 1]).astype(np.uint16)), {}),
        "grey_alpha.png": (Image.merge("LA", (im.convert("L"), Image.fromarray(alpha))), {}),
        "photo.gif": (im, {}),
        "animated.gif": (im, {"save_all": True, "append_images": [Image.fromarray(255 - rgb)],
                              "duration": 100, "loop": 0}),
        "photo.bmp": (im, {}),
        "rgba.bmp": (rgba, {}),
        "palette.bmp": (palette, {}),                  # 8-bit, a colour table of 64
        "grey.bmp": (im.convert("L"), {}),             # 8-bit, a grey colour table
        "lossy.webp": (im, {"quality": 80}),
        "lossless.webp": (im, {"lossless": True}),
        "rgba.webp": (rgba, {"lossless": True}),
        "grey.webp": (im.convert("L"), {"quality": 80}),
    }
    paths = {}
    for name, (image, options) in files.items():
        paths[name] = os.path.join(d, name)
        image.save(paths[name], **options)
    paths["rgb16.png"] = os.path.join(d, "rgb16.png")
    _png16(paths["rgb16.png"], rgb.astype(np.uint16) * 257 + rgb[..., ::-1], 2)
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _build(str(tmp_path_factory.mktemp("skew")))


def _trained_on(path, channels):
    """The pixels ``zoo train --dataset folder:...`` trains on: zoo.data's decoding in a
    tf.data map, as the folder pipelines run it (a dataset of that many channels)."""
    ds = tf.data.Dataset.from_tensor_slices([str(path)]).map(
        lambda p: data._decode(p, channels))
    return next(iter(ds)).numpy()


NAMES = ["baseline_q50.jpg", "baseline_q75.jpg", "baseline_q95.jpg", "big_q90.jpg",
         "progressive.jpg", "s444.jpg", "s422.jpg", "s420.jpg", "grey.jpg", "cmyk.jpg",
         "exif_orientation_6.jpg", "rgb.png", "rgba.png", "palette.png",
         "palette_transparent.png", "grey.png", "gamma.png", "grey_gamma.png", "bilevel.png",
         "grey16.png", "rgb16.png",
         "grey_alpha.png", "photo.gif", "animated.gif", "photo.bmp", "rgba.bmp", "palette.bmp", "grey.bmp",
         "lossy.webp",
         "lossless.webp", "rgba.webp", "grey.webp"]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", NAMES)
def test_serving_decodes_the_pixels_training_read(files, name, channels):
    want = _trained_on(files[name], channels)
    for source in (files[name], open(files[name], "rb").read()):   # a path; b64 bytes
        got = serving.decode_image(source, channels)
        assert got.dtype == np.uint8 and got.shape == want.shape
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() == 0, (f"{name}, {channels} channel(s): max difference "
                                 f"{diff.max()}, mean {diff.mean():.3f}")


@pytest.mark.parametrize("name, channels", [("s420.jpg", 3), ("grey.jpg", 1),
                                            ("rgb.png", 3), ("grey.png", 1),
                                            ("grey16.png", 1), ("photo.gif", 3),
                                            ("photo.bmp", 3), ("palette.png", 3)])
def test_the_images_own_channels_decode_as_trained(files, name, channels):
    """``zoo predict`` decodes each file in its own channels (``channels=None``) and uses
    that array when the model takes as many: it must be the training pixels too."""
    got = serving.decode_image(files[name])
    np.testing.assert_array_equal(got, _trained_on(files[name], channels))


def test_an_animated_gif_is_its_first_frame_everywhere(files):
    with Image.open(files["animated.gif"]) as image:
        assert image.n_frames == 2
        first = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(_trained_on(files["animated.gif"], 3), first)
    np.testing.assert_array_equal(serving.decode_image(files["animated.gif"]), first)


def test_exif_orientation_is_ignored_as_in_training(files):
    """Training does not rotate by the EXIF orientation tag; serving must not either."""
    assert Image.open(files["exif_orientation_6.jpg"]).getexif()[0x0112] == 6
    got = serving.decode_image(files["exif_orientation_6.jpg"], 3)
    assert got.shape == (53, 37, 3)
    np.testing.assert_array_equal(got, serving.decode_image(files["s420.jpg"], 3))


def test_a_cmyk_jpeg_in_a_greyscale_dataset_is_its_colour_decode_turned_grey(files):
    """TensorFlow's JPEG decoder turns CMYK into RGB only ("Unsupported color conversion
    request" for one channel): a greyscale pipeline decodes it in colour and turns it grey,
    as it does GIF and BMP files, instead of failing the training."""
    grey = _trained_on(files["cmyk.jpg"], 1)
    rgb = _trained_on(files["cmyk.jpg"], 3)
    np.testing.assert_array_equal(grey, tf.image.rgb_to_grayscale(rgb).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError):      # the decoder's own refusal
        tf.io.decode_jpeg(open(files["cmyk.jpg"], "rb").read(), channels=1)


@pytest.mark.parametrize("name", ["palette.bmp", "grey.bmp"])
def test_an_8_bit_bmp_is_read_in_its_colour_tables_colours(files, name):
    """TensorFlow's BMP decoder reads an 8-bit BMP's palette indices as grey values: a
    palette BMP trained (and was served) as an image of its indices, every pixel off (by up
    to 128 levels here). Its indices are looked up in its colour table (grey for one
    channel); a grey BMP's table gives each index its own value."""
    with Image.open(files[name]) as image:
        assert image.mode == ("P" if name == "palette.bmp" else "L")
        colours = np.asarray(image.convert("RGB"))
    rgb = _trained_on(files[name], 3)
    np.testing.assert_array_equal(rgb, colours)
    np.testing.assert_array_equal(_trained_on(files[name], 1),
                                  tf.image.rgb_to_grayscale(colours).numpy())
    np.testing.assert_array_equal(serving.decode_image(files[name]),
                                  rgb if name == "palette.bmp" else rgb[..., :1])


def test_webp_decodes_as_its_colour_for_any_channel_count(files):
    """TensorFlow decodes WebP to its own channels only (3, or 4 with alpha): training reads
    it that way, drops the alpha and turns it grey for one channel; an RGBA result (no
    training equivalent) stays Pillow's."""
    rgb = _trained_on(files["rgba.webp"], 3)
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(files["rgba.webp"]))[..., :3])
    np.testing.assert_array_equal(_trained_on(files["rgba.webp"], 1),
                                  tf.image.rgb_to_grayscale(rgb).numpy())
    assert serving.decode_image(files["rgba.webp"]).shape == (53, 37, 4)


def test_a_served_jpeg_predicts_as_its_training_pixels(files, tmp_path):
    """End to end: an export of a 3-channel folder-trained model predicts a JPEG's bytes
    (as ``{"b64": ...}`` carries them) exactly as the pixels training read from it."""
    import keras

    import zoo
    info = data.DatasetInfo(name="folder:x", task="classification", num_classes=3,
                            labels=["a", "b", "c"], input_shape=(16, 16, 3),
                            mean=[120.0, 110.0, 100.0], std=[60.0, 60.0, 60.0],
                            raw_shape=(None, None, 3))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3),
                              keras.layers.Softmax()])
    zoo.export(model, tmp_path / "models", name="tiny", info=info)
    servable = serving.load(tmp_path / "models" / "tiny", runtime="tensorflow",
                            jit_compile=False)
    path = files["baseline_q95.jpg"]
    want = servable.predict(_trained_on(path, 3))["probabilities"]
    got = servable.predict(open(path, "rb").read())["probabilities"]
    np.testing.assert_array_equal(got, want)
    pillow = np.asarray(Image.open(path).convert("RGB"))
    assert not np.array_equal(servable.predict(pillow)["probabilities"], want)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_pillow_image_predicts_as_its_file(files, tmp_path, channels):
    """``Servable.predict`` of a 16-bit grey Pillow image reads its high byte, as the
    training pipeline (and a path or bytes) do: Pillow's own conversion clipped every
    value above 255, a white image (pixels off by up to 254, probabilities by up to 0.99)."""
    import keras

    import zoo
    info = data.DatasetInfo(name="folder:x", task="classification", num_classes=3,
                            labels=["a", "b", "c"], input_shape=(16, 16, channels),
                            mean=[120.0], std=[60.0], raw_shape=(None, None, channels))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, channels)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3),
                              keras.layers.Softmax()])
    zoo.export(model, tmp_path / "models", name="tiny", info=info, lite=False)
    servable = serving.load(tmp_path / "models" / "tiny", runtime="tensorflow",
                            jit_compile=False)
    path = files["grey16.png"]
    with Image.open(path) as image:
        assert image.mode.startswith("I")
        got = servable.predict(image)["probabilities"]
    want = servable.predict(_trained_on(path, channels))["probabilities"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(servable.predict(path)["probabilities"], want)


def _colour_jpeg_folder(root):
    rng = np.random.default_rng(0)
    for split in ("train", "validation", "test"):   # (train/ whole: the statistics' images)
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(3):
                small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(
                    root / split / label / f"{i}.jpg", quality=75)


def test_a_colour_folder_read_in_grey_trains_on_the_pixels_its_export_sees(tmp_path):
    """``zoo train --channels 1`` on a folder of colour JPEGs: the export takes the
    dataset's own 3 channels (``raw_shape``) and turns them grey in its graph, so ``zoo
    predict``, ``zoo serve`` (``{"b64": ...}``) and ``zoo evaluate`` decode the files in
    colour. Training and its statistics must read them alike; decoding them straight to grey
    (libjpeg's luma) trained on pixels up to 4 levels from what the export sees."""
    import keras

    import zoo
    _colour_jpeg_folder(tmp_path / "photos")
    name = f"folder:{tmp_path / 'photos'}"
    ds, info = data.load(name, "test", channels=1, image_size=(32, 32), shuffle=False,
                         batch_size=8)
    trained = np.concatenate([x.numpy() for x, _ in ds])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(2),
                              keras.layers.Softmax()])
    zoo.export(model, tmp_path / "models", name="tiny", info=info, lite=False)
    servable = serving.load(tmp_path / "models" / "tiny", runtime="tensorflow",
                            jit_compile=False)
    assert servable.channels == 3
    files = sorted((tmp_path / "photos" / "test").glob("*/*.jpg"))   # the pipeline's order
    raw = data.load_raw(name, "test", channels=servable.channels)
    for seen in ([servable._image_from(p) for p in files],                  # zoo predict
                 [servable._image_from(p.read_bytes()) for p in files],     # zoo serve b64
                 [x.numpy() for x, _ in raw.dataset]):                      # zoo evaluate
        pixels = data.preprocess(np.stack(seen).astype("float32"), info).numpy()
        np.testing.assert_allclose(pixels * info.std[0], trained * info.std[0], rtol=0,
                                   atol=1e-3)
    np.testing.assert_allclose(servable.predict([str(p) for p in files])["probabilities"],
                               model.predict(trained, verbose=0), rtol=0, atol=1e-5)
    train_files = sorted((tmp_path / "photos" / "train").glob("*/*.jpg"))
    colour = np.stack([serving.decode_image(p, 3) for p in train_files])
    grey = data.convert_channels(colour, 1).numpy().astype("float64")
    assert info.mean == pytest.approx([grey.mean()], abs=1e-3)


def test_a_grey_folder_read_in_colour_trains_on_the_pixels_its_export_sees(tmp_path):
    """``zoo train --channels 3`` on a folder whose training images are grey: the export
    takes one channel and tiles it, so a colour file among them (here in the test split,
    which the folder's channels are not measured on) is served grey. Training read that
    file in colour when it decoded the files straight to the model's channels."""
    import keras

    import zoo
    rng = np.random.default_rng(0)
    for i, mode in enumerate(("L", "L", "L", "L", "RGB", "L")):
        folder = tmp_path / "grey" / ("train" if i < 4 else "test") / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).resize(
            (14, 12)).convert(mode).save(folder / f"{i}.png")
    name = f"folder:{tmp_path / 'grey'}"
    ds, info = data.load(name, "test", channels=3, image_size=(12, 14), shuffle=False)
    trained = np.concatenate([x.numpy() for x, _ in ds])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 14, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2), keras.layers.Softmax()])
    zoo.export(model, tmp_path / "models", name="tiny", info=info, lite=False)
    servable = serving.load(tmp_path / "models" / "tiny", runtime="tensorflow",
                            jit_compile=False)
    assert servable.channels == 1
    files = sorted((tmp_path / "grey" / "test").glob("*/*.png"))
    seen = np.stack([servable._image_from(p) for p in files]).astype("float32")
    np.testing.assert_allclose(data.preprocess(seen, info).numpy() * info.std[0],
                               trained * info.std[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(servable.predict([str(p) for p in files])["probabilities"],
                               model.predict(trained, verbose=0), rtol=0, atol=1e-5)
