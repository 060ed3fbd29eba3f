"""Adam and AdamW with one fused TensorFlow op per variable update.

Keras 3 updates each variable with about ten separate ops (the moments, the bias
correction, the step), each a pass over the variable's memory and an op dispatch. On the
TensorFlow backend these classes apply the same update with ``ResourceApplyAdam``, one op
per variable, whose formula is Keras' own::

    alpha = lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    m += (g - m) * (1 - beta_1);  v += (g * g - v) * (1 - beta_2)
    variable -= alpha * m / (sqrt(v) + epsilon)

Weight decay (AdamW), gradient clipping, EMA, loss scaling and learning-rate schedules
stay Keras' (they act outside the per-variable update). Where the fused op does not apply
-- another backend, ``amsgrad``, sparse gradients, a ``tf.distribute`` strategy -- Keras'
update runs. Same config and variables as Keras' classes, so checkpoints carry over.
On the 2-core Intel Xeon with AMX: ResNet-50 training 1.05x (bfloat16), LeNet-5 1.04x
(benchmarks/README.md, item 14).
"""

from __future__ import annotations

import keras

_PACKAGE = "zoo"

__all__ = ["Adam", "AdamW"]


def _fusable(optimizer, gradient, variable) -> bool:
    if keras.backend.backend() != "tensorflow" or optimizer.amsgrad:
        return False
    import tensorflow as tf
    if isinstance(gradient, tf.IndexedSlices) or tf.distribute.has_strategy():
        return False
    return keras.backend.standardize_dtype(variable.dtype) in (
        "float16", "bfloat16", "float32", "float64")


class _FusedAdamUpdate:
    """``update_step`` of Adam as one ``ResourceApplyAdam`` (see the module docstring)."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fusable(self, gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype), use_locking=False)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with the fused update (same arguments and results)."""


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with the fused update (same arguments and results)."""
