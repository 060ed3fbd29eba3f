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
    ((2, 4, 4, 3), {"renorm": True}, False),
    ((2, 4, 4, 3), {}, True),
])
def test_falls_back_to_keras_where_the_fused_kernel_does_not_apply(shape, kwargs, fuses):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    ref, fused = _pair(shape, **kwargs)
    assert fused._can_fuse(tf.constant(x), None) is fuses
    for training in (True, False):
        np.testing.assert_allclose(fused(x, training=training), ref(x, training=training),
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
