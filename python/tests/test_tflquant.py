"""Tests of the tflquant Python package (run by scripts/test after `pip install .`).

Every model written here is run on the official runtime (ai-edge-litert); data from
generators, arrays and dicts must give exactly what the same data from .npy/.npz gives.
"""

import gc
import json
import os
import subprocess
import sys
import weakref
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import tflquant

ROOT = Path(__file__).resolve().parents[2]
TD = ROOT / "testdata"
CNN = TD / "cnn_digits.tflite"
CALIB = TD / "cnn_digits.calib.npy"
TEST = TD / "cnn_digits.test.npy"
MULTI = TD / "ops_elementwise.tflite"  # two inputs
MULTI_CALIB = TD / "ops_elementwise.calib.npz"


def litert(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


def run_litert(path, samples):
    """Outputs of a single-input, single-output model on LiteRT, one invoke per sample."""
    it = litert(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for x in samples:
        x = x.reshape(inp["shape"])
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            x = np.clip(np.round(x / scale) + zp, -128, 127).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float64)
        if out["dtype"] != np.float32:
            scale, zp = out["quantization"]
            y = (y - zp) * scale
        rows.append(y.reshape(-1))
    return np.stack(rows)


def gen_rows(path):
    """A generator of the rows of an .npy file, as a data pipeline would yield them."""
    for row in np.load(path):
        yield row


# ---------------------------------------------------------------- inspect


def test_inspect_is_the_json_document():
    doc = tflquant.inspect(CNN)
    assert doc["file"] == str(CNN)
    assert doc["file_bytes"] == CNN.stat().st_size
    sg = doc["subgraphs"][0]
    assert sg["op_histogram"]["CONV_2D"] == 2
    assert sg["op_histogram"]["FULLY_CONNECTED"] == 2
    assert doc["signatures"][0]["key"] == "serving_default"
    assert set(doc["weight_bytes_by_dtype"]) == {"FLOAT32", "INT32"}
    assert doc["quantized_tensors"] == {"per_tensor": 0, "per_axis": 0, "other": 0}


# ---------------------------------------------------------------- generator == .npy


def test_generator_gives_the_ranges_of_the_npy():
    from_file = tflquant.calibrate(CNN, CALIB)
    from_gen = tflquant.calibrate(CNN, gen_rows(CALIB))
    from_array = tflquant.calibrate(CNN, np.load(CALIB))
    assert from_file["samples"] == len(np.load(CALIB)) > 0
    assert from_gen == from_file
    assert from_array == from_file
    assert len(from_file["tensors"]) >= 10


def test_generator_gives_the_bytes_of_the_npy(tmp_path):
    a, b = tmp_path / "file.tflite", tmp_path / "gen.tflite"
    ra = tflquant.quantize(CNN, a, mode="int8", calibration=CALIB)
    rb = tflquant.quantize(CNN, b, mode="int8", calibration=gen_rows(CALIB))
    assert a.read_bytes() == b.read_bytes()
    assert ra == rb
    # TF's representative_dataset style: a list of arrays with the batch dimension.
    c = tmp_path / "repr.tflite"
    tflquant.quantize(
        CNN, c, mode="int8", calibration=([x[None]] for x in np.load(CALIB))
    )
    assert c.read_bytes() == a.read_bytes()
    # A dict by signature input name.
    d = tmp_path / "dict.tflite"
    tflquant.quantize(CNN, d, mode="int8", calibration=({"image": x} for x in np.load(CALIB)))
    assert d.read_bytes() == a.read_bytes()


def test_dict_of_arrays_gives_the_bytes_of_the_npz(tmp_path):
    arrays = dict(np.load(MULTI_CALIB))
    assert len(arrays) == 2
    a, b = tmp_path / "npz.tflite", tmp_path / "dict.tflite"
    tflquant.quantize(MULTI, a, mode="int8", calibration=MULTI_CALIB)
    tflquant.quantize(MULTI, b, mode="int8", calibration=arrays)
    assert a.read_bytes() == b.read_bytes()
    n = next(iter(arrays.values())).shape[0]
    gen = ({k: v[i] for k, v in arrays.items()} for i in range(n))
    assert tflquant.calibrate(MULTI, gen) == tflquant.calibrate(MULTI, MULTI_CALIB)


def test_qat_and_int16x8_from_a_generator_match_the_npy(tmp_path):
    qat, qcal = TD / "qat_digits.float.tflite", TD / "digits_qat.calib.npy"
    for src, mode, calib in [(qat, "qat", qcal), (CNN, "int16x8", CALIB)]:
        a, b = tmp_path / f"{mode}.file.tflite", tmp_path / f"{mode}.gen.tflite"
        tflquant.quantize(src, a, mode=mode, calibration=calib)
        tflquant.quantize(src, b, mode=mode, calibration=gen_rows(calib), samples=10_000)
        assert a.read_bytes() == b.read_bytes(), mode
        x = np.load(TD / ("digits_qat.test.npy" if mode == "qat" else "cnn_digits.test.npy"))
        ref, got = run_litert(src, x), run_litert(b, x)
        assert np.all(np.isfinite(got))
        # Both agree on every test sample today; allow one miss in 32.
        assert np.mean(np.argmax(got, 1) == np.argmax(ref, 1)) >= 31 / 32, mode


def test_samples_are_streamed_one_at_a_time():
    alive_max = 0
    refs = []

    def gen():
        nonlocal alive_max
        for row in np.load(CALIB):
            gc.collect()
            alive_max = max(alive_max, sum(r() is not None for r in refs))
            x = row.copy()
            refs.append(weakref.ref(x))
            yield x
            del x

    r = tflquant.calibrate(CNN, gen(), samples=40)
    assert r["samples"] == 40
    # At most the sample being yielded plus the one the generator frame still holds.
    assert alive_max <= 1, alive_max


# ---------------------------------------------------------------- on LiteRT


def test_int8_from_a_generator_runs_on_litert(tmp_path):
    out = tmp_path / "cnn.int8.tflite"
    report = tflquant.quantize(CNN, out, mode="int8", calibration=gen_rows(CALIB))
    assert report["mode"] == "int8"
    assert report["summary"].startswith("int8: ")
    assert all(op["fate"] == "quantized" for op in report["ops"])
    doc = tflquant.inspect(out)
    assert "FLOAT32" not in doc["weight_bytes_by_dtype"]
    assert doc["quantized_tensors"]["per_axis"] >= 4
    hist = doc["subgraphs"][0]["op_histogram"]
    assert hist["QUANTIZE"] == 1 and hist["DEQUANTIZE"] == 1
    test = np.load(TEST)
    ref = run_litert(CNN, test)
    got = run_litert(out, test)
    assert np.all(np.isfinite(got))
    # The output is a softmax in int8 with its fixed scale 1/256: the float and int8
    # probabilities differ by the output's rounding plus what earlier layers carry;
    # two output steps bound it on these digits.
    assert np.max(np.abs(got - ref)) <= 2 / 256
    assert np.mean(np.argmax(got, 1) == np.argmax(ref, 1)) >= 31 / 32


def test_compare_on_litert_matches_numpy(tmp_path):
    out = tmp_path / "cnn.int8.tflite"
    tflquant.quantize(CNN, out, mode="int8", calibration=CALIB, interface="int8")
    test = np.load(TEST)
    doc = tflquant.compare(CNN, out, test, runtime="litert")
    assert doc["runtime"] == "litert" and doc["samples"] == len(test)
    ref, got = run_litert(CNN, test), run_litert(out, test)
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    o = doc["outputs"][0]
    assert o["sqnr_db"] == pytest.approx(sqnr, rel=1e-6)
    assert o["max_abs"] == pytest.approx(np.max(np.abs(ref - got)), rel=1e-6)
    # Generator and path give the same document.
    assert tflquant.compare(CNN, out, gen_rows(TEST), runtime="litert") == doc


def test_validate_and_ranges(tmp_path):
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps(tflquant.calibrate(CNN, gen_rows(CALIB))))
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    tflquant.quantize(CNN, a, mode="int8", calibration=CALIB)
    r = tflquant.quantize(CNN, b, mode="int8", ranges=ranges, validate=gen_rows(TEST))
    assert a.read_bytes() == b.read_bytes()
    v = r["validation"]
    assert v["samples"] == len(np.load(TEST))
    assert v["outputs"][0]["sqnr_db"] > 30
    assert v["outputs"][0]["top1"] >= 31 / 32


def test_weight_modes_with_options(tmp_path):
    out = tmp_path / "fc.tflite"
    r = tflquant.quantize(TD / "mlp_large_fc.tflite", out, mode="weight-int8", per_tensor=True)
    assert r["quantized"] and all(t["granularity"] == "per-tensor" for t in r["quantized"])
    x = np.load(TD / "mlp_large_fc.test.npy")
    assert np.all(np.isfinite(run_litert(out, x)))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: tflquant.inspect(TD / "missing.tflite"), ValueError, "cannot open"),
        (lambda: tflquant.inspect(CALIB), ValueError, "not a TFLite model"),
        (
            lambda: tflquant.calibrate(CNN, (np.zeros((7, 7, 1), np.float32) for _ in range(3))),
            ValueError,
            "data sample 0: got a sample of shape [7, 7, 1] float32",
        ),
        (
            lambda: tflquant.calibrate(CNN, np.load(CALIB).astype(np.float64)),
            ValueError,
            "astype(np.float32)",
        ),
        (lambda: tflquant.calibrate(CNN, iter([])), ValueError, "no samples"),
        (
            lambda: tflquant.calibrate(MULTI, [{"a": np.zeros(4, np.float32), "b": np.zeros(4, np.float32)}]),
            ValueError,
            'no array for input 0 ("serving_default_y:0") (looked for "serving_default_y:0", "y", "input_0"); the sample has a, b',
        ),
        (lambda: tflquant.calibrate(CNN, CALIB, observer="median"), ValueError, "median"),
        (lambda: tflquant.calibrate(CNN, 42), TypeError, "expected a path"),
        (lambda: tflquant.calibrate(CNN, CALIB, colour=True), TypeError, "'colour'"),
        (lambda: tflquant.quantize(CNN, "/tmp/x.tflite", mode="int7"), ValueError, "int16x8"),
        (
            lambda: tflquant.quantize(CNN, "/tmp/x.tflite", mode="int8"),
            ValueError,
            "needs calibration data",
        ),
        (
            lambda: tflquant.quantize(CNN, "/tmp/x.tflite", mode="dynamic", calibration=CALIB),
            ValueError,
            "calibration applies to",
        ),
        (
            lambda: tflquant.quantize(CNN, "/tmp/x.tflite", mode="int8", calibration=CALIB, interface="int16"),
            ValueError,
            "int16x8",
        ),
        (
            lambda: tflquant.quantize(CNN, "/tmp/x.tflite", mode="weight-int8", block_size=32),
            ValueError,
            "weight-int4",
        ),
        (
            lambda: tflquant.quantize(CNN, "/tmp/x.tflite", mode="dynamic", per_tensor="yes"),
            TypeError,
            "per_tensor='yes'",
        ),
        (
            lambda: tflquant.compare(CNN, CNN, TEST, runtime="gpu"),
            ValueError,
            "reference",
        ),
        (lambda: tflquant.compare(CNN, MULTI, TEST), ValueError, "do not match"),
    ],
)
def test_bad_input_raises_with_the_message(call, exc, words):
    with pytest.raises(exc) as e:
        call()
    assert words in str(e.value)


def test_a_failing_generator_propagates_its_exception():
    def gen():
        yield np.load(CALIB)[0]
        raise KeyError("pipeline broke")

    with pytest.raises(KeyError, match="pipeline broke"):
        tflquant.calibrate(CNN, gen())


def test_every_option_is_documented_in_the_stub():
    stub = (Path(tflquant.__file__).parent / "__init__.pyi").read_text()
    for func in ["calibrate", "quantize", "compare"]:
        for name in tflquant._native.option_names(func):
            assert f"{name}:" in stub, (func, name)


# ---------------------------------------------------------------- HTML report


class Page(HTMLParser):
    """Collects the marks of the chart, tables, and anything that loads from outside."""

    def __init__(self):
        super().__init__()
        self.marks, self.rows, self.external, self.tables = [], {}, [], []
        self.table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "circle" and "mark" in a.get("class", "").split():
            self.marks.append(a)
        if tag == "table":
            self.table = a.get("id")
            self.tables.append(self.table)
            self.rows[self.table] = 0
        if tag == "tr" and self.table is not None:
            self.rows[self.table] += 1
        for k in ("src", "href"):
            if k in a:
                self.external.append(a[k])
        if tag == "link":
            self.external.append(a)

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None


def parse(path):
    p = Page()
    p.feed(Path(path).read_text(encoding="utf-8"))
    p.close()
    return p


def test_compare_html_has_one_mark_per_compared_tensor(tmp_path):
    page = tmp_path / "report.html"
    q = TD / "int8_quantized_cnn.tflite"
    doc = tflquant.compare(CNN, q, TEST, tensors=True, html=page)
    p = parse(page)
    assert doc["tensors_compared"] == len(doc["tensors"]) >= 8
    assert len(p.marks) == doc["tensors_compared"]
    assert sorted(m["data-name"] for m in p.marks) == sorted(t["name"] for t in doc["tensors"])
    for m, t in zip(sorted(p.marks, key=lambda m: m["data-name"]), sorted(doc["tensors"], key=lambda t: t["name"])):
        assert m["data-op"] == t["op"]
        if t["local_sqnr_db"] is not None:
            assert float(m["data-local-sqnr-db"]) == pytest.approx(t["local_sqnr_db"], abs=1e-3)
    assert p.external == []
    assert p.rows["outputs"] == 1 + len(doc["outputs"])
    assert "weight-bytes" in p.tables
    # Without tensors=True the page still has them; the document does not.
    doc2 = tflquant.compare(CNN, q, TEST, html=page)
    assert "tensors" not in doc2 or doc2["tensors"] is None
    assert len(parse(page).marks) == doc["tensors_compared"]


def test_quantize_validate_html_shows_the_plan(tmp_path):
    out, page = tmp_path / "q.tflite", tmp_path / "q.html"
    r = tflquant.quantize(CNN, out, mode="int8", calibration=CALIB, validate=TEST, html=page)
    p = parse(page)
    assert p.rows["plan"] == 1 + len(r["ops"])
    assert len(p.marks) == r["validation"]["tensors_compared"]


def cli():
    exe = ROOT / "target" / "debug" / "tflquant"
    if not exe.exists():
        pytest.skip("the CLI is not built (scripts/test builds it with cargo test)")
    return str(exe)


def test_cli_html_matches_its_json(tmp_path):
    page = tmp_path / "cli.html"
    q = TD / "int8_quantized_cnn.tflite"
    args = [cli(), "compare", str(CNN), str(q), "--data", str(TEST), "--tensors", "--json"]
    doc = json.loads(subprocess.run(args + ["--html", str(page)], check=True, capture_output=True).stdout)
    assert len(parse(page).marks) == doc["tensors_compared"]
    # The CLI and the package give the same document.
    assert tflquant.compare(CNN, q, TEST, tensors=True) == doc


def test_cli_and_package_give_the_same_documents(tmp_path):
    exe = cli()
    doc = json.loads(subprocess.run([exe, "inspect", str(CNN), "--json"], check=True, capture_output=True).stdout)
    assert tflquant.inspect(CNN) == doc
    ranges = tmp_path / "ranges.json"
    subprocess.run([exe, "calibrate", str(CNN), "--data", str(CALIB), "-o", str(ranges), "--observer", "mse"], check=True)
    assert tflquant.calibrate(CNN, gen_rows(CALIB), observer="mse") == json.loads(ranges.read_text())
    a, b = tmp_path / "cli.tflite", tmp_path / "py.tflite"
    report = tmp_path / "report.json"
    subprocess.run(
        [exe, "quantize", str(CNN), "-o", str(a), "--mode", "int8", "--calibration", str(CALIB),
         "--interface", "uint8", "--report", str(report), "-q"],
        check=True,
    )
    r = tflquant.quantize(CNN, b, mode="int8", calibration=np.load(CALIB), interface="uint8")
    assert a.read_bytes() == b.read_bytes()
    r.pop("summary")
    assert r == json.loads(report.read_text())


def test_example_script_runs(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quantize_from_generator.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "int8:" in r.stdout
    assert (tmp_path / "cnn_digits.int8.tflite").exists()
    assert (tmp_path / "cnn_digits.int8.html").exists()
