"""The zoo's models in Keras' own workflows, without the zoo's functions: config and JSON
round trips, clone_model, and a .keras file loaded by plain ``keras.saving.load_model`` in a
fresh process (README, Building models: "Plain Keras and TensorFlow tools")."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import keras

import zoo

ROOT = Path(__file__).resolve().parents[1]

# Small builds holding every custom layer class of the zoo (zoo.layers).
BUILDS = {
    "lenet5": dict(),   # Subsampling, PartialConv2D, RBFOutput
    "googlenet": dict(input_shape=(65, 65, 3), num_classes=3, aux_logits=True, batch_norm=True,
                      local_response_normalization=True),   # Conv2D, BatchNormalization, LRN
    "xception": dict(input_shape=(32, 32, 3), num_classes=3),   # SeparableConv2D
}


def perturbed(name):
    """A build whose weights and batch-norm statistics are off their initial values (a lost or
    swapped weight changes the outputs), with logits as outputs."""
    model = zoo.get_model(name, **BUILDS[name], classifier_activation=None)
    rng = np.random.RandomState(0)
    for v in model.weights:
        w = keras.ops.convert_to_numpy(v)
        v.assign(w + rng.uniform(0.0, 0.1 * float(w.std()) + 0.01, w.shape).astype(w.dtype))
    return model


def outputs(model, x):
    y = model(x, training=False)
    return [keras.ops.convert_to_numpy(t) for t in (y if isinstance(y, (list, tuple)) else [y])]


def as_json(config):
    """A config as JSON text (JSON has lists only: a tuple read back is a list)."""
    return json.dumps(config, sort_keys=True)


def classes(model):
    return [f"{type(layer).__module__}.{type(layer).__name__}" for layer in model.layers]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_config_json_and_clone_round_trips_keep_layers_weights_and_outputs(name):
    model = perturbed(name)
    x = np.random.RandomState(1).uniform(0, 1, (2, *model.input_shape[1:])).astype("float32")
    expected = outputs(model, x)
    copies = {"from_config": keras.Model.from_config(model.get_config()),
              "clone_model": keras.models.clone_model(model),
              "model_from_json": keras.models.model_from_json(model.to_json())}
    for how, copy in copies.items():
        assert classes(copy) == classes(model), how
        assert copy.count_params() == model.count_params(), how
        assert as_json(copy.get_config()) == as_json(model.get_config()), how
        copy.set_weights(model.get_weights())
        for got, want in zip(outputs(copy, x), expected, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=how)


LOAD_SCRIPT = """
import sys
import keras, numpy as np
path, x_path, y_path = sys.argv[1:]
try:
    keras.saving.load_model(path)
except TypeError as exc:
    print("without:", str(exc).replace("\\n", " "))
import zoo.layers   # registers the zoo's layer classes (README)
model = keras.saving.load_model(path)
out = model(np.load(x_path), training=False)
print("with: max abs difference",
      float(np.max(np.abs(keras.ops.convert_to_numpy(out) - np.load(y_path)))))
"""


def test_a_keras_file_loads_with_plain_keras_once_zoo_layers_is_imported(tmp_path):
    model = perturbed("lenet5")
    x = np.random.RandomState(1).uniform(0, 1, (2, 32, 32, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", outputs(model, x)[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "m.keras"),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    without, with_ = proc.stdout.strip().splitlines()
    # Keras' own message; the layer config it quotes names the module to import
    assert "Could not locate class 'Subsampling'" in without
    assert "'module': 'zoo.layers'" in without and "'registered_name': 'zoo>Subsampling'" in without
    assert with_ == "with: max abs difference 0.0"
