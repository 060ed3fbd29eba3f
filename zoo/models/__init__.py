"""One module per family; importing this package imports every builder (their metadata is
in ``zoo.catalog``) and registers every family's layer-table format.

The order matters: ``layer_table`` tries the most recently registered family first, and
U-Net (which may hold any classifier as its encoder) comes last.
"""

from zoo.models import lenet, alexnet, inception, xception, resnet, unet  # noqa: F401, I001
