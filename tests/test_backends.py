"""The zoo under another Keras backend: the builders run on it; training, search and export,
which are TensorFlow's, refuse at once in one line naming the backend and what to set."""

import json
import os
import subprocess
import sys

import pytest


def run(args, env_update, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_update)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("command", [
    ["train", "lenet5", "--epochs", "1", "--run-dir", "{tmp}/run"],
    ["export", "{tmp}/run", "--base-dir", "{tmp}/exported"],
    ["tune", "lenet5", "--max-trials", "1", "--epochs", "1", "--directory", "{tmp}/tuning"],
])
def test_training_export_and_search_refuse_another_backend_in_one_line(tmp_path, command):
    # (was: zoo train trained on torch, ~3x slower, to a worse result; zoo export failed
    # with Keras' "`track` is not supported ... in the torch backend")
    args = [a.format(tmp=tmp_path) for a in command]
    proc = run(["-m", "zoo", *args], {"KERAS_BACKEND": "torch"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"zoo: error: zoo {command[0]} needs Keras' TensorFlow backend; Keras' backend is torch "
        f"(KERAS_BACKEND=torch): set KERAS_BACKEND=tensorflow"]
    assert sorted(os.listdir(tmp_path)) == []


def test_fit_refuses_the_backend_of_keras_json(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    script = (
        "import zoo, zoo.train\n"
        "try:\n"
        f"    zoo.train.fit(zoo.lenet5(), 'digits', epochs=1, run_dir={str(tmp_path / 'run')!r})\n"
        "except zoo.common.BackendError as e:\n"
        "    print(e)\n")
    proc = run(["-c", script], {"KERAS_HOME": str(tmp_path)}, drop=("KERAS_BACKEND",))
    assert proc.returncode == 0, proc.stderr[-2000:]
    keras_json = tmp_path / "keras.json"
    assert proc.stdout.strip() == (
        f"zoo.train.fit needs Keras' TensorFlow backend; Keras' backend is torch "
        f"(\"backend\": \"torch\" in {keras_json}): set KERAS_BACKEND=tensorflow")
    assert not (tmp_path / "run").exists()


def test_builders_layers_and_profile_run_on_the_torch_backend():
    # Pure Keras: the published counts, LeNet-5's partial C3 and RBF output, the zoo's batch
    # norm (TensorFlow's fused kernel on TensorFlow only), a forward pass and a training step.
    pytest.importorskip("torch")
    script = (
        "import sys, numpy as np, keras, zoo\n"
        "assert keras.backend.backend() == 'torch'\n"
        "for name in ('lenet5', 'resnet18'):\n"
        "    info = zoo.model_info(name)\n"
        "    m = zoo.get_model(name)\n"
        "    print(name, m.count_params(), info.params, info.trainable_params,\n"
        "          sum(int(np.prod(w.shape)) for w in m.trainable_weights))\n"
        "m = zoo.resnet18(input_shape=(32, 32, 3), num_classes=3)\n"
        "m.compile('sgd', 'sparse_categorical_crossentropy')\n"
        "x = np.random.default_rng(0).random((4, 32, 32, 3), dtype='float32')\n"
        "m.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)\n"
        "print('predict', m.predict(x, verbose=0).shape)\n"
        "print('macs', zoo.profile(zoo.lenet5()).totals.macs)\n"
        "print('tensorflow', 'tensorflow' in sys.modules)\n")
    proc = run(["-c", script], {"KERAS_BACKEND": "torch"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "lenet5 60840 60840 60000 60000",
        "resnet18 11699112 None 11689512 11689512",
        "predict (4, 3)",
        "macs 328096",
        "tensorflow False",   # (neither the builders nor zoo.profile import it)
    ]
