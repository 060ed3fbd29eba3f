"""``python -m benchmarks [--quick] [--models ...] [--out DIR]``: run the benchmarks and
write ``results.csv``, ``results.md`` and ``machine.json`` to ``DIR``.

Sections (``--sections``, default all): ``train`` (training images/s vs keras.applications
and PyTorch), ``inference`` (Servable vs model.predict vs the SavedModel signature vs
PyTorch), ``serve`` (``zoo serve`` over HTTP vs in-process), ``pipeline`` (``zoo.data`` vs
arrays in memory), ``accuracy`` (LeNet-5 on digits: time to 98% test accuracy).
``--quick`` runs fewer models, batch sizes and repetitions (a few minutes on an idle
2-core CPU); any setting can still be given explicitly.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
import time

# The benchmark runs TensorFlow processes side by side (this one, the Keras reference's,
# zoo serve's): on a GPU each grows its memory as it needs, where TensorFlow's default
# maps nearly all of it into the first process, leaving the others none.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from zoo.startlog import for_command_line   # noqa: E402  (imports zoo first)

for_command_line()   # as the zoo CLI: TensorFlow's start-up lines would precede an error

import zoo  # noqa: E402,F401  (first: its TensorFlow process settings apply to the zoo variants)
from benchmarks import core
from benchmarks.worker import Reference
from zoo.cli import OneLineParser, interrupted, number_type, sigterm_as_interrupt

ALL_MODELS = ("resnet50", "xception", "inception_v3")

#: The pipeline section for a large model (ResNet-50): digits at 96x96x3, 4 epochs of 4
#: batches of 32 per repetition, so each repetition averages over 4 iterators.
BIG_PIPELINE = dict(image_size=96, channels=3, batches=4, epochs=4)

#: Settings of a full run and of ``--quick``; command-line options override them.
PRESETS = {
    # Inference repetitions are short, and Keras' predict (the reference) runs some calls at
    # half speed on 2-core CPUs (benchmarks/README.md, item 27): 7 of them in a full run.
    "full": dict(models=list(ALL_MODELS), image_size=160, batch_size=16, steps=1, repeats=3,
                 inference_repeats=7,
                 warmup=1, inference_models=["resnet50"], batch_sizes=[1, 16, 32],
                 inference_images=32, serve_models=["lenet5", "resnet50"],
                 serve_batches=[1, 32], clients=[1, 8, 32], requests_per_client=2,
                 min_requests=2, serve_seconds=0.25, pipeline_epochs=2, pipeline_repeats=7,
                 pipeline_models=["lenet5", "resnet50"], accuracy_repeats=3,
                 keras_xla=False, zoo_keras_compile=False, before=True, keras_here=True,
                 bfloat16=True),
    "quick": dict(models=["resnet50"], image_size=160, batch_size=16, steps=1, repeats=3,
                  inference_repeats=3, warmup=1, inference_models=["resnet50"], batch_sizes=[16],
                  inference_images=16, serve_models=["lenet5"], serve_batches=[1, 32],
                  clients=[1, 8, 32], requests_per_client=1, min_requests=2,
                  serve_seconds=0.25, pipeline_epochs=2, pipeline_repeats=3,
                  pipeline_models=["lenet5"], accuracy_repeats=1,
                  keras_xla=False, zoo_keras_compile=False, before=False, keras_here=False,
                  bfloat16=False),
}


def _number_list(convert, ok, what):
    """An argparse type: comma-separated numbers ``convert`` reads and ``ok`` accepts, each
    once (``--clients 1,1`` gave two variants of one name, whose repetitions went into one
    list of twice the length, paired with the reference's out of step)."""
    def parse(text):
        try:
            values = [convert(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = None
        if not values or not all(ok(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}; "
                                             f"received {text!r}")
        return list(dict.fromkeys(values))
    return parse


_ints = _number_list(int, lambda v: v >= 1, "positive integers")
_waits = _number_list(float, lambda v: 0 < v < float("inf"), "positive milliseconds")

_seconds = number_type("a number of seconds >= 0", lambda v: 0 <= v < float("inf"))
_fraction = number_type("a fraction in (0, 1]", lambda v: 0 < v <= 1)


def _names(text):
    """An argparse type: comma-separated names, each once (an empty list would measure
    nothing and still write a table)."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names; received {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the short preset (CI, < 5 minutes)")
    p.add_argument("--models", type=_names, default=None,
                   help="zoo models for the training section, comma-separated "
                   f"(default {','.join(ALL_MODELS)}; quick: resnet50)")
    p.add_argument("--out", default="bench_out",
                   help="output directory (default: bench_out, which git ignores; the "
                        "committed runs live in benchmarks/results/<machine>-<date>/)")
    p.add_argument("--sections", type=_names, default=list(core.SECTIONS),
                   help=f"comma-separated subset of {','.join(core.SECTIONS)}")
    p.add_argument("--image-size", type=core.count_type(1), help="square input size (default 160)")
    p.add_argument("--batch-size", type=core.count_type(1),
                   help="training batch size (default 16)")
    p.add_argument("--steps", type=core.count_type(1), help="training steps per repetition")
    p.add_argument("--repeats", type=core.count_type(1), help="timed repetitions per variant")
    p.add_argument("--inference-repeats", type=core.count_type(1),
                   help="timed repetitions per variant in the inference section (default: "
                   "--repeats if given, else 7; quick: 3)")
    p.add_argument("--warmup", type=core.count_type(1),
                   help="untimed runs per variant before the timed ones (at least 1: the "
                   "first run compiles)")
    p.add_argument("--inference-models", type=_names, help="models for the inference section")
    p.add_argument("--batch-sizes", type=_ints, help="inference batch sizes, e.g. 1,16,32")
    p.add_argument("--inference-images", type=core.count_type(1),
                   help="images per inference repetition")
    p.add_argument("--serve-models", type=_names, help="models for the serve section")
    p.add_argument("--serve-batches", type=_ints, help="images per request, e.g. 1,32")
    p.add_argument("--clients", type=_ints, help="concurrent clients, e.g. 1,8,32")
    p.add_argument("--serve-batch-waits", type=_waits, default=None, metavar="MS,...",
                   help="also serve with zoo serve --batch-wait-ms MS, one server each, for "
                   "the client counts above 1 (default: none)")
    p.add_argument("--requests-per-client", type=core.count_type(1),
                   help="a serve repetition sends at least this many requests per client "
                   "(default 2; quick: 1)")
    p.add_argument("--min-requests", type=core.count_type(1),
                   help="and at least this many in all (default 2)")
    p.add_argument("--serve-seconds", type=_seconds,
                   help="a serve repetition sends as many more requests as fill this many "
                        "seconds (default 0.25; 0: just the minimum)")
    p.add_argument("--serve-image-size", type=core.count_type(1), default=None,
                   help="input size of the large serve models (default: --image-size)")
    p.add_argument("--pipeline-epochs", type=core.count_type(1),
                   help="epochs per repetition of LeNet-5's pipeline rows (the large "
                   "models': BIG_PIPELINE's)")
    p.add_argument("--pipeline-repeats", type=core.count_type(1),
                   help="repetitions of LeNet-5's pipeline rows, whose epochs are short and "
                   "noisy (default 7; quick: 3; the large models' take --repeats)")
    p.add_argument("--pipeline-models", type=_names,
                   help="models for the pipeline section (default lenet5,resnet50; quick: "
                   "lenet5); the large ones train on BIG_PIPELINE's short epochs")
    p.add_argument("--accuracy-repeats", type=core.count_type(1),
                   help="seeds for time to accuracy")
    p.add_argument("--accuracy-target", type=_fraction, default=0.98,
                   help="test accuracy the time-to-accuracy runs train to (default 0.98)")
    p.add_argument("--accuracy-epochs", type=core.count_type(1), default=None,
                   help="most epochs per time-to-accuracy run (default: zoo train's)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--torch-threads", type=core.count_type(1), default=None,
                   help="PyTorch intra-op threads (default: PyTorch's, one per core). Its "
                   "OpenMP threads stall when other processes oversubscribe the cores; "
                   "on a shared machine 1 is faster")
    p.add_argument("--keras-xla", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure keras.applications with jit_compile=True")
    p.add_argument("--zoo-keras-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure the zoo model compiled with Keras' defaults")
    p.add_argument("--keras-here", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure keras.applications in the benchmark's own process, with "
                   "the zoo's process settings (full run: on)")
    p.add_argument("--before", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure the zoo model with its previous defaults (TensorFlow's "
                   "kernels, Keras' batch norm, XLA) in its own process (full run: on)")
    p.add_argument("--bfloat16", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure the zoo model under mixed_bfloat16 (opt-in training "
                   "precision where the default is float32), on CPUs with native bfloat16 "
                   "instructions, and a bfloat16 export (opt-in) on CPUs where bfloat16 is fast "
                   "(AMX, or AVX512_BF16 on AMD) "
                   "(full run: on)")
    return p


def settings(args) -> dict:
    """The preset with the explicit options applied; unknown sections or models are usage
    errors (one line, exit code 2), as bad option values are."""
    error = build_parser().error
    s = dict(PRESETS["quick" if args.quick else "full"])
    for key in list(s):
        value = getattr(args, key, None)
        if value is not None:
            s[key] = value
    if getattr(args, "inference_repeats", None) is None and getattr(args, "repeats", None):
        s["inference_repeats"] = args.repeats
    unknown = set(args.sections) - set(core.SECTIONS)
    if unknown:
        error(f"unknown sections {sorted(unknown)}; choose from {', '.join(core.SECTIONS)}")
    from zoo.registry import list_models, model_info
    known = set(list_models())
    for key in ("models", "inference_models", "serve_models", "pipeline_models"):
        bad = [m for m in s[key] if m not in known]
        if bad:
            error(f"unknown models {bad} in --{key.replace('_', '-')}; registered: "
                  f"{', '.join(sorted(known))}")
    segmentation = [m for m in s["pipeline_models"] if model_info(m).task != "classification"]
    if segmentation:
        error(f"--pipeline-models trains on digits, a classification dataset; received "
              f"segmentation models {segmentation}")
    return s


def main(argv=None) -> int:
    """Run the benchmarks; Ctrl-C and SIGTERM stop them with one line (exit code 130, 143),
    the results of the sections done so far kept in ``--out``."""
    try:
        with sigterm_as_interrupt():
            return _main(argv)
    except KeyboardInterrupt as exc:
        return interrupted(exc, "python -m benchmarks")


def _main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    s = settings(args)
    _check_out(args.out)
    from benchmarks import inference, training

    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    start = time.time()
    info = core.machine()
    core.log(f"{command}\n  {info['cpu']}, {info['cores']} cores, load {info['load_average']}")
    _record_peak(info)
    with_torch = not args.no_torch
    rows = []
    for section in core.SECTIONS:
        if section not in args.sections:
            continue
        t0 = time.time()
        if section == "train":
            for name in s["models"]:   # results written after each model
                rows += training.train_section(
                    [name], image_size=s["image_size"], batch_size=s["batch_size"],
                    steps=s["steps"], repeats=s["repeats"], warmup=s["warmup"],
                    with_torch=with_torch, keras_xla=s["keras_xla"],
                    zoo_keras_compile=s["zoo_keras_compile"], before=s["before"],
                    keras_here=s["keras_here"], bfloat16=s["bfloat16"],
                    torch_threads=args.torch_threads)
                _write(rows, info, args.out, command, start)
        elif section == "inference":
            rows += inference.inference_section(
                s["inference_models"], image_size=s["image_size"],
                batch_sizes=s["batch_sizes"], images=s["inference_images"],
                repeats=s["inference_repeats"], warmup=s["warmup"], with_torch=with_torch,
                bfloat16=s["bfloat16"], torch_threads=args.torch_threads)
        elif section == "serve":
            big = args.serve_image_size or s["image_size"]
            configs = []
            for name in s["serve_models"]:
                for b in s["serve_batches"]:
                    # Many clients with big batches of a big model take minutes per
                    # repetition; those run with one client only.
                    heavy = name in ALL_MODELS and b > 1
                    configs.append((name, b, [s["clients"][0]] if heavy else s["clients"]))
            sizes = {name: big for name in s["serve_models"] if name in ALL_MODELS}
            rows += inference.serve_section(
                configs, image_sizes=sizes, repeats=s["repeats"], warmup=s["warmup"],
                requests_per_client=s["requests_per_client"], min_requests=s["min_requests"],
                seconds=s["serve_seconds"], batch_waits=args.serve_batch_waits or ())
        elif section == "pipeline":
            for name in s["pipeline_models"]:
                if name == "lenet5":
                    rows += training.pipeline_section(
                        epochs=s["pipeline_epochs"], repeats=s["pipeline_repeats"],
                        warmup=s["warmup"])
                else:   # many short epochs: each draws its own iterator (item 29)
                    rows += training.pipeline_section(
                        model_name=name, repeats=s["repeats"], warmup=s["warmup"],
                        augmented=False, **BIG_PIPELINE)
        elif section == "accuracy":
            rows += training.accuracy_section(repeats=s["accuracy_repeats"],
                                              target=args.accuracy_target,
                                              max_epochs=args.accuracy_epochs)
        core.log(f"{section} done in {time.time() - t0:.0f} s")
        # Partial results after every section, so a long run can be inspected.
        _write(rows, info, args.out, command, start)
    _record_peak(info)   # once more at the end: the peak is the best the cores did in the run
    paths = _write(rows, info, args.out, command, start)
    core.log(f"wrote {', '.join(paths)} in {(time.time() - start) / 60:.1f} min")
    return 0


def _check_out(out):
    """Create ``out`` (and check it takes files) before any benchmark runs; a path that
    cannot hold the results is a one-line error, not a traceback after minutes of work."""
    try:
        os.makedirs(out, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as e:
        reason = e.strerror or str(e)
        raise SystemExit(f"python -m benchmarks: error: --out {out!r} cannot hold the "
                         f"results: {reason}") from None


def _record_peak(info):
    """Measure the matmul peak (float32, and bfloat16 where the CPU has it natively) and
    keep in ``info`` the best of this and earlier measurements, with their count."""
    from zoo.common import cpu_has_bfloat16
    dtypes = ("float32", "bfloat16") if cpu_has_bfloat16() else ("float32",)
    now = core.matmul_peak(dtypes)
    core.log("matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in now.items()))
    best = info.get("matmul_peak", {})
    info["matmul_peak"] = {k: max(v, best.get(k, 0.0)) for k, v in now.items()}
    info["matmul_peak_runs"] = info.get("matmul_peak_runs", 0) + 1


def _write(rows, info, out, command, start):
    info = dict(info)
    torch_info = Reference.last_info.get("torch")
    if torch_info:   # the PyTorch rows' process: what it ran with
        info["torch_threads"] = torch_info["threads"]
    try:
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average_end"] = None
    info["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    core.set_peaks(rows, info.get("matmul_peak") or {})
    csv_path = os.path.join(out, "results.csv")
    md_path = os.path.join(out, "results.md")
    json_path = os.path.join(out, "machine.json")
    core.write_csv(rows, csv_path)
    core.write_markdown(core.markdown(rows, info, command=command,
                                      seconds=time.time() - start), md_path)
    core.atomic_write_text(json_path, json.dumps({**info, "command": command}, indent=2) + "\n")
    return [csv_path, md_path, json_path]


if __name__ == "__main__":
    sys.exit(main())
