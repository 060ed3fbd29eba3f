"""Search spaces for every zoo family, as ``keras_tuner.HyperModel`` classes.

Each HyperModel calls the zoo's own builder (``zoo.get_builder(name)``) with
the architecture choices the builder exposes, compiles the model with
``zoo.train.compile_model`` and trains it with ``model.fit``. No architecture
code lives here.

A space is a list of :class:`Param` entries. Every entry has a documented
default equal to the builder's (architecture) or the training default
(``zoo.train.compile_model``/``zoo.train.fit``), so a trial that draws all
defaults trains exactly the model ``zoo train`` would train. A space can be
printed (:meth:`ZooHyperModel.describe`), narrowed (:meth:`ZooHyperModel.set`)
and fixed (:meth:`ZooHyperModel.fix`)::

    hm = ResNetHyperModel(input_shape=(32, 32, 3), num_classes=10)
    hm.fix("depth", 18).set("lr", (1e-4, 1e-2)).set("batch_size", [64, 128])
    print(hm.describe())

Narrowing rules (the same for ``--set name=...`` on the command line):

- one value (``lr=1e-3``, or a scalar in Python) fixes the hyperparameter;
- a comma list (``depth=18,34``; a Python list) makes it a choice of those values;
- ``lo:hi`` (a Python 2-tuple) narrows a float or integer range, keeping its
  sampling (log for the learning rate); on a numeric choice it keeps the
  choices inside ``[lo, hi]``.

Choices that name builder options (ResNet depth, LeNet variant, pooling, U-Net
upsampling) accept only their listed values, the optimizer any of ``zoo train``'s
(adamw, nadam and adagrad too); numbers accept any value in their valid range
(learning rate > 0, dropout in [0, 1), ...).
"""

from __future__ import annotations

import contextlib
import math
import weakref

import keras
import keras_tuner as kt

from tuning.assignments import ALIASES, check_set_fix, family_of, parse_assignments  # noqa: F401
from tuning.spaces import (ARCHITECTURES, HEAD, Param, apply_assignments, check_alias_depth,
                           check_space_image_size, clean_float, param_of, space)

__all__ = [
    "Param", "ZooHyperModel", "LeNet5HyperModel", "AlexNetHyperModel", "GoogLeNetHyperModel",
    "InceptionV3HyperModel", "XceptionHyperModel", "ResNetHyperModel", "UNetHyperModel",
    "HYPERMODELS", "get_hypermodel", "parse_assignments", "check_set_fix", "augment_dataset",
    "rebatch", "clean_float", "clean_value",
]

def clean_value(hp, value):
    """``value`` of the keras-tuner hyperparameter ``hp`` as :func:`clean_float` gives it
    for a stepped ``Float``; any other value as it is."""
    if isinstance(hp, kt.engine.hyperparameters.Float):
        return clean_float(value, hp.step, hp.min_value, hp.sampling)
    return value


# -- data helpers used in fit --------------------------------------------------------------

def _is_batched(dataset) -> bool:
    import tensorflow as tf
    spec = dataset.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    return isinstance(first, tf.TensorSpec) and first.shape.rank == 4


_NUM_EXAMPLES = weakref.WeakKeyDictionary()


def set_num_examples(dataset, num_examples: int):
    """Record that the batched ``dataset`` holds ``num_examples`` examples, so that
    :func:`rebatch` can give the rebatched dataset its length: unbatching loses it, and
    ``model.fit`` on a dataset of unknown length warns "Your input ran out of data" at the
    end of its first epoch. Returns ``dataset``."""
    _NUM_EXAMPLES[dataset] = int(num_examples)
    return dataset


def rebatch(dataset, batch_size: int):
    """``dataset`` batched by ``batch_size``: an already batched dataset is
    unbatched first (``model.fit`` ignores ``batch_size=`` for datasets). The result
    keeps a known length: ``dataset``'s own where it is unbatched, else the number of
    examples recorded with :func:`set_num_examples`.

    Args:
        dataset: a ``tf.data.Dataset``, batched or not.
        batch_size: the new batch size.

    Returns:
        The re-batched, prefetching dataset.

    Raises:
        ValueError: ``dataset`` is no ``tf.data.Dataset``, or ``batch_size`` no integer
            >= 1.
    """
    import tensorflow as tf

    from zoo import common
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"rebatch: dataset must be a tf.data.Dataset. "
                         f"Received: dataset={common.received_text(dataset)}")
    batch_size = common.check_int("rebatch", "batch_size", batch_size, 1)
    num_examples = None
    if _is_batched(dataset):
        num_examples = _NUM_EXAMPLES.get(dataset)
        dataset = dataset.unbatch()
    out = dataset.batch(batch_size)
    if num_examples:
        out = out.apply(tf.data.experimental.assert_cardinality(-(-num_examples // batch_size)))
    return out.prefetch(tf.data.AUTOTUNE)


# Used when a HyperModel knows nothing about its data: geometric only, no flips.
GENERIC_AUGMENTATION = dict(flip=None, rotation=0.03, zoom=0.1, translation=0.1, contrast=0.0,
                            fill_mode="nearest")
_SCALED = ("rotation", "zoom", "translation", "contrast")


def _scaled_setting(key, value, strength):
    """An augmentation setting (:data:`_SCALED`) times ``strength``: a number capped at 1; a
    pair ``(low, high)`` bound by bound, kept in the setting's range (contrast 0 to 1, the
    others -1 to 1; a zoom pair's low bound above -1, which Keras refuses). A pair was a
    ``TypeError`` (a list times a float)."""
    import math
    if not isinstance(value, (list, tuple)):
        return min(1.0, value * strength) if value else value
    low = 0.0 if key == "contrast" else -1.0
    if key == "zoom":
        low = math.nextafter(-1.0, 0.0)
    return [min(1.0, max(low, float(v) * strength)) for v in value]


def augment_dataset(dataset, strength: float, *, info=None, settings=None, seed: int = 0,
                    ignore_label=None):
    """Augment a batched ``(images, targets)`` dataset of normalised images.

    The dataset's own augmentation (``zoo.data.augmenter`` with ``settings``,
    e.g. no flips for digits) is scaled by ``strength``: rotation, zoom,
    translation and contrast are multiplied by it, so 1 is the augmentation
    ``zoo train --augment`` uses and 0 is none. Images are taken back to raw
    pixels (``info.mean``/``info.std``), augmented, and normalised again;
    segmentation masks move with their images, and the pixels a rotation, zoom or
    translation adds (``fill_mode="constant"``) get the masks' ignore label, not class 0.

    Args:
        dataset: batched ``tf.data.Dataset`` of normalised images and labels/masks.
        strength: multiplier (``0`` returns ``dataset`` unchanged).
        info: the data's ``zoo.data.DatasetInfo`` (``None``: images are taken as raw).
        settings: ``zoo.data.augmenter`` settings; default: ``info.augmentation`` or
            :data:`GENERIC_AUGMENTATION`.
        seed: seed of the random layers.
        ignore_label: the masks' ignore label (``zoo.data.augmenter``); default:
            ``info.ignore_label``.

    Returns:
        The augmented dataset (``dataset`` itself for ``strength`` 0).

    Raises:
        ValueError: ``strength`` is no finite number >= 0.
    """
    from zoo import common
    strength = common.check_number("augment_dataset", "strength", strength, minimum=0)
    if not strength:
        return dataset
    import numpy as np
    import tensorflow as tf

    from zoo.data import augmenter
    settings = dict(settings or getattr(info, "augmentation", None) or GENERIC_AUGMENTATION)
    scaled = {k: (_scaled_setting(k, v, strength) if k in _SCALED and v is not None else v)
              for k, v in settings.items()}
    raw_range = tuple(info.raw_range) if info is not None else (-1e9, 1e9)
    if ignore_label is None:
        ignore_label = getattr(info, "ignore_label", None)
    aug = augmenter(scaled, raw_range=raw_range, seed=seed, ignore_label=ignore_label)
    mean = np.asarray(info.mean if info is not None else [0.0], "float32")
    std = np.asarray(info.std if info is not None else [1.0], "float32")
    segmentation = info is not None and info.task == "segmentation"

    def apply(x, y):
        raw = x * std + mean
        if segmentation:
            raw, y = aug(raw, y)
        else:
            raw = aug(raw)
        return (raw - mean) / std, y

    return dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


class FailOnNaN(keras.callbacks.Callback):
    """Stop a trial whose loss is NaN or infinite by raising
    ``keras_tuner.errors.FailedTrialError`` (the trial is recorded as failed
    and the search goes on)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise kt.errors.FailedTrialError(
                f"loss became {float(loss)} at batch {batch} of epoch {self.epoch + 1}")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


# -- the HyperModels ---------------------------------------------------------------------

class ZooHyperModel(kt.HyperModel):
    """A search space over one zoo family (architecture + training choices).

    Subclasses set ``family`` (the name ``zoo tune`` takes), ``builder`` (the
    registry name of the builder), ``task`` and ``ARCHITECTURE`` (their
    :class:`Param` entries); the training entries are shared.

    Args:
        input_shape: the model input ``(H, W, C)``; default: ``info``'s, else the builder's.
        num_classes: number of classes; default: ``info``'s, else the builder's.
        info: the training data's ``zoo.data.DatasetInfo`` (normalisation and
            augmentation settings for the ``augment`` hyperparameter).
        augmentation: ``zoo.data.augmenter`` settings that ``augment`` scales
            (default: ``info.augmentation``, else geometric only).
        set: ``{name: spec}`` narrowing entries (see the module docstring).
        fix: ``{name: value}`` fixing entries.
        jit_compile: compile the train step with XLA (``zoo.train.compile_model``; off by
            default, as in ``tuning.search``: on short trials the compilation takes longer
            than it saves).
        mixed_precision: the dtype policy the models are built under
            (``"mixed_bfloat16"``, ``"mixed_float16"``) or ``None`` (float32); variables and
            output layers stay float32, as in ``zoo.train.fit``. ``tuning.search`` sets it
            from its ``mixed_precision`` argument (``zoo.train.resolve_mixed_precision``).
        seed: seed of the augmentation layers.
        ignore_label: segmentation: the mask value of pixels that count in no loss and no
            metric (``zoo.train.compile_model``'s ``ignore_label``; augmentation fills with
            it); default: ``info.ignore_label``, else ``None`` (every pixel counts).
            ``tuning.search`` sets it from its data.
        name: the HyperModel's name (default: ``family``).

    Raises:
        ValueError: an unknown hyperparameter name (the message lists the known
            ones), one given to both ``set`` and ``fix``, or a value the hyperparameter does
            not allow; an ``ignore_label`` that is no integer from 0 to 65535, differs
            from ``info.ignore_label`` or is given to a classifier; any other argument of the wrong kind or range
            (``num_classes=0``, ``jit_compile="no"``, an ``info`` that is no
            ``zoo.data.DatasetInfo``, ...).

    Example:
        >>> import keras_tuner
        >>> hm = LeNet5HyperModel(fix={"variant": "modern"}, set={"lr": "1e-3:1e-2"})
        >>> model = hm.build(keras_tuner.HyperParameters())
    """

    family: str = ""
    builder: str = ""
    task: str = "classification"
    ARCHITECTURE: tuple = ()

    def __init__(self, input_shape=None, num_classes=None, *, info=None, augmentation=None,
                 set=None, fix=None, jit_compile=False, mixed_precision=None, seed=0,
                 ignore_label=None, name=None):
        from zoo import common
        from zoo.common import check_ignore_label
        from zoo.data import DatasetInfo, check_augment_settings
        from zoo.registry import model_info
        owner = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{owner}: name must be a non-empty string or None. "
                             f"Received: name={name!r}")
        super().__init__(name=name or self.family)
        if info is not None and not isinstance(info, DatasetInfo):
            raise ValueError(f"{owner}: info must be a zoo.data.DatasetInfo or None. "
                             f"Received: info={common.received_text(info)}")
        if input_shape is not None:
            input_shape = common.resolve_input_shape(owner, input_shape, (), 1)
        if num_classes is not None:
            num_classes = common.check_int(owner, "num_classes", num_classes, 1)
        if augmentation is not None:
            augmentation = check_augment_settings(augmentation)
        jit_compile = common.check_jit_compile(jit_compile, owner)
        if mixed_precision not in (None, "mixed_bfloat16", "mixed_float16"):
            raise ValueError(f"{owner}: mixed_precision must be None (float32), "
                             f"'mixed_bfloat16' or 'mixed_float16'. "
                             f"Received: mixed_precision={mixed_precision!r}")
        seed = common.check_seed(seed)
        check_set_fix(set, fix)   # (one given to both: fix won silently)
        ignore_label = check_ignore_label(ignore_label)
        if ignore_label is not None and self.task != "segmentation":
            # (the trials' compile_model refused it, each trial failing in the search)
            raise ValueError(f"{owner}: ignore_label is for segmentation (a mask value to "
                             f"leave out); {self.family} is a {self.task} model. Received: "
                             f"ignore_label={ignore_label}")
        declared = getattr(info, "ignore_label", None)
        if ignore_label is None:
            ignore_label = declared
        elif declared is not None and declared != ignore_label:
            raise ValueError(f"ignore_label must be None or the data's ignore label, "
                             f"info.ignore_label={declared}. Received: "
                             f"ignore_label={ignore_label}")
        defaults = model_info(self.builder)
        default_shape = input_shape is None and info is None
        if input_shape is None:
            input_shape = info.input_shape if info is not None else defaults.default_input_shape
        if num_classes is None:
            num_classes = info.num_classes if info is not None else \
                defaults.default_num_classes
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.info = info
        self.augmentation = augmentation
        self.jit_compile = jit_compile
        self.mixed_precision = mixed_precision
        self.seed = seed
        self.ignore_label = ignore_label
        self.grid = False  # set by tuning.search for the grid tuner (finite ranges)
        self.params = apply_assignments(space(self.ARCHITECTURE, self.task), self.family,
                                        set, fix)
        if default_shape:
            self.input_shape = self.fit_default_shape(self.input_shape)

    # -- the space -----------------------------------------------------------------------
    def _param(self, name) -> Param:
        return param_of(self.params, self.family, name)

    def set(self, name: str, spec) -> "ZooHyperModel":
        """Narrow hyperparameter ``name`` to ``spec`` (as ``--set name=spec``).

        Args:
            name: a hyperparameter of the space.
            spec: the narrowed range or choices (see the module docstring).

        Returns:
            ``self``.

        Raises:
            ValueError: an unknown name or a spec the hyperparameter does not allow.
        """
        self.params[name] = self._param(name).narrowed(spec)
        return self

    def fix(self, name: str, value) -> "ZooHyperModel":
        """Fix hyperparameter ``name`` to ``value`` (``hp.Fixed``).

        Args:
            name: a hyperparameter of the space.
            value: the value, or its text form.

        Returns:
            ``self``.

        Raises:
            ValueError: an unknown name or a value the hyperparameter does not allow.
        """
        self.params[name] = self._param(name).fixed(value)
        return self

    def defaults(self) -> dict:
        """``{name: default}`` for every hyperparameter."""
        return {p.name: p.default for p in self.params.values()}

    def describe(self):
        """The space as a ``pandas.DataFrame`` (name, group, type, values,
        default, builder argument, description)."""
        import pandas as pd
        return pd.DataFrame.from_records([p.describe() for p in self.params.values()])

    def space_config(self) -> list:
        """JSON-serialisable description of the space (used to fingerprint a search)."""
        return [{k: v for k, v in p.describe().items() if k != "description"}
                for p in self.params.values() if not p.silent()] + [
            {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
             "task": self.task, "family": self.family, "grid": self.grid}]

    def declare_hyperparameters(self, hp):
        """Declare every hyperparameter of the space on ``hp``."""
        self.values(hp)

    def values(self, hp) -> dict:
        """Declare every hyperparameter on ``hp``; return ``{name: value}``."""
        return {p.name: p.default if p.silent() else p.declare(hp, self.grid)
                for p in self.params.values()}

    def declared_names(self) -> list:
        """The names of the hyperparameters a trial declares, in the space's order (those
        fixed to their ``off`` value are not: :attr:`Param.off`)."""
        return [p.name for p in self.params.values() if not p.silent()]

    def model_names(self) -> tuple:
        """The registry names of the models the space builds (``mixed_precision="auto"``
        weighs them: ``zoo.train.resolve_mixed_precision``)."""
        return (self.builder,)

    # -- building --------------------------------------------------------------------------
    def build(self, hp):
        """Build the zoo model for ``hp`` and compile it with ``zoo.train.compile_model``
        (a segmentation model's loss and metrics leave out the pixels labelled
        ``ignore_label``).

        Args:
            hp: the trial's ``keras_tuner.HyperParameters``.

        Returns:
            The compiled ``keras.Model``.
        """
        from zoo.train import compile_model, set_batch_norm_momentum
        values = self.values(hp)
        model = self.build_model(values)
        if self.mixed_precision:
            from zoo.train import _rebuild
            model = _rebuild(model, self.mixed_precision)
        # As zoo.train.fit: moving statistics that keep up with short trials.
        set_batch_norm_momentum(model, "auto")
        return compile_model(
            model, self.task, optimizer=values["optimizer"], learning_rate=values["lr"],
            label_smoothing=values.get("label_smoothing", 0.0),
            # 0 is no decay for every optimizer (adamw's None would be Keras' default, 0.004)
            weight_decay=values["weight_decay"], clip_norm=values["clip_norm"] or None,
            num_classes=self.num_classes,
            jit_compile=self.jit_compile, ignore_label=self.ignore_label)

    def builder_kwargs(self, values) -> dict:
        """The builder's family options taken from ``values``."""
        return {p.arg: values[p.name] for p in self.params.values()
                if p.group == "architecture" and p.arg}

    def min_input_size(self) -> int:
        """Smallest input height/width the family's builder accepts."""
        from zoo.registry import model_info
        return model_info(self.builder).min_input_size

    def fit_default_shape(self, shape) -> tuple:
        """The input shape a hypermodel made without ``input_shape`` or ``info`` builds at,
        from the builder's default ``shape`` (the paper's)."""
        return tuple(shape)

    def check_input_shape(self, input_shape):
        """Raise a ``ValueError`` unless every point of the space builds at ``input_shape``
        (checked before a search starts, so that no trial fails for its size): the rule
        ``zoo tune`` checks before its imports, :func:`tuning.spaces.check_space_image_size`
        (U-Net, same padding: a multiple of ``2**depth`` for each depth of the space)."""
        check_space_image_size(self.family, self.params, input_shape)

    def build_model(self, values):
        """The uncompiled model for hyperparameter ``values``."""
        from zoo.registry import get_builder
        return get_builder(self.builder)(input_shape=self.input_shape,
                                         num_classes=self.num_classes,
                                         **self.builder_kwargs(values))

    # -- training --------------------------------------------------------------------------
    def fit(self, hp, model, x=None, *args, validation_data=None, **kwargs):
        """Re-batch and augment the training data per ``hp``, then ``model.fit``.

        ``kwargs`` (the tuner's callbacks, Hyperband's ``epochs`` and
        ``initial_epoch``, ...) are passed on to ``model.fit``; a callback that
        fails the trial on a NaN loss is added.

        Args:
            hp: the trial's ``keras_tuner.HyperParameters``.
            model: the model :meth:`build` returned.
            x: the training ``tf.data.Dataset`` of normalised images and targets.
            *args: passed on to ``model.fit``.
            validation_data: the validation dataset, passed on with its labels checked.
            **kwargs: passed on to ``model.fit`` (``batch_size`` is dropped: the
                data is batched by the ``batch_size`` hyperparameter).

        Returns:
            The ``keras.callbacks.History`` of ``model.fit``.

        Raises:
            keras_tuner.errors.FatalValueError: a label (mask value) outside the model's
                ``0..num_classes-1`` that is not the ignore label, in either dataset (one
                line, as ``zoo.train.fit`` says it), or an image of a folder dataset that
                cannot be decoded (the files named); it ends the search, since every trial
                would fail on it.
        """
        import tensorflow as tf

        from zoo.train import (_label_guard, _num_outputs, label_errors_as,
                               quiet_unknown_length)
        values = self.values(hp)
        kwargs.pop("batch_size", None)
        # as zoo.train.fit: a label (mask value) the model has no output for, and that is
        # not the ignore label, stops with one line instead of TensorFlow's error
        k = _num_outputs(model)
        x = _label_guard(rebatch(x, values["batch_size"]), k, self.task, self.ignore_label)
        x = augment_dataset(x, values["augment"], info=self.info, settings=self.augmentation,
                            seed=self.seed, ignore_label=self.ignore_label)
        if isinstance(validation_data, tf.data.Dataset):
            validation_data = _label_guard(validation_data, k, self.task, self.ignore_label)
        callbacks = list(kwargs.pop("callbacks", None) or []) + [FailOnNaN()]
        schedule = values.get("lr_schedule", "constant")
        if schedule == "cosine":
            from zoo.train import cosine_schedule
            callbacks.append(cosine_schedule(values["lr"], int(kwargs.get("epochs", 1))))
        elif schedule == "plateau":
            # As zoo train's: divided by 10 after 3 epochs without a lower validation loss
            # (zoo train's default --monitor), at most 3 times.
            from zoo.train import PlateauSchedule
            callbacks.append(PlateauSchedule("val_loss" if validation_data is not None
                                             else "loss", "min", values["lr"]))
        from zoo.train import StopWhenInterrupted
        callbacks = [*callbacks, StopWhenInterrupted()]
        kwargs.setdefault("shuffle", False)   # the pipeline shuffles; Keras would warn
        # Data of unknown length (a Splits passed in, which rebatching cannot count): no
        # "ran out of data" warning at the end of every trial's first epoch.
        quiet = (quiet_unknown_length(x, validation_data)
                 if "steps_per_epoch" not in kwargs and "validation_steps" not in kwargs
                 else contextlib.nullcontext())
        # A label outside the classes, or an image that cannot be decoded, is the data's
        # fault, not the trial's: every trial would fail alike, so the search ends.
        with label_errors_as(kt.errors.FatalValueError, getattr(self.info, "name", None)), quiet:
            return model.fit(x, *args, validation_data=validation_data, callbacks=callbacks,
                             **kwargs)


class LeNet5HyperModel(ZooHyperModel):
    """LeNet-5 (``zoo.lenet5``): the paper's network or the modern simplification."""

    family = "lenet5"
    builder = "lenet5"
    ARCHITECTURE = ARCHITECTURES["lenet5"]


class AlexNetHyperModel(ZooHyperModel):
    """AlexNet (``zoo.alexnet``): local response normalisation and dropout."""

    family = "alexnet"
    builder = "alexnet"
    ARCHITECTURE = ARCHITECTURES["alexnet"]


class _GlobalPoolHyperModel(ZooHyperModel):
    """A family whose classifier is global pooling + dense (GoogLeNet,
    Inception-v3, Xception, ResNet).

    With ``pooling="avg"`` and no dropout (the defaults) the builder's own
    model is built (``include_top=True``); so it is for any dropout when the
    builder takes a ``dropout`` argument (GoogLeNet). Otherwise the builder gives
    the pooled features (``include_top=False, pooling=...``) and the HyperModel
    adds dropout (``head_dropout``) and the dense softmax classifier (``predictions``).
    """

    ARCHITECTURE = HEAD

    def build_model(self, values):
        from keras import layers

        from zoo.registry import get_builder
        builder = get_builder(self.builder_name(values))
        kwargs = self.builder_kwargs(values)
        pooling, dropout = values["pooling"], values["dropout"]
        if pooling == "avg" and (not dropout or "dropout" in kwargs):
            return builder(input_shape=self.input_shape, num_classes=self.num_classes, **kwargs)
        kwargs.pop("dropout", None)
        base = builder(input_shape=self.input_shape, include_top=False, pooling=pooling, **kwargs)
        x = base.output
        if dropout:
            x = layers.Dropout(dropout, name="head_dropout")(x)
        outputs = layers.Dense(self.num_classes, activation="softmax", name="predictions")(x)
        return keras.Model(base.input, outputs, name=base.name)

    def builder_name(self, values) -> str:
        """The registry name of the builder for hyperparameter ``values``."""
        return self.builder


class GoogLeNetHyperModel(_GlobalPoolHyperModel):
    """GoogLeNet (``zoo.googlenet``), Inception-v1: batch norm, LRN, pooling, dropout
    (the builder's own dropout before the classifier, 0.4 as in the paper)."""

    family = "googlenet"
    builder = "googlenet"
    ARCHITECTURE = ARCHITECTURES["googlenet"]


class InceptionV3HyperModel(_GlobalPoolHyperModel):
    """Inception-v3 (``zoo.inception_v3``)."""

    family = "inception_v3"
    builder = "inception_v3"


class XceptionHyperModel(_GlobalPoolHyperModel):
    """Xception (``zoo.xception``)."""

    family = "xception"
    builder = "xception"


class ResNetHyperModel(_GlobalPoolHyperModel):
    """ResNet v1 at depth 18, 34 or 50 (``zoo.resnet18`` / ``resnet34`` / ``resnet50``)."""

    family = "resnet"
    builder = "resnet50"
    ARCHITECTURE = ARCHITECTURES["resnet"]

    def builder_name(self, values) -> str:
        return f"resnet{values['depth']}"

    def model_names(self) -> tuple:
        return tuple(f"resnet{int(d)}" for d in self.params["depth"].choices())


class UNetHyperModel(ZooHyperModel):
    """U-Net (``zoo.unet``) for segmentation: depth, base filters, batch norm,
    upsampling and dropout.

    The model is built with ``padding="same"`` so that the predicted mask has
    the size of the image (and of the dataset's masks); the input size must then
    be a multiple of ``2**depth``.
    """

    family = "unet"
    builder = "unet"
    task = "segmentation"
    ARCHITECTURE = ARCHITECTURES["unet"]

    def min_input_size(self) -> int:
        return 2 ** max(self.params["depth"].choices())

    def fit_default_shape(self, shape) -> tuple:
        """The paper's 572x572 (unpadded convolutions) raised to the next multiple of
        ``2**depth`` for the deepest depth of the space (576 for depth 5), which same padding
        needs: 572 built no point of the space."""
        step = self.min_input_size()
        return tuple(-(-int(v) // step) * step for v in shape[:2]) + tuple(shape[2:])

    def build_model(self, values):
        from zoo.registry import get_builder
        return get_builder(self.builder)(input_shape=self.input_shape,
                                         num_classes=self.num_classes, padding="same",
                                         **self.builder_kwargs(values))


HYPERMODELS = {cls.family: cls for cls in (
    LeNet5HyperModel, AlexNetHyperModel, GoogLeNetHyperModel, InceptionV3HyperModel,
    XceptionHyperModel, ResNetHyperModel, UNetHyperModel)}


def get_hypermodel(name: str, **kwargs) -> ZooHyperModel:
    """The HyperModel for a family name (``resnet``, ``lenet5``, ...) or a builder
    name with a fixed depth (``resnet34`` = ``resnet`` with ``depth`` fixed to 34).

    Args:
        name: a key of :data:`HYPERMODELS`, or ``resnet18``/``resnet34``/``resnet50``.
        **kwargs: :class:`ZooHyperModel` arguments.

    Raises:
        ValueError: an unknown name (the message lists the known ones); a hyperparameter
            given to both ``set`` and ``fix``.
    """
    check_set_fix(kwargs.get("set"), kwargs.get("fix"))
    fix = dict(kwargs.pop("fix", None) or {})
    # A fixed depth is checked by the family's space first (its text form, "34", is 34; a
    # value it does not allow is refused as for "resnet": was int()'s "invalid literal for
    # int() with base 10: 'abc'", and 34.5 passed as 34).
    hypermodel = HYPERMODELS[family_of(name)](fix=fix, **kwargs)
    depth = check_alias_depth(name, hypermodel.params, fix)
    if depth is None:
        return hypermodel
    # The alias's own depth, after set: narrowing depth stays allowed (the constructor
    # refuses a name given to both set and fix).
    return hypermodel.fix("depth", depth)
