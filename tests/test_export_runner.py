"""kerasnas.export.TFLiteModel: exported .tflite files on raw images, any batch size."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from kerasnas import data as data_lib
from kerasnas.export import TFLiteError, TFLiteModel, export_model


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def digits():
    return data_lib.load("digits", seed=0)


@pytest.fixture(scope="module")
def tiny(digits):
    """A conv classifier of ~300 params, raw digits in, logits out, trained a little."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(digits.input_shape),
            digits.normalization_layer(),
            keras.layers.Conv2D(6, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(digits.num_classes),
        ]
    )
    model.compile(
        keras.optimizers.Adam(0.03),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = digits.numpy("train")
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    assert model.count_params() < 400
    return model


@pytest.fixture(scope="module")
def deploy(tiny, digits, tmp_path_factory):
    """tiny exported to model.tflite (float) and model_int8.tflite with int8 I/O."""
    out = tmp_path_factory.mktemp("runner") / "deploy"
    x_test, y_test = digits.numpy("test")
    x_train, _ = digits.numpy("train", 100)
    export_model(
        tiny,
        str(out),
        ["tflite", "tflite_int8"],
        x_eval=x_test,
        y_eval=y_test,
        representative=x_train,
        int8_io=True,
        latency_runs=2,
        log=lambda *a: None,
    )
    return out


@pytest.fixture(scope="module")
def test_images(digits, tiny):
    x, _ = digits.numpy("test")
    return x, np.asarray(tiny.predict(x, verbose=0))


@pytest.mark.slow  # a trained model, converted
@pytest.mark.parametrize("n", [1, 7])
def test_float_model_matches_keras_at_any_batch(deploy, test_images, n):
    x, logits = test_images
    model = TFLiteModel(deploy / "model.tflite")
    assert model.input_shape == x.shape[1:] and model.input_dtype == np.float32
    assert model.batch_size is None and not model.quantized_io
    p = model.predict(x[:n])
    assert p.shape == (n, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p, _softmax(logits[:n]), atol=1e-4)
    # uint8 images are raw values too; chunks of 3 resize the input tensor back and forth
    x8 = x[:n].astype(np.uint8)
    np.testing.assert_allclose(model.predict(x8, batch_size=3), p, atol=1e-6)


@pytest.mark.slow  # a trained model, converted
@pytest.mark.parametrize("n", [1, 7])
def test_int8_io_model_is_quantised_for_the_caller(deploy, test_images, n):
    x, logits = test_images
    model = TFLiteModel(deploy / "model_int8.tflite")
    assert model.quantized_io and model.input_dtype == np.int8 and model.output_dtype == np.int8
    p = model.predict(x[:n])  # raw float images in, dequantised probabilities out
    assert p.shape == (n, 10) and p.dtype == np.float32
    assert p.min() >= 0 and p.max() <= 1 and np.allclose(p.sum(-1), 1, atol=0.05)
    np.testing.assert_allclose(p, _softmax(logits[:n]), atol=0.1)
    singles = np.concatenate([model.predict(image[None]) for image in x[:n]])
    np.testing.assert_array_equal(p, singles)


@pytest.mark.slow  # a trained model, converted
def test_int8_io_top1_agrees_with_keras(deploy, test_images):
    x, logits = test_images
    p = TFLiteModel(deploy / "model_int8.tflite").predict(x)
    assert (p.argmax(-1) == logits.argmax(-1)).mean() >= 0.9
    # the same as quantising by hand with the raw interpreter; raw values unquantised differ
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(deploy / "model_int8.tflite"))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (scale, zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]

    def run(image):
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        return (interp.get_tensor(out["index"]).astype(np.float32) - out_zero) * out_scale

    by_hand = [run(np.clip(np.round(i / scale + zero), -128, 127).astype(np.int8)) for i in x]
    np.testing.assert_array_equal(np.concatenate(by_hand), p)
    unquantised = np.concatenate([run(i.astype(np.int8)) for i in x])
    assert (unquantised.argmax(-1) == logits.argmax(-1)).mean() < 0.5


@pytest.mark.slow  # a trained model, converted
def test_fixed_batch_model_runs_in_padded_chunks(tiny, test_images):
    x, logits = test_images
    spec = tf.TensorSpec((3, *x.shape[1:]), tf.float32)
    fn = tf.function(lambda b: tiny(b, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(fn)
    flat = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tiny).convert()
    model = TFLiteModel.from_bytes(flat, name="fixed.tflite")
    assert model.batch_size == 3
    for n in (1, 7):
        np.testing.assert_allclose(model.predict(x[:n]), logits[:n], atol=1e-4)
    assert model.predict(x[:0]).shape == (0, 10)


@pytest.mark.slow  # a trained model, converted
def test_wrong_input_is_a_clear_error(deploy, tmp_path):
    path = deploy / "model_int8.tflite"
    model = TFLiteModel(path)
    with pytest.raises(
        TFLiteError,
        match=r"model_int8.tflite.* takes images of shape \(N, 8, 8, 1\), got \(7, 8, 8\)$",
    ):
        model.predict(np.zeros((7, 8, 8)))
    with pytest.raises(TFLiteError, match=r"got \(8, 8, 1\) \(one image: pass images\[None\]\)"):
        model.predict(np.zeros((8, 8, 1)))
    with pytest.raises(TFLiteError, match="numeric images.*dtype <U1"):
        model.predict(np.full((2, 8, 8, 1), "a"))


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(TFLiteError, match=r"'.*missing.tflite': no such file"):
        TFLiteModel(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer" * 4)
    with pytest.raises(TFLiteError, match="junk.tflite.*not a TFLite model"):
        TFLiteModel(tmp_path / "junk.tflite")
    assert isinstance(TFLiteError("x"), ValueError)
