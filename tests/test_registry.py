import os
import re

import pytest

import zoo
from zoo import common
from zoo.registry import register


def test_list_models_and_pattern():
    names = zoo.list_models()
    assert names == sorted(names)
    assert {"lenet5", "alexnet"} <= set(names)
    assert zoo.list_models("lenet*") == ["lenet5"]
    assert zoo.list_models("nothing*") == []
    assert zoo.list_models("") == []   # a pattern no name matches; None is every model


def test_unknown_name_names_closest():
    with pytest.raises(ValueError, match=r"Unknown model 'alexnett'.*Did you mean: alexnet"):
        zoo.get_model("alexnett")


def test_get_model_passes_the_builders_name_argument():
    # every builder takes name=...; get_model's own first parameter must not catch it
    assert zoo.get_model("lenet5", name="digits_net").name == "digits_net"


def test_duplicate_registration_refused(monkeypatch):
    from zoo import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError) as e:
        @register(family="lenet", paper="x", year=1, default_input_shape=(32, 32, 1),
                  min_input_size=32)
        def lenet5():  # noqa: F811
            pass
    assert str(e.value) == "Model name 'lenet5' is already registered (by zoo.models.lenet)."

    @register(family="lenet", paper="x", year=1, default_input_shape=(32, 32, 1),
              min_input_size=32)
    def dup_probe():
        pass
    with pytest.raises(ValueError, match=r"'dup_probe' is already registered \(by test_registry"):
        register(family="lenet", paper="x", year=1, default_input_shape=(32, 32, 1),
                 min_input_size=32)(dup_probe)
    assert zoo.model_info("dup_probe").paper == "x"
    assert zoo.get_model("dup_probe") is None and "dup_probe" in zoo.list_models("dup*")


def test_builtin_takes_only_the_catalogs_builders():
    from zoo.registry import builtin

    def lenet5():
        pass
    with pytest.raises(ValueError, match=r"test_registry\.lenet5 is not a built-in builder of "
                                         r"zoo\.catalog .*register a builder of one's own"):
        builtin(lenet5)


def test_catalog_agrees_with_the_builders_modules():
    """The metadata ``zoo list`` reads without Keras (zoo.catalog) against what the builders'
    modules derive: minimum input sizes from the layer data, published weights."""
    import importlib

    from zoo import catalog
    from zoo.models import alexnet, inception, lenet, resnet, unet, xception
    assert list(catalog.MODULES) == list(catalog.INFO)
    assert all(info.name == name for name, info in catalog.INFO.items())
    for name, module in catalog.MODULES.items():
        builder = getattr(importlib.import_module(module), name)
        assert builder is zoo.registry.get_builder(name) is getattr(zoo, name)
        assert builder.zoo_info is catalog.INFO[name] is zoo.model_info(name)
    derived = {"lenet5": lenet.MIN_SIZE, "alexnet": alexnet.MIN_SIZE,
               "googlenet": inception.GOOGLENET_MIN_SIZE,
               "inception_v3": inception.INCEPTION_V3_MIN_SIZE, "xception": xception.MIN_SIZE,
               "unet": unet.MIN_SIZE, **resnet.MIN_SIZES}
    assert {n: i.min_input_size for n, i in catalog.INFO.items()} == derived
    assert catalog.INFO["unet"].default_input_shape == unet.DEFAULT_INPUT_SHAPE
    for name in resnet.MIN_SIZES:
        assert catalog.INFO[name].default_input_shape == resnet.DEFAULT_SHAPE
        assert catalog.INFO[name].weights == (("imagenet",) if name in resnet.WEIGHT_FILES
                                              else ()), name


def test_zoo_list_and_model_info_load_no_keras():
    """``zoo list``, ``list_models`` and ``model_info`` read zoo.catalog: no TensorFlow or
    Keras (~5 s) until a builder is asked for."""
    import subprocess
    import sys
    code = ("import sys, zoo\n"
            "from zoo import get_model, layer_table\n"
            "from zoo.cli import main\n"
            "print(zoo.list_models('lenet*'), zoo.model_info('unet').task)\n"
            "try:\n"
            "    code = main(['list', 'resnet5*'])\n"
            "except SystemExit as exit:\n"
            "    code = exit.code\n"
            "print('exit', code or 0)\n"
            "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
            "from zoo import lenet5\n"
            "print(lenet5.zoo_info.min_input_size, 'keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120,
                         check=True).stdout.splitlines()
    assert out[0] == "['lenet5'] segmentation"
    assert out[1].startswith("| name ") and out[3].startswith("| resnet50 ")
    assert out[-3:] == ["exit 0", "[]", "32 True"]


def test_model_info_fields():
    info = zoo.model_info("lenet5")
    assert (info.paper.startswith("LeCun"), info.year, info.task) == (True, 1998, "classification")
    assert info.default_input_shape == (32, 32, 1)
    assert info.min_input_size == 32
    assert zoo.model_info("alexnet").min_input_size == 67
    assert zoo.model_info("alexnet").params == 62_378_344


def test_builders_importable_from_package():
    from zoo import alexnet, lenet5
    assert lenet5 is zoo.registry.get_builder("lenet5")
    assert alexnet.zoo_info.name == "alexnet"
    with pytest.raises(AttributeError):
        zoo.no_such_builder  # noqa: B018


@pytest.mark.parametrize("ops,expected", [
    ([(3, 1, "valid")] * 3, 7),           # three valid 3x3 convs need 7 pixels
    ([(2, 2, "valid")] * 2, 4),
    ([(3, 1, "valid"), (2, 2, "valid"), (3, 2, "same")], 4),
])
def test_min_input_size_inverts_output_formula(ops, expected):
    assert common.min_input_size(ops) == expected
    size = expected
    for k, s, p in ops:
        size = common.conv_output_size(size, k, s, p)
    assert size == 1
    size = expected - 1
    for k, s, p in ops:
        size = common.conv_output_size(size, k, s, p)
    assert size < 1


def test_message_helpers_clip_text_and_name_an_exception_in_one_line():
    assert common.clip_text("x" * 80) == "x" * 80
    assert common.clip_text("x" * 81) == "x" * 77 + "..."
    assert common.clip_text("abcdef", 5) == "ab..."
    assert common.exception_line(ValueError("\n  first\nsecond")) == "ValueError: first"
    assert common.exception_line(KeyError()) == "KeyError: "
    assert [common.is_digits(t) for t in ("0", "12", "\u00b2", "\u0661", "", "1a")] == [
        True, True, False, False, False, False]


def test_image_signatures_of_the_formats_tensorflow_decodes():
    assert common.has_image_signature(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
    assert common.has_image_signature(b"RIFF\x24\x00\x00\x00WEBPVP8 ")
    assert not common.has_image_signature(b"RIFF\x24\x00\x00\x00WAVEfmt ")   # a sound
    assert not common.has_image_signature(b"GIF88a\x00\x00\x00\x00\x00\x00")


def test_seeds_run_from_0_to_2_32_minus_1():
    assert common.check_seed(0) == 0 and common.check_seed(2 ** 32 - 1) == 2 ** 32 - 1
    for seed in (-1, 2 ** 32):
        with pytest.raises(ValueError, match=rf"^seed must be an integer between 0 and "
                                             rf"2\*\*32 - 1\. Received: seed={seed}$"):
            common.check_seed(seed)


def test_model_info_table_lists_every_model():
    df = zoo.registry.model_info_table()
    assert list(df["name"]) == zoo.list_models()
    assert df.loc[df.name == "alexnet", "params"].item() == 62_378_344


def test_model_info_table_holds_plain_counts_and_shows_them_for_people():
    df = zoo.registry.model_info_table("resnet1[08]*")   # resnet101, resnet101_v2, resnet18
    counts = df.set_index("name")[["params", "trainable params"]]
    assert counts.loc["resnet101"].tolist() == [44_707_176, 44_601_832]
    # Only the trainable count is published for resnet18.
    assert counts["params"].isna().tolist() == [False, False, True]
    assert counts.loc["resnet18", "trainable params"] == 11_689_512
    markdown = zoo.tables.to_text(df, "markdown")
    assert "|  44,707,176 |" in markdown and "| 11,689,512* |" in markdown
    assert "trainable params" not in markdown
    assert markdown.endswith("\n\n\\* trainable parameters, the only count the source publishes")
    csv = zoo.tables.to_text(df, "csv").splitlines()
    assert csv[1].startswith("resnet101,classification,224x224x3,1,44707176,44601832,")
    assert csv[3].startswith("resnet18,classification,224x224x3,1,,11689512,")


def test_markdown_shows_text_as_written():
    """Numbers a command formatted as text (zoo predict's probabilities) keep their digits:
    tabulate would read "1.0000" as the number 1 and show "1"."""
    import pandas as pd
    df = pd.DataFrame({"image": ["a.png", ""], "rank": [1, 2], "label": ["7", "cat"],
                       "probability": ["1.0000", "0.0000"], "share": [0.25, 0.5]})
    lines = zoo.tables.to_text(df, "markdown").splitlines()
    assert lines[1] == "|:--------|-------:|:--------|--------------:|--------:|"
    assert lines[2] == "| a.png   |      1 | 7       |        1.0000 |    0.25 |"
    assert lines[3] == "|         |      2 | cat     |        0.0000 |     0.5 |"


def test_markdown_escapes_pipes_in_cells_and_column_names():
    """An image file named ``a|b.png`` split zoo predict's markdown row into one cell more;
    the pipe is written ``\\|``, as markdown tables escape it (csv keeps it as it is)."""
    import pandas as pd
    df = pd.DataFrame({"image": ["a|b.png", "c.png"], "rank": [1, 1], "x|y": ["|", "z"]})
    lines = zoo.tables.to_text(df, "markdown").splitlines()
    assert lines[0] == r"| image    |   rank | x\|y   |"
    assert lines[2] == r"| a\|b.png |      1 | \|     |"
    assert [len(re.split(r"(?<!\\)\|", line)) for line in lines] == [5] * 4
    assert zoo.tables.to_text(df, "csv").splitlines()[1] == "a|b.png,1,|"
    assert list(df["image"]) == ["a|b.png", "c.png"]   # the caller's table is left alone


def test_register_checks_bfloat16_min_input_size(monkeypatch):
    import numpy as np

    from zoo import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for value in ("abc", None, float("nan"), float("inf"), -5, 2.7, 40.0, True, "40"):
        with pytest.raises(ValueError) as e:
            @register(family="lenet", paper="x", year=1, default_input_shape=(32, 32, 1),
                      min_input_size=32, bfloat16_min_input_size=value)
            def bf16_probe():
                pass
        assert str(e.value) == (f"register: bfloat16_min_input_size must be a non-negative "
                                f"integer (the smallest input height and width at which "
                                f"mixed_precision='auto' trains the model in bfloat16; 0: "
                                f"every size). Received: bfloat16_min_input_size={value!r}")
        assert "bf16_probe" not in registry._REGISTRY
    for i, value in enumerate((0, 40, np.int64(40))):
        @register(family="lenet", paper="x", year=1, default_input_shape=(32, 32, 1),
                  min_input_size=32, bfloat16_min_input_size=value, name=f"bf16_probe{i}")
        def builder():
            pass
        info = registry._REGISTRY[f"bf16_probe{i}"][1]
        assert info.bfloat16_min_input_size == int(value)
        assert type(info.bfloat16_min_input_size) is int


def test_register_checks_task(monkeypatch):
    from zoo import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for value in ("detection", "Classification", None, 1):
        with pytest.raises(ValueError) as e:
            register(family="lenet", paper="x", year=1, default_input_shape=(32, 32, 1),
                     min_input_size=32, task=value)
        assert str(e.value) == (f"register: task must be one of 'classification', "
                                f"'segmentation'. Received: task={value!r}")

    @register(family="unet", paper="x", year=1, default_input_shape=(32, 32, 1),
              min_input_size=32, task="segmentation")
    def task_probe():
        pass
    assert zoo.model_info("task_probe").task == "segmentation"


def test_default_num_classes_is_the_builders_default():
    import inspect
    for name in zoo.list_models():
        builder = zoo.registry.get_builder(name)
        default = inspect.signature(builder).parameters["num_classes"].default
        assert zoo.model_info(name).default_num_classes == default, name
    assert [zoo.model_info(n).default_num_classes for n in ("lenet5", "unet", "alexnet")] == \
        [10, 2, 1000]


def test_list_models_pattern_is_case_sensitive():
    assert zoo.list_models("LeNet*") == []
    assert zoo.list_models("lenet?") == ["lenet5"]


def test_unknown_name_message_names_three_close_names_and_every_model():
    with pytest.raises(ValueError) as e:
        zoo.get_model("resnet5")
    assert str(e.value) == (f"Unknown model 'resnet5'. Did you mean: resnet50, resnet152, "
                            f"resnet34? Known models: {', '.join(zoo.list_models())}.")


def _probe(monkeypatch, fn, **counts):
    """Register ``fn`` (a builder) in a copy of the registry, for this test only."""
    from zoo import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register(family="probe", paper="x", year=1, default_input_shape=(8, 8, 1),
             min_input_size=1, **counts)(fn)
    return fn.__name__


def test_classes_hint_only_for_builders_that_take_num_classes(monkeypatch):
    def probe_without_classes(*, input_shape=None):
        pass
    name = _probe(monkeypatch, probe_without_classes)
    with pytest.raises(TypeError) as e:
        zoo.get_model(name, classes=3, input_tensor=None)
    assert str(e.value) == ("probe_without_classes takes no argument(s) 'classes', "
                            "'input_tensor'; its arguments: input_shape (keras.applications' "
                            "input_tensor: build the model, then call it on the tensor, "
                            "model(tensor))")


def test_tensorflow_out_of_memory_is_named_with_the_arguments(monkeypatch):
    import tensorflow as tf

    def probe_oom(*, width=1):
        raise tf.errors.ResourceExhaustedError(
            None, None, "OOM when allocating tensor with shape[100000,100000] and type float "
                        "on /job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu")
    name = _probe(monkeypatch, probe_oom)
    with pytest.raises(ValueError) as e:
        zoo.get_model(name, width=10 ** 5)
    assert str(e.value) == ("probe_oom: the model is too large to build in this machine's "
                            "memory (OOM when allocating tensor with shape[100000,100000]); use "
                            "a smaller input_shape, num_classes or width. Received: width=100000")


def test_model_info_markdown_leaves_a_model_without_counts_blank(monkeypatch):
    def probe_uncounted(*, input_shape=None):
        pass
    _probe(monkeypatch, probe_uncounted)
    df = zoo.registry.model_info_table("probe_uncounted")
    assert df["params"].isna().all() and df["trainable params"].isna().all()
    markdown = zoo.tables.to_text(df, "markdown")
    assert "*" not in markdown and "trainable parameters" not in markdown
    assert markdown.splitlines()[2].startswith("| probe_uncounted | classification | 8x8x1 ")
