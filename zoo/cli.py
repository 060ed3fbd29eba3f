"""The ``zoo`` command line:
``zoo list | table | summary | train | export | predict | serve | tune``.

Each subcommand lives beside the code it drives: the module named in
``COMMANDS`` provides ``configure_<command>(parser)``, which adds the
subcommand's arguments and returns the function that runs it. Only the module
of the command being run is imported.

Bad input ends the command with exit code 2 and one line on stderr
(``zoo: error: ...``); set ``ZOO_DEBUG=1`` to see the traceback. Ctrl-C and SIGTERM stop a
command with its clean-up run and one line (``zoo: interrupted``, exit code 130;
``zoo: terminated``, 143).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import signal
import sys
import threading

COMMANDS = {
    "list": ("zoo.cli", "list the registered models"),
    "table": ("zoo.cli", "print a model's layer table"),
    "summary": ("zoo.profile", "per-layer parameters, multiply-adds, memory, receptive field"),
    "train": ("zoo.train_cli", "train a model on a dataset"),
    "export": ("zoo.export", "export a trained model as a versioned SavedModel"),
    "predict": ("zoo.serving", "predict images with an exported model"),
    "evaluate": ("zoo.evaluation", "evaluate an exported model on a dataset split"),
    "serve": ("zoo.serving", "serve exported models over TensorFlow Serving's REST API"),
    "tune": ("tuning.search", "hyperparameter search with keras-tuner"),
}


class CLIError(Exception):
    """A user error the CLI reports in one line (exit code 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C's ``KeyboardInterrupt`` is, so that a
    command stops the same way: its clean-up runs (temporaries, child processes) and
    ``zoo train`` / ``zoo tune`` say how to resume."""


#: The interrupt (:class:`Terminated`, ``KeyboardInterrupt``) raised under
#: :func:`sigterm_as_interrupt`, for :func:`raise_if_interrupted`.
_raised = None
#: SIGTERM's handler once one has been raised under :func:`sigterm_as_interrupt`.
_after_sigterm = signal.SIG_DFL


def _terminate(signum, frame):
    """SIGTERM's handler under :func:`sigterm_as_interrupt`."""
    global _raised
    signal.signal(signal.SIGTERM, _after_sigterm)
    _raised = Terminated
    raise Terminated()


def _interrupt(signum, frame):
    """SIGINT's handler under :func:`sigterm_as_interrupt`: Python's, remembered."""
    global _raised
    _raised = KeyboardInterrupt
    signal.default_int_handler(signum, frame)


def raise_if_interrupted() -> None:
    """Raise again the Ctrl-C or SIGTERM this command was stopped by, for code that runs
    after library code that may have swallowed it: Keras reads each metric inside a bare
    ``except: pass`` (``pythonify_logs``), so a signal that arrives while it waits for a
    metric's value was lost, and the command ran on to exit code 0. Nothing outside
    :func:`sigterm_as_interrupt` (or before a signal)."""
    if _raised is not None:
        raise _raised()


def _signal_again(unraisable, previous_hook):
    """``sys.unraisablehook`` under :func:`sigterm_as_interrupt`: a Ctrl-C or SIGTERM whose
    exception was raised inside a finalizer (a weakref callback or ``__del__`` the garbage
    collector ran in the middle of the command) cannot leave it, and Python would print
    "Exception ignored in ..." with a traceback and go on, the signal lost. The signal is sent
    again instead, from a thread a moment later, so that it reaches the command's own code
    (sent at once, it would raise in this hook)."""
    exc = unraisable.exc_value
    if (not isinstance(exc, KeyboardInterrupt)
            or threading.current_thread() is not threading.main_thread()):
        previous_hook(unraisable)
        return
    if isinstance(exc, Terminated):
        signum = signal.SIGTERM
        signal.signal(signal.SIGTERM, _terminate)   # _terminate had set the default
    elif signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _interrupt):
        signum = signal.SIGINT
    else:   # a KeyboardInterrupt of no signal zoo can send again
        previous_hook(unraisable)
        return
    again = threading.Timer(0.05, os.kill, args=(os.getpid(), signum))
    again.daemon = True
    again.start()


@contextlib.contextmanager
def sigterm_as_interrupt(*, second_sigterm_ends=True):
    """A context in which SIGTERM raises :class:`Terminated` (once: a second SIGTERM ends
    the process at once, or with ``second_sigterm_ends=False`` is ignored, for a process
    whose parent stops it and kills it if it takes too long); without it Python ends at
    SIGTERM, no ``finally`` run. A Ctrl-C or SIGTERM that arrives while a finalizer runs is
    not lost (:func:`_signal_again`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    global _raised, _after_sigterm
    _after_sigterm = signal.SIG_DFL if second_sigterm_ends else signal.SIG_IGN
    previous = signal.signal(signal.SIGTERM, _terminate)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:   # not where Ctrl-C is ignored
        signal.signal(signal.SIGINT, _interrupt)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _signal_again(unraisable, previous_hook)
    try:
        yield
    finally:
        _raised, _after_sigterm = None, signal.SIG_DFL
        sys.unraisablehook = previous_hook
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def signals_deferred():
    """A context in which Ctrl-C and SIGTERM wait: each that arrives is handled as usual (a
    ``KeyboardInterrupt``, :class:`Terminated`) once the block has run, for a short step
    that must not stop halfway (renaming a command's finished files into place). Outside
    the main thread, where no handler can be set, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in handlers.items():
        if callable(handler):   # (one that is ignored stays ignored)
            signal.signal(signum, lambda number, frame: received.append((number, frame)))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if callable(handler):
                signal.signal(signum, handler)
        for signum, frame in received[:1]:
            handlers[signum](signum, frame)


def signal_exit_code(exc: KeyboardInterrupt) -> int:
    """The exit code a shell gives a process ended by the signal behind ``exc``: 143 for
    SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def interrupted(exc: KeyboardInterrupt, prog: str) -> int:
    """Say in one line that ``prog`` was interrupted (Ctrl-C) or terminated (SIGTERM) and
    return the exit code a shell gives a process ended by that signal (130, 143)."""
    terminated = isinstance(exc, Terminated)
    print(f"{prog}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return signal_exit_code(exc)


def parse_shape(text: str) -> tuple:
    """``"224,224,3"`` -> ``(224, 224, 3)``."""
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 224,224,3; received {text!r}") from None


def add_format_option(parser):
    """``--format markdown|csv``: how ``zoo list``, ``zoo table`` and ``zoo summary`` print
    their tables (:func:`zoo.tables.to_text`)."""
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown",
                        help="output format (default: markdown)")


def configure_list(parser):
    parser.add_argument("pattern", nargs="?", default=None,
                        help="shell-style filter, e.g. 'resnet*'")
    add_format_option(parser)

    def run(args):
        from zoo import tables
        from zoo.registry import list_models, model_info_table
        if args.pattern is not None and not list_models(args.pattern):   # ("" too)
            raise CLIError(f"no registered model matches {args.pattern!r} (a shell-style, "
                           f"case-sensitive pattern such as 'resnet*'). Known models: "
                           f"{', '.join(list_models())}")
        print(tables.to_text(model_info_table(args.pattern), args.format).rstrip())
        return 0

    return run


def configure_table(parser):
    from zoo.profile import add_model_arguments, summary_model
    add_model_arguments(parser)
    add_format_option(parser)

    def run(args):
        import zoo
        model = summary_model(args.name, args.input_shape)
        print(zoo.tables.to_text(zoo.layer_table(model), args.format).rstrip())
        return 0

    return run


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``PROG: error: ...``, exit 2)."""

    #: ``{stand-in: argument}`` of the arguments after ``--`` being parsed (:func:`parse_args`),
    #: for a message that names one.
    stand_ins = {}

    def error(self, message):
        for stand_in in sorted(self.stand_ins, key=len, reverse=True):   # (\x0010 before \x001)
            message = message.replace(stand_in, self.stand_ins[stand_in])
        self.exit(2, f"{self.prog}: error: {message}\n")


def number_type(expected: str, accept):
    """An argparse type: a number ``accept(value)`` holds for (NaN for text that is not a
    number), refused as ``expected {expected}; received '...'`` otherwise."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        try:
            accepted = accept(value)
        except (OverflowError, ValueError):   # int(inf) in an integer check: was raised as
            accepted = False                  # "cannot convert float infinity to integer"
        if not accepted:
            raise argparse.ArgumentTypeError(f"expected {expected}; received {text!r}")
        return value
    return parse


def ignore_label_arg(text) -> int:
    """``--ignore-label`` value of ``zoo train`` / ``zoo tune``: an integer mask value."""
    from zoo.common import MAX_IGNORE_LABEL
    return int(number_type(f"an integer from 0 to {MAX_IGNORE_LABEL}",
                           lambda v: v.is_integer() and 0 <= v <= MAX_IGNORE_LABEL)(text))


def version_line() -> str:
    """``zoo 0.1.0 (TensorFlow 2.21.0, Keras 3.15.1, keras-tuner 1.4.8, Python 3.11.7)``,
    read from the installed packages' metadata (nothing is imported)."""
    import platform
    from importlib import metadata
    from zoo import __version__
    parts = []
    for label, dist in (("TensorFlow", "tensorflow"), ("Keras", "keras"),
                        ("keras-tuner", "keras-tuner")):
        try:
            parts.append(f"{label} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{label} not installed")
    return f"zoo {__version__} ({', '.join(parts)}, Python {platform.python_version()})"


def build_parser(command=None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s subparser is configured."""
    parser = OneLineParser(prog="zoo", description="Classic CNNs from their papers: build, "
                     "tune, train, export, serve.")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the versions of zoo and of the libraries it runs on")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            configure = getattr(importlib.import_module(module), f"configure_{name}")
            p.set_defaults(run=configure(p), command=name)
            parser.command_parser = p
    return parser


def parse_args(parser, argv):
    """``argv`` parsed by ``parser`` (from :func:`build_parser`). A command's own arguments
    are parsed intermixed, so options may come between positional arguments:
    ``zoo predict MODEL --top-k 3 IMAGE``, not only ``zoo predict MODEL IMAGE --top-k 3``
    (plain argparse would take MODEL alone as the positionals and call IMAGE unrecognized)."""
    command_parser = getattr(parser, "command_parser", None)
    if command_parser is None:
        return parser.parse_args(argv)
    args = _attach_dash_values(command_parser, argv[1:])
    if "--" not in args:
        return command_parser.parse_intermixed_args(args)
    # ``--``: what follows is positional, a file named ``-scan.png`` too. Intermixed parsing
    # drops the ``--`` in its first pass and took such a name for an option in its second
    # (``zoo predict MODEL -- -scan.png``: "unrecognized arguments: -scan.png"; ``zoo predict
    # --digits 8 -- -models/lenet5``: "the following arguments are required: MODEL_DIR"):
    # each is parsed as a stand-in that cannot be an option (nor a command line's text, which
    # holds no NUL), then put back.
    at = args.index("--")
    stand_ins = {f"\0{i}": value for i, value in enumerate(args[at + 1:])}
    command_parser.stand_ins = stand_ins
    try:
        namespace = command_parser.parse_intermixed_args(args[:at + 1] + list(stand_ins))
    finally:
        command_parser.stand_ins = {}
    for name, value in vars(namespace).items():
        if isinstance(value, str):
            setattr(namespace, name, stand_ins.get(value, value))
        elif isinstance(value, list):
            setattr(namespace, name, [stand_ins.get(v, v) if isinstance(v, str) else v
                                      for v in value])
    return namespace


def _attach_dash_values(parser, args):
    """``args`` with a value that starts with ``-`` attached to its option (``--input-shape
    -32,32,1`` -> ``--input-shape=-32,32,1``): argparse takes such a value for an option of its
    own and answers "expected one argument"; attached, the option's own check names it. A
    token that is one of the parser's options stays an option."""
    options = parser._option_string_actions
    out, i = [], 0
    while i < len(args):
        token = args[i]
        action = options.get(token)
        if (action is not None and action.nargs is None and i + 1 < len(args)
                and args[i + 1].startswith("-") and args[i + 1] != "--"
                and args[i + 1].split("=", 1)[0] not in options):
            out.append(f"{token}={args[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


#: What TensorFlow's out-of-memory errors say, within their op and device details.
_OOM_RE = re.compile(r"OOM when allocating tensor with shape\[[^\]]*\] and type \w+")


def error_line(exc: BaseException) -> str:
    """``exc``'s message in one line; running out of memory (TensorFlow's
    ``ResourceExhaustedError``, Python's ``MemoryError``) says so and what needs less. (A
    full disk is a ``ResourceExhaustedError`` too, which says "No space left on device".)"""
    message = " ".join(str(exc).split())
    full_disk = any(os.strerror(code) in message for code in (errno.ENOSPC, errno.EDQUOT))
    if not full_disk and (type(exc).__name__ == "ResourceExhaustedError"   # (TensorFlow's
                          or isinstance(exc, MemoryError)):                # for both)
        found = _OOM_RE.search(message)
        detail = found.group(0) if found else message or type(exc).__name__
        return (f"out of memory: {detail}; a smaller batch (--batch-size) or input size "
                f"(--image-size) needs less")
    return message or type(exc).__name__


def names_as_their_bytes(stream=None) -> None:
    """Let ``stream`` (standard output) write the file names Python read from the system as
    they are: one that is not UTF-8 (``caf\\xe9.png`` from an old archive) comes as
    ``caf\\udce9.png``, which a strict UTF-8 stream (a UTF-8 locale's) refused with a
    ``UnicodeEncodeError`` after the work was done (``zoo predict``'s table of that image);
    ``surrogateescape`` writes it as its own bytes, as ``ls`` does, and as Python's own
    streams do in the C locale."""
    stream = sys.stdout if stream is None else stream
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        with contextlib.suppress(Exception):   # (a stream that cannot: left as it is)
            stream.reconfigure(errors="surrogateescape")


def main(argv=None, *, quiet_stop=False) -> int:
    """Run the ``zoo`` command ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    ``quiet_stop``: for a process that another command started, stops and speaks for (a
    ``zoo tune --workers N`` cluster's): a Ctrl-C or SIGTERM ends it with its exit code and
    no line, wherever it arrives, and a second SIGTERM (a SIGTERM to the whole process
    group, then the command's own) does not cut its clean-up short."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names_as_their_bytes()
    from zoo.startlog import for_command_line
    for_command_line()   # TF_CPP_MIN_LOG_LEVEL 2, TensorFlow's load-time lines obeying it too
    command = argv[0] if argv and argv[0] in COMMANDS else None
    debug = os.environ.get("ZOO_DEBUG")
    try:
        with sigterm_as_interrupt(second_sigterm_ends=not quiet_stop):
            parser = build_parser(command)
            args = parse_args(parser, argv)
            if not getattr(args, "run", None):
                parser.print_help()
                return 2
            return int(args.run(args) or 0)
    except KeyboardInterrupt as exc:   # Ctrl-C, SIGTERM
        return signal_exit_code(exc) if quiet_stop else interrupted(exc, "zoo")
    except BrokenPipeError:
        # The reader of stdout is gone (`zoo summary resnet152 | head`): stop quietly, as
        # shell tools do, with stdout sent nowhere so that the flush at exit cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141   # 128 + SIGPIPE, a shell's code for a command ended by a closed pipe
    except SystemExit:
        raise
    except Exception as exc:  # one line, no traceback, for any failure
        if debug:
            raise
        from zoo.common import close_hdf5_files
        close_hdf5_files()   # one a failed write left open (keras-tuner's save_weights)
        print(f"zoo: error: {error_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, (ValueError, CLIError, FileNotFoundError,
                                     FileExistsError, IsADirectoryError, NotADirectoryError,
                                     PermissionError, TypeError, KeyError)) else 1


if __name__ == "__main__":
    sys.exit(main())
