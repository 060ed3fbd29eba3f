import os
import subprocess
import sys
import textwrap

import pytest

from zoo import startlog

ROOT = os.path.dirname(os.path.dirname(startlog.__file__))   # where `zoo` imports from

LINES = [
    startlog.BANNER,
    "I0000 00:00:1796438457.446509   28962 port.cc:153] oneDNN custom operations are on.",
    "W0000 00:00:1796438457.446821   28962 cudart_stub.cc:31] a warning",
    "E0000 00:00:1796438457.483947   28962 cuda_platform.cc:52] an error",
    "F0000 00:00:1796438457.483947   28962 x.cc:1] a fatal line",
    "I0 not absl's form",
    "Illegal instruction: a line of no level",
]


@pytest.mark.parametrize("level,kept", [
    (0, LINES),
    (1, LINES[2:]),
    (2, LINES[3:]),
    (3, LINES[4:]),
])
def test_hidden_follows_tf_cpp_min_log_level(level, kept):
    assert [line for line in LINES if not startlog.hidden(line, level)] == kept


@pytest.mark.parametrize("level,kept", [(0, 4), (1, 2), (2, 1), (3, 0)])
def test_litert_lines_are_hidden_by_the_same_levels(level, kept):
    lines = ["VERBOSE: v", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             "WARNING: w", "ERROR: e"]
    assert [line for line in lines if not startlog.hidden(line, level)] == lines[4 - kept:]
    # uvicorn's lines pad the level ("INFO:     ..."): never LiteRT's
    assert not startlog.hidden("INFO:     127.0.0.1:5 - \"GET / HTTP/1.1\" 200 OK", level)
    assert not startlog.hidden("WARNING:  model 'm' version 3 could not be loaded", level)


@pytest.mark.parametrize("value,level", [("2", 2), ("0", 0), ("9", 3), ("-1", 0), ("x", 0),
                                         (None, 0)])
def test_min_log_level_reads_the_environment_as_tensorflow_does(value, level):
    environ = {} if value is None else {"TF_CPP_MIN_LOG_LEVEL": value}
    assert startlog.min_log_level(environ) == level


def _run(code, tmp_path, level):
    """``code`` in a fresh interpreter with a fake ``tensorflow`` package on its path that
    writes LINES to file descriptor 2 when imported, as TensorFlow's C++ libraries do."""
    package = tmp_path / "tensorflow"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(textwrap.dedent(f"""
        import os
        for line in {LINES!r}:
            os.write(2, (line + "\\n").encode())
        LOADED = True
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT]),
           "TF_CPP_MIN_LOG_LEVEL": str(level)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.parametrize("level", [0, 2])
def test_the_first_import_of_tensorflow_is_filtered_in_order(tmp_path, level):
    result = _run("""
        import os, sys
        from zoo import startlog
        installed = startlog.filter_tensorflow_start_up()
        os.write(2, b"before\\n")
        import tensorflow
        os.write(2, b"after\\n")
        hooks = [f for f in sys.meta_path if isinstance(f, startlog._FirstImport)]
        own = "exec_module" in vars(tensorflow.__spec__.loader)
        print(installed, tensorflow.LOADED, len(hooks), own)
    """, tmp_path, level)
    assert result.returncode == 0, result.stderr
    kept = [line for line in LINES if not startlog.hidden(line, level)]
    assert result.stderr.splitlines() == ["before", *kept, "after"]
    # Installed only where it filters; afterwards the hook is gone and the loader is its own.
    assert result.stdout.split() == [str(level > 0), "True", "0", "False"]


def test_a_broken_import_restores_stderr_and_removes_the_hook(tmp_path):
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os\nos.write(2, b'I0000 00:00:1.0 1 a.cc:1] hidden\\nkept\\n')\n"
        "raise RuntimeError('no AVX')\n")
    code = textwrap.dedent("""
        import os, sys
        from zoo import startlog
        startlog.filter_tensorflow_start_up()
        try:
            import tensorflow
        except RuntimeError as e:
            print("caught", e)
        os.write(2, b"after\\n")
        print(sum(isinstance(f, startlog._FirstImport) for f in sys.meta_path))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.stdout.splitlines() == ["caught no AVX", "0"]
    assert result.stderr.splitlines() == ["kept", "after"]


def test_a_cli_error_is_one_line_on_stderr_with_tensorflow_loaded():
    """`zoo train` imports TensorFlow to read its options: the error is still stderr's only
    line (TensorFlow's load-time lines below TF_CPP_MIN_LOG_LEVEL, 2 by default, are held
    back)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "zoo", "train", "lenet5", "--epochs", "0"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["zoo: error: --epochs must be >= 1. Received: 0"]


CUINIT_LINE = ("E0000 00:00:1796457616.522186   18170 cuda_platform.cc:52] failed call to cuInit: "
               "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")


#: The same line from TensorFlow 2.20, in its own form (it was the second line of a CLI error).
CUINIT_LINE_2_20 = ("2026-12-07 20:16:19.286831: E external/local_xla/xla/stream_executor/cuda/"
                    "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed "
                    "call to cuInit: UNKNOWN ERROR (303)")


@pytest.mark.parametrize("line", [CUINIT_LINE, CUINIT_LINE_2_20])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_the_cuinit_error_is_hidden_only_without_a_gpu_device(level, line):
    assert startlog.hidden(line, level, no_gpu=True) == (level > 0)
    assert not startlog.hidden(line, level, no_gpu=False)
    # The same words in a line that is no ERROR line of TensorFlow's stay.
    assert not startlog.hidden("2026-12-07 20:16:19: W x.cc:1] failed call to cuInit", level,
                               no_gpu=True)
    assert not startlog.hidden(LINES[3], level, no_gpu=True)   # another ERROR line stays


def test_float16_exports_and_predictions_print_no_kernel_note(tmp_path):
    """A float16 export's first ops, at export and at load, run in the filter: TensorFlow's
    ERROR-level note that Eigen runs float16 (CPUs without AVX-512 FP16) is not printed, so
    the commands' stderr holds their own lines only."""
    import numpy as np
    from PIL import Image

    import zoo
    zoo.lenet5(variant="modern").save(tmp_path / "m.keras")
    Image.fromarray(np.zeros((32, 32), "uint8")).save(tmp_path / "x.png")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for argv in (["export", str(tmp_path / "m.keras"), "--precision", "float16", "--name",
                  "m", "--base-dir", str(tmp_path / "out")],
                 ["predict", str(tmp_path / "out" / "m"), str(tmp_path / "x.png"),
                  "--runtime", "tensorflow", "--no-xla"]):
        result = subprocess.run([sys.executable, "-m", "zoo", *argv], capture_output=True,
                                text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert [line for line in result.stderr.splitlines()
                if not line.startswith("zoo export: note: no info.json")] == []


def test_a_colour_folder_read_in_grey_prints_no_kernel_note(tmp_path):
    """The statistics pass over a colour folder read in grey runs uint8 ops whose
    once-per-process oneDNN note (``DT_UINT8``, at ERROR level) it printed in every such
    ``zoo train``: that pass runs in the filter, so a command line prints nothing."""
    from conftest import make_colour_folder
    make_colour_folder(tmp_path, ("a", "b"), (40, 40), counts=(("train", 3),))
    code = ("import sys\nfrom zoo import startlog\nstartlog.for_command_line()\n"
            "from zoo import data\n"
            "info = data.load('folder:' + sys.argv[1], channels=1, image_size=(32, 32))[1]\n"
            "print(info.input_shape)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(32, 32, 1)" and result.stderr == ""


UINT8_LINE = ("E0000 00:00:1796673503.820476     777 util.cc:131] oneDNN supports DT_UINT8 "
              "only on platforms with AVX-512. Falling back to the default Eigen-based "
              "implementation if present.")
HALF_LINE = ("E0000 00:00:1796465104.703924   13273 util.cc:131] oneDNN supports DT_HALF only "
             "on platforms with AVX-512. Falling back to the default Eigen-based implementation "
             "if present.")


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_the_float16_and_uint8_fallback_notes_are_hidden_as_warnings(level):
    assert startlog.hidden(HALF_LINE, level) == (level > 1)
    assert startlog.hidden(UINT8_LINE, level) == (level > 1)
    assert not startlog.hidden(LINES[3], 2)   # another ERROR line stays


def test_command_line_filter_is_nothing_outside_a_command_line(monkeypatch):
    monkeypatch.setattr(startlog, "_command_line_level", None)
    monkeypatch.setattr(startlog, "filtered_stderr",
                        lambda *a: (_ for _ in ()).throw(AssertionError("filtered")))
    with startlog.command_line_filter():
        pass


@pytest.mark.parametrize("level", [None, 2])
def test_command_line_quiet_shuts_file_descriptor_2_in_a_command_line_only(monkeypatch, capfd,
                                                                          level):
    monkeypatch.setattr(startlog, "_command_line_level", level)
    os.write(2, b"before\n")
    with startlog.command_line_quiet():
        os.write(2, b"a C library's line\n")
    os.write(2, b"after\n")
    shown = capfd.readouterr().err
    assert shown == ("before\na C library's line\nafter\n" if level is None
                     else "before\nafter\n")


def test_the_filtered_import_looks_for_gpus_inside_the_filter(tmp_path):
    """TensorFlow logs the failed cuInit when it first looks for GPUs, after its import: the
    filtered import looks for them before the filter closes, so that the line is dropped
    where no GPU device exists (and kept where one does)."""
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(f"""
        import os, types
        asked = []
        def list_physical_devices(kind):
            asked.append(kind)
            os.write(2, ({CUINIT_LINE!r} + "\\n").encode())
            return []
        config = types.SimpleNamespace(list_physical_devices=list_physical_devices)
    """))
    code = textwrap.dedent("""
        import os
        from zoo import startlog
        startlog.filter_tensorflow_start_up()
        import tensorflow
        os.write(2, b"after\\n")
        print(tensorflow.asked)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    if startlog.gpu_absent():
        assert result.stdout.strip() == "['GPU']"
        assert result.stderr.splitlines() == ["after"]
    else:
        assert result.stdout.strip() == "[]"
        assert result.stderr.splitlines() == ["after"]


@pytest.mark.parametrize("line", ["E1234: a program's own line", "W2026:12:06 a timestamp",
                                  "I12345 a number too long", "I0000",
                                  "W\u0661\u0662\u0663\u0664 Arabic-Indic digits",
                                  "D0000 a letter of no severity"])
def test_only_a_letter_four_digits_and_a_space_make_an_absl_line(line):
    assert not startlog.hidden(line, 3)


@pytest.mark.parametrize("user, level", [(None, 2), ("0", 0), ("3", 3)])
def test_a_command_line_hides_warnings_unless_the_user_set_the_level(monkeypatch, user, level):
    if user is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", user)
    monkeypatch.setattr(startlog, "_command_line_level", None)
    monkeypatch.setattr(startlog, "filter_tensorflow_start_up", lambda environ=None: True)
    startlog.for_command_line()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == str(level)
    assert startlog._command_line_level == level


@pytest.mark.parametrize("level, filtered", [(None, []), (2, [2])])
def test_only_a_command_lines_first_litert_interpreter_is_made_in_the_filter(monkeypatch, level,
                                                                             filtered):
    import contextlib
    import types
    made, seen, allocated, filtering = [], [], [], []

    class Interpreter:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def allocate_tensors(self):   # where LiteRT writes its line: in the filter
            allocated.append(list(filtering))

    @contextlib.contextmanager
    def filtered_stderr(level, no_gpu=False):
        seen.append(level)
        filtering.append(level)
        yield
        filtering.pop()

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter",
                        types.SimpleNamespace(Interpreter=Interpreter))
    monkeypatch.setattr(startlog, "_command_line_level", level)
    monkeypatch.setattr(startlog, "_litert_made", False)
    monkeypatch.setattr(startlog, "filtered_stderr", filtered_stderr)
    for i in range(3):
        assert isinstance(startlog.make_litert_interpreter(model_path=f"m{i}"), Interpreter)
    assert made == [{"model_path": "m0"}, {"model_path": "m1"}, {"model_path": "m2"}]
    assert seen == filtered
    assert allocated == ([[2]] if level else [])   # the first one's tensors, in the filter


@pytest.mark.parametrize("line", [
    "a program's own line: x] failed call to cuInit: y",
    "a program's own line: x] oneDNN supports DT_HALF only on platforms with AVX-512",
    "Eh: x] oneDNN supports DT_UINT8 on every platform"])
def test_a_line_quoting_tensorflows_notes_is_no_error_line_of_its_own(line):
    assert not startlog.hidden(line, 3, no_gpu=True)


def test_the_filter_is_installed_once_and_not_after_tensorflow(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    environ = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    monkeypatch.setitem(sys.modules, "tensorflow", object())     # already imported
    assert startlog.filter_tensorflow_start_up(environ) is False
    monkeypatch.delitem(sys.modules, "tensorflow")
    assert startlog.filter_tensorflow_start_up(environ) is True
    assert startlog.filter_tensorflow_start_up(environ) is False   # installed already
    assert sum(isinstance(f, startlog._FirstImport) for f in sys.meta_path) == 1


@pytest.mark.parametrize("devices, absent", [((), True), (("/dev/nvidia0",), False),
                                             (("/proc/driver/nvidia",), False),
                                             (("/dev/dxg",), False)])
def test_a_gpu_is_absent_without_an_nvidia_or_wsl_device(monkeypatch, devices, absent):
    monkeypatch.setattr(startlog.os.path, "exists", lambda path: path in devices)
    assert startlog.gpu_absent() is absent


@pytest.mark.parametrize("absent", [True, False])
def test_command_line_filter_drops_the_cuinit_line_only_without_a_gpu(monkeypatch, absent):
    import contextlib
    seen = []

    @contextlib.contextmanager
    def filtered_stderr(level, no_gpu=False):
        seen.append((level, no_gpu))
        yield

    monkeypatch.setattr(startlog, "_command_line_level", 2)
    monkeypatch.setattr(startlog, "gpu_absent", lambda: absent)
    monkeypatch.setattr(startlog, "filtered_stderr", filtered_stderr)
    with startlog.command_line_filter():
        pass
    assert seen == [(2, absent)]


def test_the_filter_passes_each_line_on_at_once():
    """A line reaches the terminal when it is written, not when the filter's buffer fills
    (TensorFlow's import can take seconds between lines)."""
    import io
    written = []

    class Raw(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            written.append(bytes(b))
            return len(b)

    def source():
        for line in (b"kept\n", b"I0000 00:00:1.0 1 a.cc:1] hidden\n", b"also kept\n"):
            yield line
        assert b"".join(written) == b"kept\nalso kept\n"   # before the end of the input

    startlog._filter_lines(2, source(), io.BufferedWriter(Raw()))
    assert b"".join(written) == b"kept\nalso kept\n"


def test_a_ctrl_c_at_the_terminal_leaves_the_filter_to_its_command(tmp_path):
    """A Ctrl-C reaches the command's whole process group, the filter too: during
    TensorFlow's import (the first seconds of every command) it printed a KeyboardInterrupt
    traceback and dropped the command's lines after it. It ends when the command is done."""
    import signal
    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from zoo import startlog
        # The command handles its own (a handler, not SIG_IGN, which the filter would
        # inherit): its clean-up closes the filter's pipe.
        signal.signal(signal.SIGINT, lambda signum, frame: None)
        with startlog.filtered_stderr(2):
            os.write(2, b"through the filter\\n")
            sys.stdin.readline()                        # the Ctrl-C comes meanwhile
            os.write(2, b"I0000 00:00:1.0 1 a.cc:1] hidden\\nafter the Ctrl-C\\n")
        print("done", flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,   # a group of its own, as a shell's job
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        # The first line came through the filter: it is in its loop.
        assert proc.stderr.readline() == b"through the filter\n"
        os.killpg(proc.pid, signal.SIGINT)             # the terminal's Ctrl-C
        out, err = proc.communicate(b"go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, out, err) == (0, b"done\n", b"after the Ctrl-C\n")
