"""Tune LeNet-5 on the embedded digits data and compare it with scikit-learn's SVC.

The baseline is ``SVC(gamma=0.001)`` (scikit-learn's classic digits example)
fitted on the zoo's digits train + validation splits (1,437 images: the
stratified 80/20 split with ``random_state=0``) and scored on the zoo's test
split (360 images). LeNet-5 is tuned on the train split (1,257 images) and
selected on the validation split (180 images); the best trial's model is scored
on the same test split, and then, like the SVC, the best hyperparameters are
trained on train + validation for the best trial's number of epochs and scored.

Run (about 15 minutes on 2 CPU cores)::

    python examples/tune_lenet5_digits.py
    python examples/tune_lenet5_digits.py --max-trials 4 --epochs 10   # a quick look
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import tuning  # noqa: E402
from zoo.data import digits_arrays  # noqa: E402


def svc_baseline() -> float:
    """Test accuracy of SVC(gamma=0.001) on the zoo's digits split."""
    def features(split):
        x, y = digits_arrays(split)
        return (x[..., 0] * (16.0 / 255.0)).reshape(len(x), -1), y  # sklearn's 0..16 scale
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (features(s) for s in
                                                ("train", "validation", "test"))
    svc = SVC(gamma=0.001).fit(np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]))
    return float(svc.score(x_te, y_te))


def refit_on_train_and_validation(best, seed=0):
    """Train the best hyperparameters again on train + validation (the 1,437 images
    the SVC sees) for the best trial's number of epochs; return the test accuracy."""
    import keras_tuner as kt

    from tuning.hypermodels import get_hypermodel
    from zoo import data
    splits = data.load_splits("digits", seed=seed)
    hm = get_hypermodel("lenet5", info=splits.info, jit_compile=False, seed=seed)
    hm.augmentation = data.load("digits", "train", augment=True)[1].augmentation
    hp = kt.HyperParameters()
    for name, value in best["hyperparameters"].items():
        hp.Fixed(name, value)
    model = hm.build(hp)
    both = splits.train.concatenate(splits.validation).unbatch().shuffle(2048, seed=seed)
    hm.fit(hp, model, both, epochs=best["best_step"] + 1, verbose=0)
    return float(model.evaluate(splits.test, verbose=0, return_dict=True)["accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuner", default="bayesian")
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--directory", default="tuning_runs")
    parser.add_argument("--export", action="store_true")
    parser.add_argument("--no-refit", dest="refit", action="store_false",
                        help="do not retrain the best hyperparameters on train + validation")
    args = parser.parse_args()

    svc = svc_baseline()
    start = time.time()
    df = tuning.search(
        "lenet5", "digits", tuner=args.tuner, max_trials=args.max_trials, epochs=args.epochs,
        directory=args.directory, project=f"lenet5_digits_{args.tuner}", export=args.export,
        set={"lr": "1e-3:1e-2", "optimizer": "adam,rmsprop", "augment": "0.5,1,1.5",
             "batch_size": "16,32,64"})
    minutes = (time.time() - start) / 60
    best = df.attrs["best"]
    best["best_step"] = int(df.set_index("trial").loc[best["trial"], "best_step"])
    print(df.drop(columns=["message"]).to_markdown(index=False))
    print(f"\nbest trial {best['trial']}: {best['hyperparameters']}")
    print(f"budget: {len(df)} trials x up to {args.epochs} epochs, {minutes:.1f} minutes")
    print(f"tuned LeNet-5 test accuracy (best trial's model, trained on train): "
          f"{best['test']['accuracy']:.4f}")
    if args.refit:
        start = time.time()
        refit = refit_on_train_and_validation(best)
        print(f"tuned LeNet-5 retrained on train + validation ({best['best_step'] + 1} epochs, "
              f"{(time.time() - start) / 60:.1f} minutes) test accuracy: {refit:.4f}")
    print(f"SVC(gamma=0.001) (trained on train + validation) test accuracy: {svc:.4f}")


if __name__ == "__main__":
    main()
