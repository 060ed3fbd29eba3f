"""A reference process with TensorFlow's own defaults, driven by the benchmark.

``import zoo`` changes process-wide TensorFlow settings (it turns on the oneDNN CPU kernels
before TensorFlow is imported, see ``zoo/__init__.py``), so a ``keras.applications`` model
measured in the benchmark's own process is not what a plain Keras user runs. The
"Keras default" references therefore run here: a child process that never imports zoo and
whose environment has no ``TF_ENABLE_ONEDNN_OPTS``, so TensorFlow decides as it does for
any user. The parent sends one JSON line per command on stdin and reads one JSON line back;
the child times its own work, so the pipe is not in the figures. Only one side works at a
time: the parent waits while the child runs.

Commands: ``{"op": "setup", "kind": "train"|"predict", "model": "ResNet50", "shape": [h, w,
c], "batch": b, "classes": k, "steps": s, "images": n}`` and ``{"op": "run"}``, answered by
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. ``"model": "zoo:resnet50"`` with
``"fused_bn": false, "jit_compile": true`` builds the zoo model the way it ran before its
speed defaults (for the before/after rows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


from benchmarks.data import batch as make_batch, images as make_images


def _setup(cmd):
    import keras
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    shape = tuple(cmd["shape"])
    jit = False
    if cmd["model"].startswith("zoo:"):
        # The zoo model as it was before its speed defaults: imported after TensorFlow (so
        # TensorFlow's own kernel choice), Keras' batch normalisation, XLA.
        import zoo
        from zoo import layers as zoo_layers
        if not cmd.get("fused_bn", True):
            zoo_layers.BatchNormalization = keras.layers.BatchNormalization
        jit = bool(cmd.get("jit_compile", False))
        model = zoo.get_model(cmd["model"][4:], input_shape=shape,
                              num_classes=int(cmd["classes"]))
    else:
        cls = getattr(keras.applications, cmd["model"])
        model = cls(weights=None, input_shape=shape, classes=int(cmd["classes"]))
    if cmd["kind"] == "train":
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=jit)
        x_np, y_np = make_batch(shape, int(cmd["batch"]), int(cmd["classes"]))
        x, y = tf.constant(x_np), tf.constant(y_np)
        steps = int(cmd.get("steps", 1))

        def run():
            for _ in range(steps):
                model.train_on_batch(x, y)
            return steps * int(x_np.shape[0])
    elif cmd["kind"] == "predict":
        b = int(cmd["batch"])
        n = max(b, (int(cmd["images"]) // b) * b)
        x = make_images(shape, n)

        def run():
            model.predict(x, batch_size=b, verbose=0)
            return n
    else:
        raise ValueError(f"unknown kind {cmd['kind']!r}; expected 'train' or 'predict'")
    return run, {"onednn": bool(_pywrap_util_port.IsMklEnabled()),
                 "tensorflow": tf.__version__}


def main() -> int:
    run = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "setup":
                run, info = _setup(cmd)
                answer = {"ok": True, **info}
            elif cmd["op"] == "run":
                t0 = time.perf_counter()
                items = run()
                answer = {"ok": True, "items": items, "seconds": time.perf_counter() - t0}
            else:
                raise ValueError(f"unknown op {cmd['op']!r}")
        except Exception as exc:  # reported to the parent, which drops the variant
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


class Reference:
    """The parent's handle: ``Reference(kind=..., model=...)`` starts a child and sets up;
    ``run()`` is a :class:`benchmarks.core.Variant` run returning ``(items, seconds)``."""

    def __init__(self, **setup):
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            self.info = self._ask({"op": "setup", **setup})
        except BaseException:
            self.close()
            raise

    def _ask(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reference process exited (code {self.proc.wait()})")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError(f"reference process: {answer['error']}")
        return answer

    def run(self):
        answer = self._ask({"op": "run"})
        return answer["items"], answer["seconds"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    sys.exit(main())
