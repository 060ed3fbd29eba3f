"""Every registered model, at a small input: build, one train step, .keras round trip."""

import numpy as np
import pytest
import keras

import zoo


def small_kwargs(name):
    info = zoo.model_info(name)
    size = info.min_input_size
    channels = info.default_input_shape[-1]
    return dict(input_shape=(size, size, channels), num_classes=3)


@pytest.mark.parametrize("name", zoo.list_models())
def test_train_step_and_keras_round_trip(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.get_model(name, **small_kwargs(name))
    outputs = model.outputs
    x = np.random.RandomState(0).rand(2, *model.inputs[0].shape[1:]).astype("float32")
    out_shape = tuple(outputs[0].shape)
    if zoo.model_info(name).task == "segmentation":
        y = np.random.RandomState(1).randint(0, 3, (2,) + out_shape[1:3])
    else:
        y = np.array([0, 2])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ys = y if len(outputs) == 1 else [y] * len(outputs)
    loss = model.train_on_batch(x, ys)
    assert np.all(np.isfinite(loss))

    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0) if len(outputs) == 1
                               else restored.predict(x, verbose=0)[0],
                               model.predict(x, verbose=0) if len(outputs) == 1
                               else model.predict(x, verbose=0)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", zoo.list_models())
def test_minimum_size_is_exact(name):
    info = zoo.model_info(name)
    m, c = info.min_input_size, info.default_input_shape[-1]
    with pytest.raises(ValueError, match=str(m)):
        zoo.get_model(name, input_shape=(m - 1, m - 1, c))
