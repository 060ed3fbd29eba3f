"""Every registered model, at a small input: build, one train step, .keras round trip.

The models run eagerly here (no tracing or XLA compilation): one step on two images is what is
checked, and compiling the large graphs would cost far more than the step itself.
"""

import numpy as np
import pytest
import keras

import zoo
from conftest import registry_params


def small_kwargs(name):
    info = zoo.model_info(name)
    size = max(info.min_input_size, 32)
    channels = info.default_input_shape[-1]
    return dict(input_shape=(size, size, channels), num_classes=3)


def first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


@pytest.mark.parametrize("name", registry_params())
def test_train_step_and_keras_round_trip(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.get_model(name, **small_kwargs(name))
    outputs = model.outputs
    x = np.random.RandomState(0).rand(2, *model.inputs[0].shape[1:]).astype("float32")
    out_shape = tuple(outputs[0].shape)
    if zoo.model_info(name).task == "segmentation":
        y = np.random.RandomState(1).randint(0, 3, (2,) + out_shape[1:3])
        assert out_shape[-1] == 3
    else:
        y = np.array([0, 2])
        assert out_shape == (None, 3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    ys = y if len(outputs) == 1 else [y] * len(outputs)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, ys)
    assert np.all(np.isfinite(loss))
    changed = sum(not np.array_equal(b, w.numpy())
                  for b, w in zip(before, model.trainable_weights))
    assert changed == len(before), f"{len(before) - changed} weights got no update"

    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    expected = keras.ops.convert_to_numpy(first(model(x, training=False)))
    actual = keras.ops.convert_to_numpy(first(restored(x, training=False)))
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in zoo.list_models()
                                  if zoo.model_info(n).min_input_size > 1])
def test_minimum_size_is_exact(name):
    info = zoo.model_info(name)
    m, c = info.min_input_size, info.default_input_shape[-1]
    with pytest.raises(ValueError, match=rf"\b{m}\b"):
        zoo.get_model(name, input_shape=(m - 1, m - 1, c))
