"""Every script in examples/ runs, at its smallest settings, and prints what it says."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading

import pandas as pd
import pytest

from conftest import make_colour_folder

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)     # the example's own default
    return env


def _check_start_up_filtered(stderr):
    # TensorFlow's start-up lines, which ignore TF_CPP_MIN_LOG_LEVEL, are filtered as in
    # the zoo commands.
    assert "I0000" not in stderr and "InitializeLog" not in stderr, stderr[-2000:]


def run(script, *args, cwd):
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_start_up_filtered(r.stderr)
    return r.stdout


def run_until(script, *args, cwd, stop):
    """Run an example until it prints a line starting with ``stop``, then kill it (what it
    does after is not the test's); returns its output up to that line."""
    env = dict(_env(), PYTHONUNBUFFERED="1")   # each line as it is printed
    lines = []
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], cwd=cwd,
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        timeout = threading.Timer(900, proc.kill)
        timeout.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith(stop):
                    break
        finally:
            timeout.cancel()
            proc.kill()
            proc.wait()
            proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    assert lines and lines[-1].startswith(stop), stderr[-3000:]
    _check_start_up_filtered(stderr)
    return "".join(lines)


def test_every_example_is_tested():
    tested = {"train_lenet5_digits.py", "unet_shapes.py", "finetune_resnet_folder.py",
              "tune_lenet5_digits.py", "tune_resnet_cifar10.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def _public_names_used(tree):
    """``(module, name)`` of every name an example takes from ``zoo`` or ``tuning``: ``from
    zoo.M import n``, and ``alias.n`` for ``from zoo import M as alias`` or ``import tuning``."""
    import importlib
    modules, used = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update({a.asname or a.name: a.name for a in node.names
                            if a.name.split(".")[0] in ("zoo", "tuning")})
        elif isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in ("zoo", "tuning"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if importlib.util.find_spec(node.module) and \
                        isinstance(getattr(importlib.import_module(node.module), alias.name),
                                   type(importlib)):
                    modules[alias.asname or alias.name] = full
                else:
                    used.append((node.module, alias.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            used.append((modules[node.value.id], node.attr))
    return used


def test_the_examples_use_the_public_api():
    # train.train_defaults and data.SHAPES_LABELS were in no __all__ and not in the README,
    # and finetune_resnet_folder.py read fit.last_run_dir, which neither documents.
    import importlib
    readme = (REPO / "README.md").read_text()
    for script in sorted(EXAMPLES.glob("*.py")):
        for module_name, name in _public_names_used(ast.parse(script.read_text())):
            module = importlib.import_module(module_name)
            public = getattr(module, "__all__", None)
            assert not name.startswith("_") and hasattr(module, name), (script.name, name)
            if public is not None:
                assert name in public, (script.name, module_name, name)
            else:    # (zoo.startlog, zoo.weights: the README names what is public)
                assert f"{module_name}.{name}" in readme, (script.name, module_name, name)
    source = (EXAMPLES / "finetune_resnet_folder.py").read_text()
    assert "last_run_dir" not in source


def test_every_examples_help_describes_it_with_its_docstrings_first_paragraph():
    # Two scripts' --help cut their description at the docstring's first line, mid-sentence
    # ("... a frozen ResNet backbone with a new head, then").
    # All five in one process, each run as `python SCRIPT --help` runs it (runpy, as
    # __main__): every script imports TensorFlow before it parses its arguments, ~4-5 s of
    # CPU a process; each script also runs in a process of its own in the tests below.
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    code = ("import contextlib, io, json, runpy, sys\n"
            "helps = {}\n"
            "for path in sys.argv[1:]:\n"
            "    sys.argv, out, status = [path, '--help'], io.StringIO(), 'no exit'\n"
            "    with contextlib.redirect_stdout(out):\n"
            "        try:\n"
            "            runpy.run_path(path, run_name='__main__')\n"
            "        except SystemExit as exc:\n"
            "            status = exc.code\n"
            "    helps[path] = [status, out.getvalue()]\n"
            "print(json.dumps(helps))\n")
    scripts = sorted(EXAMPLES.glob("*.py"))
    proc = subprocess.run([sys.executable, "-c", code, *map(str, scripts)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    helps = json.loads(proc.stdout.splitlines()[-1])
    assert list(helps) == [str(p) for p in scripts]
    for path, (status, out) in helps.items():
        name = pathlib.Path(path).name
        assert status == 0, (name, status)
        doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
        first = " ".join(doc.split("\n\n")[0].split())
        described = " ".join(out.split("\n\n")[1].split())
        assert described == first and described.endswith("."), name


def test_train_lenet5_digits(tmp_path):
    out = run("train_lenet5_digits.py", "--epochs", "1", "--run-dir", "run", cwd=tmp_path)
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 1
    assert (tmp_path / "run" / "model.keras").is_file()
    assert (tmp_path / "run" / "learning_curves.png").is_file()
    # zoo train lenet5's run: its cosine schedule (and the whole schedule, no early stopping)
    settings = json.load(open(tmp_path / "run" / "info.json"))["settings"]
    assert settings["lr_schedule"] == "cosine"
    predicted = json.loads(re.search(r"predicted: (\[.*\])", out).group(1))
    true = json.loads(re.search(r"true: +(\[.*\])", out).group(1))
    assert len(predicted) == len(true) == 10 and set(predicted) <= set(range(10))


def test_unet_shapes(tmp_path):
    out = run("unet_shapes.py", "--epochs", "1", "--run-dir", "run", cwd=tmp_path)
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    settings = json.load(open(tmp_path / "run" / "info.json"))["settings"]
    assert settings["lr_schedule"] == "cosine"      # zoo train unet --dataset shapes's
    assert f"test mean IoU: {round(metrics['test_mean_iou'], 4)}" in out
    ious = dict(re.findall(r"(\w+): IoU ([0-9.]+)", out))
    assert set(ious) == {"background", "circle", "square", "triangle"}
    assert all(0 <= float(v) <= 1 for v in ious.values())


def test_finetune_resnet_folder(tmp_path):
    out = run("finetune_resnet_folder.py", "--epochs", "1", "--image-size", "32",
              "--run-dir", "run", cwd=tmp_path)
    for stage, line in (("1_head", "head only"), ("2_top", "fine-tuned")):
        accuracy = json.load(open(tmp_path / "run" / stage / "metrics.json"))["test_accuracy"]
        assert f"{line}: test accuracy {accuracy:.4f}" in out
    trainable = int(re.search(r"fine-tuning ([0-9,]+) parameters", out).group(1).replace(",", ""))
    assert 0 < trainable < 11_200_000      # ResNet-18's top stage and the head, not all of it


def test_finetune_resnet_folder_fine_tunes_a_top_stage_of_alexnet_too(tmp_path):
    # AlexNet's stride-16 feature map is its last convolution's: the layers after it hold no
    # weights, and stage 2 trained the head alone (771 parameters) as "top stage + head".
    # The count is printed once stage 1 is done: the run stops there, on one batch per split
    # (stage 2 and the demo folder's 240 images are test_finetune_resnet_folder's).
    folder = make_colour_folder(tmp_path / "folder", ["a", "b", "c"], (67, 67),
                                counts=(("train", 4), ("validation", 2), ("test", 2)))
    out = run_until("finetune_resnet_folder.py", "--model", "alexnet", "--folder", str(folder),
                    "--epochs", "1", "--image-size", "67", "--run-dir", "run", cwd=tmp_path,
                    stop="fine-tuning ")
    trainable = int(re.search(r"fine-tuning ([0-9,]+) parameters", out).group(1).replace(",", ""))
    assert trainable > 256 * 3 + 3                # more than the head's


def test_finetune_resnet_folder_converts_the_input_for_a_published_weights_file(tmp_path):
    # A file in the layout of Keras' published ImageNet files, as --weights PATH offline:
    # the backbone gets the input those weights were trained on, as with --weights imagenet
    # (before, only the word imagenet did, and the file's backbone saw the zoo's input).
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    reference = keras.applications.ResNet50(weights=None, include_top=False,
                                            input_shape=(32, 32, 3))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    # One batch per split (the input layer is the point, not the demo folder's 240 images).
    folder = make_colour_folder(tmp_path / "folder", ["a", "b"], (32, 32),
                                counts=(("train", 4), ("validation", 2), ("test", 2)))
    # Stage 1's model is the point: the run stops once stage 1 is done (stage 2, ResNet-50's
    # top stage fine-tuned, took ~13 s more; test_finetune_resnet_folder runs a stage 2).
    run_until("finetune_resnet_folder.py", "--model", "resnet50", "--weights", str(path),
              "--folder", str(folder), "--epochs", "1", "--image-size", "32", "--run-dir",
              "run", cwd=tmp_path, stop="head only: test accuracy")
    import zoo
    from zoo import weights as zoo_weights
    model = zoo.load_model(str(tmp_path / "run" / "1_head"))
    assert zoo_weights.IMAGENET_INPUT_LAYER in [layer.name for layer in model.layers]


def test_tune_lenet5_digits(tmp_path):
    out = run("tune_lenet5_digits.py", "--tuner", "random", "--max-trials", "1", "--epochs",
              "1", "--cv", "2", "--directory", "runs", cwd=tmp_path)
    assert "budget: 1 trials x 2 folds x 1 epochs" in out
    tuned = float(re.search(r"tuned LeNet-5 .* test accuracy: ([0-9.]+)", out).group(1))
    svc = float(re.search(r"SVC\(gamma=0.001\) .* test accuracy: ([0-9.]+)", out).group(1))
    assert 0 <= tuned <= 1 and svc > 0.95       # scikit-learn's own SVC on digits: 0.9889
    assert (tmp_path / "runs" / "lenet5_digits_random_cv" / "trials.csv").is_file()


def test_tune_resnet_cifar10_on_mock_data(tmp_path):
    out = run("tune_resnet_cifar10.py", "--mock", "8", "--max-trials", "1", "--epochs", "1",
              "--directory", "runs", cwd=tmp_path)
    assert re.search(r"best trial 0: \{'depth': (18|34),", out)
    assert re.search(r"test: \{'accuracy': [0-9.]+, 'loss': [0-9.]+\}", out)


def refused(script, *args, cwd):
    """Run an example that should refuse its arguments: exit code != 0, no traceback; returns
    the last line of its standard error."""
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    _check_start_up_filtered(r.stderr)
    return r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_an_examples_bad_argument_is_one_line(script, tmp_path):
    # The zoo refuses it in one line; the examples printed that line under a traceback.
    line = refused(script, "--epochs", "0", cwd=tmp_path)
    assert line == f"{script}: error: epochs must be a positive integer. Received: epochs=0"


def test_finetune_resnet_folder_refuses_a_model_that_is_no_classifier(tmp_path):
    # (was TypeError "unet takes no argument(s) 'include_top', 'pooling'", after the demo
    # folder was written)
    line = refused("finetune_resnet_folder.py", "--model", "unet", cwd=tmp_path)
    assert "argument --model: invalid choice: 'unet'" in line and "'resnet18'" in line
    assert list(tmp_path.iterdir()) == []


def test_tune_resnet_cifar10_refuses_a_negative_mock_count(tmp_path):
    # (was TensorFlow's "Input dataset was expected to contain -3 elements" mid-search)
    line = refused("tune_resnet_cifar10.py", "--mock", "-3", cwd=tmp_path)
    assert line.endswith("argument --mock: expected a number of fake images per split (0: "
                         "the real data); received -3")


def test_tune_resnet_cifar10_downloads_through_the_search(tmp_path):
    # --download is tuning.search's download=True, whose failure offline is the zoo's one
    # line; the script's own tfds.builder(...).download_and_prepare() ended in requests'
    # traceback. The search is replaced: what it is given is the point.
    code = ("import runpy, sys\n"
            "import pandas as pd\n"
            "import tensorflow_datasets as tfds\n"
            "import tuning\n"
            "calls = []\n"
            "def search(*args, **kwargs):\n"
            "    calls.append(kwargs)\n"
            "    df = pd.DataFrame({'trial': ['0'], 'message': ['']})\n"
            "    df.attrs['best'] = {'trial': '0', 'hyperparameters': {}, 'test': {}}\n"
            "    return df\n"
            "def builder(*args, **kwargs):\n"
            "    raise SystemExit('tfds.builder called')\n"
            "tuning.search, tfds.builder = search, builder\n"
            "sys.argv = [sys.argv[1], '--download', '--data-dir', 'tfds']\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "print('search got', calls[0]['download'], calls[0]['data_dir'])\n")
    r = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "tune_resnet_cifar10.py")],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[-1] == "search got True tfds"


@pytest.mark.parametrize("script, model, dataset", [("train_lenet5_digits.py", "lenet5", "digits"),
                                                    ("unet_shapes.py", "unet", "shapes")])
def test_a_training_example_says_its_default_epochs(script, model, dataset):
    from zoo import train
    doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text()))
    said = int(re.search(r"\[--epochs (\d+)\]", doc).group(1))
    assert said == train.train_defaults(model, dataset)["epochs"]


def _literal(tree, name):
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    return {}


@pytest.mark.parametrize("script", ["tune_lenet5_digits.py", "tune_resnet_cifar10.py"])
def test_a_tuning_examples_command_line_searches_its_space(script):
    """The docstring's ``zoo tune`` command sets and fixes what the script's search does."""
    tree = ast.parse((EXAMPLES / script).read_text())
    command = ast.get_docstring(tree).split("zoo tune ", 1)[1].split("\n\n")[0]
    command = command.replace("\\\n", " ")
    for flag, name in (("--set", "SPACE"), ("--fix", "FIXED")):
        given = dict(v.split("=", 1) for v in re.findall(flag + r" (\S+)", command))
        assert given == _literal(tree, name), flag
