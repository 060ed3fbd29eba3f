"""Tune LeNet-5 on the embedded digits data and compare it with scikit-learn's SVC.

The baseline is ``SVC(gamma=0.001)`` (scikit-learn's classic digits example)
fitted on the zoo's digits train + validation splits (1,437 images: the
stratified 80/20 split with ``random_state=0``) and scored on the zoo's test
split (360 images). LeNet-5 is tuned on the same 1,437 images: every trial is
scored by 3-fold stratified cross-validation over them (a single 180-image
validation split ties most trials), and the best hyperparameters are trained on
all 1,437 images (for the folds' mean best epoch count) and scored on the test
split, like the SVC.

Run (about 20 minutes on 2 idle CPU cores)::

    python examples/tune_lenet5_digits.py
    python examples/tune_lenet5_digits.py --max-trials 3 --epochs 10   # a quick look

The same search from the command line::

    zoo tune lenet5 --dataset digits --tuner bayesian --max-trials 10 --epochs 40 --cv 3 \\
        --set lr=1e-3:1e-2 --set optimizer=adam,rmsprop --set augment=0.5,1,1.5 \\
        --set batch_size=16,32,64 --fix lr_schedule=cosine --project lenet5_digits_bayesian_cv
"""

import argparse
import os
import sys
import time

from zoo.startlog import for_command_line

# As the zoo commands: TF_CPP_MIN_LOG_LEVEL 2 unless set, and TensorFlow's start-up lines
# (which ignore it) filtered by it. Before TensorFlow is imported.
for_command_line()

import numpy as np  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import tuning  # noqa: E402
from zoo.data import digits_arrays  # noqa: E402

SPACE = {"lr": "1e-3:1e-2", "optimizer": "adam,rmsprop", "augment": "0.5,1,1.5",
         "batch_size": "16,32,64"}
FIXED = {"lr_schedule": "cosine"}   # zoo train's schedule for LeNet-5 on digits


def svc_baseline() -> float:
    """Test accuracy of SVC(gamma=0.001) on the zoo's digits split."""
    def features(split):
        x, y = digits_arrays(split)
        return (x[..., 0] * (16.0 / 255.0)).reshape(len(x), -1), y  # sklearn's 0..16 scale
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (features(s) for s in
                                                ("train", "validation", "test"))
    svc = SVC(gamma=0.001).fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    return float(svc.score(x_te, y_te))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--tuner", default="bayesian", choices=("bayesian", "random", "grid"))
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cv", type=int, default=3, help="cross-validation folds")
    parser.add_argument("--directory", default="tuning_runs")
    parser.add_argument("--export", action="store_true")
    args = parser.parse_args()

    svc = svc_baseline()
    start = time.time()
    df = tuning.search(
        "lenet5", "digits", tuner=args.tuner, max_trials=args.max_trials, epochs=args.epochs,
        cv=args.cv, directory=args.directory, project=f"lenet5_digits_{args.tuner}_cv",
        export=args.export, set=SPACE, fix=FIXED)
    minutes = (time.time() - start) / 60
    best = df.attrs["best"]
    print(df.drop(columns=["message"]).to_markdown(index=False))
    print(f"\nbest trial {best['trial']} (mean {args.cv}-fold validation accuracy "
          f"{best['score']:.4f}): {best['hyperparameters']}")
    print(f"budget: {len(df)} trials x {args.cv} folds x {args.epochs} epochs + the refit, "
          f"{minutes:.1f} minutes")
    print(f"tuned LeNet-5 (trained on train + validation for {best['refit_epochs']} epochs) "
          f"test accuracy: {best['test']['accuracy']:.4f}")
    print(f"SVC(gamma=0.001) (trained on train + validation) test accuracy: {svc:.4f}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as exc:   # a bad argument: the zoo says it in one line
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {exc}")
