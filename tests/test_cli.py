import os
import re
import subprocess
import sys

import pytest

import zoo
from conftest import wait_for_marker
from zoo import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True,
                          timeout=300)


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "| alexnet" in out and "62,378,344" in out


def test_list_marks_a_trainable_only_count_and_says_what_the_mark_means(capsys):
    # resnet18/34 have only the trainable count torchvision publishes.
    assert cli.main(["list", "resnet*"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in lines if line.startswith("| resnet")}
    params = [c.strip() for c in lines[0].split("|")[1:-1]].index("params")
    assert (rows["resnet18"][params], rows["resnet34"][params]) == ("11,689,512*", "21,797,672*")
    assert rows["resnet50"][params] == "25,636,712"
    assert lines[-1] == "\\* trainable parameters, the only count the source publishes"
    # No starred row, no footnote.
    assert cli.main(["list", "resnet50*"]) == 0
    assert "*" not in capsys.readouterr().out


def test_list_csv_numbers_are_plain(capsys):
    assert cli.main(["list", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and not out.endswith("\n\n")   # no blank line at the end
    lines = out.strip().splitlines()
    assert lines[0] == "name,task,default input,min input,params,trainable params,paper"
    rows = {line.split(",")[0]: line for line in lines[1:]}
    assert rows["resnet101"].startswith("resnet101,classification,224x224x3,1,44707176,44601832,")
    # No total published: an empty params cell beside the trainable count, no mark.
    assert rows["resnet18"].startswith("resnet18,classification,224x224x3,1,,11689512,")
    assert len(rows) == len(zoo.list_models())


def test_table_csv(capsys):
    assert cli.main(["table", "lenet5", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Layer,Type,Maps,Size,Kernel size,Stride,Activation")
    assert lines[4] == "C3,Convolution,16,10x10,5x5,1,tanh,1516"


def test_table_input_shape(capsys):
    assert cli.main(["table", "alexnet", "--input-shape", "128,128,1"]) == 0
    assert "30x30" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["table", "alexnett"], "Unknown model 'alexnett'"),
    (["table", "lenet5", "--input-shape", "20,20,1"], "at least 32"),
    (["table", "lenet5", "--input-shape", "a,b"], "expected comma-separated integers"),
    (["train", "lenet5", "--patience", "-2"], "--patience must be >= 0. Received: -2"),
    (["train", "lenet5", "--epochs", "0"], "--epochs must be >= 1. Received: 0"),
    (["train", "lenet5", "--seed", "-1"], "argument --seed: expected an integer from 0 to "
                                          "2**32 - 1; received '-1'"),
    (["table", "lenet5", "--input-shape", "-32,32,1"],
     "input_shape must be three positive integers"),
])
def test_errors_are_one_line(args, message):
    result = run(*args)
    assert result.returncode != 0
    errors = result.stderr.splitlines()   # TensorFlow's load-time lines held back too
    assert len(errors) == 1 and re.match(r"zoo( \w+)?: error: ", errors[0]) and message in errors[0]


@pytest.mark.parametrize("argv", [
    ["predict", "m", "--top-k", "3", "a.png", "--batch-size", "2", "b.png"],
    ["predict", "--top-k", "3", "m", "a.png", "b.png", "--batch-size", "2"],
    ["predict", "m", "a.png", "b.png", "--top-k", "3", "--batch-size", "2"],
])
def test_options_may_come_between_positional_arguments(argv):
    args = cli.parse_args(cli.build_parser("predict"), argv)
    assert (args.command, args.model_dir, args.images) == ("predict", "m", ["a.png", "b.png"])
    assert (args.top_k, args.batch_size) == (3, 2)


@pytest.mark.parametrize("argv, want", [
    (["table", "lenet5", "--input-shape", "-32,32,1"], {"input_shape": "-32,32,1"}),
    (["train", "lenet5", "--lr", "-1e-3", "--epochs", "2"], {"lr": "-1e-3", "epochs": "2"}),
    (["train", "lenet5", "--lr", "--epochs", "2"], None),        # a value forgotten
])
def test_a_value_starting_with_a_dash_is_the_options_own(monkeypatch, argv, want):
    """``--input-shape -32,32,1`` reaches the option's check, which names the value
    (argparse alone would say "expected one argument"); an option name stays an option."""
    parser = cli.build_parser(argv[0])
    if want is None:
        with pytest.raises(SystemExit):
            cli.parse_args(parser, argv)
        return
    for action in parser.command_parser._actions:   # the raw text each option receives
        if action.dest in want:
            monkeypatch.setattr(action, "type", str)
    args = cli.parse_args(parser, argv)
    assert {k: getattr(args, k) for k in want} == want


def test_a_flag_takes_no_value_so_a_dash_after_it_stays_an_argument():
    args = cli.parse_args(cli.build_parser("predict"), ["predict", "m", "--no-xla", "-"])
    assert (args.no_xla, args.images) == (True, ["-"])


def test_an_unknown_option_between_positionals_is_still_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(cli.build_parser("predict"), ["predict", "m", "--topk", "3", "a.png"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "zoo predict: error: unrecognized arguments: --topk 3 a.png\n"


def test_a_closed_stdout_ends_the_command_quietly():
    """`zoo list | head -1`: once the reader is gone, no "Broken pipe" error or traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                  # the reader goes before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception" not in err, err


def test_version_names_zoo_and_its_libraries(capsys):
    from importlib import metadata
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"zoo {zoo.__version__} (TensorFlow {metadata.version('tensorflow')}, "
                   f"Keras {metadata.version('keras')}, keras-tuner "
                   f"{metadata.version('keras-tuner')}, Python {sys.version.split()[0]})")
    assert metadata.version("zoo") == zoo.__version__    # setup.cfg and zoo/__init__.py agree


@pytest.mark.parametrize("sig,code,line", [("SIGTERM", 143, "zoo: terminated"),
                                           ("SIGINT", 130, "zoo: interrupted")])
def test_a_terminated_command_cleans_up_and_says_so_in_one_line(tmp_path, sig, code, line):
    """SIGTERM (kill PID, timeout, a container stopping) ended the process at once: no
    clean-up ran (temporaries stayed; zoo tune --workers left its chief and workers running
    with the project locked) and nothing was said. It now stops a command as Ctrl-C does:
    its clean-up runs, one line, exit code 143 (128 + SIGTERM)."""
    import signal
    import textwrap
    started, cleaned = tmp_path / "started", tmp_path / "cleaned"
    script = textwrap.dedent(f"""
        import sys, time
        from zoo import cli
        def configure_list(parser):
            def run(args):
                try:
                    open({str(started)!r}, "w").close()
                    time.sleep(600)
                finally:
                    open({str(cleaned)!r}, "w").close()
            return run
        cli.configure_list = configure_list
        sys.exit(cli.main(["list"]))
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal: a process started in the background (a CI runner's
        # "cmd &") inherits SIGINT ignored, and the command would not see it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_marker(started, proc, "the command never started")
        proc.send_signal(getattr(signal, sig))
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code
    assert err.splitlines() == [line]
    assert cleaned.exists()


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_option_of_every_command_says_what_it_does(command):
    """``zoo COMMAND --help`` explains each argument (its default where it has one)."""
    parser = cli.build_parser(command).command_parser
    silent = [action.option_strings[0] if action.option_strings else action.dest
              for action in parser._actions if not action.help]
    assert silent == []


@pytest.mark.parametrize("exc, code, line", [
    (ValueError("input_shape must be\n   three integers"), 2,
     "zoo: error: input_shape must be three integers"),
    (cli.CLIError("no registered model matches 'x*'"), 2,
     "zoo: error: no registered model matches 'x*'"),
    (FileNotFoundError("no such file: a.png"), 2, "zoo: error: no such file: a.png"),
    (KeyError("images"), 2, "zoo: error: 'images'"),
    (FileExistsError("runs/x exists"), 2, "zoo: error: runs/x exists"),
    (IsADirectoryError("a.png is a directory"), 2, "zoo: error: a.png is a directory"),
    (NotADirectoryError("m is not a directory"), 2, "zoo: error: m is not a directory"),
    (PermissionError("out: permission denied"), 2, "zoo: error: out: permission denied"),
    (TypeError("batch_size must be an int"), 2, "zoo: error: batch_size must be an int"),
    (RuntimeError("the GPU ran out of memory"), 1, "zoo: error: the GPU ran out of memory"),
    (RuntimeError(), 1, "zoo: error: RuntimeError"),
    (OSError(28, "No space left on device"), 1, "zoo: error: [Errno 28] No space left on device"),
    # (TensorFlow's line, op and device details and all, said nothing of what to change)
    ("oom", 1, "zoo: error: out of memory: OOM when allocating tensor with "
               "shape[1,100000,100000,1] and type float; a smaller batch (--batch-size) or "
               "input size (--image-size) needs less"),
    (MemoryError(), 1, "zoo: error: out of memory: MemoryError; a smaller batch (--batch-size) "
                       "or input size (--image-size) needs less"),
    # (TensorFlow's for a full disk is a ResourceExhaustedError too: it was called out of
    # memory, with advice on the batch size)
    ("full disk", 1, "zoo: error: {{function_node __wrapped__SaveV2_dtypes_27_device_/job:"
                     "localhost/replica:0/task:0/device:CPU:0}} /m/variables/variables_temp/"
                     "part-00000-of-00001.data-00000-of-00001.tempstate966; No space left "
                     "on device [Op:SaveV2]"),
])
def test_bad_input_exits_with_2_and_other_failures_with_1_in_one_line(monkeypatch, capsys, exc,
                                                                      code, line):
    from zoo import startlog
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setattr(startlog, "_command_line_level", None)

    if exc == "oom":   # as `zoo train lenet5 --image-size 100000,100000` ended
        import tensorflow as tf
        exc = tf.errors.ResourceExhaustedError(None, None, (
            "{{function_node __wrapped__IteratorGetNext_output_types_1_device_/job:localhost/"
            "replica:0/task:0/device:CPU:0}} OOM when allocating tensor with "
            "shape[1,100000,100000,1] and type float on /job:localhost/replica:0/task:0/"
            "device:CPU:0 by allocator mklcpu\n [[{{node resize/ResizeBilinear}}]] "
            "[Op:IteratorGetNext] name: "))
    elif exc == "full disk":   # as zoo export into a full disk ended
        import tensorflow as tf
        exc = tf.errors.ResourceExhaustedError(None, None, (
            "{{function_node __wrapped__SaveV2_dtypes_27_device_/job:localhost/replica:0/"
            "task:0/device:CPU:0}} /m/variables/variables_temp/part-00000-of-00001.data-"
            "00000-of-00001.tempstate966; No space left on device [Op:SaveV2]"))

    def configure_list(parser):
        def run(args):
            raise exc
        return run

    monkeypatch.setattr(cli, "configure_list", configure_list)
    assert cli.main(["list"]) == code
    assert capsys.readouterr().err == line + "\n"


def test_no_command_prints_the_help_and_exits_with_2(monkeypatch, capsys):
    from zoo import startlog
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setattr(startlog, "_command_line_level", None)
    assert cli.main([]) == 2
    assert capsys.readouterr().out.startswith("usage: zoo [-h] [--version] COMMAND ...")


def test_signal_exit_codes_are_the_shells():
    assert cli.signal_exit_code(cli.Terminated()) == 143
    assert cli.signal_exit_code(KeyboardInterrupt()) == 130


def test_shapes_and_numbers_from_the_command_line():
    import argparse
    import math
    assert cli.parse_shape("32x32x1") == (32, 32, 1) == cli.parse_shape("32,32,1")
    non_negative = cli.number_type("a non-negative number of milliseconds",
                                   lambda v: 0 <= v < math.inf)
    assert non_negative("0") == 0.0 and non_negative("2.5") == 2.5
    for text in ("abc", "nan", "-1", "inf"):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=f"expected a non-negative number of milliseconds; received "
                                 f"'{text}'"):
            non_negative(text)


@pytest.mark.parametrize("option", ["--batch-size", "--top-k"])
@pytest.mark.parametrize("value", ["inf", "1e999", "Infinity"])
def test_an_infinite_count_is_refused_by_the_option_parser(capsys, option, value):
    # Found by generated option values: `zoo evaluate --batch-size 1e999` ended with
    # "zoo: error: cannot convert float infinity to integer", exit code 1, no option named.
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(cli.build_parser("evaluate"), ["evaluate", "m", option, value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"zoo evaluate: error: argument {option}: expected a positive integer; "
        f"received '{value}'")


@pytest.mark.parametrize("argv", [["train", "lenet5", "--lr", "--epochs", "2"],
                                  ["train", "lenet5", "--lr", "--epochs=2"],
                                  ["train", "lenet5", "--lr", "--", "2"],
                                  ["train", "lenet5", "--epochs", "2", "--lr"]])
def test_an_option_name_or_dashes_after_an_option_are_no_value_of_it(capsys, argv):
    """A value forgotten before another option (or ``--``, or at the end) is named as
    forgotten, not read as the value (``--lr=--epochs``)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(cli.build_parser("train"), argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "zoo train: error: argument --lr: expected one argument")


@pytest.mark.parametrize("argv,model_dir,images", [
    (["predict", "m", "--", "-scan.png"], "m", ["-scan.png"]),
    (["predict", "--digits", "8", "--", "-models/lenet5"], "-models/lenet5", []),
    (["predict", "--", "-m", "a.png", "-b.png"], "-m", ["a.png", "-b.png"]),
    (["predict", "m", "--top-k", "3", "a.png", "--", "-b.png", "--top-k", "--"], "m",
     ["a.png", "-b.png", "--top-k", "--"]),
])
def test_arguments_after_dashes_are_positional_even_when_they_start_with_a_dash(argv, model_dir,
                                                                                images):
    # Intermixed parsing dropped the "--" and then took "-scan.png" for an option:
    # "unrecognized arguments: -scan.png", and a model directory named "-models/..." could
    # not be given at all ("the following arguments are required: MODEL_DIR, IMAGE").
    args = cli.parse_args(cli.build_parser("predict"), argv)
    assert (args.model_dir, args.images) == (model_dir, images)


def test_an_error_names_an_argument_after_dashes_as_given(capsys):
    argv = ["export", "--"] + [f"-r{i}" for i in range(12)]
    with pytest.raises(SystemExit):
        cli.parse_args(cli.build_parser("export"), argv)
    assert capsys.readouterr().err == (f"zoo export: error: unrecognized arguments: "
                                       f"{' '.join(argv[3:])}\n")


def test_list_with_a_pattern_no_model_matches_is_an_error(monkeypatch, capsys):
    from zoo import startlog
    monkeypatch.setattr(startlog, "_command_line_level", None)
    assert cli.main(["list", "resnet5*"]) == 0
    assert cli.main(["list", "ResNet*"]) == 2
    captured = capsys.readouterr()
    assert "| resnet50" in captured.out and "resnet18" not in captured.out
    assert captured.err == ("zoo: error: no registered model matches 'ResNet*' (a shell-style, "
                            "case-sensitive pattern such as 'resnet*'). Known models: "
                            f"{', '.join(zoo.list_models())}\n")
    assert cli.main(["list", ""]) == 2   # an empty pattern matches nothing (it listed all)
    assert capsys.readouterr().err.startswith("zoo: error: no registered model matches '' ")


def test_a_second_sigterm_ends_the_process_at_once():
    import signal
    before = signal.getsignal(signal.SIGTERM)
    with cli.sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(cli.Terminated):
            handler(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_sigterm_can_leave_the_clean_up_to_end():
    # A zoo tune --workers N cluster's process (main(quiet_stop=True)): a SIGTERM to the
    # whole process group, then its command's own, ended the chief in its clean-up.
    import signal
    before = signal.getsignal(signal.SIGTERM)
    with cli.sigterm_as_interrupt(second_sigterm_ends=False):
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(cli.Terminated):
            handler(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == before
    with cli.sigterm_as_interrupt():     # the next context: a second SIGTERM ends it again
        with pytest.raises(cli.Terminated):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_as_interrupt_restores_the_handler_it_found():
    import signal
    before = signal.getsignal(signal.SIGTERM)

    def own(signum, frame):
        pass

    signal.signal(signal.SIGTERM, own)
    try:
        with cli.sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not own
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, before)


def zoo_list_running(setup, run_body):
    """``zoo list`` in a fresh process, its command replaced by ``run_body`` (the body of
    ``run(args)``, after the module-level ``setup``), with Ctrl-C as in a terminal; the
    finished process."""
    import signal
    import textwrap
    body = textwrap.indent(textwrap.dedent(run_body), " " * 8)
    script = (textwrap.dedent(setup) + "from zoo import cli\n"
              "def configure_list(parser):\n    def run(args):\n" + body +
              "\n    return run\ncli.configure_list = configure_list\n"
              "sys.exit(cli.main(['list']))\n")
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("sig,code,line", [("SIGTERM", 143, "zoo: terminated"),
                                           ("SIGINT", 130, "zoo: interrupted")])
def test_a_signal_that_arrives_in_a_finalizer_still_stops_the_command(tmp_path, sig, code, line):
    """A signal whose exception Python raised inside a finalizer (a weakref callback or
    ``__del__``, run by the garbage collector in the middle of TensorFlow's and Keras' code)
    was lost: Python printed "Exception ignored in ..." and its traceback, and the command
    went on to the end with exit code 0 (seen with zoo tune, SIGTERM at 12 s). It now stops
    the command as any other Ctrl-C or SIGTERM does."""
    cleaned, finished = tmp_path / "cleaned", tmp_path / "finished"
    proc = zoo_list_running(f"""
        import os, signal, sys, time
        class Finalized:
            def __del__(self):   # the signal arrives while a finalizer runs
                os.kill(os.getpid(), signal.{sig})
                for _ in range(10 ** 6):
                    pass
    """, f"""
        try:
            Finalized()
            for _ in range(50):
                time.sleep(0.1)
            open({str(finished)!r}, "w").close()
        finally:
            open({str(cleaned)!r}, "w").close()
        return 0
    """)
    assert (proc.returncode, proc.stderr.splitlines()) == (code, [line])
    assert cleaned.exists() and not finished.exists()


@pytest.mark.parametrize("sig,code,line", [("SIGTERM", 143, "zoo: terminated"),
                                           ("SIGINT", 130, "zoo: interrupted")])
def test_a_signal_keras_swallows_still_stops_the_training(tmp_path, sig, code, line):
    """Keras reads each metric inside a bare ``except: pass`` (``pythonify_logs``): a signal
    that arrived while it waited for a value was swallowed there, and the command trained on
    to exit code 0 (zoo tune, SIGTERM at 5 s). The training now stops after that batch."""
    finished = tmp_path / "finished"
    proc = zoo_list_running(f"""
        import os, signal, sys
        import keras
        import zoo
        from zoo import train
        class Swallowing(keras.callbacks.Callback):   # as Keras' pythonify_logs does
            def on_train_batch_end(self, batch, logs=None):
                if batch == 1 and not hasattr(self, "done"):
                    self.done = True
                    try:
                        os.kill(os.getpid(), signal.{sig})
                        for _ in range(10 ** 7):
                            pass
                    except:  # noqa: E722
                        pass
    """, f"""
        train.fit(zoo.lenet5(), "digits", epochs=3, verbose=0,
                  run_dir={str(tmp_path / "run")!r}, callbacks=[Swallowing()])
        open({str(finished)!r}, "w").close()
        return 0
    """)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.splitlines()[-1] == line
    assert not finished.exists()


@pytest.mark.parametrize("args", [
    ["train", "lenet5", "--epochs", "1", "--run-dir", "{long}/run"],
    ["train", "lenet5", "--epochs", "1", "--export", "--base-dir", "{long}"],
    ["predict", "{tmp}/no-model", "--digits", "2", "--out", "{long}/masks"],
    ["tune", "lenet5", "--max-trials", "1", "--epochs", "1", "--directory", "{long}"],
])
def test_a_path_with_a_name_over_255_bytes_is_refused_before_any_work(args, tmp_path, capsys):
    """No file system takes a file or directory name over 255 bytes: a run directory, an
    export's base directory, --out or --directory with such a part failed with
    "[Errno 36] File name too long" (exit code 1), after the training for some."""
    long = str(tmp_path / ("x" * 300))
    args = [a.format(long=long, tmp=tmp_path) for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoo: error: ")
    assert "is 300 bytes, and a file or directory name has at most 255" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["train", "lenet5", "--epochs", "1", "--run-dir", "{long}/run"],
    ["train", "lenet5", "--epochs", "1", "--export", "--base-dir", "{long}"],
    ["predict", "{tmp}/no-model", "--digits", "2", "--out", "{long}/masks"],
    ["tune", "lenet5", "--max-trials", "1", "--epochs", "1", "--directory", "{long}"],
])
def test_a_path_too_long_for_the_files_written_in_it_is_refused_before_any_work(
        args, tmp_path, capsys):
    """A directory whose path leaves too few of the system's 4095 bytes for the files in it
    failed with TensorFlow's "File name too long" error, naming a temporary file (zoo export:
    after converting the model; zoo train: once TensorBoard's first file was written), or
    with "[Errno 36]" (zoo tune, its project's lock file left)."""
    room = zoo.common.max_path_bytes(tmp_path) - len(os.fsencode(str(tmp_path)))
    long = str(tmp_path / "/".join(["d" * 200] * ((room - 200) // 201)) / "x")
    args = [a.format(long=long, tmp=tmp_path) for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoo: error: ")
    assert re.search(r" is too long: its absolute path is \d+ bytes, and the system takes "
                     r"paths of at most \d+, 256 of them kept for the files written in it; "
                     r"use a shorter path$", err.strip())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_names_counts_and_paths_are_refused_before_tensorflow_is_imported(tmp_path):
    """A mistyped model or dataset name, a missing folder or file, a count below its least,
    an option without the one it goes with, a directory that cannot be made (zoo tune's
    --directory and --export-dir, zoo export's --base-dir), zoo tune's --cv and zoo export's
    --version of an existing version were refused after TensorFlow's import (~6 s each
    here), an image size, hyperparameter or objective after the data was loaded too: their
    checks need none and now come first. One process runs them in a row."""
    import json
    import os
    import zipfile
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    missing = tmp_path / "missing"
    # A run (its model.keras a zip with a config.json: the check made before the load) and a
    # version 1 of its model already exported
    run = tmp_path / "run"
    run.mkdir()
    with zipfile.ZipFile(run / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    (run / "info.json").write_text('{"model": "lenet5", "dataset": null}')
    exported = tmp_path / "sm"
    (exported / "lenet5" / "1").mkdir(parents=True)
    cases = [
        (["train", "lenet6"], "Unknown model 'lenet6'. Did you mean: lenet5"),
        (["train", "lenet5", "--dataset", "mnistt"], "Unknown dataset 'mnistt'. Did you mean"),
        (["train", "lenet5", "--dataset", f"folder:{missing}"],
         f"Dataset folder not found: '{missing}'"),
        (["train", "lenet5", "--epochs", "0"], "--epochs must be >= 1. Received: 0"),
        (["train", "lenet5", "--batch-size", "0"], "--batch-size must be >= 1. Received: 0"),
        (["train", "lenet5", "--patience", "-1"], "--patience must be >= 0. Received: -1"),
        (["train", "lenet5", "--monitor", "val_acc"], "--monitor must be one of val_loss, "
         "val_accuracy, loss, accuracy for a classification model. Received: --monitor val_acc"),
        (["train", "lenet5", "--no-lite"], "--no-lite goes with --export"),
        (["train", "lenet5", "--run-dir", f"{a_file}/run"],
         f"--run-dir {a_file}/run cannot be made: {a_file} is a file"),
        (["train", "lenet5", "--export", "--base-dir", f"{a_file}/sm"],
         f"{a_file} is a file, not a directory: the export goes to"),
        (["tune", "lenet5", "--dataset", "mnistt"], "Unknown dataset 'mnistt'"),
        (["tune", "lenet5", "--dataset", f"folder:{missing}"], "Dataset folder not found"),
        (["tune", "lenet5", "--cv", "1"],
         "cv must be None or an integer >= 2 (folds). Received: cv=1"),
        (["tune", "lenet5", "--cv", "2"], "cv (cross-validation) works with the random"),
        (["tune", "lenet5", "--directory", f"{a_file}/runs"],
         f"directory (--directory) '{a_file}/runs' cannot be made: {a_file} is a file"),
        # (two mistakes: refused in search()'s order)
        (["tune", "lenet5", "--directory", f"{a_file}/runs", "--cv", "1"], "cv must be None"),
        (["tune", "lenet5", "--export", "--export-dir", f"{a_file}/sm"],
         f"export_dir (--export-dir) '{a_file}/sm' cannot be made: {a_file} is a file"),
        # An image size the model does not take (the builder's message; U-Net trains with
        # padding=same depth=3 on shapes, which --model-arg changes), an unknown
        # hyperparameter, a value it does not take, an objective no model of the space
        # reports: refused here too (they were refused after the data was loaded, 5-28 s)
        (["train", "lenet5", "--image-size", "3"], "lenet5: input height and width must be "
         "at least 32 (the smallest size the architecture reduces to a valid output). "
         "Received: input_shape=(3, 3, 1)"),
        (["train", "lenet5", "--dataset", "cifar10", "--image-size", "16"],
         "lenet5: input height and width must be at least 32 (the smallest size the "
         "architecture reduces to a valid output). Received: input_shape=(16, 16, 3)"),
        (["train", "inception_v3", "--image-size", "50"], "inception_v3: input height and "
         "width must be at least 75 (the smallest size"),
        (["train", "googlenet", "--image-size", "40", "--channels", "3"], "googlenet: input "
         "height and width must be at least 65 (the auxiliary classifiers' unpadded 5x5/3 "
         "average pooling after inception 4a and 4d needs it"),
        (["train", "unet", "--image-size", "100"], "unet: input height 100 is not valid for "
         "padding='same' with depth=3: it must be a multiple of 2**depth = 8; nearest valid: "
         "96, 104. Received: input_shape=(100, 100, 3)"),
        (["train", "unet", "--image-size", "96,100", "--model-arg", "depth=4"],
         "unet: input width 100 is not valid for padding='same' with depth=4: it must be a "
         "multiple of 2**depth = 16; nearest valid: 96, 112."),
        (["train", "unet", "--image-size", "64", "--model-arg", "padding=valid"],
         "unet: input height 64 is not valid for padding='valid' with depth=3: it must be a "
         "size for which every 2x2 max pooling sees an even size and the unpadded "
         "convolutions leave a positive output; nearest valid: 92. padding='same' "
         "(--model-arg padding=same) takes 64x64"),
        (["tune", "lenet5", "--image-size", "3"],
         "lenet5 needs images of at least 32x32; received image size 3x3"),
        (["tune", "inception_v3", "--image-size", "50,50"],
         "inception_v3 needs images of at least 75x75; received image size 50x50"),
        (["tune", "unet", "--image-size", "100"], "unet needs an image size that is a "
         "multiple of 2**depth; received image size 100x100, which depths 3, 4 and 5 of the "
         "space do not fit: limit the space to depth 2 (--set depth=2) or use a size that is "
         "a multiple of 32"),
        (["tune", "unet", "--image-size", "32", "--set", "depth=2,6"], "unet needs an image "
         "size that is a multiple of 2**depth; received image size 32x32, which depth 6 of "
         "the space does not fit: limit the space to depth 2 (--set depth=2) or use a size "
         "that is a multiple of 64"),
        (["tune", "lenet5", "--set", "foo=1:3"], "unknown hyperparameter 'foo' for lenet5. "
         "Known: variant, optimizer, lr, lr_schedule, weight_decay, clip_norm, batch_size, "
         "augment, label_smoothing."),
        (["tune", "lenet5", "--fix", "foo=3"], "unknown hyperparameter 'foo' for lenet5."),
        (["tune", "unet", "--fix", "label_smoothing=0.1"],
         "unknown hyperparameter 'label_smoothing' for unet."),
        (["tune", "lenet5", "--show-space", "--set", "foo=1:3"],
         "unknown hyperparameter 'foo' for lenet5."),
        (["tune", "lenet5", "--set", "lr=abc"],
         "hyperparameter 'lr' takes float values. Received: 'abc'"),
        (["tune", "resnet34", "--fix", "depth=50"],
         "resnet34 fixes depth=34; received fix depth=50. Tune 'resnet' to choose the depth."),
        (["tune", "lenet5", "--objective", "val_foo"], "objective 'val_foo' is not a metric "
         "the lenet5 model reports. Allowed: accuracy, loss, val_accuracy, val_loss."),
        (["tune", "unet", "--objective", "val_foo:max"], "objective 'val_foo' is not a metric "
         "the unet model reports. Allowed: accuracy, loss, mean_iou, val_accuracy, val_loss, "
         "val_mean_iou."),
        (["evaluate", str(tmp_path), "--dataset", "mnistt"], "Unknown dataset 'mnistt'"),
        (["evaluate", str(tmp_path), "--split", "dev"], "split must be one of 'train', "
         "'validation' (or 'val'), 'test', 'all'. Received: split='dev'"),
        (["export", str(missing)], f"no such run directory or .keras file: '{missing}'"),
        (["export", str(run), "--base-dir", f"{a_file}/sm"],
         f"{a_file} is a file, not a directory: the export goes to {a_file}/sm/lenet5/"),
        (["export", str(run), "--base-dir", str(exported), "--version", "1"],
         f"version 1 of 'lenet5' already exists in {exported}/lenet5; pass overwrite=True"),
        (["export", str(run / "model.keras"), "--name", "lenet5", "--base-dir", str(exported),
          "--version", "1"], "version 1 of 'lenet5' already exists"),
        (["table", f"{missing}.keras"], "no such run directory or .keras file"),
        (["summary", f"{missing}/"], "no such run directory or .keras file"),
    ]
    code = ("import contextlib, io, json, sys\n"
            "from zoo.cli import main\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        code = main(argv)\n"
            "    print(json.dumps([code, err.getvalue(),\n"
            "                      sorted({'tensorflow', 'keras', 'pandas'} & set(sys.modules))]))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", code, json.dumps([c[0] for c in cases])],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(answers) == len(cases), (r.stdout[-2000:], r.stderr[-2000:])
    for (argv, message), (code, err, imported) in zip(cases, answers):
        assert code == 2 and err.startswith(f"zoo: error: {message}"), (argv, code, err)
        assert err.count("\n") == 1, (argv, err)
        # nor pandas (~0.5 s of `import zoo`, before), but where the command's own options
        # come from zoo.profile, whose tables are pandas'
        allowed = ["pandas"] if argv[0] in ("table", "summary") else []
        assert imported in ([], allowed), (argv, imported)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "a_file", "run", "run/info.json", "run/model.keras", "sm", "sm/lenet5",
        "sm/lenet5/1"]   # nothing written
