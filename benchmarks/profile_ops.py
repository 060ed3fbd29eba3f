"""Where a zoo model's training (or inference) step spends its time, by TensorFlow op.

``python -m benchmarks.profile_ops MODEL [--image-size SIZE] [--batch-size 16] [--steps 3]
[--mode train|predict] [--xla] [--top 25] [--logdir DIR]`` traces ``--steps`` steps (at
``--image-size``, default the model's input size: 224 for ResNet-50, where ``python -m
benchmarks`` measures 160) with the TensorFlow profiler (``tf.profiler.experimental``) after two warm-up steps, then sums the
trace's events per op type on TensorFlow's compute threads and prints the table (op, total
ms, share of the compute time, calls). The trace stays in ``--logdir`` for TensorBoard's
profile plugin.

This is how the zoo's CPU defaults were chosen: on a 2-core AVX2 CPU, ResNet-50's training
step spent 63% of its compute in Eigen's ``Conv2DBackpropInput``/``Conv2DBackpropFilter``
with TensorFlow's default kernels, which oneDNN's ``_MklNative*`` kernels replace when
``TF_ENABLE_ONEDNN_OPTS=1``; the unfused batch norm added ``Mul``/``Tile``/``Sum``/``Mean``
ops that the fused kernel removes.
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile
import time

from zoo.startlog import for_command_line   # (imports zoo first)

for_command_line()   # as the zoo CLI: TensorFlow's start-up lines would precede an error

import zoo  # noqa: E402,F401  (first: its TensorFlow process settings apply)
from benchmarks.core import add_model_options, count_type, known_model
from zoo.cli import OneLineParser

#: Lines of the host plane holding TensorFlow's op executions.
_COMPUTE_LINE_PREFIXES = ("tf_Compute", "tf_pjrt", "tf_XLA", "tf_inter_op", "tf_intra_op")
#: Wrapper events that contain the ops rather than being ops.
_WRAPPERS = {"Process", "ParallelFor", "ExecutorDoneCallback", "ExecutorState::Process"}


def op_table(xplane_path, top=25):
    """Op type -> (total ms, calls) summed over the compute threads of one trace."""
    import pandas as pd
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    totals, calls = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith(_COMPUTE_LINE_PREFIXES):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                op = name.rsplit(":", 1)[-1] if ":" in name else name
                if op in _WRAPPERS:
                    continue
                totals[op] += event.duration_ps / 1e9
                calls[op] += 1
    if not totals:
        raise RuntimeError(f"no op events on TensorFlow's compute threads in {xplane_path}")
    all_ms = sum(totals.values())
    rows = [{"op": op, "ms": round(ms, 1), "share": round(ms / all_ms, 3), "calls": calls[op]}
            for op, ms in totals.most_common(top)]
    return pd.DataFrame(rows), all_ms


def profile(name, *, image_size=None, batch_size=16, steps=3, mode="train", jit_compile=False,
            logdir=None, top=25, mixed_precision="auto"):
    """Trace ``steps`` steps of model ``name``; returns ``(table, compute ms, images/s,
    logdir, policy)``. ``mixed_precision``: as in :func:`zoo.train.fit` (``"auto"``: the
    dtype policy ``fit`` trains the model under at this size on this machine), and
    ``policy`` the one it resolved to (``None``: float32)."""
    import tensorflow as tf

    from benchmarks.data import batch, label_shape
    from benchmarks.training import bench_shape
    from zoo.train import compile_model, with_mixed_precision

    info = zoo.model_info(name)
    shape = bench_shape(name, image_size or info.default_input_shape[0])
    model, policy = with_mixed_precision(zoo.get_model(name, input_shape=shape),
                                         mixed_precision)
    compile_model(model, info.task, jit_compile=jit_compile)
    x, y = (tf.constant(a) for a in batch(shape, batch_size, info.default_num_classes,
                                          label_shape=label_shape(model)))
    predict = tf.function(lambda a: model(a, training=False))

    def step():
        if mode == "train":
            model.train_on_batch(x, y)
        else:
            predict(x).numpy()

    for _ in range(2):
        step()
    logdir = logdir or tempfile.mkdtemp(prefix=f"profile_{name}_")
    tf.profiler.experimental.start(logdir)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not paths:
        raise RuntimeError(f"the profiler wrote no trace to {logdir}")
    table, all_ms = op_table(paths[-1], top=top)
    return table, all_ms, steps * batch_size / seconds, logdir, policy


def build_parser():
    p = OneLineParser(prog="python -m benchmarks.profile_ops",
                      description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a registered zoo model")
    add_model_options(p, batch_size=16, batch_help="images per step")
    p.add_argument("--steps", type=count_type(1), default=3,
                   help="steps traced, after two warm-up steps (default 3)")
    p.add_argument("--mode", choices=("train", "predict"), default="train",
                   help="a training step or a forward pass (default train)")
    p.add_argument("--xla", action="store_true", help="compile the step with XLA")
    p.add_argument("--top", type=count_type(1), default=25,
                   help="op types in the table (default 25)")
    p.add_argument("--logdir", default=None,
                   help="directory for the trace (default: a new temporary one)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    known_model(p, args.model)
    from zoo.common import onednn_enabled
    table, all_ms, rate, logdir, policy = profile(
        args.model, image_size=args.image_size, batch_size=args.batch_size, steps=args.steps,
        mode=args.mode, jit_compile=args.xla, logdir=args.logdir, top=args.top,
        mixed_precision=args.mixed_precision)
    print(f"{args.model} {args.mode}, batch {args.batch_size}, {args.steps} steps "
          f"({rate:.3g} img/s under the profiler); oneDNN {'on' if onednn_enabled() else 'off'}"
          f", XLA {'on' if args.xla else 'off'}, mixed precision {args.mixed_precision} "
          f"({policy or 'float32'}); {all_ms:.0f} ms "
          f"of op time on the compute threads; trace in {logdir}")
    print(table.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
