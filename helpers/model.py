"""The paper's seven-layer convolutional network (section 2.2)."""

from __future__ import annotations

import math

import numpy as np

from helpers._tf import keras, tf
from helpers.config import Config

layers = keras.layers


def _optimizer(config: Config, total_steps: int) -> keras.optimizers.Optimizer:
    rate: float | keras.optimizers.schedules.LearningRateSchedule = config.learning_rate
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=max(1, total_steps))
    # Weight averaging: Keras keeps a moving average of the weights and writes it into the model
    # when `fit` ends, so the trained model predicts with the average.
    average: dict[str, object] = {"use_ema": True, "ema_momentum": config.weight_average} if config.weight_average else {}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate, name="adam", **average)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=rate, name="rmsprop", **average)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=0.9, name="sgd", **average)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


@keras.saving.register_keras_serializable("usps")
class ElasticDistortion(layers.Layer):
    """Elastic distortions (Simard, Steinkraus & Platt 2003), during training only.

    Each image gets a random displacement field, uniform in [-1, 1] per pixel and direction,
    smoothed by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels; the image is
    resampled bilinearly at the displaced points (outside the image: ``fill_value``).
    (Keras' own RandomElasticTransform draws the same field for both directions.)
    """

    def __init__(self, alpha: float, sigma: float = 2.0, fill_value: float = 0.0, seed: int | None = None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.fill_value, self.seed = alpha, sigma, fill_value, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        radius = int(math.ceil(2 * sigma))
        g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        kernel = np.outer(g, g) / np.outer(g, g).sum()
        self.kernel = np.repeat(kernel[:, :, None, None], 2, axis=2).astype("float32")

    def call(self, images: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return images
        shape = tf.shape(images)
        n, h, w = shape[0], shape[1], shape[2]
        field = keras.random.uniform(tf.stack([n, h, w, 2]), -1.0, 1.0, seed=self.seed_generator)
        field = tf.nn.depthwise_conv2d(field, self.kernel, [1, 1, 1, 1], "SAME") * self.alpha
        ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
        y, x = ys[None] + field[..., 0], xs[None] + field[..., 1]
        y0, x0 = tf.floor(y), tf.floor(x)
        plane = images[..., 0]
        out = tf.zeros_like(plane)
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            yy, xx = y0 + dy, x0 + dx
            weight = (1 - tf.abs(y - yy)) * (1 - tf.abs(x - xx))
            inside = (yy >= 0) & (yy <= tf.cast(h - 1, tf.float32)) & (xx >= 0) & (xx <= tf.cast(w - 1, tf.float32))
            index = tf.stack([tf.clip_by_value(tf.cast(yy, tf.int32), 0, h - 1),
                              tf.clip_by_value(tf.cast(xx, tf.int32), 0, w - 1)], axis=-1)
            value = tf.where(inside, tf.gather_nd(plane, index, batch_dims=1), self.fill_value)
            out += weight * value
        return out[..., None]

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "fill_value": self.fill_value,
                "seed": self.seed}


@keras.saving.register_keras_serializable("usps")
class PixelNoise(layers.Layer):
    """Gaussian pixel noise, during training only: the noise the book reads digits under.

    Each image gets its own standard deviation, drawn uniformly in ``[0, max_sigma]`` (so the
    model also sees clean and lightly noisy digits), and independent Gaussian noise of that
    standard deviation on every pixel; the result is clipped back to ``[low, 1]``, as
    :func:`helpers.data.add_noise` clips the noisy test images.
    """

    def __init__(self, max_sigma: float, low: float = 0.0, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.max_sigma, self.low, self.seed = max_sigma, low, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return images
        n = tf.shape(images)[0]
        sigma = keras.random.uniform(tf.stack([n, 1, 1, 1]), 0.0, self.max_sigma, seed=self.seed_generator)
        noise = keras.random.normal(tf.shape(images), seed=self.seed_generator)
        return tf.clip_by_value(images + sigma * noise, self.low, 1.0)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "max_sigma": self.max_sigma, "low": self.low, "seed": self.seed}


@keras.saving.register_keras_serializable("usps")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy against integer labels smoothed towards the uniform distribution."""

    def __init__(self, smoothing: float = 0.1, name: str = "smoothed_sparse_crossentropy", **kwargs: object) -> None:
        super().__init__(name=name, **kwargs)
        self.smoothing = smoothing

    def call(self, y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
        labels = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), 10)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.smoothing)

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "smoothing": self.smoothing}


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
    if config.augment_zoom:
        x = layers.RandomZoom(config.augment_zoom, fill_mode="constant", fill_value=background,
                              name="augment_zoom")(x)
    if config.augment_shear:
        x = layers.RandomShear(config.augment_shear, config.augment_shear, fill_mode="constant",  # random sign
                               fill_value=background, name="augment_shear")(x)
    if config.augment_elastic:
        x = ElasticDistortion(config.augment_elastic, fill_value=background, name="augment_elastic")(x)
    if config.augment_noise:
        x = PixelNoise(config.augment_noise, low=background, name="augment_noise")(x)
    x = _conv_block(x, config, config.filters, config.kernel_size, config.padding, "")
    if config.second_block_filters:
        x = _conv_block(x, config, config.second_block_filters, 3, "same", "_2")
    if config.third_block_filters:
        x = _conv_block(x, config, config.third_block_filters, 3, "same", "_3")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(10, activation="softmax", name="softmax")(x)
    model = keras.Model(inputs, outputs, name="paper_cnn")
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy"
    if config.label_smoothing:
        loss = SmoothedSparseCrossentropy(config.label_smoothing)
    if config.distill_weight:  # soft targets (n x 10), see helpers.train.soft_targets
        loss = keras.losses.CategoricalCrossentropy()
    model.compile(optimizer=_optimizer(config, steps_per_epoch * config.epochs), loss=loss, metrics=["accuracy"])
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
    return [{"layer": layer.name, "type": type(layer).__name__,
             "output shape": " x ".join(str(s) for s in tuple(layer.output.shape[1:])),
             "parameters": int(layer.count_params())} for layer in model.layers]
