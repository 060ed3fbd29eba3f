"""Evaluating an exported model on a dataset split, as it is served.

:func:`evaluate` runs a version directory's serving signature (:class:`zoo.serving.Servable`,
the runtime ``zoo serve`` and ``zoo predict`` use) on a split's images as they are stored
(:func:`zoo.data.load_raw`: the export resizes and normalises them itself) and compares its
answers with the labels or masks: a check of the exported artifact, not of the Keras model
it came from, on the dataset it was trained on or on another one with the same classes (a
folder of new images).

- classification: accuracy, top-k accuracy (more than ``k`` classes), each class's
  precision, recall, F1 and support, their macro averages, and the confusion matrix;
- segmentation: pixel accuracy, mean IoU over the classes present in the labels or the
  predictions (as Keras' ``MeanIoU``), each class's IoU, precision, recall and pixels, and
  the confusion matrix over pixels, at each image's own size (the masks ``zoo predict``
  writes; training's ``test_mean_iou`` is measured at the model's input size); for a model
  whose output is smaller than its input (unpadded convolutions), on the centre of the
  mask resized to the input, as training scores it. Pixels holding the ignore label count
  in nothing.

``zoo evaluate MODEL_DIR [--dataset NAME] [--split test]`` prints them.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["evaluate", "configure_evaluate", "MAX_PRINTED_CLASSES"]

#: Confusion matrices of at most this many classes are printed in markdown.
MAX_PRINTED_CLASSES = 20


def _chunks(raw, size):
    """Lists of at most ``size`` ``(image, target)`` NumPy pairs of ``raw.dataset``. A
    folder's image or mask that cannot be decoded (a truncated file) stops it with the
    one-line ``ValueError`` naming the folder and the damaged files, as in training
    (``zoo.data._decode_failure``): it was TensorFlow's error, naming no file."""
    from zoo import data
    ds = raw.dataset.prefetch(2 * size)
    chunk = []
    with data.tf_errors_as(lambda exc: data._decode_failure(exc, raw.name)):
        for image, target in ds.as_numpy_iterator():
            chunk.append((image, target))
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _check_labels(servable, raw):
    """Refuse a dataset whose classes are not the model's (another count or order)."""
    task = servable.task
    if task != raw.task:
        raise ValueError(f"{servable.name} is a {task} model; dataset {raw.name!r} is a "
                         f"{raw.task} dataset.")
    labels = servable.labels
    k = servable.info.get("num_classes")
    if k is None:   # an export without its zoo.json: the signature's class count
        units = servable.probability_units
        k = 2 if units == 1 else units
    if labels and list(labels) != list(raw.labels):
        raise ValueError(f"dataset {raw.name!r} has the classes {_names(raw.labels)}, "
                         f"{servable.name} was trained on {_names(labels)}: a model is "
                         f"evaluated on data with its own classes, in its order.")
    if not labels and k is not None and k != len(raw.labels):
        raise ValueError(f"dataset {raw.name!r} has {len(raw.labels)} classes, "
                         f"{servable.name} predicts {k}.")
    return task


def _names(labels, most=12) -> str:
    shown = ", ".join(repr(v) for v in list(labels)[:most])
    return f"[{shown}{', ...' if len(labels) > most else ''}] ({len(labels)})"


def _centre(mask, hw):
    """The centre ``hw`` of ``mask``, as training crops masks for a U-Net with unpadded
    convolutions (``zoo.train``'s ``_crop_masks``)."""
    top, left = (mask.shape[0] - hw[0]) // 2, (mask.shape[1] - hw[1]) // 2
    return mask[top:top + hw[0], left:left + hw[1]]


def _per_class(confusion, labels) -> list:
    """Precision, recall, F1 and support of each class of ``confusion`` (rows: truth,
    columns: prediction); 0 where a ratio has nothing to divide by (as scikit-learn's
    ``zero_division=0``)."""
    tp = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(0), confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    return [{"label": str(label), "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(n)}
            for label, p, r, f, n in zip(labels, precision, recall, f1, actual)]


def evaluate(model, dataset=None, split="test", *, batch_size=None, top_k=None, data_dir=None,
             download=False, ignore_label="model", runtime="auto", jit_compile="auto") -> dict:
    """Evaluate an exported model on a dataset split, through its serving signature.

    Args:
        model: a :class:`zoo.serving.Servable`, or a model or version directory (loaded
            with ``runtime`` and ``jit_compile``, as :func:`zoo.serving.load`).
        dataset: a dataset name (:func:`zoo.data.load`'s); ``None``: the one the model
            was trained on (its ``zoo.json``). Its classes must be the model's, in order.
        split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"`` (every example once:
            a folder of new images, whatever its layout).
        batch_size: images per model call (default :data:`zoo.serving.DEFAULT_BATCH_SIZE`).
        top_k: classification: also count an image right when its label is among the
            ``top_k`` most probable (reported when the model has more classes); ``None``:
            5. Refused for a segmentation model (it has no labels to rank).
        data_dir, download: for tensorflow-datasets, as :func:`zoo.data.load`.
        ignore_label: segmentation: the mask value of pixels that count in no metric;
            ``"model"`` (default): the one the model was trained with (its ``zoo.json``),
            ``None``: every value is a class.
        runtime, jit_compile: as for :func:`zoo.serving.load`, where ``model`` is a
            directory.

    Returns:
        A dict: ``model``, ``version``, ``dataset``, ``split``, ``task``, ``examples``,
        ``test_is_validation`` (the dataset's test split is its validation split),
        ``runtime`` (what ran the batches, :func:`zoo.serving.engine_text`);
        classification: ``accuracy``, ``top_k``, ``top_k_accuracy`` (``None``
        with ``top_k`` classes or fewer), ``per_class`` (``label``, ``precision``,
        ``recall``, ``f1``, ``support``), ``macro`` (their unweighted means over the classes
        in the labels or the predictions, as scikit-learn's default) and
        ``confusion_matrix`` (rows: true class, columns: predicted); segmentation:
        ``pixel_accuracy``, ``mean_iou``, ``pixels``, ``per_class`` (``label``, ``iou``,
        ``precision``, ``recall``, ``pixels``: of the class in the labels) and
        ``confusion_matrix`` over pixels.

    Raises:
        TypeError: ``model`` is neither a ``Servable`` nor a path (a ``keras.Model``:
            export it first).
        ValueError: a dataset of another task or other classes, no dataset recorded and
            none given, a bad split, batch size or ``top_k``, a ``top_k`` given for a
            segmentation model; as :func:`zoo.data.load_raw`
            and :func:`zoo.serving.load`.

    Example:
        >>> r = evaluate("saved_models/lenet5", "digits")  # doctest: +SKIP
        >>> r["accuracy"], r["per_class"][3]["recall"]  # doctest: +SKIP
    """
    from zoo import data, serving
    from zoo.common import is_integer
    if top_k is not None and (not is_integer(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None (5). "
                         f"Received: top_k={top_k!r}")
    serving._check_batch_size(batch_size)   # (before a model is loaded)
    # (a NumPy batch size was TensorFlow's "Expected bool for argument 'legacy_autotune'")
    batch_size = None if batch_size is None else int(batch_size)
    if not isinstance(model, (serving.Servable, str, os.PathLike)):
        from zoo.common import received_text
        raise TypeError(f"evaluate: model must be a zoo.serving.Servable or the path of an "
                        f"export (a model or version directory; zoo.export writes one from a "
                        f"keras.Model). Received: {received_text(model)}")
    servable = model if isinstance(model, serving.Servable) else serving.load(
        model, jit_compile=jit_compile, runtime=runtime)
    # An option of the other task is refused, not ignored (as zoo predict refuses --top-k).
    if top_k is not None and servable.task == "segmentation":
        raise ValueError(f"top_k (--top-k) ranks a classifier's labels; {servable.name} is "
                         f"a segmentation model, scored by pixel accuracy and IoU. "
                         f"Received: top_k={top_k!r}")
    top_k = 5 if top_k is None else int(top_k)
    recorded = servable.info.get("dataset") or {}
    if dataset is None:
        dataset = recorded.get("name")
        if not dataset:
            raise ValueError(f"{servable.name} version {servable.version} records no "
                             f"dataset (an export without one): give the dataset to "
                             f"evaluate on.")
    from_model = isinstance(ignore_label, str) and ignore_label == "model"
    if from_model:
        ignore_label = recorded.get("ignore_label")
    try:
        raw = data.load_raw(dataset, split, channels=servable.channels, data_dir=data_dir,
                            download=download, ignore_label=ignore_label)
    except ValueError:
        if not from_model or ignore_label is None:
            raise
        try:   # the model's ignore label refused by a dataset of another task: name the task
            other = data.load_raw(dataset, split, channels=servable.channels,
                                  data_dir=data_dir, download=download)
        except ValueError:
            other = None
        if other is not None and other.task == "classification":
            _check_labels(servable, other)
        raise
    task = _check_labels(servable, raw)
    labels = list(raw.labels)
    k = len(labels)
    step = batch_size or serving.DEFAULT_BATCH_SIZE
    # Segmentation: masks at each image's size, or the centre of the resized image (in_hw)
    # for an output smaller than the input. A classifier needs neither (nor the input record
    # that an export without its zoo.json lacks).
    own_size, in_hw = (serving.mask_sizes(servable, "at which the masks are scored")
                       if task == "segmentation" else (False, None))
    confusion = np.zeros((k, k), np.int64)
    top_right = examples = 0
    for chunk in _chunks(raw, step):
        images = [image for image, _ in chunk]
        if task == "classification":
            truth = np.asarray([int(t) for _, t in chunk])
            out = servable.predict(images, step)
            probabilities = serving.class_probabilities(out["probabilities"])
            predicted = serving.predicted_classes(out)
            # Counted pair by pair: a bincount of k * k cells for each batch took time and
            # memory in k^2 per batch (10,000 classes: 800 MB a batch of 64 images).
            np.add.at(confusion, (truth, predicted), 1)
            ranked = np.argsort(-probabilities, -1, kind="stable")[:, :top_k]
            top_right += int((ranked == truth[:, None]).any(1).sum())
        else:
            for idx, out in servable.iter_predict(images, step):
                for i, probabilities in zip(idx, out["probabilities"]):
                    mask = chunk[i][1]
                    if own_size:
                        predicted = serving.mask_at_size(probabilities, mask.shape)
                    else:   # the centre of the resized image, as training scores it
                        predicted = serving.mask_at_size(probabilities,
                                                         probabilities.shape[:2])
                        mask = _centre(data.resize_masks(mask[..., None], in_hw)[..., 0]
                                       .numpy(), predicted.shape)
                    kept = (mask != raw.ignore_label) if raw.ignore_label is not None else \
                        np.ones(mask.shape, bool)
                    truth = mask[kept].astype(np.int64)
                    confusion += np.bincount(truth * k + predicted[kept],
                                             minlength=k * k).reshape(k, k)
        examples += len(chunk)
    result = {"model": servable.name, "version": servable.version, "dataset": raw.name,
              "split": raw.split, "task": task, "examples": examples,
              "test_is_validation": raw.test_is_validation,
              "runtime": serving.engine_text(servable)}
    total = int(confusion.sum())
    right = int(np.trace(confusion))
    per_class = _per_class(confusion, labels)
    # Classes in the labels or the predictions: one in neither has no precision or recall
    # to average (scikit-learn's default labels; mean IoU's classes).
    present = (confusion.sum(0) + confusion.sum(1)) > 0
    if task == "classification":
        result.update(accuracy=right / max(examples, 1), top_k=int(top_k),
                      top_k_accuracy=top_right / max(examples, 1) if k > top_k else None,
                      per_class=per_class,
                      macro={key: float(np.mean([c[key] for c, seen in zip(per_class, present)
                                                 if seen]) if present.any() else 0.0)
                             for key in ("precision", "recall", "f1")})
    else:
        predicted, actual = confusion.sum(0), confusion.sum(1)
        union = predicted + actual - np.diag(confusion)
        iou = np.where(union > 0, np.diag(confusion) / np.maximum(union, 1), 0.0)
        for row, value in zip(per_class, iou):
            row["iou"] = float(value)
            row["pixels"] = row.pop("support")
            del row["f1"]
        result.update(pixel_accuracy=right / max(total, 1),
                      mean_iou=float(iou[present].mean()) if present.any() else 0.0,
                      pixels=total, per_class=per_class)
    result["confusion_matrix"] = confusion.tolist()
    return result


def _report_tables(result):
    """``(per-class table, confusion-matrix table)`` as pandas DataFrames."""
    import pandas as pd
    from zoo.tables import records_frame
    seg = result["task"] == "segmentation"
    keys = ("iou", "precision", "recall", "pixels") if seg else (
        "precision", "recall", "f1", "support")
    rows = [[c["label"], *(c[key] for key in keys)] for c in result["per_class"]]
    if not seg:
        rows.append(["(macro average)", *(result["macro"][key] for key in keys[:3]),
                     sum(c["support"] for c in result["per_class"])])
    # Labels as Python strings: a class folder's name that is not UTF-8 failed pandas' Arrow
    # strings (tables.records_frame).
    table = records_frame(rows, columns=["label", *keys])
    labels = [c["label"] for c in result["per_class"]]
    confusion = pd.DataFrame(result["confusion_matrix"], columns=pd.Index(labels, dtype=object))
    confusion.insert(0, "true \\ predicted", pd.Series(labels, dtype=object))
    return table, confusion


def _summary_line(result) -> str:
    split = result["split"]
    if split == "test" and result.get("test_is_validation"):
        split = "test: the validation split, the dataset has no test split"
    head = (f"{result['model']} version {result['version']} on {result['dataset']} "
            f"({split}, {result['examples']} images, {result['runtime']}): ")
    if result["task"] == "segmentation":
        return head + (f"pixel accuracy {result['pixel_accuracy']:.4f}, mean IoU "
                       f"{result['mean_iou']:.4f} ({result['pixels']:,} pixels)")
    line = head + f"accuracy {result['accuracy']:.4f}"
    if result["top_k_accuracy"] is not None:
        line += f", top-{result['top_k']} accuracy {result['top_k_accuracy']:.4f}"
    return line


def configure_evaluate(parser):
    """``zoo evaluate MODEL_DIR [--dataset NAME] [--split test] [--batch-size 64]
    [--top-k 5] [--format markdown|csv|json] [--data-dir DIR] [--ignore-label V]``.

    Args:
        parser: the command's ``argparse.ArgumentParser``; its options are added.

    Returns:
        ``run(args) -> int``: runs the command on the parsed arguments and returns its
        exit code.
    """
    from zoo import serving
    from zoo.cli import number_type
    serving.add_model_dir_argument(parser)
    parser.add_argument("--dataset", default=None,
                        help="dataset to evaluate on, with the model's classes (default: the "
                             "one the model was trained on, from its zoo.json)")
    parser.add_argument("--split", default="test",
                        help="train, validation, test or all (every image once: a folder "
                             "of new images) (default: test)")
    positive = number_type("a positive integer", lambda v: v >= 1 and v == int(v))
    parser.add_argument("--batch-size", type=positive, default=None,
                        help=f"images per model call (default: {serving.DEFAULT_BATCH_SIZE})")
    parser.add_argument("--top-k", type=positive, default=None,
                        help="classifiers: also report top-K accuracy (default: 5)")
    parser.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown",
                        help="markdown (for people: a summary line, the per-class table and "
                             f"the confusion matrix up to {MAX_PRINTED_CLASSES} classes), csv "
                             "(the per-class table) or json (everything)")
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory")
    parser.add_argument("--ignore-label", default=None, metavar="V",
                        help="segmentation: mask value of pixels to leave out, or 'none' "
                             "(default: the model's, from its zoo.json)")
    serving.add_runtime_options(parser)

    def run(args):
        import json
        import sys
        from zoo.common import dataset_source, split_name
        ignore = "model"
        if args.ignore_label is not None:
            text = args.ignore_label.strip()
            if text.lower() == "none":
                ignore = None
            elif text.isdigit():
                ignore = int(text)
            else:
                raise ValueError(f"--ignore-label takes a mask value (an integer from 0 to "
                                 f"65535) or 'none'. Received: {args.ignore_label!r}")
        if args.dataset is not None and not args.dataset.strip():
            raise ValueError("--dataset needs a dataset name or folder. Received: ''")
        if not os.path.exists(args.model_dir):
            raise FileNotFoundError(f"model directory not found: {args.model_dir}")
        # Refused before the model loads (with TensorFlow, ~6 s):
        split_name(args.split, every=True)
        if args.dataset is not None:   # unknown, or no such folder
            dataset_source(args.dataset)
        batch_size = None if args.batch_size is None else int(args.batch_size)
        result = evaluate(args.model_dir, args.dataset, args.split, batch_size=batch_size,
                          top_k=None if args.top_k is None else int(args.top_k),
                          data_dir=args.data_dir, ignore_label=ignore,
                          runtime=args.runtime, jit_compile=not args.no_xla and "auto")
        if args.format == "json":
            print(json.dumps(result, indent=1))
            return 0
        from zoo.tables import to_text   # (pandas: after the checks, as TensorFlow)
        table, confusion = _report_tables(result)
        if args.format == "csv":
            print(to_text(table, "csv").rstrip())
            print(_summary_line(result), file=sys.stderr)
            return 0
        print(_summary_line(result))
        print()
        shown = table.copy()
        for column in ("iou", "precision", "recall", "f1"):
            if column in shown:
                shown[column] = shown[column].map("{:.4f}".format)
        print(to_text(shown, "markdown").rstrip())
        if len(result["per_class"]) <= MAX_PRINTED_CLASSES:
            print()
            print(to_text(confusion, "markdown").rstrip())
        else:
            print(f"\n(confusion matrix of {len(result['per_class'])} classes: --format json)")
        return 0

    return run
