"""The few custom layers the classic papers need; all serialisable.

- :class:`Subsampling`: LeNet-5's S2/S4 (sum of a 2x2 window times one trainable
  coefficient per map, plus one trainable bias per map).
- :class:`PartialConv2D`: LeNet-5's C3, a convolution in which each output map
  sees only a subset of the input maps (the 1998 paper's Table I).
- :class:`RBFOutput`: LeNet-5's output layer of Euclidean radial basis units,
  returning negative squared distances so they can be used as logits.
- :class:`LocalResponseNormalization`: AlexNet's LRN across channels.
- :class:`BatchNormalization`: ``keras.layers.BatchNormalization`` computed with
  TensorFlow's fused kernel where it applies (same weights, same results, faster).
- :class:`Conv2D`: ``keras.layers.Conv2D`` whose 1x1 stride-1 convolutions, trained in
  bfloat16, take their kernel gradient from a matmul (same weights, same results, faster).
- :class:`FoldedBatchNormalization`: the identity left where ``zoo.export.fold_batch_norm``
  folded a batch norm into its convolution.
"""

from __future__ import annotations

import functools

import numpy as np
import keras
from keras import ops

from zoo import common

_PACKAGE = "zoo"

__all__ = ["Subsampling", "PartialConv2D", "RBFOutput", "LocalResponseNormalization",
           "BatchNormalization", "FoldedBatchNormalization", "Conv2D", "SeparableConv2D",
           "LENET5_C3_CONNECTIONS"]

# LeCun et al. 1998, Table I: which S2 maps (rows 0-5) feed each C3 map (0-15).
LENET5_C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def _check_window(layer, name, size, input_shape) -> None:
    """A square unpadded window of ``size`` must fit in the input's height and width."""
    hw = tuple(input_shape[1:3]) if len(input_shape) == 4 else ()
    if len(input_shape) != 4 or any(d is not None and d < size for d in hw):
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: its {size}x{size} window "
                         f"({name}={size}) needs 4-D input (batch, height, width, channels) "
                         f"of height and width >= {size}. Received: input_shape="
                         f"{tuple(input_shape)}")


def _check_connections(connections) -> tuple:
    """``PartialConv2D``'s connections: for each output map, a non-empty sequence of input
    map indices (integers >= 0)."""
    def fail():
        raise ValueError(f"PartialConv2D: connections must be a non-empty sequence, for each "
                         f"output map, of the input maps it sees (non-empty sequences of "
                         f"integers >= 0, e.g. ((0, 1, 2), (1, 2, 3))). Received: "
                         f"connections={connections!r}")
    if isinstance(connections, (str, bytes)):
        fail()
    try:
        rows = [list(c) for c in connections]
    except TypeError:
        fail()
    if not rows or any(not row or not all(common.is_integer(i) and i >= 0 for i in row)
                       for row in rows):
        fail()
    return tuple(tuple(int(i) for i in row) for row in rows)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Subsampling(keras.layers.Layer):
    """LeNet-5 subsampling: ``coef * sum(window) + bias`` per feature map.

    Args:
        pool_size: window size (square), also the stride.
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = common.check_int("Subsampling", "pool_size", pool_size, 1)

    def build(self, input_shape):
        _check_window(self, "pool_size", self.pool_size, input_shape)
        channels = input_shape[-1]
        self.coefficient = self.add_weight(name="coefficient", shape=(channels,),
                                           initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        p = self.pool_size
        pooled = ops.average_pool(inputs, pool_size=p, strides=p, padding="valid")
        return pooled * float(p * p) * self.coefficient + self.bias

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        p = self.pool_size
        return (b, None if h is None else h // p, None if w is None else w // p, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PartialConv2D(keras.layers.Layer):
    """A valid convolution whose output map ``j`` only sees input maps
    ``connections[j]``. Only the connected kernels are parameters.

    Args:
        connections: for each output map, the tuple of input maps it sees.
        kernel_size: square kernel size.
        activation: activation applied to the result (``None`` for linear).
    """

    def __init__(self, connections, kernel_size=5, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.connections = _check_connections(connections)
        self.kernel_size = common.check_int("PartialConv2D", "kernel_size", kernel_size, 1)
        self.activation = common.activation("PartialConv2D", "activation", activation)
        self.filters = len(self.connections)

    def build(self, input_shape):
        _check_window(self, "kernel_size", self.kernel_size, input_shape)
        in_maps = int(input_shape[-1])
        needed = max(max(c) for c in self.connections) + 1
        if in_maps < needed:
            raise ValueError(f"PartialConv2D needs at least {needed} input maps. "
                             f"Received: {in_maps}")
        pairs = [(i, j) for j, conn in enumerate(self.connections) for i in conn]
        # One-hot matrix scattering the connected kernels into a dense kernel.
        scatter = np.zeros((len(pairs), in_maps * self.filters), dtype="float32")
        for n, (i, j) in enumerate(pairs):
            scatter[n, i * self.filters + j] = 1.0
        self._scatter = scatter
        self._in_maps = in_maps
        k = self.kernel_size
        fan_in = k * k * len(pairs) / self.filters
        limit = float(np.sqrt(6.0 / (fan_in + k * k)))
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, len(pairs)),
            initializer=keras.initializers.RandomUniform(-limit, limit))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def dense_kernel(self):
        """The equivalent ``(k, k, in_maps, filters)`` kernel (zeros where unconnected)."""
        k = self.kernel_size
        scatter = ops.convert_to_tensor(self._scatter, dtype=self.kernel.dtype)
        flat = ops.matmul(ops.reshape(self.kernel, (k * k, -1)), scatter)
        return ops.reshape(flat, (k, k, self._in_maps, self.filters))

    def call(self, inputs):
        kernel = ops.cast(self.dense_kernel(), inputs.dtype)
        x = ops.conv(inputs, kernel, strides=1, padding="valid")
        x = x + ops.cast(self.bias, inputs.dtype)
        return self.activation(x) if self.activation is not None else x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        k = self.kernel_size
        return (b, None if h is None else h - k + 1, None if w is None else w - k + 1,
                self.filters)

    def get_config(self):
        return {**super().get_config(), "connections": [list(c) for c in self.connections],
                "kernel_size": self.kernel_size,
                "activation": keras.activations.serialize(self.activation)
                if self.activation is not None else None}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RBFOutput(keras.layers.Layer):
    """Euclidean radial basis output units (LeNet-5's output layer).

    Unit ``k`` computes the squared distance between its input vector and its
    parameter vector ``c_k``; the layer returns ``-distance`` so the result
    works as logits (the largest logit is the nearest prototype), optionally
    followed by ``activation`` (e.g. softmax).

    As in the paper, the parameter vectors are fixed ``+1/-1`` codes (chosen
    once, deterministically from ``seed``) and are not trained, unless
    ``trainable_centers=True``.

    Args:
        units: number of classes.
        activation: applied to the negative distances (``None`` = logits).
        trainable_centers: learn the parameter vectors too.
        seed: seed of the fixed +1/-1 codes.
    """

    def __init__(self, units, activation=None, trainable_centers=False, seed=1998, **kwargs):
        super().__init__(**kwargs)
        self.units = common.check_int("RBFOutput", "units", units, 1)
        self.activation = common.activation("RBFOutput", "activation", activation)
        common.check_bool("RBFOutput", trainable_centers=trainable_centers)
        self.trainable_centers = trainable_centers
        self.seed = common.check_int("RBFOutput", "seed", seed, 0, common.MAX_SEED)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        codes = np.random.RandomState(self.seed).choice([-1.0, 1.0], size=(dim, self.units))
        self.centers = self.add_weight(
            name="centers", shape=(dim, self.units),
            initializer=keras.initializers.Constant(codes.astype("float32")),
            trainable=self.trainable_centers)

    def call(self, inputs):
        c = ops.cast(self.centers, inputs.dtype)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2
        dist = (ops.sum(ops.square(inputs), axis=-1, keepdims=True)
                - 2.0 * ops.matmul(inputs, c)
                + ops.sum(ops.square(c), axis=0, keepdims=True))
        logits = -dist
        return self.activation(logits) if self.activation is not None else logits

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)
                if self.activation is not None else None,
                "trainable_centers": self.trainable_centers, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012):
    ``x / (bias + alpha * sum_{|c'-c| <= depth_radius} x_{c'}^2) ** beta``
    (the ``tf.nn.local_response_normalization`` convention).

    The defaults are those of AlexNet's layer table source (Géron's Keras example: radius 2,
    bias 1, alpha 2e-5, beta 0.75), which are Caffe's reference AlexNet (k=1 and alpha/n =
    1e-4/5 per square). The paper's own constants (k=2, n=5, alpha=1e-4 on the sum, beta 0.75)
    are ``LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)``.

    Args:
        depth_radius: half-width of the channel window.
        bias: the additive constant.
        alpha: the scale of the sum of squares.
        beta: the exponent.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).
    """

    def __init__(self, depth_radius=2, bias=1.0, alpha=0.00002, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        owner = "LocalResponseNormalization"
        self.depth_radius = common.check_int(owner, "depth_radius", depth_radius, 0)
        # bias > 0 and alpha >= 0 keep the base of the power positive (no inf, no NaN)
        self.bias = common.check_number(owner, "bias", bias, above=0)
        self.alpha = common.check_number(owner, "alpha", alpha, minimum=0)
        self.beta = common.check_number(owner, "beta", beta)

    def call(self, inputs):
        r = self.depth_radius
        squared = ops.square(inputs)
        # Sum over a window of 2r+1 channels: pad the channel axis and add shifts.
        padded = ops.pad(squared, [[0, 0], [0, 0], [0, 0], [r, r]])
        channels = ops.shape(inputs)[-1]
        total = padded[..., 0:channels]
        for shift in range(1, 2 * r + 1):
            total = total + padded[..., shift:shift + channels]
        return inputs / ops.power(self.bias + self.alpha * total, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that uses TensorFlow's fused kernel.

    Keras 3 computes batch normalisation from separate ops (moments, then
    ``(x - mean) * rsqrt(var + eps) * gamma + beta``), and its gradient is many more.
    On the TensorFlow backend this layer calls ``FusedBatchNormV3`` (one op forward,
    one backward, and a pattern the graph optimiser fuses with the preceding
    convolution) whenever the input is 4-D, normalised over the last axis, without a
    mask, renormalisation or synchronisation, with ``epsilon >= 1.001e-5`` (the fused
    kernel's minimum). Otherwise it runs Keras' own computation. On a CPU, a bfloat16
    input whose channel count is not a multiple of 16 goes to the float32 kernel, which
    oneDNN runs several times faster for such counts (:meth:`_float32_for_bfloat16`); the
    output is bfloat16 either way. Weights, config, moving-statistics update (the biased
    batch variance) and outputs are Keras'; the class name is the same, so layer tables
    and weight files do not change.
    """

    _FUSED_MIN_EPSILON = 1.001e-5

    def _float32_for_bfloat16(self, inputs) -> bool:
        """Whether the fused kernel gets this bfloat16 input as float32: oneDNN's bfloat16
        batch norm is ~7x slower when the channels are not a multiple of 16 (Xception's
        728; benchmarks/README.md, item 28), where float32 is 1.9-3.7x faster than bfloat16."""
        return (keras.backend.standardize_dtype(inputs.dtype) == "bfloat16"
                and inputs.shape[-1] is not None
                and inputs.shape[-1] % _BFLOAT16_BATCH_NORM_CHANNELS != 0
                and bfloat16_batch_norm_slow_for_odd_channels())

    def _can_fuse(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and not getattr(self, "renorm", False)  # Keras >= 3.14 has renorm
                and not self.synchronized
                and self.epsilon >= self._FUSED_MIN_EPSILON
                and keras.backend.standardize_dtype(inputs.dtype)
                in ("float32", "float16", "bfloat16"))

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], "float32")
        beta = self.beta if self.center else tf.zeros([channels], "float32")
        gamma, beta = tf.cast(gamma, "float32"), tf.cast(beta, "float32")
        if self._float32_for_bfloat16(inputs):
            inputs = tf.cast(inputs, "float32")
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC",
                is_training=True)
            # The kernel returns the unbiased (n - 1) batch variance; Keras' moving
            # variance follows the biased one it normalises with.
            n = tf.cast(tf.size(inputs) // channels, "float32")
            variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        return tf.cast(outputs, self.compute_dtype)


#: oneDNN's fast bfloat16 batch-norm kernels need the channel count to be a multiple of this.
_BFLOAT16_BATCH_NORM_CHANNELS = 16


@functools.lru_cache(maxsize=1)
def _tensorflow_on_cpu() -> bool:
    """The TensorFlow backend with no visible GPU: where the CPU kernel choices of
    :func:`bfloat16_batch_norm_slow_for_odd_channels` and
    :func:`matmul_gradients_measured_faster` were measured, and where ``zoo.data`` turns
    tf.data's autotuning off (:func:`zoo.data.autotune_by_default`)."""
    if keras.backend.backend() != "tensorflow":
        return False
    return not common.visible_gpus()


def bfloat16_batch_norm_slow_for_odd_channels() -> bool:
    """Where :class:`BatchNormalization` computes a bfloat16 input whose channels are not a
    multiple of 16 in float32: the TensorFlow backend on a CPU (no visible GPU), where
    oneDNN's kernels were measured (AMD EPYC with AVX512_BF16, batch 16: 728 channels at
    20x20, forward and gradient, 15.8 ms in bfloat16, 2.3 ms with 720 channels, 7.9 ms in
    float32). GPUs keep the bfloat16 kernel."""
    return _tensorflow_on_cpu()


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FoldedBatchNormalization(keras.layers.Layer):
    """An identity standing where ``zoo.export.fold_batch_norm`` folded a batch norm into
    the convolution before it (inference copies only)."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


@functools.lru_cache(maxsize=1)   # it reads /proc/cpuinfo
def matmul_gradients_measured_faster() -> bool:
    """Where :class:`Conv2D` takes 1x1 kernel gradients from matmuls in bfloat16 training:
    the TensorFlow backend on a CPU with AMX-BF16 and no visible GPU, where it was measured
    (ResNet-50 1.085x, Inception-v3 1.095x on an Intel Xeon with AMX). Other machines keep
    Keras' convolution gradients."""
    from zoo.common import cpu_has_amx_bfloat16
    return _tensorflow_on_cpu() and cpu_has_amx_bfloat16()


def _pointwise_conv_bias(inputs, kernel, bias=None):
    """``conv2d(inputs, kernel) + bias`` for a 1x1 stride-1 kernel, whose kernel and bias
    gradients are matmuls over the ``batch * height * width`` positions (the input gradient
    stays the convolution's)."""
    import tensorflow as tf

    @tf.custom_gradient
    def forward(x, w, *b):
        y = tf.nn.conv2d(x, w, 1, "VALID")
        if b:
            y = tf.nn.bias_add(y, b[0])

        def grad(dy):
            cin, cout = w.shape[2], w.shape[3]
            dy2 = tf.reshape(dy, [-1, cout])
            dw = tf.reshape(tf.matmul(tf.reshape(x, [-1, cin]), dy2, transpose_a=True),
                            w.shape)
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w,
                                                out_backprop=dy, strides=[1, 1, 1, 1],
                                                padding="VALID")
            if not b:
                return dx, dw
            # The bias gradient, a sum over positions, as a matmul too: float32
            # accumulation (a bfloat16 sum of many terms loses most of its digits).
            ones = tf.ones([1, tf.shape(dy2)[0]], dy2.dtype)
            return dx, dw, tf.reshape(tf.matmul(ones, dy2), [cout])
        return y, grad

    return forward(inputs, kernel) if bias is None else forward(inputs, kernel, bias)


def _bfloat16_training_here(layer, inputs, training) -> bool:
    """Whether a convolution ``layer`` takes its 1x1 kernel gradients from matmuls
    (:class:`Conv2D`, :class:`SeparableConv2D`): a training call with bfloat16 inputs and
    compute dtype where :func:`matmul_gradients_measured_faster`, channels-last data and a
    linear activation."""
    return (isinstance(training, (bool, np.bool_)) and bool(training)
            and layer.compute_dtype == "bfloat16"
            and matmul_gradients_measured_faster()
            and keras.backend.standardize_dtype(inputs.dtype) == "bfloat16"
            and layer.data_format == "channels_last"
            and layer.activation is keras.activations.linear)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with a faster kernel gradient for 1x1 stride-1 convolutions
    trained in bfloat16.

    On CPUs with AMX, oneDNN's bfloat16 weight-gradient kernel for 1x1 convolutions runs
    no faster than its float32 one (ResNet-50's shapes at batch 16: 2.9-4.8 ms either way),
    while the same product as a bfloat16 matmul takes 1.1-1.7 ms. In training (``training``
    true), where :func:`matmul_gradients_measured_faster` (the TensorFlow backend on a CPU
    with AMX-BF16 and no GPU), with a bfloat16 compute dtype, channels-last data, a
    1x1 kernel, stride 1, no dilation, one group and a linear activation, this layer computes
    the convolution and bias as Keras does but takes the kernel and bias gradients from
    matmuls (:func:`_pointwise_conv_bias`). Everything else -- float32 and float16,
    inference, other kernels -- is Keras' own call. Weights, config and outputs are Keras';
    the class name is the same, so layer tables and weight files do not change.
    """

    def _matmul_gradients(self, inputs, training) -> bool:
        return (_bfloat16_training_here(self, inputs, training) and self.groups == 1
                and tuple(self.kernel_size) == (1, 1) and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1))

    def call(self, inputs, training=None):
        if not self._matmul_gradients(inputs, training):
            return super().call(inputs)
        kernel = ops.cast(self.kernel, self.compute_dtype)
        bias = ops.cast(self.bias, self.compute_dtype) if self.use_bias else None
        return _pointwise_conv_bias(inputs, kernel, bias)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SeparableConv2D(keras.layers.SeparableConv2D):
    """``keras.layers.SeparableConv2D`` whose pointwise (1x1) kernel gradient is a matmul in
    bfloat16 training, as :class:`Conv2D`'s for 1x1 convolutions.

    A separable convolution is a depthwise convolution (which takes the strides and
    dilation) followed by a 1x1 stride-1 pointwise convolution. In training (``training``
    true), where :func:`matmul_gradients_measured_faster`, with a bfloat16 compute dtype,
    channels-last data and a linear activation, the depthwise part is Keras' (TensorFlow's
    depthwise convolution) and the pointwise part and bias are
    :func:`_pointwise_conv_bias`: the same convolution forward and the same input gradient,
    the kernel and bias gradients from matmuls. Xception's separable convolutions spent 30%
    of a bfloat16 training step in oneDNN's 1x1 weight-gradient kernel on an Intel Xeon with
    AMX (benchmarks/README.md, item 32). Everything else is Keras' own call; weights,
    config and outputs are Keras', and the class name is the same.
    """

    def _matmul_gradients(self, inputs, training) -> bool:
        return _bfloat16_training_here(self, inputs, training)

    def call(self, inputs, training=None):
        if not self._matmul_gradients(inputs, training):
            return super().call(inputs)
        depthwise = ops.depthwise_conv(inputs, ops.cast(self.depthwise_kernel,
                                                        self.compute_dtype),
                                       strides=self.strides, padding=self.padding,
                                       data_format=self.data_format,
                                       dilation_rate=self.dilation_rate)
        pointwise = ops.cast(self.pointwise_kernel, self.compute_dtype)
        bias = ops.cast(self.bias, self.compute_dtype) if self.use_bias else None
        return _pointwise_conv_bias(depthwise, pointwise, bias)
