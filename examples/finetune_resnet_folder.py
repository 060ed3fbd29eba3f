"""Transfer learning on a local image folder: a frozen ResNet backbone with a new head, then
the top stage unfrozen and fine-tuned with a lower learning rate.

    python examples/finetune_resnet_folder.py --folder PATH [--model resnet50 --weights imagenet]
    python examples/finetune_resnet_folder.py            # builds a small demo folder first

PATH is laid out as PATH/train/<label>/*.png|jpg (+ PATH/validation, PATH/test), or as
PATH/<label>/*.png|jpg, which the zoo splits 80/10/10 into train, validation and test. With
``--weights imagenet`` (ResNet-50/101/152 and v2, Xception, Inception-v3) the backbone starts
from Keras' published ImageNet weights (fetched once when online; or ``--weights`` the
published file's path), and a fixed layer,
``zoo.weights.imagenet_input``, turns the zoo's normalised images into the input those weights
were trained on (BGR minus the ImageNet mean for ResNet v1, [-1, 1] for the others); without
it the backbone is random and the example only shows the mechanics. Any registered classifier
works: stage 2 unfreezes the layers after the backbone's stride-16 feature map (ResNet's
conv5_x, with conv4's last block for v2, which strides there; Xception's blocks 13-14;
Inception-v3's mixed8-10; AlexNet's, whose stride-16 map is its last convolution's, after its
stride-8 one; LeNet-5's, which has strides 2 and 4 only, after C3), its batch norms kept
frozen.
"""

import argparse
import json
import os
import sys

from zoo.startlog import for_command_line

# As the zoo commands: TF_CPP_MIN_LOG_LEVEL 2 unless set, and TensorFlow's start-up lines
# (which ignore it) filtered by it. Before TensorFlow is imported.
for_command_line()

import keras
import numpy as np
from PIL import Image

from zoo import data, features, get_model, list_models, model_info, train
from zoo import weights as zoo_weights


def make_demo_folder(root, scenes=240):
    """``scenes`` scenes from `shapes`, labelled by the shape covering the most pixels (so
    the classes are not balanced), 4 in 6 in train, 1 in 6 each in validation and test."""
    images, masks = data.make_shapes(scenes, seed=7)
    names = data.SHAPES_LABELS
    for i, (img, mask) in enumerate(zip(images, masks)):
        counts = np.bincount(mask.ravel(), minlength=4)[1:]
        split = "train" if i % 6 < 4 else ("validation" if i % 6 == 4 else "test")
        folder = os.path.join(root, split, names[1 + int(np.argmax(counts))])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(img).save(os.path.join(folder, f"{i:04d}.png"))
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--folder", default=None)
    parser.add_argument("--model", default="resnet18",
                        choices=[n for n in list_models()
                                 if model_info(n).task == "classification"])
    parser.add_argument("--weights", default=None,
                        help="imagenet (models with published weights: zoo list) or a file")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--run-dir", default="runs/finetune")
    args = parser.parse_args()
    folder = args.folder or make_demo_folder("runs/demo_folder")

    size = (args.image_size, args.image_size)
    splits = data.load_splits(f"folder:{folder}", image_size=size, channels=3, batch_size=16,
                              augment=True)
    info = splits.info
    print(f"{info.num_classes} classes {info.labels}, splits {info.splits}")

    # 1. Frozen backbone (batch norm stays in inference mode), new head.
    backbone = get_model(args.model, input_shape=info.input_shape, include_top=False,
                         pooling="avg", weights=args.weights)
    backbone.trainable = False
    inputs = keras.Input(info.input_shape, name="images")
    x = inputs
    # The input Keras' ImageNet weights were trained on: imagenet, or their published file.
    if zoo_weights.expects_imagenet_input(args.model, args.weights):
        x = zoo_weights.imagenet_input(args.model, info)(x)
    x = backbone(x, training=False)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(info.num_classes, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name=f"{args.model}_finetuned")
    head_dir = os.path.join(args.run_dir, "1_head")
    train.fit(model, splits, epochs=args.epochs, learning_rate=1e-3, model_name=args.model,
              run_dir=head_dir, verbose=2)
    print(f"head only: test accuracy {read_test_accuracy(head_dir):.4f}")

    # 2. Unfreeze the top stage (the layers after the stride-16 feature map: ResNet's
    # conv5_x; after the one before where no layer after it has weights: AlexNet's last
    # convolution makes its stride-16 map) but its batch norms, and fine-tune everything
    # trainable, gently.
    names = [layer.name for layer in backbone.layers]
    for feature in reversed(features.feature_layers(backbone)[:-1]):
        top_stage = set(names[names.index(feature["name"]) + 1:])
        if any(layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
               for layer in backbone.layers if layer.name in top_stage):
            break
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name in top_stage and \
            not isinstance(layer, keras.layers.BatchNormalization)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(f"fine-tuning {trainable:,} parameters (top stage + head)")
    top_dir = os.path.join(args.run_dir, "2_top")
    history = train.fit(model, splits, epochs=args.epochs, learning_rate=1e-4,
                        model_name=args.model, run_dir=top_dir, verbose=2)
    print(history.tail(1).to_string(index=False))
    print(f"fine-tuned: test accuracy {read_test_accuracy(top_dir):.4f}")


def read_test_accuracy(run_dir):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)["test_accuracy"]


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as exc:   # a bad argument: the zoo says it in one line
        sys.exit(f"{os.path.basename(sys.argv[0])}: error: {exc}")
