"""zoo.train's multi-device path: ``fit`` under ``tf.distribute.MirroredStrategy``.

``fit`` mirrors the model over the GPUs when it sees more than one. This machine has none, so
the test splits the CPU into two logical devices (which TensorFlow allows only before it
initialises, hence a fresh process) and gives ``fit`` a MirroredStrategy over them: the
same rebuild-in-scope, compile-in-scope, backup and export code a two-GPU machine runs. A
``fit`` called inside the caller's own ``strategy.scope()`` trains under that strategy."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from zoo import data, train
    from zoo.export import export_run
    from zoo.serving import load

    made = []
    def mirrored():
        made.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        return made[-1]
    train._gpu_strategy = mirrored

    class Kill(keras.callbacks.Callback):
        # stops the first run in its second epoch, as a killed job would
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 3:
                raise KeyboardInterrupt

    run_dir, base = sys.argv[1], sys.argv[2]
    kw = dict(epochs=2, run_dir=run_dir, verbose=0, mixed_precision="bfloat16",
              batch_size=32, seed=1)
    try:
        train.fit("lenet5", "digits", callbacks=[Kill()], **kw)
        raise SystemExit("the first run was not interrupted")
    except KeyboardInterrupt:
        pass
    history = train.fit("lenet5", "digits", **kw)
    export = str(export_run(run_dir, base_dir=base))
    model = keras.models.load_model(run_dir + "/model.keras")
    x, y = data.digits_arrays("test")
    served = load(export).predict(x[:64])
    # fit inside the caller's own strategy scope trains under that strategy, even where
    # it would make one of its own (two GPUs)
    mine = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    before = len(made)
    with mine.scope():
        inside = train.fit("lenet5", "digits", epochs=1, run_dir=run_dir + "-inside",
                           verbose=0, mixed_precision="bfloat16")
    print(json.dumps({
        "inside": [len(made) - before, inside["val_accuracy"].tolist()],
        "replicas": [s.num_replicas_in_sync for s in made],
        "epochs": history["epoch"].tolist(),
        "val_accuracy": history["val_accuracy"].tolist(),
        "dtypes": sorted({l.dtype_policy.name for l in model.layers
                          if l.name not in ("input", "images")}),
        "served": (served["classes"] == y[:64]).mean().item(),
        "probabilities": list(served["probabilities"].shape),
    }))
""")


def test_fit_under_a_mirrored_strategy_resumes_and_exports(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run"),
                           str(tmp_path / "saved")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # both runs trained on two replicas; the second resumed in its second epoch
    assert out["replicas"] == [2, 2]
    assert out["epochs"] == [0, 1]
    assert min(out["val_accuracy"]) > 0.5
    # bfloat16 inside, float32 outputs, and a served model that classifies the digits
    assert "mixed_bfloat16" in out["dtypes"] and "float32" in out["dtypes"]
    assert out["probabilities"] == [64, 10]
    assert out["served"] > 0.5
    assert not os.path.exists(tmp_path / "run" / "backup")
    assert out["inside"][0] == 0 and out["inside"][1][0] > 0.5


# One global batch of 32 over two replicas of 16 is one step on the batch of 32: the same
# weights as on one device (a model without batch norms, whose statistics each replica takes
# from its own part), also where the gradients are clipped to a global norm (Keras clipped
# each replica's part). The optimizer instance, with momentum, is made outside the
# strategy's scope, as any is before fit's own strategy over several GPUs (Keras' first update
# failed: "Mixing different tf.distribute.Strategy objects"). A batch that does not split
# evenly among the replicas is refused.
STEPS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from zoo import data, train

    base = sys.argv[1]
    def splits():   # two batches of 32 in a fixed order
        sp = data.load_splits("digits", batch_size=32, augment=False)
        first = data.load("digits", "train", shuffle=False, batch_size=32)[0].take(2)
        return data.Splits(first, sp.validation.take(1), sp.test.take(1), sp.info,
                           batch_size=32)
    kw = dict(epochs=1, verbose=0, mixed_precision="off", early_stopping=False)

    def trained(run, opt):
        history = train.fit("lenet5", splits(), run_dir=os.path.join(base, run), optimizer=opt,
                            **kw)
        model = train.fit.last_model
        return ([w.copy() for w in model.get_weights()], history["loss"].tolist(),
                model.optimizer.get_config()["global_clipnorm"])

    def sgd():
        return keras.optimizers.SGD(0.05, momentum=0.5, global_clipnorm=10.0)
    one, one_loss, _ = trained("one", sgd())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    opt = sgd()   # made outside the scope
    with strategy.scope():
        two, two_loss, clip = trained("two", opt)
        try:
            train.fit("lenet5", "digits", batch_size=33, run_dir=os.path.join(base, "odd"),
                      **kw)
            refused = None
        except ValueError as exc:
            refused = str(exc)
        # float16: the last of 10 batches has its second half, replica 1's part, 100 times
        # brighter, which overflows its scaled float16 gradients (not replica 0's)
        x, y = next(iter(data.load("digits", "train", shuffle=False, batch_size=320)[0]))
        x = x.numpy()
        x[-16:] *= 100.0
        sp = splits()
        bright = data.Splits(tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
                             sp.validation, sp.test, sp.info, batch_size=32)
        steps = []
        class Steps(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                steps.append([float(self.model.optimizer.dynamic_scale.numpy()),
                              all(np.isfinite(w).all() for w in self.model.get_weights())])
        train.fit("lenet5", bright, run_dir=os.path.join(base, "float16"), optimizer="sgd",
                  callbacks=[Steps()], **dict(kw, mixed_precision="float16"))
        sp = splits()   # batches of a size the pipeline does not tell
        odd = data.Splits(sp.train.unbatch().batch(33), sp.validation, sp.test, sp.info)
        try:
            train.fit("lenet5", odd, run_dir=os.path.join(base, "odd-splits"), **kw)
            unknown = None
        except ValueError as exc:
            unknown = str(exc)
    print(json.dumps({
        "diff": max(float(np.abs(a - b).max()) for a, b in zip(one, two)),
        "losses": [one_loss, two_loss], "clip": clip, "refused": refused,
        "odd_written": [os.path.exists(os.path.join(base, d)) for d in ("odd", "odd-splits")],
        "unknown": unknown, "float16_steps": steps,
    }))
""")


@pytest.fixture(scope="module")
def two_replica_steps(tmp_path_factory):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", STEPS_SCRIPT,
                           str(tmp_path_factory.mktemp("steps"))], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_global_batch_over_two_replicas_trains_as_on_one_device(two_replica_steps):
    out = two_replica_steps
    assert out["diff"] < 1e-5
    assert out["losses"][0] == pytest.approx(out["losses"][1], rel=1e-5)
    # the optimizer instance's settings trained (a copy made in the strategy's scope)
    assert out["clip"] == 10.0


def test_float16_skips_a_step_whose_gradients_overflow_on_another_replica(
        two_replica_steps):
    # Keras' LossScaleOptimizer took the first replica's finite gradients for every
    # replica's: the overflow on the second went into the weights (inf / NaN), the loss
    # scale kept; the step is skipped and the scale halved, as on one device.
    (before, _), (after, finite) = two_replica_steps["float16_steps"][-2:]
    assert after == before / 2
    assert finite


def test_a_batch_that_does_not_split_among_the_replicas_is_refused(two_replica_steps):
    out = two_replica_steps
    assert out["refused"] is not None and "\n" not in out["refused"]
    assert "multiple of 2" in out["refused"] and "batch_size=33" in out["refused"]
    assert out["odd_written"] == [False, False]
    # a Splits whose batch size only its first batch tells: Keras' error, in one line
    assert out["unknown"] is not None and "\n" not in out["unknown"], out["unknown"]
    assert "multiple of 2" in out["unknown"] and "parts of 17 and 16" in out["unknown"]
