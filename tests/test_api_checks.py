"""Bad arguments at the Python API: clear errors that name what was received and what is
allowed."""
import pytest

import zoo
from zoo import get_model, layer_table, list_models


def test_get_model_names_the_unknown_argument_and_the_builders_arguments():
    with pytest.raises(TypeError, match=r"^lenet5 takes no argument\(s\) 'foo'; its arguments: "
                                        r"input_shape, num_classes, include_top, pooling, "):
        get_model("lenet5", foo=1)
    assert get_model("lenet5", num_classes=3).output_shape == (None, 3)


def test_list_models_refuses_a_pattern_that_is_not_text():
    with pytest.raises(TypeError, match="pattern must be a shell-style pattern string such as "
                                        "'resnet\\*' or None. Received: 5"):
        list_models(5)
    assert list_models("lenet*") == ["lenet5"]


def test_layer_table_takes_a_registered_name_or_a_model():
    by_name = layer_table("lenet5")
    assert by_name.equals(layer_table(zoo.lenet5()))
    assert by_name.iloc[3]["Layer"] == "C3"
    with pytest.raises(TypeError, match="registered model name. Received: int"):
        layer_table(5)


def test_flags_must_be_booleans():
    with pytest.raises(ValueError, match="alexnet: local_response_normalization must be True "
                                         "or False. Received: local_response_normalization='no'"):
        zoo.alexnet(input_shape=(67, 67, 3), local_response_normalization="no")
    with pytest.raises(ValueError, match="googlenet: batch_norm must be True or False"):
        zoo.googlenet(batch_norm="yes")
    for value in (1, 0):                      # equal to True and False, but no booleans
        with pytest.raises(ValueError, match=f"lenet5: include_top must be True or False. "
                                             f"Received: include_top={value}$"):
            zoo.lenet5(include_top=value)


def test_unknown_classifier_activation_names_are_refused():
    with pytest.raises(ValueError, match="lenet5: unknown classifier_activation 'bogus'; use a "
                                         "Keras activation name"):
        zoo.lenet5(classifier_activation="bogus")
    assert zoo.lenet5(classifier_activation="sigmoid").layers[-1].activation.__name__ \
        == "sigmoid"


def test_unet_refuses_a_softmax_over_one_class():
    with pytest.raises(ValueError, match="softmax over num_classes=1 channel is 1 everywhere"):
        zoo.unet(num_classes=1, input_shape=(188, 188, 1))
    model = zoo.unet(num_classes=1, output_activation="sigmoid", input_shape=(188, 188, 1))
    assert model.output_shape == (None, 4, 4, 1)
