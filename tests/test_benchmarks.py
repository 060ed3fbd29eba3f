"""Smoke test of the benchmark harness: a tiny configuration runs end to end and writes
results.csv, results.md and machine.json with the expected columns and rows. Speeds are
not asserted (the machine is shared); only that they were measured."""

import csv
import glob
import importlib.util
import json
import os
import re
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import __main__ as bench  # noqa: E402
from benchmarks import core  # noqa: E402


@pytest.fixture
def small_matmul_peak(monkeypatch):
    """The run's matmul peak measured on 512x512 products (the markdown says that size):
    the 2048x2048 one took ~5 s per dtype on a 2-core CPU, and a run measures it twice in
    float32 and bfloat16, ~20 s of each tiny run; what the runs' tests check of the peak
    (recorded, the rows set against it, the best of two) does not depend on its size."""
    measure = core.matmul_peak
    monkeypatch.setattr(core, "PEAK_MATMUL_SIZE", 512)
    monkeypatch.setattr(core, "matmul_peak", lambda dtypes: measure(dtypes, size=512))


def test_tiny_run_writes_table(tmp_path, monkeypatch, small_matmul_peak):
    # The rows below are those of a machine where the zoo trains in float32 by default.
    from zoo import train as ztrain
    monkeypatch.setattr(ztrain, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(ztrain, "_cpu_prefers_bfloat16", lambda: False)
    out = tmp_path / "bench"
    argv = ["--quick", "--sections", "train,inference", "--models", "lenet5",
            "--inference-models", "lenet5", "--batch-sizes", "4,16", "--inference-images", "16",
            "--repeats", "2", "--warmup", "1", "--steps", "1", "--out", str(out)]
    assert bench.main(argv) == 0

    with open(out / "results.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == core.COLUMNS
        rows = list(reader)
    from zoo.data import autotune_by_default
    # Each batch size runs on whichever runtime was fastest for its size class (timed during
    # the warm-up: LiteRT and OpenVINO for 4-7, TensorFlow too for 16-31); the runtimes not
    # chosen among LiteRT and TensorFlow have rows of their own.
    timed = {"4": ("4-7", r"[\d.]+ on LiteRT, [\d.]+ on OpenVINO"),
             "16": ("16-31", r"[\d.]+ on LiteRT, [\d.]+ on OpenVINO, [\d.]+ on TensorFlow")}
    groups = {}
    for batch, (size_class, ms) in timed.items():
        group = [r for r in rows if r["batch"] == batch and r["section"] == "inference"]
        chosen = re.fullmatch(r"zoo Servable\.predict \((litert|openvino|tensorflow)\)",
                              group[0]["variant"])
        assert chosen and (batch == "16" or chosen[1] != "tensorflow"), group[0]
        assert re.fullmatch(f"runtime='auto' chose {chosen[1]} for batches of {size_class}: "
                            f"best ms/image {ms}; busy cores per repetition [\\d.]+ [\\d.]+",
                            group[0]["note"]), group[0]["note"]
        assert [r["variant"] for r in group[1:]] == [
            f"zoo Servable.predict ({r})" for r in ("litert", "tensorflow") if r != chosen[1]
        ] + ["model.predict, this process"] + (
            [] if autotune_by_default() else
            ["model.predict, this process, dataset without autotuning"]) + [
            "tf.saved_model.load signature"]
        groups[batch] = group
    rows = [r for r in rows if r["batch"] != "16" or r["section"] != "inference"]
    got = [(r["section"], r["model"], r["variant"]) for r in rows]
    subject = got[0][2]
    assert subject.startswith("zoo defaults (") and "fused BN" in subject
    assert "mixed" not in subject
    assert got[1] == ("train", "lenet5", "zoo, Keras default compile")
    assert [g[:2] for g in got[2:]] == [("inference", "lenet5")] * len(groups["4"])
    for r in rows:
        assert r["repeats"] == "2", r
        assert float(r["min"]) <= float(r["median"]) <= float(r["max"]), r
        assert float(r["q1"]) <= float(r["q3"]), r
        assert float(r["median"]) > 0 and r["unit"] == "img/s"
        assert r["note"].find("failed") < 0, r
    train, inference = rows[:2], rows[2:]
    assert {r["input"] for r in train} == {"32x32x1"} and {r["batch"] for r in train} == {"16"}
    assert {r["batch"] for r in inference} == {"4"}
    # The subject row carries no ratio; the others a paired ratio with its range.
    for group in (train, inference):
        assert group[0]["ratio"] == ""
        for r in group[1:]:
            assert float(r["ratio_min"]) <= float(r["ratio"]) <= float(r["ratio_max"])
            assert r["ratio_of"] == f"{group[0]['variant']} / this"
    # Achieved GFLOP/s: throughput x LeNet-5's FLOPs per image (3 x for a training step),
    # set against the float32 matmul peak measured in the run.
    from benchmarks.core import model_gflop
    import zoo
    forward = model_gflop(zoo.get_model("lenet5"))
    assert 6e-4 < forward < 7e-4        # 0.328 M multiply-adds (README: zoo list)
    machine = json.loads((out / "machine.json").read_text())
    peak = machine["matmul_peak"]["float32"]
    assert peak > 1
    for r in rows:
        per_image = forward * (3 if r["section"] == "train" else 1)
        assert r["precision"] == "float32", r
        assert abs(float(r["gflops"]) - float(r["median"]) * per_image) <= 0.01 * float(
            r["gflops"]), r
        assert abs(float(r["peak_share"]) - float(r["gflops"]) / peak) <= 0.001 + 0.01 * float(
            r["peak_share"]), r
    predict = rows[4]
    assert predict["target"] == "1.5" and predict["met"] in ("yes", "no")
    assert predict["met"] == ("yes" if float(predict["ratio"]) >= 1.5 else "no")

    md = (out / "results.md").read_text()
    assert "python -m benchmarks --quick --sections train,inference" in md
    assert "## Training throughput" in md and "## Inference throughput" in md
    assert "## Input pipeline" not in md  # not run
    table = [line for line in md.splitlines() if line.startswith("| lenet5 |")]
    assert len(table) == 2 + len(groups["4"]) + len(groups["16"])
    assert all(line.count("|") == 13 for line in table)   # 12 columns
    assert "% of float32) |" in table[0]
    assert f"TensorFlow matmul in this process reaches {peak:.0f} GFLOP/s in float32" in md
    assert "| lenet5 | 32x32x1 | 4 | model.predict, this process |" in md

    from zoo.common import cpu_has_bfloat16
    assert ("bfloat16" in machine["matmul_peak"]) == cpu_has_bfloat16()
    assert machine["cores"] >= 1 and machine["cpu"]
    assert "tensorflow" in machine["libraries"] and "keras" in machine["libraries"]
    assert machine["command"].startswith("python -m benchmarks --quick")


def test_reference_process_runs_without_the_zoo_settings():
    """benchmarks.worker: a child process with TensorFlow's own settings times its work."""
    from benchmarks.worker import Reference
    with Reference(kind="predict", model="zoo:lenet5", shape=[32, 32, 1], batch=4, images=10,
                   classes=10, fused_bn=False) as ref:
        assert isinstance(ref.info["onednn"], bool) and ref.info["tensorflow"]
        items, seconds, cpu_seconds = ref.run()
        assert items == 8 and seconds > 0 and cpu_seconds > 0   # whole batches of 4
        assert ref.run()[0] == 8
    assert ref.proc.poll() is not None          # closed with the block
    with Reference(kind="train", model="zoo:lenet5", shape=[32, 32, 1], batch=4, classes=10,
                   steps=2, jit_compile=False) as ref:
        assert ref.run()[0] == 8                 # 2 steps of 4 images
        # A bad set-up fails with the child's reason: sent to this child as the constructor
        # sends its own (a third child, importing TensorFlow only to refuse, took ~5 s);
        # that the constructor raises when its set-up fails is checked by
        # test_a_reference_process_that_dies_says_why.
        with pytest.raises(RuntimeError, match="unknown kind 'serve'"):
            ref._ask({"op": "setup", "kind": "serve", "model": "zoo:lenet5",
                      "shape": [32, 32, 1], "batch": 4, "classes": 10})


def test_a_reference_process_that_dies_says_why(monkeypatch):
    """A child that exits without answering (an import failing, a crash) is reported with
    the last line it wrote to stderr, not its exit code alone."""
    from benchmarks.worker import Reference
    monkeypatch.setattr(Reference, "COMMAND", (
        "-c", "import sys; print('loading', file=sys.stderr); "
              "sys.exit('ImportError: libtorch_cpu.so: cannot open shared object file')"))
    with pytest.raises(RuntimeError) as exc:
        Reference(kind="predict", model="zoo:lenet5")
    assert str(exc.value) == ("reference process exited (code 1): ImportError: "
                              "libtorch_cpu.so: cannot open shared object file")


def test_the_keras_reference_compiles_with_keras_default_jit_compile(monkeypatch):
    """"Keras/TensorFlow defaults": Keras' compile takes jit_compile="auto", XLA on GPUs;
    the reference process passed False, so on a GPU it was not Keras' default."""
    import keras

    from benchmarks import worker
    asked = []
    compile_model = keras.Model.compile

    def compile_spy(self, *args, **kwargs):
        asked.append(kwargs.get("jit_compile", "auto"))
        return compile_model(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", compile_spy)
    _, info = worker._setup({"kind": "train", "model": "ResNet50", "shape": [32, 32, 3],
                             "batch": 2, "classes": 10})
    assert asked == ["auto"]
    import tensorflow as tf
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert info["jit_compile"] is on_gpu        # Keras' own choice here
    _, info = worker._setup({"kind": "train", "model": "zoo:lenet5", "shape": [32, 32, 1],
                             "batch": 2, "classes": 10, "jit_compile": True})
    assert asked == ["auto", True] and info["jit_compile"] is True   # the "before" rows


_HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not _HAS_TORCH, reason="PyTorch is not installed (the bench extra)")
def test_torch_reference_runs_in_a_process_without_tensorflow():
    """The PyTorch rows run in benchmarks.worker without TensorFlow: Triton (PyTorch's CUDA
    wheels) loaded after TensorFlow crashes a process, and the rows are a plain PyTorch
    program's."""
    from benchmarks.training import torch_reference
    from benchmarks.worker import Reference
    ref, note = torch_reference("resnet50", kind="predict", shape=(32, 32, 3), batch=2,
                                classes=10, images=4, threads=1)
    with ref:
        assert ref.info["tensorflow_imported"] is False
        assert ref.info["threads"] == 1 and ref.info["torch"]
        # on the GPU where PyTorch sees one, as TensorFlow's rows run on it (it ran on the
        # CPU there), and the row says where
        device = ref.info["device"]
        assert device == "CPU" or (device and device != "cuda"), device   # a GPU's name
        assert note == (f"own process without TensorFlow, PyTorch {ref.info['torch']}, "
                        f"1 threads, on {device}")
        items, seconds, cpu_seconds = ref.run()
        assert items == 4 and seconds > 0 and cpu_seconds > 0
    assert Reference.last_info["torch"]["threads"] == 1
    # one thread too: PyTorch's OpenMP threads stall when other processes (the suite's
    # other workers) keep the cores busy, which made this step take 3 to 12 s
    ref, _ = torch_reference("resnet50", kind="train", shape=(32, 32, 3), batch=2, classes=10,
                             steps=2, threads=1)
    with ref:
        assert ref.run()[0] == 4                 # 2 steps of 2 images


@pytest.mark.skipif(not _HAS_TORCH, reason="PyTorch is not installed (the bench extra)")
def test_the_torch_resnet50_is_the_zoo_network():
    """Same parameters (total and trainable, batch-norm statistics counted as Keras does)
    and the same convolutions' output shapes, so the same strides, at 160x160."""
    import subprocess
    import sys

    import keras

    import zoo
    code = ("import json, torch\n"
            "from benchmarks.torch_resnet import ResNet50, count_parameters\n"
            "m = ResNet50(num_classes=1000).eval()\n"
            "shapes, relus = [], []\n"
            "for c in m.modules():\n"
            "    if isinstance(c, torch.nn.Conv2d):\n"
            "        c.register_forward_hook(lambda c, i, o: shapes.append(o.shape[1:]))\n"
            "    if isinstance(c, torch.nn.ReLU):\n"
            "        c.register_forward_hook(lambda c, i, o: relus.append(1))\n"
            "m(torch.zeros(1, 3, 160, 160))\n"
            "eps = sorted({c.eps for c in m.modules() if isinstance(c, torch.nn.BatchNorm2d)})\n"
            "print(json.dumps([count_parameters(m), sorted((h, w, c) for c, h, w in shapes),\n"
            "                  len(relus), eps]))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    (total, trainable), torch_shapes, relus, eps = json.loads(out.splitlines()[-1])
    model = zoo.get_model("resnet50", input_shape=(160, 160, 3))
    assert total == model.count_params() == 25_636_712
    assert trainable == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == len(torch_shapes) == 53
    assert sorted(list(layer.output.shape[1:]) for layer in convs) == torch_shapes
    assert torch_shapes[0] == [5, 5, 512]           # stride 32 in all
    # a ReLU after the stem, each convolution of a block but its last, and each addition
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)
                   and layer.get_config()["activation"] == "relu"]
    assert relus == len(activations) == 1 + 16 * 3
    norms = {layer.epsilon for layer in model.layers if hasattr(layer, "epsilon")}
    assert eps == sorted(norms) == [1.001e-5]


@pytest.mark.skipif(_HAS_TORCH, reason="PyTorch is installed")
def test_without_torch_the_torch_rows_are_left_out():
    from benchmarks import training
    assert training.torch_available() is False
    with pytest.raises(RuntimeError, match="No module named 'torch'"):
        training.torch_reference("resnet50", kind="predict", shape=(32, 32, 3), batch=2,
                                 classes=10, images=2)


def test_profile_ops_sums_the_trace_by_op(tmp_path):
    from benchmarks.profile_ops import main, profile
    table, all_ms, rate, logdir, _ = profile("lenet5", batch_size=8, steps=1, top=50,
                                             logdir=str(tmp_path / "train"))
    assert list(table.columns) == ["op", "ms", "share", "calls"]
    assert all_ms > 0 and rate > 0 and logdir == str(tmp_path / "train")
    # milliseconds: at most the step's wall time on every core a few times over (an op's
    # time shows on the thread that runs it and on those it hands work to)
    assert all_ms <= 1000 * (8 / rate) * 4 * (os.cpu_count() or 1)
    from benchmarks.profile_ops import _WRAPPERS
    assert not set(table["op"]) & _WRAPPERS
    assert (table["ms"] >= 0).all() and (table["calls"] >= 1).all()
    assert 0.9 <= table["share"].sum() <= 1.01          # top 50 covers LeNet-5's ops
    assert table["ms"].is_monotonic_decreasing
    assert any("Conv2D" in op for op in table["op"])    # forward and backward convolutions
    assert any("Backprop" in op for op in table["op"])
    assert main(["lenet5", "--mode", "predict", "--steps", "1", "--top", "3",
                 "--logdir", str(tmp_path / "predict")]) == 0
    assert glob.glob(str(tmp_path / "predict" / "**" / "*.xplane.pb"), recursive=True)


def test_profile_ops_says_the_precision_it_profiled(tmp_path, capsys, monkeypatch):
    # "auto" weighs the model and its size as fit does: Xception at 32x32 in float32 on a
    # CPU that prefers bfloat16 (item 31), and the line says so.
    from benchmarks.profile_ops import main
    from zoo import train as ztrain
    monkeypatch.setattr(ztrain, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(ztrain, "_cpu_prefers_bfloat16", lambda: True)
    assert main(["xception", "--image-size", "32", "--batch-size", "2", "--steps", "1",
                 "--mode", "predict", "--top", "2", "--logdir", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "mixed precision auto (float32);" in line


def _items_per_run(monkeypatch, module):
    """What each variant's runs return, by name, as ``module.measure`` runs them."""
    items, measure = {}, module.measure

    def counted(run, name):
        def run_and_count():
            done = run()
            items.setdefault(name, []).append(done)
            return done
        return run_and_count

    def spy(variants, **kwargs):
        for v in variants:
            v.run = counted(v.run, v.name)
        return measure(variants, **kwargs)

    monkeypatch.setattr(module, "measure", spy)
    return items


def test_train_section_measures_the_default_precision(monkeypatch):
    # On a CPU with AMX (or an AMD one with AVX512_BF16) the zoo's default trains in
    # bfloat16: the subject says so and the float32 zoo model is measured beside it.
    from benchmarks import training
    from zoo import train as ztrain
    monkeypatch.setattr(ztrain, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(ztrain, "_cpu_prefers_bfloat16", lambda: True)
    items = _items_per_run(monkeypatch, training)
    rows = training.train_section(["lenet5"], image_size=32, batch_size=8, steps=2,
                                  repeats=2, warmup=1, with_torch=False, before=False,
                                  keras_here=False, bfloat16=True)
    assert items and all(n == [16] * 3 for n in items.values())   # 2 steps of 8, 3 runs
    assert {(r.input, r.batch) for r in rows} == {("32x32x1", 8)}
    variants = [r.variant for r in rows]
    assert variants[0].startswith("zoo defaults (") and variants[0].endswith(
        ", mixed_bfloat16)")
    assert "AMX" in rows[0].note
    assert variants[1:] == ["zoo, float32 (mixed_precision='off')",
                            "zoo, Keras default compile"]
    assert all(len(r.values) == 2 and min(r.values) > 0 for r in rows)
    # Each row's share of the peak is taken in the precision it computes in.
    assert [r.precision for r in rows] == ["bfloat16", "float32", "float32"]
    # a training step: 3 x the forward pass's FLOPs
    import zoo
    forward = core.model_gflop(zoo.get_model("lenet5"))
    assert [r.gflop_per_item for r in rows] == [pytest.approx(3 * forward)] * 3


def test_train_section_measures_opt_in_bfloat16_where_the_default_is_float32(monkeypatch):
    # Where fit trains in float32 by default on a CPU with native bfloat16 (an Intel Xeon
    # without AMX; Xception below 40x40 on any, item 31), --bfloat16 measures the opt-in
    # beside it (this row had raised a TypeError before any repetition).
    import zoo.common
    from benchmarks import training
    from zoo import train as ztrain
    monkeypatch.setattr(ztrain, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(ztrain, "_cpu_prefers_bfloat16", lambda: False)
    monkeypatch.setattr(zoo.common, "cpu_has_bfloat16", lambda cpuinfo=None: True)
    rows = training.train_section(["lenet5"], image_size=32, batch_size=8, steps=1,
                                  repeats=2, warmup=1, with_torch=False, before=False,
                                  keras_here=False, bfloat16=True)
    assert [r.variant for r in rows] == ["zoo defaults (oneDNN, fused BN, no XLA)",
                                         "zoo, mixed_bfloat16 (opt-in)",
                                         "zoo, Keras default compile"]
    assert [r.precision for r in rows] == ["float32", "bfloat16", "float32"]
    assert all(len(r.values) == 2 and min(r.values) > 0 for r in rows)


def test_the_machine_description_names_the_runtimes_that_ran_the_rows(monkeypatch):
    """The Servable's rows run on LiteRT or OpenVINO, zoo serve's on its JSON readers: their
    versions are part of what was measured (they were left out)."""
    from importlib import metadata
    libraries = core.machine()["libraries"]
    for name in ("tensorflow", "keras", "ai-edge-litert", "openvino", "orjson", "pysimdjson"):
        assert libraries[name] == metadata.version(name), name
    with monkeypatch.context() as m:      # a library not installed is left out
        m.setattr(core, "_version", lambda name: None if name == "torch" else "1.0")
        assert core.machine()["libraries"] == {
            name: "1.0" for name in core.LIBRARIES if name != "torch"}
    md = core.markdown([], {**core.machine(), "load_average_end": None}, command="c",
                       seconds=60)
    assert f"openvino {metadata.version('openvino')}" in md
    assert f"ai-edge-litert {metadata.version('ai-edge-litert')}" in md


def test_rows_report_their_gflops_and_share_of_the_peak():
    from benchmarks.core import Row, matmul_peak, set_peaks
    rows = [Row(section="train", model="m", variant=v, metric="", unit="img/s",
                values=[10.0, 20.0, 30.0], precision=p, gflop_per_item=2.0)
            for v, p in (("a", "float32"), ("b", "bfloat16"))]
    set_peaks(rows, {"float32": 80.0})
    a, b = (r.as_dict() for r in rows)
    assert a["gflops"] == 40.0 and a["peak_share"] == 0.5 and a["precision"] == "float32"
    assert b["gflops"] == 40.0 and b["peak_share"] is None    # no bfloat16 peak measured
    peak = matmul_peak(("float32",), size=256, repeats=2, calls=2)
    assert list(peak) == ["float32"] and peak["float32"] > 0


def test_a_ratio_just_below_its_target_is_not_shown_rounded_up_to_it():
    from benchmarks.core import Row, machine, markdown, ratio_text
    assert [ratio_text(r, 1.5) for r in (1.4996, 1.52, 1.5, 1.49, 0.999999999)] == [
        "1.4996", "1.52", "1.50", "1.49", "1.00"]
    assert ratio_text(0.9999996, 1.0) == "0.999999" and ratio_text(2.346) == "2.35"
    rows = [Row(section="inference", model="m", variant="ref", metric="", unit="img/s",
                values=[1.0], reference=True),
            Row(section="inference", model="m", variant="zoo", metric="", unit="img/s",
                values=[1.5], ratios=[1.4996, 1.4996, 1.52], target=1.5)]
    info = {**machine(), "load_average_end": None}
    line = next(x for x in markdown(rows, info, command="c", seconds=1).splitlines()
                if x.startswith("| m |") and "zoo" in x)
    assert "| 1.4996 (1.50-1.52) | >= 1.5 | no |" in line


def test_measure_reports_busy_cores_per_repetition():
    """CPU seconds over wall seconds: this process's for a plain run, the variant's own when
    it times itself and says, none when it does not. A reference that ran some calls on one
    of two cores shows it in its row's note."""
    from benchmarks.core import Variant, measure, rows_from

    def spin():                       # one Python thread: about one busy core
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.05:
            pass
        return 1

    def sleep():
        time.sleep(0.05)
        return 1

    variants = [Variant("spin", spin), Variant("sleep", sleep),
                Variant("child", lambda: (4, 2.0, 3.0)), Variant("self-timed", lambda: (4, 2.0))]
    measured = measure(variants, repeats=3, warmup=1)
    # A spin keeps about one core busy, a sleep about none; with other processes on the
    # same 2 cores the spin may get much less than one (0.21 of a core in one repetition of
    # a CI run on a loaded machine), or this process's leftover threads add a little, so
    # the bounds are loose and the two are compared.
    spin_cores, sleep_cores = measured["spin"]["cores"], measured["sleep"]["cores"]
    assert len(spin_cores) == len(sleep_cores) == 3
    assert all(0.05 < c <= (os.cpu_count() or 1) + 0.2 for c in spin_cores), spin_cores
    assert max(sleep_cores) < 0.3 and max(sleep_cores) < min(spin_cores), sleep_cores
    assert measured["child"]["cores"] == [1.5] * 3 and measured["child"]["rates"] == [2.0] * 3
    assert measured["self-timed"]["cores"] == [] and measured["self-timed"]["rates"] == [2.0] * 3
    rows = {r.variant: r for r in rows_from(measured, variants, section="inference", model="m",
                                            metric="", unit="img/s", subject="spin")}
    assert rows["child"].note == "busy cores per repetition 1.5 1.5 1.5"
    assert rows["self-timed"].note == ""


def test_a_target_row_says_its_ratio_on_its_busiest_repetitions():
    from benchmarks.core import Variant, rows_from
    measured = {"zoo": {"rates": [120.0, 120.0, 120.0, 120.0], "cores": [2.0] * 4,
                        "first": 1.0, "error": ""},
                "keras": {"rates": [50.0, 80.0, 50.0, 75.0], "cores": [1.1, 1.8, 1.0, 1.7],
                          "first": 1.0, "error": ""}}
    variants = [Variant("zoo", None), Variant("keras", None, target=1.5)]
    rows = rows_from(measured, variants, section="inference", model="m", metric="",
                     unit="img/s", subject="zoo")
    keras_row = rows[1].as_dict()
    assert keras_row["ratio"] == 2.0                     # the median of 2.4, 1.5, 2.4, 1.6
    assert keras_row["note"] == ("busy cores per repetition 1.1 1.8 1.0 1.7; ratio 1.55 on "
                                 "its 2 of 4 repetitions with at least 75% of its most busy "
                                 "cores")
    measured["keras"]["cores"] = [1.8, 1.8, 1.7, 1.7]   # all alike: nothing to add
    rows = rows_from(measured, variants, section="inference", model="m", metric="",
                     unit="img/s", subject="zoo")
    assert rows[1].note == "busy cores per repetition 1.8 1.8 1.7 1.7"
    measured["keras"]["cores"] = [2.0, 1.5, 1.0, 2.0]   # 1.5 is 75% of 2.0: it counts
    rows = rows_from(measured, variants, section="inference", model="m", metric="",
                     unit="img/s", subject="zoo")
    assert rows[1].note.endswith("; ratio 1.60 on its 3 of 4 repetitions with at least 75% "
                                 "of its most busy cores")       # the median of 2.4, 1.5, 1.6


def test_inference_section_measures_a_bfloat16_export_where_bfloat16_is_fast(monkeypatch):
    import keras

    from benchmarks import inference
    from zoo import common
    monkeypatch.setattr(common, "cpu_prefers_bfloat16", lambda *a: True)
    keras.utils.set_random_seed(0)
    rows = inference.inference_section(["lenet5"], image_size=32, batch_sizes=[4], images=8,
                                       repeats=2, warmup=1, with_torch=False, bfloat16=True)
    bf16 = [r for r in rows if r.variant == "zoo Servable.predict, bfloat16 export (opt-in)"]
    assert len(bf16) == 1 and len(bf16[0].values) == 2 and min(bf16[0].values) > 0
    note = bf16[0].note
    assert note.startswith("zoo export --precision bfloat16 (tensorflow;")
    diff = float(re.search(r"largest probability difference to the float32 export on this "
                           r"batch (\S+);", note)[1])
    # bfloat16 rounding shows; the classic LeNet-5's RBF logits make it the most sensitive
    # model (up to 9e-2 measured on its probabilities, README: Exporting).
    assert 0 < diff < 0.2
    assert bf16[0].precision == "bfloat16"
    assert {r.precision for r in rows if r is not bf16[0]} == {"float32"}
    monkeypatch.setattr(common, "cpu_prefers_bfloat16", lambda *a: False)
    rows = inference.inference_section(["lenet5"], image_size=32, batch_sizes=[4], images=4,
                                       repeats=1, warmup=0, with_torch=False, bfloat16=True)
    assert not any("bfloat16" in r.variant for r in rows)


def test_serve_pipeline_and_accuracy_sections_write_their_rows(tmp_path, small_matmul_peak):
    """The other three sections, tiny: zoo serve on LeNet-5 against in-process predictions,
    the zoo.data pipeline against arrays in memory, and time to a low accuracy."""
    out = tmp_path / "bench"
    argv = ["--quick", "--sections", "serve,pipeline,accuracy", "--serve-models", "lenet5",
            "--serve-batches", "1,4", "--clients", "1,2", "--serve-batch-waits", "5",
            "--repeats", "2", "--warmup", "1",
            "--requests-per-client", "1", "--min-requests", "2", "--serve-seconds", "0.1",
            "--pipeline-epochs", "1",
            "--pipeline-repeats", "1", "--accuracy-repeats", "1", "--accuracy-target", "0.5",
            "--accuracy-epochs", "4", "--out", str(out)]
    assert bench.main(argv) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    serve = [r for r in rows if r["section"] == "serve"]
    assert [(r["batch"], r["clients"], r["variant"]) for r in serve] == [
        ("1", "1", "in-process Servable.predict"),
        ("1", "1", "zoo serve, 1 clients"), ("1", "2", "zoo serve, 2 clients"),
        ("1", "2", "zoo serve, 2 clients, batch wait 5 ms"),
        ("4", "1", "in-process Servable.predict"),
        ("4", "1", "zoo serve, 1 clients"), ("4", "2", "zoo serve, 2 clients"),
        ("4", "1", "zoo serve, 1 clients, b64 PNG"),
        ("4", "2", "zoo serve, 2 clients, batch wait 5 ms")]
    for r in serve:
        assert r["repeats"] == "2" and float(r["median"]) > 0 and "failed" not in r["note"], r
        if r["variant"].startswith("zoo serve"):
            assert r["ratio_of"] == "this / in-process Servable.predict"
            assert float(r["ratio_min"]) <= float(r["ratio"]) <= float(r["ratio_max"])
            assert 0 < float(r["p50_ms"]) <= float(r["p99_ms"])
            # at least max(min_requests, clients x requests_per_client) = 2 either way, and
            # more for requests quick enough to fill 0.1 s (LeNet-5's take a few ms)
            count = int(r["note"].split(" requests per repetition")[0])
            assert 2 <= count <= 512
            assert count > 2 or r["variant"].endswith(("b64 PNG", "ms")) or r["batch"] == "4", r
    # One client at a time: what HTTP alone costs bounds the ratio, and the ratio keeps
    # under that bound (a request costs the round trip plus the work).
    for r in serve:
        if r["clients"] == "1" and r["variant"].startswith("zoo serve"):
            part = r["note"].split("HTTP alone (GET model status) ")[1]
            trip_ms = float(part.split(" ms")[0])
            ceiling = float(part.split("at most ")[1].split("x")[0])
            assert trip_ms > 0 and 0 < ceiling < 1
            assert float(r["ratio"]) <= ceiling + 0.1, r
            # the server had chosen its runtime for the batch size before the timing
            server = r["note"].split("runtime by batch size in the server ")[1]
            assert re.search(("1" if r["batch"] == "1" else "4-7") + ": (litert|openvino)",
                             server.split("; in process")[0]), r["note"]
    pipeline = [r for r in rows if r["section"] == "pipeline"]
    from zoo.data import autotune_by_default
    assert [r["variant"] for r in pipeline] == [
        "zoo.data pipeline", "arrays in memory (model.fit(x, y))",
        "zoo.data pipeline + augmentation"] + (
        [] if autotune_by_default() else ["zoo.data pipeline, tf.data autotuning on (before)"])
    assert pipeline[1]["target"] == "0.95" and pipeline[1]["met"] in ("yes", "no")
    assert all(float(r["median"]) > 0 for r in pipeline)
    (accuracy,) = [r for r in rows if r["section"] == "accuracy"]
    assert accuracy["variant"] == "zoo.train.fit to 50% test accuracy"
    assert accuracy["repeats"] == "1" and 0 < float(accuracy["median"]) < 120
    assert "epochs needed [" in accuracy["note"]
    md = (out / "results.md").read_text()
    for title in ("## zoo serve vs in-process", "## Input pipeline", "## Time to accuracy"):
        assert title in md
    assert "## Training throughput" not in md


def test_requests_for_fills_a_repetition():
    from benchmarks.inference import requests_for
    assert requests_for(500.0, 2) == 125                  # 0.25 s of 500 requests/s
    assert requests_for(1.9, 2) == 2                      # slow requests: the floor
    assert requests_for(500.0, 64) == 125 and requests_for(100.0, 64) == 64
    assert requests_for(1e6, 2) == 512                    # the cap ...
    assert requests_for(1e6, 600) == 600                  # ... unless the floor is more
    assert requests_for(500.0, 2, seconds=1.0) == 500
    assert requests_for(10.0, 1) == 3                     # 2.5 calls fill 0.25 s: 3
    assert requests_for(float("inf"), 3) == 3 and requests_for(0.0, 3) == 3


def test_serve_latencies_are_those_of_the_timed_repetitions():
    from benchmarks.inference import timed_latencies
    warm, timed = [9.0] * 4, [1.0, 2.0, 3.0, 4.0] * 3
    assert timed_latencies(warm + timed, 4, 3) == timed
    # a variant whose second repetition failed: one timed repetition, not the warm-up's
    # (it took the last 3 x 4 latencies, the warm-up's among them)
    assert timed_latencies(warm + timed[:4], 4, 1) == timed[:4]
    assert timed_latencies(warm, 4, 0) == []     # failed in its first repetition


def test_http_ceiling():
    from benchmarks.inference import http_ceiling
    assert http_ceiling(1.0, 1.0) == 0.5
    assert http_ceiling(3.0, 1.0) == 0.75


def test_inference_repetitions_follow_the_preset_unless_asked():
    def settings(*argv):
        return bench.settings(bench.build_parser().parse_args(list(argv)))

    assert settings()["inference_repeats"] == 7 and settings()["repeats"] == 3
    assert settings("--quick")["inference_repeats"] == 3
    assert settings("--repeats", "2")["inference_repeats"] == 2          # --repeats covers it
    assert settings("--repeats", "2", "--inference-repeats", "5")["inference_repeats"] == 5
    assert settings("--inference-repeats", "4")["repeats"] == 3
    assert settings()["pipeline_models"] == ["lenet5", "resnet50"]
    assert settings("--quick")["pipeline_models"] == ["lenet5"]
    assert settings("--pipeline-models", "resnet50")["pipeline_models"] == ["resnet50"]


def test_pipeline_section_short_epochs_at_a_size_of_its_own(monkeypatch):
    """The large models' form of the pipeline section (BIG_PIPELINE): a few batches per
    epoch at an input size and channels of its own, without the augmented variant; with
    tf.data's autotuning off in zoo.data (here), the pipeline with it on beside it."""
    from benchmarks import training
    from benchmarks.training import pipeline_section
    from zoo.data import autotune_by_default
    items = _items_per_run(monkeypatch, training)
    rows = [r.as_dict() for r in pipeline_section(
        model_name="lenet5", image_size=36, channels=3, batches=2, epochs=2, repeats=1,
        warmup=0, augmented=False)]
    assert [r["variant"] for r in rows] == [
        "zoo.data pipeline", "arrays in memory (model.fit(x, y))"] + (
        [] if autotune_by_default() else ["zoo.data pipeline, tf.data autotuning on (before)"])
    assert {r["input"] for r in rows} == {"36x36x3"} and {r["batch"] for r in rows} == {32}
    assert all(r["note"].startswith("64 images x 2 epochs per repetition") for r in rows)
    assert items == {r["variant"]: [128, 128] for r in rows}   # a warm-up, a repetition
    assert all(float(r["median"]) > 0 for r in rows)


@pytest.mark.parametrize("argv,message", [
    # at least one warm-up: 0 was accepted, and one warm-up run anyway
    (["--warmup", "0"], "--warmup: expected an integer >= 1; received '0'"),
    # no names: the section measured nothing and the run wrote a table of what was left
    (["--models", ""], "--models: expected comma-separated names; received ''"),
    (["--sections", ","], "--sections: expected comma-separated names; received ','"),
    (["--inference-models", " "], "--inference-models: expected comma-separated names"),
    (["--serve-models", ""], "--serve-models: expected comma-separated names"),
    (["--pipeline-models", ""], "--pipeline-models: expected comma-separated names"),
])
def test_options_that_would_measure_nothing_or_ignore_a_value_are_refused(capsys, argv,
                                                                          message):
    with pytest.raises(SystemExit) as exit_info:
        bench.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m benchmarks: error: argument ")
    assert message in err


def test_every_option_of_the_benchmark_commands_has_help_text():
    from benchmarks import autotune_calls, profile_ops
    for parser in (bench.build_parser(), profile_ops.build_parser(),
                   autotune_calls.build_parser()):
        missing = [a.option_strings or [a.dest] for a in parser._actions if not a.help]
        assert not missing, (parser.prog, missing)


def test_a_name_given_twice_is_measured_once():
    s = bench.settings(bench.build_parser().parse_args(
        ["--models", "resnet50,xception,resnet50", "--sections", "train,train"]))
    assert s["models"] == ["resnet50", "xception"]


def test_a_number_given_twice_is_measured_once():
    # --clients 1,1 made two serve variants of one name, whose 2 x repeats rates were
    # paired by index with the in-process reference's repeats
    s = bench.settings(bench.build_parser().parse_args(
        ["--clients", "1,8,1", "--batch-sizes", "16,16,1", "--serve-batches", "32,32",
         "--serve-batch-waits", "2,2.0,10"]))
    assert (s["clients"], s["batch_sizes"], s["serve_batches"]) == ([1, 8], [16, 1], [32])
    assert bench.build_parser().parse_args(
        ["--serve-batch-waits", "2,2.0,10"]).serve_batch_waits == [2.0, 10.0]


def test_measure_refuses_two_variants_of_one_name():
    from benchmarks.core import Variant, measure
    with pytest.raises(ValueError, match=r"received \['x'\] more than once"):
        measure([Variant("ref", lambda: 1), Variant("x", lambda: 1), Variant("x", lambda: 2)],
                repeats=1)


def test_results_go_to_an_ignored_folder_by_default():
    """Not into benchmarks/results, where the committed runs live."""
    import subprocess
    out = bench.build_parser().parse_args([]).out
    assert out == "bench_out"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{out}/results.csv"], cwd=root)
    assert ignored.returncode == 0


@pytest.mark.parametrize("argv,message", [
    (["--repeats", "0"], "--repeats: expected an integer >= 1; received '0'"),
    (["--pipeline-repeats", "x"], "--pipeline-repeats: expected an integer >= 1; received 'x'"),
    (["--warmup", "-1"], "--warmup: expected an integer >= 1; received '-1'"),
    (["--batch-sizes", "16,0"], "--batch-sizes: expected comma-separated positive integers; "
                                "received '16,0'"),
    (["--clients", ","], "--clients: expected comma-separated positive integers"),
    (["--serve-seconds", "-0.5"], "--serve-seconds: expected a number of seconds >= 0"),
    (["--serve-batch-waits", "2,0"], "--serve-batch-waits: expected comma-separated positive "
                                     "milliseconds; received '2,0'"),
    (["--serve-batch-waits", "soon"], "--serve-batch-waits: expected comma-separated"),
    (["--serve-seconds", "inf"], "--serve-seconds: expected a number of seconds >= 0"),
    (["--accuracy-target", "98"], "--accuracy-target: expected a fraction in (0, 1]"),
])
def test_bad_options_are_one_line_errors(capsys, tmp_path, monkeypatch, argv, message):
    # an option taken for good must fail here, not start the whole benchmark
    monkeypatch.setattr(bench.core, "machine", lambda: pytest.fail("ran past the refusal"))
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m benchmarks: error: argument ")
    assert message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,message", [
    (["--sections", "train,serving"], "unknown sections ['serving']; choose from train, "
                                      "inference, serve, pipeline, accuracy"),
    (["--models", "resnet5"], "unknown models ['resnet5'] in --models; registered: "),
    (["--pipeline-models", "resnet5"], "unknown models ['resnet5'] in --pipeline-models"),
    (["--inference-models", "lenet5,resnet5"], "unknown models ['resnet5'] in "
                                               "--inference-models"),
    (["--serve-models", "resnet5"], "unknown models ['resnet5'] in --serve-models"),
    (["--pipeline-models", "lenet5,unet"], "--pipeline-models trains on digits, a "
                                           "classification dataset; received segmentation "
                                           "models ['unet']"),
])
def test_unknown_sections_and_models_are_usage_errors(capsys, tmp_path, monkeypatch, argv,
                                                     message):
    # as bad option values (exit code 2, README: Performance); they exited with 1
    monkeypatch.setattr(bench.core, "machine", lambda: pytest.fail("ran past the refusal"))
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m benchmarks: error: " + message)
    assert not (tmp_path / "out").exists()


def test_an_out_that_cannot_hold_files_is_a_one_line_error_before_any_run(tmp_path,
                                                                         monkeypatch):
    taken = tmp_path / "a file"
    taken.write_text("")
    monkeypatch.setattr(bench.core, "machine", lambda: pytest.fail("ran past the check"))
    for out, reason in ((taken, "File exists"), (taken / "sub", "Not a directory")):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(["--quick", "--out", str(out)])
        assert str(exit_info.value) == (f"python -m benchmarks: error: --out {str(out)!r} "
                                        f"cannot hold the results: {reason}")
    assert taken.read_text() == ""
    # a directory without write permission (root writes anywhere: os.access says no here)
    out = tmp_path / "read-only"
    monkeypatch.setattr(bench.os, "access", lambda path, mode: False)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--quick", "--out", str(out)])
    assert str(exit_info.value) == (f"python -m benchmarks: error: --out {str(out)!r} "
                                    "cannot hold the results: not writable")


@pytest.mark.parametrize("stop,code,line", [
    (KeyboardInterrupt, 130, "python -m benchmarks: interrupted"),
    (None, 143, "python -m benchmarks: terminated")])
def test_an_interrupted_run_says_so_in_one_line(tmp_path, monkeypatch, capsys, stop, code,
                                                line):
    """Ctrl-C printed a long traceback; SIGTERM (zoo.cli.Terminated) ended the run with
    nothing said and no clean-up (its zoo serve and reference processes were left)."""
    from zoo.cli import Terminated
    stop = stop or Terminated

    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(bench, "_record_peak", stopped)
    out = tmp_path / "out"
    assert bench.main(["--quick", "--out", str(out)]) == code
    err = capsys.readouterr().err       # the run's log lines, then the one line
    assert err.splitlines()[-1] == line and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["resnet50", "--steps", "0"], "argument --steps: expected an integer >= 1; received '0'"),
    # was zoo.registry's traceback
    (["resnet5"], "unknown model 'resnet5'; registered: alexnet, googlenet, "),
])
def test_profile_ops_refuses_bad_arguments(capsys, argv, message):
    from benchmarks import profile_ops
    with pytest.raises(SystemExit) as exit_info:
        profile_ops.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m benchmarks.profile_ops: error: {message}")
    assert err.count("\n") == 1


def test_segmentation_models_train_on_a_label_per_output_pixel(monkeypatch, tmp_path):
    """U-Net's output is a mask: the training benchmarks gave it one label per image and its
    loss failed (profile_ops and autotune_calls with a traceback, the train section with
    rows that said only "failed: ValueError: Argument `output` must have rank ...")."""
    import zoo
    from benchmarks import autotune_calls, profile_ops, training
    from benchmarks.data import batch, label_shape

    get_model = zoo.get_model

    def small(name, **kwargs):   # the paper's U-Net takes seconds a step on a CPU; one
        # pooling still makes a mask smaller than the input, and traces in half the time
        return get_model(name, **kwargs, **(dict(depth=1, base_filters=4)
                                            if name == "unet" else {}))

    monkeypatch.setattr(zoo, "get_model", small)
    from zoo import train as ztrain     # float32, as on most CPUs: two training rows
    monkeypatch.setattr(ztrain, "_gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(ztrain, "_cpu_prefers_bfloat16", lambda: False)
    unet = small("unet", input_shape=(188, 188, 1))
    assert label_shape(unet) == (172, 172) and label_shape(get_model("lenet5")) == ()
    x, y = batch((188, 188, 1), 3, 2, label_shape=(172, 172))
    assert x.shape == (3, 188, 188, 1) and y.shape == (3, 172, 172)
    assert set(np.unique(y)) == {0, 1}
    from benchmarks.data import images, images_per_run
    pixels = images((4, 4, 3), 200)
    assert pixels.shape == (200, 4, 4, 3) and pixels.dtype == np.float32
    assert (pixels.min(), pixels.max()) == (0, 255) and (pixels == np.round(pixels)).all()
    # an inference repetition: whole batches, at least one
    assert [images_per_run(4, n) for n in (10, 8, 3)] == [8, 8, 4]
    # the same images and labels as before for a classifier
    x1, y1 = batch((8, 8, 1), 4, 10)
    rng = np.random.default_rng(0)
    assert (x1 == rng.uniform(-1, 1, (4, 8, 8, 1)).astype("float32")).all()
    assert (y1 == rng.integers(0, 10, 4)).all() and y1.dtype == np.int32

    rows = training.train_section(["unet"], image_size=188, batch_size=1, steps=1, repeats=1,
                                  warmup=1, with_torch=False, before=False, keras_here=False)
    assert len(rows) == 2 and rows[1].variant == "zoo, Keras default compile"
    for row in rows:
        assert len(row.values) == 1 and row.values[0] > 0, row.note
        assert "failed" not in row.note
    # at 188x188, as the train section (the registered U-Net's smallest input); by default
    # both run at the paper's 572x572
    *_, rate, _, policy = profile_ops.profile("unet", image_size=188, batch_size=1, steps=1,
                                              top=3, logdir=str(tmp_path),
                                              mixed_precision="off")
    assert rate > 0 and policy is None
    measured = autotune_calls.measure_calls("unet", mode="fit", calls=1, image_size=188,
                                            batch_size=1, batches=1, mixed_precision="off",
                                            log=lambda line: None)
    assert all(measured[kind]["rates"][0] > 0 for kind in autotune_calls.KINDS)


def test_autotune_calls_interleaves_the_two_pipelines(capsys):
    """benchmarks.autotune_calls (item 29's measurement): every call of each pipeline timed,
    with its busy cores, and a table of both."""
    from benchmarks import autotune_calls
    lines = []
    measured = autotune_calls.measure_calls("lenet5", mode="evaluate", calls=3, batches=1,
                                            batch_size=8, mixed_precision="off",
                                            log=lines.append)
    for kind in autotune_calls.KINDS:
        assert len(measured[kind]["rates"]) == len(measured[kind]["cores"]) == 3
        assert all(r > 0 for r in measured[kind]["rates"])
        assert all(c >= 0 for c in measured[kind]["cores"])
    best = max(max(measured[k]["rates"]) for k in autotune_calls.KINDS)
    assert measured["slow_below"] == pytest.approx(0.75 * best)
    # Interleaved, the order rotated every call.
    assert [line.split(":")[0] for line in lines] == [
        "call 1/3 autotuned (tf.data default)", "call 1/3 without autotuning",
        "call 2/3 without autotuning", "call 2/3 autotuned (tf.data default)",
        "call 3/3 autotuned (tf.data default)", "call 3/3 without autotuning"]
    table = autotune_calls.table(measured)
    assert list(table["pipeline"]) == list(autotune_calls.KINDS)
    assert all(s.endswith(" of 3") for s in table["slow calls"])
    assert (table["min"] <= table["median img/s"]).all()
    assert (table["median img/s"] <= table["max"]).all()
    assert autotune_calls.main(["lenet5", "--mode", "predict", "--calls", "1", "--batches", "1",
                                "--mixed-precision", "off"]) == 0
    out = capsys.readouterr().out
    assert "lenet5 predict: 1 calls per pipeline of 1 x 32 images" in out
    assert "| without autotuning" in out


@pytest.mark.parametrize("argv,message", [
    (["resnet5"], "unknown model 'resnet5'; registered: "),
    (["lenet5", "--calls", "0"], "--calls: expected an integer >= 1; received '0'"),
    (["lenet5", "--slow", "1.5"], "--slow: expected a fraction in (0, 1); received '1.5'"),
    (["lenet5", "--mode", "train"], "argument --mode: invalid choice: 'train'"),
])
def test_autotune_calls_refuses_bad_arguments(capsys, argv, message):
    from benchmarks import autotune_calls
    with pytest.raises(SystemExit) as exit_info:
        autotune_calls.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.autotune_calls: error: ") and message in err
    assert err.count("\n") == 1


def test_models_are_measured_at_the_asked_size_where_they_accept_it():
    from benchmarks.training import bench_shape
    assert bench_shape("resnet50", 32) == (32, 32, 3)
    assert bench_shape("resnet18", 32) == (32, 32, 3)      # was its default 224x224
    assert bench_shape("googlenet", 32) == (65, 65, 3)     # at least its smallest input
    assert bench_shape("inception_v3", 32) == (75, 75, 3)
    assert bench_shape("lenet5", 160) == (32, 32, 1)       # its one input size


def test_train_section_leaves_out_the_keras_rows_where_keras_refuses_the_size(capsys):
    # keras.applications.Xception refuses inputs below 71x71, the zoo's Xception does not:
    # a sweep at 32x32 measures the zoo's rows and says why the Keras ones are missing,
    # where it had stopped with Keras' traceback.
    from benchmarks import training
    rows = training.train_section(["xception"], image_size=32, batch_size=2, steps=1,
                                  repeats=1, warmup=1, with_torch=False, before=False,
                                  keras_here=True, bfloat16=False)
    assert rows and all(r.input == "32x32x3" for r in rows)
    assert not any("keras.applications" in r.variant for r in rows)
    assert rows[0].variant.startswith("zoo defaults (")
    assert all(len(r.values) == 1 and r.values[0] > 0 for r in rows)
    err = capsys.readouterr().err
    assert ("no keras.applications.Xception rows at 32x32x3: Keras refuses it (ValueError: "
            "Input size must be at least 71x71") in err
    assert "reference process" not in err


@pytest.mark.parametrize("preset,expect", [(None, "true"), ("false", "false")])
def test_the_benchmark_processes_grow_their_gpu_memory_unless_told(preset, expect):
    # The benchmark runs TensorFlow processes side by side (its own, the Keras reference's,
    # zoo serve's, all inheriting its environment): TensorFlow's default maps nearly all
    # of a GPU's memory into the first, leaving the others none.
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    if preset is not None:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = preset
    out = subprocess.run([sys.executable, "-c", "import os, benchmarks.__main__; "
                          "print(os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == expect


def test_a_row_gives_the_median_and_quartiles_of_its_repetitions_and_its_ratios():
    from benchmarks.core import Row
    row = Row(section="train", model="m", variant="keras", metric="", unit="img/s",
              values=[1.0, 2.0, 3.0, 4.0, 100.0], ratios=[1.0, 1.23456, 5.0],
              target=1.23456, p50_ms=0.012345, p99_ms=float("nan"), first_seconds=12345.67)
    d = row.as_dict()
    assert (d["repeats"], d["median"], d["min"], d["max"], d["q1"], d["q3"]) == (
        5, 3.0, 1.0, 100.0, 2.0, 4.0)                     # not the mean, 22
    assert (d["ratio"], d["ratio_min"], d["ratio_max"]) == (1.235, 1.0, 5.0)
    assert d["met"] == "yes"                              # reached exactly
    assert d["p50_ms"] == 0.0123 and d["p99_ms"] is None and d["first_seconds"] == 12345.7
    row.target = 1.3
    assert row.as_dict()["met"] == "no"
    row.target = None
    assert row.as_dict()["met"] == ""


def test_measure_warms_each_variant_up_then_rotates_their_order():
    """Warm-up runs are untimed and the first one's time is kept; repetition r starts at
    the r-th variant; a variant that fails is dropped from the repetitions that follow,
    and its row says why."""
    from benchmarks.core import Variant, measure, rows_from
    calls = []

    def variant(name, fail_on=None):
        count = []

        def run():
            count.append(1)
            calls.append(name)
            if len(count) == fail_on:
                raise RuntimeError(f"{name} broke")
            if name == "a" and len(count) == 1:
                time.sleep(0.05)                  # the first run compiles
            return 1, 0.5                         # timed by itself: 2 items/s, no cores
        return run

    variants = [Variant("a", variant("a")), Variant("b", variant("b"), note="b's note"),
                Variant("c", variant("c", fail_on=4)), Variant("d", variant("d", fail_on=1))]
    measured = measure(variants, repeats=3, warmup=2)
    assert calls == list("aabbccd") + list("abc") + list("bca") + list("ab")
    assert [len(measured[n]["rates"]) for n in "abcd"] == [3, 3, 1, 0]
    assert measured["a"]["rates"] == [2.0] * 3 and measured["a"]["cores"] == []
    assert measured["a"]["first"] >= 0.05 and measured["b"]["first"] < 0.05
    assert measured["d"]["first"] is None
    assert [measured[n]["error"] for n in "abcd"] == ["", "", "RuntimeError: c broke",
                                                      "RuntimeError: d broke"]
    rows = rows_from(measured, variants, section="train", model="m", metric="", unit="img/s",
                     subject="a", note="2 epochs")
    assert [r.reference for r in rows] == [True, False, False, False]
    assert [r.note for r in rows] == ["2 epochs", "2 epochs; b's note",
                                      "2 epochs; failed: RuntimeError: c broke",
                                      "2 epochs; failed: RuntimeError: d broke"]
    assert rows[0].first_seconds == measured["a"]["first"]
    assert [r.ratios for r in rows] == [[], [1.0] * 3, [1.0], []]


def test_ratios_pair_the_repetitions_by_index():
    from benchmarks.core import Variant, rows_from
    measured = {"zoo": {"rates": [100.0, 300.0, 200.0], "cores": [], "first": 1.0, "error": ""},
                "keras": {"rates": [100.0, 100.0, 400.0], "cores": [], "first": 2.0,
                          "error": ""},
                "torch": {"rates": [50.0, 150.0], "cores": [], "first": 3.0, "error": ""}}
    variants = [Variant("zoo", None), Variant("keras", None, target=1.3),
                Variant("torch", None, precision="bfloat16")]
    rows = rows_from(measured, variants, section="train", model="m", metric="", unit="img/s",
                     subject="zoo")
    assert [r.ratios for r in rows] == [[], [1.0, 3.0, 0.5], [2.0, 2.0]]
    keras = rows[1].as_dict()
    assert (keras["ratio"], keras["ratio_min"], keras["ratio_max"]) == (1.0, 0.5, 3.0)
    assert keras["ratio_of"] == "zoo / this" and keras["met"] == "no"
    assert [r.precision for r in rows] == ["float32", "float32", "bfloat16"]
    assert [r.first_seconds for r in rows] == [1.0, 2.0, 3.0]


def _report_rows():
    from benchmarks.core import Row
    return [
        Row(section="train", model="m", variant="zoo", metric="", unit="img/s",
            values=[10.0, 20.0, 30.0, 40.0, 50.0], input="32x32x1", batch=16,
            ratio_of="zoo / this", reference=True, precision="float32", gflop_per_item=2.0,
            peak_gflops=240.0),
        Row(section="train", model="m", variant="keras", metric="", unit="img/s",
            values=[5.0, 10.0, 15.0, 20.0, 25.0], input="32x32x1", batch=16,
            ratio_of="zoo / this", ratios=[2.0, 1.5, 2.5], target=1.3, note="a | b",
            precision="bfloat16", gflop_per_item=2.0),
        Row(section="serve", model="m", variant="in-process", metric="", unit="img/s",
            values=[100.0, 200.0, 300.0], input="8x8x1", batch=32, clients=1,
            reference=True),
        Row(section="serve", model="m", variant="zoo serve, 8 clients", metric="",
            unit="img/s", values=[50.0, 100.0, 150.0], input="8x8x1", batch=32, clients=8,
            ratio_of="this / in-process", ratios=[0.5, 0.5, 0.5], target=0.85,
            p50_ms=12.345, p99_ms=45.678),
    ]


def test_the_markdown_report_tables():
    info = {"cpu": "CPU X", "cpu_flags": [], "cores": 4, "usable_cores": 2, "memory_gb": 7.5,
            "gpus": [], "load_average": [1.0, 0.5, 0.25], "load_average_end": None,
            "python": "3.11.7", "libraries": {"zoo": "0.1.0", "keras": "3.0"},
            "torch_threads": 1, "finished": "2026-01-01 00:00 UTC",
            "matmul_peak": {"float32": 240.0}, "matmul_peak_runs": 2}
    md = core.markdown(_report_rows(), info, command="python -m benchmarks --quick",
                       seconds=90)
    lines = md.splitlines()
    assert lines[:8] == [
        "# zoo benchmarks", "",
        "- command: `python -m benchmarks --quick`",
        "- machine: CPU X (no AVX), 4 cores (2 usable), 7.5 GB RAM, GPU: none",
        "- load average at start: [1.0, 0.5, 0.25]; at end: None",
        "- software: Python 3.11.7, zoo 0.1.0, keras 3.0 (PyTorch threads: 1)",
        "- wall time: 1.5 min; finished 2026-01-01 00:00 UTC",
        "- peak: a 2048x2048 TensorFlow matmul in this process reaches 240 GFLOP/s in float32 "
        "(best of 2 measurements in the run)"]
    train = lines.index("## Training throughput")
    assert lines[train + 1:train + 8] == [
        "", "ratio = `zoo / this`", "",
        "| model | input | batch | variant | median | min-max | IQR | GFLOP/s (of peak) "
        "| ratio (min-max) | target | met | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| m | 32x32x1 | 16 | zoo | 30 img/s | 10-50 | 20-40 | 60 (25% of float32) "
        "| reference |  |  |  |",
        "| m | 32x32x1 | 16 | keras | 15 img/s | 5-25 | 10-20 | 30 (bfloat16) "
        "| 2.00 (1.50-2.50) | >= 1.3 | yes | a / b |"]
    serve = lines.index("## zoo serve vs in-process")
    assert lines[serve + 1:] == [
        "", "ratio = `this / in-process`", "",
        "| model | input | batch | clients | variant | median | min-max | IQR | p50 ms | p99 ms "
        "| ratio (min-max) | target | met | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| m | 8x8x1 | 32 | 1 | in-process | 200 img/s | 100-300 | 150-250 |  |  "
        "| reference |  |  |  |",
        "| m | 8x8x1 | 32 | 8 | zoo serve, 8 clients | 100 img/s | 50-150 | 75-125 | 12.3 | 45.7 "
        "| 0.50 (0.50-0.50) | >= 0.85 | no |  |"]
    assert "## Inference throughput" not in md      # no rows, no table
    # a small model's GFLOP/s as results.csv has it, three figures (it was "0")
    small = _report_rows()[:1]
    small[0].gflop_per_item = 0.00656                # 30 img/s x LeNet-5's forward pass
    row = core.markdown(small, info, command="c", seconds=1).splitlines()[-1]
    assert small[0].as_dict()["gflops"] == 0.197
    assert "| 0.197 (0% of float32) |" in row
    assert [line for line in lines if line.startswith("## ")] == [
        "## Training throughput", "## zoo serve vs in-process"]


def test_results_csv_has_a_line_per_row_with_empty_fields_for_missing_values(tmp_path):
    path = tmp_path / "results.csv"
    core.write_csv(_report_rows(), path)
    with open(path) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == core.COLUMNS
        rows = list(reader)
    assert [r["variant"] for r in rows] == ["zoo", "keras", "in-process",
                                            "zoo serve, 8 clients"]
    zoo_row, keras_row, _, serve_row = rows
    assert (zoo_row["ratio"], zoo_row["target"], zoo_row["met"], zoo_row["clients"]) == (
        "", "", "", "")
    assert (zoo_row["gflops"], zoo_row["peak_share"], zoo_row["q1"]) == ("60.0", "0.25", "20.0")
    assert (keras_row["ratio"], keras_row["met"], keras_row["note"]) == ("2.0", "yes", "a | b")
    assert (serve_row["clients"], serve_row["p50_ms"], serve_row["p99_ms"]) == (
        "8", "12.3", "45.7")


def test_each_section_runs_with_its_settings(tmp_path, monkeypatch):
    """What ``python -m benchmarks`` hands each section: the options given, else the preset's
    (here --quick's), in the sections' run order; the matmul peak is the best of its two
    measurements."""
    from benchmarks import inference, training
    from benchmarks.worker import Reference
    from zoo.common import cpu_has_bfloat16
    calls = []

    def record(name):
        def section(*args, **kwargs):
            calls.append((name, args, kwargs))
            return []
        return section

    for module, name in ((training, "train_section"), (training, "pipeline_section"),
                         (training, "accuracy_section"), (inference, "inference_section"),
                         (inference, "serve_section")):
        monkeypatch.setattr(module, name, record(name))
    peaks = iter([{"float32": 100.0, "bfloat16": 300.0}, {"float32": 120.0, "bfloat16": 250.0}])
    monkeypatch.setattr(core, "matmul_peak",
                        lambda dtypes: {k: v for k, v in next(peaks).items() if k in dtypes})
    monkeypatch.setattr(Reference, "last_info", {"torch": {"threads": 1}})
    out = tmp_path / "out"
    assert bench.main([
        "--quick", "--models", "lenet5,resnet50", "--image-size", "64", "--batch-size", "8",
        "--repeats", "2", "--inference-repeats", "5", "--pipeline-repeats", "4",
        "--inference-images", "48", "--batch-sizes", "4,16", "--serve-models",
        "lenet5,resnet50", "--serve-batches", "1,32", "--clients", "1,8",
        "--serve-image-size", "96", "--pipeline-models", "lenet5,resnet50",
        "--accuracy-target", "0.9", "--accuracy-epochs", "3", "--torch-threads", "1",
        "--out", str(out)]) == 0
    train = dict(image_size=64, batch_size=8, steps=1, repeats=2, warmup=1, with_torch=True,
                 keras_xla=False, zoo_keras_compile=False, before=False, keras_here=False,
                 bfloat16=False, torch_threads=1)
    assert calls == [
        ("train_section", (["lenet5"],), train),
        ("train_section", (["resnet50"],), train),
        ("inference_section", (["resnet50"],), dict(
            image_size=64, batch_sizes=[4, 16], images=48, repeats=5, warmup=1,
            with_torch=True, bfloat16=False, torch_threads=1)),
        # many clients with batches of a big model: one client only
        ("serve_section", ([("lenet5", 1, [1, 8]), ("lenet5", 32, [1, 8]),
                            ("resnet50", 1, [1, 8]), ("resnet50", 32, [1])],), dict(
            image_sizes={"resnet50": 96}, repeats=2, warmup=1, requests_per_client=1,
            min_requests=2, seconds=0.25, batch_waits=())),
        ("pipeline_section", (), dict(epochs=2, repeats=4, warmup=1)),
        ("pipeline_section", (), dict(model_name="resnet50", repeats=2, warmup=1,
                                      augmented=False, **bench.BIG_PIPELINE)),
        ("accuracy_section", (), dict(repeats=1, target=0.9, max_epochs=3))]
    machine = json.loads((out / "machine.json").read_text())
    assert machine["matmul_peak"] == ({"float32": 120.0, "bfloat16": 300.0}
                                      if cpu_has_bfloat16() else {"float32": 120.0})
    assert machine["matmul_peak_runs"] == 2 and machine["torch_threads"] == 1
    md = (out / "results.md").read_text()
    assert "(best of 2 measurements in the run)" in md and "(PyTorch threads: 1)" in md

    # --sections runs those only, in the run order; --quick's settings otherwise
    calls.clear()
    peaks = iter([{"float32": 1.0}] * 2)
    assert bench.main(["--quick", "--sections", "accuracy,inference", "--no-torch",
                       "--out", str(out)]) == 0
    assert calls == [
        ("inference_section", (["resnet50"],), dict(
            image_size=160, batch_sizes=[16], images=16, repeats=3, warmup=1,
            with_torch=False, bfloat16=False, torch_threads=None)),
        ("accuracy_section", (), dict(repeats=1, target=0.98, max_epochs=None))]


def test_the_reference_process_runs_without_the_zoo_oneDNN_setting(monkeypatch):
    """The child's environment: TensorFlow's own choice of kernels (no
    TF_ENABLE_ONEDNN_OPTS, which importing zoo sets), and this checkout first on its path."""
    from benchmarks.worker import Reference
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.setattr(Reference, "COMMAND", (
        "-c", "import json, os, sys; sys.stdin.readline(); print(json.dumps({'ok': True, "
              "'onednn_opts': os.environ.get('TF_ENABLE_ONEDNN_OPTS'), "
              "'path': os.environ['PYTHONPATH']}), flush=True)"))
    with Reference(kind="predict", model="zoo:lenet5") as ref:
        assert ref.info["onednn_opts"] is None
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        assert ref.info["path"].split(os.pathsep)[0] == root


class _Clock:
    """A stand-in for the ``time`` module: each timed call lasts the next of ``walls``
    seconds and keeps the next of ``cpus`` CPU seconds busy."""

    def __init__(self, walls, cpus):
        self._wall = self._ticks(walls)
        self._cpu = self._ticks(cpus)

    @staticmethod
    def _ticks(durations):
        t = 0.0
        for d in durations:
            yield t
            t += d
            yield t

    def perf_counter(self):
        return next(self._wall)

    def process_time(self):
        return next(self._cpu)


def test_autotune_calls_rates_busy_cores_and_slow_calls(monkeypatch):
    """Images/s of a call are all its batches' images over its wall time, busy cores its CPU
    seconds over that time; a call below 75% of the fastest is slow."""
    from benchmarks import autotune_calls
    # calls in order: autotuned, without, without, autotuned, autotuned, without
    monkeypatch.setattr(autotune_calls, "time", _Clock(walls=[1.0, 2.0, 4.0, 1.0, 1.0, 1.0],
                                                       cpus=[0.5, 1.0, 4.0, 0.5, 0.5, 0.5]))
    measured = autotune_calls.measure_calls("lenet5", mode="evaluate", calls=3, batches=2,
                                            batch_size=8, mixed_precision="off",
                                            log=lambda line: None)
    tuned, untuned = (measured[k] for k in autotune_calls.KINDS)
    assert tuned == {"rates": [16.0, 16.0, 16.0], "cores": [0.5, 0.5, 0.5]}
    assert untuned == {"rates": [8.0, 4.0, 16.0], "cores": [0.5, 1.0, 0.5]}
    assert measured["slow_below"] == 12.0
    table = autotune_calls.table(measured)
    assert list(table["slow calls"]) == ["0 of 3", "2 of 3"]
    assert list(table["median img/s"]) == [16.0, 8.0]
    assert list(table["busy cores"]) == [0.5, 0.5]


def test_profile_ops_rate_is_the_traced_steps_images_over_their_time(tmp_path, monkeypatch):
    from benchmarks import profile_ops
    monkeypatch.setattr(profile_ops, "time", _Clock(walls=[2.0], cpus=[]))
    table, _, rate, _, _ = profile_ops.profile("lenet5", batch_size=8, steps=3, top=2,
                                               mode="predict", logdir=str(tmp_path))
    assert rate == 3 * 8 / 2.0
    assert len(table) == 2                                # --top


def test_the_benchmark_tools_defaults_are_those_their_usage_states():
    from benchmarks import autotune_calls, profile_ops
    args = profile_ops.build_parser().parse_args(["lenet5"])
    assert (args.batch_size, args.steps, args.top, args.mode) == (16, 3, 25, "train")
    assert "[--image-size SIZE] [--batch-size 16] [--steps 3]" in " ".join(
        profile_ops.__doc__.split())
    args = autotune_calls.build_parser().parse_args([])
    assert (args.model, args.calls, args.batch_size, args.batches, args.mode) == (
        "resnet50", 12, 32, 2, "predict")
    # no --image-size: the model's input size (the usage said 160, ResNet-50 ran at 224)
    assert args.image_size is None
    for tool in (profile_ops, autotune_calls):
        assert "default the model's input size: 224 for ResNet-50" in " ".join(
            tool.__doc__.split())
