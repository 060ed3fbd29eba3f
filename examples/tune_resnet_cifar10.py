"""Hyperband search over ResNet-18 and ResNet-34 on CIFAR-10.

Needs the CIFAR-10 data from tensorflow-datasets (downloaded once with
``--download`` or present in ``--data-dir``). ``--mock N`` runs the same search
on N fake images per split (``tfds.testing.mock_data``) to try it offline.

    python examples/tune_resnet_cifar10.py --download           # the real search (GPU advised)
    python examples/tune_resnet_cifar10.py --mock 64 --max-trials 2 --epochs 1

The same search on the command line, on one machine or spread over several
(see the README, "Running on a cluster")::

    zoo tune resnet --dataset cifar10 --tuner hyperband --epochs 27 --max-trials 60 \\
        --set depth=18,34 --set lr=1e-4:1e-2 --set batch_size=64,128 --export
"""

import argparse
import contextlib
import os
import sys

from zoo.startlog import for_command_line

# As the zoo commands: TF_CPP_MIN_LOG_LEVEL 2 unless set, and TensorFlow's start-up lines
# (which ignore it) filtered by it. Before TensorFlow is imported.
for_command_line()

import tuning  # noqa: E402

SPACE = {"depth": "18,34", "lr": "1e-4:1e-2", "batch_size": "64,128"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--tuner", default="hyperband",
                        choices=("hyperband", "random", "bayesian", "grid"))
    parser.add_argument("--max-trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=27,
                        help="epochs per trial (hyperband: the most one model trains)")
    parser.add_argument("--directory", default="tuning_runs")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--mock", type=int, default=0, metavar="N",
                        help="fake N images per split instead of the real data")
    parser.add_argument("--export", action="store_true")
    args = parser.parse_args()
    if args.mock < 0:
        parser.error(f"argument --mock: expected a number of fake images per split (0: the "
                     f"real data); received {args.mock}")

    mock = contextlib.nullcontext()
    if args.mock:
        import tensorflow_datasets as tfds
        mock = tfds.testing.mock_data(num_examples=args.mock)
    with mock:
        df = tuning.search(
            "resnet", "cifar10", tuner=args.tuner, max_trials=args.max_trials,
            epochs=args.epochs, directory=args.directory, data_dir=args.data_dir,
            download=args.download,
            project="resnet_cifar10_mock" if args.mock else None, overwrite=bool(args.mock),
            set=SPACE,
            export=args.export)
    best = df.attrs["best"]
    print(df.drop(columns=["message"]).to_markdown(index=False))
    print(f"\nbest trial {best['trial']}: {best['hyperparameters']}")
    print(f"test: {best['test']}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as exc:   # a bad argument: the zoo says it in one line
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {exc}")
