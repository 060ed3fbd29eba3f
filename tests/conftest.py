import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402
import re  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

TABLES = pathlib.Path(__file__).parent / "data" / "tables"


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_the_session(tmp_path_factory):
    """``tempfile``'s directory for the session's own process is a folder of pytest's base
    temporary directory (which pytest prunes): tensorflow-datasets leaves an empty
    ``mkdtemp("tfds")`` folder each time a mock builder looks for its metadata online, and
    AutoGraph a converted file per function, which piled up in /tmp run after run. The
    processes tests start (``zoo`` commands, servers, workers) inherit it as ``TMPDIR``."""
    import tempfile
    before, before_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = before
    if before_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before_env


@pytest.fixture(autouse=True)
def _same_random_state_for_every_test():
    """Each test starts from the same random state (``keras.utils.set_random_seed(0)``), so
    what it builds and trains does not depend on which tests ran before it in its xdist
    worker. A test asserting on a trained model's outcome (which epoch was best, say) passed
    or failed with the order of the run before."""
    import random
    import sys

    import numpy as np
    random.seed(0)
    np.random.seed(0)
    if "keras" in sys.modules:   # a test that never imports Keras is not made to
        sys.modules["keras"].utils.set_random_seed(0)
    yield


def deny_writes(monkeypatch, directory):
    """``directory`` without write permission, as ``chmod 555`` would make it for a user
    other than root (the tests may run as root, whom permissions do not stop)."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        os.path.abspath(path) != os.path.abspath(directory) and access(path, mode, **kw)))


def record_syncs_and_renames(monkeypatch) -> list:
    """Record, in order, each ``os.fsync`` (``("sync", the path of the file or directory)``)
    and each ``os.rename``/``os.replace`` (``("rename", source, target)``) from here on;
    returns the list the events go into (``fsync``'s paths are read from /proc/self/fd)."""
    events = []
    real_fsync = os.fsync

    def fsync(fd):
        events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    for name in ("rename", "replace"):
        def renamed(src, dst, *args, _real=getattr(os, name), **kwargs):
            events.append(("rename", os.fspath(src), os.fspath(dst)))
            return _real(src, dst, *args, **kwargs)
        monkeypatch.setattr(os, name, renamed)
    return events


def wait_for_marker(path, proc, what, seconds=240):
    """Wait until the subprocess ``proc`` has written the file ``path`` (the moment a test
    stops it at), or has ended; assert the file is there (``what``: what did not happen)."""
    import time
    deadline = time.monotonic() + seconds   # long: a busy machine
    while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.path.exists(path), what


@pytest.fixture(scope="session")
def published_table():
    """Read a published table from tests/data/tables as strings ("" for empty cells)."""

    def read(name):
        return pd.read_csv(TABLES / name, dtype=str, keep_default_na=False)

    return read


def subclassed_model(name):
    """A subclassed ``keras.Model`` of class ``Subclassed`` (one Dense layer): Keras defines
    no outputs for it, called or not."""
    import keras

    class Subclassed(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    return Subclassed(name=name)


def built_under_global_policy(policy, build):
    """``build()`` under Keras' global dtype policy ``policy`` (Keras' recipe for mixed
    precision on GPUs), set back to float32 afterwards; the output layer computes in
    ``policy`` too."""
    import keras
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[-1].dtype_policy.name == policy
    return model


# Pascal VOC's palette for its first classes and 255 (void), as its mask PNGs store them.
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]


def make_voc_folder(root, *, n, shape, object_size, ring, first, spread):
    """``root/images`` + ``root/masks`` in Pascal VOC's way: palette masks of classes 0, 1,
    2 (one square object of ``object_size`` per image, at ``first + i % spread``) with a
    ``ring``-pixel 255 band around it (0: none); an image's red channel is 40 + 60 * its
    class (band pixels: 250), with noise."""
    import numpy as np
    from PIL import Image
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros(shape, "uint8")
        top, left = first[0] + i % spread[0], first[1] + i % spread[1]
        if ring:
            mask[top - ring:top + object_size + ring, left - ring:left + object_size + ring] = 255
        mask[top:top + object_size, left:left + object_size] = 1 + i % 2
        image = rng.integers(0, 30, shape + (3,)).astype("uint8")
        image[..., 0] = np.where(mask == 255, 250, 40 + 60 * mask)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        im = Image.fromarray(mask, "P")
        im.putpalette(VOC_PALETTE)
        im.save(root / "masks" / f"{i:02d}.png")
    return root


def make_colour_folder(root, labels, shape, counts=(("train", 8), ("validation", 3),
                                                  ("test", 3))):
    """A tiny classification folder (``root/<split>/<label>/*.png``) whose classes differ by
    colour: class ``c``'s images are noise with 150 added to channel ``c``."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in counts:
        for c, label in enumerate(labels):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 80, (*shape[:2], 3)).astype(np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(root / split / label / f"{i}.png")
    return root


def randomise_batch_norms(model, seed=0):
    """Distinct batch-norm statistics (nested models' too), so that weights that land in
    the wrong layer, or are not a file's, change the outputs (fresh batch norms are all
    alike)."""
    import keras
    import numpy as np
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
    return model


def normalise_table(df):
    """Compare values, not typography: '3 (RGB)' -> '3', '1,000' -> '1000', case-insensitive."""
    out = df.copy()
    for col in out.columns:
        out[col] = [re.sub(r"\s*\(.*\)$", "", str(v)).replace(",", "").strip().lower()
                    for v in out[col]]
    return out.reset_index(drop=True)


def assert_same_values(table, expected):
    """``table``'s columns named in ``expected`` hold the same values, row for row."""
    assert normalise_table(table[expected.columns]).equals(normalise_table(expected))


# The deepest ResNets only add repeats of the blocks resnet50 / resnet50_v2 already cover
# (same builder, same block code); each takes minutes per whole-model test on 2 cores, so
# registry-wide tests run them with ZOO_FULL_TESTS=1 only.
DEEP_MODELS = {"resnet101", "resnet152", "resnet101_v2", "resnet152_v2"}
FULL_TESTS = bool(os.environ.get("ZOO_FULL_TESTS"))


def registry_params():
    """Every registered model as a pytest parameter; the deepest skipped unless FULL_TESTS."""
    import zoo
    return [pytest.param(n, marks=pytest.mark.skipif(
        n in DEEP_MODELS and not FULL_TESTS,
        reason="covered by resnet50/resnet50_v2; ZOO_FULL_TESTS=1 runs it"))
        for n in zoo.list_models()]


def pytest_collection_finish(session):
    """The objects alive once the test modules are imported (TensorFlow's, Keras', ...: some
    400,000) go to the garbage collector's permanent generation: every full collection
    (each ``keras.backend.clear_session()``, each trial of a search) scanned them all, about
    0.2-0.5 s each time. Objects the tests make are collected as before."""
    import gc
    gc.collect()
    gc.freeze()


def freeze_leftovers():
    """The objects alive now go to the garbage collector's permanent generation, as those of
    the imports do at collection (:func:`pytest_collection_finish`), once the garbage among
    them is collected. Earlier tests leave objects behind (a search some 20,000-30,000,
    TensorFlow graphs of its traced steps among them) and a search runs some 25 full
    collections (keras-tuner's before each model it builds, the zoo's after each trial, each
    ``clear_session``), each of which scanned them all: with 6 million such objects (0.33 s
    a collection), four search tests took 54 s instead of 27 s. Objects made afterwards are
    collected as before; what is frozen stays (a module fixture's data once it is done)."""
    import gc
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="module", autouse=True)
def _leftovers_frozen_per_module():
    """:func:`freeze_leftovers` as each test module begins: what the modules before it left
    in this worker process is not scanned by its tests' full collections (its own tests'
    leftovers are, up to the next module; the search tests freeze before each test)."""
    freeze_leftovers()
    yield


@pytest.fixture
def leftovers_frozen():
    """:func:`freeze_leftovers` before the test (module fixtures, set up before it, call it
    themselves)."""
    freeze_leftovers()
    yield
