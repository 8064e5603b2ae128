"""Stage 7: the report (summary table, per-image CSV, overlays, plots) and the machine description."""

import csv
import json
import logging
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from unet_infer import report
from unet_infer.cli import run_cli
from unet_infer.figures import LABEL_COLOUR, edge_mask, plot_fps_vs_batch, plot_iou_hist
from unet_infer.formats import write_bin
from unet_infer.machine import cpu_model, describe_machine, gpu_name, today, vector_units
from unet_infer.data import load_label
from unet_infer.postprocess import score_folder
from unet_infer.results import select_extremes, write_results
from unet_infer.summary import build_summary, write_summary
from unet_infer.workdir import Workdir

S = 64
N = 6
FLIPS = [0, 3, 10, 25, 60, 0]  # pixels flipped per image; the last image gets a bad prediction instead
COMPUTE_MS = [100.0, 120.0]  # throughput at bs 8: 8000 / 110


def stem_of(i):
    return f"{i:012x}_{i % 16 + 1:02d}"


def write_mask_gif(path, mask):
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.astype(np.uint8).tobytes())
    img.putpalette([0, 0, 0, 255, 255, 255])
    img.save(path, optimize=False)


def make_data(root, n=N, width=80, height=48):
    """root/train/<stem>.jpg and root/train_masks/<stem>_mask.gif (an ellipse, index 1 = car)."""
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    y, x = np.mgrid[0:height, 0:width]
    for i in range(n):
        rgb = np.stack([(x * 3 + i * 20) % 256, (y * 5) % 256, np.full_like(x, 90 + i * 10)], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(root / "train" / f"{stem_of(i)}.jpg", quality=90)
        cx, cy = width * (0.4 + 0.03 * i), height * 0.5
        mask = ((x - cx) / (width * 0.3)) ** 2 + ((y - cy) / (height * 0.3)) ** 2 <= 1
        write_mask_gif(root / "train_masks" / f"{stem_of(i)}_mask.gif", mask)
    return root


def predicted(data, i):
    """Image i's prediction at S x S: its label with FLIPS[i] pixels flipped (the last: a mostly wrong one)."""
    label = load_label(data / "train_masks" / f"{stem_of(i)}_mask.gif", S)
    if i == N - 1:
        pred = np.zeros_like(label)
        pred[:, : S // 5] = True  # a strip beside the car: IoU far below 0.5
        return pred
    pred = label.copy()
    flat = pred.reshape(-1)
    flat[np.random.default_rng(i).choice(flat.size, FLIPS[i], replace=False)] ^= True
    return pred


W8 = "w16.pth sha256:00000000000000aa"   # the weights of the fixture's run
W4 = "w4.pth sha256:00000000000000bb"


def add_run(work, data, bs, compute_ms=COMPUTE_MS, extra=None, provenance=None, weights=W8, perf_ms=None, name=""):
    """work/result/bs<B>/<stem>.bin, work/result/bs<B>_summary.json and work/result_bs<B>.json; with
    ``perf_ms``, the pure-inference run's work/result/perf_bs<B>_summary.json too; ``name``: another
    run's names (``Workdir(work, name)``: result/<name>_bs<B>/ ...)."""
    w = Workdir(work, name)
    out = w.outputs(bs)
    out.mkdir(parents=True)
    for i in range(N):
        write_bin(out / f"{stem_of(i)}.bin", np.where(predicted(data, i), 3.0, -3.0)[None])
    records = score_folder(out, data / "train_masks", size=S, workers=1)
    summary = write_results(records, w.result_txt(bs), provenance=provenance)
    extra = {"backend": "onnxruntime", "precision": "fp32", "model": str(work / f"UNet_bs{bs}.onnx"),
             "weights": weights, "wall_s": 12.34} if extra is None else extra
    filesinfo = {str(i): {"infiles": [f"prep_bin/{stem_of(i)}.bin"], "outfiles": [str(out / f"{stem_of(i)}_0.bin")]}
                 for i in range(N)}
    write_summary(w.summary(bs),
                  build_summary(filesinfo, {"batchsize": bs}, compute_ms, [1.0], [1.0], batchsize=bs, pid=1,
                                extra={k: v for k, v in extra.items() if v is not None}))
    if perf_ms is not None:
        perf_extra = {"backend": extra.get("backend"), "mode": "pure", "weights": weights}
        write_summary(w.perf_summary(bs),
                      build_summary({}, {"batchsize": bs, "loop": len(perf_ms)}, perf_ms, [], [], batchsize=bs,
                                    pid=2, extra={k: v for k, v in perf_extra.items() if v is not None}))
    return summary


@pytest.fixture
def run(tmp_path):
    """A scored bs 8 run: (work, data, the result summary)."""
    data = make_data(tmp_path / "carvana")
    work = tmp_path / "work"
    work.mkdir()
    return work, data, add_run(work, data, 8)


def report_main(work, data, *extra):
    return run_cli(report.main, ["--work", str(work), "--data", str(data), "--size", str(S),
                                 "--machine", "test box", "--quiet", *extra])


def png_size(path):
    with Image.open(path) as img:
        img.load()
        return img.size


def table_rows(summary_md):
    """The table of summary.md as ``{column: cell}`` per row."""
    lines = [line for line in summary_md.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split(" | ")))) for line in lines[1:]]


def test_report_end_to_end(run, capsys):
    work, data, result = run
    assert report_main(work, data, "--batchsizes", "8") == 0
    out = work / "report"
    assert capsys.readouterr().out == f"report: {out / 'summary.md'} (1 row, 6 overlays)\n"
    assert result["n_below_0_5"] == 1 and result["n_images"] == N

    assert table_rows(out / "summary.md") == [{
        "Batch Size": "8", "Data set": "carvana", "IoU (all images)": f"{result['mean_iou']:.6f}",
        "IoU (ModelZoo: images >= 0.5)": f"{result['modelzoo_iou']:.6f}", "Dice": f"{result['mean_dice']:.6f}",
        "Images": str(N), "images/s (pure inference)": "n/a", "images/s (scored run, compute only)": f"{8000 / 110:.2f}",
        "Wall s (scored run)": "12.3", "Backend": "onnxruntime", "Precision": "fp32", "Model": "UNet_bs8.onnx",
        "Weights": W8, "Machine": "test box"}]
    text = (out / "summary.md").read_text()
    assert "| Batch Size | Data set | IoU (all images) | IoU (ModelZoo: images >= 0.5) |" in text
    assert re.search(r"Generated \d{4}-\d\d-\d\d", text) and "1000 x batch size / mean compute time" in text
    assert "Warning" not in text

    with open(out / "per_image.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["name", "iou", "dice"]
    assert lines[1:-1] == [[r["name"], f"{r['iou']:.6f}", f"{r['dice']:.6f}"] for r in result["per_image"]]
    assert lines[-1] == ["mean", f"{result['mean_iou']:.6f}", f"{result['mean_dice']:.6f}"]

    assert png_size(out / "iou_hist.png") == (800, 500)
    assert not (out / "fps_vs_batch.png").exists()  # one batch size: nothing to compare
    ranked = sorted(result["per_image"], key=lambda r: r["iou"])
    expected = ([f"worst_{k}_{r['name']}.png" for k, r in enumerate(ranked[:3], 1)]
                + [f"best_{k}_{r['name']}.png" for k, r in enumerate(ranked[::-1][:3], 1)])
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(expected)
    assert expected[0] == f"worst_1_{stem_of(N - 1)}.png" and expected[3] == f"best_1_{stem_of(0)}.png"
    for name in expected:
        assert png_size(out / "overlays" / name) == (S, S)


def test_overlay_shows_prediction_and_label_outline(run):
    work, data, _ = run
    assert report_main(work, data) == 0
    arr = np.asarray(Image.open(work / "report" / "overlays" / f"best_1_{stem_of(0)}.png").convert("RGB"))
    label = load_label(data / "train_masks" / f"{stem_of(0)}_mask.gif", S)
    edge = edge_mask(label)
    below_caption = np.zeros_like(label)
    below_caption[S // 2:] = True
    assert (arr[edge & below_caption] == LABEL_COLOUR).all()
    inside = label & ~edge & below_caption
    outside = ~label & below_caption
    # cyan fill: inside the car, blue+green rise against red compared with the background
    tint = lambda px: (px[:, 1].astype(int) + px[:, 2] - 2 * px[:, 0].astype(int)).mean()  # noqa: E731
    assert tint(arr[inside]) > tint(arr[outside]) + 50


def test_png_mask_fallback_gives_the_same_overlays(run, capsys):
    work, data, _ = run
    assert report_main(work, data) == 0
    before = {p.name: np.asarray(Image.open(p)) for p in (work / "report" / "overlays").iterdir()}
    masks = work / "result" / "bs8_masks"
    masks.mkdir()
    for i in range(N):
        (work / "result" / "bs8" / f"{stem_of(i)}.bin").unlink()
        Image.fromarray(predicted(data, i).astype(np.uint8) * 255, "L").save(masks / f"{stem_of(i)}.png")
    assert report_main(work, data) == 0
    assert "6 overlays" in capsys.readouterr().out
    after = {p.name: np.asarray(Image.open(p)) for p in (work / "report" / "overlays").iterdir()}
    assert after.keys() == before.keys()
    for name in before:
        assert np.array_equal(after[name], before[name]), name


def test_runner_named_output_is_used(run):
    work, data, _ = run
    out = work / "result" / "bs8"
    (out / f"{stem_of(0)}.bin").rename(out / f"{stem_of(0)}_0.bin")
    assert report_main(work, data) == 0
    assert (work / "report" / "overlays" / f"best_1_{stem_of(0)}.png").is_file()


def test_missing_prediction_is_a_warning_and_stale_overlays_go(run, capsys, caplog):
    work, data, _ = run
    assert report_main(work, data) == 0
    worst = work / "report" / "overlays" / f"worst_1_{stem_of(N - 1)}.png"
    assert worst.is_file()
    (work / "result" / "bs8" / f"{stem_of(N - 1)}.bin").unlink()
    with caplog.at_level(logging.WARNING):
        assert report_main(work, data) == 0
    assert "5 overlays" in capsys.readouterr().out
    assert not worst.exists()  # the old overlay does not outlive its prediction
    assert any(stem_of(N - 1) in r.getMessage() and "overlay skipped" in r.getMessage() for r in caplog.records)


def test_table_lists_the_runs_batch_sizes_only(run, capsys, caplog):
    """Other results in the folder stay out of the table unless --all asks for them."""
    work, data, result = run
    add_run(work, data, 1, compute_ms=[20.0])
    add_run(work, data, 16, compute_ms=[200.0])
    with caplog.at_level(logging.WARNING):
        assert report_main(work, data, "--batchsizes", "32,8") == 0
    assert "(1 row, 6 overlays)" in capsys.readouterr().out
    assert [r["Batch Size"] for r in table_rows(work / "report" / "summary.md")] == ["8"]
    assert any("batch size 32" in r.getMessage() and "result_bs32.json" in r.getMessage() for r in caplog.records)
    assert not (work / "report" / "fps_vs_batch.png").exists()

    assert report_main(work, data, "--batchsizes", "16,1") == 0
    assert "(2 rows, 6 overlays)" in capsys.readouterr().out
    assert [r["Batch Size"] for r in table_rows(work / "report" / "summary.md")] == ["1", "16"]
    assert "Per-image scores (bs 16)" in (work / "report" / "summary.md").read_text()


def test_all_lists_every_batch_size_with_its_own_backend(run, capsys, caplog):
    work, data, result = run
    add_run(work, data, 1, compute_ms=[20.0], extra={"backend": "torch", "precision": "fp16", "weights": W8})
    add_run(work, data, 16, compute_ms=[200.0], extra={"model": "/w/UNet_int8_bs16.onnx", "weights": W8})
    add_run(work, data, 32, compute_ms=[400.0])
    (work / "result" / "bs32_summary.json").unlink()  # scored but no summary: not in the table
    with caplog.at_level(logging.WARNING):
        assert report_main(work, data, "--all", "--batchsizes", "32,8", "--backend", "acl") == 0
    assert "(3 rows, 6 overlays)" in capsys.readouterr().out
    rows = table_rows(work / "report" / "summary.md")
    # bs 16 records neither backend nor precision: --backend, and n/a (not "int8" from its model's name)
    assert [(r["Batch Size"], r["images/s (scored run, compute only)"], r["Backend"], r["Precision"], r["Model"],
             r["Wall s (scored run)"]) for r in rows] == [
        ("1", "50.00", "torch", "fp16", "n/a", "n/a"),
        ("8", f"{8000 / 110:.2f}", "onnxruntime", "fp32", "UNet_bs8.onnx", "12.3"),
        ("16", "80.00", "acl", "n/a", "UNet_int8_bs16.onnx", "n/a")]
    assert all(r["IoU (all images)"] == f"{result['mean_iou']:.6f}" and r["Weights"] == W8 for r in rows)
    assert any("bs32_summary.json" in r.getMessage() for r in caplog.records)
    assert png_size(work / "report" / "fps_vs_batch.png") == (800, 500)
    assert report_main(work, data, "--all", "--precision", "fp32") == 0
    assert table_rows(work / "report" / "summary.md")[2]["Precision"] == "fp32"


def test_the_results_of_another_precision_in_the_folder_are_rows_too(run, capsys, caplog):
    """fp32 (the plain names) and INT8 (its own names) kept in one folder: one row each, whichever
    run the report is for; that run's predictions give the overlays; an older run of other weights
    is left out with a warning, not a refusal."""
    work, data, result = run
    int8 = {"backend": "onnxruntime", "precision": "int8", "model": str(work / "UNet_int8_bs8.onnx"), "weights": W8}
    add_run(work, data, 8, compute_ms=[50.0], extra=int8, name="onnxruntime_int8")
    add_run(work, data, 1, compute_ms=[20.0], extra=int8, name="onnxruntime_int8")
    add_run(work, data, 8, extra={**int8, "backend": "openvino", "weights": W4}, name="openvino_int8")
    for this in ("onnxruntime_int8", ""):
        with caplog.at_level(logging.WARNING):
            assert report_main(work, data, "--batchsizes", "8", "--run", this) == 0
        assert "(2 rows, 6 overlays)" in capsys.readouterr().out
        rows = table_rows(work / "report" / "summary.md")
        assert [(r["Batch Size"], r["Backend"], r["Precision"], r["Model"], r["images/s (scored run, compute only)"])
                for r in rows] == [("8", "onnxruntime", "fp32", "UNet_bs8.onnx", f"{8000 / 110:.2f}"),
                                   ("8", "onnxruntime", "int8", "UNet_int8_bs8.onnx", "160.00")]
        assert any("result_openvino_int8_bs8.json: made from other weights" in r.getMessage()
                   for r in caplog.records)
        caplog.clear()
        text = (work / "report" / "summary.md").read_text()
        assert "Images below 0.5: bs 8 onnxruntime fp32: 1, bs 8 onnxruntime int8: 1." in text
        assert f"Per-image scores (bs 8 onnxruntime {'int8' if this else 'fp32'})" in text
    shutil.rmtree(work / "result" / "onnxruntime_int8_bs8")  # the int8 run's predictions: its overlays
    with caplog.at_level(logging.WARNING):
        assert report_main(work, data, "--batchsizes", "8", "--run", "onnxruntime_int8") == 0
    assert "(2 rows, 0 overlays)" in capsys.readouterr().out
    assert report_main(work, data, "--all", "--run", "onnxruntime_int8") == 0
    assert "(3 rows, " in capsys.readouterr().out


@pytest.fixture
def mixed(tmp_path):
    """The issue's folder: a bs 5 run of weights W8, then a bs 3 run of weights W4 (a worse model)."""
    data = make_data(tmp_path / "carvana")
    work = tmp_path / "work"
    work.mkdir()
    add_run(work, data, 5)
    add_run(work, data, 3, weights=W4)
    return work, data


def test_mixed_weights_are_refused(mixed, capsys):
    work, data = mixed
    for flags in (["--batchsizes", "3,5"], ["--all", "--batchsizes", "3"]):
        assert report_main(work, data, *flags) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {work}: the table would mix runs of different weights")
        assert f"{W4} (bs 3) and {W8} (bs 5)" in err
        assert "workdir=" in err and "--batchsizes" in err
    assert not (work / "report" / "summary.md").exists()


def test_a_runs_own_batch_size_is_reported_alone(mixed, capsys):
    work, data = mixed
    assert report_main(work, data, "--batchsizes", "3") == 0
    assert [(r["Batch Size"], r["Weights"]) for r in table_rows(work / "report" / "summary.md")] == [("3", W4)]


def test_weights_fall_back_to_the_results_provenance(tmp_path):
    data = make_data(tmp_path / "carvana")
    work = tmp_path / "work"
    work.mkdir()
    add_run(work, data, 2, weights=None, provenance={"weights": W4, "model": "/x/UNet_bs2.onnx"},
            extra={"backend": "onnxruntime"})
    add_run(work, data, 4, weights=None, extra={})  # nothing recorded anywhere: n/a, compared with nothing
    assert report_main(work, data, "--batchsizes", "2,4") == 0
    assert [(r["Weights"], r["Model"], r["Precision"]) for r in table_rows(work / "report" / "summary.md")] == [
        (W4, "UNet_bs2.onnx", "n/a"), ("n/a", "n/a", "n/a")]
    add_run(work, data, 8, weights=None, provenance={"weights": W8}, extra={})
    assert report_main(work, data, "--all") == 2  # W4 (from bs 2's provenance) against W8


def test_pure_inference_throughput_is_listed(tmp_path, caplog):
    data = make_data(tmp_path / "carvana")
    work = tmp_path / "work"
    work.mkdir()
    add_run(work, data, 8, perf_ms=[40.0, 60.0])         # 8000 / 50 = 160 images/s
    add_run(work, data, 4, perf_ms=[25.0], weights=W8)   # 4000 / 25 = 160 images/s
    (work / "result" / "perf_bs4_summary.json").write_text(
        (work / "result" / "perf_bs4_summary.json").read_text().replace(W8, W4))  # a stale timing run
    with caplog.at_level(logging.WARNING):
        assert report_main(work, data, "--batchsizes", "8,4") == 0
    rows = table_rows(work / "report" / "summary.md")
    assert [(r["Batch Size"], r["images/s (pure inference)"], r["images/s (scored run, compute only)"]) for r in rows] == [
        ("4", "n/a", f"{4000 / 110:.2f}"), ("8", "160.00", f"{8000 / 110:.2f}")]
    assert any("perf_bs4_summary.json" in r.getMessage() and W4 in r.getMessage() for r in caplog.records)


def test_data_set_name_and_recorded_machine(run):
    work, data, _ = run
    path = work / "result" / "bs8_summary.json"
    summary = json.loads(path.read_text())
    summary["machine"] = "Ascend 310P3 | box"
    path.write_text(json.dumps(summary))
    renamed = data.with_name("sample")
    shutil.move(data, renamed)
    assert report_main(work, renamed) == 0
    row = table_rows(work / "report" / "summary.md")[0]
    assert row["Data set"] == "sample" and row["Machine"] == "Ascend 310P3 \\| box"


def test_help_shows_the_example(capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "python3 -m unet_infer.report --work work" in text and "(default: 572)" in text


@pytest.mark.parametrize("setup, message", [
    ("no_work", "work folder not found"),
    ("no_results", "no result_bs<B>.json"),
    ("no_summary", "no batch size has both"),
    ("no_data", "data folder not found"),
    ("bad_json", "not a readable JSON file"),
])
def test_user_errors_exit_2(tmp_path, capsys, setup, message):
    data = make_data(tmp_path / "carvana", n=N)
    work = tmp_path / "work"
    if setup != "no_work":
        work.mkdir()
    if setup in ("no_summary", "bad_json", "no_data"):
        add_run(work, data, 8)
    if setup == "no_summary":
        (work / "result" / "bs8_summary.json").unlink()
    if setup == "bad_json":
        (work / "result_bs8.json").write_text('{"mean_iou": ')
    if setup == "no_data":
        data = tmp_path / "nowhere"
    assert report_main(work, data) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert setup == "no_data" or str(work) in err


def test_bad_batchsizes_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--work", str(tmp_path), "--data", str(tmp_path), "--batchsizes", "8,x"])
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.parametrize("n, n_worst, n_best", [(1, 1, 0), (2, 1, 1), (5, 3, 2), (8, 4, 4), (11, 4, 4)])
def test_select_extremes_never_repeats(n, n_worst, n_best):
    records = [{"name": f"img{i}", "iou": 1.0 - ((i * 7) % n) / 100} for i in range(n)]
    worst, best = select_extremes(records)
    assert (len(worst), len(best)) == (n_worst, n_best)
    assert not {r["name"] for r in worst} & {r["name"] for r in best}
    ious = sorted(r["iou"] for r in records)
    assert [r["iou"] for r in worst] == ious[:n_worst]
    assert [r["iou"] for r in best] == ious[::-1][:n_best]


def test_edge_mask_is_the_inner_outline():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 1:7] = True
    edge = edge_mask(mask)
    inner = np.zeros_like(mask)
    inner[3:5, 2:6] = True
    assert np.array_equal(edge, mask & ~inner)
    assert edge_mask(mask, 2).sum() == mask.sum()  # 4 rows: two layers take everything


def test_plot_fps_vs_batch(tmp_path):
    rows = [{"backend": "onnxruntime", "precision": "fp32", "batchsize": b, "fps": f} for b, f in [(1, 5.0), (8, 7.5)]]
    rows += [{"backend": "torch", "precision": "bf16", "batchsize": 32, "fps": 40.0}]
    out = plot_fps_vs_batch(rows, tmp_path / "fps.png")
    assert png_size(out) == (800, 500)
    single = plot_fps_vs_batch(rows[:1], tmp_path / "one.png")
    assert png_size(single) == (800, 500)


def test_iou_hist_without_difficult_images(tmp_path):
    assert png_size(plot_iou_hist([0.99, 0.98, 0.985], tmp_path / "h.png")) == (800, 500)
    assert png_size(plot_iou_hist([1.0], tmp_path / "one.png")) == (800, 500)


def test_plural():
    assert [report.plural(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]


def test_describe_machine(tmp_path):
    text = describe_machine()
    assert re.fullmatch(r".+, \d+ cores?", text)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t:  Intel(R)  Xeon(R) Processor \n")
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Processor"
    assert cpu_model(tmp_path / "missing")  # falls back to platform, never empty
    assert [gpu_name(d) for d in ("cpu", None, 0, "cuda:x")] == [None] * 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", today())
    assert describe_machine(flags={"avx2", "fma"}).split(", ")[0].endswith(" (AVX2)")
    assert " (AMX, AVX-512 VNNI, bf16), " in describe_machine(flags={"amx_int8", "avx512_vnni", "avx512_bf16", "avx2"})
    assert " (AVX-512 VNNI, bf16), " in describe_machine(flags={"avx512f", "avx512_vnni", "avx512_bf16"})
    assert vector_units(set()) == "" and describe_machine(flags=set()).split(", ")[0] == cpu_model()


def readme_stage_commands():
    """``{stage: command}`` of README.md's stage table: the "Any machine" column ("same": the guide's)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| Stage | Guide (Ascend) | Any machine | Writes |"):].split("\n\n")[0]
    commands = {}
    for line in table.splitlines()[2:]:
        stage, guide, anywhere = [cell.strip().strip("`") for cell in line.strip("|").split(" | ")][:3]
        commands[stage] = guide if anywhere == "same" else anywhere
    return commands


def test_the_readme_stage_table_typed_in_order_ends_with_a_report(tmp_path, make_carvana, monkeypatch, capsys):
    """Stages 1, 4, 5, 6, performance and 7 as the README's table types them, in the guide's layout
    (a tiny model at 32 x 32 in place of stages 2-3: ``--size 32`` and ``--workers 1`` added):
    the report finds stage 6's ./result.json, which records what the run was made from, and the
    performance command's summary gives the pure-inference column."""
    import shlex
    import torch
    from tiny_unet import tiny_unet
    from unet_infer.bench import runner
    from unet_infer import postprocess, preprocess, rename
    data = make_carvana(tmp_path / "carvana")
    torch.onnx.export(tiny_unet(), torch.zeros(1, 3, 32, 32), str(tmp_path / "UNet_bs8.onnx"), dynamo=False,
                      opset_version=11, input_names=["actual_input_1"], output_names=["output1"],
                      dynamic_axes={"actual_input_1": {0: "-1"}, "output1": {0: "-1"}})
    monkeypatch.chdir(tmp_path)
    at_32 = ["--size", "32"]
    tools = {"python3 preprocess_unet_pth.py": (preprocess.main, [*at_32, "--workers", "1"]),
             "python3 -m unet_infer.bench": (runner.main, at_32), "python3 json_parse.py": (rename.main, []),
             "python3 postprocess_unet_pth.py": (postprocess.main, [*at_32, "--workers", "1"]),
             "python3 -m unet_infer.report": (report.main, at_32)}
    commands = readme_stage_commands()
    for stage in ("1. preprocess", "4. inference", "5. rename", "6. score", "performance", "7. report"):
        words = shlex.split(commands[stage])
        head = 3 if words[1] == "-m" else 2
        main, extra = tools[" ".join(words[:head])]
        assert run_cli(main, [*words[head:], *extra]) == 0, (stage, capsys.readouterr().err)
    made = json.loads((tmp_path / "result.json").read_text())["provenance"]
    assert made["batchsize"] == 8 and made["model"] == str(tmp_path / "UNet_bs8.onnx") and made["backend"]
    assert made["masks"] == str(data.masks) and made["outputs"] == str(tmp_path / "result" / "bs8")
    rows = table_rows(tmp_path / "report" / "summary.md")
    assert [(r["Batch Size"], r["Images"], r["Model"]) for r in rows] == [("8", "4", "UNet_bs8.onnx")]
    assert rows[0]["images/s (pure inference)"] != "n/a"
