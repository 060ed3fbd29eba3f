"""Measurement, results and report writing shared by every benchmark section.

A section measures several *variants* of the same work (e.g. one ResNet-50 training step
from the zoo, from ``keras.applications`` and from PyTorch). :func:`measure` warms each
variant up, then runs the repetitions interleaved -- repetition ``r`` runs every variant
once, in an order rotated by ``r`` -- so that load from other processes hits all variants
alike. Each group of rows has one *subject* (the zoo's way) or *reference*, and the other
rows carry a ratio of throughputs paired by repetition index (``subject / this row``, or
for ``zoo serve`` ``this row / in-process``), which cancels most of the slow drift of a
shared machine.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from typing import Callable, Optional

import numpy as np

from zoo.common import atomic_write_text

#: Columns of ``results.csv``, in order.
COLUMNS = ("section", "model", "input", "batch", "clients", "variant", "metric", "unit",
           "repeats", "median", "min", "max", "q1", "q3", "p50_ms", "p99_ms", "ratio_of",
           "ratio", "ratio_min", "ratio_max", "target", "met", "first_seconds", "precision",
           "gflops", "peak_share", "note")

#: Side of the square matrices of :func:`matmul_peak`.
PEAK_MATMUL_SIZE = 2048

#: Section keys in run order, with their titles in the markdown report.
SECTIONS = {
    "train": "Training throughput",
    "inference": "Inference throughput",
    "serve": "zoo serve vs in-process",
    "pipeline": "Input pipeline",
    "accuracy": "Time to accuracy",
}


def log(message: str) -> None:
    """Progress on stderr with a wall-clock stamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Row:
    """One line of ``results.csv``: a variant's measured values and its ratio."""

    section: str
    model: str
    variant: str
    metric: str
    unit: str
    values: list
    input: str = ""
    batch: Optional[int] = None
    clients: Optional[int] = None
    ratio_of: str = ""               # how ``ratios`` were formed, e.g. "zoo / this"
    reference: bool = False          # the row the others are compared with
    ratios: list = dataclasses.field(default_factory=list)
    target: Optional[float] = None   # the ratio must reach at least this
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    first_seconds: Optional[float] = None
    precision: str = ""              # compute dtype of the variant, for its share of the peak
    gflop_per_item: Optional[float] = None   # work per image (training: 3 x forward)
    peak_gflops: Optional[float] = None      # matmul peak of ``precision`` measured in the run
    note: str = ""

    def as_dict(self) -> dict:
        v = np.asarray(self.values, dtype="float64")
        r = np.asarray(self.ratios, dtype="float64")
        stats = {"median": np.median(v), "min": v.min(), "max": v.max(),
                 "q1": np.percentile(v, 25), "q3": np.percentile(v, 75)} if v.size else {}
        ratio = float(np.median(r)) if r.size else None
        met = "" if self.target is None or ratio is None else ("yes" if ratio >= self.target
                                                                else "no")
        gflops = (float(stats["median"]) * self.gflop_per_item
                  if stats and self.gflop_per_item else None)
        share = gflops / self.peak_gflops if gflops and self.peak_gflops else None
        out = {
            "section": self.section, "model": self.model, "input": self.input,
            "batch": self.batch, "clients": self.clients, "variant": self.variant,
            "metric": self.metric, "unit": self.unit, "repeats": int(v.size),
            **{k: _round(float(x)) for k, x in stats.items()},
            "p50_ms": _round(self.p50_ms), "p99_ms": _round(self.p99_ms),
            "ratio_of": self.ratio_of, "ratio": _round(ratio, 3),
            "ratio_min": _round(float(r.min()), 3) if r.size else None,
            "ratio_max": _round(float(r.max()), 3) if r.size else None,
            "target": self.target, "met": met,
            "first_seconds": _round(self.first_seconds), "precision": self.precision,
            "gflops": _round(gflops), "peak_share": _round(share, 3), "note": self.note,
        }
        return {k: out.get(k) for k in COLUMNS}


def _round(x, digits=None):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    if digits is not None:
        return round(x, digits)
    # Three significant figures, whatever the scale.
    return float(f"{x:.3g}") if abs(x) < 1000 else round(x, 1)


@dataclasses.dataclass
class Variant:
    """A named piece of work: ``run()`` does one repetition and returns the items done, or
    ``(items, seconds)`` when it times itself (to leave out its own set-up), or ``(items,
    seconds, CPU seconds)`` when its work runs in another process."""

    name: str
    run: Callable[[], float]
    target: Optional[float] = None   # minimum ratio subject / this variant
    note: str = ""
    precision: str = "float32"       # the dtype its convolutions compute in


def measure(variants, *, repeats: int, warmup: int = 1) -> dict:
    """Warm up, then time ``repeats`` interleaved repetitions of every variant.

    A variant that raises is reported and dropped; the others go on.

    Args:
        variants: list of :class:`Variant`.
        repeats: timed repetitions per variant.
        warmup: untimed runs per variant first, at least one (the first one compiles).

    Returns:
        ``{name: {"rates": [items/s per repetition], "cores": [busy cores per repetition],
        "first": seconds of the first run, "error": message or ""}}``. Busy cores are CPU
        seconds over wall seconds: of this process's threads for a plain run, the
        variant's own figure when it times itself and gives one (none when it does not).

    Raises:
        ValueError: two variants have the same name.
    """
    names = [v.name for v in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:   # their repetitions would go into one list, out of step with the others'
        raise ValueError(f"variants are kept by name, each must have its own; received "
                         f"{twice} more than once")
    out = {v.name: {"rates": [], "cores": [], "first": None, "error": ""} for v in variants}
    alive = []
    for v in variants:
        try:
            for i in range(max(1, warmup)):
                t0 = time.perf_counter()
                v.run()
                if i == 0:
                    out[v.name]["first"] = time.perf_counter() - t0
            alive.append(v)
            log(f"  warmed up {v.name} (first run {out[v.name]['first']:.1f} s)")
        except Exception as exc:  # keep measuring the others
            out[v.name]["error"] = _error_text(exc)
            log(f"  {v.name} failed: {out[v.name]['error']}")
    for r in range(repeats):
        k = r % max(1, len(alive))
        for v in alive[k:] + alive[:k]:
            if out[v.name]["error"]:
                continue
            try:
                c0, t0 = time.process_time(), time.perf_counter()
                items = v.run()
                seconds = time.perf_counter() - t0
                cpu = time.process_time() - c0
                if isinstance(items, tuple):   # timed by the variant: CPU time if it says
                    items, seconds, cpu = (*items, None)[:3]
                out[v.name]["rates"].append(items / seconds)
                if cpu is not None:
                    out[v.name]["cores"].append(cpu / seconds)
            except Exception as exc:
                out[v.name]["error"] = _error_text(exc)
                log(f"  {v.name} failed: {out[v.name]['error']}")
        log("  repetition %d/%d: %s" % (r + 1, repeats, ", ".join(
            f"{n} {m['rates'][-1]:.3g}/s" for n, m in out.items() if len(m["rates"]) == r + 1)))
    return out


def _error_text(exc) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if os.environ.get("ZOO_BENCH_DEBUG"):
        traceback.print_exc()
    return f"{type(exc).__name__}: {text[:200]}"


def rows_from(measured: dict, variants, *, section, model, metric, unit, subject, input="",
              batch=None, clients=None, note="", gflop_per_item=None) -> list:
    """Turn :func:`measure` output into rows with paired ratios against ``subject``.

    ``gflop_per_item``: the work of one item in GFLOP, for the rows' achieved GFLOP/s."""
    rows = []
    subj = measured.get(subject, {}).get("rates", [])
    for v in variants:
        m = measured[v.name]
        rates = m["rates"]
        n = min(len(rates), len(subj))
        ratios = [] if v.name == subject else [subj[i] / rates[i] for i in range(n)
                                                if rates[i] > 0]
        cores = m.get("cores") and "busy cores per repetition " + " ".join(
            f"{c:.1f}" for c in m["cores"])
        if cores and v.target is not None and ratios:
            cores += _busiest_ratio(subj, rates, m["cores"])
        text = "; ".join(t for t in (note, v.note, cores,
                                     m["error"] and f"failed: {m['error']}") if t)
        rows.append(Row(section=section, model=model, variant=v.name, metric=metric,
                        unit=unit, values=rates, input=input, batch=batch, clients=clients,
                        ratio_of=f"{subject} / this", reference=v.name == subject,
                        ratios=ratios if subj else [],
                        target=v.target, first_seconds=m["first"], note=text,
                        precision=v.precision, gflop_per_item=gflop_per_item))
    return rows


#: A repetition counts among a variant's busiest when it kept at least this share of the
#: most cores the variant kept busy in any of its repetitions.
BUSIEST_SHARE = 0.75


def _busiest_ratio(subject_rates, rates, cores) -> str:
    """``"; ratio R on its k of n busiest repetitions"`` when some of a target row's
    repetitions kept fewer cores busy than its others (Keras' ``predict`` runs some calls
    on one core of two, benchmarks/README.md, item 27), else ``""``: the ratio the target
    would get if the reference always ran at its best."""
    n = min(len(subject_rates), len(rates), len(cores))
    top = max(cores[:n], default=0.0)
    busiest = [i for i in range(n) if cores[i] >= BUSIEST_SHARE * top and rates[i] > 0]
    if not busiest or len(busiest) == n:
        return ""
    ratio = float(np.median([subject_rates[i] / rates[i] for i in busiest]))
    return (f"; ratio {ratio:.2f} on its {len(busiest)} of {n} repetitions with at least "
            f"{BUSIEST_SHARE:.0%} of its most busy cores")


def model_gflop(model) -> float:
    """GFLOP of one forward pass of ``model`` on one image: 2 x the multiply-adds of its
    convolutions and dense layers (:func:`zoo.profile.profile`, the ResNet paper's
    convention)."""
    from zoo.profile import profile
    return profile(model).totals.flops / 1e9


#: A training step's work as a multiple of the forward pass: the forward products, and in
#: the backward pass one product for the gradient of the input and one for the weights.
TRAIN_FLOP_FACTOR = 3


def matmul_peak(dtypes=("float32",), *, size=PEAK_MATMUL_SIZE, repeats=5, calls=8) -> dict:
    """The best GFLOP/s of a ``size`` x ``size`` TensorFlow matmul in this process, per dtype.

    This is what the machine's cores reach on the kernel that convolutions come down to;
    every throughput row is set against it (``peak_share``). Best of ``repeats`` runs of
    ``calls`` back-to-back products, after one warm-up call."""
    import tensorflow as tf

    out = {}
    for dtype in dtypes:
        a = tf.cast(tf.random.stateless_normal((size, size), seed=(1, 2)), dtype)
        b = tf.cast(tf.random.stateless_normal((size, size), seed=(3, 4)), dtype)
        product = tf.function(tf.linalg.matmul)
        product(a, b).numpy()
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                c = product(a, b)
            c.numpy()
            best = max(best, calls * 2 * size ** 3 / (time.perf_counter() - t0) / 1e9)
        out[dtype] = round(best, 1)
    return out


def set_peaks(rows, peaks: dict) -> None:
    """Give every row the measured matmul peak of its precision (see :func:`matmul_peak`)."""
    for row in rows:
        row.peak_gflops = peaks.get(row.precision)


# ---------------------------------------------------------------------------------------
# The machine.

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list:
    from zoo.common import cpu_flags
    flags = cpu_flags()
    return [x for x in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
            if x in flags]


def _version(module: str) -> Optional[str]:
    from importlib import metadata
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def _gpus() -> list:
    try:
        import tensorflow as tf
        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:
        gpus = []
    if gpus:
        try:
            names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=10).stdout.split("\n")
            gpus = [n.strip() for n in names if n.strip()] or gpus
        except (OSError, subprocess.SubprocessError):
            pass
    return gpus


#: Distributions whose versions the machine description lists (those installed): the
#: frameworks, the ``Servable``'s runtimes (LiteRT, OpenVINO), PyTorch, and ``zoo serve``'s
#: server, JSON libraries and compiled reader, and the load generator.
LIBRARIES = ("zoo", "tensorflow", "keras", "numpy", "ai-edge-litert", "openvino", "torch",
             "fastapi", "uvicorn", "orjson", "pysimdjson", "numba", "aiohttp")


def machine() -> dict:
    """CPU, cores, memory, GPUs, load and library versions of this machine."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    libs = {name: _version(name) for name in LIBRARIES}
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gb": round(mem, 1) if mem else None,
        "gpus": _gpus(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {k: v for k, v in libs.items() if v},
    }


# ---------------------------------------------------------------------------------------
# Reports.

def write_csv(rows, path) -> None:
    """``results.csv`` with :data:`COLUMNS`, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.as_dict().items()})
    atomic_write_text(path, buf.getvalue())


def _fmt(x) -> str:
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def markdown(rows, info: dict, *, command: str, seconds: float) -> str:
    """The markdown report: machine description, then one table per section."""
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    lines = [
        "# zoo benchmarks", "",
        f"- command: `{command}`",
        f"- machine: {info['cpu']} ({', '.join(info['cpu_flags']) or 'no AVX'}), "
        f"{info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['memory_gb']} GB RAM, GPU: {', '.join(info['gpus']) or 'none'}",
        f"- load average at start: {info.get('load_average')}; at end: "
        f"{info.get('load_average_end')}",
        f"- software: Python {info['python']}, {libs}"
        + (f" (PyTorch threads: {info['torch_threads']})" if info.get("torch_threads") else ""),
        f"- wall time: {seconds / 60:.1f} min; finished {info.get('finished', '')}",
    ]
    if info.get("matmul_peak"):
        lines.append(
            f"- peak: a {PEAK_MATMUL_SIZE}x{PEAK_MATMUL_SIZE} TensorFlow matmul in this process "
            "reaches " + ", ".join(f"{v:.0f} GFLOP/s in {k}"
                                   for k, v in info["matmul_peak"].items())
            + f" (best of {info.get('matmul_peak_runs', 1)} measurements in the run)")
    lines += [
        "",
        "Throughputs are medians over the repetitions after warm-up, with min-max and the",
        "interquartile range. `ratio` is the median of the ratios of repetitions run back to",
        "back (interleaved), with their min-max, as each section says; a target is met when",
        "the median ratio reaches it (shown to more than 2 decimals where 2 would round it",
        "across the target). `GFLOP/s` is the median throughput times the model's",
        "FLOPs per image (2 x the multiply-adds of its convolutions and dense layers, from",
        "`zoo.profile`; a training step counts 3 x the forward pass), with its share of the",
        "measured matmul peak in the precision the convolutions compute in.",
    ]
    for key, title in SECTIONS.items():
        sec_rows = [r for r in rows if r.section == key]
        if not sec_rows:
            continue
        sec = [r.as_dict() for r in sec_rows]
        lines += ["", f"## {title}", ""]
        forms = list(dict.fromkeys(r.ratio_of for r in sec_rows if r.ratio_of))
        if forms:
            lines += ["ratio = " + "; ".join(f"`{f}`" for f in forms), ""]
        serve = key == "serve"
        work = any(d["gflops"] is not None for d in sec)
        head = ["model", "input", "batch"] + (["clients"] if serve else []) + [
            "variant", "median", "min-max", "IQR"] + (["p50 ms", "p99 ms"] if serve else []) + (
            ["GFLOP/s (of peak)"] if work else []) + [
            "ratio (min-max)", "target", "met", "note"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        for r, d in zip(sec_rows, sec):
            unit = d["unit"]
            ratio = ("reference" if r.reference else "" if d["ratio"] is None else
                     f"{ratio_text(float(np.median(r.ratios)), d['target'])} "
                     f"({d['ratio_min']:.2f}-{d['ratio_max']:.2f})")
            cells = [d["model"], d["input"], _fmt(d["batch"])]
            if serve:
                cells.append(_fmt(d["clients"]))
            cells += [d["variant"],
                      f"{_fmt(d['median'])} {unit}" if d["median"] is not None else "-",
                      f"{_fmt(d['min'])}-{_fmt(d['max'])}" if d["median"] is not None else "",
                      f"{_fmt(d['q1'])}-{_fmt(d['q3'])}" if d["median"] is not None else ""]
            if serve:
                cells += [_fmt(d["p50_ms"]), _fmt(d["p99_ms"])]
            if work:
                cells.append("" if d["gflops"] is None else _fmt(d["gflops"]) + (
                    f" ({d['peak_share']:.0%} of {d['precision']})"
                    if d["peak_share"] is not None else f" ({d['precision']})"))
            cells += [ratio, "" if d["target"] is None else f">= {d['target']}", d["met"],
                      (d["note"] or "").replace("|", "/")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def ratio_text(ratio: float, target=None) -> str:
    """``ratio`` to 2 decimals, or to as many more (up to 6) as it takes for the text to
    stand on the side of ``target`` the ratio does: 1.4996 against 1.5 is "1.4996", not the
    "1.50" of a target shown as not met."""
    for digits in range(2, 7):
        text = f"{ratio:.{digits}f}"
        if target is None or (float(text) >= target) == (ratio >= target):
            return text
    return f"{math.floor(ratio * 1e6) / 1e6:.6f}"   # below the target within a millionth


def write_markdown(text, path) -> None:
    """Write the markdown report atomically."""
    atomic_write_text(path, text)


def count_type(least):
    """An argparse type for the command lines here: an integer >= ``least``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}; received "
                                             f"{text!r}")
        return value
    return parse


def known_model(parser, name) -> str:
    """``name`` if the zoo registers a model of that name, else ``parser``'s one-line usage
    error (exit code 2) listing the registered ones."""
    from zoo.registry import list_models
    if name not in list_models():
        parser.error(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return name


def add_model_options(parser, *, batch_size: int, batch_help: str) -> None:
    """The options the one-model tools share: ``--image-size``, ``--batch-size`` (default
    ``batch_size``) and ``--mixed-precision``."""
    parser.add_argument("--image-size", type=count_type(1), default=None,
                        help="square input size (default: the model's; at least its "
                        "smallest)")
    parser.add_argument("--batch-size", type=count_type(1), default=batch_size,
                        help=f"{batch_help} (default {batch_size})")
    parser.add_argument("--mixed-precision", default="auto",
                        choices=("auto", "off", "float16", "bfloat16"),
                        help="dtype policy as in zoo train (default auto: what fit picks "
                        "here)")
