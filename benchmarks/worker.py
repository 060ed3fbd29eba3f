"""Reference processes, driven by the benchmark: Keras with TensorFlow's own defaults, and
PyTorch.

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
``{"ok": true, ...}`` (for a run: items, wall and CPU seconds) or ``{"ok": false, "error":
"..."}``. ``"model": "zoo:resnet50"`` with
``"fused_bn": false, "jit_compile": true`` builds the zoo model the way it ran before its
speed defaults (for the before/after rows). Without ``"jit_compile"`` a model is compiled
with Keras' default, ``"auto"`` (XLA on GPUs, not on CPUs); the set-up answer says which
(``"jit_compile"``).

``"framework": "torch"`` (with ``"model": "benchmarks.torch_resnet:ResNet50"`` and optional
``"threads"``) runs the PyTorch rows here too, in a process that never imports TensorFlow:
the two frameworks bundle native libraries that do not always share a process (PyTorch's
CUDA wheels import Triton when an optimizer is built, and Triton's compiler loaded after
TensorFlow crashes the process), and the PyTorch figures are then those of a plain PyTorch
program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


from benchmarks.data import batch as make_batch, images as make_images, images_per_run


def _setup_torch(cmd):
    """A PyTorch training step or inference loop on the same synthetic data, no TensorFlow.

    On a CUDA GPU when PyTorch sees one, as TensorFlow runs the other rows on it; the data
    starts in host memory, as theirs does, and every step's loss (as Keras'
    ``train_on_batch`` returns it) and every batch's output is fetched to the host, so a
    repetition ends when its work has run, not when it has been queued."""
    import importlib

    import numpy as np
    import torch

    if cmd.get("threads"):
        torch.set_num_threads(int(cmd["threads"]))
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = tuple(cmd["shape"])
    module, attr = cmd["model"].split(":")
    model = getattr(importlib.import_module(module), attr)(num_classes=int(cmd["classes"]),
                                                           in_channels=shape[-1]).to(device)
    if cmd["kind"] == "train":
        x_np, y_np = make_batch(shape, int(cmd["batch"]), int(cmd["classes"]))
        x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
        y = torch.from_numpy(y_np.astype("int64"))
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        steps = int(cmd.get("steps", 1))

        def run():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x.to(device)), y.to(device))
                loss.backward()
                opt.step()
                loss.item()
            return steps * int(x.shape[0])
    elif cmd["kind"] == "predict":
        b = int(cmd["batch"])
        n = images_per_run(b, int(cmd["images"]))
        x = torch.from_numpy(np.ascontiguousarray(make_images(shape, n).transpose(0, 3, 1, 2)))
        parts = torch.split(x, b)
        model.eval()

        def run():
            with torch.inference_mode():
                for xb in parts:
                    model(xb.to(device)).cpu()
            return n
    else:
        raise ValueError(f"unknown kind {cmd['kind']!r}; expected 'train' or 'predict'")
    return run, {"torch": torch.__version__, "threads": torch.get_num_threads(),
                 "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else "CPU"),
                 "tensorflow_imported": "tensorflow" in sys.modules}


def _setup(cmd):
    if cmd.get("framework", "keras") == "torch":
        return _setup_torch(cmd)
    import keras
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    shape = tuple(cmd["shape"])
    # Keras' default: "auto", XLA on GPUs and off on CPUs (its trainer's own choice)
    jit = cmd.get("jit_compile", "auto")
    if cmd["model"].startswith("zoo:"):
        # The zoo model as it was before its speed defaults: imported after TensorFlow (so
        # TensorFlow's own kernel choice), Keras' batch normalisation, XLA.
        import zoo
        from zoo import layers as zoo_layers
        if not cmd.get("fused_bn", True):
            zoo_layers.BatchNormalization = keras.layers.BatchNormalization
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
        n = images_per_run(b, int(cmd["images"]))
        x = make_images(shape, n)

        def run():
            model.predict(x, batch_size=b, verbose=0)
            return n
    else:
        raise ValueError(f"unknown kind {cmd['kind']!r}; expected 'train' or 'predict'")
    return run, {"onednn": bool(_pywrap_util_port.IsMklEnabled()),
                 "tensorflow": tf.__version__, "jit_compile": bool(model.jit_compile)}


def main() -> int:
    run = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "setup":
                run, info = _setup(cmd)
                answer = {"ok": True, **info}
            elif cmd["op"] == "run":
                c0, t0 = time.process_time(), time.perf_counter()
                items = run()
                answer = {"ok": True, "items": items, "seconds": time.perf_counter() - t0,
                          "cpu_seconds": time.process_time() - c0}
            else:
                raise ValueError(f"unknown op {cmd['op']!r}")
        except Exception as exc:  # reported to the parent, which drops the variant
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


class Reference:
    """The parent's handle: ``Reference(kind=..., model=...)`` starts a child and sets up;
    ``run()`` is a :class:`benchmarks.core.Variant` run returning ``(items, seconds, CPU
    seconds)``.

    ``Reference.last_info`` keeps the latest set-up answer per framework (the PyTorch
    version and thread count for the machine description)."""

    last_info: dict = {}
    #: The child's command after the interpreter.
    COMMAND = ("-m", "benchmarks.worker")

    def __init__(self, **setup):
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        # The child's stderr (TensorFlow's log lines, a traceback) goes to a file, whose
        # last line says why a child that died without an answer died.
        self._stderr = tempfile.TemporaryFile(mode="w+", errors="replace")
        self.proc = subprocess.Popen([sys.executable, *self.COMMAND],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=env)
        try:
            self.info = self._ask({"op": "setup", **setup})
            Reference.last_info[setup.get("framework", "keras")] = dict(self.info)
        except BaseException:
            self.close()
            raise

    def _ask(self, cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self._stderr.seek(0)
            lines = [t.strip() for t in self._stderr.read().splitlines() if t.strip()]
            raise RuntimeError(f"reference process exited (code {code})"
                               + (f": {lines[-1]}" if lines else ""))
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError(f"reference process: {answer['error']}")
        return answer

    def run(self):
        """``(items, seconds, CPU seconds of the child's threads)`` of one repetition."""
        answer = self._ask({"op": "run"})
        return answer["items"], answer["seconds"], answer["cpu_seconds"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    sys.exit(main())
