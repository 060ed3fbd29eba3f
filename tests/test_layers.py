"""zoo.layers.BatchNormalization: Keras' batch normalisation on TensorFlow's fused kernel."""

import numpy as np
import pytest

import zoo  # noqa: F401  (before TensorFlow, as users do)
import keras
import tensorflow as tf

from zoo.layers import BatchNormalization


def _pair(x_shape, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    ref, fused = keras.layers.BatchNormalization(**kwargs), BatchNormalization(**kwargs)
    ref.build(x_shape)
    fused.build(x_shape)
    weights = []
    for v in ref.weights:   # gamma/beta normal, moving mean normal, moving variance > 0
        w = rng.normal(size=v.shape).astype("float32")
        weights.append(np.abs(w) + 0.5 if "variance" in v.path else w)
    ref.set_weights(weights)
    fused.set_weights(weights)
    return ref, fused


def _run(layer, x, training):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.sin(y))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y.numpy(), [g.numpy() for g in grads], [w.numpy() for w in layer.weights]


@pytest.mark.parametrize("kwargs", [{}, {"epsilon": 1.001e-5, "momentum": 0.9},
                                    {"scale": False}, {"center": False}])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_equals_keras(kwargs, training):
    x = np.random.default_rng(1).normal(2.0, 3.0, (4, 7, 5, 6)).astype("float32")
    ref, fused = _pair(x.shape, **kwargs)
    assert fused._can_fuse(tf.constant(x), None)
    initial_mean = fused.moving_mean.numpy().copy()
    y_ref, g_ref, w_ref = _run(ref, x, training)
    y_fused, g_fused, w_fused = _run(fused, x, training)
    np.testing.assert_allclose(y_fused, y_ref, rtol=1e-5, atol=1e-5)
    assert len(g_fused) == len(g_ref)
    for a, b in zip(g_fused, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # Moving statistics: updated in training (Keras' biased variance), untouched otherwise.
    for a, b in zip(w_fused, w_ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.allclose(fused.moving_mean.numpy(), initial_mean) is (not training)


@pytest.mark.parametrize("shape,kwargs,fuses", [
    ((2, 4, 4, 3), {"axis": 1}, False),           # not the channel-last axis
    ((2, 5), {}, False),                           # not 4-D
    ((2, 4, 4, 3), {"epsilon": 1e-6}, False),     # below the fused kernel's minimum
    pytest.param((2, 4, 4, 3), {"renorm": True}, False, marks=pytest.mark.skipif(
        not hasattr(keras.layers.BatchNormalization(), "renorm"),
        reason="Keras before 3.14 has no renorm")),
    ((2, 4, 4, 3), {}, True),
])
def test_falls_back_to_keras_where_the_fused_kernel_does_not_apply(shape, kwargs, fuses):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    ref, fused = _pair(shape, **kwargs)
    assert fused._can_fuse(tf.constant(x), None) is fuses
    for training in (True, False):
        np.testing.assert_allclose(fused(x, training=training), ref(x, training=training),
                                   rtol=1e-5, atol=1e-5)


def test_fuses_on_a_keras_without_renorm():
    # Keras before 3.14 has no BatchNormalization.renorm: reading it failed every call.
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype("float32")
    ref, fused = _pair(x.shape)
    if hasattr(fused, "renorm"):
        del fused.renorm   # as those Keras versions build it
    assert fused._can_fuse(tf.constant(x), None)
    np.testing.assert_allclose(fused(x, training=False), ref(x, training=False),
                               rtol=1e-5, atol=1e-5)


def test_not_trainable_runs_in_inference_mode():
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype("float32")
    ref, fused = _pair(x.shape)
    fused.trainable = False
    before = [w.numpy() for w in fused.weights]
    np.testing.assert_allclose(fused(x, training=True), ref(x, training=False),
                               rtol=1e-5, atol=1e-5)
    for a, b in zip(before, fused.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_float16_inputs_keep_float16_outputs():
    layer = BatchNormalization(dtype="mixed_float16")
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 4, 4, 3)), "float16")
    for training in (True, False):
        y = layer(x, training=training)
        assert y.dtype == tf.float16
        assert np.isfinite(y.numpy()).all()


def _kernel_dtypes(layer, x, training):
    """The dtypes the fused batch-norm kernels of ``layer(x)`` run in (traced graph)."""
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.get_attr("T").name for op in graph.get_operations()
            if op.type == "FusedBatchNormV3"}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels,kernel", [(24, "float32"), (32, "bfloat16")])
def test_bfloat16_channels_not_a_multiple_of_16_run_in_float32(monkeypatch, training,
                                                               channels, kernel):
    """oneDNN's bfloat16 batch norm is ~7x slower when the channels are not a multiple of
    16 (Xception's 728): on a CPU such inputs go through the float32 kernel, outputs
    bfloat16 as before and gradients and moving statistics those of Keras' layer."""
    from zoo import layers as zoo_layers
    monkeypatch.setattr(zoo_layers, "bfloat16_batch_norm_slow_for_odd_channels", lambda: True)
    x = np.random.default_rng(5).normal(1.0, 2.0, (2, 4, 4, channels)).astype("float32")
    ref, fused = _pair(x.shape, dtype="mixed_bfloat16")
    ref_f32, fused_f32 = _pair(x.shape)          # the same weights, float32 throughout
    xb = tf.cast(x, "bfloat16")
    assert _kernel_dtypes(fused, xb, training) == {kernel}
    y_ref, g_ref, w_ref = _run(ref, xb, training)
    y_fused, g_fused, w_fused = _run(fused, xb, training)
    assert y_fused.dtype == y_ref.dtype == tf.bfloat16.as_numpy_dtype
    tol = 2e-2 * max(1.0, float(np.abs(y_ref.astype("float32")).max()))
    np.testing.assert_allclose(y_fused.astype("float32"), y_ref.astype("float32"), atol=tol)
    for a, b in zip(g_fused[1:], g_ref[1:]):      # gamma, beta: float32 variables
        np.testing.assert_allclose(a, b, rtol=3e-2, atol=3e-2)
    for a, b in zip(w_fused, w_ref):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2)
    if kernel == "float32":   # the float32 kernel on the bfloat16 values: float32's answer
        y32, _, _ = _run(fused_f32, tf.cast(xb, "float32").numpy(), training)
        np.testing.assert_array_equal(y_fused, tf.cast(y32, "bfloat16").numpy())
    # Where the bfloat16 kernel is not slow (GPUs), it stays.
    monkeypatch.setattr(zoo_layers, "bfloat16_batch_norm_slow_for_odd_channels", lambda: False)
    assert _kernel_dtypes(BatchNormalization(dtype="mixed_bfloat16"), xb, training) == {
        "bfloat16"}


def test_serialises_with_the_same_class_name(tmp_path):
    inputs = keras.Input((6, 6, 3))
    outputs = BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, outputs)
    assert type(model.get_layer("bn")).__name__ == "BatchNormalization"
    model.get_layer("bn").moving_mean.assign([1.0, 2.0, 3.0, 4.0])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("bn"), BatchNormalization)
    x = np.random.default_rng(5).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# --------------------------------------------------------------------------------------
# zoo.layers.Conv2D: 1x1 stride-1 kernel gradients from a matmul in bfloat16 training.

def _conv_pair(dtype, cls="Conv2D", **kwargs):
    """zoo.layers' and keras.layers' ``cls`` with the same weights."""
    import zoo.layers
    kwargs = {"filters": 8, "kernel_size": 1, **kwargs}
    ours = getattr(zoo.layers, cls)(dtype=dtype, **kwargs)
    theirs = getattr(keras.layers, cls)(dtype=dtype, **kwargs)
    ours.build((None, 6, 6, 5))
    theirs.build((None, 6, 6, 5))
    rng = np.random.default_rng(0)
    theirs.set_weights([rng.normal(size=w.shape).astype("float32") for w in ours.weights])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def _grads(layer, x, training):
    """Outputs, gradients (input, then weights) and the op types of the traced graph."""
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, "float32") * tf.range(8, dtype="float32"))
        return y, tape.gradient(loss, [x] + layer.trainable_variables)
    y, grads = run(x)
    ops = {op.type for op in run.get_concrete_function(x).graph.get_operations()}
    return (tf.cast(y, "float32").numpy(), [tf.cast(g, "float32").numpy() for g in grads], ops)


_SEPARABLE = {"cls": "SeparableConv2D", "kernel_size": 3, "padding": "same"}


@pytest.mark.parametrize("dtype,kwargs,training", [
    ("float32", {}, True),                                  # float32: Keras' call
    ("mixed_bfloat16", {}, False),                          # inference: Keras' call
    ("mixed_bfloat16", {"kernel_size": 3}, True),           # 3x3
    ("mixed_bfloat16", {"strides": 2}, True),               # strided
    ("mixed_bfloat16", {"activation": "relu"}, True),       # an activation
    ("mixed_bfloat16", {"machine": False}, True),           # not measured faster here
    ("float32", _SEPARABLE, True),                          # and the separable layer's
    ("mixed_bfloat16", _SEPARABLE, False),
    ("mixed_bfloat16", {**_SEPARABLE, "activation": "relu"}, True),
    ("mixed_bfloat16", {**_SEPARABLE, "machine": False}, True),
])
def test_conv2d_is_keras_everywhere_else(dtype, kwargs, training, monkeypatch):
    import zoo.layers
    kwargs = dict(kwargs)
    machine = kwargs.pop("machine", True)
    monkeypatch.setattr(zoo.layers, "matmul_gradients_measured_faster", lambda: machine)
    ours, theirs = _conv_pair(dtype, **kwargs)
    x = tf.constant(np.random.default_rng(1).normal(size=(4, 6, 6, 5)), "float32")
    y1, g1, ops1 = _grads(ours, x, training)
    y2, g2, ops2 = _grads(theirs, x, training)
    assert "MatMul" not in ops1
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_conv2d_serialises_and_trains_in_a_model(monkeypatch, jit_compile):
    import zoo.layers
    from zoo.layers import Conv2D
    monkeypatch.setattr(zoo.layers, "matmul_gradients_measured_faster", lambda: True)
    layer = Conv2D(4, 1, name="c")
    config = keras.saving.serialize_keras_object(layer)
    assert config["class_name"] == "Conv2D" and config["registered_name"] == "zoo>Conv2D"
    assert type(keras.saving.deserialize_keras_object(config)) is Conv2D
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(8, 1, dtype="mixed_bfloat16")(inputs)
    x = BatchNormalization(dtype="mixed_bfloat16")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    x = np.random.default_rng(2).normal(size=(60, 6, 6, 3)).astype("float32")  # 7.5 batches
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    kernel = model.layers[1].kernel.numpy()
    history = model.fit(x, y, epochs=10, batch_size=8, verbose=0).history["loss"]
    assert not np.array_equal(kernel, model.layers[1].kernel.numpy())
    assert history[-1] < history[0]


# --------------------------------------------------------------------------------------
# zoo.layers.SeparableConv2D: the pointwise kernel gradient from a matmul in bfloat16
# training too (item 32); the depthwise part stays Keras'.

@pytest.mark.parametrize("kwargs", [
    {"use_bias": True}, {"use_bias": False},                               # Conv2D 1x1
    {**_SEPARABLE, "use_bias": True}, {**_SEPARABLE, "use_bias": False},
    {**_SEPARABLE, "use_bias": False, "strides": 2},     # the stride is the depthwise's
    {**_SEPARABLE, "use_bias": False, "depth_multiplier": 2},
])
def test_bfloat16_training_takes_1x1_kernel_gradients_from_a_matmul(kwargs, monkeypatch):
    import zoo.layers   # on any CPU: the path is on by default where AMX-BF16 is
    monkeypatch.setattr(zoo.layers, "matmul_gradients_measured_faster", lambda: True)
    separable = kwargs.get("cls") == "SeparableConv2D"
    ours, theirs = _conv_pair("mixed_bfloat16", **kwargs)
    reference, _ = _conv_pair("float32", **kwargs)
    reference.set_weights(theirs.get_weights())
    # Inputs that bfloat16 holds exactly, so float32 gives the exact gradients.
    x = tf.cast(tf.cast(np.random.default_rng(1).normal(size=(4, 6, 6, 5)), "bfloat16"),
                "float32")
    y1, g1, ops1 = _grads(ours, x, training=True)
    y2, g2, ops2 = _grads(theirs, x, training=True)
    y0, g0, _ = _grads(reference, x, training=True)
    assert "MatMul" in ops1 and "MatMul" not in ops2
    assert "Conv2DBackpropFilter" in ops2 and "Conv2DBackpropFilter" not in ops1
    assert separable == ("DepthwiseConv2dNativeBackpropFilter" in ops1)
    if separable:   # the same two convolutions, each rounded to bfloat16 as Keras' are
        np.testing.assert_allclose(y1, y2, rtol=1e-2, atol=1e-2 * np.abs(y2).max())
    else:
        np.testing.assert_array_equal(y1, y2)
    assert len(g1) == len(g0) == len(ours.trainable_variables) + 1   # and the input's
    tol = 2e-2 if separable else 1e-2   # two bfloat16 roundings in a row, or one
    for a, b in zip(g1, g0):   # bfloat16 outputs: 8 bits of mantissa
        assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b)) + 1e-3


def test_separable_conv2d_serialises_and_trains_in_a_model(monkeypatch):
    import zoo.layers
    from zoo.layers import SeparableConv2D
    monkeypatch.setattr(zoo.layers, "matmul_gradients_measured_faster", lambda: True)
    layer = SeparableConv2D(4, 3, name="s")
    config = keras.saving.serialize_keras_object(layer)
    assert config["class_name"] == "SeparableConv2D"
    assert config["registered_name"] == "zoo>SeparableConv2D"
    assert type(keras.saving.deserialize_keras_object(config)) is SeparableConv2D
    inputs = keras.Input((6, 6, 3))
    x = SeparableConv2D(8, 3, padding="same", use_bias=False, dtype="mixed_bfloat16")(inputs)
    x = BatchNormalization(dtype="mixed_bfloat16")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(2).normal(size=(60, 6, 6, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    pointwise = model.layers[1].pointwise_kernel.numpy()
    history = model.fit(x, y, epochs=10, batch_size=8, verbose=0).history["loss"]
    assert not np.array_equal(pointwise, model.layers[1].pointwise_kernel.numpy())
    assert history[-1] < history[0]


# --------------------------------------------------------------------------------------
# The classic papers' custom layers keep their arguments through a save and load.

def test_custom_layers_with_other_arguments_survive_a_save_and_load(tmp_path):
    from zoo.layers import LocalResponseNormalization, PartialConv2D, RBFOutput, Subsampling
    inputs = keras.Input((12, 12, 3))
    x = LocalResponseNormalization(depth_radius=1, bias=2.0, alpha=0.5, beta=0.6,
                                   name="lrn")(inputs)
    x = Subsampling(3, name="sub")(x)                                          # 4x4x3
    x = PartialConv2D(((0, 1), (2,)), kernel_size=3, activation="tanh", name="pc")(x)  # 2x2x2
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, RBFOutput(4, trainable_centers=True, seed=7, name="rbf")(x))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for name in ("lrn", "sub", "pc", "rbf"):
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()
    assert len(loaded.get_layer("rbf").trainable_weights) == 1
    lrn = loaded.get_layer("lrn")
    assert (lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta) == (1, 2.0, 0.5, 0.6)
    x = np.random.default_rng(6).normal(size=(2, 12, 12, 3)).astype("float32")
    expected = tf.nn.local_response_normalization(x, depth_radius=1, bias=2.0, alpha=0.5,
                                                  beta=0.6)
    np.testing.assert_allclose(lrn(x), expected, rtol=1e-5)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
