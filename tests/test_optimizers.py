"""zoo.optimizers: Keras' Adam and AdamW with one fused op per variable update."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from zoo import optimizers
from zoo.train import compile_model, make_optimizer


def _run(optimizer, steps=4, graph=True):
    """Variables and slots after ``steps`` updates with the same gradients (one zero)."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=(3, 4)).astype("float32"), name="w"),
                 keras.Variable(rng.normal(size=(5,)).astype("float32"), name="b")]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in variables]
             for _ in range(steps)]
    if steps > 1:
        grads[1][1][:] = 0.0

    def apply(gs):
        optimizer.apply_gradients(zip(gs, variables))
    if graph:
        apply = tf.function(apply)
    for gs in grads:
        apply([tf.constant(g) for g in gs])
    return [v.numpy() for v in variables] + [v.numpy() for v in optimizer.variables[1:]]


@pytest.mark.parametrize("graph", [True, False])
@pytest.mark.parametrize("make", [
    lambda m: m.Adam(learning_rate=0.01),
    lambda m: m.Adam(learning_rate=keras.optimizers.schedules.CosineDecay(0.01, 10),
                     beta_1=0.8, epsilon=1e-4, clipnorm=1.0),
    lambda m: m.AdamW(learning_rate=0.01, weight_decay=0.05),
    lambda m: m.Adam(learning_rate=0.01, amsgrad=True),       # Keras' own update
], ids=["adam", "schedule-clip", "adamw", "amsgrad"])
def test_fused_update_gives_keras_results(make, graph):
    ours = _run(make(optimizers), graph=graph)
    theirs = _run(make(keras.optimizers), graph=graph)
    assert len(ours) == len(theirs) >= 6
    moved = _run(make(keras.optimizers), steps=0)
    assert not np.allclose(theirs[0], moved[0])          # the updates did something
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def _ops(optimizer):
    variables = [keras.Variable(np.ones((3, 4), "float32")), keras.Variable(np.ones(5, "float32"))]
    optimizer.build(variables)
    fn = tf.function(lambda gs: optimizer.apply_gradients(zip(gs, variables)))
    graph = fn.get_concrete_function([tf.TensorSpec(v.shape) for v in variables]).graph
    return [op.type for op in graph.get_operations()]


def test_one_fused_op_per_variable():
    fused = _ops(optimizers.Adam(0.01))
    assert fused.count("ResourceApplyAdam") == 2
    assert fused.count("AssignSubVariableOp") == 0
    keras_ops = _ops(keras.optimizers.Adam(0.01))
    assert keras_ops.count("ResourceApplyAdam") == 0
    assert keras_ops.count("AssignSubVariableOp") == 2
    assert len(fused) < len(keras_ops)
    assert _ops(optimizers.Adam(0.01, amsgrad=True)).count("ResourceApplyAdam") == 0


def test_named_optimizers_are_the_fused_ones_and_serialise():
    assert type(make_optimizer("adam", 3e-3)) is optimizers.Adam
    adamw = make_optimizer("adamw", 3e-3, weight_decay=1e-4)
    assert type(adamw) is optimizers.AdamW and adamw.weight_decay == pytest.approx(1e-4)
    assert type(make_optimizer("sgd")) is keras.optimizers.SGD
    config = keras.optimizers.serialize(adamw)
    again = keras.optimizers.deserialize(config)
    assert type(again) is optimizers.AdamW
    assert again.get_config() == adamw.get_config()


def test_a_compiled_model_trains_saves_and_loads_with_its_optimizer(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    compile_model(model, learning_rate=0.01)
    assert type(model.optimizer) is optimizers.Adam
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    before = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=20, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0)[0] < before
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is optimizers.Adam
    # (np.asarray: Keras 3.3's variables have no __int__)
    iterations = [int(np.asarray(m.optimizer.iterations)) for m in (loaded, model)]
    assert iterations == [80, 80]
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_update_in_a_compiled_train_step_matches_keras(jit_compile):
    """The same model trained with the fused and Keras' Adam, in Keras' train step (with XLA
    too, the default on GPUs): the same weights."""
    x = np.random.default_rng(2).normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    weights = []
    for adam in (optimizers.Adam, keras.optimizers.Adam):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8)(inputs)))
        model.compile(optimizer=adam(0.01), jit_compile=jit_compile,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    # 12 steps of lr 0.01 through the network: the two updates' rounding grows to 7e-7-8e-7
    # (0.42-0.68 of an atol of 1e-6 for seeds 0-5, a trajectory another CPU may change); a
    # step 0.1% off differs by 1e-4.
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_sparse_gradients_take_keras_update():
    """An embedding's gradient is a ``tf.IndexedSlices``: Keras' update applies it (the fused
    dense op given it would move the moments of every row; 0.18 off after 12 steps)."""
    x = np.random.default_rng(0).integers(0, 5, size=(32, 3))
    y = (x[:, 0] > 2).astype("int32")
    weights = []
    for adam in (optimizers.Adam, keras.optimizers.Adam):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,), dtype="int32"),
                                  keras.layers.Embedding(10, 4), keras.layers.Flatten(),
                                  keras.layers.Dense(2)])
        model.compile(optimizer=adam(0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_the_fused_op_updates_variables_of_every_float_dtype(dtype):
    """One ResourceApplyAdam for a float16, bfloat16 or float64 variable too, with Keras'
    results (after 3 steps: float16 0.9697 vs 0.9707, its rounding; a bfloat16 variable does
    not move under either, beta_2 = 0.999 being 1.0 in bfloat16)."""
    ends = []
    for module in (optimizers, keras.optimizers):
        variables = [keras.Variable(np.ones((3, 4)), dtype=dtype)]
        optimizer = module.Adam(0.01)
        optimizer.build(variables)
        fn = tf.function(lambda gs: optimizer.apply_gradients(zip(gs, variables)))
        graph = fn.get_concrete_function([tf.TensorSpec((3, 4), dtype)]).graph
        fused = [op.type for op in graph.get_operations()].count("ResourceApplyAdam")
        assert fused == (module is optimizers)
        for _ in range(3):
            fn([tf.fill((3, 4), tf.constant(0.5, dtype))])
        ends.append(np.asarray(variables[0].numpy(), "float64"))
    np.testing.assert_allclose(ends[0], ends[1], atol=2e-3)
    if dtype != "bfloat16":
        np.testing.assert_allclose(ends[0], 0.97, atol=2e-3)   # 3 steps of the rate
