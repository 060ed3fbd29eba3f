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
