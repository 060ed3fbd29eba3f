"""Keras' fit, evaluate or predict, call by call, on a tf.data pipeline with and without
tf.data's autotuning.

``python -m benchmarks.autotune_calls [MODEL] [--mode predict|evaluate|fit] [--calls 12]
[--image-size SIZE] [--batch-size 32] [--batches 2] [--mixed-precision auto]`` builds the zoo
model (default ``resnet50``, at ``--image-size``, default the model's input size: 224 for
ResNet-50) compiled by ``zoo.train.compile_model``, and calls Keras'
``predict``, ``evaluate`` or ``fit`` (one epoch) ``--calls`` times on each of two pipelines
of the same random images, ``--batches`` batches each (``map(AUTOTUNE)``, ``batch``,
``prefetch(AUTOTUNE)``): one with tf.data's default autotuning, one without it
(``zoo.data.without_autotune``), interleaved, in an order rotated every call. It prints the
images/s and the busy cores (CPU seconds over wall seconds of this process) of every call and
a table per pipeline: median, min-max, and the slow calls (below ``--slow`` of the fastest
call of either pipeline).

This is the measurement behind ``zoo.data.autotune_by_default`` (benchmarks/README.md,
item 29): on a 2-core AMD EPYC, Keras ran about half of its calls on an autotuned pipeline at
55-60% of their speed, with TensorFlow's two compute threads taking turns, and none without
autotuning. Run it on another machine before relying on that default there.
"""

from __future__ import annotations

import sys
import time

from zoo.startlog import for_command_line   # (imports zoo first)

for_command_line()   # as the zoo CLI: TensorFlow's start-up lines would precede an error

import zoo  # noqa: E402,F401  (first: its TensorFlow process settings apply)
from benchmarks.core import add_model_options, count_type, known_model
from zoo.cli import OneLineParser, number_type

KINDS = ("autotuned (tf.data default)", "without autotuning")


def measure_calls(name="resnet50", *, mode="predict", calls=12, image_size=None,
                  batch_size=32, batches=2, mixed_precision="auto", slow=0.75,
                  log=print) -> dict:
    """Interleaved calls of Keras ``mode`` on an autotuned pipeline and on one without
    autotuning. Returns ``{kind: {"rates": [...], "cores": [...]}}`` per :data:`KINDS`,
    plus ``"slow_below"``: the images/s under which a call counts as slow."""
    import tensorflow as tf

    from benchmarks.data import batch, label_shape
    from benchmarks.training import bench_shape
    from zoo.data import without_autotune
    from zoo.train import compile_model, with_mixed_precision

    info = zoo.model_info(name)
    shape = bench_shape(name, image_size or info.default_input_shape[0])
    model, _ = with_mixed_precision(zoo.get_model(name, input_shape=shape), mixed_precision)
    compile_model(model, info.task)
    n = batch_size * batches
    x, y = batch(shape, n, info.default_num_classes, label_shape=label_shape(model))

    def pipeline(autotuned):
        ds = (tf.data.Dataset.from_tensor_slices((x, y))
              .map(lambda a, b: (a, b), num_parallel_calls=tf.data.AUTOTUNE)
              .batch(batch_size).prefetch(tf.data.AUTOTUNE))
        ds = ds if autotuned else without_autotune(ds)
        return ds.map(lambda a, b: a) if mode == "predict" else ds

    data = {KINDS[0]: pipeline(True), KINDS[1]: pipeline(False)}
    run = {"predict": lambda d: model.predict(d, verbose=0),
           "evaluate": lambda d: model.evaluate(d, verbose=0),
           "fit": lambda d: model.fit(d, epochs=1, verbose=0, shuffle=False)}[mode]
    for kind in KINDS:     # warm-up: tracing, oneDNN's first primitives
        run(data[kind])
    out = {kind: {"rates": [], "cores": []} for kind in KINDS}
    for i in range(calls):
        for kind in (KINDS if i % 2 == 0 else KINDS[::-1]):
            c0, t0 = time.process_time(), time.perf_counter()
            run(data[kind])
            wall = time.perf_counter() - t0
            out[kind]["rates"].append(n / wall)
            out[kind]["cores"].append((time.process_time() - c0) / wall)
            log(f"call {i + 1}/{calls} {kind}: {n / wall:.1f} img/s, "
                f"{out[kind]['cores'][-1]:.1f} cores busy")
    best = max(max(v["rates"]) for v in out.values())
    out["slow_below"] = slow * best
    return out


def table(measured) -> "pandas.DataFrame":
    """One row per pipeline: median, min, max images/s, slow calls, median busy cores."""
    import numpy as np
    import pandas as pd
    rows = []
    for kind in KINDS:
        rates, cores = measured[kind]["rates"], measured[kind]["cores"]
        rows.append({"pipeline": kind, "median img/s": round(float(np.median(rates)), 1),
                     "min": round(min(rates), 1), "max": round(max(rates), 1),
                     "slow calls": f"{sum(r < measured['slow_below'] for r in rates)} of "
                                   f"{len(rates)}",
                     "busy cores": round(float(np.median(cores)), 2)})
    return pd.DataFrame(rows)


def build_parser():
    p = OneLineParser(prog="python -m benchmarks.autotune_calls",
                      description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("model", nargs="?", default="resnet50",
                   help="a registered zoo model (default resnet50)")
    p.add_argument("--mode", choices=("predict", "evaluate", "fit"), default="predict",
                   help="the Keras call to time (fit: one epoch; default predict)")
    p.add_argument("--calls", type=count_type(1), default=12,
                   help="timed calls per pipeline, after one warm-up call each (default 12)")
    add_model_options(p, batch_size=32, batch_help="images per batch")
    p.add_argument("--batches", type=count_type(1), default=2,
                   help="batches per call (fit: per epoch)")
    p.add_argument("--slow", type=number_type("a fraction in (0, 1)", lambda v: 0 < v < 1),
                   default=0.75, help="a call below this share of the fastest is slow")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    known_model(p, args.model)
    measured = measure_calls(args.model, mode=args.mode, calls=args.calls,
                             image_size=args.image_size, batch_size=args.batch_size,
                             batches=args.batches, mixed_precision=args.mixed_precision,
                             slow=args.slow)
    print(f"{args.model} {args.mode}: {args.calls} calls per pipeline of "
          f"{args.batches} x {args.batch_size} images; slow: below "
          f"{measured['slow_below']:.1f} img/s ({args.slow:g} of the fastest call)")
    print(table(measured).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
