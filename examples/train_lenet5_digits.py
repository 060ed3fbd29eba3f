"""Train the paper's LeNet-5 on scikit-learn's handwritten digits (offline), look at the
learning curves, and predict a few test images through the same preprocessing the export uses.

    python examples/train_lenet5_digits.py [--epochs 60] [--run-dir runs/lenet5-digits]

The same run from the shell: ``zoo train lenet5``.
"""

import argparse
import os
import sys

from zoo.startlog import for_command_line

# As the zoo commands: TF_CPP_MIN_LOG_LEVEL 2 unless set, and TensorFlow's start-up lines
# (which ignore it) filtered by it. Before TensorFlow is imported.
for_command_line()

import numpy as np

from zoo import data, lenet5, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    defaults = train.train_defaults("lenet5", "digits")
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--run-dir", default="runs/lenet5-digits")
    args = parser.parse_args()

    # Digits are 8x8; LeNet-5 wants 32x32x1: the pipeline resizes and normalises, and only
    # the training split is augmented (small rotations, zoom, shifts; never flips).
    splits = data.load_splits("digits", image_size=(32, 32), batch_size=defaults["batch_size"],
                              augment=True, seed=0)
    print(splits.info)
    model = lenet5(input_shape=splits.info.input_shape, num_classes=splits.info.num_classes)
    # zoo train's recipe: the whole cosine schedule, no early stopping.
    history = train.fit(model, splits, epochs=args.epochs, run_dir=args.run_dir,
                        learning_rate=defaults["learning_rate"],
                        lr_schedule=defaults["lr_schedule"],
                        early_stopping=defaults["early_stopping"], model_name="lenet5",
                        verbose=2)
    print(history.tail(3).to_string(index=False))
    print("learning curves:", os.path.join(args.run_dir, "learning_curves.png"))

    # Predict raw test digits (0..255, 8x8) with the preprocessing the export embeds.
    raw, labels = data.digits_arrays("test")
    probs = train.fit.last_model.predict(data.preprocess(raw[:10], splits.info), verbose=0)
    print("predicted:", np.argmax(probs, -1).tolist())
    print("true:     ", labels[:10].tolist())


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as exc:   # a bad argument: the zoo says it in one line
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {exc}")
