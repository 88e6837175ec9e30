"""Small Keras models for tests/test_keras.py, and factories the CLI imports by
`tests.keras_models:NAME` (as it would `keras.applications:MobileNetV2`). Keras is imported
here, so only tests that have it import this module."""

from __future__ import annotations

import keras


def small_cnn() -> keras.Model:
    """A bias-free conv and its BatchNorm (tf2onnx folds that one into the conv), a depthwise
    conv and its BatchNorm (kept as a Mul and an Add), a 1x1 conv with a bias, pooling, a dense
    head: as built, every bias is zero and every BatchNorm the identity."""
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(image)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.Conv2D(8, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, keras.layers.Dense(10, name="head")(x), name="small_cnn")


def transfer(size: int = 32) -> keras.Model:
    """The seed's transfer-learning case: a frozen MobileNetV2 backbone (no top, random
    weights) and a new trainable head."""
    backbone = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3))
    backbone.trainable = False
    image = keras.Input((size, size, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(image, training=False))
    return keras.Model(image, keras.layers.Dense(5, name="head")(x), name="transfer")


def exact_gelu() -> keras.Model:
    """A dense layer with the exact GELU: TensorFlow computes it with Erfc, an op tf2onnx
    cannot convert."""
    x = keras.Input((8,), name="x")
    return keras.Model(x, keras.layers.Dense(4, activation="gelu", name="ff")(x), name="exact_gelu")



def attention(tokens: int = 7, width: int = 16) -> keras.Model:
    """Self-attention over `tokens` embedded tokens, 2 heads of 8, then pooling and a dense head."""
    x = keras.Input((tokens, width), name="embedded")
    attended = keras.layers.MultiHeadAttention(2, 8, name="attention")(x, x)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(attended)
    return keras.Model(x, keras.layers.Dense(10, name="head")(pooled), name="attention_model")


class Subclassed(keras.Model):
    """A subclassed model: Keras knows its inputs only once it is called."""

    def __init__(self) -> None:
        super().__init__(name="subclassed")
        self.conv = keras.layers.Conv2D(4, 3, name="conv")
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.fc = keras.layers.Dense(3, name="fc")

    def call(self, x):
        return self.fc(self.pool(self.bn(self.conv(x))))


def sequential() -> keras.Model:
    """A Sequential without an Input: built at the size archcalc is given."""
    return keras.Sequential([keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(name="flat"),
                             keras.layers.Dense(2, name="fc")], name="stack")


def batchnorms_without_scale_or_shift() -> keras.Model:
    """BatchNorms that learn no gamma (scale=False, as InceptionV3's) or no beta (center=False)."""
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(image)
    x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, use_bias=False, name="dw")(x)
    return keras.Model(image, keras.layers.BatchNormalization(center=False, name="bn2")(x), name="partial_bn")


def numbered_names(blocks: int = 4) -> keras.Model:
    """Layers named as Keras numbers them (conv2d, conv2d_1, ...; InceptionV3's): TensorFlow's
    scope for conv2d called again would be conv2d_1, another layer's name."""
    image = keras.Input((12, 12, 3), name="image")
    x = image
    for i in range(blocks):
        suffix = f"_{i}" if i else ""
        x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name=f"conv2d{suffix}")(x)
        x = keras.layers.BatchNormalization(scale=False, name=f"batch_normalization{suffix}")(x)
    return keras.Model(image, x, name="numbered")
