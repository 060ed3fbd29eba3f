"""Hyperparameter search jobs: run, resume, distribute; trials as a DataFrame.

:func:`search` runs a keras-tuner search over a zoo family's space
(:mod:`tuning.hypermodels`) on a zoo dataset, writes the trials table
(``trials.csv``) and a plot (``search.png``) into the project directory (again each
time a trial ends),
evaluates the best model on the test split and, if asked, exports it with
``zoo.export``. ``zoo tune`` (:func:`configure_tune`) is the same on the command
line, including keras-tuner's chief/worker mode.

Project directory ``DIRECTORY/PROJECT/``: keras-tuner's own files (``oracle.json``,
``trial_*/``), ``search.json`` (the search's fingerprint), ``timings/`` (start and
end of every trial, one file per tuner process), ``trials.csv``, ``search.png``
and ``best.json`` (best hyperparameters, score, test metrics, export path).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
import warnings

from zoo.common import (MAX_NAME_BYTES, atomic_write, atomic_write_text, check_bool,
                         check_callbacks, check_directory_target, check_ignore_label,
                         check_path, check_seed, check_verbose, dataset_source, is_digits,
                         is_integer, progress_verbose, remove_path, require_tensorflow_backend,
                         save_weights_file)

__all__ = ["search", "TUNERS", "trials_table", "configure_tune"]

TUNERS = ("hyperband", "random", "bayesian", "grid")
FINGERPRINT = "search.json"
#: Set for a ``--workers N`` cluster's chief (:func:`_run_local_cluster`).
_LOCAL_CLUSTER = "ZOO_TUNE_LOCAL_CLUSTER_CHIEF"
#: Set for every process of a ``--workers N`` cluster: stopped (by the command that started
#: it, on Ctrl-C or SIGTERM), it exits without a word; that command says what was done.
_CLUSTER_MEMBER = "ZOO_TUNE_LOCAL_CLUSTER_MEMBER"
#: The lock file of a search's process in its project (a worker's: ``.tunerN.lock``).
LOCK = ".lock"
_UNTUNED = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
            "tuner/trial_id")


# -- small helpers -------------------------------------------------------------------------

def _save_checkpoint(callback):
    """keras-tuner's ``SaveBestEpoch._save_model``: the trial's best weights, written by
    :func:`zoo.common.save_weights_file` (all at once; a full disk refused before HDF5
    starts)."""
    save_weights_file(callback.model, callback.filepath)


def _write_json(path, data):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
    atomic_write(path, write)


def _json_default(value):
    try:
        import numpy as np
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def _role() -> str:
    """``"single"``, ``"chief"`` or ``"worker"`` from keras-tuner's environment variables."""
    from keras_tuner.src.distribute import utils
    if not utils.has_chief_oracle():
        return "single"
    return "chief" if utils.is_chief_oracle() else "worker"


def _direction(objective: str) -> tuple:
    """``"val_loss"`` -> ``("val_loss", "min")``; ``"val_iou:max"`` -> explicit."""
    name, _, direction = objective.partition(":")
    if direction and direction not in ("min", "max"):
        raise ValueError(f"objective direction must be 'min' or 'max'. Received: {objective!r}")
    if not direction:
        direction = "min" if ("loss" in name or "error" in name) else "max"
    return name, direction


def _check_types(*, objective, directory, set, fix, image_size, callbacks, verbose):
    """:func:`search`'s arguments of the wrong kind, refused before anything runs."""
    if objective is not None and not isinstance(objective, str):
        raise ValueError(f"objective must be a metric name such as 'val_accuracy' (or "
                         f"'NAME:min', 'NAME:max') or None. Received: objective={objective!r}")
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise ValueError(f"directory must be a path (str or os.PathLike). "
                         f"Received: directory={directory!r}")
    from tuning.assignments import check_set_fix
    check_set_fix(set, fix)
    if isinstance(image_size, (str, bytes)):      # not a sequence of two sizes
        raise ValueError(f"image_size must be (height, width) with positive integers. "
                         f"Received: image_size={image_size!r}")
    check_callbacks(callbacks)
    check_verbose(verbose)


def _check_export_target(export_dir, export_name) -> str:
    """The best model's export can go to ``export_dir`` under ``export_name``; returns
    ``export_dir`` as a ``str``."""
    from zoo.export import _check_name
    # ("" passed, and the whole search ran before the export refused it)
    export_dir = check_path("search", "export_dir", export_dir,
                            "the export's base directory (--export-dir)")
    if export_name is not None:
        _check_name(export_name)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise NotADirectoryError(f"export_dir (--export-dir) is not a directory: "
                                 f"{export_dir!r}")
    check_directory_target(export_dir, "export_dir (--export-dir)", "pass another directory",
                           repr(export_dir))
    return export_dir


def _check_arguments(*args, **kwargs) -> dict:
    """The arguments of ``search(*args, **kwargs)`` by name (search's defaults for those not
    given), after the checks of :func:`search` that need neither TensorFlow nor Keras, made
    here in its order before their import (~6 s): a tuner, count, flag, ``cv``, seed, ignore
    label or project name it does not take, a ``directory`` or export target that cannot be
    made. ``zoo tune`` makes them before its own imports too. The counts, ``cv`` and
    ``ignore_label`` come back as ``int``, ``export_dir`` as the export's base directory."""
    bound = _SEARCH_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    (tuner, max_trials, epochs, executions_per_trial, max_consecutive_failed_trials, objective,
     directory, set, fix, image_size, callbacks, verbose, resume, overwrite, export, download,
     deterministic, export_lite, export_dir, export_name, cv, seed, ignore_label, project) = (
        a[name] for name in (
            "tuner", "max_trials", "epochs", "executions_per_trial",
            "max_consecutive_failed_trials", "objective", "directory", "set", "fix",
            "image_size", "callbacks", "verbose", "resume", "overwrite", "export", "download",
            "deterministic", "export_lite", "export_dir", "export_name", "cv", "seed",
            "ignore_label", "project"))
    if tuner not in TUNERS:
        raise ValueError(f"unknown tuner {tuner!r}. Allowed: {', '.join(TUNERS)}.")
    counts = {}
    for arg, value in (("max_trials", max_trials), ("epochs", epochs),
                       ("executions_per_trial", executions_per_trial),
                       ("max_consecutive_failed_trials", max_consecutive_failed_trials)):
        if not is_integer(value) or value < 1:   # (a NumPy integer was refused)
            raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
        counts[arg] = int(value)
    executions_per_trial = counts["executions_per_trial"]
    _check_types(objective=objective, directory=directory, set=set, fix=fix,
                 image_size=image_size, callbacks=callbacks, verbose=verbose)
    # ("no" would count as True: a project deleted; 1 and 0 are no flags either)
    check_bool("search", resume=resume, overwrite=overwrite, export=export, download=download,
               deterministic=deterministic, export_lite=export_lite)
    if not export and (export_dir is not None or export_name is not None or not export_lite):
        # (ignored without export, where zoo tune refuses --export-dir and --no-lite)
        given = ([f"export_dir={export_dir!r}"] if export_dir is not None else []) + \
            ([f"export_name={export_name!r}"] if export_name is not None else []) + \
            ([] if export_lite else ["export_lite=False"])
        raise ValueError(f"export_dir, export_name and export_lite=False go with export=True. "
                         f"Received: export=False, {', '.join(given)}")
    if export_dir is None:
        export_dir = "saved_models"
    if cv is not None:
        if not is_integer(cv) or cv < 2:   # (a NumPy integer was refused)
            raise ValueError(f"cv must be None or an integer >= 2 (folds). Received: cv={cv!r}")
        cv = int(cv)
        if executions_per_trial != 1:
            raise ValueError(f"cv trains one model per fold; executions_per_trial must be 1 "
                             f"with it. Received: executions_per_trial={executions_per_trial}")
        if tuner == "hyperband":
            raise ValueError("cv (cross-validation) works with the random, bayesian and grid "
                             "tuners; hyperband continues one model's training across "
                             "brackets. Received: tuner='hyperband'")
    check_seed(seed)
    ignore_label = check_ignore_label(ignore_label)
    if project is not None:
        _check_project_name(project)
    check_directory_target(directory, "directory (--directory)", "pass another directory",
                           repr(os.fspath(directory)))
    if export:   # refused now, not after the whole search
        export_dir = _check_export_target(export_dir, export_name)
    return {**a, **counts, "export_dir": export_dir, "cv": cv, "ignore_label": ignore_label}


def _default_project(family, dataset_name, tuner):
    return f"{family}_{dataset_name}_{tuner}".replace(os.sep, "_")


def _check_project_name(project):
    """A project is one directory inside ``directory``: no path of its own."""
    seps = {"/", os.sep, os.altsep} - {None}
    if not isinstance(project, str) or project in ("", ".", "..") or \
            any(sep in project for sep in seps) or "\0" in project:
        raise ValueError(f"project must be a single directory name (no '/', not '.' or '..', "
                         f"not empty). Received: project={project!r}")
    size = len(project.encode("utf-8", "surrogateescape"))
    if size > MAX_NAME_BYTES:   # was "[Errno 36] File name too long" (exit code 1)
        raise ValueError(f"project must be a directory name of at most {MAX_NAME_BYTES} bytes, "
                         f"the longest file systems allow. Received: a name of {size} bytes, "
                         f"{project[:40]!r}...")


# -- the tuner ----------------------------------------------------------------------------

def _tuner_class(name):
    import keras_tuner as kt
    classes = {"hyperband": kt.Hyperband, "random": kt.RandomSearch,
               "bayesian": kt.BayesianOptimization, "grid": kt.GridSearch}
    base = classes[name]

    class ZooTuner(base):
        """keras-tuner's tuner plus per-trial timings and memory release."""

        #: the search's seed, given to a new oracle (see :func:`_seed_oracle`).
        zoo_seed = None

        def _populate_initial_space(self):
            # keras-tuner reloads a project only where this tuner id saved its state
            # ({tuner_id}.json, empty): a search begun in one process (tuner0) and resumed
            # as a cluster's chief, or the other way, began afresh over its trials.
            if not self._is_worker() and os.path.exists(self.oracle._get_oracle_fname()):
                self.reload()
                return
            # Declare the space without building a model (keras-tuner builds one to
            # discover conditional hyperparameters; the zoo spaces have none). Called for
            # a new project only: a reloaded oracle keeps its own seed and state.
            if self.zoo_seed is not None:
                _seed_oracle(self.oracle, self.zoo_seed)
            hp = self.oracle.get_space()
            self.hypermodel.declare_hyperparameters(hp)
            self.oracle.update_space(hp)

        def _build_hypermodel(self, hp):
            # A Hyperband trial that goes on training another's model loads that model's
            # checkpoint, whose optimizer state the new model's optimizer, not built yet,
            # does not take (it starts afresh, as keras-tuner's Hyperband has it): Keras
            # warned of it on stderr at every such trial, whatever the verbosity.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore",
                                        message="Skipping variable loading for optimizer")
                return super()._build_hypermodel(hp)

        def _build_and_fit_model(self, trial, *args, **kwargs):
            # keras-tuner's checkpoint of a trial's best epoch (SaveBestEpoch) was written in
            # place: killed meanwhile, half a file; on a full disk, HDF5 went on writing and
            # could end the search with a segmentation fault. Written all at once instead.
            from keras_tuner.src.engine import tuner_utils
            for callback in kwargs.get("callbacks", ()):
                if isinstance(callback, tuner_utils.SaveBestEpoch):
                    callback._save_model = functools.partial(_save_checkpoint, callback)
            return super()._build_and_fit_model(trial, *args, **kwargs)

        #: ``() -> [(train, held_out), ...]``: the cross-validation folds' pipelines made
        #: anew for each trial (a fold read by the trial before would shuffle in a new
        #: order), or None.
        zoo_folds = None
        #: ``() -> dataset``: the train pipeline made anew for each trial, or None. A
        #: pipeline shuffles in a new order each time it is read, so a trial given the
        #: search's one pipeline saw an order that depended on the trials this process
        #: ran before it; a new one starts from the seed's first order.
        zoo_train = None

        def run_trial(self, trial, *args, **kwargs):
            """With ``zoo_folds``: one model per fold, trained on the fold's train part and
            scored on its held-out part; keras-tuner averages the folds' best objective
            values (and best epochs), as it does for ``executions_per_trial``. With
            ``zoo_train``, the trial trains on a new train pipeline."""
            if self.zoo_train is not None and args:
                args = (self.zoo_train(),) + args[1:]
            if not self.zoo_folds:
                return super().run_trial(trial, *args, **kwargs)
            from keras_tuner.src.engine import tuner_utils
            kwargs.pop("validation_data", None)
            original_callbacks = kwargs.pop("callbacks", [])
            hp = trial.hyperparameters
            histories = []
            for train, held_out in self.zoo_folds():
                callbacks = self._deepcopy_callbacks(original_callbacks)
                callbacks.append(tuner_utils.TunerCallback(self, trial))
                model = self._try_build(hp)
                histories.append(self.hypermodel.fit(hp, model, train, validation_data=held_out,
                                                     callbacks=callbacks, **kwargs))
                del model
                gc.collect()
            return histories

        def on_trial_begin(self, trial):
            self._zoo_started = time.time()
            if self.zoo_seed is not None:
                # Every trial starts from the search's seed (weights, dropout, shuffles):
                # its score does not depend on what this process ran before, on which
                # worker runs it, or on a resume, and trials differ by their
                # hyperparameters only.
                import keras
                keras.utils.set_random_seed(self.zoo_seed)
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            # The timing first: ending the trial raises when it is one failure too many.
            end = time.time()
            path = os.path.join(self.project_dir, "timings", f"{self.tuner_id}.json")
            timings = _read_json(path, {})
            timings[trial.trial_id] = {"start": self._zoo_started, "end": end,
                                       "seconds": round(end - self._zoo_started, 3),
                                       "tuner": self.tuner_id}
            failed = str(trial.status) in ("FAILED", "INVALID")
            if failed:     # the traceback: trial.json
                lines = (trial.message or "").strip().splitlines()
                last = _short_error(lines[-1]) if lines else trial.status
                # A worker's trial reaches the chief's oracle without its message.
                timings[trial.trial_id]["message"] = last
            _write_json(path, timings)
            if failed:
                print(f"trial {trial.trial_id} failed: {last}", file=sys.stderr)
            try:
                super().on_trial_end(trial)
            finally:
                import keras
                keras.backend.clear_session()
                gc.collect()

        def save(self):
            # keras-tuner writes its state files in place: killed in the middle of a
            # write, a search left an empty oracle.json that no run could reload.
            if not self._is_worker():
                self.oracle.save()
            atomic_write_text(self._get_tuner_fname(), json.dumps(self.get_state()))

        #: On a restarted chief: keep each trial that was running for the worker that
        #: ran it (see :meth:`reload`). Off for a local cluster's chief, whose workers of
        #: before cannot reach it (a new port) and whose trials are retried by any worker.
        zoo_hold_running = False

        def reload(self):
            """keras-tuner's reload, without running an ended trial again: its oracle
            saves its state before it lets an ended trial go (and a chief does not save
            it again once its workers stop), so a reloaded oracle may hold an ended trial
            as running and queue it for a retry.

            With ``zoo_hold_running`` (a restarted chief), a trial that was running stays
            the trial of the worker that ran it, where keras-tuner queues it for the next
            worker that asks: a worker still training it reports it to the new chief, and
            one that stopped too gets it back when it joins again with its id; given to
            another worker, it was trained twice at once, into the same checkpoint."""
            if self._is_worker():
                super().reload()
                return
            if os.path.exists(self._get_tuner_fname()):
                super().reload()
            else:       # the project of another tuner id: the tuner's own state is empty
                self.oracle.reload()
            oracle = self.oracle
            _forget_unstarted(oracle)
            ended = set(oracle.end_order)
            oracle._retry_queue = [t for t in oracle._retry_queue if t not in ended]
            _restore_grid(oracle)
            if hasattr(oracle, "_random_state"):
                # BayesianOptimization's generator of the starting points of its optimiser
                # is not saved: keras-tuner made it anew from `seed or random.randint(1,
                # 10000)`, so a resumed search of seed 0 proposed other trials each time.
                import numpy as np
                oracle._random_state = np.random.RandomState(oracle.seed)
            if not self.zoo_hold_running:
                return
            saved = (_read_json(oracle._get_oracle_fname(), {}) or {}).get("ongoing_trials", {})
            for tuner_id, trial_id in saved.items():
                if trial_id in ended or trial_id not in oracle.trials:
                    continue
                oracle.ongoing_trials[tuner_id] = oracle.trials[trial_id]
                oracle.tuner_ids.add(tuner_id)
                if trial_id in oracle._retry_queue:
                    oracle._retry_queue.remove(trial_id)

    ZooTuner.__name__ = f"Zoo{base.__name__}"
    return ZooTuner


def _forget_unstarted(oracle):
    """Drop the trials of a reloaded ``oracle`` that its ``oracle.json`` never started.
    keras-tuner writes a new trial's ``trial.json``, then ``oracle.json``: a search killed
    between the two (SIGKILL, out of memory) left a trial that the reloaded oracle counted
    but had not started, so the resumed search ended one trial short, that trial
    ``RUNNING`` for good. Dropped, with its directory (its ``trial.json`` alone), it is made
    again, as it was: the oracle's random state is ``oracle.json``'s, from before it."""
    started = set(oracle.start_order)
    for trial_id in [t for t in oracle.trials if t not in started]:
        del oracle.trials[trial_id]
        shutil.rmtree(os.path.join(oracle._project_dir, f"trial_{trial_id}"),
                      ignore_errors=True)


def _restore_grid(oracle):
    """Where a reloaded grid ``oracle`` is in its grid. keras-tuner's grid oracle keeps it
    in memory only (its trials in the grid's order, and the ended trials whose next point
    is still to be made) and reloads neither: a finished grid search run again with a
    larger ``max_trials`` ran no trial more, and an interrupted one, resumed, ran its
    interrupted trial again and then stopped on a ``KeyError`` naming that trial."""
    import functools

    from keras_tuner.src.tuners.gridsearch import GridSearchOracle, LinkedList
    if not isinstance(oracle, GridSearchOracle) or not oracle.trials:
        return
    values = {t: trial.hyperparameters.values for t, trial in oracle.trials.items()}
    ordered = LinkedList()
    for trial_id in sorted(values, key=functools.cmp_to_key(
            lambda a, b: oracle._compare(values[a], values[b]))):
        ordered.insert(trial_id)
    oracle._ordered_ids = ordered
    # keras-tuner queues each trial as it ends; one whose next point was made is skipped.
    oracle._populate_next = [t for t in oracle.end_order if t in oracle.trials]


def _save_state_atomically(oracle):
    """Make ``oracle`` write ``oracle.json`` and the trials' ``trial.json`` files all at once
    (:func:`zoo.common.atomic_write_text`), as keras-tuner's own writers do not."""
    if getattr(oracle, "_zoo_atomic", False):
        return
    oracle.save = lambda: atomic_write_text(oracle._get_oracle_fname(),
                                            json.dumps(oracle.get_state()))
    oracle._save_trial = lambda trial: atomic_write_text(
        os.path.join(oracle._get_trial_dir(trial.trial_id), "trial.json"),
        json.dumps(trial.get_state()))
    end_trial = oracle.end_trial

    def end_trial_saved(trial):
        try:
            return end_trial(trial)
        except RuntimeError:
            # One failure too many: keras-tuner raises before it saves that trial, whose
            # trial.json stayed RUNNING, without its traceback. Its own state stays as it
            # was (the same command runs the trial again).
            if trial.trial_id in oracle.trials:
                oracle._save_trial(oracle.trials[trial.trial_id])
            raise

    oracle.end_trial = end_trial_saved
    oracle._zoo_atomic = True


def _nothing_left(oracle):
    """Whether a chief's ``oracle`` has no trial left to give, as a finished search's. Its
    oracle is asked for a trial, as a worker would ask; a trial it gives is queued for the
    next worker that asks. (keras-tuner's chief serves until a worker has been told to stop:
    alone on a finished search, it waited forever.)"""
    from keras_tuner.src.engine.trial import TrialStatus
    if oracle.ongoing_trials or oracle._retry_queue:
        return False
    probe = "zoo-chief-probe"
    trial = oracle.create_trial(probe)
    oracle.tuner_ids.discard(probe)
    if oracle.ongoing_trials.pop(probe, None) is not None:
        oracle._retry_queue.append(trial.trial_id)
        oracle.save()
    return trial.status == TrialStatus.STOPPED


def _stop_after_failures(oracle):
    """On a chief: one failed trial too many stops the search as in a single process.
    keras-tuner's oracle raised in the request of the worker whose trial it ended (that worker
    stopped with keras-tuner's error, a ``--workers`` cluster started it again to fail the
    same trial again, and the chief served on). The error is kept in ``oracle.zoo_stopped``
    for the chief to raise once its workers have stopped, and every worker that asks for a
    trial is told to stop."""
    from keras_tuner.src.engine import oracle as kt_oracle
    from keras_tuner.src.engine.trial import Trial, TrialStatus
    end_trial, create_trial = oracle.end_trial, oracle.create_trial
    oracle.zoo_stopped = None

    def ended(trial):
        try:
            return end_trial(trial)
        except RuntimeError as exc:
            if not str(exc).startswith("Number of consecutive failures exceeded"):
                raise
            # keras-tuner's oracle lock is not released when its end_trial raises: the
            # chief, which asks under it whether its workers are done, waited forever.
            if kt_oracle.THREADS[oracle] == threading.current_thread().name:
                kt_oracle.THREADS[oracle] = None
                kt_oracle.LOCKS[oracle].release()
            if oracle.zoo_stopped is None:     # the worker's error came in its timings
                error = _read_timings(oracle._project_dir).get(trial.trial_id, {})
                oracle.zoo_stopped = RuntimeError(f"{exc}\n{error.get('message', '')}")
            for tuner_id, ongoing in list(oracle.ongoing_trials.items()):
                if ongoing.trial_id == trial.trial_id:
                    del oracle.ongoing_trials[tuner_id]

    def create(tuner_id):
        if oracle.zoo_stopped is None:
            return create_trial(tuner_id)
        oracle.tuner_ids.discard(tuner_id)
        return Trial(oracle.get_space(), trial_id="stopped", status=TrialStatus.STOPPED)

    oracle.end_trial, oracle.create_trial = ended, create


def _seed_oracle(oracle, seed):
    """Seed keras-tuner's ``oracle`` with ``seed``. Its oracles take ``seed or
    random.randint(1, 10000)``: seed 0, the zoo's default, would draw a new seed in every
    process, and the same command would search other hyperparameters each time."""
    oracle.seed = oracle._seed_state = seed
    if hasattr(oracle, "_random_state"):      # BayesianOptimization's own generators
        import numpy as np
        oracle._random_state = np.random.RandomState(seed)
        oracle.gpr = oracle._make_gpr()


def _read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


@contextlib.contextmanager
def _without_reload_line(quiet):
    """With ``quiet``, drop keras-tuner's ``Reloading Tuner from .../tuner0.json`` (printed
    on stdout whatever the verbosity when a search resumes); anything else printed goes
    through."""
    if not quiet:
        yield
        return
    caught = io.StringIO()
    try:
        with contextlib.redirect_stdout(caught):
            yield
    finally:
        rest = "".join(line for line in caught.getvalue().splitlines(keepends=True)
                       if not line.startswith("Reloading Tuner from "))
        sys.stdout.write(rest)


class _RetracingFilter(logging.Filter):
    """Drops TensorFlow's ``N out of the last M calls to ... triggered tf.function
    retracing`` warning. Every trial builds a model of its own, whose train and test
    functions trace anew; TensorFlow counts those traces against one function (it keys them
    by their code), so on a small dataset (a few batches an epoch) the second trial already
    wrote two such warnings, which advise changes that do not apply to a search."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


class _ShortSleeps:
    """The ``time`` module with sleeps of at most a second (:func:`_chief_checks_often`)."""

    @staticmethod
    def sleep(seconds):
        time.sleep(min(seconds, 1.0))

    def __getattr__(self, name):
        return getattr(time, name)


def _chief_checks_often():
    """keras-tuner's chief, once it has told a worker to stop, looks every 20 s whether all
    its workers have stopped (``oracle_chief.start_server``): a search of two or more
    workers sat idle for up to 20 s at its end. Its module's sleeps are cut to a second."""
    try:
        from keras_tuner.src.distribute import oracle_chief
    except ImportError:     # another layout of keras-tuner: its own waits
        return
    if getattr(oracle_chief, "time", None) is time:
        oracle_chief.time = _ShortSleeps()


def _make_tuner(name, hypermodel, objective, *, max_trials, epochs, directory, project, seed,
                max_consecutive_failed_trials, executions_per_trial):
    import keras_tuner as kt
    if _role() == "chief":   # its search serves the workers until they have all stopped
        _chief_checks_often()
    common = dict(objective=kt.Objective(*_direction(objective)), seed=seed,
                  directory=directory, project_name=project, overwrite=False,
                  max_consecutive_failed_trials=max_consecutive_failed_trials,
                  executions_per_trial=executions_per_trial)
    cls = _tuner_class(name)
    cls.zoo_seed = seed
    cls.zoo_hold_running = _role() == "chief" and not os.environ.get(_LOCAL_CLUSTER)
    if name == "hyperband":
        # Hyperband plans its own brackets and repeats them (a new iteration starts again
        # from the bracket of most models and fewest epochs) until max_trials trials have
        # run: one iteration alone can hold fewer (--epochs 1 gives 1 trial, --epochs 3
        # gives 6). A project made before keeps its own count of iterations (1).
        tuner = cls(hypermodel, max_epochs=epochs, factor=3,
                    hyperband_iterations=float("inf"), **common)
        tuner.oracle.max_trials = max_trials
    else:
        tuner = cls(hypermodel, max_trials=max_trials, **common)
    if not tuner._is_worker():     # a worker's oracle is the chief's
        _save_state_atomically(tuner.oracle)
        _write_results_as_trials_end(tuner, hypermodel, objective)
    if _role() == "chief":
        _stop_after_failures(tuner.oracle)
    return tuner


# -- the results table ----------------------------------------------------------------------

def trials_table(oracle, project_dir=None, hp_names=None):
    """The trials of ``oracle`` as a ``pandas.DataFrame``, in start order.

    Columns: ``trial``, ``status``, one column per hyperparameter (plus
    ``epochs`` for Hyperband), ``score`` (the objective), ``best_step`` (epoch
    index of the best score), ``seconds``, ``tuner`` (which tuner process ran
    it, from ``project_dir/timings``) and ``message`` (the error of a failed trial).

    Args:
        oracle: the tuner's ``keras_tuner`` oracle (on the chief, in a distributed search).
        project_dir: the search's project directory, for the ``tuner`` and ``seconds``
            columns (``None``: left empty).
        hp_names: the hyperparameter columns, in order (``None``: those of the trials).

    Returns:
        A ``pandas.DataFrame``, one row per trial.

    Raises:
        ValueError: ``oracle`` is no keras_tuner oracle (was an AttributeError).
    """
    import pandas as pd
    if not (hasattr(oracle, "trials") and hasattr(oracle, "start_order")):
        raise ValueError(f"trials_table takes a keras_tuner oracle (tuner.oracle). "
                         f"Received: {type(oracle).__name__}")
    timings = _read_timings(project_dir) if project_dir else {}
    order = list(oracle.start_order) + [t for t in oracle.trials if t not in oracle.start_order]
    records = []
    names = list(hp_names or [])
    for trial_id in order:
        trial = oracle.trials[trial_id]
        values = _trial_values(trial)
        row = {"trial": trial_id, "status": str(trial.status)}
        for key in names or [k for k in values if k not in _UNTUNED]:
            row[key] = values.get(key)
        if "tuner/epochs" in values:
            row["epochs"] = values["tuner/epochs"]
        score = trial.score
        row["score"] = None if score is None or (isinstance(score, float) and math.isnan(score)) \
            else float(score)
        # keras-tuner's best_step is 0 until a trial is scored.
        row["best_step"] = None if row["score"] is None else trial.best_step
        t = timings.get(trial_id, {})
        row["seconds"] = t.get("seconds")
        row["tuner"] = t.get("tuner")
        message = (trial.message or "").strip().splitlines()
        row["message"] = _short_error(message[-1]) if message else t.get("message", "")
        records.append(row)
    if not records:
        return pd.DataFrame(columns=["trial", "status", *names, "score", "best_step",
                                     "seconds", "tuner", "message"])
    df = pd.DataFrame.from_records(records)
    df["best_step"] = df["best_step"].astype("Int64")   # blank, not NaN, for unscored trials
    return df


def _read_timings(project_dir) -> dict:
    """Trial id -> start, end, seconds, tuner (and a failed trial's error), from every tuner
    process's file in ``project_dir/timings``."""
    timings = {}
    tdir = os.path.join(project_dir, "timings")
    if os.path.isdir(tdir):
        for fname in sorted(os.listdir(tdir)):
            if fname.endswith(".json"):
                timings.update(_read_json(os.path.join(tdir, fname), {}))
    return timings


def _trial_values(trial) -> dict:
    """``trial``'s hyperparameter values as its model trained with them: a stepped float
    without keras-tuner's binary noise (0.15, not 0.15000000000000002)."""
    from tuning.hypermodels import clean_value
    hps = trial.hyperparameters
    space = {hp.name: hp for hp in hps.space}
    return {k: clean_value(space.get(k), v) for k, v in hps.values.items()}


def _plot(df, path, objective, direction):
    # pyplot's figures are global state: a chief plots from its oracle's server thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def write(tmp):
        fig = Figure(figsize=(7, 4))
        FigureCanvasAgg(fig)   # render with Agg, whatever pyplot's backend is
        ax = fig.subplots()
        done = df[df["score"].notna()]
        x = range(len(df))
        ax.plot([i for i, ok in zip(x, df["score"].notna()) if ok], done["score"], "o",
                label="trial score")
        best = done["score"].cummax() if direction == "max" else done["score"].cummin()
        ax.step([i for i, ok in zip(x, df["score"].notna()) if ok], best, where="post",
                label="best so far")
        failed = [i for i, s in zip(x, df["status"]) if s not in ("COMPLETED", "RUNNING")]
        if failed:
            lo = done["score"].min() if len(done) else 0.0
            ax.plot(failed, [lo] * len(failed), "x", color="red", label="failed")
        ax.set_xlabel("trial (start order)")
        ax.set_ylabel(objective)
        ax.set_title(f"{objective} per trial")
        ax.legend(loc="best")
        fig.tight_layout()
        fig.savefig(tmp, format="png", dpi=100)

    atomic_write(path, write)


#: One writer of ``trials.csv`` and ``search.png`` at a time: a chief's oracle rewrites them
#: from its server thread as trials end, and the search once more when it returns.
_RESULTS_LOCK = threading.Lock()


def _write_results(tuner, hypermodel, objective, direction):
    """Write ``trials.csv`` and ``search.png`` (each all at once); return the table."""
    project_dir = tuner.project_dir
    with _RESULTS_LOCK:
        df = trials_table(tuner.oracle, project_dir, hypermodel.declared_names())
        atomic_write(os.path.join(project_dir, "trials.csv"),
                     lambda tmp: df.to_csv(tmp, index=False))
        _plot(df, os.path.join(project_dir, "search.png"), objective, direction)
    return df


def _write_results_as_trials_end(tuner, hypermodel, objective):
    """Rewrite ``trials.csv`` and ``search.png`` each time ``tuner``'s oracle ends a trial
    (in a single process or on a chief, whose workers end theirs over gRPC), so that a
    search still running, or killed, shows every trial ended so far."""
    oracle = tuner.oracle
    end_trial = oracle.end_trial

    def ended(trial):
        try:
            return end_trial(trial)    # raises when it is one failure too many
        finally:
            _write_results(tuner, hypermodel, *_direction(objective))

    oracle.end_trial = ended


# -- fingerprint / resume ---------------------------------------------------------------------

def _dataset_key(dataset, splits):
    """What the data is, for the fingerprint. An ignore label is part of it; searches
    without one keep the key they had before the zoo had ignore labels. So are the sizes of
    a named dataset's splits (a folder's images added or removed make other data); a
    search made before they were resumes (:func:`_as_made_before`)."""
    ignore_label = splits.info.ignore_label
    if isinstance(dataset, str):
        key = {"name": dataset, "input_shape": list(splits.info.input_shape)}
        if ignore_label is not None:
            key["ignore_label"] = ignore_label
        if splits.info.splits:
            key["splits"] = {k: int(v) for k, v in sorted(splits.info.splits.items())}
        return key
    info = splits.info.to_dict()
    if ignore_label is None:
        info.pop("ignore_label", None)
    info.pop("test_is_validation", None)   # the test split is not searched on; and older
                                           # searches' fingerprints lack it
    cardinality = {}
    for split in ("train", "validation"):
        n = int(getattr(splits, split).cardinality().numpy())
        cardinality[split] = n
    return {"info": info, "batches": cardinality}


def _as_made_before(old: dict, new: dict) -> dict:
    """Fingerprint ``new`` as a search made before the split sizes of a named dataset were
    part of it wrote it, when ``old`` is such a search's: it resumes as it did."""
    data, before = new.get("dataset"), old.get("dataset")
    if isinstance(data, dict) and "name" in data and "splits" in data and \
            isinstance(before, dict) and "splits" not in before:
        return {**new, "dataset": {k: v for k, v in data.items() if k != "splits"}}
    return new


def _split_size_changes(old, new) -> list:
    """How the split sizes of two fingerprints' named datasets differ (``train 24 before,
    25 now``); empty where either has none."""
    before = old.get("splits") if isinstance(old, dict) else None
    now = new.get("splits") if isinstance(new, dict) else None
    if not isinstance(before, dict) or not isinstance(now, dict):
        return []
    return [f"{k} {before.get(k)} before, {now.get(k)} now"
            for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]


def _differing_keys(a: dict, b: dict) -> list:
    """The sorted keys whose values differ between fingerprints ``a`` and ``b``."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _shown(value) -> str:
    """A space entry's field in a message: text in brackets (``[0, 1]``: a list of choices
    or a range as ``describe()`` writes it), anything else as it is."""
    return f"[{value}]" if isinstance(value, str) else str(value)


def _space_changes(old, new) -> list:
    """How two fingerprints' spaces differ, one phrase per hyperparameter (``clip_norm [0, 1]
    before, [0, 1, 5] now``, ``... only before``, ``... only now``) and for the model's
    entry (the one without a name: family, input shape, classes)."""
    def entries(space):
        return {e.get("name", "model"): e for e in space or [] if isinstance(e, dict)}

    a, b = entries(old), entries(new)
    changes = []
    for name in list(b) + [n for n in a if n not in b]:
        if name not in a or name not in b:
            changes.append(f"{name} only {'now' if name in b else 'before'}")
            continue
        keys = _differing_keys(a[name], b[name])
        if "values" in keys:
            keys = ["values"]    # the choices or range: what --set changes
        changes.extend(f"{name}{'' if k == 'values' else ' ' + k} {_shown(a[name].get(k))} "
                       f"before, {_shown(b[name].get(k))} now" for k in keys)
    return changes


def _project_exists(project_dir):
    return os.path.isdir(project_dir) and any(
        os.path.exists(os.path.join(project_dir, f)) for f in ("oracle.json", FINGERPRINT))


def _check_project(project_dir, fingerprint, *, resume, overwrite, role):
    """Refuse to mix two different searches in one project directory. Nothing is
    written or deleted here: :func:`_write_fingerprint` does it (``overwrite``
    deletes the project) once the search is known to be valid."""
    path = os.path.join(project_dir, FINGERPRINT)
    if role == "worker":
        return  # the chief owns the project directory
    others = (sorted(e for e in os.listdir(project_dir) if not e.startswith("."))
              if os.path.isdir(project_dir) and not _project_exists(project_dir) else [])
    if others:   # the search would mix its files with them, and --overwrite delete them
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise FileExistsError(
            f"{project_dir} holds files of no search ({shown}); choose another --project or "
            f"--directory (--overwrite replaces a search, not other files)")
    if overwrite:
        return  # overwrite replaces the project
    if _project_exists(project_dir):
        if not resume:
            raise FileExistsError(
                f"a search already exists in {project_dir}: pass resume=True (zoo tune resumes "
                f"by default) to continue it, or overwrite=True (--overwrite) to start again")
        old = _read_json(path)
        if old is None:
            raise FileExistsError(
                f"{project_dir} holds a keras-tuner project that is not a zoo search "
                f"(no {FINGERPRINT}); use --overwrite or another --project")
        fingerprint = _as_made_before(old, fingerprint)
        if old != fingerprint:
            keys = _differing_keys(old, fingerprint)
            hint = ""
            if "mixed_precision" in keys:     # e.g. another machine, or auto's rule changed
                from zoo.train import precision_value
                hint = (f" To resume it as it ran, pass --mixed-precision "
                        f"{precision_value(old.get('mixed_precision'))}.")
            space = (_space_changes(old.get("space"), fingerprint.get("space"))
                     if "space" in keys else [])
            sizes = _split_size_changes(old.get("dataset"), fingerprint.get("dataset"))
            raise ValueError(
                f"a different search already exists in {project_dir} (it differs in: "
                f"{', '.join(keys)}" + (f"; in the space: {'; '.join(space)}" if space else "")
                + (f"; in the dataset's split sizes: {', '.join(sizes)}" if sizes else "")
                + f"). Use --overwrite to replace it or --project to choose another "
                f"name.{hint}")


def _write_fingerprint(project_dir, fingerprint, role, overwrite):
    """Write ``search.json`` (the chief's or a single process's); with ``overwrite``,
    delete the project's files first (all but the lock this process holds). Returns
    whether it deleted a project."""
    if role == "worker":
        return False
    cleared = overwrite and _project_exists(project_dir)
    if cleared:
        for entry in os.listdir(project_dir):
            if entry != LOCK:
                remove_path(os.path.join(project_dir, entry))
    _write_json(os.path.join(project_dir, FINGERPRINT), fingerprint)
    return cleared


def _lock(path, refusal):
    """Hold an exclusive lock on the file ``path`` (made if missing) and return its file
    descriptor; closing it, or the process's end, releases the lock. Held by another
    process: ``FileExistsError(refusal)``, ``{holder}`` replaced by what the holder wrote
    (its process id and machine). Where file locks are not available: ``None``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    import socket
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FileExistsError(refusal.format(holder=holder)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
    return fd


def _lock_project(project_dir, made):
    """Lock ``project_dir`` (made if missing) for this search's process: a second search
    (or chief) in it is refused, with what holds it."""
    os.makedirs(project_dir, exist_ok=True)
    try:
        return _lock(os.path.join(project_dir, LOCK),
                     f"another zoo tune ({{holder}}) is running the search in {project_dir}: "
                     f"wait for it to end (the same command then resumes or returns the "
                     f"search), or choose another --project")
    except FileExistsError:
        if made:
            _remove_if_empty(project_dir)
        raise


def _lock_worker(project_dir, tuner_id):
    """Lock this worker's id in ``project_dir``: a second worker with the same id (to the
    chief, the same worker: it would be given the same trial) is refused."""
    worker = tuner_id[len("tuner"):] if tuner_id.startswith("tuner") else tuner_id
    return _lock(os.path.join(project_dir, f".{tuner_id}{LOCK}"),
                 f"worker {worker} already runs ({{holder}}) for the chief's search in "
                 f"{project_dir}: give this worker another --worker-id")


#: The chiefs this process's workers have reached (what a Ctrl-C line says).
_JOINED = []


def _socket_host(host):
    """``host`` as sockets take it: an IPv6 address without the brackets gRPC's addresses
    (``[::1]:8000``) need."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _not_answering(host, port, timeout=2.0):
    """Why nothing takes a TCP connection at ``host:port`` now, or ``None`` if something
    does."""
    import socket
    try:
        with socket.create_connection((_socket_host(host), port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"the name {host} does not resolve"
    except OSError:
        return "nothing answers there yet"


def _remove_if_empty(path):
    """Remove the directory tree ``path`` if it holds no file."""
    if os.path.isdir(path) and not any(files for _, _, files in os.walk(path)):
        shutil.rmtree(path, ignore_errors=True)


def _join_chief(kt_tuner, project_dir, fingerprint, hypermodel, *, follow_precision):
    """On a worker: wait until the chief's oracle answers (the chief writes its fingerprint
    before it serves), then check that this worker runs the chief's search, from the
    chief's ``search.json`` in the shared directory. With ``follow_precision`` (the worker
    was given ``mixed_precision="auto"``) the worker trains under the chief's precision, so
    that a cluster of different machines trains every trial alike; any other difference
    (an explicit precision included) is refused. Returns the worker's fingerprint."""
    host, port = os.environ.get("KERASTUNER_ORACLE_IP"), os.environ.get("KERASTUNER_ORACLE_PORT")
    why = _not_answering(host, int(port)) if host and port else None
    if why:   # keras-tuner waits for the chief as long as it takes: say so
        tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
        worker = tuner_id[len("tuner"):] if tuner_id.startswith("tuner") else tuner_id
        print(f"zoo tune: worker {worker} waits for the chief at {host}:{port} ({why}); "
              f"start the chief's command "
              f"(--chief {host}:{port}), or press Ctrl-C to stop", file=sys.stderr,
              flush=True)
        # Waited for here, in Python: Ctrl-C stops this loop at once, while gRPC's blocking
        # call (which waits too) does not always give way to it.
        while _not_answering(host, int(port)):
            time.sleep(0.5)
    kt_tuner.oracle.get_space()          # blocks until the chief serves
    _JOINED.append(f"{host}:{port}")
    path = os.path.join(project_dir, FINGERPRINT)
    chief = _read_json(path)
    if chief is None:
        raise FileNotFoundError(
            f"the chief's {path} is missing: a worker must see the chief's --directory "
            f"(a shared file system) and run the chief's --project")
    theirs = chief.get("mixed_precision")
    if follow_precision and theirs != hypermodel.mixed_precision:
        hypermodel.mixed_precision = theirs
        fingerprint = {k: v for k, v in fingerprint.items() if k != "mixed_precision"}
        if theirs:
            fingerprint["mixed_precision"] = theirs
    if chief != fingerprint:
        keys = _differing_keys(chief, fingerprint)
        detail = ", ".join(f"{k} (chief: {chief.get(k)!r}, this worker: {fingerprint.get(k)!r})"
                           if k in ("mixed_precision", "epochs", "seed", "tuner", "cv",
                                    "executions_per_trial") else k for k in keys)
        raise ValueError(f"this worker's search differs from the chief's in {project_dir}: "
                         f"{detail}. Run the chief's zoo tune command on every worker.")
    return fingerprint


def _short_error(line) -> str:
    """An error line without its class's module path (``keras_tuner.src.errors.``)."""
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=\w+: )", "", line.strip())


def _raise_stopped(exc, project_dir):
    """keras-tuner's error for too many failed trials in a row (its message holds the last
    trial's whole traceback) as one line: how many, the last error, where the table is."""
    text = str(exc)
    if not text.startswith("Number of consecutive failures exceeded the limit of "):
        return
    limit = text.split("limit of ", 1)[1].split(".", 1)[0]
    last = [line for line in text.strip().splitlines()[1:] if line.strip()]
    reason = f" (the last: {_short_error(last[-1])})" if last else ""
    raise RuntimeError(f"the search stopped after {limit} consecutive failed trials{reason}; "
                       f"the trials are in {os.path.join(project_dir, 'trials.csv')}") from None


def _raise_lost_chief(exc):
    """On a worker: a gRPC error from the chief as one line saying what to do."""
    try:
        import grpc
    except ImportError:  # pragma: no cover - keras-tuner's distributed mode needs it
        return
    if not isinstance(exc, grpc.RpcError):
        return
    address = (f"{os.environ.get('KERASTUNER_ORACLE_IP')}:"
               f"{os.environ.get('KERASTUNER_ORACLE_PORT')}")
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = " ".join(str(exc.details() if callable(getattr(exc, "details", None))
                           else exc).split())
    if code == grpc.StatusCode.UNAVAILABLE:
        raise RuntimeError(
            f"this worker lost the chief at {address} ({details}). Start the chief again "
            f"with its command, then this worker with the same --worker-id: the trial it "
            f"was running is run again") from None
    raise RuntimeError(f"the chief at {address} answered this worker with an error: "
                       f"{details}") from None


def _check_chief_address(host, port):
    """The chief's oracle can serve on ``host:port``. gRPC binds with SO_REUSEPORT, so a
    second chief on a port in use would serve beside the first, and workers would join
    either search: a port in use (or not on this machine) is refused before anything
    is written."""
    import socket
    if ":" in host and _socket_host(host) == host:   # gRPC reads "::1:8000" otherwise
        raise ValueError(f"the chief cannot serve on {host}:{port}: an IPv6 address goes in "
                         f"brackets, [{host}]:{port}")
    try:
        infos = socket.getaddrinfo(_socket_host(host), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"the chief cannot serve on {host}:{port}: unknown host "
                         f"({exc}). --chief takes an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            raise ValueError(f"the chief cannot serve on {host}:{port}: "
                             f"{exc.strerror or exc} (another chief or program listens there, "
                             f"or the address is not this machine's). Choose another "
                             f"--chief HOST:PORT") from None


def _evaluate(model, dataset, hypermodel):
    """``model.evaluate`` (a dict) on ``dataset`` with its labels checked as a trial's are:
    a label outside the model's classes that is not the ignore label raises ValueError
    with one line (as ``zoo.train.fit`` says it), not TensorFlow's error."""
    from zoo.train import _label_guard, _num_outputs, label_errors_as
    dataset = _label_guard(dataset, _num_outputs(model), hypermodel.task,
                           hypermodel.ignore_label)
    with label_errors_as(ValueError, getattr(hypermodel.info, "name", None)):
        return model.evaluate(dataset, verbose=0, return_dict=True)


def _check_objective(hypermodel, splits, objective):
    """Evaluate the default model on one validation batch; the objective must be
    one of the metrics it reports (with ``val_`` for validation metrics)."""
    import keras
    import keras_tuner as kt
    model = hypermodel.build(kt.HyperParameters())
    model.jit_compile = False
    logs = _evaluate(model, splits.validation.take(1), hypermodel)
    allowed = sorted(set(logs) | {f"val_{k}" for k in logs})
    del model
    keras.backend.clear_session()
    gc.collect()
    _check_objective_name(objective, hypermodel.family, allowed)


def _check_objective_name(objective, family, allowed):
    """Refuse an ``objective`` whose metric is not one of the ``allowed``."""
    name, _ = _direction(objective)
    if name not in allowed:
        raise ValueError(f"objective {name!r} is not a metric the {family} model "
                         f"reports. Allowed: {', '.join(allowed)}.")


def _refuse_early(model, dataset, set_, fix, image_size, objective):
    """``zoo tune``'s refusals of its space, image size and objective (those of
    :func:`search`, the same messages), made before TensorFlow's, Keras' and keras-tuner's
    imports and before the data is loaded: a hyperparameter the space has not, or a value it
    does not allow (:func:`tuning.spaces.checked_space`); an ``image_size`` some point of
    the space does not build at, for data of the family's task; an objective no model of
    it reports (:func:`zoo.train_cli.logged_metrics`: the quantities
    :func:`_check_objective` finds)."""
    from tuning.assignments import family_of
    from tuning.spaces import BUILDERS, check_space_image_size, checked_space
    from zoo.common import DATASET_KINDS
    from zoo.registry import model_info
    from zoo.train_cli import logged_metrics
    params = checked_space(model, set_, fix)
    family = family_of(model)
    task = model_info(BUILDERS[family]).task
    if image_size is not None and DATASET_KINDS.get(dataset, (task,))[0] == task:
        check_space_image_size(family, params, tuple(image_size))
    if objective is not None:
        names = logged_metrics(task)
        _check_objective_name(objective, family, sorted({*names, *(f"val_{n}" for n in names)}))


# -- search -------------------------------------------------------------------------------------

def search(model, dataset="digits", *, tuner="hyperband", objective=None, max_trials=10,
           epochs=10, directory="tuning_runs", project=None, resume=True, overwrite=False,
           set=None, fix=None, export=False, export_dir=None, export_name=None,
           export_lite=True, image_size=None, data_dir=None, download=False, seed=0,
           max_consecutive_failed_trials=3, executions_per_trial=1, jit_compile=False,
           mixed_precision="auto", callbacks=None, verbose=0, cv=None, deterministic=False,
           ignore_label=None):
    """Run (or resume) a hyperparameter search and return its trials.

    Args:
        model: a family name (``lenet5``, ``alexnet``, ``googlenet``,
            ``inception_v3``, ``xception``, ``resnet``, ``unet``), ``resnet18``/
            ``resnet34``/``resnet50`` (ResNet with the depth fixed), or a
            :class:`tuning.hypermodels.ZooHyperModel`.
        dataset: a ``zoo.data`` dataset name or a ``zoo.data.Splits``.
        tuner: ``"hyperband"``, ``"random"``, ``"bayesian"`` or ``"grid"``.
        objective: metric to optimise, e.g. ``"val_accuracy"`` (default for
            classification) or ``"val_mean_iou"`` (default for segmentation); the
            direction is ``min`` for names with ``loss``/``error``, else ``max``,
            or explicit as ``"name:min"``.
        max_trials: total number of trials (Hyperband repeats its brackets until
            it is reached; a search stops before it only when the space has no
            untried point left).
        epochs: epochs per trial (Hyperband: the most epochs one model trains).
        directory: where projects live.
        project: project name, one directory name (no ``/``, not ``.`` or ``..``);
            default ``<family>_<dataset>_<tuner>`` (``resnet`` for ``"resnet34"`` too).
        resume: continue an interrupted search in the same project (completed
            trials are not run again); ``False`` refuses an existing project.
        overwrite: delete the project first (once the search is known to be valid).
        set: ``{name: spec}`` narrowing the space (see :mod:`tuning.hypermodels`).
        fix: ``{name: value}`` fixing hyperparameters (not also in ``set``).
        export: export the best model with ``zoo.export.export``.
        export_dir: base directory of the export (default: ``saved_models``).
        export_name: model name of the export (default: the best model's name).
        export_lite: with ``export``, also write the export's LiteRT model (``lite`` of
            ``zoo.export.export``; ``False`` is ``zoo tune --export --no-lite``).
        image_size: ``(H, W)`` model input; default: the dataset's, raised to the
            family's minimum input size where needed.
        data_dir: tensorflow-datasets data directory (as in ``zoo.data.load``). Where the
            data lives, not what it is: not part of the search's fingerprint, so a search
            resumes (and a worker joins) with the same dataset in another directory.
        download: let tensorflow-datasets download missing data (as in ``zoo.data.load``;
            not part of the fingerprint either).
        seed: seed of the tuner and the data pipelines, 0 .. 2**32 - 1; every trial
            starts from it (``keras.utils.set_random_seed``).
        max_consecutive_failed_trials: stop after this many failed trials in a row.
        executions_per_trial: trainings per trial (scores are averaged).
        jit_compile: compile train steps with XLA (off by default: on short trials
            the compilation takes longer than it saves).
        deterministic: ``True`` turns on TensorFlow's op determinism for this process
            (``tf.config.experimental.enable_op_determinism``, which cannot be turned off
            again), so the same search scores its trials bit for bit alike, as
            ``zoo.train.fit(deterministic=True)``; slower where kernels are threaded. Not
            part of the fingerprint (it changes floating-point noise only).
        mixed_precision: the trials' compute dtype, as in ``zoo.train.fit``: ``"auto"``
            (float16 on GPUs with tensor cores, bfloat16 on CPUs with AMX and on AMD CPUs
            with AVX512_BF16, else float32),
            ``"float16"``, ``"bfloat16"`` or ``"off"``; it is part of the search's
            fingerprint, so a search is not resumed under another precision. A
            ``ZooHyperModel`` passed as ``model`` keeps its own ``mixed_precision``.
            A worker given ``"auto"`` trains under the chief's precision (read from
            the chief's ``search.json``), so different machines train alike; a worker
            whose search differs from the chief's otherwise is refused.
        callbacks: extra Keras callbacks for every trial's ``fit``.
        verbose: ``model.fit`` verbosity and keras-tuner's trial display: 0 (nothing,
            not even keras-tuner's ``Reloading Tuner`` line on resume), 1 or 2.
        cv: ``None`` (score each trial on the validation split) or ``k >= 2``: score it
            by k-fold cross-validation over the train and validation splits together
            (read into memory; stratified for classifiers): k models per trial, the
            score is the mean of their best objective values. The best hyperparameters
            are then trained on all train + validation examples for the folds' mean best
            epoch count, and that model is evaluated on the test split and exported. For
            small datasets, where one validation split cannot tell trials apart. Not with
            Hyperband (its brackets continue one model's training).
        ignore_label: segmentation, for a ``dataset`` name: the mask value of pixels that
            count in no loss and no metric (``zoo.data.load``'s ``ignore_label``, e.g. 255
            for Pascal VOC-style masks), so the trials' objective (``val_mean_iou``), the
            cross-validation folds' scores and the best model's test metrics leave them
            out. A ``zoo.data.Splits`` brings its own, ``info.ignore_label``, which is used
            (``ignore_label`` must then be ``None`` or the same). Part of the search's
            fingerprint, and recorded in ``best.json``.

    Returns:
        A ``pandas.DataFrame`` of the trials (see :func:`trials_table`), also
        written to ``trials.csv``; ``df.attrs`` holds ``best`` (hyperparameters,
        score, test metrics, export path) and ``project_dir``. On a keras-tuner
        worker (``KERASTUNER_TUNER_ID`` other than chief) returns ``None``: the
        chief writes the table.

    Raises:
        zoo.common.BackendError: Keras runs on a backend other than TensorFlow (a
            ``ValueError``, raised before anything else).
        ValueError: unknown model, tuner, dataset or hyperparameter; a hyperparameter
            in both ``set`` and ``fix``; a bad seed or project name; an objective the
            model does not report; too few examples for ``cv``; an ignore label that is
            no integer from 0 to 65535, inside the classes, given for a classification
            dataset or not the ``Splits``' own; a different search in the same project;
            ``export_dir``, ``export_name`` or ``export_lite=False`` without
            ``export=True``.
            Nothing is written (or overwritten) before these checks.
        FileExistsError: an existing project with ``resume=False``.
        RuntimeError: too many consecutive failed trials (the table is written first).

    Example:
        >>> df = search("lenet5", "digits", tuner="random", max_trials=5, epochs=10,
        ...             fix={"variant": "modern"}, set={"lr": "1e-3:1e-2"})  # doctest: +SKIP
        >>> df[["trial", "status", "lr", "score"]]  # doctest: +SKIP
    """
    require_tensorflow_backend("tuning.search.search")
    checked = _check_arguments(**locals())   # (locals(): the arguments, nothing else yet)
    (max_trials, epochs, executions_per_trial, max_consecutive_failed_trials, export_dir, cv,
     ignore_label) = (checked[name] for name in (
        "max_trials", "epochs", "executions_per_trial", "max_consecutive_failed_trials",
        "export_dir", "cv", "ignore_label"))
    from tuning.hypermodels import ZooHyperModel, check_set_fix, get_hypermodel
    from zoo.train import resolve_mixed_precision
    policy = resolve_mixed_precision(mixed_precision)
    role = _role()

    # The search space (checked before any data is loaded).
    if isinstance(model, ZooHyperModel):
        check_set_fix(set, fix)
        hypermodel = model
        for key, spec in (set or {}).items():
            hypermodel.set(key, spec)
        for key, value in (fix or {}).items():
            hypermodel.fix(key, value)
    elif isinstance(model, str):
        hypermodel = get_hypermodel(model, set=set, fix=fix, jit_compile=jit_compile,
                                    mixed_precision=policy, seed=seed)
    else:
        raise ValueError(f"model must be a family name or a ZooHyperModel. Received: {model!r}")
    hypermodel.grid = tuner == "grid"

    # The data.
    splits, settings = _load(dataset, hypermodel, image_size=image_size, data_dir=data_dir,
                              download=download, seed=seed, ignore_label=ignore_label)
    if not isinstance(model, ZooHyperModel):
        hypermodel.input_shape = tuple(splits.info.input_shape)
        hypermodel.num_classes = splits.info.num_classes
        hypermodel.info, hypermodel.augmentation = splits.info, settings
    elif hypermodel.ignore_label not in (None, splits.info.ignore_label):
        raise ValueError(f"the ZooHyperModel's ignore_label must be None or the data's, "
                         f"info.ignore_label={splits.info.ignore_label}. Received: "
                         f"ignore_label={hypermodel.ignore_label}")
    # The data's ignore label: every trial's loss and metrics, folds, refit and test.
    hypermodel.ignore_label = splits.info.ignore_label
    if splits.info.task != hypermodel.task:
        raise ValueError(f"{hypermodel.family} is a {hypermodel.task} model; dataset "
                         f"{splits.info.name!r} is a {splits.info.task} dataset")
    hypermodel.check_input_shape(tuple(splits.info.input_shape))
    if not isinstance(model, ZooHyperModel):
        # as zoo.train.fit: "auto" is float32 where every model of the space trains faster
        # in it at this input size (Xception below 40x40)
        hypermodel.mixed_precision = resolve_mixed_precision(
            mixed_precision, models=hypermodel.model_names(),
            input_shape=splits.info.input_shape)
    if objective is None:
        objective = "val_accuracy" if hypermodel.task == "classification" else "val_mean_iou"
    name, direction = _direction(objective)

    dataset_name = dataset if isinstance(dataset, str) else splits.info.name
    project = project or _default_project(hypermodel.family, dataset_name, tuner)
    project_dir = os.path.join(directory, project)
    fingerprint = {"model": hypermodel.family, "space": hypermodel.space_config(),
                   "tuner": tuner, "objective": [name, direction], "epochs": epochs,
                   "dataset": _dataset_key(dataset, splits), "seed": seed,
                   "executions_per_trial": executions_per_trial, "cv": cv}
    if hypermodel.mixed_precision:     # float32 searches keep their earlier fingerprint
        fingerprint["mixed_precision"] = hypermodel.mixed_precision
    fingerprint = json.loads(json.dumps(fingerprint, default=_json_default))
    _check_project(project_dir, fingerprint, resume=resume, overwrite=overwrite, role=role)
    if role == "chief":
        _check_chief_address(os.environ["KERASTUNER_ORACLE_IP"],
                             int(os.environ["KERASTUNER_ORACLE_PORT"]))
    _check_objective(hypermodel, splits, objective)
    folds, pooled = _cv_folds(splits, cv, seed, hypermodel.task) if cv else (None, None)

    if deterministic:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()

    # Everything is checked: write. A project this call makes is removed if the tuner
    # cannot be made, so that it does not block the next attempt.
    # A worker writes no fingerprint; the directories keras-tuner makes for it are removed
    # if it never joins its chief (stopped while waiting, or refused).
    empty_before = [d for d in (project_dir, directory) if not os.path.exists(d)]
    made = project_dir in empty_before
    # One process runs a search (two ran every trial twice, into the same files), and one
    # worker each worker id: held until the search returns (or the process dies).
    locks = []
    if role != "worker":
        locks.append(_lock_project(project_dir, made))
    retracing = _RetracingFilter()
    logging.getLogger("tensorflow").addFilter(retracing)
    try:
        try:
            # (in the try: search.json that cannot be written, on a full disk say, left the
            # project this call made, its lock file alone, and the directory above it)
            made = _write_fingerprint(project_dir, fingerprint, role, overwrite) or made
            with _without_reload_line(quiet=not verbose):
                kt_tuner = _make_tuner(
                    tuner, hypermodel, objective, max_trials=max_trials, epochs=epochs,
                    directory=directory, project=project, seed=seed,
                    max_consecutive_failed_trials=max_consecutive_failed_trials,
                    executions_per_trial=executions_per_trial)
        except BaseException:
            if made:
                shutil.rmtree(project_dir, ignore_errors=True)
                if directory in empty_before:
                    _remove_if_empty(directory)
            raise
        kt_tuner.zoo_folds = folds
        _record_train_size(splits, dataset)
        if isinstance(dataset, str):
            def fresh_train():
                from zoo import data as zdata
                again = zdata.load_splits(
                    dataset, image_size=tuple(splits.info.input_shape[:2]), data_dir=data_dir,
                    seed=seed, download=False, ignore_label=splits.info.ignore_label)
                _record_train_size(again, dataset)
                return again.train
            kt_tuner.zoo_train = fresh_train
        if role == "worker":
            try:
                _join_chief(kt_tuner, project_dir, fingerprint, hypermodel,
                            follow_precision=mixed_precision == "auto" and not isinstance(
                                model, ZooHyperModel))
            except BaseException:
                for path in empty_before:     # the project first, then the directory above it
                    _remove_if_empty(path)
                raise
            locks.append(_lock_worker(project_dir, kt_tuner.tuner_id))
        from keras_tuner import errors as kt_errors
        from keras_tuner.src import config as kt_config
        debug = kt_config.DEBUG
        # keras-tuner prints every failed trial's traceback; a trial's line and its
        # trial.json say it (ZOO_DEBUG=1 prints it as well).
        kt_config.DEBUG = bool(os.environ.get("ZOO_DEBUG"))
        try:
            try:
                if role == "chief":      # (keras-tuner's search sets it, after the probe)
                    kt_tuner.oracle.verbose = verbose
                if role != "chief" or not _nothing_left(kt_tuner.oracle):
                    kt_tuner.search(splits.train, validation_data=splits.validation,
                                    epochs=epochs, callbacks=list(callbacks or []),
                                    verbose=verbose)
                if role == "chief" and kt_tuner.oracle.zoo_stopped is not None:
                    raise kt_tuner.oracle.zoo_stopped    # its workers have stopped
            finally:
                kt_config.DEBUG = debug
                if role != "worker":
                    df = _write_results(kt_tuner, hypermodel, name, direction)
        except RuntimeError as exc:
            _raise_stopped(exc, kt_tuner.project_dir)
            raise
        except kt_errors.FatalValueError as exc:
            # A trial's data error (ZooHyperModel.fit's label check) as the ValueError it is.
            # A project this call made, with no trial completed, is not left behind.
            if made and role != "worker" and not (df["status"] == "COMPLETED").any():
                shutil.rmtree(project_dir, ignore_errors=True)
            raise ValueError(str(exc)) from None
        except Exception as exc:
            if role == "worker":
                _raise_lost_chief(exc)
            raise
        if role == "worker":
            return None
        if role == "chief":
            # Its workers have stopped: the oracle's state without the trials it last let go.
            kt_tuner.save()

        try:
            best = _best(kt_tuner, df, splits, hypermodel, export=export,
                         export_dir=export_dir, export_name=export_name,
                         export_lite=export_lite, objective=name, pooled=pooled, seed=seed)
        except KeyboardInterrupt as exc:
            exc.zoo_trials_done = True   # (zoo tune's line: no trial was interrupted)
            raise
        _write_json(os.path.join(kt_tuner.project_dir, "best.json"), best)
        df.attrs["best"] = best
        df.attrs["project_dir"] = kt_tuner.project_dir
        return df
    finally:
        logging.getLogger("tensorflow").removeFilter(retracing)
        for fd in locks:
            if fd is not None:   # None: no file locks here (_lock)
                os.close(fd)


#: :func:`search`'s parameters and defaults, which :func:`_check_arguments` binds its
#: arguments by (this function's, whatever the module's ``search`` is later set to).
_SEARCH_SIGNATURE = inspect.signature(search)


def _load(dataset, hypermodel, *, image_size, data_dir, seed, download=False,
          ignore_label=None):
    """Splits of ``dataset`` at a size the family accepts, and the dataset's own
    augmentation settings (which the ``augment`` hyperparameter scales). A ``Splits``
    brings its own ignore label: ``ignore_label`` must be ``None`` or the same."""
    from zoo import data as zdata
    if not isinstance(dataset, str):
        if not isinstance(dataset, zdata.Splits):
            raise ValueError(f"dataset must be a dataset name or a zoo.data.Splits. "
                             f"Received: {type(dataset).__name__}")
        own = dataset.info.ignore_label
        if ignore_label is not None and ignore_label != own:
            raise ValueError(f"dataset is a zoo.data.Splits, which brings its own ignore "
                             f"label (info.ignore_label={own}): ignore_label must be None "
                             f"or {own}. Received: ignore_label={ignore_label}")
        return dataset, dataset.info.augmentation or None
    # The train split loaded with augment=True tells the dataset's own settings
    # (and its default size); the search's pipelines are not augmented.
    _, probe = zdata.load(dataset, "train", image_size=image_size, augment=True,
                          data_dir=data_dir, download=download, ignore_label=ignore_label)
    if image_size is None:
        minimum = hypermodel.min_input_size()
        h, w = probe.input_shape[:2]
        if min(h, w) < minimum:
            image_size = (max(h, minimum), max(w, minimum))
    splits = zdata.load_splits(dataset, image_size=image_size, data_dir=data_dir, seed=seed,
                               download=download, ignore_label=ignore_label)
    return splits, dict(probe.augmentation)


def _record_train_size(splits, dataset, batch_size=32):
    """Tell :func:`tuning.hypermodels.rebatch` how many examples the train split holds
    (the pipelines' ``info.splits``, checked against the split's batch count), so that the
    trials' rebatched data keeps its length."""
    from tuning.hypermodels import set_num_examples
    n = splits.info.splits.get("train")
    if not isinstance(dataset, str) or not n:
        return      # a Splits passed in: its batch size is not known here
    if int(splits.train.cardinality()) == -(-int(n) // batch_size):   # load_splits' batches
        set_num_examples(splits.train, n)


def _cv_folds(splits, k, seed, task, batch_size=32):
    """``k`` folds over the train and validation splits together, read into memory.

    The examples are put in a fixed order first (by a hash of their bytes), so the folds
    do not depend on the order the pipelines deliver them in and are the same in every
    process of a distributed search; classifiers get stratified folds
    (``sklearn.model_selection.StratifiedKFold``), segmentation plain ``KFold``.

    Returns:
        ``(make_folds, (all images, all targets))``: ``make_folds()`` makes the batched
        pipelines of each fold, ``[(train, held_out), ...]``, anew (each starts from the
        seed's first shuffle); the pooled arrays are for the final refit.
    """
    import hashlib

    import numpy as np
    import tensorflow as tf
    from sklearn.model_selection import KFold, StratifiedKFold

    from tuning.hypermodels import set_num_examples
    from zoo.data import to_arrays, with_default_autotune
    x_tr, y_tr = to_arrays(splits.train)
    x_va, y_va = to_arrays(splits.validation)
    x, y = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
    keys = [hashlib.sha1(x[i].tobytes() + y[i].tobytes()).hexdigest() for i in range(len(x))]
    order = np.argsort(keys, kind="stable")
    x, y = x[order], y[order]
    if task == "classification":
        counts = np.bincount(y.astype("int64"))
        if counts[counts > 0].min() < k:
            raise ValueError(f"cv={k} needs at least {k} examples of every class in the train "
                             f"and validation splits; the rarest class has "
                             f"{int(counts[counts > 0].min())}")
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed).split(x)
    indices = list(splitter)

    def make_folds():
        folds = []
        for train_idx, held_idx in indices:
            train = set_num_examples(with_default_autotune(
                tf.data.Dataset.from_tensor_slices((x[train_idx], y[train_idx]))
                .shuffle(len(train_idx), seed=seed).batch(batch_size)
                .prefetch(tf.data.AUTOTUNE)), len(train_idx))
            held = with_default_autotune(
                tf.data.Dataset.from_tensor_slices((x[held_idx], y[held_idx]))
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))
            folds.append((train, held))
        return folds
    return make_folds, (x, y)


def _refit(hypermodel, trial, pooled, epochs, seed, batch_size=32):
    """Train ``trial``'s hyperparameters on the pooled train + validation examples."""
    import keras
    import tensorflow as tf
    x, y = pooled
    from tuning.hypermodels import set_num_examples
    from zoo.data import with_default_autotune
    # Seeded here, so the refit's weights and its data's order do not depend on what ran
    # before in this process: a finished search resumed in a new process refits the same
    # model. (The shuffle's order depends on the global seed when it is made: made before
    # the seed was set, the refit of a resumed search, in which no trial had set it, read
    # the examples in another order and gave another model than its export.)
    keras.utils.set_random_seed(seed)
    data = set_num_examples(with_default_autotune(
        tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
        .batch(batch_size).prefetch(tf.data.AUTOTUNE)), len(x))
    model = hypermodel.build(trial.hyperparameters)
    hypermodel.fit(trial.hyperparameters, model, data, epochs=epochs, verbose=0)
    return model


def _best(kt_tuner, df, splits, hypermodel, *, export, export_dir, export_name, objective,
          export_lite=True, pooled=None, seed=0):
    """Evaluate (and export) the best completed trial's model."""
    completed = df[df["status"] == "COMPLETED"]
    if completed.empty:
        return {"trial": None, "message": "no trial completed"}
    # Ties (common on small validation sets) go to the earliest trial, whatever order
    # keras-tuner reloaded its trials in.
    maximize = kt_tuner.oracle.objective.direction == "max"
    scores = completed["score"] if maximize else -completed["score"]
    trial = kt_tuner.oracle.get_trial(completed.loc[scores.idxmax(), "trial"])
    refit_epochs = None
    if pooled is not None:
        # Cross-validated: no single trained model stands for the trial; train its
        # hyperparameters on all the train + validation examples for its best epoch count
        # (the folds' mean).
        refit_epochs = int(trial.best_step) + 1
        model = _refit(hypermodel, trial, pooled, refit_epochs, seed)
    else:
        with warnings.catch_warnings():
            # The checkpoint holds the trial's optimizer state, the rebuilt model a fresh
            # optimizer; only the weights are wanted here (evaluation and export).
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = kt_tuner.load_model(trial)
    model.jit_compile = False
    test = _evaluate(model, splits.test, hypermodel)
    values = _trial_values(trial)
    # In the space's order (a chief has a worker's trial in the order it came in).
    names = [k for k in hypermodel.declared_names() if k in values] + \
        [k for k in values if k not in hypermodel.params and k not in _UNTUNED]
    best = {"trial": trial.trial_id, "objective": objective, "score": float(trial.score),
            "hyperparameters": {k: values[k] for k in names},
            "test": {k: float(v) for k, v in test.items()}, "export": None,
            "refit_epochs": refit_epochs, "mixed_precision": hypermodel.mixed_precision,
            "ignore_label": splits.info.ignore_label}
    if splits.info.test_is_validation:
        # No test split of its own: the "test" metrics are the validation split's, which
        # chose the best trial (and, cross-validated, which the refit trained on).
        best["test_is_validation"] = True
    if export:
        from zoo.export import export as zoo_export
        name = export_name or model.name
        source = kt_tuner.oracle._get_trial_dir(trial.trial_id)
        best["export"] = _earlier_export(kt_tuner.project_dir, best, export_dir, name, source,
                                         export_lite)
        if best["export"] is None:
            # zoo.json: the trial's directory as the source, its hyperparameters as the
            # settings, the test metrics, as an export of a training run records them.
            run = {"dataset": splits.info.to_dict(), "task": splits.info.task,
                   "metrics": {f"test_{k}": v for k, v in best["test"].items()},
                   "settings": {k: best[k] for k in ("trial", "objective", "score",
                                                      "hyperparameters", "refit_epochs",
                                                      "mixed_precision")}}
            best["export"] = zoo_export(model, base_dir=export_dir, name=name, info=run,
                                        source=source, lite=export_lite)
        else:
            best["exported_before"] = True
    return best


def _earlier_export(project_dir, best, export_dir, name, source, lite=True):
    """The version directory an earlier run of this search exported ``best``'s model to,
    when it is still there, under ``export_dir/name``, with this trial, score and
    ``source`` in its ``zoo.json`` (and a LiteRT model, or the reason there is none, when
    ``lite``: not one exported with ``lite=False``); else ``None``. A finished search run again
    with ``--export`` then reports that version instead of exporting the model once more."""
    before = _read_json(os.path.join(project_dir, "best.json"), {})
    path = before.get("export") if isinstance(before, dict) else None
    if not isinstance(path, str) or before.get("trial") != best["trial"] or \
            before.get("score") != best["score"]:
        return None
    if os.path.realpath(os.path.dirname(path)) != \
            os.path.realpath(os.path.join(export_dir, name)):
        return None
    record = _read_json(os.path.join(path, "assets", "zoo.json"), {})
    training = (record.get("training") if isinstance(record, dict) else None) or {}
    settings = training.get("settings") or {}
    if training.get("source") != os.path.abspath(source) or \
            settings.get("trial") != best["trial"] or settings.get("score") != best["score"]:
        return None
    from zoo.export import LITE_NOT_REQUESTED
    if lite and (record.get("lite") or {}).get("error") == LITE_NOT_REQUESTED:
        return None
    return path


# -- command line -------------------------------------------------------------------------------

def _host_port(text):
    import argparse
    host, sep, port = str(text).rpartition(":")
    bare = _socket_host(host)    # an IPv6 address, and only one, goes in brackets
    if not sep or not bare.strip() or (":" in bare) != (bare != host) or "[" in bare or \
            "]" in bare or not is_digits(port) or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port from 1 to 65535, "
                                         f"such as 10.0.0.1:8000 ([::1]:8000 for an IPv6 "
                                         f"address); received {text!r}")
    return host, int(port)


def configure_tune(parser):
    """``zoo tune MODEL [--dataset NAME] [--tuner NAME] ...``.

    Args:
        parser: the command's ``argparse.ArgumentParser``; its options are added.

    Returns:
        ``run(args) -> int``: runs the command on the parsed arguments and returns its
        exit code.
    """
    # Nothing here imports TensorFlow or Keras: zoo tune --workers N only starts the
    # processes that search (and checks its arguments first).
    from zoo.cli import ignore_label_arg
    from zoo.common import AUTO_PRECISION_HELP, MIXED_PRECISION
    from zoo.train_cli import parse_image_size
    parser.add_argument("model", help="family: lenet5, alexnet, googlenet, inception_v3, "
                        "xception, resnet (or resnet18/34/50), unet")
    parser.add_argument("--dataset", default=None,
                        help="zoo dataset name (default: digits; shapes for unet)")
    parser.add_argument("--tuner", default="hyperband", choices=TUNERS,
                        help="search algorithm (default: hyperband)")
    parser.add_argument("--max-trials", type=int, default=10, metavar="N",
                        help="trials to run at most (default: 10)")
    parser.add_argument("--epochs", type=int, default=10, metavar="N",
                        help="epochs per trial (hyperband: the most one model trains)")
    parser.add_argument("--objective", default=None,
                        help="metric to optimise (default val_accuracy; val_mean_iou for unet); "
                        "NAME:min or NAME:max to set the direction")
    parser.add_argument("--directory", default="tuning_runs", metavar="DIR",
                        help="where projects are kept (default: tuning_runs)")
    parser.add_argument("--project", default=None, metavar="NAME",
                        help="default FAMILY_DATASET_TUNER (zoo tune resnet34: "
                        "resnet_DATASET_TUNER, as resnet18's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the project and start again (otherwise an interrupted "
                        "search resumes; a different search is refused)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=SPEC",
                        help="narrow a hyperparameter: one value fixes it, a,b,c is a choice, "
                        "lo:hi a range (repeatable)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="fix a hyperparameter (repeatable)")
    # As zoo train's (zoo.train_cli.configure_train); neither is part of the search's
    # fingerprint: where the data lives is not what it is.
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data directory")
    parser.add_argument("--download", action="store_true",
                        help="let tensorflow-datasets download missing data")
    parser.add_argument("--export", action="store_true", help="export the best model")
    parser.add_argument("--export-dir", default=None, metavar="DIR",
                        help="base directory of --export (default saved_models)")
    parser.add_argument("--no-lite", dest="lite", action="store_false",
                        help="with --export: no LiteRT model in the export, as zoo export "
                        "--no-lite")
    parser.add_argument("--image-size", type=parse_image_size, default=None, metavar="H,W",
                        help="model input size (default: the dataset's own, raised to the "
                             "family's smallest input where it is below; zoo train's default "
                             "is the model's default input)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the tuner and the data pipelines (default: 0)")
    parser.add_argument("--jit", action="store_true",
                        help="compile train steps with XLA (pays off for long trials only)")
    parser.add_argument("--deterministic", action="store_true",
                        help="TensorFlow's op determinism: the same command scores its trials "
                        "bit for bit alike, as zoo train --deterministic (slower)")
    parser.add_argument("--mixed-precision", default="auto", choices=MIXED_PRECISION,
                        help=f"trials' compute dtype, as in zoo train: {AUTO_PRECISION_HELP}, "
                        "off, float16, bfloat16")
    parser.add_argument("--ignore-label", default=None, metavar="V", type=ignore_label_arg,
                        help="segmentation: the mask value of pixels no loss or metric counts "
                        "(Pascal VOC's 255), outside the classes 0..K-1 (default: none)")
    parser.add_argument("--cv", type=int, default=None, metavar="K",
                        help="score trials by K-fold cross-validation over train + validation "
                        "(random/bayesian/grid); the best is refitted on both")
    parser.add_argument("--show-space", action="store_true",
                        help="print the search space (after --set/--fix) and exit")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2),
                        help="0 no progress output (the default), 1 keras-tuner's trial "
                        "display and progress bars (one line per epoch where the output is "
                        "no terminal), 2 one line per epoch")
    output.add_argument("--quiet", action="store_true",
                        help="no progress output, as zoo train --quiet (the same as "
                        "--verbose 0)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--chief", type=_host_port, metavar="HOST:PORT",
                       help="run the keras-tuner chief (the oracle) on HOST:PORT")
    group.add_argument("--worker", type=_host_port, metavar="HOST:PORT",
                       help="run trials for the chief at HOST:PORT (needs --worker-id)")
    group.add_argument("--workers", type=int, metavar="N",
                       help="start a chief and N workers on this machine and wait")
    parser.add_argument("--worker-id", type=int, default=None, metavar="N",
                        help="with --worker: this worker's number, 0, 1, 2, ...")

    def run(args):
        require_tensorflow_backend("zoo tune")
        from tuning.assignments import check_set_fix, family_of, parse_assignments
        from tuning.spaces import checked_space
        set_ = parse_assignments(args.set, "--set")
        fix = parse_assignments(args.fix, "--fix")
        check_set_fix(set_, fix)
        if args.worker and args.worker_id is None:
            raise ValueError("--worker needs --worker-id N")
        if args.worker_id is not None and not args.worker:
            raise ValueError("--worker-id goes with --worker HOST:PORT")
        if args.worker_id is not None and args.worker_id < 0:
            raise ValueError(f"--worker-id must be >= 0. Received: {args.worker_id}")
        for value, flag in ((args.max_trials, "--max-trials"), (args.epochs, "--epochs")):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1. Received: {value}")
        if args.export_dir is not None and not args.export:
            raise ValueError(f"--export-dir {args.export_dir} goes with --export")
        if not args.lite and not args.export:
            raise ValueError("--no-lite goes with --export")
        # (progress bars on a terminal only: one line per epoch in a file or a pipe)
        args.verbose = 0 if args.quiet else progress_verbose(args.verbose)
        # Checked here too, before a local cluster's processes start.
        check_seed(args.seed)
        if args.project is not None:
            _check_project_name(args.project)
        family_of(args.model)   # a name without a search space is refused here, not by a chief
        if args.show_space:
            checked_space(args.model, set_, fix)   # its refusals before the imports
            from tuning.hypermodels import get_hypermodel
            hm = get_hypermodel(args.model, set=set_, fix=fix)
            print(_text(hm.describe()))
            return 0
        # "" is no dataset (refused by the loader), not the default
        dataset = (args.dataset if args.dataset is not None
                   else "shapes" if args.model == "unet" else "digits")
        dataset_source(dataset)   # unknown, or no such folder: refused before TensorFlow's import
        options = dict(tuner=args.tuner, objective=args.objective, max_trials=args.max_trials,
                       epochs=args.epochs, directory=args.directory, project=args.project,
                       overwrite=args.overwrite, set=set_, fix=fix, export=args.export,
                       export_dir=args.export_dir, export_lite=args.lite,
                       image_size=args.image_size, data_dir=args.data_dir,
                       download=args.download, seed=args.seed, jit_compile=args.jit,
                       mixed_precision=args.mixed_precision, deterministic=args.deterministic,
                       verbose=args.verbose, cv=args.cv, ignore_label=args.ignore_label)
        # search's own checks that need no TensorFlow (--cv, --directory, --export-dir), before
        # its import and before a cluster's processes start
        _check_arguments(args.model, dataset, **options)
        _refuse_early(args.model, dataset, set_, fix, args.image_size, args.objective)
        if args.workers is not None:
            try:
                return _run_local_cluster(args)
            except KeyboardInterrupt:    # its processes stopped: what the search left
                print(_stopped_line(args, dataset), file=sys.stderr)
                raise
        if args.chief:
            _set_role("chief", *args.chief)
        elif args.worker:
            _set_role(f"tuner{args.worker_id}", *args.worker)
        # The search's imports (TensorFlow, Keras, keras-tuner: ~6 s, after every check above)
        # first, then the objects alive (theirs: some 400,000) leave the garbage collector's
        # reach for good: every trial ends with clear_session and a full collection, which
        # scanned them all each time (8 LeNet-5 trials on digits: 29 s -> 21 s). The
        # command's process only: a search called from Python leaves the caller's collector
        # as it is.
        import tuning.hypermodels  # noqa: F401
        from zoo.data import download_progress_hidden
        gc.collect()
        gc.freeze()
        try:
            with download_progress_hidden() if args.verbose == 0 else contextlib.nullcontext():
                df = search(args.model, dataset, **options)
        except KeyboardInterrupt as exc:
            if os.environ.get(_CLUSTER_MEMBER):    # stopped by its --workers command,
                from zoo.cli import signal_exit_code   # which speaks for the cluster
                raise SystemExit(signal_exit_code(exc)) from None
            print(_stopped_line(args, dataset, getattr(exc, "zoo_trials_done", False)),
                  file=sys.stderr)
            raise
        if df is None:
            print(f"worker {args.worker_id}: done")
            return 0
        print(_text(df.drop(columns=["message"])))
        _print_best(df.attrs["best"], df.attrs["project_dir"])
        return 0

    return run


def _stopped_line(args, dataset, trials_done=False):
    """What a Ctrl-C left: the trials completed so far and the command that goes on
    (``trials_done``: stopped after the search's trials, testing or exporting the best)."""
    if args.worker:
        if not _JOINED:
            return (f"zoo tune: worker {args.worker_id} stopped before the chief at "
                    f"{args.worker[0]}:{args.worker[1]} answered; nothing was written")
        return (f"zoo tune: worker {args.worker_id} stopped; the same command (same "
                f"--worker-id) joins the chief again, and the trial it was running is run "
                f"again")
    try:
        import pandas as pd

        from tuning.assignments import family_of
        project = args.project or _default_project(family_of(args.model),
                                                   dataset, args.tuner)
        project_dir = os.path.join(args.directory, project)
        done = int((pd.read_csv(os.path.join(project_dir, "trials.csv"))["status"]
                    == "COMPLETED").sum())
    except (OSError, ValueError, KeyError):     # stopped before the search began
        return "zoo tune: stopped before the search began"
    # (run again, --overwrite would start the search afresh)
    again = "the same command without --overwrite" if args.overwrite else "the same command"
    trials = f"{done} trial{'' if done == 1 else 's'} completed"
    if trials_done:   # (it said the interrupted trial would run again)
        return (f"zoo tune: stopped after the search's trials ({trials}), while testing or "
                f"exporting the best; {again} finishes the search in {project_dir} with no "
                f"trial run again")
    return (f"zoo tune: stopped with {trials}; {again} resumes the search in {project_dir} "
            f"(the interrupted trial runs again)")


def _text(df):
    """``df`` as a markdown table; missing values (a failed or unfinished trial's score,
    best step, seconds) are blank cells, as in ``trials.csv``, not ``nan`` or ``<NA>``."""
    blank = df.astype(object).where(df.notna(), None)
    try:
        return blank.to_markdown(index=False)
    except ImportError:  # pragma: no cover - tabulate missing
        return df.to_string(index=False, na_rep="")


def _print_best(best, project_dir):
    if best.get("trial") is None:
        print(f"no trial completed; results in {project_dir}")
        return
    # Floats to 6 significant digits, as the table shows them (best.json keeps them all).
    hps = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in best["hyperparameters"].items())
    test = ", ".join(f"{k} {v:.4f}" for k, v in best["test"].items())
    print(f"best trial {best['trial']}: {best['objective']} {best['score']:.4f} ({hps})")
    split = ""
    if best.get("test_is_validation"):    # as zoo train's summary line says it
        split = (" (on the validation split: the dataset has no test split"
                 + ("; the refit trained on it" if best.get("refit_epochs") else "") + ")")
    print(f"test{split}: {test}")
    if best.get("ignore_label") is not None:
        print(f"scores leave out the pixels labelled {best['ignore_label']} "
              f"(--ignore-label {best['ignore_label']})")
    if best.get("exported_before"):
        print(f"exported before: {best['export']} (this search's best, exported by an earlier "
              f"run; not exported again)")
    elif best.get("export"):
        print(f"exported: {best['export']}")
        from zoo.export import print_changed_classes_note
        print_changed_classes_note(best["export"], "tune")
    print(f"results: {os.path.join(project_dir, 'trials.csv')}, "
          f"{os.path.join(project_dir, 'search.png')}")


def _set_role(tuner_id, host, port):
    """keras-tuner's distributed mode is configured by environment variables,
    read when the tuner is created."""
    os.environ["KERASTUNER_TUNER_ID"] = tuner_id
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)


def _free_port(host="127.0.0.1"):
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _argv(args):
    """The command line of one process of a local cluster (no --workers)."""
    argv = [args.model, "--tuner", args.tuner, "--max-trials", str(args.max_trials),
            "--epochs", str(args.epochs), "--directory", args.directory,
            "--seed", str(args.seed),
            "--verbose", str(args.verbose)]
    for flag, value in (("--dataset", args.dataset), ("--objective", args.objective),
                        ("--project", args.project), ("--data-dir", args.data_dir)):
        if value is not None:
            argv += [flag, value]
    if args.image_size:
        argv += ["--image-size", ",".join(str(v) for v in args.image_size)]
    for item in args.set:
        argv += ["--set", item]
    for item in args.fix:
        argv += ["--fix", item]
    if args.download:   # the chief prepares the data before any worker starts
        argv.append("--download")
    if args.jit:
        argv.append("--jit")
    if args.deterministic:
        argv.append("--deterministic")
    argv += ["--mixed-precision", args.mixed_precision]
    if args.cv is not None:
        argv += ["--cv", str(args.cv)]
    if args.ignore_label is not None:
        argv += ["--ignore-label", str(args.ignore_label)]
    return argv


def _wait_for_port(host, port, process, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            return False
        if _not_answering(host, port, timeout=1) is None:
            return True
        time.sleep(0.5)
    return False


def _exit_text(code):
    """A process's exit code as words: ``exit code 1``, ``killed by SIGKILL``."""
    if code < 0:
        import signal
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _gpu_count() -> int:
    """The GPUs TensorFlow computes on here (:func:`zoo.common.visible_gpus`); 0 without
    asking TensorFlow where no GPU device exists (:func:`zoo.startlog.gpu_absent`)."""
    from zoo.common import visible_gpus
    from zoo.startlog import gpu_absent
    return 0 if gpu_absent() else len(visible_gpus())


def _cluster_envs(workers) -> tuple:
    """``(chief's environment, [each worker's])`` of a local cluster. TensorFlow maps
    nearly all the memory of every GPU it sees into the first process that uses it, so
    with GPUs each process grows its memory as it needs instead
    (``TF_FORCE_GPU_ALLOW_GROWTH=true``, unless set), and with several GPUs worker ``i``
    sees only the ``i % n``-th (``CUDA_VISIBLE_DEVICES``); the chief, which trains
    nothing, sees them all and so picks the precision its workers follow. Every process
    is marked a cluster member (:data:`_CLUSTER_MEMBER`: stopped, it says nothing)."""
    gpus = _gpu_count()
    base = {**os.environ, _CLUSTER_MEMBER: "1"}
    if gpus:
        base.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    chief = {**base, _LOCAL_CLUSTER: "1"}
    if gpus < 2:
        return chief, [base] * workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = ([v.strip() for v in visible.split(",") if v.strip()] if visible
           else [str(i) for i in range(gpus)])[:gpus]
    return chief, [{**base, "CUDA_VISIBLE_DEVICES": ids[i % len(ids)]}
                   for i in range(workers)]


def _run_local_cluster(args, restarts=3, poll=0.5):
    """Start a chief and ``args.workers`` workers on 127.0.0.1 and wait for all.

    A worker that stops with an error or a signal while the chief runs (killed, out of
    memory) is started again with its id, up to ``restarts`` times, and runs the trial it
    held again: keras-tuner's chief waits for that trial, and for every worker that has
    joined it, so without it the chief waited forever. A chief that stops with an error
    stops the workers (they would wait for it for an hour)."""
    import signal
    import subprocess
    import sys
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1. Received: {args.workers}")
    host, port = "127.0.0.1", _free_port()
    base = [sys.executable, "-m", "tuning", *_argv(args)]
    chief_cmd = base + ["--chief", f"{host}:{port}"]
    chief_cmd += ["--overwrite"] if args.overwrite else []
    chief_cmd += ["--export"] if args.export else []
    chief_cmd += ["--export-dir", args.export_dir] if args.export_dir is not None else []
    chief_cmd += [] if args.lite else ["--no-lite"]

    def leave_ctrl_c_to_the_cluster():
        # Ctrl-C reaches the terminal's whole process group: this process stops the
        # others (each of which would say how to start it again on its own).
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Its workers of before cannot reach this chief (a new port): the trials they were
    # running are retried by any worker.
    chief_env, worker_envs = _cluster_envs(args.workers)
    chief = subprocess.Popen(chief_cmd, env=chief_env, preexec_fn=leave_ctrl_c_to_the_cluster)
    procs = {"chief": chief}
    try:
        # Workers start once the chief serves (it has checked the project by then).
        if not _wait_for_port(host, port, chief, timeout=3600):
            code = chief.wait()
            if code > 0:   # the chief has said why, in its one line (bad input: code 2)
                return code
            if code == 0:  # a finished search: the chief printed its table and returned
                return 0   # without serving, and no worker has a trial to run
            raise RuntimeError(f"the chief exited (code {code}) before serving on {host}:{port}")
        commands = {f"worker {i}": base + ["--worker", f"{host}:{port}", "--worker-id", str(i)]
                    for i in range(args.workers)}
        envs = dict(zip(commands, worker_envs))
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(cmd, env=envs[name],
                                           preexec_fn=leave_ctrl_c_to_the_cluster)
        started = dict.fromkeys(commands, 1)
        while chief.poll() is None:
            for name, cmd in commands.items():
                code = procs[name].poll()
                if not code:     # running, or done (the chief told it to stop)
                    continue
                if started[name] > restarts:
                    raise RuntimeError(
                        f"distributed search failed: {name} stopped {started[name]} times "
                        f"(the last: {_exit_text(code)}); the same command resumes the search")
                print(f"zoo tune: {name} stopped ({_exit_text(code)}); starting it again "
                      f"to run its trial again", file=sys.stderr, flush=True)
                procs[name] = subprocess.Popen(cmd, env=envs[name],
                                               preexec_fn=leave_ctrl_c_to_the_cluster)
                started[name] += 1
            time.sleep(poll)
        if chief.returncode > 0:      # it has said why, in its one line (its workers have
            return chief.returncode   # stopped, or wait for it: stopped below)
        if chief.returncode != 0:
            raise RuntimeError(f"distributed search failed: chief "
                               f"({_exit_text(chief.returncode)}); the same command resumes "
                               f"the search")
        failed = []
        for name, proc in procs.items():
            if proc.wait() != 0:
                failed.append(f"{name} ({_exit_text(proc.returncode)})")
        if failed:
            raise RuntimeError(f"distributed search failed: {', '.join(failed)}")
    finally:
        # The workers first, then the chief: a worker still training that lost its chief
        # said its trial failed before it was stopped itself.
        for group in ([p for name, p in procs.items() if name != "chief"], [chief]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0
