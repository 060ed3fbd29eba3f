"""``zoo train``'s options (:func:`configure_train`), kept apart from :mod:`zoo.train` so
that parsing them imports neither TensorFlow nor Keras: ``zoo train --help`` and a mistyped
option answer at once. The command's work is :func:`zoo.train.train_command`."""

from __future__ import annotations

import ast
import math

from zoo.common import (ADAMW_WEIGHT_DECAY, AUTO_PRECISION_HELP, AUX_LOSS_WEIGHT, LR_SCHEDULES,
                        MIXED_PRECISION, OPTIMIZERS, PLATEAU_PATIENCE, check_run_dir,
                        dataset_source, require_tensorflow_backend)

__all__ = ["configure_train", "check_counts", "check_export_options", "check_monitor_option",
           "export_base_dir", "with_aux_logits", "logged_metrics", "parse_image_size",
           "TRAIN_DEFAULTS", "train_defaults", "default_dataset"]


def check_counts(epochs, batch_size, patience) -> None:
    """``--epochs`` and ``--batch-size`` at least 1, ``--patience`` at least 0 (``None``:
    the default, which is)."""
    for value, flag, least in ((epochs, "--epochs", 1), (batch_size, "--batch-size", 1),
                               (patience, "--patience", 0)):
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}. Received: {value}")


def export_base_dir(args) -> str:
    """Where ``zoo train --export`` exports: ``--base-dir``, by default saved_models."""
    # ("--base-dir ''" exported to saved_models)
    return "saved_models" if args.base_dir is None else args.base_dir


def logged_metrics(task, aux=False) -> list:
    """The quantities a model of ``task`` compiled by :func:`zoo.train.compile_model` logs
    (``aux``: with auxiliary classifiers, which log ``total_loss`` too), without ``val_``."""
    return (["loss", "accuracy"] + (["mean_iou"] if task == "segmentation" else [])
            + (["total_loss"] if aux else []))


def check_monitor_option(monitor, task, aux=False):
    """``zoo train --monitor``: one of the quantities a run of ``task`` logs (``aux``: a
    model with auxiliary classifiers, which logs ``total_loss`` too), refused before
    anything is loaded (``fit`` finds an unlogged one at the end of the first epoch)."""
    names = logged_metrics(task, aux)
    allowed = [f"val_{n}" for n in names] + names
    if monitor not in allowed:
        hint = (" (total_loss, the weighted sum of the losses, is logged with auxiliary "
                "classifiers: googlenet --model-arg aux_logits=true)"
                if not aux and monitor in ("total_loss", "val_total_loss") else "")
        raise ValueError(f"--monitor must be one of {', '.join(allowed)} for a {task} model"
                         f"{' with auxiliary classifiers' if aux else ''}. "
                         f"Received: --monitor {monitor}{hint}")


def with_aux_logits(args) -> bool:
    """Whether ``zoo train`` builds the model with its auxiliary classifiers (``--model-arg
    aux_logits=true``)."""
    return dict(args.model_arg).get("aux_logits") is True


def check_export_options(args) -> None:
    """``zoo train``'s options that go with ``--export``, refused without it."""
    if args.export_precision and not args.export:
        raise ValueError(f"--export-precision {args.export_precision} goes with --export "
                         f"(or export later: zoo export RUN_DIR --precision "
                         f"{args.export_precision})")
    if args.base_dir is not None and not args.export:
        raise ValueError(f"--base-dir {args.base_dir} goes with --export (or export later: "
                         f"zoo export RUN_DIR --base-dir {args.base_dir})")
    if not args.lite and not args.export:
        raise ValueError("--no-lite goes with --export (or export later: zoo export "
                         "RUN_DIR --no-lite)")


# Defaults of `zoo train` (and `fit` given a model name) per (model, dataset), measured on the
# project's 2-core CPU; anything not listed uses GENERIC_DEFAULTS.
# lenet5/digits: the whole 60-epoch cosine schedule, no early stopping: test accuracy
# 0.9861 / 0.9833 / 0.9833 (seeds 0, 1, 2), 63-65 s of training on the idle 2 cores. With
# early stopping (patience 8 on the 180-image validation loss) runs stopped after 24-30
# epochs, still at a high learning rate: 0.9861 / 0.9917 / 0.9667.
# unet/shapes: 24 epochs reached test mean IoU 0.886 (validation 0.914); 48 epochs 0.914
# (validation 0.94), 865 s of training on a 2-core CPU shared with other jobs.
GENERIC_DEFAULTS = dict(epochs=10, batch_size=32, learning_rate=1e-3, augment=True,
                        lr_schedule="constant", image_size=None, model_args={},
                        early_stopping=True)
TRAIN_DEFAULTS = {
    ("lenet5", "digits"): dict(epochs=60, batch_size=32, learning_rate=2e-3, augment=True,
                               lr_schedule="cosine", early_stopping=False),
    ("unet", "shapes"): dict(epochs=48, batch_size=8, learning_rate=2e-3, augment=True,
                             lr_schedule="cosine", image_size=(64, 64),
                             model_args={"base_filters": 8, "padding": "same", "depth": 3,
                                         "batch_norm": True}),
}


# Per model on any dataset (under TRAIN_DEFAULTS). The networks without batch norm lose
# their ReLUs under Adam at 1e-3 (measured on digits: GoogLeNet's output constant, at
# chance, 0.10 after 5 epochs at 65x65; AlexNet at chance for its first epoch, 0.83 after 5
# at 67x67); at 1e-4 GoogLeNet scored 0.92 after 10 epochs and AlexNet 0.97 after 5.
MODEL_DEFAULTS = {"alexnet": dict(learning_rate=1e-4), "googlenet": dict(learning_rate=1e-4)}


def train_defaults(model_name, dataset) -> dict:
    """The ``zoo train`` defaults for ``model_name`` on ``dataset``.

    Args:
        model_name: a registered model name.
        dataset: a dataset name.

    Returns:
        ``{"epochs", "batch_size", "learning_rate", "augment", "lr_schedule",
        "image_size", "model_args", "early_stopping"}``: :data:`GENERIC_DEFAULTS`,
        updated by :data:`MODEL_DEFAULTS` and then by :data:`TRAIN_DEFAULTS`.
    """
    out = {**GENERIC_DEFAULTS, **MODEL_DEFAULTS.get(model_name, {}),
           **TRAIN_DEFAULTS.get((model_name, dataset), {})}
    if dataset == "digits" and out["image_size"] is None:
        # 8x8 images: a paper's input size only enlarges them, at its cost (AlexNet at
        # 227x227: 42 s an epoch here, against 7 s at its smallest input, 67x67).
        from zoo.registry import model_info
        side = max(32, model_info(model_name).min_input_size)
        out["image_size"] = (side, side)
    out["model_args"] = dict(out["model_args"])
    return out


def default_dataset(model_name) -> str:
    """``digits`` for classifiers, ``shapes`` for segmentation models."""
    from zoo.registry import model_info
    return "shapes" if model_info(model_name).task == "segmentation" else "digits"


def _refuse_early(args) -> None:
    """The refusals of ``zoo train``'s options that need neither TensorFlow nor Keras, made
    before their import (~6 s), in the order :func:`zoo.train.train_command` makes them
    too: an unknown model, an option of --export without it, an export target or run
    directory that cannot be made, a quantity --monitor cannot watch, a count below its
    least, an unknown dataset or a dataset folder that is not there; then an image size
    the model does not take (which train_command leaves to the builder, once the data is
    loaded)."""
    from zoo.registry import model_info
    task = model_info(args.model).task
    check_export_options(args)
    if args.export:
        from zoo.export import check_export_target
        check_export_target(export_base_dir(args), args.model)
    check_run_dir(args.run_dir, "--run-dir")
    check_monitor_option(args.monitor, task, aux=with_aux_logits(args))
    check_counts(args.epochs, args.batch_size, args.patience)
    if args.dataset is not None:
        dataset_source(args.dataset)
    _refuse_image_size(args, task)


def _refuse_image_size(args, task) -> None:
    """An image size the model's builder refuses (:func:`zoo.input_sizes.check_input_shape`,
    the same message), where the channels of the data are known before it is loaded: given
    (``--channels``) or a named dataset's; a folder's are read from its images. Not with a
    U-Net backbone's weights, an input_shape of --model-arg, or for a dataset of another
    task (refused as such later)."""
    from zoo.common import DATASET_KINDS
    from zoo.input_sizes import check_input_shape
    from zoo.registry import model_info
    dataset = args.dataset if args.dataset is not None else default_dataset(args.model)
    data_task, channels = DATASET_KINDS.get(dataset, (task, None))
    channels = args.channels or channels
    given = dict(args.model_arg)
    if (channels is None or data_task != task or "input_shape" in given
            or (task == "segmentation" and args.weights)):
        return
    d = train_defaults(args.model, dataset)
    size = args.image_size or d["image_size"] or model_info(args.model).default_input_shape[:2]
    check_input_shape(args.model, (*size, channels), {**d["model_args"], **given})


def _seed_arg(text):
    import argparse
    value = int(text) if text.isdigit() else -1
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1; "
                                         f"received {text!r}")
    return value


def parse_image_size(text):
    """``--image-size`` of ``zoo train`` and ``zoo tune``: ``H,W`` (or ``HxW``), or ``S`` for
    ``S,S``; positive integers."""
    try:
        vals = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        vals = ()
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        import argparse
        raise argparse.ArgumentTypeError(f"expected H,W such as 32,32; received {text!r}")
    return vals


def _parse_model_arg(text):
    import argparse
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; received {text!r}")
    key, value = text.split("=", 1)
    if value.strip().lower() in ("true", "false"):   # aux_logits=true, as in JSON or YAML
        return key.strip(), value.strip().lower() == "true"
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a bare string such as padding=same
    return key.strip(), value


def _parse_bn_momentum(text):
    """``--batch-norm-momentum`` value: ``auto``, ``keep`` (``None``) or a number in (0, 1)."""
    from zoo.cli import number_type
    if text in ("auto", "keep"):
        return None if text == "keep" else text
    return number_type("auto, keep or a number in (0, 1)", lambda v: 0 < v < 1)(text)


def _parse_class_weight(text):
    """``--class-weight`` value: ``balanced``, or ``NAME=W`` (a class name or index and a
    finite weight >= 0) as ``(name, weight)``."""
    import argparse
    if text.strip() == "balanced":
        return "balanced"
    name, sep, value = text.rpartition("=")   # a folder's class name may hold "="
    try:
        weight = float(value)
    except ValueError:
        weight = float("nan")
    if not sep or not name.strip() or not (math.isfinite(weight) and weight >= 0):
        raise argparse.ArgumentTypeError(f"expected balanced or NAME=W (a class name or index "
                                         f"and a finite weight >= 0, e.g. cat=2.5); received "
                                         f"{text!r}")
    return name.strip(), weight


def configure_train(parser):
    """``zoo train MODEL [--dataset NAME] [--epochs N] ...``.

    Args:
        parser: the ``zoo train`` subparser, to which the options are added.

    Returns:
        ``run(args) -> int``, the command (0 on success).
    """
    import argparse
    from zoo.cli import ignore_label_arg, number_type
    parser.add_argument("model", help="registered model name (see `zoo list`)")
    parser.add_argument("--dataset", default=None,
                        help="digits (default for classifiers), shapes (default for "
                             "segmentation), mnist, fashion_mnist, cifar10, cifar100, malaria, "
                             "oxford_iiit_pet, imagenette, folder:PATH")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: per model and dataset)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per training step (default: per model and dataset)")
    parser.add_argument("--image-size", type=parse_image_size, default=None, metavar="H,W",
                        help="model input size (default: per model and dataset: the "
                             "model's default input; on digits its smallest, at least 32,32; "
                             "unet on shapes 64,64)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="input channels (default: the dataset's)")
    parser.add_argument("--lr", type=number_type("a positive finite learning rate",
                                                  lambda v: 0 < v < math.inf),
                        default=None,
                        help="learning rate (default: per model and dataset: 1e-3, alexnet "
                             "and googlenet 1e-4, lenet5 on digits and unet on shapes 2e-3)")
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS,
                        help="optimizer (default: adam)")
    parser.add_argument("--weight-decay", type=number_type(
                            "a finite weight decay >= 0", lambda v: 0 <= v < math.inf),
                        default=None, metavar="WD",
                        help="decoupled weight decay of the optimizer's updates, e.g. 1e-4 "
                             f"(default: none; adamw: {ADAMW_WEIGHT_DECAY}, Keras' AdamW "
                             f"default, which 0 turns off)")
    parser.add_argument("--clip-norm", type=number_type(
                            "a finite gradient norm > 0", lambda v: 0 < v < math.inf),
                        default=None, metavar="N",
                        help="clip each step's gradients to this global norm, e.g. 2.0 as "
                             "Inception-v3's paper (default: no clipping)")
    parser.add_argument("--label-smoothing", type=number_type(
                            "a label smoothing in [0, 1)", lambda v: 0 <= v < 1),
                        default=0.0, metavar="S",
                        help="classification: label smoothing of the cross-entropy loss, "
                             "e.g. 0.1 (default 0)")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                        help="learning-rate schedule: constant, cosine (decay to 0 over "
                             "the epochs) or plateau (divided by 10 after "
                             f"{PLATEAU_PATIENCE} epochs without improvement, at most 3 "
                             "times) (default: per model and dataset)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="augment the training split (default: on)")
    parser.add_argument("--run-dir", default=None, help="default runs/MODEL-DATASET-TIME; "
                        "the same directory again resumes a killed run")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory")
    parser.add_argument("--download", action="store_true",
                        help="let tensorflow-datasets download missing data")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                        help="compile with XLA (default: on GPUs only)")
    parser.add_argument("--mixed-precision", nargs="?", const="float16", default="auto",
                        choices=MIXED_PRECISION,
                        help=f"compute dtype: {AUTO_PRECISION_HELP}, off, "
                        "float16 (the default without a value), bfloat16 (opt-in on other CPUs "
                        "with AVX512_BF16; measure)")
    parser.add_argument("--monitor", default="val_loss", metavar="NAME",
                        help="what early stopping, the best checkpoint and --lr-schedule "
                             "plateau watch: val_loss (default), val_accuracy, val_mean_iou "
                             "(segmentation) or val_total_loss (auxiliary classifiers: the "
                             "weighted sum minimised); loss, accuracy, mean_iou or "
                             "total_loss for the training split's")
    parser.add_argument("--patience", type=int, default=None,
                        help="with early stopping: epochs without improvement before it stops "
                        "(default 8)")
    parser.add_argument("--early-stopping", action=argparse.BooleanOptionalAction,
                        default=None, help="stop when the monitored value (--monitor) "
                        "stops improving (default: on, except where the model's defaults "
                        "train a whole "
                        "schedule, e.g. lenet5 on digits)")
    parser.add_argument("--seed", type=_seed_arg, default=0, help="0 to 2**32 - 1")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-for-bit reproducible runs (TensorFlow's op determinism; "
                        "somewhat slower)")
    parser.add_argument("--no-replay", dest="replay", action="store_false",
                        help="resuming a stopped run: skip reading the epochs done through "
                        "again (which gives the rest an uninterrupted run's data order and "
                        "augmentation) where the input pipeline limits training")
    parser.add_argument("--model-arg", type=_parse_model_arg, action="append", default=[],
                        metavar="KEY=VALUE", help="builder option, e.g. base_filters=16")
    parser.add_argument("--weights", default=None, metavar="imagenet|PATH",
                        help="fine-tune from pretrained weights: the model's backbone "
                        "(include_top=False, average pooling) with 'imagenet' (models with "
                        "published weights; 3 channels) or a weights file (.h5, .weights.h5, "
                        ".keras or a run directory), under a new softmax head of the "
                        "dataset's classes; unet: its backbone's (--model-arg backbone=NAME)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="with --weights: train the new head only (unet: the decoder); "
                        "the backbone's batch norms stay in inference mode")
    parser.add_argument("--imagenet-input", action=argparse.BooleanOptionalAction,
                        default=None, help="with --weights: put the fixed conversion to "
                        "the input of Keras' ImageNet weights in front of the backbone "
                        "(default: when the weights are Keras' ImageNet ones: imagenet, a "
                        "published file, a .keras file of a model trained behind it)")
    parser.add_argument("--class-weight", type=_parse_class_weight, action="append",
                        default=[], metavar="balanced|NAME=W",
                        help="weight the training loss by class (classification): balanced "
                        "(n_samples / (n_classes * count) from the train split), or a class "
                        "name or index and its weight, e.g. cat=2.5 (repeatable; classes not "
                        "named get 1)")
    parser.add_argument("--ignore-label", default=None, metavar="V", type=ignore_label_arg,
                        help="segmentation: the mask value of pixels no loss or metric counts "
                        "(Pascal VOC's 255), outside the classes 0..K-1 (default: none)")
    parser.add_argument("--export", action="store_true",
                        help="export the trained model (zoo.export.export_run)")
    parser.add_argument("--base-dir", default=None,
                        help="with --export: the export base directory (default saved_models)")
    parser.add_argument("--export-precision", default=None,
                        choices=("float32", "float16", "bfloat16"),
                        help="with --export: the export's weights and compute dtype (default "
                        "float32, whatever the training precision; float16 for GPU servers)")
    parser.add_argument("--no-lite", dest="lite", action="store_false",
                        help="with --export: no LiteRT model in the export, as zoo export "
                        "--no-lite")
    parser.add_argument("--batch-norm-momentum", type=_parse_bn_momentum, default="auto",
                        metavar="auto|keep|M",
                        help="momentum of the batch norms' moving statistics while training: "
                        "auto (default: 0.9 where the model has more, as Keras' 0.99), keep "
                        "(the model's), or a number in (0, 1)")
    parser.add_argument("--aux-loss-weight", type=number_type("a finite number >= 0",
                                                              lambda v: 0 <= v < math.inf),
                        default=None, metavar="W",
                        help="the weight of each auxiliary classifier's loss, for a model "
                        f"with them (googlenet --model-arg aux_logits=true; default "
                        f"{AUX_LOSS_WEIGHT}, the paper's; the main output's is 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        require_tensorflow_backend("zoo train")   # before TensorFlow's import
        _refuse_early(args)
        from zoo.train import train_command
        return train_command(args)

    return run
