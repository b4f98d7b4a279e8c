"""Browser journeys in headless Chromium, driven by Playwright, over real HTTP."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, LiveServer
from tests.services import require_chromium
from tests.smtp import link_in

pytestmark = pytest.mark.browser

OUTPUT = Path(os.environ.get("LABQUEUE_TEST_OUTPUT", "test-output")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


CSP_REPORT = "CSP violation:"
# Chromium names most violations in the console itself; this reports every one.
CSP_WATCH = (
    "document.addEventListener('securitypolicyviolation', (event) => console.error("
    f"'{CSP_REPORT} ' + event.violatedDirective + ' ' + event.blockedURI));"
)


@pytest.fixture
def live_server(app):
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def page(live_server, request):
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    server = live_server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(base_url=server.url)
        if not request.node.get_closest_marker("tours"):
            # The first-visit tours would cover the page; test_tours checks them.
            context.add_init_script(
                "for (const p of ['dashboard', 'project', 'run'])"
                " localStorage.setItem('labqueue-tour-' + p, 'seen');"
            )
        # Every journey also checks the site's Content-Security-Policy: a page
        # that breaks it (an inline script or style, a foreign source) fails it.
        context.add_init_script(CSP_WATCH)
        page = context.new_page()
        page.set_default_timeout(15_000)
        violations: list[str] = []
        page.on(
            "console",
            lambda message: (
                violations.append(f"{page.url}: {message.text}")
                if "Content Security Policy" in message.text
                or message.text.startswith(CSP_REPORT)
                else None
            ),
        )
        yield page
        context.close()
        browser.close()
        if not request.node.get_closest_marker("blocks_on_purpose"):
            assert violations == [], "\n".join(violations)


def fill_registration(page, first: str, last: str, email: str) -> None:
    page.get_by_label("First name").fill(first)
    page.get_by_label("Last name").fill(last)
    page.get_by_label("Email Address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Retype Password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()


def log_in(page, email: str) -> None:
    if "/login" not in page.url:
        page.goto("/login")
    page.get_by_label("Email Address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()


def test_register_confirm_login_profile(page, smtp):
    from playwright.sync_api import expect

    page.goto("/")
    page.get_by_role("link", name="Register with your institution's email").click()
    fill_registration(page, "Rosalind", "Franklin", "rosalind@kcl.ac.uk")
    expect(page.get_by_role("alert")).to_contain_text(
        "We have sent a confirmation link"
    )
    page.screenshot(path=OUTPUT / "registered.png", full_page=True)

    message = smtp.wait_for("rosalind@kcl.ac.uk", "Confirm your Labqueue account")
    page.goto(link_in(message, "/confirm/"))
    expect(page.get_by_role("alert")).to_contain_text("Thank you")

    log_in(page, "rosalind@kcl.ac.uk")

    # A researcher lands on their projects, then finds their profile.
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    page.locator("#nav-user").click()
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.locator("#nav-user")).to_contain_text("Rosalind Franklin")
    expect(page.locator("#profile-institution")).to_contain_text(
        "King's College London"
    )
    page.screenshot(path=OUTPUT / "profile.png", full_page=True)

    page.get_by_role("button", name="Log out").click()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Log in")).to_be_visible()


def test_refused_address_explains_how_to_get_access(page):
    from playwright.sync_api import expect

    page.goto("/register")
    fill_registration(page, "Eve", "Example", "eve@gmail.com")
    error = page.locator(".invalid-feedback")
    expect(error).to_contain_text("open to academic email addresses only")
    expect(error).to_contain_text("admins@example.org")
    page.screenshot(path=OUTPUT / "refused.png", full_page=True)


def test_project_upload_browse_preview_rename_download_delete(
    page, make_user, tmp_path
):
    import zipfile

    from playwright.sync_api import expect

    make_user(email="ada@cs.ox.ac.uk")
    log_in(page, "ada@cs.ox.ac.uk")

    page.get_by_role("link", name="Projects").click()
    page.get_by_role("link", name="Create your first project").click()
    page.get_by_label("Name").fill("Liver RNA-seq")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Liver RNA-seq")).to_be_visible()

    # A folder from disk, as the folder picker sends it.
    folder = tmp_path / "samples"
    (folder / "lane 1").mkdir(parents=True)
    (folder / "lane 1" / "counts.csv").write_text("gene,count\nBRCA1,12\nTP53,7\n")
    (folder / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    page.set_input_files("#pick-folder", folder)
    expect(page.locator("#upload-panel")).to_be_visible()
    expect(page.locator("#overall-progress")).to_be_visible()
    expect(page.locator("#overall-text")).to_contain_text(
        "Done: 2 of 2", timeout=60_000
    )
    page.screenshot(path=OUTPUT / "uploaded-folder.png", full_page=True)

    archive = tmp_path / "extra tables.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("summary.tsv", "sample\treads\nA\t100\n")
        zf.writestr("__MACOSX/._summary.tsv", "junk")
    page.get_by_label("Extract archives").check()
    page.set_input_files("#pick-files", archive)
    expect(page.locator("#upload-list")).to_contain_text("Extracted 1 files")
    listing = page.locator("#file-table")
    expect(listing).to_contain_text("extra tables")
    expect(listing).to_contain_text("samples")

    page.get_by_role("link", name="samples").click()
    page.get_by_role("link", name="lane 1").click()
    page.get_by_role("link", name="counts.csv").click()
    expect(page.locator("#preview-table")).to_contain_text("BRCA1")
    page.screenshot(path=OUTPUT / "csv-preview.png", full_page=True)

    page.get_by_role("link", name="Liver RNA-seq").click()
    row = page.locator("tr", has_text="extra tables")
    row.get_by_role("button", name="Rename").click()
    row.get_by_label("New name for extra tables").fill("tables")
    row.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("alert")).to_contain_text("renamed to “tables”")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download project (.zip)").click()
    saved = tmp_path / "project.zip"
    download_info.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        names = set(zf.namelist())
        assert "samples/lane 1/counts.csv" in names
        assert "tables/summary.tsv" in names
        assert not any("__MACOSX" in name for name in names)
        assert zf.read("samples/lane 1/counts.csv").startswith(b"gene,count")

    page.get_by_role("link", name="samples").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="big.bin").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("alert")).to_contain_text("“big.bin” deleted")
    expect(page.locator("#file-table")).not_to_contain_text("big.bin")
    page.screenshot(path=OUTPUT / "after-delete.png", full_page=True)


def _throttle(page, bytes_per_second: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def test_cancelled_upload_stores_nothing(page, make_user, make_project, app, tmp_path):
    from playwright.sync_api import expect

    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner, name="Slow link")
    log_in(page, "ada@cs.ox.ac.uk")
    page.goto(f"/projects/{project}")
    # A slow uplink (1 MiB/s) so that the upload is still running when we cancel.
    _throttle(page, 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    page.set_input_files("#pick-files", big)
    expect(page.locator("#upload-list")).to_contain_text("%")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#upload-list")).to_contain_text(
        "Cancelled; nothing was stored"
    )
    expect(page.locator("#overall-text")).to_contain_text("Upload cancelled")
    _throttle(page, -1)
    files = Path(app.config["USER_DATA_DIR"]) / str(owner) / str(project) / "files"
    # The server notices the broken connection and drops the staged bytes.
    deadline = time.monotonic() + 10
    staging = files.parent / ".staging"
    while time.monotonic() < deadline and staging.exists() and any(staging.iterdir()):
        time.sleep(0.2)
    assert list(files.iterdir()) == []
    assert not staging.exists() or list(staging.iterdir()) == []


def test_an_interrupted_web_upload_resumes_where_it_stopped(
    page, make_user, make_project, app, tmp_path
):
    """A reload mid-upload (a closed tab, a crashed browser) loses nothing: the
    same file chosen again goes on from the last byte the server has."""
    import hashlib

    from playwright.sync_api import expect

    from frontend.core.extensions import db
    from frontend.core.models import ResumableUpload

    app.config["WEB_UPLOAD_PIECE_BYTES"] = 1024 * 1024
    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner, name="Long haul")
    log_in(page, "ada@cs.ox.ac.uk")
    page.goto(f"/projects/{project}")
    _throttle(page, 2 * 1024 * 1024)
    source = tmp_path / "reads.bin"
    source.write_bytes(os.urandom(24 * 1024 * 1024))
    page.set_input_files("#pick-files", source)

    def received() -> int:
        with app.app_context():
            return (
                db.session.scalar(db.select(db.func.max(ResumableUpload.offset))) or 0
            )

    deadline = time.monotonic() + 30
    while received() < 4 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert received() >= 4 * 1024 * 1024
    page.reload()  # the upload in flight is cut off
    kept = received()
    assert 0 < kept < source.stat().st_size  # what arrived is kept
    _throttle(page, -1)
    page.set_input_files("#pick-files", source)
    row = page.locator("#upload-list li", has_text="reads.bin")
    expect(row).to_contain_text("resumed at", timeout=30_000)
    expect(row).to_contain_text("✓", timeout=60_000)
    stored = Path(app.config["USER_DATA_DIR"]) / str(owner) / str(project) / "files"
    digest = hashlib.sha256((stored / "reads.bin").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    with app.app_context():  # finished: no upload left open
        assert db.session.scalar(db.select(db.func.count(ResumableUpload.id))) == 0
    expect(page.locator("#listing")).to_contain_text("reads.bin")


@pytest.mark.tours
def test_tours_show_once_and_can_be_replayed(page, make_user):
    from playwright.sync_api import expect

    make_user(email="ada@cs.ox.ac.uk")
    log_in(page, "ada@cs.ox.ac.uk")  # lands on the projects: the tour starts
    popover = page.locator(".driver-popover")
    expect(popover).to_contain_text("Start with a project")
    page.screenshot(path=OUTPUT / "tour.png")
    page.keyboard.press("Escape")
    expect(popover).to_have_count(0)
    page.reload()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    expect(popover).to_have_count(0)  # only on the first visit
    page.get_by_role("button", name="Help").click()
    page.get_by_role("link", name="Replay the tour of this page").click()
    expect(popover).to_contain_text("Start with a project")


@pytest.fixture
def pipeline_worker(app, page, images):
    """A real worker on RabbitMQ running the reference pipelines in Docker, for
    the journeys that run analyses; the app sends its runs to it."""
    from backend.manifest import PIPELINES_DIR
    from frontend.celery_app import celery_init_app
    from tests.services import require_rabbitmq
    from tests.workers import Worker

    app.config.update(
        CELERY_BROKER_URL=require_rabbitmq(),
        CELERY_RESULT_BACKEND="",
        CELERY_QUEUE=f"journey-{os.getpid()}-{time.time_ns()}",
        RUNNER="docker",
        PIPELINES_DIR=str(PIPELINES_DIR),
        SITE_URL=page.context._impl_obj._options.get("baseURL", ""),
    )
    celery_init_app(app)
    shared = (
        "SECRET_KEY",
        "SECURITY_PASSWORD_SALT",
        "SQLALCHEMY_DATABASE_URI",
        "USER_DATA_DIR",
        "FAILED_ANALYSES_DIR",
        "LOG_DIR",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "CELERY_QUEUE",
        "RUNNER",
        "PIPELINES_DIR",
        "SITE_URL",
        "MAIL_SERVER",
        "MAIL_PORT",
    )
    worker = Worker({key: app.config[key] for key in shared})
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        app.extensions["celery"].close()


@pytest.mark.docker
@pytest.mark.rabbitmq
def test_the_whole_journey_of_a_new_user(
    app, page, live_server, smtp, pipeline_worker, tmp_path
):
    """Register, confirm, log in, upload a zip, run the table profiler, watch it,
    read and download the results, run it again with another value."""
    import io
    import random
    import zipfile

    from playwright.sync_api import expect

    # A table large enough for the run to take a few seconds.
    rng = random.Random(7)
    rows = ["sample,group,depth,gc,quality"] + [
        f"s{n},{rng.choice('ABC')},{rng.gauss(30, 8):.3f},"
        f"{rng.uniform(35, 60):.2f},{rng.gauss(34, 3):.2f}"
        for n in range(250_000)
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("coverage.csv", "\n".join(rows) + "\n")
    data_zip = tmp_path / "run42.zip"
    data_zip.write_bytes(buffer.getvalue())

    page.goto("/register")
    fill_registration(page, "Barbara", "McClintock", "barbara@cornell.edu")
    message = smtp.wait_for("barbara@cornell.edu", "Confirm your Labqueue account")
    page.goto(link_in(message, "/confirm/"))
    log_in(page, "barbara@cornell.edu")

    page.get_by_role("link", name="Projects").click()
    page.get_by_role("link", name="Create your first project").click()
    page.get_by_label("Name").fill("Maize coverage")
    page.get_by_role("button", name="Save").click()
    page.get_by_label("Extract archives").check()
    page.set_input_files("#pick-files", data_zip)
    expect(page.locator("#overall-progress")).to_be_visible()
    expect(page.locator("#upload-list")).to_contain_text("Extracted 1 files")

    page.get_by_role("link", name="Run a pipeline").click()
    page.locator(".card", has_text="Table profiler").get_by_role(
        "link", name="Set up a run"
    ).click()
    page.get_by_label("Tables", exact=True).select_option("run42/coverage.csv")
    page.get_by_label("Histogram bins").fill("25")
    page.screenshot(path=OUTPUT / "run-form.png", full_page=True)
    page.get_by_role("button", name="Start the analysis").click()

    # Live: the progress bar moves and log lines arrive without a reload.
    expect(page.locator("#progress")).to_be_visible()
    page.evaluate("window.stillTheSamePage = true")
    expect(page.locator("#log")).to_contain_text("250000 rows", timeout=60_000)
    page.screenshot(path=OUTPUT / "running.png", full_page=True)
    # The results replace the live view when the run ends.
    expect(page.locator("#timeline-started")).to_contain_text("Started")  # running
    featured = page.locator("#featured")
    expect(featured).to_be_visible(timeout=120_000)
    expect(page.locator("#analysis-state")).to_contain_text("Succeeded")
    assert page.evaluate("window.stillTheSamePage") is True  # swapped, not reloaded
    expect(page.get_by_text("is queued. We will email you")).to_have_count(0)
    image = featured.locator("img[alt='run42/coverage.csv_histograms.png']")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 100  # a real picture
    expect(featured.locator("table.result-table")).to_contain_text("depth")
    page.screenshot(path=OUTPUT / "results.png", full_page=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all (.zip)").click()
    saved = tmp_path / "outputs.zip"
    download_info.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
        assert {"summary.csv", "run42/coverage.csv_histograms.png"} <= names
        assert archive.read("summary.csv").startswith(b"table,column")

    page.get_by_role("link", name="Run again").click()
    expect(page.get_by_label("Histogram bins")).to_have_value("25")
    page.get_by_label("Histogram bins").fill("40")
    page.get_by_role("button", name="Start the analysis").click()
    expect(page.locator("#featured")).to_be_visible(timeout=120_000)
    expect(page.locator("#parameters")).to_contain_text("40")
    smtp.wait_for("barbara@cornell.edu", "table-profiler on Maize coverage finished")


@pytest.mark.docker
@pytest.mark.rabbitmq
def test_an_output_added_to_a_project_feeds_a_new_run(
    app, page, make_user, make_project, pipeline_worker
):
    """An output of a finished analysis goes into the project with "Add to
    project", shows where it came from, and a new run reads it."""
    from playwright.sync_api import expect

    from frontend.core.extensions import db
    from frontend.core.layout import analysis_dir
    from frontend.core.models import Analysis
    from tests.conftest import make_analysis

    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada, name="Yeast")
    run = make_analysis(app, project, pipeline="table-profiler", state="succeeded")
    with app.app_context():
        out = analysis_dir(db.session.get(Analysis, run)) / "output"
    out.mkdir(parents=True)
    rows = "\n".join(f"g{n},{n % 7},{n * 0.5}" for n in range(500))
    (out / "counts.csv").write_text("gene,sample,count\n" + rows + "\n")
    (out / "notes.txt").write_text("not this one")

    log_in(page, "ada@cs.ox.ac.uk")
    page.goto(f"/analyses/{run}")
    page.get_by_label("Select counts.csv").check()
    page.get_by_role("button", name="Add the selected outputs").click()
    expect(page.get_by_role("alert").first).to_contain_text("1 output(s) of")
    listed = page.locator("#file-table")
    expect(listed).to_contain_text("counts.csv")
    expect(listed).to_contain_text(f"from #{run}")
    expect(listed).not_to_contain_text("notes.txt")
    listed.get_by_role("link", name="counts.csv").click()
    expect(page.locator("#provenance")).to_contain_text(f"Made by analysis #{run}")

    page.goto(f"/projects/{project}/run/table-profiler")
    page.get_by_label("Tables", exact=True).select_option(
        f"from-analysis-{run}-table-profiler/counts.csv"
    )
    page.get_by_role("button", name="Start the analysis").click()
    expect(page.locator("#featured")).to_be_visible(timeout=120_000)
    expect(page.locator("#analysis-state")).to_contain_text("Succeeded")
    expect(page.locator("#featured")).to_contain_text("count")
    page.screenshot(path=OUTPUT / "run-on-an-added-output.png", full_page=True)


@pytest.mark.docker
@pytest.mark.rabbitmq
def test_a_batch_over_ten_files_is_followed_live(
    app, page, make_user, make_project, pipeline_worker, tmp_path
):
    """One analysis per matching file: the batch page follows all ten without a
    reload, and gives their outputs as one zip."""
    import zipfile

    from playwright.sync_api import expect

    from tests.conftest import Auth, upload

    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada, name="Plates")
    client = app.test_client()
    Auth(client).login("ada@cs.ox.ac.uk")
    for plate in range(10):
        rows = "\n".join(f"w{n},{(n * plate) % 13},{n / 3:.2f}" for n in range(300))
        upload(
            client, project, f"plates/plate{plate}.csv", f"well,od,t\n{rows}\n".encode()
        )
    upload(client, project, "plates/layout.txt", b"not a table")

    log_in(page, "ada@cs.ox.ac.uk")
    page.goto(f"/projects/{project}/run/table-profiler")
    page.get_by_label("One analysis per file matching a pattern").check()
    page.get_by_role("textbox", name="Pattern").fill("plates/*.csv")
    page.get_by_role("button", name="Start the analysis").click()
    expect(page.locator("#batch-analyses tbody tr")).to_have_count(10)
    page.evaluate("window.stillTheSamePage = true")
    expect(page.locator('[data-count="succeeded"]')).to_have_text(
        "10 succeeded", timeout=240_000
    )
    assert page.evaluate("window.stillTheSamePage") is True  # live, not reloaded
    expect(page.locator("#batch-analyses")).not_to_contain_text("Queued")
    expect(page.locator("#batch-cancel")).to_be_disabled()
    page.screenshot(path=OUTPUT / "batch.png", full_page=True)
    with page.expect_download() as download_info:
        page.locator("#batch-zip").click()
    saved = tmp_path / "batch.zip"
    download_info.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        folders = {name.split("/", 1)[0] for name in archive.namelist()}
    assert len(folders) == 10 and all(f.endswith(".csv") for f in folders)


def test_a_file_picker_says_how_to_pick_several_and_selects_all(
    app, page, make_user, make_project
):
    from playwright.sync_api import expect

    from tests.conftest import Auth, upload

    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada, name="Tables")
    client = app.test_client()
    Auth(client).login("ada@cs.ox.ac.uk")
    for name in ("a.csv", "b.csv", "c.csv"):
        upload(client, project, name, b"x,y\n1,2\n")
    log_in(page, "ada@cs.ox.ac.uk")
    page.goto(f"/projects/{project}/run/table-profiler")
    expect(page.get_by_text("Hold Ctrl (⌘ on a Mac) to pick several")).to_be_visible()
    picker = page.get_by_label("Tables", exact=True)
    page.get_by_label("Select all 3").check()
    assert picker.evaluate("select => select.selectedOptions.length") == 3
    picker.select_option(["a.csv", "c.csv"])
    everything = page.get_by_label("Select all 3")
    assert everything.evaluate("box => box.indeterminate") is True
    everything.check()  # from "some" to all
    assert picker.evaluate("select => select.selectedOptions.length") == 3
    everything.uncheck()
    assert picker.evaluate("select => select.selectedOptions.length") == 0


@pytest.mark.blocks_on_purpose
def test_svg_and_html_outputs_cannot_run_script(app, page, make_user, make_project):
    """Featured SVG and HTML outputs are shown, but their scripts never run: not in
    the analysis page, and not when the file is opened on its own."""
    from playwright.sync_api import expect

    from frontend.core.extensions import db
    from frontend.core.layout import analysis_dir
    from frontend.core.models import Analysis, AnalysisState, utcnow

    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner)
    with app.app_context():
        analysis = Analysis(
            owner_id=owner,
            project_id=project,
            pipeline="seq-qc",
            pipeline_version="1.0.0",
            image="x",
            params={},
            state=AnalysisState.SUCCEEDED,
            finished_at=utcnow(),
            started_at=utcnow(),
        )
        db.session.add(analysis)
        db.session.commit()
        out = analysis_dir(analysis) / "output"
        analysis_id = analysis.id
    out.mkdir(parents=True)
    # seq-qc features *_gc.png and qc_summary.csv; these two are in the list below.
    (out / "evil.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        "<script>parent.document.title='pwned-svg';document.title='pwned-svg'</script>"
        '<rect width="10" height="10"/></svg>'
    )
    (out / "report.html").write_text(
        "<h1>Report</h1><script>parent.document.title='pwned-html';"
        "document.title='pwned-html'</script>"
    )
    log_in(page, "ada@cs.ox.ac.uk")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for name in ("evil.svg", "report.html"):
        page.goto(f"/analyses/{analysis_id}/outputs/{name}?inline=1")
        page.wait_for_timeout(300)
        assert "pwned" not in page.title()
    page.goto(f"/analyses/{analysis_id}")
    expect(page.get_by_role("link", name="evil.svg")).to_be_visible()
    assert "pwned" not in page.title() and dialogs == []


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()


def test_a_pi_shares_with_her_lab_and_a_link_shows_a_result_to_anyone(
    app, page, make_user, make_project
):
    """Ada makes a group, invites Rita, shares a project with the group read-only
    and an analysis by link; Rita accepts and sees the project but cannot upload;
    the link opens the result while signed out."""
    from playwright.sync_api import expect

    from frontend.core.extensions import db
    from frontend.core.layout import analysis_dir
    from frontend.core.models import Analysis
    from tests.conftest import make_analysis

    ada = make_user(email="ada@cs.ox.ac.uk")
    make_user(email="rita@cs.ox.ac.uk", first_name="Rita")
    project = make_project(ada, name="Mouse RNA-seq")
    run = make_analysis(app, project, pipeline="table-profiler", state="succeeded")
    with app.app_context():
        out = analysis_dir(db.session.get(Analysis, run)) / "output"
    out.mkdir(parents=True)
    (out / "summary.csv").write_text("column,mean\nexpression,4.2\n")

    log_in(page, "ada@cs.ox.ac.uk")
    page.locator("#nav-sharing").click()
    page.get_by_role("link", name="Groups").click()
    page.get_by_label("Name").fill("Ada's lab")
    page.get_by_role("button", name="Create the group").click()
    page.get_by_label("Email address").fill("rita@cs.ox.ac.uk")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator("#members")).to_contain_text("rita@cs.ox.ac.uk")
    page.goto(f"/projects/{project}")
    page.get_by_role("link", name="Sharing").click()
    page.get_by_label("With a group").select_option(label="Ada's lab")
    page.get_by_label("Read-only").check()
    page.get_by_role("button", name="Share", exact=True).click()
    expect(page.locator("#shares")).to_contain_text("Ada's lab")
    page.goto(f"/analyses/{run}")
    page.get_by_label("The link works for").select_option(label="7 days")
    page.get_by_role("button", name="Make a link").click()
    address = page.locator("#link-address").input_value()
    log_out(page)

    log_in(page, "rita@cs.ox.ac.uk")
    page.locator("#nav-sharing").click()
    page.get_by_role("link", name="Shared with me").click()
    page.locator("#invitations").get_by_role("button", name="Accept").click()
    expect(page.locator("#group-projects")).to_contain_text("Mouse RNA-seq")
    page.get_by_role("link", name="Mouse RNA-seq").click()
    expect(page.locator("#shared-access")).to_contain_text("read-only")
    expect(page.locator("#uploader")).to_have_count(0)
    expect(page.get_by_role("link", name="Run a pipeline")).to_have_count(0)
    page.screenshot(path=OUTPUT / "shared-read-only.png", full_page=True)
    log_out(page)

    page.goto(address)
    expect(page.locator("#shared-by-link")).to_contain_text("Ada Lovelace shares")
    expect(page.locator("#featured")).to_contain_text("expression")
    expect(page.get_by_role("link", name="summary.csv").first).to_be_visible()
    page.screenshot(path=OUTPUT / "shared-by-link.png", full_page=True)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/projects/",
        "/projects/{project}",
        "/analyses/",
        "/analyses/history",
        "/account/profile",
        "/groups/",
        "/shared/",
        "/sharing/",
        "/projects/{project}/sharing",
    ],
)
def test_pages_fit_a_phone_screen(page, make_user, make_project, path):
    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner, name="A project with a rather long name indeed")
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, "ada@cs.ox.ac.uk")
    page.goto(path.format(project=project))
    overflow = page.evaluate(
        "document.scrollingElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0, f"{path} is {overflow}px wider than the screen"
    unlabelled = page.evaluate(
        """Array.from(document.querySelectorAll('input, select, textarea'))
             .filter(e => !['hidden', 'submit', 'button'].includes(e.type)
                          && !e.hidden && !e.labels.length
                          && !e.getAttribute('aria-label'))
             .map(e => e.name || e.id)"""
    )
    assert unlabelled == [], f"fields without a label on {path}: {unlabelled}"


def test_admin_pages_keep_their_policy_and_their_actions_work(
    app, page, make_user, make_project
):
    """Flask-Admin's pages run under their own narrow policy: its inline handlers
    (the actions menu and its confirmation) work, and nothing breaks the policy."""
    from frontend.core.extensions import db
    from frontend.core.models import User

    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    waiting = make_user(email="new@cs.ox.ac.uk", confirmed=False)
    make_project(waiting)
    log_in(page, "root@cs.ox.ac.uk")
    for url in (
        "/admin/",
        "/admin/admin_projects/",
        "/admin/admin_analyses/",
        "/admin/admin_mail/",
        "/admin/admin_roles/",
        "/admin/admin_domains/",
        "/admin/admin_domains/new/",
        f"/admin/admin_users/edit/?id={waiting}",
    ):
        response = page.goto(url)
        assert response.status == 200, url
    page.goto("/admin/admin_users/")
    questions = []
    page.on(
        "dialog", lambda dialog: (questions.append(dialog.message), dialog.accept())
    )
    page.locator(f"input.action-checkbox[value='{waiting}']").check()
    page.get_by_role("button", name="With selected").click()
    page.get_by_role("link", name="Confirm email").click()
    page.wait_for_load_state()
    assert questions == ["Mark the selected accounts as confirmed?"]
    with app.app_context():
        assert db.session.get(User, waiting).confirmed_at is not None


def test_two_factor_enrolment_and_login(page, make_user):
    """Turn two-factor login on from the profile, scan (here: read) the key, then
    log in again with password and code; no page breaks the site's CSP."""
    from playwright.sync_api import expect

    from tests.test_two_factor import code_for

    make_user(email="ada@cs.ox.ac.uk")
    log_in(page, "ada@cs.ox.ac.uk")
    page.locator("#nav-user").click()
    page.get_by_role("link", name="Two-factor login: off").click()
    page.get_by_label("Set up an authenticator app").check()
    page.get_by_role("button", name="Submit").click()
    qr = page.locator("#qrcode")
    expect(qr).to_be_visible()
    assert qr.evaluate("image => image.naturalWidth") > 0  # the QR code drew
    key = page.locator("#tf-key").inner_text().strip()
    page.get_by_label("Authentication Code").fill(code_for(key))
    page.get_by_role("button", name="Submit Code").click()
    expect(page.get_by_role("link", name="Two-factor login: on")).to_be_visible()
    page.screenshot(path=OUTPUT / "two-factor-on.png", full_page=True)

    page.get_by_role("button", name="Log out").click()
    log_in(page, "ada@cs.ox.ac.uk")
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    page.get_by_label("Authentication Code").fill("123456")
    page.get_by_role("button", name="Submit Code").click()
    expect(page.get_by_text("Invalid code")).to_be_visible()
    page.get_by_label("Authentication Code").fill(code_for(key, offset=1))
    page.get_by_role("button", name="Submit Code").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()


def test_a_token_made_on_the_profile_works_and_the_api_reference_shows(page, make_user):
    from playwright.sync_api import expect

    make_user(email="ada@cs.ox.ac.uk")
    log_in(page, "ada@cs.ox.ac.uk")
    page.goto("/account/profile")
    tokens = page.locator("#api-tokens")
    tokens.get_by_label("Name").fill("notebook")
    tokens.get_by_label("Read-only").check()
    tokens.get_by_role("button", name="Make token").click()
    expect(page.get_by_role("heading", name="Your new API token")).to_be_visible()
    secret = page.locator("#token-secret").input_value()
    assert secret.startswith("lq_")
    page.get_by_role("link", name="Done").click()
    expect(page.locator("#token-list")).to_contain_text("notebook")
    expect(page.locator("#token-list")).to_contain_text("read-only")
    assert secret not in page.content()

    answer = page.request.get(
        "/api/v1/projects", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status == 200 and answer.json() == []

    page.goto("/account/profile")
    page.get_by_role("link", name="API reference").click()
    expect(
        page.get_by_text("/api/v1/projects/{project_id}/files").first
    ).to_be_visible()
    page.screenshot(path=OUTPUT / "api-reference.png", full_page=True)

    page.goto("/account/profile")
    page.locator("#token-list").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("alert")).to_contain_text("was revoked")
    refused = page.request.get(
        "/api/v1/projects", headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status == 401
