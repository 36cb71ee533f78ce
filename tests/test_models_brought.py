"""Models as users bring them, tried adversarially: each either embeds as the user meant, in unit
rows, or is refused with one line that says what to do. Real onnxruntime sessions on graphs built
with onnx.helper, run over real encoded media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.errors import ModelError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

S = 16
F32 = TensorProto.FLOAT
W8 = np.abs(np.random.default_rng(1).normal(size=(3, 8))).astype(np.float32)


def save(path, nodes, inputs, outputs, inits=()):
    """An opset-17 model of `nodes`; inputs/outputs are (name, elem type, shape); inits are
    numpy arrays by name."""
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)


def _images(root, **values):
    """One flat-colour PNG per name=grey value."""
    from datapool.media import write_image

    root.mkdir()
    for name, v in values.items():
        write_image(root / f"{name}.png", np.full((32, 32, 3), v, np.uint8))
    return root


def test_an_all_zero_embedding_is_refused_naming_the_file(tmp_path):
    # ReLU of the channel means times positive weights: a dark frame (below ImageNet's mean) is
    # all zero, the embedding of a black frame in a ReLU model without a bias. It was kept as a
    # zero row (no unit vector) in the pool CSV, at distance 1 from every other row.
    path = save(
        tmp_path / "relu.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["emb"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("emb", F32, ["N", 8])],
        [("w", W8)],
    )
    kw = {"n_samples": 5, "model": str(path), "progress": False}
    r = datapool.run(_images(tmp_path / "ok", a=240, b=200), tmp_path / "p0", **kw)
    assert r.counts["new"] == 2
    with pytest.raises(
        ModelError,
        match=r"model relu\.onnx produced an all-zero embedding for b\.png, which has no "
        r"direction to normalise to unit length; check that its output is the embedding",
    ):
        datapool.run(_images(tmp_path / "images", a=240, b=10), tmp_path / "p1", **kw)
    assert not (tmp_path / "p1" / "datapool_latest.csv").exists()


def _quantized_output_model(path, with_float=False):
    """Channel means times W8, quantized to uint8 with zero point 128 (what a fully quantized
    export ends with), and with `with_float` the float features as a second output."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["features"]),
        helper.make_node("QuantizeLinear", ["features", "scale", "zero"], ["q"]),
    ]
    outputs = [("q", TensorProto.UINT8, ["N", 8])]
    if with_float:
        outputs.append(("features", F32, ["N", 8]))
    inits = [("w", W8), ("scale", np.float32(0.05)), ("zero", np.uint8(128))]
    return save(path, nodes, [("input", F32, ["N", 3, S, S])], outputs, inits)


def test_an_integer_output_is_no_embedding(tmp_path):
    from datapool.ingest.embed import Embedder

    # The uint8 values were embedded as they are: with zero point 128 every row pointed near
    # (1, 1, ..., 1), and the distances between frames shrank to a quarter, without a word.
    with pytest.raises(
        ModelError,
        match=r"model q\.onnx output q is tensor\(uint8\), not an embedding \(a quantized output "
        r"without its scale and zero point, .*\): datapool needs a float output; export one, or "
        r"end a quantized graph with a DequantizeLinear$",
    ):
        Embedder(_quantized_output_model(tmp_path / "q.onnx"))
    both = _quantized_output_model(tmp_path / "both.onnx", with_float=True)
    e = Embedder(both)
    assert "output features (the only float output with a row per image)" in e.inspection
    with pytest.raises(
        ModelError,
        match=r"output q is tensor\(uint8\).*; choose a float output with "
        r"--output-name features, or end",
    ):
        Embedder(both, output_name="q")


def _gap(path, opset=17, **save_kw):
    """Channel means times W8, (N, 8), at opset `opset`."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["emb"]),
        ],
        "m",
        [helper.make_tensor_value_info("input", F32, ["N", 3, S, S])],
        [helper.make_tensor_value_info("emb", F32, ["N", 8])],
        [numpy_helper.from_array(W8, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save_model(model, str(path), **save_kw)
    return Path(path)


def test_a_file_that_is_no_onnx_model_says_what_it_is(tmp_path):
    from datapool.ingest.embed import Embedder

    good = _gap(tmp_path / "good.onnx").read_bytes()
    files = {
        # a Hugging Face clone without git-lfs: every .onnx is a pointer
        "lfs.onnx": b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 88290052\n",
        "empty.onnx": b"",
        "model.pt.onnx": b"PK\x03\x04" + bytes(60),  # torch.save writes a zip
        "page.onnx": b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n",
        "cut.onnx": good[: len(good) // 2],
    }
    said = {
        "lfs.onnx": r"is a Git LFS pointer, not the model: fetch the file itself \(`git lfs pull`",
        "empty.onnx": r"is empty \(an interrupted download\?\)",
        "model.pt.onnx": r"is a zip archive \(a PyTorch .pt/.pth checkpoint\?\), not ONNX: export",
        "page.onnx": r"is a web page or XML, not ONNX",
        "cut.onnx": r"is no ONNX model onnxruntime can parse \(a truncated download",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=rf"^model \S+/{name} {said[name]}"):
            Embedder(tmp_path / name)


def test_a_newer_opset_or_a_custom_operator_says_how_to_export(tmp_path):
    import onnxruntime

    from datapool.ingest.embed import Embedder

    with pytest.raises(
        ModelError,
        match=rf"model \S+/new\.onnx uses ONNX opset 99, newer than onnxruntime "
        rf"{onnxruntime.__version__} knows \(up to \d+\): export it again with opset_version=",
    ):
        Embedder(_gap(tmp_path / "new.onnx", opset=99))
    # A custom operator: onnxruntime said "Fatal error: ... is not a registered function/op".
    path = _gap(tmp_path / "custom.onnx")
    m = onnx.load(str(path))
    m.graph.node[1].op_type, m.graph.node[1].domain = "FancyMatMul", "com.example"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(m, str(path))
    with pytest.raises(
        ModelError,
        match=r"model \S+/custom\.onnx uses operator FancyMatMul of domain com\.example, which "
        r"onnxruntime \S+ does not have \(a custom operator, .*\): export the model with standard",
    ):
        Embedder(path)


def test_a_model_moved_without_its_external_data_names_the_file(tmp_path):
    from datapool.ingest.embed import Embedder

    kw = {"save_as_external_data": True, "location": "w.bin", "size_threshold": 0}
    model = _gap(tmp_path / "ext.onnx", **kw)
    Embedder(model)
    moved = tmp_path / "moved"
    moved.mkdir()
    model.rename(moved / "ext.onnx")
    with pytest.raises(
        ModelError,
        match=rf"^model ext\.onnx keeps its weights in w\.bin, which is not beside it in "
        rf"{moved}: copy it there with the \.onnx, under that name$",
    ):
        Embedder(moved / "ext.onnx")


def test_features_beside_logits_are_chosen_over_them(tmp_path, make_media):
    from datapool.ingest.embed import Embedder

    # A classifier exported to return both (`return self.fc(x), x`): the logits come first,
    # under a name like no embedding. The first 2-D output was taken, the logits, with a note
    # that did not say which output held the features.
    fc = np.random.default_rng(4).normal(size=(8, 1000)).astype(np.float32)
    path = save(
        tmp_path / "both.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["output1"]),
            helper.make_node("MatMul", ["output1", "fc"], ["output0"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("output0", F32, ["N", 1000]), ("output1", F32, ["N", 8])],
        [("w", W8), ("fc", fc)],
    )
    bucket = tmp_path / "bucket"
    for i in range(3):
        make_media(bucket / f"img{i}.png", seed=i)
    r = datapool.run(bucket, tmp_path / "pool", n_samples=3, model=str(path), progress=False)
    assert "output output1 (the first 2-D output that is not class logits), pooling none, 8-d" in (
        r.model
    )
    e = Embedder(path, output_name="output0")
    assert e.notes == [
        "model both.onnx output output0 (1000-d) looks like class logits: samples are then "
        "compared by the classes a classifier sees; a pooled feature output (before the "
        "classifier) usually selects better (--output-name output1)"
    ]


def test_a_channels_last_float_model_is_told_its_normalisation(tmp_path, make_media):
    # A tf2onnx export of a Keras application: (N, H, W, 3) float pixels. Keras models take
    # 0-255 (EfficientNet, ConvNeXt: the preprocessing is in the graph) or -1..1 (MobileNet),
    # and got ImageNet's torch normalisation, about 1/100 of the pixels they expect, silently.
    path = save(
        tmp_path / "keras.onnx",
        [
            helper.make_node("ReduceMean", ["input_1"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("Sub", ["m", "mid"], ["c"]),  # not scale-free: 0-255 shows
            helper.make_node("Concat", ["c", "c", "c"], ["pooled"], axis=1),
        ],
        [("input_1", F32, ["unk__1", S, S, 3])],
        [("pooled", F32, ["unk__1", 9])],
        [("mid", np.full(3, 100, np.float32))],
    )
    bucket = tmp_path / "bucket"
    make_media(bucket / "a.png", seed=1)
    kw = {"n_samples": 1, "model": str(path), "progress": False}
    with pytest.raises(
        ModelError,
        match=r"^model keras\.onnx takes channels-last float pixels, as Keras exports do, and "
        r"names no normalisation: Keras models differ, so give it: --mean 0,0,0 --std "
        r"0\.00392157,0\.00392157,0\.00392157 for 0-255 pixels \(EfficientNet",
    ):
        datapool.run(bucket, tmp_path / "p", **kw)
    # Following it feeds the model 0-255 pixels: its means are the frame's, unnormalised.
    from datapool.ingest.embed import Embedder

    e = Embedder(path, mean=(0.0,) * 3, std=(1 / 255,) * 3)
    frame = np.random.default_rng(0).integers(0, 256, (1, S, S, 3), dtype=np.uint8)
    emb = e.embed(frame)
    ref = np.tile(frame.reshape(-1, 3).mean(axis=0) - 100, 3)
    np.testing.assert_allclose(emb[0], ref / np.linalg.norm(ref), atol=1e-5)
    r = datapool.run(bucket, tmp_path / "p", mean=(0.0,) * 3, std=(0.00392157,) * 3, **kw)
    assert "mean 0,0,0 std 0.003922,0.003922,0.003922 (--mean/--std)" in r.model


def test_metadata_normalisation_as_a_json_list_is_read_and_a_bad_one_names_the_flag(tmp_path):
    from datapool.ingest.embed import Embedder

    def model(name, mean, std):
        path = _gap(tmp_path / name)
        m = onnx.load(str(path))
        helper.set_model_props(m, {"datapool.mean": mean, "datapool.std": std})
        onnx.save(m, str(path))
        return path

    # json.dumps(cfg["mean"]) is what a script writes; it was "not a list of numbers".
    e = Embedder(model("json.onnx", "[0.5, 0.5, 0.5]", "[0.25, 0.25, 0.25]"))
    assert e.norm_source == "metadata"
    np.testing.assert_allclose(e.mean, 0.5)
    np.testing.assert_allclose(e.std, 0.25)
    with pytest.raises(
        ModelError,
        match=r"^model two\.onnx metadata datapool\.mean must have 3 finite values \(R,G,B\), "
        r"got '0\.5,0\.5'; give --mean R,G,B \(it overrides the metadata\), or store 3 ",
    ):
        Embedder(model("two.onnx", "0.5,0.5", "0.5,0.5,0.5"))
    with pytest.raises(
        ModelError, match=r"datapool\.std='a,b,c' is not a list of numbers; give --std"
    ):
        Embedder(model("text.onnx", "0.5,0.5,0.5", "a,b,c"))
    assert Embedder(model("flag.onnx", "0.5,0.5", "a,b,c"), mean=(0.5,) * 3, std=(0.5,) * 3)


def test_an_export_folder_given_as_the_model_names_the_model_in_it(tmp_path, make_media):
    from datapool.errors import ConfigError

    # optimum-cli export onnx writes a folder: dinov2/model.onnx with its preprocessor config.
    folder = tmp_path / "dinov2"
    folder.mkdir()
    _gap(folder / "model.onnx")
    bucket = tmp_path / "bucket"
    make_media(bucket / "a.png", seed=1)
    with pytest.raises(
        ConfigError,
        match=rf"^model {folder} is a folder; give the path of an \.onnx file: "
        rf"{folder / 'model.onnx'}$",
    ):
        datapool.run(bucket, tmp_path / "p", n_samples=1, model=str(folder), progress=False)


def test_a_batch_too_large_to_allocate_names_the_flag(tmp_path, make_media):
    # A high-resolution model and a large --batch-size: numpy's MemoryError came out of the CLI
    # as a traceback. 10**6 frames at 4096x4096 is past any address space, so this fails
    # whatever the machine's overcommit setting.
    path = save(
        tmp_path / "hires.onnx",
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["emb"]),
        ],
        [("input", F32, ["N", 3, "H", "W"])],
        [("emb", F32, ["N", 8])],
        [("w", W8)],
    )
    bucket = tmp_path / "bucket"
    make_media(bucket / "a.png", seed=1)
    with pytest.raises(
        ModelError,
        match=r"^a batch of 1000000 frames at model hires\.onnx's 4096x4096 input takes "
        r"187500\.0 GiB, more than could be allocated; give a smaller --batch-size$",
    ):
        datapool.run(
            bucket,
            tmp_path / "p",
            n_samples=1,
            model=str(path),
            input_size=4096,
            batch_size=10**6,
            progress=False,
        )


def test_a_dry_run_opens_the_model_and_checks_it_against_the_pool(tmp_path, make_media):
    from datapool.errors import ModelMismatchError

    # A dry run said "would process N files" for a model the run then refused, or that did not
    # match the pool: the check a user makes before a long run passed where the run failed.
    bucket = tmp_path / "bucket"
    for i in range(2):
        make_media(bucket / f"img{i}.png", seed=i)
    pool = tmp_path / "pool"
    kw = {"n_samples": 2, "progress": False}
    datapool.run(bucket, pool, model=str(_gap(tmp_path / "a.onnx")), **kw)
    make_media(bucket / "new.png", seed=5)
    dry = datapool.run(bucket, pool, model=str(tmp_path / "a.onnx"), dry_run=True, **kw)
    assert dry.would_process == ["new.png"]
    assert dry.model.startswith("a.onnx: input input NCHW float32 16x16")
    other = _quantized_output_model(tmp_path / "b.onnx", with_float=True)
    with pytest.raises(
        ModelMismatchError, match=r"was built with a\.onnx .* this run uses b\.onnx"
    ):
        datapool.run(bucket, pool, model=str(other), dry_run=True, **kw)
    (tmp_path / "lfs.onnx").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ModelError, match=r"is a Git LFS pointer"):
        datapool.run(bucket, tmp_path / "p2", model=str(tmp_path / "lfs.onnx"), dry_run=True, **kw)
    assert not (tmp_path / "p2").exists()


def test_a_model_blind_to_its_image_or_mixing_its_batch_is_refused(tmp_path, make_media):
    # Both embedded every frame wrongly without a word: an output that does not depend on the
    # image (here it is multiplied by zero; a trace that lost its input) gave every frame one
    # embedding, and a pool of one sample; an output that depends on the batch (each row minus
    # the batch's mean, as BatchNorm exported in training mode does) gave a frame another
    # embedding in every batch.
    bucket = tmp_path / "bucket"
    for i in range(3):
        make_media(bucket / f"img{i}.png", seed=i)
    mean = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0)]
    blind = save(
        tmp_path / "blind.onnx",
        [
            *mean,
            helper.make_node("Mul", ["m", "zero"], ["z"]),
            helper.make_node("MatMul", ["z", "w"], ["zw"]),
            helper.make_node("Add", ["zw", "bias"], ["emb"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("emb", F32, ["N", 8])],
        [("w", W8), ("zero", np.zeros(3, np.float32)), ("bias", np.arange(8, dtype=np.float32))],
    )
    mixing = save(
        tmp_path / "mixing.onnx",
        [
            *mean,
            helper.make_node("MatMul", ["m", "w"], ["f"]),
            helper.make_node("ReduceMean", ["f"], ["batch"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["f", "batch"], ["emb"]),
        ],
        [("input", F32, ["N", 3, S, S])],
        [("emb", F32, ["N", 8])],
        [("w", W8)],
    )
    kw = {"n_samples": 3, "progress": False}
    with pytest.raises(
        ModelError,
        match=r"^model blind\.onnx gives the same embedding \(output emb\) for two different "
        r"images: its output does not depend on its input 'input'; export it again",
    ):
        datapool.run(bucket, tmp_path / "p1", model=str(blind), **kw)
    with pytest.raises(
        ModelError,
        match=r"^model mixing\.onnx's embedding \(output emb\) of an image changes with the "
        r"other images in its batch \(BatchNorm or Dropout exported in training mode\?\)",
    ):
        datapool.run(bucket, tmp_path / "p2", model=str(mixing), **kw)


def _embeddings(pool):
    import pandas as pd

    frame = pd.read_csv(pool / "datapool_latest.csv").set_index("filenames").sort_index()
    return frame[[c for c in frame.columns if c.startswith("embedding_")]].to_numpy()


def test_a_batch_of_one_inside_a_dynamic_batch_model_is_fed_one_frame_at_a_time(
    tmp_path, make_media
):
    # torch.onnx.export of a forward with x.view(1, -1): the input's batch is dynamic, the
    # graph's is 1. The run failed at its first batch with onnxruntime's message over two lines.
    bucket = tmp_path / "bucket"
    for i in range(3):
        make_media(bucket / f"img{i}.png", seed=i)
    mean = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["f"]),
    ]
    io = ([("input", F32, ["batch_size", 3, S, S])], [("emb", F32, ["batch_size", 8])])
    folded = save(
        tmp_path / "folded.onnx",
        [*mean, helper.make_node("Reshape", ["f", "one"], ["emb"])],
        *io,
        [("w", W8), ("one", np.array([1, -1], np.int64))],
    )
    plain = save(
        tmp_path / "plain.onnx",
        [*mean, helper.make_node("Identity", ["f"], ["emb"])],
        *io,
        [("w", W8)],
    )
    kw = {"n_samples": 3, "progress": False}
    r = datapool.run(bucket, tmp_path / "folded", model=str(folded), **kw)
    assert "fixed batch 1" in r.model
    assert any(
        w.startswith(
            "model folded.onnx declares a dynamic batch but embeds only one image at a time"
        )
        for w in r.warnings
    )
    datapool.run(bucket, tmp_path / "plain", model=str(plain), **kw)
    np.testing.assert_allclose(
        _embeddings(tmp_path / "folded"), _embeddings(tmp_path / "plain"), atol=1e-6
    )


def test_a_column_output_is_one_vector_not_tokens_of_one_value(tmp_path):
    from datapool.ingest.embed import Embedder

    # (N, 8, 1), a Conv1d head or an unsqueeze(-1): read as 8 tokens of one value each, its
    # "class token" was one value per image, refused as such ("gives 1 value per image").
    mean = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["f"]),
    ]
    inputs = [("input", F32, ["N", 3, S, S])]
    column = save(
        tmp_path / "column.onnx",
        [*mean, helper.make_node("Unsqueeze", ["f", "last"], ["emb"])],
        inputs,
        [("emb", F32, ["N", 8, 1])],
        [("w", W8), ("last", np.array([2], np.int64))],
    )
    flat = save(
        tmp_path / "flat.onnx",
        [*mean, helper.make_node("Identity", ["f"], ["emb"])],
        inputs,
        [("emb", F32, ["N", 8])],
        [("w", W8)],
    )
    e = Embedder(column)
    assert "pooling none (its [8, 1] per image is one vector), 8-d" in e.inspection
    frames = np.random.default_rng(0).integers(0, 256, (4, S, S, 3), dtype=np.uint8)
    np.testing.assert_allclose(e.embed(frames), Embedder(flat).embed(frames), atol=1e-6)


def test_a_model_trained_on_bgr_frames_says_so_in_its_metadata(tmp_path):
    from datapool.ingest.embed import Embedder

    # A team's backbone trained on cv2.imread frames, a Keras caffe-style ResNet: BGR. Only a
    # preprocessor_config.json with do_flip_channel_order could say so; the model was fed RGB.
    def model(name, **meta):
        path = _gap(tmp_path / name)
        m = onnx.load(str(path))
        norm = {"datapool.mean": "0.5,0.5,0.5", "datapool.std": "0.25,0.25,0.25"}
        helper.set_model_props(m, {**norm, **meta})
        onnx.save(m, str(path))
        return path

    bgr = Embedder(model("bgr.onnx", **{"datapool.channels": "bgr"}))
    assert bgr.inspection.endswith("(metadata), fed BGR (metadata datapool.channels)")
    assert bgr.fingerprint.settings["channels"] == "BGR"
    rgb = Embedder(model("rgb.onnx", **{"datapool.channels": "RGB"}))
    assert "channels" not in rgb.fingerprint.settings
    frames = np.random.default_rng(0).integers(0, 256, (4, S, S, 3), dtype=np.uint8)
    want = rgb.embed(np.ascontiguousarray(frames[..., ::-1]))
    np.testing.assert_allclose(bgr.embed(frames), want, atol=1e-6)
    with pytest.raises(ModelError, match=r"datapool\.channels='BRG' must be RGB or BGR"):
        Embedder(model("typo.onnx", **{"datapool.channels": "BRG"}))


def test_an_ultralytics_export_gets_0_1_pixels_and_a_detector_is_no_embedding(tmp_path):
    from datapool.ingest.embed import Embedder

    # yolo export format=onnx writes author=Ultralytics and the task in the metadata. Its models
    # take 0-1 RGB pixels (mean 0, std 1) and got ImageNet's normalisation; a detector's
    # (N, 84, 8400) was taken as tokens and its "class token", the anchors' x-centres, embedded.
    def yolo(name, task, outputs, nodes):
        path = save(tmp_path / name, nodes, [("images", F32, [1, 3, S, S])], outputs, [("w", W8)])
        m = onnx.load(str(path))
        meta = {"author": "Ultralytics", "task": task, "stride": "32", "imgsz": f"[{S}, {S}]"}
        helper.set_model_props(m, meta)
        onnx.save(m, str(path))
        return path

    mean = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[2, 3], keepdims=0)]
    cls = yolo(
        "yolov8n-cls.onnx",
        "classify",
        [("output0", F32, [1, 8])],
        [*mean, helper.make_node("MatMul", ["m", "w"], ["output0"])],
    )
    e = Embedder(cls)
    assert e.norm_source == "Ultralytics export: 0-1 pixels"
    np.testing.assert_array_equal(e.mean, 0.0)
    np.testing.assert_array_equal(e.std, 1.0)
    frames = np.random.default_rng(0).integers(0, 256, (2, S, S, 3), dtype=np.uint8)
    ref = frames.reshape(2, -1, 3).mean(axis=1) / 255 @ W8
    np.testing.assert_allclose(
        e.embed(frames), ref / np.linalg.norm(ref, axis=1)[:, None], atol=1e-5
    )
    det = yolo(
        "yolov8n.onnx",
        "detect",
        [("output0", F32, [1, 8, 3])],
        [*mean, helper.make_node("Einsum", ["m", "w"], ["output0"], equation="nc,cd->ndc")],
    )
    with pytest.raises(
        ModelError,
        match=r"^model yolov8n\.onnx is an Ultralytics detect model: its outputs are boxes and "
        r"scores per anchor, not an embedding of the image; export a classification model",
    ):
        Embedder(det)
    with pytest.raises(ModelError, match=r"to select on its detections, `datapool predict SOURCE"):
        Embedder(det)
    assert Embedder(det, pooling="mean").output.pooling == "mean"


def test_an_ultralytics_dynamic_export_takes_the_size_it_was_made_at(tmp_path):
    from datapool.ingest.embed import Embedder

    # yolo export dynamic=True leaves height and width out of the input's shape; the size the
    # model was trained and exported at is in its metadata. It was refused for --input-size.
    path = _gap(tmp_path / "yolo-dyn.onnx")
    m = onnx.load(str(path))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    meta = {"author": "Ultralytics", "task": "classify", "imgsz": "[24, 40]"}
    helper.set_model_props(m, meta)
    onnx.save(m, str(path))
    e = Embedder(path)
    assert e.input_hw == (24, 40)
    assert "size 24x40 from the Ultralytics metadata imgsz" in e.inspection
    assert Embedder(path, input_size=32).input_hw == (32, 32)
