"""zoo.export refuses bad arguments and bad dataset info with one clear message (what was
received, what is allowed) before anything is written, and a failed export leaves no model
directory it made; ``zoo export`` says the same in one line with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo  # noqa: E402
from zoo import export as zoo_export  # noqa: E402
from conftest import deny_writes, record_syncs_and_renames  # noqa: E402
from zoo.data import DatasetInfo, load_splits  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    return zoo.lenet5(variant="modern")


@pytest.fixture(scope="module")
def info():
    return load_splits("digits").info


def _run_dir(path, model, info_json):
    """A training run directory: ``model.keras`` and ``info.json`` (a dict, or raw text)."""
    path.mkdir()
    model.save(path / "model.keras")
    (path / "info.json").write_text(info_json if isinstance(info_json, str)
                                    else json.dumps(info_json))
    return path


def test_overwrite_must_be_true_or_false_and_go_with_a_version(model, tmp_path):
    first = zoo.export(model, tmp_path, name="m", version=3, lite=False)
    created = json.load(open(os.path.join(first, "assets", "zoo.json")))["created"]
    for value in ("no", 1, None):
        with pytest.raises(ValueError) as exc:
            zoo.export(model, tmp_path, name="m", version=3, overwrite=value, lite=False)
        assert str(exc.value) == f"overwrite must be True or False. Received: overwrite={value!r}"
    # Without a version the export takes the next free one: overwrite would replace nothing.
    with pytest.raises(ValueError) as exc:
        zoo.export(model, tmp_path, name="m", overwrite=True, lite=False)
    assert str(exc.value) == (
        "overwrite=True (--overwrite) replaces the version given with version= (--version N); "
        "without one the export takes the next free version and replaces nothing. Received: "
        "overwrite=True, version=None")
    # version 3 was not replaced
    assert json.load(open(os.path.join(first, "assets", "zoo.json")))["created"] == created
    assert sorted(os.listdir(tmp_path / "m")) == ["3"]


def test_a_version_spelled_otherwise_is_the_same_version(model, tmp_path):
    """``007`` and ``7`` are one version to TensorFlow Serving and to list_versions: an
    export of version 7 beside ``007`` (with or without overwrite) would make two."""
    zoo.export(model, tmp_path, name="m", version=7, lite=False)
    os.rename(tmp_path / "m" / "7", tmp_path / "m" / "007")
    assert zoo_export.list_versions(tmp_path / "m") == [7]
    for overwrite in (False, True):
        with pytest.raises(FileExistsError) as exc:
            zoo.export(model, tmp_path, name="m", version=7, overwrite=overwrite, lite=False)
        assert str(exc.value) == (f"version 7 of 'm' is already in {tmp_path / 'm' / '007'} "
                                  "(the same number written otherwise); rename or remove "
                                  "that directory.")
    assert sorted(os.listdir(tmp_path / "m")) == ["007"]
    # The next free number counts it; another explicit version is fine.
    assert zoo.export(model, tmp_path, name="m", lite=False).endswith(os.path.join("m", "8"))
    assert zoo.export(model, tmp_path, name="m", version="70", lite=False).endswith("70")


def test_an_overwrite_of_a_file_named_as_the_version_leaves_nothing_behind(model, tmp_path):
    # The directory holds other things: a file named 3 and notes. Swapped out by the
    # overwrite, the file was kept as a hidden .tmp-<pid>-... entry (removed as a
    # directory tree, which it is not).
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "3").write_text("not a version")
    (tmp_path / "m" / "notes.txt").write_text("kept")
    with pytest.raises(FileExistsError):
        zoo.export(model, tmp_path, name="m", version=3, lite=False)
    path = zoo.export(model, tmp_path, name="m", version=3, overwrite=True, lite=False)
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(tmp_path / "m")) == ["3", "notes.txt"]
    assert zoo_export.list_versions(tmp_path / "m") == [3]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_every_file_of_a_version_reaches_the_disk_before_its_rename(model, tmp_path,
                                                                     monkeypatch):
    """After a power loss a version directory is whole or absent: each of its files and
    directories is synced before the rename that makes it visible, and the model directory
    after (only zoo.json was synced; the SavedModel's files could be empty)."""
    events = record_syncs_and_renames(monkeypatch)
    target = zoo.export(model, tmp_path, name="m", version=2)
    (renamed,) = [e for e in events if e[0] == "rename" and e[2] == target]
    before, after = events[:events.index(renamed)], events[events.index(renamed) + 1:]
    synced = {path for _, path in before}
    tmp = renamed[1]
    for root, dirs, files in os.walk(target):
        for entry in [*files, ""]:   # "": the directory itself
            path = os.path.normpath(os.path.join(tmp, os.path.relpath(root, target), entry))
            assert path in synced, path
    assert os.path.isfile(os.path.join(target, "assets", "serving_default.tflite"))
    assert ("sync", str(tmp_path / "m")) in after


def test_empty_name_and_bad_base_dirs_are_refused(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as exc:
        zoo.export(model, tmp_path / "models", name="")
    assert str(exc.value) == ("name must be a directory name of letters, digits, '.', '_' or "
                              "'-' (not starting with '.' or '-'). Received: name=''")
    for base_dir in ("", None, 5, b"models"):
        with pytest.raises(ValueError) as exc:
            zoo.export(model, base_dir)
        assert str(exc.value) == ("base_dir must be a directory path (a non-empty str or "
                                  "os.PathLike; '.' for the current directory). Received: "
                                  f"base_dir={base_dir!r}")
    assert os.listdir(tmp_path) == []  # nothing in the current directory either



@pytest.mark.parametrize("name", ["lenet5\n", "lenet5\nx", "a b", "../x", "a/b", ".x", "-x"])
def test_a_name_that_is_no_plain_directory_name_is_refused(model, name, tmp_path):
    # "$" in the name's pattern matched before a final line break: "lenet5\n" made a
    # directory whose name ends in one. A path, a space or a leading '.' or '-' is refused
    # too (the README's rule for name).
    with pytest.raises(ValueError) as exc:
        zoo.export(model, tmp_path / "models", name=name, lite=False)
    assert str(exc.value) == ("name must be a directory name of letters, digits, '.', '_' or "
                              f"'-' (not starting with '.' or '-'). Received: name={name!r}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["a" * 256, "m" * 300])
def test_a_name_longer_than_a_directory_name_can_be_is_refused(model, name, tmp_path):
    # Found by generated `zoo export RUN --name ...` values: 300 characters failed with
    # "[Errno 36] File name too long" (exit code 1) after the work, the base directory made.
    with pytest.raises(ValueError) as exc:
        zoo.export(model, tmp_path / "models", name=name, lite=False)
    assert str(exc.value) == (f"name must be at most 255 characters, the longest directory "
                              f"name file systems allow. Received: a name of {len(name)} "
                              f"characters, {name[:40]!r}...")
    with pytest.raises(ValueError, match="at most 255 characters"):
        zoo_export.check_export_target(tmp_path / "models", name)   # zoo train --export's
    assert os.listdir(tmp_path) == []
    assert os.path.basename(zoo.export(model, tmp_path, name="a" * 255, version=1,
                                       lite=False)) == "1"


def test_a_base_dir_or_model_directory_that_is_a_file_is_named(model, tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "lenet5").write_text("")
    for base_dir, version, path in [(tmp_path / "afile", None, tmp_path / "afile"),
                                    (tmp_path / "afile" / "sub", 3, tmp_path / "afile"),
                                    (tmp_path / "models", None, tmp_path / "models/lenet5"),
                                    (tmp_path / "models", 3, tmp_path / "models/lenet5")]:
        with pytest.raises(ValueError) as exc:
            zoo.export(model, base_dir, version=version, lite=False)
        assert str(exc.value) == (f"{path} is a file, not a directory: the export goes to "
                                  f"{os.path.join(base_dir, 'lenet5')}/<version>; pass "
                                  "another base_dir (--base-dir) or name (--name).")
    assert sorted(os.listdir(tmp_path)) == ["afile", "models"]
    assert os.listdir(tmp_path / "models") == ["lenet5"]


def test_a_base_dir_that_cannot_be_written_is_named_before_the_export(model, tmp_path,
                                                                        monkeypatch):
    # was "[Errno 13] Permission denied: 'ro/lenet5'", naming no option
    deny_writes(monkeypatch, tmp_path)
    for base_dir in (tmp_path, tmp_path / "sub"):
        with pytest.raises(PermissionError) as exc:
            zoo.export(model, base_dir, lite=False)
        assert str(exc.value) == (f"no write permission on {tmp_path}: the export goes to "
                                  f"{os.path.join(base_dir, 'lenet5')}/<version>; pass "
                                  "another base_dir (--base-dir).")
        with pytest.raises(PermissionError):
            zoo_export.check_export_target(base_dir, "lenet5")


def test_a_base_dir_on_a_read_only_file_system_is_named_as_one(model, tmp_path, monkeypatch):
    # A read-only mount (which permission bits do not show: root is refused there too) was
    # called "no write permission on DIR".
    import collections
    deny_writes(monkeypatch, tmp_path)
    statvfs = os.statvfs
    mounted = collections.namedtuple("statvfs", "f_flag")(os.ST_RDONLY)
    monkeypatch.setattr(os, "statvfs", lambda path: (
        mounted if os.path.abspath(path) == str(tmp_path) else statvfs(path)))
    with pytest.raises(PermissionError) as exc:
        zoo.export(model, tmp_path, lite=False)
    assert str(exc.value) == (f"{tmp_path} is on a read-only file system: the export goes to "
                              f"{os.path.join(tmp_path, 'lenet5')}/<version>; pass another "
                              f"base_dir (--base-dir).")
    with pytest.raises(ValueError, match=rf"^--run-dir {tmp_path}/run cannot be written: "
                                         rf"{tmp_path} is on a read-only file system; use "
                                         rf"another run directory\.$"):
        zoo.common.check_run_dir(str(tmp_path / "run"), "--run-dir")


DIGITS_SHAPE = "input_shape (32, 32, 1)"


@pytest.mark.parametrize("field, value, message", [
    ("std", [0.0], f"std must be a list of one positive finite number ({DIGITS_SHAPE} has one "
                   "channel). Received: std=[0.0]"),
    ("std", [float("nan")], f"std must be a list of one positive finite number ({DIGITS_SHAPE}"
                            " has one channel). Received: std=[nan]"),
    ("mean", [1.0, 2.0, 3.0, 4.0], f"mean must be a list of one finite number ({DIGITS_SHAPE} "
                                   "has one channel). Received: mean=[1.0, 2.0, 3.0, 4.0]"),
    ("input_shape", "32,32,1", "input_shape must be (height, width, channels): 3 positive "
                               "integers. Received: input_shape='32,32,1'"),
    ("num_classes", "ten", "num_classes must be a positive integer. Received: "
                           "num_classes='ten'"),
    ("raw_range", "0-255", "raw_range must be (low, high): two finite numbers, low < high. "
                           "Received: raw_range='0-255'"),
    ("raw_range", [255, 0], "raw_range must be (low, high): two finite numbers, low < high. "
                            "Received: raw_range=[255, 0]"),
    ("labels", ["zero", "one"], "labels must be a list of 10 class names (num_classes=10). "
                                "Received: 2 labels"),
    ("task", "detection", "task must be 'classification' or 'segmentation'. Received: "
                          "task='detection'"),
])
def test_bad_info_values_are_named(model, info, field, value, message, tmp_path):
    as_dict = {**info.to_dict(), field: value}
    with pytest.raises(ValueError) as exc:   # the dict form
        zoo.export(model, tmp_path, info=as_dict)
    assert str(exc.value) == "info." + message
    with pytest.raises(ValueError) as exc:   # a DatasetInfo holding it
        zoo.export(model, tmp_path, info=DatasetInfo(**{**vars(info), field: value}))
    assert str(exc.value) == "info." + message
    with pytest.raises(ValueError) as exc:   # a run's info.json dict
        zoo.export(model, tmp_path, info={"model": "lenet5", "dataset": as_dict})
    assert str(exc.value) == "info.dataset." + message
    with pytest.raises(ValueError) as exc:   # where a DatasetInfo is built from a dict
        DatasetInfo.from_dict(as_dict)
    assert str(exc.value) == "DatasetInfo." + message
    assert os.listdir(tmp_path) == []


def test_from_dict_names_missing_keys(info):
    with pytest.raises(ValueError) as exc:
        DatasetInfo.from_dict({"name": "digits", "num_classes": 10})
    assert str(exc.value) == ("DatasetInfo dict is missing ['task', 'labels', 'input_shape'] "
                              "(it needs ['name', 'task', 'num_classes', 'labels', "
                              "'input_shape']). Received keys: ['name', 'num_classes']")
    assert DatasetInfo.from_dict(info.to_dict()) == info


def test_precision_must_be_a_str_and_a_failed_export_leaves_no_model_directory(
        model, tmp_path, monkeypatch):
    with pytest.raises(ValueError) as exc:
        zoo.export(model, tmp_path, name="arr", precision=np.array(["float32"]))
    assert str(exc.value) == ("precision must be one of float32, float16, bfloat16. Received: "
                              "precision=array(['float32'], dtype='<U7')")
    assert os.listdir(tmp_path) == []

    def unwritable(tmp, record):
        raise TypeError("Object of type ndarray is not JSON serializable")

    monkeypatch.setattr(zoo_export, "_write_record", unwritable)
    base = tmp_path / "new" / "models"   # made by the export: removed again
    with pytest.raises(TypeError, match="not JSON serializable"):
        zoo.export(model, base, name="arr", lite=False)
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    kept = zoo.export(model, tmp_path, name="arr", lite=False)   # a model directory in use
    monkeypatch.setattr(zoo_export, "_write_record", unwritable)
    with pytest.raises(TypeError, match="not JSON serializable"):
        zoo.export(model, tmp_path, name="arr", lite=False)
    assert os.listdir(tmp_path / "arr") == ["1"] and kept.endswith(os.path.join("arr", "1"))


def test_a_run_with_a_bad_or_corrupt_info_json_is_named(model, info, tmp_path, capsys):
    from zoo.cli import main
    models = tmp_path / "models"
    cases = [
        ({"model": "lenet5", "dataset": {"name": "digits"}},
         "{file}: dataset is missing ['task', 'num_classes', 'labels', 'input_shape'] (a "
         "DatasetInfo dict has ['name', 'task', 'num_classes', 'labels', 'input_shape']): pass "
         "DatasetInfo.to_dict() or a run's info.json."),
        ({"model": "lenet5", "dataset": {**info.to_dict(), "std": [0]}},
         "{file}: dataset.std must be a list of one positive finite number (input_shape "
         "(32, 32, 1) has one channel). Received: std=[0]"),
        ('{"model": "lenet5", "dataset": ',
         "{file} is not valid JSON (Expecting value: line 1 column 32 (char 31)): train the "
         "run again (zoo train writes it), or repair the file."),
        ("[1, 2]", "{file} holds a JSON list, not the object zoo train writes ({{\"model\", "
                   "\"dataset\", ...}})."),
    ]
    for i, (content, message) in enumerate(cases):
        run = _run_dir(tmp_path / f"run{i}", model, content)
        message = message.format(file=run / "info.json")
        with pytest.raises(ValueError) as exc:
            zoo_export.export_run(run, base_dir=models)
        assert str(exc.value) == message
        assert main(["export", str(run), "--base-dir", str(models)]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"zoo: error: {message}\n" and captured.out == ""
    assert not os.path.exists(models)


def test_zoo_export_refuses_an_empty_name_in_one_line(model, info, tmp_path):
    run = _run_dir(tmp_path / "run", model,
                   {"model": "lenet5", "task": "classification", "dataset": info.to_dict()})
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    for option, value, shown in (("--name", "", "name=''"), ("--base-dir", "", "base_dir=''")):
        proc = subprocess.run([sys.executable, "-m", "zoo", "export", str(run), option, value],
                              capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=300)
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("zoo: error: ") and proc.stderr.rstrip().endswith(
            f"Received: {shown}")
    assert sorted(os.listdir(tmp_path)) == ["run"]
