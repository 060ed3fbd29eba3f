"""zoo.profile: multiply-adds, activation memory and receptive field.

Small hand-built graphs pin the rules with answers worked out by hand; the
registered models pin the papers' figures. Building a model costs the same at
any input size (no forward pass is run), so the registered models are built
once each, at their default input, and only their profiles are kept.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import keras
from keras import layers as L

import zoo
import zoo.profile as zprofile
from conftest import record_syncs_and_renames, wait_for_marker
from zoo import cli
from zoo.layers import PartialConv2D, RBFOutput, Subsampling


def conv(filters, kernel, name, **kw):
    return L.Conv2D(filters, kernel, use_bias=False, name=name, **kw)


def chain_model(sizes=(8, 8, 1), filters=(4, 2)):
    x = inputs = keras.Input(sizes, name="x")
    for i, f in enumerate(filters):
        x = conv(f, 3, f"c{i + 1}", padding="same")(x)
    return keras.Model(inputs, x, name="chain")


def row(p, name):
    return p.layers.set_index("name").loc[name]


# ---------------------------------------------------------------------------
# Multiply-adds per layer type, worked out by hand.

def single_layer_macs(layer, input_shape):
    x = keras.Input(input_shape, name="x")
    p = zprofile.profile(keras.Model(x, layer(x)))
    return p.layers.iloc[-1]


@pytest.mark.parametrize("layer,input_shape,macs,other,out_shape", [
    # 8x8 positions x 8 filters x 3x3 kernel x 4/2 input maps per group
    (L.Conv2D(8, 3, padding="same", groups=2, name="l"), (8, 8, 4), 64 * 8 * 9 * 2, 0, (8, 8, 8)),
    # stride 2: 4x4 positions
    (L.Conv2D(8, 3, strides=2, padding="same", name="l"), (8, 8, 4), 16 * 8 * 9 * 4, 0, (4, 4, 8)),
    # valid 5x5 on 32x32x1 (LeNet's C1)
    (L.Conv2D(6, 5, name="l"), (32, 32, 1), 28 * 28 * 6 * 25, 0, (28, 28, 6)),
    # depthwise, multiplier 2: 64 positions x 4 maps x 2 x 9
    (L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="l"), (8, 8, 4),
     64 * 4 * 2 * 9, 0, (8, 8, 8)),
    # separable: depthwise 64*4*9 + pointwise 64*4*8
    (L.SeparableConv2D(8, 3, padding="same", name="l"), (8, 8, 4), 64 * 4 * 9 + 64 * 4 * 8, 0,
     (8, 8, 8)),
    # depth multiplier 2: 8 intermediate maps, depthwise 64*8*9 and pointwise 64*8*8
    (L.SeparableConv2D(8, 3, depth_multiplier=2, padding="same", name="l"), (8, 8, 4),
     64 * 8 * 9 + 64 * 8 * 8, 0, (8, 8, 8)),
    # channels first: 6x6 positions x 8 filters x 3x3 x 4 input maps (the first axis)
    (L.Conv2D(8, 3, padding="same", data_format="channels_first", name="l"), (4, 6, 6),
     36 * 8 * 9 * 4, 0, (8, 6, 6)),
    (L.MaxPooling2D(2, data_format="channels_first", name="l"), (4, 6, 6), 0, 36 * 3, (4, 3, 3)),
    # transposed: every input pixel scatters a 2x2x3 kernel per input map: 16*5*4*3
    (L.Conv2DTranspose(3, 2, strides=2, name="l"), (4, 4, 5), 16 * 5 * 4 * 3, 0, (8, 8, 3)),
    # a 3x3 kernel at stride 2 overlaps: still every input pixel times the whole kernel
    (L.Conv2DTranspose(3, 3, strides=2, name="l"), (4, 4, 5), 16 * 5 * 9 * 3, 0, (9, 9, 3)),
    (L.Dense(10, name="l"), (20,), 200, 0, (10,)),
    # dense on a feature map acts per pixel
    (L.Dense(3, name="l"), (2, 2, 5), 4 * 3 * 5, 0, (2, 2, 3)),
    # max pool 2x2: 3 comparisons per output; average pool: 3 additions + 1 division
    (L.MaxPooling2D(2, name="l"), (8, 8, 4), 0, 64 * 3, (4, 4, 4)),
    (L.AveragePooling2D(2, name="l"), (8, 8, 4), 0, 64 * 4, (4, 4, 4)),
    (L.MaxPooling2D(3, strides=2, name="l"), (9, 9, 2), 0, 4 * 4 * 2 * 8, (4, 4, 2)),
    # global average pool over 4x4x3: 15 additions + 1 division per channel
    (L.GlobalAveragePooling2D(name="l"), (4, 4, 3), 0, 3 * 16, (3,)),
    (L.GlobalMaxPooling2D(name="l"), (4, 4, 3), 0, 3 * 15, (3,)),
    # channels first: 3 maps of 4x5, 19 additions + 1 division each
    (L.GlobalAveragePooling2D(data_format="channels_first", name="l"), (3, 4, 5), 0, 3 * 20,
     (3,)),
    # batch norm: a multiply and an add per element, not a multiply-add of the network
    (L.BatchNormalization(name="l"), (4, 4, 3), 0, 2 * 48, (4, 4, 3)),
    (L.Activation("relu", name="l"), (4, 4, 3), 0, 0, (4, 4, 3)),
    # rescaling: a multiply and an add per element
    (L.Rescaling(1 / 127.5, offset=-1, name="l"), (4, 4, 3), 0, 2 * 48, (4, 4, 3)),
    (L.UpSampling2D(2, name="l"), (4, 4, 3), 0, 0, (8, 8, 3)),
    (L.UpSampling2D(2, interpolation="bilinear", name="l"), (4, 4, 3), 0, 4 * 192, (8, 8, 3)),
    # the zoo's layers away from LeNet-5's sizes: a 3x3 subsampling window, one multiply-add
    # and 8 additions per output; 6 connected 3x3 kernels over 4x4 positions; 5 RBF units
    (Subsampling(3, name="l"), (9, 9, 2), 18, 18 * 8, (3, 3, 2)),
    (PartialConv2D(((0, 1), (1,), (0, 1, 2)), kernel_size=3, name="l"), (6, 6, 3),
     16 * 9 * 6, 0, (4, 4, 3)),
    (RBFOutput(5, name="l"), (7,), 35, 35, (5,)),
])
def test_layer_macs(layer, input_shape, macs, other, out_shape):
    r = single_layer_macs(layer, input_shape)
    assert (r["macs"], r["other_ops"], r["output_shape"]) == (macs, other, out_shape)


def test_merge_counts_one_op_per_extra_input():
    x = keras.Input((4, 4, 2), name="x")
    a, b = conv(2, 1, "a")(x), conv(2, 1, "b")(x)
    added = L.Add(name="add3")([x, a, b])
    summed = keras.ops.add(added, a)   # a keras op node in the graph
    p = zprofile.profile(keras.Model(x, summed))
    assert row(p, "add3")["other_ops"] == 2 * 32
    assert p.layers.iloc[-1]["other_ops"] == 32
    assert p.unknown == ()


def test_average_merge_counts_its_division_as_average_pooling_does():
    x = keras.Input((4, 4, 2), name="x")
    a, b = conv(2, 1, "a")(x), conv(2, 1, "b")(x)
    p = zprofile.profile(keras.Model(x, L.Average(name="avg")([x, a, b])))
    assert row(p, "avg")["other_ops"] == 32 * (2 + 1)   # 2 additions and a division


def test_custom_layers_lenet5():
    p = zprofile.profile(zoo.lenet5())
    macs = p.layers.set_index("name")["macs"].to_dict()
    assert macs["C1"] == 28 * 28 * 6 * 25
    assert macs["S2"] == 14 * 14 * 6            # coefficient x window sum + bias
    assert row(p, "S2")["other_ops"] == 14 * 14 * 6 * 3
    assert macs["C3"] == 10 * 10 * 25 * 60      # only the 60 connected 5x5 kernels
    assert macs["S4"] == 5 * 5 * 16
    assert macs["C5"] == 120 * 400
    assert macs["F6"] == 84 * 120
    assert macs["Out"] == 84 * 10               # squared distances to 10 RBF centres
    assert p.totals.macs == 328_096 and p.totals.flops == 656_192
    assert (p.totals.trainable_params, p.totals.non_trainable_params) == (60_000, 840)


def test_local_response_normalization():
    p = zprofile.profile(zoo.alexnet(local_response_normalization=True))
    # depth radius 2: 5 squares summed + (bias + alpha * sum) per element
    assert row(p, "C1_lrn")["macs"] == 55 * 55 * 96 * 6
    # then a power and a division per element
    assert row(p, "C1_lrn")["other_ops"] == 55 * 55 * 96 * 2
    assert row(p, "C1")["macs"] == 55 * 55 * 96 * 11 * 11 * 3


def test_unknown_layers_warn_and_count_zero():
    x = keras.Input((4, 4, 2), name="x")
    y = L.Lambda(lambda t: t * 2.0, name="double")(conv(2, 1, "a")(x))
    with pytest.warns(UserWarning, match=r"double \(Lambda\)"):
        p = zprofile.profile(keras.Model(x, y))
    assert p.unknown == (("double", "Lambda"),)
    assert row(p, "double")["macs"] == 0 and p.totals.macs == 16 * 2 * 2


def test_known_layers_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zprofile.profile(chain_model())


def test_batch_size_scales_counts_and_memory():
    one, three = zprofile.profile(chain_model()), zprofile.profile(chain_model(), batch_size=3)
    assert three.totals.macs == 3 * one.totals.macs
    assert three.totals.inference_activation_bytes == 3 * one.totals.inference_activation_bytes
    assert three.totals.training_activation_bytes == 3 * one.totals.training_activation_bytes
    assert three.totals.params == one.totals.params


def test_batch_size_scales_the_other_ops_too():
    # LeNet-5's 5,568 other ops per image (the summary's): S2/S4 window sums and RBF sums
    one, three = zprofile.profile(zoo.lenet5()), zprofile.profile(zoo.lenet5(), batch_size=3)
    assert one.totals.other_ops == 5_568 and three.totals.other_ops == 3 * 5_568
    assert list(three.layers["other_ops"]) == [3 * n for n in one.layers["other_ops"]]


def test_bfloat16_activations_take_two_bytes():
    x = keras.Input((4, 4, 2), name="x")
    y = L.Conv2D(2, 1, name="c", dtype="mixed_bfloat16")(x)
    p = zprofile.profile(keras.Model(x, y))
    # the float32 input, then the bfloat16 output: 32 elements of 4 and 2 bytes
    assert list(p.layers["activation_bytes"]) == [32 * 4, 32 * 2]
    assert p.totals.weight_bytes == {"float32": (2 * 2 + 2) * 4}   # mixed keeps float32 weights


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        zprofile.profile(chain_model(), batch_size=bad)


def test_numpy_integer_batch_size():
    """A NumPy integer (``len(ds) // steps``) is a batch size, as it is a number of classes
    for the builders; it was refused as not a positive integer."""
    one, three = zprofile.profile(chain_model()), zprofile.profile(chain_model(),
                                                                  batch_size=np.int64(3))
    assert three.totals.macs == 3 * one.totals.macs == 3 * (64 * 4 * 9 + 64 * 2 * 9 * 4)
    assert type(three.totals.batch_size) is int and three.totals.batch_size == 3


def test_unknown_input_size_is_refused():
    x = keras.Input((None, None, 3), name="x")
    with pytest.raises(ValueError, match="fixed input_shape"):
        zprofile.profile(keras.Model(x, conv(2, 3, "c")(x)))


def test_module_is_callable_and_package_attribute():
    model = chain_model()
    assert zoo.profile(model).totals.macs == zprofile.profile(model).totals.macs
    assert zoo.profile.model_table is zprofile.model_table


# What each first access runs in a fresh process: the attribute must already be the
# (callable) module, not the function of the same name; ``from zoo import ...`` then
# gives the same modules.
FIRST_ACCESS = {
    "profile": """
        assert zoo.profile.model_table(["lenet5"]).loc[0, "params"] == 60_840
        assert zoo.profile(zoo.lenet5()).totals.macs == 328_096
        assert zoo.profile is sys.modules["zoo.profile"]
    """,
    "export": """
        assert zoo.export.export_run.__module__ == "zoo.export"
        assert zoo.export.fold_batch_norm.__module__ == "zoo.export"
        assert callable(zoo.export) and zoo.export is sys.modules["zoo.export"]
    """,
    "from": """
        from zoo import export, profile
        assert export is sys.modules["zoo.export"] and profile is sys.modules["zoo.profile"]
        assert callable(export) and callable(profile)
        assert export.export_run and profile.model_table
    """,
}


@pytest.mark.parametrize("order", [("profile", "export"), ("export", "profile")])
def test_zoo_profile_and_zoo_export_are_callable_modules_from_the_first_access(order):
    code = "import sys\nimport zoo\n" + "".join(textwrap.dedent(FIRST_ACCESS[step])
                                               for step in (*order, "from"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------------------
# Activation memory, worked out by hand (float32 = 4 bytes).

def test_chain_memory_is_two_consecutive_layers():
    # x 8x8x1 = 256 B, c1 8x8x4 = 1024 B, c2 8x8x2 = 512 B
    p = zprofile.profile(chain_model())
    assert list(p.layers["activation_bytes"]) == [256, 1024, 512]
    assert list(p.layers["live_bytes"]) == [256, 256 + 1024, 1024 + 512]
    assert p.totals.inference_activation_bytes == max(256 + 1024, 1024 + 512)
    assert p.totals.inference_peak_layer == "c2"
    assert p.totals.training_activation_bytes == 256 + 1024 + 512
    assert p.totals.macs == 64 * 4 * 9 * 1 + 64 * 2 * 9 * 4


def skip_model(skip):
    # x 4x4x1 = 64 B -> a 4x4x4 = 256 B -> b 4x4x4 = 256 B -> c 4x4x1 = 64 B [-> x + c]
    x = keras.Input((4, 4, 1), name="x")
    c = conv(1, 1, "c")(conv(4, 1, "b")(conv(4, 1, "a")(x)))
    y = L.Add(name="add")([x, c]) if skip else c
    return keras.Model(x, y)


def test_skip_connection_keeps_its_tensor_alive():
    plain, skip = zprofile.profile(skip_model(False)), zprofile.profile(skip_model(True))
    # plain: x+a = 320, a+b = 512, b+c = 320
    assert plain.totals.inference_activation_bytes == 512
    # skip: x stays alive until the add: x+a = 320, x+a+b = 576, x+b+c = 384, x+c+add = 192
    assert skip.totals.inference_activation_bytes == 576
    assert skip.totals.inference_peak_layer == "b"
    assert list(skip.layers["live_bytes"]) == [64, 320, 576, 384, 192]
    assert list(plain.layers["live_bytes"]) == [64, 320, 512, 320]
    assert skip.totals.training_activation_bytes == 64 + 256 + 256 + 64 + 64
    assert skip.totals.other_ops == 16


def test_branches_are_alive_together():
    # x 64 B; p, q 4x4x2 = 128 B each; concat 256 B.
    x = keras.Input((4, 4, 1), name="x")
    p, q = conv(2, 1, "p")(x), conv(2, 1, "q")(x)
    y = L.Concatenate(name="cat")([p, q])
    prof = zprofile.profile(keras.Model(x, y))
    # p: x+p = 192; q: x+p+q = 320; cat: p+q+cat = 512
    assert prof.totals.inference_activation_bytes == 512
    assert prof.totals.training_activation_bytes == 64 + 128 + 128 + 256


def test_a_tensor_read_twice_by_one_layer_stays_alive_for_its_next_consumer():
    # x 64 B -> a 4x4x4 = 256 B -> sq = a * a 256 B -> a + sq 256 B
    x = keras.Input((4, 4, 1), name="x")
    a = conv(4, 1, "a")(x)
    sq = L.Multiply(name="sq")([a, a])
    p = zprofile.profile(keras.Model(x, L.Add(name="add")([sq, a])))
    # a is still needed by the add after sq read it twice
    assert list(p.layers["live_bytes"]) == [64, 320, 512, 768]
    assert p.totals.other_ops == 2 * 64


def test_the_peak_layer_is_the_first_to_reach_the_peak():
    # x 8x8x1 = 256 B -> c1 8x8x2 = 512 B -> c2 8x8x2 = 512 B: 768, then 1024 twice
    p = zprofile.profile(chain_model(filters=(2, 2, 2)))
    assert list(p.layers["live_bytes"]) == [256, 768, 1024, 1024]
    assert p.totals.inference_peak_layer == "c2"


def test_model_outputs_are_kept():
    # x 64 B -> a 256 B (an output) -> b 64 B -> c 64 B (an output)
    x = keras.Input((4, 4, 1), name="x")
    a = conv(4, 1, "a")(x)
    c = conv(1, 1, "c")(conv(1, 1, "b")(a))
    both = zprofile.profile(keras.Model(x, [a, c]))
    last = zprofile.profile(keras.Model(x, c))
    assert last.totals.inference_activation_bytes == 320          # x+a, a+b
    assert both.totals.inference_activation_bytes == 256 + 64 + 64  # a kept while c runs


def test_dtypes_set_the_bytes():
    x = keras.Input((4, 4, 2), name="x")
    h = L.Conv2D(4, 1, name="half", dtype="float16")(L.Activation("linear", dtype="float16",
                                                                  name="cast")(x))
    y = L.Conv2D(2, 1, name="mixed", dtype="mixed_float16")(h)
    p = zprofile.profile(keras.Model(x, y))
    assert list(p.layers["activation_bytes"]) == [16 * 2 * 4, 16 * 2 * 2, 16 * 4 * 2, 16 * 2 * 2]
    # weights: half = (2*4 + 4) float16, mixed = (4*2 + 2) float32 (mixed keeps float32 weights)
    assert p.totals.weight_bytes == {"float16": 12 * 2, "float32": 10 * 4}
    assert p.totals.total_weight_bytes == 64


# ---------------------------------------------------------------------------
# Receptive field and jump.

@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_stride_one_stack(depth):
    p = zprofile.profile(chain_model(sizes=(32, 32, 1), filters=(2,) * depth))
    assert list(p.layers["rf_h"]) == [1 + 2 * i for i in range(depth + 1)]
    assert list(p.layers["rf_w"]) == list(p.layers["rf_h"])
    assert set(p.layers["jump_h"]) == {1.0}


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_stride_two_stack(depth):
    x = inputs = keras.Input((64, 64, 1), name="x")
    for i in range(depth):
        x = conv(2, 3, f"s{i}", strides=2, padding="same")(x)
    p = zprofile.profile(keras.Model(inputs, x))
    assert p.layers["rf_h"].iloc[-1] == 2 ** (depth + 1) - 1
    assert p.layers["jump_h"].iloc[-1] == 2 ** depth


def test_lenet5_c5_sees_the_whole_input():
    for variant in ("classic", "modern"):
        p = zprofile.profile(zoo.lenet5(variant=variant))
        r = row(p, "C5")
        assert (r["rf_h"], r["rf_w"], r["jump_h"]) == (32, 32, 4)
        assert list(p.layers["rf_h"][:4]) == [1, 5, 6, 6 if variant == "classic" else 14]


def test_branches_take_the_largest_path_and_axes_differ():
    x = keras.Input((16, 16, 1), name="x")
    wide = conv(1, (1, 7), "wide", padding="same")(x)
    tall = conv(1, 5, "tall", padding="same", dilation_rate=2)(x)   # k_eff = 9
    y = L.Concatenate(name="cat")([wide, tall])
    p = zprofile.profile(keras.Model(x, y))
    assert (row(p, "wide")["rf_h"], row(p, "wide")["rf_w"]) == (1, 7)
    assert (row(p, "tall")["rf_h"], row(p, "tall")["rf_w"]) == (9, 9)
    assert (row(p, "cat")["rf_h"], row(p, "cat")["rf_w"]) == (9, 9)


def test_a_volume_reports_its_height_and_width():
    """rf_h / rf_w of a 3-D input (depth, height, width) are its last two axes (they were
    depth and height)."""
    x = keras.Input((4, 6, 8, 1), name="x")
    y = L.Conv3D(1, (1, 3, 5), strides=(1, 1, 2), name="c")(x)
    r = zprofile.profile(keras.Model(x, y)).layers.iloc[-1]
    assert (r["rf_h"], r["rf_w"], r["jump_h"], r["jump_w"]) == (3, 5, 1, 2)


def test_strides_and_jumps_differ_per_axis():
    x = keras.Input((16, 16, 1), name="x")
    y = conv(1, 3, "c1", strides=(1, 2), padding="same")(x)       # jump 1x2
    y = conv(1, 3, "c2", strides=(2, 1), padding="same")(y)       # rf 3 + 2 * (1, 2)
    p = zprofile.profile(keras.Model(x, y))
    assert tuple(row(p, "c1")[["rf_h", "rf_w", "jump_h", "jump_w"]]) == (3, 3, 1, 2)
    assert tuple(row(p, "c2")[["rf_h", "rf_w", "jump_h", "jump_w"]]) == (5, 7, 2, 2)


def test_depthwise_and_separable_convolutions_widen_the_receptive_field():
    x = keras.Input((32, 32, 2), name="x")
    y = L.DepthwiseConv2D(5, strides=2, padding="same", name="dw")(x)                # 5, jump 2
    y = L.SeparableConv2D(2, 3, dilation_rate=2, padding="same", name="sep")(y)      # k_eff 5
    p = zprofile.profile(keras.Model(x, y))
    assert (row(p, "dw")["rf_h"], row(p, "dw")["jump_h"]) == (5, 2)
    assert (row(p, "sep")["rf_h"], row(p, "sep")["rf_w"], row(p, "sep")["jump_h"]) == (
        5 + 4 * 2, 5 + 4 * 2, 2)


def measured_receptive_field(model):
    """Largest extent (rows, cols) of the input pixels that reach one output
    pixel, measured by feeding every one-pixel image through a model with
    positive weights (so nothing cancels)."""
    h, w = model.inputs[0].shape[1:3]
    deltas = np.eye(h * w, dtype="float32").reshape(h * w, h, w, 1)
    out = model.predict(deltas, verbose=0, batch_size=256)[..., 0]   # (h*w, H, W)
    reach = out.reshape(h, w, *out.shape[1:]) > 0
    best = [0, 0]
    for a in range(out.shape[1]):
        for b in range(out.shape[2]):
            rows, cols = np.nonzero(reach[:, :, a, b])
            best[0] = max(best[0], rows.max() - rows.min() + 1)
            best[1] = max(best[1], cols.max() - cols.min() + 1)
    return tuple(best)


def test_receptive_field_matches_measurement():
    ones = dict(use_bias=False, kernel_initializer="ones")
    x = keras.Input((40, 40, 1), name="x")
    y = L.Conv2D(1, 3, name="c1", **ones)(x)
    y = L.AveragePooling2D(2, name="pool")(y)
    y = L.Conv2D(1, (3, 2), dilation_rate=2, name="c2", **ones)(y)
    y = L.Conv2D(1, 3, strides=2, name="c3", **ones)(y)
    y = L.Conv2DTranspose(1, 3, strides=2, name="up", **ones)(y)
    y = L.Conv2D(1, 3, name="c4", **ones)(y)
    model = keras.Model(x, y)
    p = zprofile.profile(model)
    last = p.layers.iloc[-1]
    # c1 3, pool 4 (jump 2), c2 k_eff 5x3: 12x8, c3: 16x12 (jump 4),
    # up ceil(3/2) = 2 input pixels: 20x16 (jump 2), c4: 24x20
    assert (last["rf_h"], last["rf_w"]) == measured_receptive_field(model) == (24, 20)
    assert last["jump_h"] == 2


def test_dilated_transposed_convolution_widens_the_receptive_field():
    """A transposed convolution's dilation spreads its kernel over d * (k - 1) + 1 input
    pixels, as a convolution's does (it was ignored: 3 where 5 are seen)."""
    ones = dict(use_bias=False, kernel_initializer="ones")
    x = keras.Input((12, 12, 1), name="x")
    y = L.Conv2DTranspose(1, 3, dilation_rate=(2, 3), name="up", **ones)(x)
    model = keras.Model(x, y)
    last = zprofile.profile(model).layers.iloc[-1]
    assert (last["rf_h"], last["rf_w"]) == measured_receptive_field(model) == (5, 7)
    assert (last["jump_h"], last["jump_w"]) == (1, 1)


def test_a_fractional_receptive_field_rounds_up():
    """After upsampling past the input's resolution the jump is below 1: two neighbouring
    outputs of a nearest upsampling 1/2 pixel apart give 1.5, and the two pixels they can
    read count as 2 (it was truncated to 1)."""
    ones = dict(use_bias=False, kernel_initializer="ones")
    x = keras.Input((6, 6, 1), name="x")
    y = L.UpSampling2D(2, name="up")(x)
    y = L.Conv2D(1, 2, name="c", **ones)(y)
    model = keras.Model(x, y)
    last = zprofile.profile(model).layers.iloc[-1]
    assert (last["rf_h"], last["rf_w"]) == measured_receptive_field(model) == (2, 2)
    assert last["jump_h"] == 0.5


def test_overlapping_pooling_steps_by_its_strides():
    """A pooling window larger than its stride (AlexNet's and GoogLeNet's 3x3/2) moves by
    the stride, not by the window."""
    ones = dict(use_bias=False, kernel_initializer="ones")
    x = keras.Input((24, 24, 1), name="x")
    y = L.Conv2D(1, 3, name="c1", **ones)(x)
    y = L.AveragePooling2D(3, strides=2, name="pool")(y)
    y = L.Conv2D(1, 3, name="c2", **ones)(y)
    model = keras.Model(x, y)
    p = zprofile.profile(model)
    # c1 3, pool 3 + 2 = 5 (jump 2), c2 5 + 2 * 2 = 9
    assert (row(p, "pool")["rf_h"], row(p, "pool")["jump_h"]) == (5, 2)
    last = p.layers.iloc[-1]
    assert (last["rf_h"], last["rf_w"]) == measured_receptive_field(model) == (9, 9)
    assert last["jump_h"] == 2


def test_image_input_after_a_non_image_input():
    """The axes of the receptive field are those of the model's largest input, not of its
    first: with a vector first, the image path's convolutions were counted as seeing one
    pixel."""
    vec, img, seq = (keras.Input((5,), name="vec"), keras.Input((8, 8, 3), name="img"),
                     keras.Input((12, 2), name="seq"))
    pooled = L.GlobalMaxPooling2D(name="gmp")(conv(2, 3, "c", strides=2, padding="same")(img))
    series = L.Flatten(name="flat")(L.Conv1D(2, 3, name="c1d")(seq))   # 10x2
    y = L.Concatenate(name="cat")([vec, pooled, series])
    p = zprofile.profile(keras.Model([vec, img, seq], y))
    assert (row(p, "c")["rf_h"], row(p, "c")["rf_w"], row(p, "c")["jump_h"]) == (3, 3, 2)
    assert (row(p, "gmp")["rf_h"], row(p, "gmp")["rf_w"]) == (3 + 3 * 2, 3 + 3 * 2)
    assert (row(p, "c1d")["rf_h"], row(p, "c1d")["rf_w"]) == (3, 1)   # along its one axis
    assert row(p, "flat")["rf_h"] == 3 + 9
    assert (row(p, "cat")["rf_h"], row(p, "cat")["rf_w"]) == (12, 9)
    # the largest jump over the inputs: the flattened series' 10, the pooled map's 8
    assert (row(p, "cat")["jump_h"], row(p, "cat")["jump_w"]) == (10, 8)
    assert (row(p, "vec")["rf_h"], row(p, "vec")["rf_w"]) == (1, 1)


@pytest.mark.parametrize("layer,input_shape,taps,jump", [
    # An output reads 2 (bilinear), 4 (bicubic), 6 (lanczos3), 10 (lanczos5) input samples
    # per axis (measured with tf.image.resize on one-pixel images); bicubic and Lanczos
    # were counted as bilinear.
    (L.UpSampling2D(2, interpolation="bilinear", name="l"), (8, 8, 1), (2, 2), 0.5),
    (L.UpSampling2D(2, interpolation="bicubic", name="l"), (8, 8, 1), (4, 4), 0.5),
    (L.UpSampling2D((2, 3), interpolation="lanczos3", name="l"), (8, 8, 1), (6, 6), 0.5),
    (L.Resizing(32, 24, interpolation="lanczos5", name="l"), (16, 16, 1), (10, 10), 0.5),
    (L.Resizing(8, 8, interpolation="bicubic", name="l"), (16, 16, 1), (4, 4), 2),
    # Downscaling with antialias=True and "area" widen the kernel by in / out: bilinear's
    # 2 samples become 4 at 32 -> 16 and 3 at 32 -> 24; an area 48 -> 16 averages 3.
    (L.Resizing(16, 24, antialias=True, name="l"), (32, 32, 1), (4, 3), 2),
    (L.Resizing(16, 16, interpolation="area", name="l"), (48, 48, 1), (3, 3), 3),
    (L.Resizing(16, 16, interpolation="nearest", antialias=True, name="l"), (48, 48, 1),
     (1, 1), 3),
    # Upscaling with antialias=True reads what bilinear reads: 2 samples, not 2 * 8 / 16.
    (L.Resizing(16, 16, antialias=True, name="l"), (8, 8, 1), (2, 2), 0.5),
])
def test_interpolation_kernels(layer, input_shape, taps, jump):
    r = single_layer_macs(layer, input_shape)
    assert (r["rf_h"], r["rf_w"], r["jump_h"]) == (taps[0], taps[1], jump)
    nearest = layer.interpolation == "nearest"
    assert r["other_ops"] == (0 if nearest else taps[0] * taps[1] * np.prod(r["output_shape"]))


@pytest.mark.parametrize("size_in,size_out,taps,reads", [
    # 16 -> 6: boxes of 8/3 pixels; [0, 2.67) covers 3 pixels, [2.67, 5.33) straddles 4:
    # 3 + 4 + 3 + 3 + 4 + 3 per axis
    (16, 6, 4, 20),
    # 8 -> 12: boxes of 2/3 pixel; the 4 that cross a pixel edge read 2: 12 + 4 per axis
    (8, 12, 2, 16),
])
def test_area_resize_reads_every_pixel_its_box_overlaps(size_in, size_out, taps, reads):
    """An "area" output averages the input pixels its box overlaps: at a non-integer factor
    a box can straddle one pixel more than in / out (it was counted as ceil(in / out)
    samples, and 1 when upscaling)."""
    x = keras.Input((size_in, size_in, 1), name="x")
    model = keras.Model(x, L.Resizing(size_out, size_out, interpolation="area", name="l")(x))
    r = zprofile.profile(model).layers.iloc[-1]
    assert (r["rf_h"], r["rf_w"]) == measured_receptive_field(model) == (taps, taps)
    deltas = np.eye(size_in ** 2, dtype="float32").reshape(-1, size_in, size_in, 1)
    read = np.count_nonzero(model.predict(deltas, verbose=0) > 0)   # (input, output) pairs
    assert r["other_ops"] == reads * reads == read


def test_a_resize_to_another_aspect_ratio_steps_over_its_crop_or_padded_image():
    """Resizing 16x8 to 4x4 interpolates a centre 8x8 crop (crop_to_aspect_ratio) or a
    16x16 padded image (pad_to_aspect_ratio): neighbouring outputs are 2 or 4 input pixels
    apart on both axes (the jump was 16 / 4 and 8 / 4 whatever the crop or padding)."""
    ones = dict(use_bias=False, kernel_initializer="ones")
    x = keras.Input((16, 8, 1), name="x")
    y = L.Resizing(4, 4, crop_to_aspect_ratio=True, name="r")(x)   # bilinear by 2: 2 taps
    model = keras.Model(x, L.Conv2D(1, 3, name="c", **ones)(y))
    p = zprofile.profile(model)
    assert (row(p, "r")["jump_h"], row(p, "r")["jump_w"]) == (2, 2)
    assert (row(p, "c")["rf_h"], row(p, "c")["rf_w"]) == measured_receptive_field(model) == (
        2 + 2 * 2, 2 + 2 * 2)
    y = L.Resizing(4, 4, pad_to_aspect_ratio=True, name="r")(x)
    r = zprofile.profile(keras.Model(x, y)).layers.iloc[-1]
    assert (r["jump_h"], r["jump_w"], r["rf_h"], r["other_ops"]) == (4, 4, 2, 4 * 16)


def test_subsampling_steps_by_its_window():
    x = keras.Input((9, 9, 1), name="x")
    y = Subsampling(3, name="s")(conv(1, 3, "c", padding="same")(x))
    r = zprofile.profile(keras.Model(x, y)).layers.iloc[-1]
    assert (r["rf_h"], r["rf_w"], r["jump_h"]) == (3 + 2, 3 + 2, 3)


def test_global_pooling_sees_the_whole_map():
    x = keras.Input((8, 8, 1), name="x")
    y = L.GlobalAveragePooling2D(name="gap")(conv(1, 3, "c", padding="same")(x))
    r = zprofile.profile(keras.Model(x, y)).layers.iloc[-1]
    assert (r["rf_h"], r["jump_h"]) == (3 + 7, 8)


# ---------------------------------------------------------------------------
# Nested models and shared layers.

def test_nested_models_are_flattened():
    inp = keras.Input((16, 16, 3), name="x")
    y = conv(4, 3, "c1", padding="same")(inp)
    backbone = keras.Model(inp, conv(4, 3, "c2", strides=2, padding="same")(y), name="backbone")
    head = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(2, 1, name="s1")], name="head")
    img = keras.Input((16, 16, 3), name="img")
    out = L.Dense(3, name="fc")(L.Flatten(name="flat")(head(backbone(img))))
    model = keras.Model(img, out)
    p = zprofile.profile(model)
    assert list(p.layers["name"]) == ["img", "backbone/c1", "backbone/c2", "head/s1", "flat", "fc"]
    assert p.totals.params == model.count_params() == p.layers["params"].sum()
    assert p.totals.macs == 256 * 4 * 27 + 64 * 4 * 36 + 64 * 2 * 4 + 3 * 128
    assert list(p.layers["rf_h"]) == [1, 3, 5, 5, 5 + 7 * 2, 19]
    # the nested model's output is the outer tensor, not a second copy
    assert p.totals.training_activation_bytes == p.layers["activation_bytes"].sum()


def test_shared_layer_counts_params_once():
    x = keras.Input((4, 4, 2), name="x")
    shared = conv(2, 1, "shared")
    y = shared(shared(x))
    p = zprofile.profile(keras.Model(x, y))
    assert list(p.layers["name"]) == ["x", "shared", "shared#2"]
    assert list(p.layers["params"]) == [0, 4, 0] and p.totals.params == 4
    assert p.totals.macs == 2 * 16 * 2 * 2


# ---------------------------------------------------------------------------
# Registered models: each built once, at its default input.

@pytest.fixture(scope="module")
def profiles():
    cache = {}

    def get(name):
        if name not in cache:
            model = zoo.get_model(name)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                p = zprofile.profile(model)
            cache[name] = (p, model.count_params(), tuple(model.inputs[0].shape[1:]),
                           [str(w.message) for w in caught if "profile" in str(w.message)])
            del model
            keras.backend.clear_session()
        return cache[name]

    return get


def require(name):
    if name not in zoo.list_models():
        pytest.skip(f"{name} is not registered")


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model(profiles, name):
    p, params, (h, w, _), messages = profiles(name)
    assert messages == [] and p.unknown == ()
    assert p.totals.params == params == p.layers["params"].sum()
    assert p.totals.macs == p.layers["macs"].sum() > 0
    assert p.totals.training_activation_bytes == p.layers["activation_bytes"].sum()
    assert p.totals.inference_activation_bytes == p.layers["live_bytes"].max()
    assert (p.layers["activation_bytes"].max() < p.totals.inference_activation_bytes
            < p.totals.training_activation_bytes)
    last = p.layers.iloc[-1]
    if zoo.model_info(name).task == "classification":
        assert last["rf_h"] >= h and last["rf_w"] >= w   # a class score sees the whole image
    else:
        assert last["jump_h"] == 1                        # a per-pixel output


PAPER_MACS = {"resnet18": 1.8e9, "resnet34": 3.6e9, "resnet50": 3.8e9, "resnet101": 7.6e9,
              "resnet152": 11.3e9}
# tests/data/tables/README.md: an independent count on the keras.applications graphs.
COUNTED_MACS = {"resnet50": 3.858e9, "resnet101": 7.570e9, "resnet152": 11.282e9,
                "resnet50_v2": 3.482e9, "xception": 8.357e9, "inception_v3": 5.713e9}


@pytest.mark.parametrize("name", sorted(PAPER_MACS))
def test_resnet_paper_table_1(profiles, name):
    require(name)
    macs = profiles(name)[0].totals.macs
    assert abs(macs / PAPER_MACS[name] - 1) < 0.03


@pytest.mark.parametrize("name", sorted(COUNTED_MACS))
def test_published_counts(profiles, name):
    require(name)
    p, _, shape, _ = profiles(name)
    assert shape[:2] == ((299, 299) if name in ("xception", "inception_v3") else (224, 224))
    assert abs(p.totals.macs / COUNTED_MACS[name] - 1) < 0.005


def test_resnet18_exact_and_scaling(profiles):
    """Every convolution of ResNet-18 scales with the image area when the side
    is a multiple of 32; only the classifier's 512x1000 stays the same."""
    require("resnet18")
    p224 = profiles("resnet18")[0]
    p64 = zprofile.profile(zoo.get_model("resnet18", input_shape=(64, 64, 3)))
    fc = 512 * 1000
    assert p224.totals.macs == 1_814_073_344
    assert (p64.totals.macs - fc) * 49 == (p224.totals.macs - fc) * 4   # (224/64)^2 = 49/4
    conv1 = row(p224, "conv1_conv")
    assert (conv1["macs"], conv1["rf_h"], conv1["jump_h"]) == (112 * 112 * 64 * 49 * 3, 7, 2)
    keras.backend.clear_session()


# ---------------------------------------------------------------------------
# model_table and the CLI.

def test_model_table():
    table = zprofile.model_table(["lenet5"])
    assert list(table.columns) == ["name", "input", "params", "GMACs", "inference MB",
                                   "training MB"]
    assert table.to_dict("records") == [{
        "name": "lenet5", "input": "32x32x1", "params": 60_840, "GMACs": 0.0003281,
        # peak: C1 (28x28x6) + S2 (14x14x6) floats; all: 43,256 bytes
        "inference MB": round((4704 + 1176) * 4 / 1e6, 2), "training MB": 0.04}]
    # megabytes are 10^6 bytes: ResNet-18's peak, conv1_relu (112x112x64 floats) and
    # pool1_pad (114x114x64), is 6,538,240 B (6.24 MiB); all activations 39,069,520 B
    resnet18 = zprofile.model_table(["resnet18"]).loc[0]
    assert (resnet18["GMACs"], resnet18["inference MB"], resnet18["training MB"]) == (
        1.814, 6.54, 39.07)
    with pytest.raises(ValueError, match="Unknown model"):
        zprofile.model_table(["lenet6"])


def test_cli_summary_csv(capsys):
    assert cli.main(["summary", "lenet5", "--format", "csv", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    layers_csv, totals_csv = out.strip().split("\n\n")
    import io
    df = pd.read_csv(io.StringIO(layers_csv))
    c5 = df.set_index("layer").loc["C5"]
    assert (c5["output"], c5["MACs"], str(c5["receptive field"]), str(c5["jump"])) == (
        "1x1x120", 96_000, "32", "4")
    totals = pd.read_csv(io.StringIO(totals_csv), dtype=str).set_index("quantity")["value"]
    assert totals["FLOPs (2 x MACs)"] == "1312384"   # for a batch of 2


def test_summary_numbers_are_plain_in_csv_and_separated_in_markdown(capsys):
    assert cli.main(["summary", "lenet5", "--format", "csv"]) == 0
    csv = capsys.readouterr().out.strip().split("\n\n")[1].splitlines()
    assert csv == [
        "quantity,value", "batch size,1", "parameters,60840", "trainable parameters,60000",
        "non-trainable parameters,840", "multiply-adds (MACs),328096",
        "FLOPs (2 x MACs),656192", '"other ops (adds, comparisons)",5568',
        "weight bytes (float32),243360", "inference activation memory (bytes),23520",
        "inference peak layer,S2", "training activation memory (bytes),43256"]
    assert cli.main(["summary", "lenet5"]) == 0
    markdown = capsys.readouterr().out
    for row in ("| parameters                    | 60,840 ",
                "| multiply-adds (MACs)          | 328,096 (0.000 G) ",
                "| inference activation memory   | 23,520 B (0.02 MB, peak at S2) "):
        assert row in markdown


def test_markdown_totals_are_in_units_of_10_to_the_9_and_10_to_the_6():
    from zoo.tables import to_text
    totals = zprofile.Totals(
        batch_size=1, params=25_636_712, trainable_params=25_583_592,
        non_trainable_params=53_120, macs=3_857_973_248, flops=7_715_946_496, other_ops=1,
        weight_bytes={"float32": 102_546_848}, inference_activation_bytes=25_690_112,
        inference_peak_layer="conv1_bn", training_activation_bytes=438_000_000)
    markdown = to_text(totals.to_frame(), "markdown")
    for value in ("| 3,857,973,248 (3.858 G) ", "| 7,715,946,496 (7.716 G) ",
                  "| 102,546,848 (102.55 MB) ", "| 25,690,112 B (25.69 MB, peak at conv1_bn) ",
                  "| 438,000,000 B (438.00 MB) "):
        assert value in markdown


def test_cli_summary_markdown_input_shape_and_plot(capsys, tmp_path):
    target = tmp_path / "lenet.png"
    assert cli.main(["summary", "lenet5", "--input-shape", "36,36,1", "--plot",
                     str(target)]) == 0
    out = capsys.readouterr().out
    assert "| C5 " in out and "2x2x120" in out and "multiply-adds (MACs)" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["lenet.png"]   # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_cli_plot_into_a_directory_or_unwritable_place_is_refused_before_the_work(
        capsys, tmp_path):
    (tmp_path / "d.png").mkdir()
    assert cli.main(["summary", "lenet5", "--plot", str(tmp_path / "d.png")]) == 2
    assert capsys.readouterr().err == (f"zoo: error: --plot: {str(tmp_path / 'd.png')!r} is a "
                                       f"directory; name a .png file\n")
    # A place the temporary file cannot be made in is named as asked, not as the temporary.
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError, match=r"cannot write '.*/f/p.png' in '.*/f': File "):
        zoo.common.atomic_write_text(str(tmp_path / "f" / "p.png"), "x")
    assert sorted(os.listdir(tmp_path)) == ["d.png", "f"]


def test_cli_summary_whose_plot_fails_at_write_time_prints_no_table(capsys):
    """A plot that only fails when written (/proc takes no files, yet passes the checks
    before the work) ends zoo summary with one line and nothing on stdout: the table was
    printed first, then the error."""
    assert cli.main(["summary", "lenet5", "--plot", "/proc/zoo-summary.png"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("zoo: error: ") and captured.err.count("\n") == 1
    assert "/proc/zoo-summary.png" in captured.err


def test_atomic_write_removes_the_temporary_a_killed_writer_left(tmp_path):
    """A process killed while it writes (SIGKILL, SIGTERM) runs no clean-up: its temporary
    file stayed beside the target for good, one more per kill (a model's size each, for the
    run directory's checkpoints). The next write of that file removes it; the temporaries
    of live writers stay."""
    target, flag = tmp_path / "p.png", tmp_path / "writing"
    script = textwrap.dedent(f"""
        import time
        from zoo.common import atomic_write
        def stalled(tmp):
            open(tmp, "w").write("half")
            open({str(flag)!r}, "w").close()
            time.sleep(600)
        atomic_write({str(target)!r}, stalled)
    """)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo,
                            env=dict(os.environ, PYTHONPATH=repo))
    try:
        wait_for_marker(flag, proc, "the writer never started")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    flag.unlink()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(".p.png.tmp-")   # the killed write's
    # a write under way in this process
    live = tmp_path / (zoo.common.temporary_prefix(".p.png.tmp-") + "x.png")
    live.write_text("")
    zoo.common.atomic_write_text(str(target), "x")
    assert sorted(os.listdir(tmp_path)) == [live.name, "p.png"]
    assert target.read_text() == "x"


def test_stale_temporaries_are_removed_only_for_a_process_of_this_machine(tmp_path):
    """A temporary is named after its writer's process id, and a dead one's is removed by the
    next write; on a disk shared between machines, a live writer elsewhere has a process id
    that does not exist here, and its temporary (an export's staging directory, a model
    file half written) was removed under it. A temporary names its host too, and only this
    host's dead writers' go; a user's file that merely starts like one stays."""
    import socket
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    prefix = zoo.common.temporary_prefix(".tmp-")
    assert prefix == f".tmp-{os.getpid()}-{socket.gethostname()}-"
    dead_here = f".tmp-{gone.pid}-{socket.gethostname()}-abc"
    elsewhere = f".tmp-{gone.pid}-{socket.gethostname()}x-abc"   # another machine's writer
    mine = f".tmp-{gone.pid}-notes.txt"                          # the user's own file
    for name in (dead_here, elsewhere):
        (tmp_path / name).mkdir()
    (tmp_path / mine).write_text("mine")
    zoo.common.remove_stale_temporaries(tmp_path, ".tmp-")
    assert sorted(os.listdir(tmp_path)) == sorted([elsewhere, mine])


def test_atomic_write_replaces_the_file_rather_than_writing_into_it(tmp_path):
    """The new content arrives by a rename onto the name: a reader that opened the old file,
    or another name of it (a hard link), keeps the old content whole, never a half-written
    file."""
    target = tmp_path / "p.txt"
    target.write_text("old")
    os.link(target, tmp_path / "link.txt")
    with open(target) as reader:
        zoo.common.atomic_write_text(str(target), "new")
        assert reader.read() == "old"
    assert target.read_text() == "new" and (tmp_path / "link.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "p.txt"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_atomic_write_syncs_the_file_before_its_rename_and_the_directory_after(tmp_path,
                                                                              monkeypatch):
    """After a power loss the file holds its old content or its new one: the data reaches
    the disk before the rename (a rename can reach it before the data it names, leaving an
    empty file under the name), and the directory's entry after."""
    events = record_syncs_and_renames(monkeypatch)
    target = str(tmp_path / "run" / "info.json")
    zoo.common.atomic_write_text(target, "{}")
    (renamed,) = [e for e in events if e[0] == "rename"]
    assert renamed[2] == target
    assert events == [("sync", renamed[1]), renamed, ("sync", str(tmp_path / "run"))]


def test_stale_temporaries_of_odd_names_and_links_are_handled(tmp_path, monkeypatch):
    """Names with a process id that is no ASCII integer or none a process can have stay, and
    a dead writer's temporary that is a link to a directory goes as a link: what it leads
    to is kept. A host name with a path separator makes no path of the prefix."""
    import socket
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    host = socket.gethostname()
    odd = [f".tmp-x1-{host}-a", f".tmp-\u00b2-{host}-b", f".tmp-{2 ** 70}-{host}-c"]
    for name in odd:
        (tmp_path / name).write_text("")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "data").write_text("data")
    (tmp_path / f".tmp-{gone.pid}-{host}-link").symlink_to(kept)
    zoo.common.remove_stale_temporaries(tmp_path, ".tmp-")
    assert sorted(os.listdir(tmp_path)) == sorted(odd + ["kept"])
    assert (kept / "data").read_text() == "data"
    monkeypatch.setattr(socket, "gethostname", lambda: f"rack{os.sep}node")
    assert zoo.common.temporary_prefix(".tmp-") == f".tmp-{os.getpid()}-rack_node-"


def test_atomic_write_names_the_file_a_failed_write_was_for(tmp_path):
    """A write that failed (a full disk) said "[Errno 28] No space left on device" with no
    file, or named the hidden temporary file; it names the file asked for."""
    import errno

    def disk_full(tmp):
        open(tmp, "w").write("half")
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    target = tmp_path / "model.keras"
    with pytest.raises(OSError) as info:
        zoo.common.atomic_write(str(target), disk_full)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (f"[Errno 28] cannot write {str(target)!r}: No space left on "
                               f"device")
    assert os.listdir(tmp_path) == []


def _open_hdf5_files(directory) -> list:
    import h5py
    return [os.fsdecode(f.name) for f in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)
            if os.fsdecode(f.name).startswith(str(directory))]


def test_atomic_write_closes_the_hdf5_file_a_failed_write_left_open(tmp_path):
    """An HDF5 writer that failed (a full disk) left its file open, held by the exception's
    traceback: h5py's last flush of it, when Python ended, printed "Exception ignored"
    tracebacks after the command's one line and could crash the process (exit code 139)."""
    import errno
    import h5py

    def disk_full(tmp):
        f = h5py.File(tmp, "w")
        f.create_dataset("w", data=np.zeros(10))
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: "
                                    "time = ..., buf = 0x55, offset = 4096)")

    target = tmp_path / "weights.h5"
    with pytest.raises(OSError) as info:
        zoo.common.atomic_write(str(target), disk_full)
    assert str(info.value) == (f"[Errno 28] cannot write {str(target)!r}: No space left on "
                               f"device")    # the system's words, not HDF5's screenful
    assert os.listdir(tmp_path) == []
    assert _open_hdf5_files(tmp_path) == []


def test_save_weights_file_refuses_a_disk_without_room_before_hdf5_writes(tmp_path,
                                                                          monkeypatch):
    """HDF5 went on writing into a full disk (Keras' save_weights: zoo train's backup, zoo
    tune's trial checkpoint) and could end the process with a segmentation fault; the file
    is refused before it starts, naming it, and nothing is written."""
    import collections
    import errno
    import keras
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(1000)])
    size = zoo.common.weights_file_size(model)
    assert size == 404_000 + 2 * 2048 + 65536   # 101,000 float32, HDF5's records counted
    import types   # a dtype numpy does not know is counted at 8 bytes, not a failed backup
    odd = types.SimpleNamespace(variables=[types.SimpleNamespace(shape=(10,), dtype="odd8")])
    assert zoo.common.weights_file_size(odd) == 80 + 2048 + 65536
    target = tmp_path / "latest.weights.h5"
    statvfs = os.statvfs
    full = collections.namedtuple("statvfs", "f_bavail f_bfree f_frsize")(50, 50, 4096)
    monkeypatch.setattr(os, "statvfs", lambda path: full)
    with pytest.raises(OSError) as info:
        zoo.common.save_weights_file(model, target)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (f"[Errno 28] cannot write {str(target)!r}: No space left on "
                               f"device (it needs about {size / 1e6:.1f} MB, the disk has "
                               f"0.2 MB free)")
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(os, "statvfs", statvfs)
    zoo.common.save_weights_file(model, target)
    assert os.listdir(tmp_path) == ["latest.weights.h5"]
    assert os.path.getsize(target) <= size


def test_save_weights_file_leaves_no_file_or_open_hdf5_file_when_the_write_fails(
        tmp_path, monkeypatch):
    """A disk that fills while Keras writes: the temporary file goes, closed, and the error
    names the file asked for."""
    import errno
    import h5py
    import keras
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    save_weights = keras.Model.save_weights

    def disk_fills(self, filepath, *args, **kwargs):
        save_weights(self, filepath, *args, **kwargs)
        h5py.File(filepath, "a").create_dataset("more", data=np.zeros(10))  # left open
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed)")

    monkeypatch.setattr(keras.Model, "save_weights", disk_fills)
    target = tmp_path / "checkpoint.weights.h5"
    with pytest.raises(OSError, match=r"^\[Errno 28\] cannot write '.*/checkpoint\.weights\.h5': "
                                      r"No space left on device$"):
        zoo.common.save_weights_file(model, target)
    assert os.listdir(tmp_path) == []
    assert _open_hdf5_files(tmp_path) == []


@pytest.mark.parametrize("args,message", [
    (["summary", "lenet6"], "Unknown model 'lenet6'"),
    (["summary", "lenet5", "--batch-size", "0"], "--batch-size must be a positive integer"),
    (["summary", "lenet5", "--plot", "/nonexistent-dir/p.png"], "directory does not exist"),
    (["summary", "lenet5", "--plot", "p.jpg"], "must name a .png file"),
    # was "directory does not exist" for a directory path that is a file
    (["summary", "lenet5", "--plot", f"{__file__}/p.png"],
     f"--plot: {__file__!r} is a file, not a directory"),
    (["summary", "lenet5", "--format", "html"], "invalid choice"),
])
def test_cli_errors_are_one_line(capsys, args, message):
    try:
        code = cli.main(args)
    except SystemExit as exc:   # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0]
    assert "Traceback" not in err
