"""Per-video statistics (flowprep inspect --videos, store.video_stats()) and flowprep report,
on a store of known content: a static video, a texture panned beyond the bound, a real
clip, a corrupt input. The page is opened in a real headless browser (chromium)."""
import csv
import io
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import flowprep
from flowprep.cli.main import cli
from flowprep.quantize import motion_stats
from flowprep.report.page import build_report
from flowprep.report.stats import FIELD_NAMES
from flowprep.verify import verify_store

import report_store
from synth import translated_video


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """{"jpeg": store, "hdf5" / "wds": its converted copies, "ids": role -> video id,
    "inputs": dir}."""
    root = tmp_path_factory.mktemp("report")
    ids = report_store.make_inputs(str(root / "in"))
    report_store.make_store(str(root / "in"), str(root / "jpeg"))
    from flowprep.convert import convert
    convert(str(root / "jpeg"), str(root / "hdf5"), "hdf5")
    convert(str(root / "jpeg"), str(root / "wds"), "wds")
    return {"jpeg": str(root / "jpeg"), "hdf5": str(root / "hdf5"), "wds": str(root / "wds"),
            "ids": ids,
            "inputs": str(root / "in"), "root": root}


def copy_store(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def strip_motion_stats(store_dir):
    """Turn a JPEG store into one made before the motion statistics existed."""
    for dirpath, _, files in os.walk(store_dir):
        if "meta.json" in files:
            p = os.path.join(dirpath, "meta.json")
            meta = json.load(open(p))
            for k in [k for k in meta if k.startswith("motion")]:
                del meta[k]
            json.dump(meta, open(p, "w"))


# --- the statistics ---------------------------------------------------------------------

def test_motion_stats_known_flows():
    flow = np.zeros((40, 50, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -4.0
    assert motion_stats(flow) == pytest.approx((5.0, 5.0), abs=1e-5)
    flow[:20] = 0  # half still: mean 2.5, the 95th percentile still the moving half
    m, p = motion_stats(flow)
    assert m == pytest.approx(2.5, abs=1e-5) and p == pytest.approx(5.0, abs=1e-5)
    flow[:] = 0
    flow[0, :10] = (0.0, 1.0)  # 10 of 2000 pixels move: below the 95th percentile
    assert motion_stats(flow) == pytest.approx((10 / 2000, 0.0), abs=1e-6)
    with pytest.raises(ValueError):
        motion_stats(np.zeros((4, 4)))


def test_extraction_records_motion_of_every_stream(tmp_path):
    src = translated_video(str(tmp_path / "t.mkv"), n=5, dx=1.5, dy=-1.0)
    out = str(tmp_path / "out")
    flowprep.extract([src], out, algo="farneback", backward=True, short_side=0, jobs=1)
    store = flowprep.open_store(out)
    v = store[store.video_ids[0]]
    for key in ("motion", "motion_p95", "motion_backward", "motion_p95_backward"):
        assert len(v.meta[key]) == v.num_flows, key
    truth = math.hypot(1.5, -1.0)
    assert np.median(v.motion()) == pytest.approx(truth, abs=0.3)
    assert np.median(v.motion(backward=True)) == pytest.approx(truth, abs=0.3)
    assert np.all(v.motion_p95() >= v.motion() - 1e-3)
    assert verify_store(out, decode=False) == []


def test_inspect_videos_json_known_content(known):
    r = run("inspect", known["jpeg"], "--videos", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["video_id"]: row for row in json.loads(r.output)}
    ids = known["ids"]
    assert set(rows) == set(ids.values())
    pub = [row for row in rows.values() if row["status"] == "published"]
    assert len(pub) == 3 and all(set(FIELD_NAMES) <= set(row) for row in pub)
    assert min(pub, key=lambda row: row["motion"])["video_id"] == ids["static"]
    assert max(pub, key=lambda row: row["clipped_fraction"])["video_id"] == ids["panned"]
    static, panned, real = rows[ids["static"]], rows[ids["panned"]], rows[ids["real"]]
    assert static["motion"] < 0.05 and static["clipped_fraction"] == 0
    # the pan moves (6, 5) px a frame, beyond the bound of 4 px: most components clip
    assert panned["clipped_fraction"] > 0.5
    assert panned["motion"] == pytest.approx(math.hypot(*report_store.PAN), rel=0.15)
    assert panned["camera_dx"] == pytest.approx(report_store.PAN[0], rel=0.15)
    assert panned["camera_dy"] == pytest.approx(report_store.PAN[1], rel=0.15)
    assert static["motion"] < real["motion"] < panned["motion"]
    assert real["class"] == "Bike" and real["num_flows"] == real["num_frames"] - 1
    assert all(row["stats"] == "extraction" for row in pub)
    bad = rows[ids["corrupt"]]
    assert bad["status"] == "failed" and bad["motion"] is None
    assert bad["input"].endswith("v_broken.mp4") and "not a readable video" in bad["reason"]


def test_inspect_videos_csv_text_and_array(known):
    js = {row["video_id"]: row for row in json.loads(run("inspect", known["jpeg"], "--videos",
                                                         "--json").output)}
    r = run("inspect", known["jpeg"], "--videos", "--csv")
    assert r.exit_code == 0
    table = list(csv.DictReader(io.StringIO(r.output)))
    assert list(table[0]) == FIELD_NAMES and len(table) == 4
    for row in table:
        if row["status"] == "published":
            assert float(row["motion"]) == pytest.approx(js[row["video_id"]]["motion"], rel=1e-5)
    text = run("inspect", known["jpeg"], "--videos").output
    assert known["ids"]["static"] in text and "failed" in text and "not a readable video" in text
    arr = flowprep.open_store(known["jpeg"]).video_stats(as_array=True)
    assert arr.dtype.names == tuple(FIELD_NAMES) and len(arr) == 4
    failed = arr[arr["status"] == "failed"]
    assert np.isnan(failed["motion"]).all() and (failed["num_frames"] == -1).all()
    assert r.exit_code == 0
    assert run("inspect", known["jpeg"], "--csv").exit_code == 2  # --csv needs --videos


def test_hdf5_rows_equal_jpeg_rows(known):
    def rows(p):
        return [{k: v for k, v in row.items() if k != "input" or row["status"] == "failed"}
                for row in flowprep.open_store(p).video_stats()]
    assert rows(known["hdf5"]) == rows(known["jpeg"])
    assert rows(known["wds"]) == rows(known["jpeg"])


def test_pre_statistics_store_is_approximate_never_a_failure(known, tmp_path):
    old = copy_store(known["jpeg"], tmp_path / "old")
    strip_motion_stats(old)
    exact = {row["video_id"]: row for row in flowprep.open_store(known["jpeg"]).video_stats()}
    rows = {row["video_id"]: row for row in flowprep.open_store(old).video_stats()}
    ids = known["ids"]
    pub = [row for row in rows.values() if row["status"] == "published"]
    assert all(row["stats"] == "approximate" for row in pub)
    assert min(pub, key=lambda row: row["motion"])["video_id"] == ids["static"]
    assert max(pub, key=lambda row: row["clipped_fraction"])["video_id"] == ids["panned"]
    assert rows[ids["static"]]["motion"] < 0.1
    # from quantized planes (step 2B/255 px): close where little clips, lower where it does
    assert rows[ids["real"]]["motion"] == pytest.approx(exact[ids["real"]]["motion"], rel=0.25)
    assert rows[ids["panned"]]["motion"] <= exact[ids["panned"]]["motion"] + 0.1
    v = flowprep.open_store(old)[ids["real"]]
    assert v.motion().shape == (v.num_flows,)
    text = run("inspect", old, "--videos").output
    assert "~" in text and "predates" in text
    rep = build_report(old, sample=2)
    assert any("approximate" in n for n in rep.content["notes"])


# --- the report -------------------------------------------------------------------------

def section(page, anchor):
    """The HTML of <section id=anchor> (or from <h3 id=anchor> to the next heading)."""
    m = re.search(r'<section id="%s">(.*?)</section>' % anchor, page, re.S)
    if m:
        return m.group(1)
    m = re.search(r'id="%s">(.*?)(<h[23] |<h[23]>|$)' % anchor, page, re.S)
    return m.group(1)


def test_report_names_each_in_the_right_place(known):
    rep = build_report(known["jpeg"], sample=3)
    ids, c = known["ids"], rep.content
    tables = {t["key"]: [r["video_id"] for r in t["rows"]] for t in c["tables"]}
    assert tables["static"] == [ids["static"]]
    assert tables["clipped"][0] == ids["panned"] and ids["static"] not in tables["clipped"]
    assert tables["camera"][0] == ids["panned"]
    assert tables["warnings"] == [] and tables["mismatch"] == []
    assert [f["video_id"] for f in c["failures"]] == [ids["corrupt"]]
    assert "not a readable video" in c["failures"][0]["reason"]
    assert c["unreadable"] == []
    page = rep.html
    assert ids["static"] in section(page, "table-static")
    assert ids["panned"] not in section(page, "table-static")
    assert ids["real"] not in section(page, "table-static")
    assert ids["panned"] in section(page, "table-clipped")
    assert "v_broken.mp4" in section(page, "failures") and "not a readable video" in page
    assert "67 % of videos clip more than 5 % of their flow at ±4 px" in page
    # outliers first: the three sampled videos are the three outliers
    assert {s["video_id"] for s in c["samples"]} == {ids["static"], ids["panned"], ids["real"]}
    assert all(s.get("sheet") and s.get("plot") for s in c["samples"])
    assert not re.search(r'(src|href)="(?!data:)', page), "the page refers to something outside it"
    assert "<script" not in page


def test_report_of_hdf5_equals_jpeg(known):
    a = build_report(known["jpeg"], sample=4).content
    b = build_report(known["hdf5"], sample=4).content
    assert a["summary"]["format"] == "jpeg" and b["summary"]["format"] == "hdf5"
    assert a["summary"]["config"] == b["summary"]["config"]
    for k in ("counts", "failures", "warnings", "notes", "plots", "tables", "samples",
              "unreadable"):
        assert a[k] == b[k], k


def test_report_random_samples_are_fixed_by_the_seed(known):
    one = build_report(known["jpeg"], sample=3, top=0, seed=7).content["samples"]
    two = build_report(known["jpeg"], sample=3, top=0, seed=7).content["samples"]
    assert [s["why"] for s in one] == ["random"] * 3
    assert [s["video_id"] for s in one] == [s["video_id"] for s in two]


def test_report_lists_an_unreadable_video_and_goes_on(known, tmp_path):
    bad = copy_store(known["jpeg"], tmp_path / "bad")
    vid = known["ids"]["real"]
    d = os.path.join(bad, vid)
    for name in os.listdir(d):
        if name.startswith("flow_"):
            with open(os.path.join(d, name), "wb") as f:
                f.write(b"not a jpeg")
    out = tmp_path / "r.html"
    r = run("report", bad, "-o", out, "--sample", 3)
    assert r.exit_code == 0, r.output
    assert "1 unreadable" in r.output
    page = out.read_text()
    assert vid in section(page, "unreadable") and known["ids"]["static"] in page
    # and a store made before the statistics: that video's row itself is unreadable
    strip_motion_stats(bad)
    rows = {row["video_id"]: row for row in flowprep.open_store(bad).video_stats()}
    assert rows[vid]["status"] == "unreadable" and vid in rows[vid]["reason"]
    assert rows[known["ids"]["static"]]["status"] == "published"
    rep = build_report(bad, sample=3)
    assert [u["video_id"] for u in rep.content["unreadable"]] == [vid]


def test_report_of_an_empty_store_and_of_only_failures(known, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(os.path.join(known["jpeg"], "flowprep.json"), empty)
    r = run("report", empty, "-o", tmp_path / "e.html")
    assert r.exit_code == 0, r.output
    assert "No published video in this store." in (tmp_path / "e.html").read_text()
    assert run("inspect", empty, "--videos", "--json").output.strip() == "[]"
    only = tmp_path / "only"
    flowprep.extract([os.path.join(known["inputs"], "Broken")], str(only), jobs=1)
    r = run("report", only, "-o", tmp_path / "f.html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "f.html").read_text()
    assert "No published video in this store; 1 input failed" in page
    assert "v_broken.mp4" in section(page, "failures")


def test_report_not_a_store(tmp_path):
    r = run("report", tmp_path, "-o", tmp_path / "x.html")
    assert r.exit_code == 2 and "not a flowprep store" in r.output


# --- in a real browser ------------------------------------------------------------------

def test_report_in_a_headless_browser(known, tmp_path):
    import browser
    if browser.find_chromium() is None or shutil.which("chromedriver") is None:
        if os.environ.get("FLOWPREP_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium / chromium-driver not installed (FLOWPREP_REQUIRE_BROWSER=1)")
        pytest.skip("chromium / chromium-driver not installed (make .venv/.installed-test "
                    "installs them where apt-get can run)")
    out = str(tmp_path / "report.html")
    assert run("report", known["jpeg"], "-o", out, "--sample", 3).exit_code == 0
    shot = str(tmp_path / "report.png")
    seen = browser.open_page(out, screenshot=shot)
    assert seen["console"] == []
    assert seen["external"] == []
    assert len(seen["images"]) >= 5 + 3 * 2
    assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0
               for i in seen["images"]), seen["images"]
    assert "Near-static videos" in seen["text"] and known["ids"]["static"] in seen["text"]
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(shot) > 10_000


@pytest.mark.parametrize("options", [{"task": "rgb"}, {"task": "flow"}, {"quant": "adaptive"},
                                     {"backward": True, "format": "hdf5"}])
def test_report_of_other_stores(tmp_path, options):
    src = translated_video(str(tmp_path / "t.mkv"), n=4, dx=1.0, dy=0.5)
    out = str(tmp_path / "out")
    flowprep.extract([src], out, algo="farneback", short_side=0, jobs=1, **options)
    rep = build_report(out, sample=2)
    c = rep.content
    assert c["counts"]["published"] == 1 and c["unreadable"] == []
    assert len(c["samples"]) == 1 and c["samples"][0]["sheet"].startswith("data:image/jpeg")
    row = flowprep.open_store(out).video_stats()[0]
    if options.get("task") == "rgb":
        assert row["motion"] is None and "plot" not in c["samples"][0]
    else:
        assert row["motion"] == pytest.approx(math.hypot(1.0, 0.5), abs=0.3)
        assert c["samples"][0]["plot"].startswith("data:image/png")
    if options.get("quant") == "adaptive":
        assert row["clipped_fraction"] == 0 and not any("clip more" in n for n in c["notes"])


def synthetic_rows(n=25):
    from flowprep.report.stats import empty_row
    rows = []
    for i in range(n):
        r = empty_row(f"C{i % 3}/v{i:02d}", "published")
        r.update({"class": f"C{i % 3}", "num_frames": 30 + i, "num_flows": 29 + i, "step": 1,
                  "task": "both", "fps": 25.0, "width": 64, "height": 48,
                  "motion": 1.0 + i, "motion_p95": 2.0 + i,
                  "clipped_fraction": 0.2 if i in (3, 7, 11) else 0.01,
                  "camera_dx": float(i), "camera_dy": 0.0, "camera_motion": float(i),
                  "warnings": 0, "stats": "extraction"})
        rows.append(r)
    return rows


def test_outlier_tables_and_sentence_from_rows():
    from flowprep.report.page import choose_samples, clip_sentence, outlier_tables
    rows = synthetic_rows()
    rows[5].update(motion=0.05)              # near-static
    rows[9].update(num_flows=rows[9]["num_frames"])   # n flows for n frames: the mix-up
    rows[12].update(warnings=2)
    assert clip_sentence(rows, 20.0) == "12 % of videos clip more than 5 % of their flow at ±20 px"
    tables = {t["key"]: t for t in outlier_tables(rows, top=4)}
    assert [r["video_id"] for r in tables["static"]["rows"]] == [rows[5]["video_id"]]
    assert [r["video_id"] for r in tables["mismatch"]["rows"]] == [rows[9]["video_id"]]
    assert "39 flows for 39 frames (step 1: 38 expected)" == tables["mismatch"]["rows"][0]["why"]
    assert [r["video_id"] for r in tables["warnings"]["rows"]] == [rows[12]["video_id"]]
    assert tables["clipped"]["total"] == 25 and len(tables["clipped"]["rows"]) == 4
    assert {r["video_id"] for r in tables["clipped"]["rows"][:3]} == {rows[i]["video_id"]
                                                                     for i in (3, 7, 11)}
    assert tables["camera"]["rows"][0]["video_id"] == rows[24]["video_id"]
    assert tables["shortest"]["rows"][0]["video_id"] == rows[0]["video_id"]
    picks = choose_samples(rows, list(tables.values()), 8, seed=1)
    firsts = [t["rows"][0]["video_id"] for t in tables.values() if t["rows"]]
    assert [p["video_id"] for p in picks[:len(set(firsts))]] == list(dict.fromkeys(firsts))
    assert len({p["video_id"] for p in picks}) == 8
    assert picks == choose_samples(rows, list(tables.values()), 8, seed=1)


def test_verify_checks_the_motion_statistics(known):
    from flowprep.verify import check_meta
    store = flowprep.open_store(known["jpeg"])
    meta = store.meta(known["ids"]["real"])
    assert check_meta(meta, known["ids"]["real"], meta["config_key"]) == []
    meta["motion"] = meta["motion"][:-1]
    problems = check_meta(meta, known["ids"]["real"], meta["config_key"])
    assert problems == [f"motion has {meta['num_flows'] - 1} entries for {meta['num_flows']} flows"]
    del meta["motion"]  # a store made before the statistics: not a problem
    assert check_meta(meta, known["ids"]["real"], meta["config_key"]) == []
