"""Train a small U-Net on the generated `shapes` scenes (offline) and report mean IoU.

    python examples/unet_shapes.py [--epochs 48] [--run-dir runs/unet-shapes]

The same run from the shell: ``zoo train unet --dataset shapes``.
"""

import argparse
import json
import os
import sys

from zoo.startlog import for_command_line

# As the zoo commands: TF_CPP_MIN_LOG_LEVEL 2 unless set, and TensorFlow's start-up lines
# (which ignore it) filtered by it. Before TensorFlow is imported.
for_command_line()

import numpy as np

from zoo import data, train, unet


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    defaults = train.train_defaults("unet", "shapes")
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--run-dir", default="runs/unet-shapes")
    args = parser.parse_args()

    # 64x64 RGB scenes; classes background, circle, square, triangle. Flips and shifts move
    # image and mask together (contrast changes the image alone); validation and test are
    # never augmented.
    splits = data.load_splits("shapes", image_size=(64, 64), batch_size=defaults["batch_size"],
                              augment=True)
    # A small U-Net: same padding (output = input size), 8 base filters, 3 poolings, batch
    # norm.
    model = unet(input_shape=splits.info.input_shape, num_classes=splits.info.num_classes,
                 **defaults["model_args"])
    train.fit(model, splits, epochs=args.epochs, run_dir=args.run_dir,
              learning_rate=defaults["learning_rate"], lr_schedule=defaults["lr_schedule"],
              early_stopping=defaults["early_stopping"], model_name="unet",
              model_args=defaults["model_args"], verbose=2)
    with open(os.path.join(args.run_dir, "metrics.json")) as f:
        print("test mean IoU:", round(json.load(f)["test_mean_iou"], 4))

    # Per-class IoU on the test split.
    x, y = zip(*[(a.numpy(), b.numpy()) for a, b in splits.test])
    pred = np.argmax(train.fit.last_model.predict(np.concatenate(x), verbose=0), -1)
    true = np.concatenate(y)
    for k, label in enumerate(splits.info.labels):
        inter = np.sum((pred == k) & (true == k))
        union = np.sum((pred == k) | (true == k))
        print(f"{label:>10}: IoU {inter / max(union, 1):.3f}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as exc:   # a bad argument: the zoo says it in one line
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {exc}")
