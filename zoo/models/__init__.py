"""One module per family; importing this package registers every builder."""

import importlib

# Families are imported by name so that one family's import error names it.
FAMILIES = ("lenet", "alexnet", "inception", "xception", "resnet", "unet")

for _family in FAMILIES:
    try:
        importlib.import_module(f"zoo.models.{_family}")
    except ModuleNotFoundError as exc:  # a family not written yet
        if exc.name != f"zoo.models.{_family}":
            raise
