"""Throughput and latency benchmarks of the zoo against keras.applications and PyTorch.

Run ``python -m benchmarks [--quick] [--models ...] [--out DIR]``; see
:mod:`benchmarks.__main__` for the sections and options. Each comparison is measured in one
run with the variants interleaved (those that need TensorFlow's own settings, or PyTorch,
in reference processes of their own: :mod:`benchmarks.worker`), and reported as a ratio
against its reference.
"""
