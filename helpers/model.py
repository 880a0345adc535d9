"""The paper's seven-layer convolutional network (section 2.2)."""

from __future__ import annotations

from helpers._tf import keras
from helpers.config import Config

layers = keras.layers


def _optimizer(config: Config) -> keras.optimizers.Optimizer:
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=config.learning_rate)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=0.9)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def build_model(config: Config) -> keras.Model:
    """Build and compile the paper's CNN.

    Input 16x16x1; a 5x5 convolution with Leaky ReLU; 2x2 max pooling; flatten; a fully
    connected layer with dropout; a 10-way softmax. Loss: sparse categorical cross-entropy.
    """
    inputs = keras.Input(shape=(16, 16, 1), name="input")
    x = layers.Conv2D(config.filters, config.kernel_size, padding=config.padding, name="conv")(inputs)
    x = layers.LeakyReLU(negative_slope=config.leaky_slope, name="leaky_relu")(x)
    x = layers.MaxPooling2D(config.pool_size, name="max_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="softmax")(x)
    model = keras.Model(inputs, outputs, name="paper_cnn")
    model.compile(optimizer=_optimizer(config), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def layer_table(model: keras.Model) -> list[dict[str, object]]:
    """One row per layer: name, type, output shape and parameter count."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        rows.append({"layer": layer.name, "type": type(layer).__name__,
                     "output shape": " x ".join(str(s) for s in shape),
                     "parameters": int(layer.count_params())})
    return rows
