"""Training benchmarks: throughput against keras.applications and PyTorch, the input
pipeline against tensors in memory, and LeNet-5's time to a test accuracy."""

from __future__ import annotations

import tempfile
import time

import numpy as np

from benchmarks.core import (TRAIN_FLOP_FACTOR, Row, Variant, log, measure,
                             model_gflop, rows_from)
from benchmarks.data import batch as _batch, label_shape
from benchmarks.worker import Reference

#: zoo name -> keras.applications class name (the same architecture, same weights layout).
KERAS_APPLICATIONS = {"resnet50": "ResNet50", "xception": "Xception",
                      "inception_v3": "InceptionV3"}

#: zoo name -> PyTorch builder (only ResNet-50 is written in PyTorch here).
TORCH_MODELS = {"resnet50": "benchmarks.torch_resnet:ResNet50"}

#: Targets: zoo training images/s divided by the reference's must reach these.
TARGET_VS_KERAS = 1.3
TARGET_VS_TORCH = 1.0     # training and inference alike
TARGET_PIPELINE = 0.95



def bench_shape(name: str, image_size: int) -> tuple:
    """Input shape a model is measured at: the asked size (at least the model's minimum),
    but a model whose smallest input is its default (LeNet-5's 32x32) at that input."""
    from zoo.registry import model_info
    info = model_info(name)
    channels = info.default_input_shape[-1] or 3
    default = info.default_input_shape[0]
    size = (max(image_size, info.min_input_size)
            if name in KERAS_APPLICATIONS or (info.min_input_size or default) < default
            else default)
    return (size, size, channels)

def torch_available() -> bool:
    """Whether PyTorch is installed (found, not imported: it runs in its own process)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def torch_reference(name, *, kind, shape, batch, classes, threads=None, **setup):
    """The PyTorch rows' process (:mod:`benchmarks.worker`, which never imports TensorFlow)
    for zoo model ``name``, as a ``(Reference, note)`` pair; ``RuntimeError`` if it fails."""
    reference = Reference(framework="torch", kind=kind, model=TORCH_MODELS[name],
                          shape=list(shape), batch=batch, classes=classes, threads=threads,
                          **setup)
    return reference, (f"own process without TensorFlow, PyTorch {reference.info['torch']}, "
                       f"{reference.info['threads']} threads, on {reference.info['device']}")


def torch_variant(name, **setup):
    """``(Reference, Variant)`` of the "PyTorch eager" row (:func:`torch_reference`), or
    ``(None, None)`` when its process failed (logged; the row is left out)."""
    try:
        reference, note = torch_reference(name, **setup)
    except RuntimeError as exc:
        log(f"  PyTorch process failed: {exc}")
        return None, None
    return reference, Variant("PyTorch eager", reference.run, target=TARGET_VS_TORCH,
                              note=note)


def _keras_step(model, x, y, steps):
    def run():
        for _ in range(steps):
            model.train_on_batch(x, y)
        return steps * int(x.shape[0])
    return run


def _zoo_settings(model, policy=None) -> str:
    """How a model compiled by the zoo runs here, e.g. ``oneDNN, fused BN, no XLA`` (and
    the dtype policy when it is not float32)."""
    from zoo.common import onednn_enabled
    parts = ["oneDNN" if onednn_enabled() else "TensorFlow kernels", "fused BN",
             "XLA" if model.jit_compile else "no XLA"]
    if policy:
        parts.append(policy)
    return ", ".join(parts)


def _compute_dtype(policy) -> str:
    """The dtype a Keras dtype policy name computes in ("mixed_bfloat16" -> "bfloat16")."""
    return policy.replace("mixed_", "") if policy else "float32"


def _policy_note(policy) -> str:
    """Why the zoo's default trains under ``policy`` on this machine ('' for float32)."""
    if policy == "mixed_bfloat16":
        return ("fit's mixed_precision='auto' on a CPU where bfloat16 trains faster (AMX-BF16, "
                "or AVX512_BF16 on AMD): bfloat16 compute, float32 variables and outputs")
    if policy == "mixed_float16":
        return ("fit's mixed_precision='auto' with tensor-core GPUs: float16 compute, "
                "float32 variables and outputs, loss scaling")
    return ""


def _keras_model(cls_name, shape, classes):
    """A function that builds ``keras.applications.<cls_name>`` for ``shape``, or ``None``
    (logged) where Keras refuses that input (Xception below 71x71, Inception-v3 below
    75x75): the section then measures the zoo's rows without the Keras ones (and their
    reference process), where the zoo's model accepts the smaller input."""
    import keras
    from zoo.common import exception_line
    cls = getattr(keras.applications, cls_name)
    try:
        built = [cls(weights=None, input_shape=shape, classes=classes)]
    except ValueError as exc:
        log(f"  no keras.applications.{cls_name} rows at {'x'.join(map(str, shape))}: "
            f"Keras refuses it ({exception_line(exc)})")
        return None
    # the model built to ask is the first one handed out
    return lambda: (built.pop() if built else
                    cls(weights=None, input_shape=shape, classes=classes))


def train_section(names, *, image_size, batch_size, steps, repeats, warmup,
                  with_torch=True, keras_xla=False, zoo_keras_compile=False,
                  before=True, keras_here=True, bfloat16=False, num_classes=1000,
                  torch_threads=None) -> list:
    """Training images/s of each zoo model with its defaults vs the references.

    Variants per model: the zoo model compiled by ``zoo.train.compile_model`` in this
    process (the subject: the zoo's defaults), ``keras.applications`` with Keras' defaults
    (``model.compile`` with only optimizer/loss/metrics) in a reference process with
    TensorFlow's own settings (:mod:`benchmarks.worker`; the target) and in this process
    (``keras_here``; for information: the same process settings as the zoo), a PyTorch eager
    ResNet-50 in a process of its own (``torch_threads``: its intra-op threads, default
    PyTorch's choice), and optionally the zoo model compiled with Keras' defaults
    (``zoo_keras_compile``) and ``keras.applications`` with ``jit_compile=True``
    (``keras_xla``), and (``before``) the zoo model as it ran before the speed defaults, in
    its own process. Every variant trains on the same in-memory batch with Adam (lr 1e-3)
    and sparse cross-entropy (a segmentation model on a label per output pixel, and where
    ``compile_model`` compiles it with its task's loss); a repetition is ``steps``
    optimizer steps. The subject trains
    under the dtype policy ``zoo.train.fit`` picks by default here
    (``mixed_precision="auto"``: bfloat16 on CPUs with AMX and on AMD CPUs with AVX512_BF16,
    float16 on tensor-core GPUs, else float32); when that is not float32 the zoo model in
    float32 is measured too. ``bfloat16``: where the default is float32, also the zoo model
    under ``mixed_bfloat16`` (``fit(mixed_precision="bfloat16")``, opt-in), on CPUs with
    native bfloat16 instructions only (others emulate it, many times slower).
    """
    import keras
    import tensorflow as tf

    import zoo
    from zoo.registry import model_info
    from zoo.common import cpu_has_bfloat16
    from zoo.train import compile_model, with_mixed_precision

    rows = []
    for name in names:
        info = model_info(name)
        shape = bench_shape(name, image_size)
        size, _, channels = shape
        classes = num_classes if name in KERAS_APPLICATIONS else info.default_num_classes
        log(f"train: {name} {shape} batch {batch_size}")
        keras.backend.clear_session()

        variants = []
        # under the dtype policy zoo.train.fit trains with here
        zm, policy = with_mixed_precision(zoo.get_model(name, input_shape=shape,
                                                        num_classes=classes))
        compile_model(zm, info.task)
        # a label per image, or per output pixel for a segmentation model
        x_np, y_np = _batch(shape, batch_size, classes, label_shape=label_shape(zm))
        x, y = tf.constant(x_np), tf.constant(y_np)
        subject = f"zoo defaults ({_zoo_settings(zm, policy)})"
        gflop = TRAIN_FLOP_FACTOR * model_gflop(zm)
        variants.append(Variant(subject, _keras_step(zm, x, y, steps),
                                note=_policy_note(policy), precision=_compute_dtype(policy)))

        if policy:
            zf = zoo.get_model(name, input_shape=shape, num_classes=classes)
            compile_model(zf, info.task)
            variants.append(Variant("zoo, float32 (mixed_precision='off')",
                                    _keras_step(zf, x, y, steps),
                                    note="fit(mixed_precision='off'): the zoo model and "
                                         "compile in float32, as on other CPUs"))
        elif bfloat16 and cpu_has_bfloat16():
            zb, _ = with_mixed_precision(
                zoo.get_model(name, input_shape=shape, num_classes=classes), "bfloat16")
            compile_model(zb, info.task)
            variants.append(Variant("zoo, mixed_bfloat16 (opt-in)", _keras_step(zb, x, y, steps),
                                    note="fit(mixed_precision='bfloat16'): bfloat16 compute, "
                                         "float32 variables and outputs; this CPU has native "
                                         "bfloat16 instructions",
                                    precision="bfloat16"))

        if zoo_keras_compile or name not in KERAS_APPLICATIONS:
            zk = zoo.get_model(name, input_shape=shape, num_classes=classes)
            zk.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])
            variants.append(Variant("zoo, Keras default compile",
                                    _keras_step(zk, x, y, steps),
                                    note="same zoo model, Keras' default compile"))

        references = []
        cls_name = KERAS_APPLICATIONS.get(name)
        keras_model = _keras_model(cls_name, shape, classes) if cls_name else None
        if keras_model is not None:
            try:
                reference = Reference(kind="train", model=cls_name, shape=list(shape),
                                      batch=batch_size, classes=classes, steps=steps)
                references.append(reference)
                variants.append(Variant(
                    f"keras.applications.{cls_name}, Keras/TensorFlow defaults",
                    reference.run, target=TARGET_VS_KERAS,
                    note=f"own process without zoo (oneDNN "
                         f"{'on' if reference.info['onednn'] else 'off'}, TensorFlow's "
                         f"choice), Keras' default compile (XLA "
                         f"{'on' if reference.info['jit_compile'] else 'off'})"))
            except RuntimeError as exc:
                log(f"  reference process failed: {exc}")
        if cls_name and before:
            try:
                old = Reference(kind="train", model=f"zoo:{name}", shape=list(shape),
                                batch=batch_size, classes=classes, steps=steps,
                                fused_bn=False, jit_compile=True)
                references.append(old)
                variants.append(Variant(
                    "zoo before (TF kernels, Keras BN, XLA)", old.run,
                    note="the zoo's previous defaults, in its own process: TensorFlow's "
                         "kernel choice, keras.layers.BatchNormalization, jit_compile=True"))
            except RuntimeError as exc:
                log(f"  reference process failed: {exc}")
        if keras_model is not None and keras_here:
            ka = keras_model()
            ka.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])
            variants.append(Variant(f"keras.applications.{cls_name}, this process",
                                    _keras_step(ka, x, y, steps),
                                    note="Keras' default compile, with the zoo's "
                                         "process settings"))
        if keras_model is not None and keras_xla:
            kx = keras_model()
            kx.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"], jit_compile=True)
            variants.append(Variant(f"keras.applications.{cls_name} jit_compile=True",
                                    _keras_step(kx, x, y, steps),
                                    note="this process"))
        if with_torch and name in TORCH_MODELS and torch_available():
            reference, variant = torch_variant(name, kind="train", shape=shape,
                                               batch=batch_size, classes=classes, steps=steps,
                                               threads=torch_threads)
            if reference is not None:
                references.append(reference)
                variants.append(variant)
        try:
            measured = measure(variants, repeats=repeats, warmup=warmup)
        finally:
            for reference in references:
                reference.close()
        rows += rows_from(measured, variants, section="train", model=name,
                          input=f"{size}x{size}x{channels}", batch=batch_size,
                          metric="train images/s", unit="img/s", subject=subject,
                          gflop_per_item=gflop)
        del variants, zm
        keras.backend.clear_session()
    return rows


# ---------------------------------------------------------------------------------------
# Input pipeline.

def pipeline_section(*, epochs, repeats, warmup, batch_size=32, model_name="lenet5",
                     dataset="digits", image_size=None, channels=None, batches=None,
                     augmented=True) -> list:
    """Training images/s of ``model_name`` fed by ``zoo.data`` vs by arrays in memory.

    The subject is ``model.fit`` on the ``zoo.data.load`` train pipeline (cached, shuffled,
    batched, normalised, prefetched; tf.data's autotuning as ``zoo.data`` sets it) without
    augmentation; the reference is ``model.fit`` on the same normalised images and labels as
    NumPy arrays. Measured too: the augmented pipeline (the ``zoo train`` default for the
    dataset; ``augmented``) and, where ``zoo.data`` turns tf.data's autotuning off (CPU-only
    machines), the same pipeline with it on, as ``zoo.data`` had it before (item 29). Each
    variant trains its own copy of the model, compiled by ``zoo.train.compile_model``, for
    ``epochs`` epochs per repetition, of ``batches`` batches each if given (else the whole
    split), at ``image_size`` (at least the model's smallest input) x ``channels`` (default:
    the model's input shape).
    """
    import keras

    import zoo
    from zoo import data as zdata
    from zoo.registry import model_info
    from zoo.train import compile_model

    minfo = model_info(model_name)
    shape = tuple(minfo.default_input_shape)
    if image_size:   # at least the model's smallest input
        size = max(image_size, minfo.min_input_size or 1)
        shape = (size, size, shape[2])
    if channels:
        shape = shape[:2] + (channels,)
    log(f"pipeline: {model_name} on {dataset} {shape} batch {batch_size}")
    keras.backend.clear_session()

    def load(**kw):
        ds, dinfo = zdata.load(dataset, "train", image_size=shape[:2], channels=shape[2],
                               batch_size=batch_size, **kw)
        return (ds.take(batches) if batches else ds), dinfo

    plain, dinfo = load(augment=False)
    x_mem, y_mem = zdata.to_arrays(plain)
    n = len(x_mem)

    def fitter(data, arrays):
        model = zoo.get_model(model_name, input_shape=shape, num_classes=dinfo.num_classes)
        compile_model(model)

        def run():
            if arrays:
                model.fit(x_mem, y_mem, batch_size=batch_size, epochs=epochs, verbose=0)
            else:
                model.fit(data, epochs=epochs, verbose=0, shuffle=False)  # it shuffles
            return epochs * n
        return run

    subject = "zoo.data pipeline"
    variants = [Variant(subject, fitter(plain, False)),
                Variant("arrays in memory (model.fit(x, y))", fitter(None, True),
                        target=TARGET_PIPELINE)]
    if augmented:
        variants.append(Variant("zoo.data pipeline + augmentation",
                                fitter(load(augment=True)[0], False),
                                note="the zoo train default for this dataset"))
    if not zdata.autotune_by_default():
        variants.append(Variant(
            "zoo.data pipeline, tf.data autotuning on (before)",
            fitter(load(augment=False, autotune=True)[0], False),
            note="zoo.data.load(autotune=True): the pipeline as zoo.data made it before "
                 "item 29, tf.data's default"))
    # ratio = pipeline / in-memory: the target is on the in-memory row.
    measured = measure(variants, repeats=repeats, warmup=warmup)
    rows = rows_from(measured, variants, section="pipeline", model=f"{model_name} / {dataset}",
                     input="x".join(str(s) for s in shape), batch=batch_size,
                     metric="train images/s", unit="img/s", subject=subject,
                     note=f"{n} images x {epochs} epochs per repetition")
    keras.backend.clear_session()
    return rows


# ---------------------------------------------------------------------------------------
# Time to accuracy.

def accuracy_section(*, repeats, target=0.98, model_name="lenet5", dataset="digits",
                     max_epochs=None) -> list:
    """Seconds from calling ``zoo.train.fit`` to ``target`` test accuracy, per seed.

    ``fit`` runs with the ``zoo train`` defaults for the model and dataset
    (:func:`zoo.train.train_defaults`); after every epoch a callback measures the accuracy
    on the test split (its own time is not counted) and stops training once it reaches
    ``target``. The time includes loading the data, building and compiling the model.
    """
    import keras

    from zoo import data as zdata
    from zoo import train as ztrain
    from zoo.registry import model_info

    defaults = ztrain.train_defaults(model_name, dataset)
    epochs = max_epochs or defaults["epochs"]
    shape = tuple(model_info(model_name).default_input_shape)
    size = tuple(defaults["image_size"] or shape[:2])
    test, _ = zdata.load(dataset, "test", image_size=size, channels=shape[2],
                         batch_size=512)
    x_test, y_test = zdata.to_arrays(test)

    class Stopwatch(keras.callbacks.Callback):
        def __init__(self, start):
            super().__init__()
            self.start, self.excluded = start, 0.0
            self.reached, self.epochs, self.best = None, 0, 0.0

        def on_epoch_end(self, epoch, logs=None):
            t0 = time.perf_counter()
            elapsed = t0 - self.start - self.excluded   # earlier evaluations not counted
            self.epochs = epoch + 1
            pred = np.argmax(self.model.predict_on_batch(x_test), axis=-1)
            acc = float(np.mean(pred == y_test))
            self.best = max(self.best, acc)
            self.excluded += time.perf_counter() - t0
            if acc >= target and self.reached is None:
                self.reached = elapsed
                self.model.stop_training = True

    seconds, epochs_needed, notes = [], [], []
    log(f"accuracy: {model_name} on {dataset} to {target:.0%} test accuracy, {repeats} seeds")
    for seed in range(repeats):
        keras.backend.clear_session()
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            watch = Stopwatch(start)
            ztrain.fit(model_name, dataset, epochs=epochs, run_dir=run_dir,
                       batch_size=defaults["batch_size"],
                       learning_rate=defaults["learning_rate"], augment=defaults["augment"],
                       lr_schedule=defaults["lr_schedule"],
                       early_stopping=defaults["early_stopping"], seed=seed, verbose=0,
                       callbacks=[watch])
        if watch.reached is not None:
            seconds.append(watch.reached)
            epochs_needed.append(watch.epochs)
            log(f"  seed {seed}: {watch.reached:.1f} s, {watch.epochs} epochs")
        else:
            notes.append(f"seed {seed}: not reached in {watch.epochs} epochs "
                         f"(best {watch.best:.3f})")
            log(f"  seed {seed}: not reached (best {watch.best:.3f})")
    note = (f"zoo train defaults: batch {defaults['batch_size']}, lr "
            f"{defaults['learning_rate']} {defaults['lr_schedule']} over {epochs} epochs, "
            f"augment {defaults['augment']}, early stopping "
            f"{'on' if defaults['early_stopping'] else 'off'}; epochs needed "
            f"{sorted(epochs_needed)}; seeds {repeats}")
    if notes:
        note += "; " + "; ".join(notes)
    return [Row(section="accuracy", model=f"{model_name} / {dataset}",
                variant=f"zoo.train.fit to {target:.0%} test accuracy",
                metric="seconds to accuracy", unit="s", values=seconds,
                input="x".join(str(s) for s in (*size, shape[2])),
                batch=defaults["batch_size"], note=note)]
