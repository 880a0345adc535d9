"""The paper's seven-layer convolutional network (section 2.2)."""

from __future__ import annotations

from helpers._tf import keras
from helpers.config import Config

layers = keras.layers


def _optimizer(config: Config, total_steps: int) -> keras.optimizers.Optimizer:
    rate: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(1, total_steps))
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate, name="adam")
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=rate, name="rmsprop")
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=0.9, name="sgd")
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def build_model(config: Config, steps_per_epoch: int = 1) -> keras.Model:
    """Build and compile the paper's CNN, or a rung of the ladder beyond it.

    The paper's model: input 16x16x1; a 5x5 convolution with Leaky ReLU; 2x2 max pooling;
    flatten; a fully connected layer with dropout; a 10-way softmax. Loss: sparse categorical
    cross-entropy. The ladder's options (augmentation, batch normalisation, a second block,
    a cosine learning-rate schedule over ``steps_per_epoch * epochs`` steps) are off by default.
    """
    inputs = keras.Input(shape=(16, 16, 1), name="input")
    x = inputs
    background = 0.0 if config.scale == "unit" else -1.0
    if config.augment_rotation:
        x = layers.RandomRotation(config.augment_rotation / 360, fill_mode="constant",
                                  fill_value=background, name="augment_rotation")(x)
    if config.augment_shift:
        x = layers.RandomTranslation(config.augment_shift, config.augment_shift, fill_mode="constant",
                                     fill_value=background, name="augment_shift")(x)
    x = _conv_block(x, config, config.filters, config.kernel_size, config.padding, "")
    if config.second_block_filters:
        x = _conv_block(x, config, config.second_block_filters, 3, "same", "_2")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="softmax")(x)
    model = keras.Model(inputs, outputs, name="paper_cnn")
    model.compile(optimizer=_optimizer(config, steps_per_epoch * config.epochs),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _conv_block(x: keras.KerasTensor, config: Config, filters: int, kernel: int, padding: str,
                suffix: str) -> keras.KerasTensor:
    x = layers.Conv2D(filters, kernel, padding=padding, use_bias=not config.batch_norm, name=f"conv{suffix}")(x)
    if config.batch_norm:
        x = layers.BatchNormalization(name=f"batch_norm{suffix}")(x)
    x = layers.LeakyReLU(negative_slope=config.leaky_slope, name=f"leaky_relu{suffix}")(x)
    return layers.MaxPooling2D(config.pool_size, name=f"max_pool{suffix}")(x)


def layer_table(model: keras.Model) -> list[dict[str, object]]:
    """One row per layer: name, type, output shape and parameter count."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        rows.append({"layer": layer.name, "type": type(layer).__name__,
                     "output shape": " x ".join(str(s) for s in shape),
                     "parameters": int(layer.count_params())})
    return rows
