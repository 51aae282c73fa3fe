"""Blinded visual quality rating: reports, blinding, the ratings file, the rating server and the analysis.

Reports are drawn once per module from tiny synthetic heads (a nondefaced and a defaced variant
of two subjects); the analysis test writes its key and ratings directly.
"""

import hashlib
import json
import socket
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from defacebench.quality import ratings as rating_stats
from defacebench.rating import analysis, blinding, simulated, store, visual
from defacebench.rating.blinding import ImageVariant, build_reports, rater_order, read_manifest
from defacebench.rating.server import MAX_BODY_BYTES, create_app
from defacebench.rating.visual import PNG_CRITICAL_CHUNKS, png_chunk_types

SUBJECTS = ("Alpha7", "Bravo9")
METHOD = "cutface"


def _head(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 24 x 28 x 22 ellipsoid head with noise, a brighter 'brain' inside, and its brain mask."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (24, 28, 22)), indexing="ij")
    radius = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.8) ** 2
    brain = radius < 0.45
    data = np.where(radius < 1, 300.0, 0.0) + np.where(brain, 500.0, 0.0) + rng.normal(10, 5, x.shape)
    return np.clip(data, 0, None).astype(np.float32), brain


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("rating")
    variants = []
    for number, subject in enumerate(SUBJECTS):
        data, brain = _head(number)
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        full = root / "inputs" / f"sub-{subject}_T1w.nii.gz"
        full.parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), full)
        defaced = data.copy()
        defaced[:, 22:, :9] = 0  # anterior-inferior block: where a face would be
        cut = root / "inputs" / f"sub-{subject}_{METHOD}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(defaced, affine), cut)
        mask = root / "inputs" / f"sub-{subject}_brainmask.nii.gz"
        nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), mask)
        variants += [
            ImageVariant(subject, "none", full, mask, full, "synthetic"),
            ImageVariant(subject, METHOD, cut, mask, full, "synthetic"),
        ]
    reports, key = root / "reports", root / "private" / "key.tsv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(visual, "PANEL_PX", 48)  # small panels: the test's time goes to resampling and PNG coding
        build_reports(variants, reports, key, study_seed=5, repeats=1)
    return {"root": root, "reports": reports, "key": key, "variants": variants}


def _names(built) -> list[str]:
    return [*SUBJECTS, METHOD, "none", "defaced", "synthetic", "sub-"]


def test_reports_and_manifest_give_nothing_away(built):
    reports = built["reports"]
    files = sorted(p.name for p in reports.iterdir())
    manifest = read_manifest(reports)
    assert len(manifest["reports"]) == 4
    expected = {f"{r['id']}_{view}.png" for r in manifest["reports"] for view in r["views"]} | {"manifest.json"}
    assert set(files) == expected
    manifest_text = (reports / "manifest.json").read_text()
    for name in _names(built):
        assert all(name.lower() not in f.lower() for f in files), name
        assert name.lower() not in manifest_text.lower(), name
    for png in reports.glob("*.png"):
        data = png.read_bytes()
        assert set(png_chunk_types(data)) <= set(PNG_CRITICAL_CHUNKS), png.name  # no text/time/software chunks
        for name in _names(built):
            assert name.encode() not in data
    assert not blinding._inside(built["key"], reports)
    key = blinding.read_key(built["key"])
    assert {row["randomized_id"] for row in key} == {r["id"] for r in manifest["reports"]}
    # one subject's variants show the same slices: the layout comes from the nondefaced image
    assert {row["variant"] for row in key} == {"none", METHOD}


def test_key_inside_reports_folder_is_refused(built, tmp_path):
    with pytest.raises(blinding.BlindingError, match="inside the reports folder"):
        build_reports(built["variants"][:1], tmp_path / "reports", tmp_path / "reports" / "key.tsv", 1)


def test_order_differs_between_raters_and_is_stable_for_one():
    ids = blinding.new_report_ids(30)
    first = rater_order(ids, "rater_a", 11)
    assert first == rater_order(ids, "rater_a", 11)
    assert first != rater_order(ids, "rater_b", 11)
    assert first != rater_order(ids, "rater_a", 12)
    assert sorted(first) == sorted(ids)
    repeated = rater_order(ids, "rater_a", 11, repeats=4)
    assert len(repeated) == 34
    for report_id in {r for r in repeated if repeated.count(r) == 2}:
        first_at = repeated.index(report_id)
        assert repeated.index(report_id, first_at + 1) >= 15  # shown again in the second half


@pytest.fixture
def client(built, tmp_path):
    app = create_app(built["reports"], tmp_path / "ratings.tsv", "rater_a")
    app.config["ratings_path"] = tmp_path / "ratings.tsv"
    return app.test_client()


def _rating(state, rating=3.2, **extra):
    return {
        "report_id": state["report_id"],
        "position": state["position"],
        "rating": rating,
        "artifacts": ["inu", "noise-global"],
        "confidence": 3.5,
        "comments": "a\tcomment\nover lines",
        "time_sec": 12.5,
        **extra,
    }


def test_server_serves_only_blinded_images_and_never_the_key(built, client):
    page = client.get("/").get_data(as_text=True)
    state = client.get("/api/next").get_json()
    assert state["position"] == 0 and state["total"] == 5  # 4 reports, one shown twice
    for name in _names(built):
        assert name not in json.dumps(state), name  # identifiers, URLs and captions
        assert name not in page or name == "none", name  # the page's style sheet says 'flex: none'
    for view in state["views"]:
        response = client.get(view["url"])
        assert response.status_code == 200 and response.mimetype == "image/png"
        assert "Last-Modified" not in response.headers and "ETag" not in response.headers
    key_text = built["key"].read_text()
    report_id = state["report_id"]
    attempts = [
        "/key.tsv",
        "/private/key.tsv",
        "/static/key.tsv",
        "/manifest.json",
        "/reports/manifest.json",
        "/image/../private/key.tsv",
        f"/image/{report_id}/../../private/key.tsv",
        f"/image/{report_id}/%2e%2e%2f%2e%2e%2fprivate%2fkey.tsv",
        "/image/..%2fprivate/key.tsv",
        f"/image/{report_id}/manifest",
        "/image/manifest/json",
        f"/image/{report_id}/axial.png",
        "/image/000000000000/axial",
    ]
    for url in attempts:
        response = client.get(url)
        assert 400 <= response.status_code < 500, url
        assert key_text.split("\n")[1][:12] not in response.get_data(as_text=True), url


def test_a_rating_lands_in_the_tsv_and_the_analysis_reads_it(built, client):
    state = client.get("/api/next").get_json()
    response = client.post("/api/ratings", json=_rating(state))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["position"] == 1
    path = client.application.config["ratings_path"]
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    assert tuple(table.columns[: len(store.S1_COLUMNS)]) == store.S1_COLUMNS
    row = table.iloc[0]
    assert row["randomized_id"] == state["report_id"] and row["rater_id"] == "rater_a"
    assert float(row["rating"]) == 3.2 and float(row["time_sec"]) == 12.5 and float(row["confidence"]) == 3.5
    assert json.loads(row["artifacts"]) == ["noise-global", "inu"] and row["comments"] == "a comment over lines"
    assert row["subject"] == "" and row["defaced"] == ""  # the server does not know them
    # un-blinded, the published loader reads it unchanged
    unblinded = pd.DataFrame(analysis.unblind(path, built["key"])).astype(str)
    typed = rating_stats.validate_ratings(
        pd.concat([unblinded, unblinded.assign(defaced=str(1 - int(unblinded["defaced"][0])))], ignore_index=True),
        str(path),
    )
    assert typed["subject"][0] in SUBJECTS
    # a resubmission of the same place is refused, and a new server resumes after it
    assert client.post("/api/ratings", json=_rating(state)).status_code == 409
    again = create_app(built["reports"], path, "rater_a").test_client().get("/api/next").get_json()
    assert again["position"] == 1 and again["rated"] == 1
    assert len(pd.read_csv(path, sep="\t", dtype=str)) == 1


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"rating": 4.5}, 400, "rating: 4.5 is outside 1-4"),
        ({"rating": 0.99}, 400, "rating: 0.99 is outside 1-4"),
        ({"rating": "3"}, 400, "rating: '3' is not a number"),
        ({"rating": None}, 400, "is not a number"),
        ({"confidence": 7}, 400, "confidence: 7 is outside 0-4"),
        ({"artifacts": ["alien"]}, 400, "unknown key(s) alien"),
        ({"report_id": "../../key"}, 400, "not a report identifier"),
        ({"report_id": "0123456789ab"}, 400, "is not the report at position 1"),
        ({"position": 3}, 400, "is not the report at position 4"),
        ({"extra": 1}, 400, "unknown field(s) extra"),
    ],
)
def test_server_rejects_bad_ratings_and_stores_nothing(client, change, status, message):
    state = client.get("/api/next").get_json()
    response = client.post("/api/ratings", json=_rating(state, **change))
    assert response.status_code == status
    assert message in response.get_json()["error"] and "nothing stored" in response.get_json()["error"]
    assert not client.application.config["ratings_path"].exists()


def test_server_rejects_bad_bodies(client):
    bad_json = client.post("/api/ratings", data="{rating: 3", content_type="application/json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.get_json()["error"]
    assert client.post("/api/ratings", data="rating=3").status_code == 415
    huge = client.post("/api/ratings", data="x" * (MAX_BODY_BYTES + 1), content_type="application/json")
    assert huge.status_code == 413
    other_site = client.post("/api/ratings", json={}, headers={"Origin": "http://evil.example"})
    assert other_site.status_code == 403
    rebound = client.get("/api/next", headers={"Host": "evil.example:8765"})  # DNS rebinding
    assert rebound.status_code == 403 and "127.0.0.1 or localhost only" in rebound.get_json()["error"]
    assert not client.application.config["ratings_path"].exists()


def test_remote_server_needs_its_token(built, tmp_path):
    client = create_app(built["reports"], tmp_path / "r.tsv", "rater_a", token="s3cret").test_client()
    assert client.get("/api/next").status_code == 403
    assert client.get("/?token=wrong").status_code == 403
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get("/api/next").status_code == 200  # the cookie set by the first visit


def test_analysis_recovers_a_set_rating_bias_per_method(tmp_path):
    """Two raters, 8 subjects, two methods: one lowers ratings by 0.5, the other not at all."""
    rng = np.random.default_rng(3)
    key, ids = simulated.synthetic_study(tmp_path, 8, ["strong", "neutral"])
    ratings = store.RatingsStore(tmp_path / "ratings.tsv")
    quality = rng.uniform(2, 3.5, 8)
    for rater, offset in (("r1", 0.0), ("r2", 0.2)):
        sequence = rater_order(list(ids.values()), rater, 1)
        lookup = {v: k for k, v in ids.items()}
        for position, report_id in enumerate(sequence):
            subject, variant = lookup[report_id]
            value = quality[subject] + offset - (0.5 if variant == "strong" else 0.0) + rng.normal(0, 0.05)
            ratings.append(
                randomized_id=report_id,
                rater_id=rater,
                rating=float(np.clip(value, 1, 4)),
                time_sec=20.0,
                artifacts=[],
                confidence=3.0,
                comments="",
                position=position,
            )
    paths = analysis.analyse(ratings.path, key, tmp_path / "out", n_boot=200)
    lmm = pd.read_csv(paths["lmm"], sep="\t")
    effects = analysis.defacing_effects(lmm).set_index("method")
    assert effects.loc["strong", "estimate"] == pytest.approx(-0.5, abs=0.05) and effects.loc["strong", "p"] < 1e-6
    assert abs(effects.loc["neutral", "estimate"]) < 0.05
    assert set(effects["n_ratings"]) == {32}
    agreement = pd.read_csv(paths["agreement"], sep="\t")
    pooled = agreement[(agreement["rater"] == "pooled")].set_index("method")
    assert pooled.loc["strong", "bias"] == pytest.approx(0.5, abs=0.05)  # nondefaced minus defaced
    assert len(rating_stats.load_ratings(paths["unblinded"])) == 48


def test_unknown_identifier_in_ratings_is_named(tmp_path, built):
    ratings = store.RatingsStore(tmp_path / "ratings.tsv")
    ratings.append(
        randomized_id="abcdefabcdef",
        rater_id="r1",
        rating=2.0,
        time_sec=1.0,
        artifacts=[],
        confidence=3.0,
        comments="",
        position=0,
    )
    with pytest.raises(analysis.RatingsAnalysisError, match="line 2, column 'randomized_id'.*not in the key"):
        analysis.unblind(ratings.path, built["key"])
    known = blinding.read_key(built["key"])[0]["randomized_id"]
    ratings.path.write_text(ratings.path.read_text().replace("abcdefabcdef", known).replace("\t2\t", "\t5\t", 1))
    with pytest.raises(analysis.RatingsAnalysisError, match="line 2, column 'rating': '5' is not a number from 1 to 4"):
        analysis.unblind(ratings.path, built["key"])


# --------------------------------------------------------------------------- browser


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    import shutil

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.os.path.exists(driver_path):
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    try:
        return webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # a browser that cannot start here (no display libraries, sandbox)
        pytest.skip(f"Chromium could not start: {exc}")


def test_browser_rates_with_mouse_and_keyboard(built, tmp_path):
    """Three reports rated with the mouse and the keyboard; a reload resumes at the fourth."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    from werkzeug.serving import make_server

    browser = _browser()
    ratings_path = tmp_path / "ratings.tsv"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server("127.0.0.1", port, create_app(built["reports"], ratings_path, "rater_b"), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait = WebDriverWait(browser, 10)
        browser.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda b: b.find_element(By.ID, "progress").text == "1 of 5")
        submit = browser.find_element(By.ID, "submit")
        assert not submit.is_enabled()  # nothing stored until the rater has set a rating
        slider = browser.find_element(By.ID, "rating")
        ActionChains(browser).click_and_hold(slider).move_by_offset(60, 0).release().perform()  # mouse
        moved = float(slider.get_attribute("value"))
        assert moved > 2.5
        browser.find_element(By.CSS_SELECTOR, "input[value=inu]").click()
        submit.click()
        wait.until(lambda b: b.find_element(By.ID, "progress").text == "2 of 5")
        browser.find_element(By.TAG_NAME, "body").send_keys("2", Keys.ARROW_RIGHT, Keys.ENTER)  # keyboard
        wait.until(lambda b: b.find_element(By.ID, "progress").text == "3 of 5")
        browser.find_element(By.TAG_NAME, "body").send_keys("4")
        browser.find_element(By.ID, "submit").click()
        wait.until(lambda b: b.find_element(By.ID, "progress").text == "4 of 5")
        browser.refresh()  # resumes where the rater stopped
        wait.until(lambda b: b.find_element(By.ID, "progress").text == "4 of 5")
        browser.save_screenshot(str(tmp_path / "rating_page.png"))
    finally:
        browser.quit()
        server.shutdown()
    table = pd.read_csv(ratings_path, sep="\t", dtype=str, keep_default_na=False)
    assert list(table["position"]) == ["0", "1", "2"] and set(table["rater_id"]) == {"rater_b"}
    assert float(table["rating"][0]) == pytest.approx(moved) and json.loads(table["artifacts"][0]) == ["inu"]
    assert float(table["rating"][1]) == pytest.approx(2.05) and float(table["rating"][2]) == 4.0
    assert float(table["time_sec"][0]) > 0


def test_simulated_raters_through_the_api_recover_a_set_bias_and_no_bias(tmp_path):
    """A validation of the analysis: +0.10 set for one method is found (CI covers it), none for the other.

    One draw (seeded): a 95 % CI covers the truth in 95 % of draws, so another seed can fail
    by chance; docs/rating.md reports the coverage over many draws.
    """

    # fixed ids (the study's are random): the same ids give the same order, so the seeded draw is one draw
    key, _ = simulated.synthetic_study(
        tmp_path,
        16,
        ["biased", "neutral"],
        study_seed=4,
        report_id=lambda subject, variant: hashlib.sha256(f"{subject}-{variant}".encode()).hexdigest()[:12],
    )
    bias = {"biased": 0.10}
    stored = simulated.simulate_ratings(
        tmp_path / "reports", key, tmp_path / "ratings.tsv", ["r1", "r2", "r3", "r4"], bias, seed=3
    )
    assert stored == 192
    found = simulated.bias_recovered(tmp_path / "ratings.tsv", key, bias)
    assert found["biased"]["covered"] and found["biased"]["p"] < 0.05, found["biased"]
    assert found["neutral"]["covered"] and found["neutral"]["p"] > 0.05, found["neutral"]


def test_two_raters_at_once_lose_and_duplicate_nothing(tmp_path):
    """Two servers (one per rater) append to one ratings file at the same time, 200 ratings each."""
    from defacebench import io

    reports = [{"id": report_id, "views": ["axial"]} for report_id in blinding.new_report_ids(200)]
    io.write_json(
        {"format": 1, "study_seed": 1, "repeats": 0, "reports": reports}, tmp_path / "reports" / "manifest.json"
    )
    path = tmp_path / "ratings.tsv"
    errors = []

    def rate_all(rater: str):
        client = create_app(tmp_path / "reports", path, rater).test_client()
        state = client.get("/api/next").get_json()
        while not state["done"]:
            response = client.post(
                "/api/ratings",
                json={"report_id": state["report_id"], "position": state["position"], "rating": 2.5, "time_sec": 1.0},
            )
            if response.status_code != 200:
                errors.append(response.get_json())
                return
            state = response.get_json()

    threads = [threading.Thread(target=rate_all, args=(rater,)) for rater in ("r1", "r2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    table = pd.read_csv(path, sep="\t", dtype=str)
    assert len(table) == 400 and not table.duplicated(["rater_id", "position"]).any()
    for rater, group in table.groupby("rater_id"):
        assert sorted(group["position"].astype(int)) == list(range(200))
        assert set(group["randomized_id"]) == {r["id"] for r in reports}


def _serve_forever(reports, ratings_path, rater, port):
    from werkzeug.serving import make_server

    make_server("127.0.0.1", port, create_app(reports, ratings_path, rater)).serve_forever()


def test_a_saved_rating_survives_the_server_being_killed(built, tmp_path):
    """The server process is killed (SIGKILL) right after answering a save: the rating is on disk.

    The server runs in a forked process (the test's imports already made: no second start-up).
    """
    import multiprocessing
    import os
    import signal
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ratings_path = tmp_path / "ratings.tsv"
    server = multiprocessing.get_context("fork").Process(
        target=_serve_forever, args=(built["reports"], ratings_path, "rater_k", port), daemon=True
    )
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                state = json.load(urllib.request.urlopen(f"{base}/api/next", timeout=5))
                break
            except OSError:
                if time.monotonic() > deadline or not server.is_alive():
                    raise
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{base}/api/ratings",
            data=json.dumps(_rating(state)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        assert urllib.request.urlopen(request, timeout=10).status == 200
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.join()
    assert server.exitcode == -signal.SIGKILL
    table = pd.read_csv(ratings_path, sep="\t", dtype=str)
    assert len(table) == 1 and table["randomized_id"][0] == state["report_id"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written file left


def test_bad_inputs_are_named_by_file_and_field(tmp_path):
    import yaml
    from jsonschema import Draft202012Validator

    from defacebench.rating.cli import read_variants

    variants = tmp_path / "variants.tsv"
    variants.write_text("subject\tvariant\timage\nIXI1\tnone\tmissing.nii.gz\n")
    with pytest.raises(
        blinding.BlindingError, match=r"variants.tsv: line 2, column 'image': .*missing.nii.gz does not exist"
    ):
        read_variants(variants)
    variants.write_text("subject\timage\nIXI1\tx\n")
    with pytest.raises(blinding.BlindingError, match=r"variants.tsv: line 1 \(header\): missing column\(s\) variant"):
        read_variants(variants)
    key = tmp_path / "key.tsv"
    blinding.write_key(
        [
            {
                "randomized_id": "abcdefabcdef",
                "subject": "s",
                "variant": "none",
                "defaced": 1,
                "method": "",
                "dataset": "",
                "image": "-",
            }
        ],
        key,
    )
    with pytest.raises(
        blinding.BlindingError, match=r"key.tsv: line 2, column 'defaced': '1' does not match variant 'none'"
    ):
        blinding.read_key(key)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "manifest.json").write_text(
        '{"study_seed": 1, "reports": [{"id": "../key", "views": ["axial"]}]}'
    )
    with pytest.raises(
        blinding.BlindingError, match=r"manifest.json: reports\[0\].id '../key' is not a report identifier"
    ):
        read_manifest(tmp_path / "reports")
    # the configuration block: off by default, its keys checked
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    rating = schema["properties"]["rating"]
    assert not list(Draft202012Validator(rating).iter_errors({"reports": True, "seed": 3, "repeats": 2}))
    assert list(Draft202012Validator(rating).iter_errors({"reports": "yes"}))
    assert list(Draft202012Validator(rating).iter_errors({"report": True}))
