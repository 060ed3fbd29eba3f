"""TensorFlow's start-up lines, filtered by ``TF_CPP_MIN_LOG_LEVEL`` for the command lines.

TensorFlow 2.21's C++ libraries log while they load, before absl's logging is initialised
(``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``,
then ``I0000 ... port.cc:153] oneDNN custom operations are on ...`` and ``I0000 ...
cudart_stub.cc:31] Could not find cuda drivers ...``, twice, once per library), and those
lines ignore ``TF_CPP_MIN_LOG_LEVEL``. So a CLI error that should be one line came after
seven lines of TensorFlow's. :func:`filter_tensorflow_start_up` makes the first import of
``tensorflow`` (by the zoo, Keras or anything else) run with file descriptor 2 passed
through a small filter process that drops the lines below the level, as TensorFlow does for
its later lines, and passes everything else on in order. A separate process, not a thread,
so that a message written just before a crash in the import (an unsupported CPU, say) still
reaches the terminal. The zoo's command lines install it; the library on its own does not
touch file descriptors.

LiteRT writes one line of its own when a process makes its first interpreter (``INFO:
Created TensorFlow Lite XNNPACK delegate for CPU.``), with no switch of its own: in a command
line, that first interpreter is made with the same filter (:func:`make_litert_interpreter`),
which reads LiteRT's ``INFO:``/``WARNING:``/``ERROR:`` lines by the same levels.

TensorFlow's CUDA build logs ``E0000 ... cuda_platform.cc:52] failed call to cuInit: ...``
(TensorFlow 2.20: ``2026-12-07 20:16:19.286831: E external/.../cuda_platform.cc:51] failed
call to cuInit: ...``) at ERROR level when it first looks for GPUs on a machine with no NVIDIA driver: on every
command, though the machine has no GPU to find. Where no NVIDIA (or WSL GPU) device exists
(:func:`gpu_absent`), the filtered import looks for the GPUs itself and the filter drops
that line; on a machine with a GPU device it stays, as it then tells why the GPU is unused.

On CPUs without AVX-512 FP16, TensorFlow logs ``E0000 ... util.cc:131] oneDNN supports
DT_HALF only on platforms with AVX-512. Falling back to the default Eigen-based
implementation if present.`` the first time a process runs float16 ops: a note, at ERROR
level, that Eigen's kernels run them (the results are right). The command lines run their
first float16 ops (a float16 export, a float16 model served on TensorFlow) in the filter
(:func:`command_line_filter`), which drops it below the level as it drops warnings. The same
note for ``DT_UINT8`` comes from the uint8 ops of a dataset's first pass over its images
(the statistics of a colour folder read in grey): that pass runs in the filter too.
"""

from __future__ import annotations

if __name__ == "__main__":   # the filter process of filtered_stderr, before its imports:
    # a Ctrl-C at the terminal reaches the command's whole process group, this process too,
    # which printed a KeyboardInterrupt traceback (in the ~6 s of TensorFlow's import that
    # every command begins with) and stopped passing the command's lines on. It ends when
    # the command closes its end of the pipe, or dies.
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import contextlib
import importlib.abc
import importlib.machinery
import os
import subprocess
import sys
import threading

#: absl's severity letters, in the order TF_CPP_MIN_LOG_LEVEL counts them.
SEVERITIES = "IWEF"

BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

#: LiteRT's (TensorFlow Lite's) own log lines, ``INFO: <message>`` (one space), by severity
#: as absl's letters.
LITERT_PREFIXES = {"VERBOSE: ": 0, "INFO: ": 0, "WARNING: ": 1, "ERROR: ": 2}

_command_line_level = None   # TF_CPP_MIN_LOG_LEVEL once for_command_line() ran
# File descriptor 2 is the process's: one filter at a time (another thread's waits), the
# same thread's nested ones stacked; also held while the first LiteRT interpreter is made.
_fd2_lock = threading.RLock()
_litert_made = False


def min_log_level(environ=None) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: 0-3, anything else 0."""
    value = (os.environ if environ is None else environ).get("TF_CPP_MIN_LOG_LEVEL", "0")
    try:
        return max(0, min(3, int(value)))
    except ValueError:
        return 0


#: The device files of an NVIDIA driver (Linux) or of WSL's GPU.
GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg")
CUINIT = "] failed call to cuInit"
#: TensorFlow's ERROR line when ops of a type fall back from oneDNN to Eigen's kernels
#: (``DT_HALF``, ``DT_UINT8``): its start and its end.
DTYPE_FALLBACK = ("] oneDNN supports DT_", " only on platforms with")


def gpu_absent() -> bool:
    """Whether this machine has no GPU device TensorFlow could use (none of
    :data:`GPU_DEVICES`)."""
    return not any(os.path.exists(p) for p in GPU_DEVICES)


def _dtype_fallback(line: str) -> bool:
    """Whether ``line`` is TensorFlow's note of a type's ops falling back to Eigen."""
    start, end = DTYPE_FALLBACK
    at = line.find(start)
    return at >= 0 and end in line[at + len(start):]


def _error_line(line: str) -> bool:
    """Whether ``line`` is an ERROR line of TensorFlow's: ``E0000 ...`` (absl's form, 2.21) or
    ``2026-12-07 20:16:19.286831: E ...`` (TensorFlow 2.20's own form)."""
    if line.startswith("E"):
        return True
    date, sep, rest = line.partition(": ")
    return (sep != "" and rest.startswith("E ") and len(date) >= 19 and date[4] == "-"
            and date[:4].isdigit() and date[10] == " ")


def hidden(line: str, level: int, no_gpu: bool = False) -> bool:
    """Whether the filter drops ``line`` at ``level`` (for tests and callers of their own);
    ``no_gpu``: also TensorFlow's ERROR line of a failed ``cuInit`` (see the module's doc)."""
    if line.rstrip("\r\n") == BANNER:
        return level > 0
    if no_gpu and level > 0 and CUINIT in line and _error_line(line):
        return True
    if level > 1 and _dtype_fallback(line) and _error_line(line):   # a note, as a warning
        return True
    for prefix, severity in LITERT_PREFIXES.items():
        # One space after the colon: uvicorn's lines ("INFO:     ...") are not LiteRT's.
        if line.startswith(prefix) and line[len(prefix):len(prefix) + 1] not in (" ", ""):
            return severity < level
    return (len(line) > 5 and line[0] in SEVERITIES and line[1:5].isascii()
            and line[1:5].isdigit() and line[5] == " " and SEVERITIES.index(line[0]) < level)


@contextlib.contextmanager
def filtered_stderr(level: int, no_gpu: bool = False):
    """File descriptor 2 through the filter process for the ``with`` block (one thread's
    at a time)."""
    if level <= 0:
        yield
        return
    with _fd2_lock:
        with _filtered(level, no_gpu):
            yield


@contextlib.contextmanager
def _filtered(level: int, no_gpu: bool):
    sys.stderr.flush()
    try:   # this module run as the filter (_filter_lines); -I -S: ~10 ms to start
        proc = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__),
                                 str(level), str(int(no_gpu))], stdin=subprocess.PIPE,
                                stdout=2)
    except OSError:   # no filter: the lines pass unfiltered
        yield
        return
    try:
        with _fd2_to(proc.stdin.fileno()):
            yield
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)   # its last lines before anything written after the block
        except subprocess.TimeoutExpired:
            proc.kill()


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with the real finders, and runs its module code filtered."""

    def __init__(self, level: int):
        self.level = level

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader, level = spec.loader, self.level
        run = loader.exec_module

        def exec_module(module):
            no_gpu = gpu_absent()
            try:
                with filtered_stderr(level, no_gpu):
                    run(module)
                    if no_gpu:   # TensorFlow's cuInit line, if it has one, in the filter
                        try:
                            module.config.list_physical_devices("GPU")
                        except Exception:   # noqa: BLE001  (asked again when used)
                            pass
            finally:
                del loader.exec_module   # the loader's own method again
        loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def command_line_filter():
    """In a command line (:func:`for_command_line`), file descriptor 2 through the filter
    for the ``with`` block, for TensorFlow's lines logged once per process at first use,
    such as the float16 and uint8 notes (:data:`DTYPE_FALLBACK`); elsewhere nothing."""
    if _command_line_level is None:
        yield
        return
    with filtered_stderr(_command_line_level, gpu_absent()):
        yield


@contextlib.contextmanager
def command_line_quiet():
    """In a command line (:func:`for_command_line`), file descriptor 2 shut (to the null
    device) for the ``with`` block, for C libraries' own lines on work whose outcome the
    command reports itself; elsewhere nothing."""
    if _command_line_level is None:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd2_lock, _fd2_to(null):
            yield
    finally:
        os.close(null)


@contextlib.contextmanager
def _fd2_to(fd: int):
    """File descriptor 2 a copy of ``fd`` for the ``with`` block, then what it was."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def for_command_line() -> bool:
    """What the zoo's command lines do first: ``TF_CPP_MIN_LOG_LEVEL`` 2 unless the user set
    it (warnings and info hidden), :func:`filter_tensorflow_start_up`, and LiteRT's first
    interpreter filtered (:func:`make_litert_interpreter`)."""
    global _command_line_level
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _command_line_level = min_log_level()
    return filter_tensorflow_start_up()


def make_litert_interpreter(**kwargs):
    """``ai_edge_litert.interpreter.Interpreter(**kwargs)``. In a command line
    (:func:`for_command_line`) the process's first one is made, and its tensors allocated
    (where LiteRT writes its once-per-process ``INFO: Created TensorFlow Lite XNNPACK
    delegate`` line), with file descriptor 2 through the filter, which drops that line below
    the level. Elsewhere, and for later interpreters, it is made as it is."""
    global _litert_made
    from ai_edge_litert.interpreter import Interpreter
    if _command_line_level is None or _litert_made:
        return Interpreter(**kwargs)
    with _fd2_lock:   # another thread's first interpreter waits for this one
        if _litert_made:
            return Interpreter(**kwargs)
        try:
            with filtered_stderr(_command_line_level):
                interpreter = Interpreter(**kwargs)
                try:   # at the signature's smallest shapes
                    interpreter.allocate_tensors()
                except Exception:   # noqa: BLE001  (the first call allocates again anyway)
                    pass
        finally:
            _litert_made = True
    return interpreter


def filter_tensorflow_start_up(environ=None) -> bool:
    """Filter the first import of ``tensorflow`` in this process (see the module's doc).
    Returns whether it will: not when TensorFlow is already imported, the level is 0, or
    it is installed already."""
    level = min_log_level(environ)
    if ("tensorflow" in sys.modules or level <= 0
            or any(isinstance(f, _FirstImport) for f in sys.meta_path)):
        return False
    sys.meta_path.insert(0, _FirstImport(level))
    return True


def _filter_lines(level: int, source, sink, no_gpu: bool = False) -> None:
    """The filter process's work: ``source`` to ``sink`` line by line (bytes), without the
    lines :func:`hidden` drops at ``level``; each line passed on at once."""
    for line in source:
        if not hidden(line.decode("latin-1"), level, no_gpu):
            sink.write(line)
            sink.flush()


if __name__ == "__main__":   # the filter process of filtered_stderr
    _filter_lines(int(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer,
                  len(sys.argv) > 2 and sys.argv[2] == "1")
