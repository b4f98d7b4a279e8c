"""The app shell: configuration, error pages, logging, CLI and migrations."""

import logging
from pathlib import Path

import flask_migrate
import pytest

from frontend import create_app
from frontend.core import outbox
from frontend.core.extensions import db
from frontend.logs import remove_handlers
from tests.conftest import Auth, base_config

ROOT = Path(__file__).resolve().parent.parent


def test_environment_beats_config_file_beats_defaults(tmp_path, smtp, monkeypatch):
    config_file = tmp_path / "config.py"
    config_file.write_text('APP_NAME = "From file"\nMAIL_TIMEOUT = 7\n')
    monkeypatch.setenv("LABQUEUE_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("LABQUEUE_APP_NAME", "Lab of Env")
    monkeypatch.setenv("LABQUEUE_ACADEMIC_EMAIL_ONLY", "false")
    app = create_app(base_config(tmp_path, smtp))
    assert app.config["APP_NAME"] == "Lab of Env"
    assert app.config["MAIL_TIMEOUT"] == 7
    assert app.config["ACADEMIC_EMAIL_ONLY"] is False
    assert "<title>\n      Home\n      · Lab of Env" in app.test_client().get("/").text


def test_without_mail_server_mail_is_written_to_files(tmp_path, smtp, caplog):
    config = base_config(tmp_path, smtp)
    del config["MAIL_SERVER"], config["MAIL_PORT"]
    app = create_app(config)
    with app.app_context():
        flask_migrate.upgrade()
    client = app.test_client()
    from tests.test_accounts import register

    with caplog.at_level(logging.WARNING, logger="frontend.core.mail"):
        register(client, "file.mail@cs.ox.ac.uk")
    # The request only queued the mail; sending it (a worker's work) writes it.
    assert list((tmp_path / "logs" / "mail").iterdir()) == []
    with app.app_context():
        assert outbox.flush() == 1
    files = list((tmp_path / "logs" / "mail").iterdir())
    assert len(files) == 1
    assert "/confirm/" in files[0].read_text()
    # The link is also on the console, so a newcomer can finish registering; like
    # every mail link it starts with SITE_URL, whatever host the request named.
    assert "confirmation link: http://127.0.0.1:5055/confirm/" in caplog.text
    assert smtp.sent_to("file.mail@cs.ox.ac.uk") == []


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({}, "text/html"),
        ({"Accept": "application/json"}, "application/json"),
        ({"HX-Request": "true"}, "application/json"),
    ],
)
def test_404_is_a_page_for_browsers_and_json_for_scripts(client, headers, kind):
    response = client.get("/no/such/page", headers=headers)
    assert response.status_code == 404
    assert response.mimetype == kind
    assert "There is nothing here" in response.text


def test_413_says_what_the_limit_is(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1536
    response = client.post("/register", data={"x": "y" * 2000})
    assert response.status_code == 413
    assert "The limit is 1.5 KiB per request" in response.text


def test_500_page_rolls_back_logs_and_mails_admins(tmp_path, smtp):
    app = create_app({**base_config(tmp_path, smtp), "LOG_TO_FILE": True})
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.route("/boom")
    def boom():
        raise RuntimeError("kaboom")

    try:
        response = app.test_client().get("/boom")
    finally:
        remove_handlers()
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.text
    assert "kaboom" not in response.text
    assert "RuntimeError: kaboom" in (tmp_path / "logs" / "web.log").read_text()
    alert = smtp.wait_for("admins@example.org", "Labqueue error")
    assert "kaboom" in alert.get_content()


def test_csrf_failure_explains_itself(client):
    response = client.post("/account/profile", data={"first_name": "x"})
    assert response.status_code in (302, 400)
    token_less = client.post("/reset", data={"email": "ada@cs.ox.ac.uk"})
    assert token_less.status_code == 400
    assert "The form expired" in token_less.text


def test_db_upgrade_then_create_admin_from_the_cli(tmp_path, smtp):
    config = base_config(tmp_path, smtp)
    config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    app = create_app(config)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0

    result = runner.invoke(args=["create-admin", "--email", "root@example.org"])
    assert result.exit_code == 0, result.output
    password = result.output.split("Generated password (shown once): ")[1].strip()
    again = runner.invoke(args=["create-admin", "--email", "root@example.org"])
    assert "Generated password" not in again.output

    client = app.test_client()
    Auth(client).login("root@example.org", password)
    assert client.get("/admin/").status_code == 200
    # The audit names the admin made, by id and address.
    audit = client.get("/admin/admin_audit/").text
    assert "user 1 &lt;root@example.org&gt;" in audit
    assert "user None" not in audit


def test_create_admin_uses_config_values(app, runner):
    app.config.update(
        ADMIN_EMAIL="boss@example.org", ADMIN_PASSWORD="a long admin secret"
    )
    result = runner.invoke(args=["create-admin"])
    assert result.exit_code == 0
    assert "Generated password" not in result.output
    client = app.test_client()
    Auth(client).login("boss@example.org", "a long admin secret")
    assert client.get("/admin/").status_code == 200


def test_create_admin_refuses_a_short_password(runner):
    result = runner.invoke(
        args=["create-admin", "--email", "x@example.org", "--password", "short"]
    )
    assert result.exit_code != 0
    assert "shorter than the minimum" in result.output


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_migrations_from_empty_match_the_models(app, runner):
    # The app fixture ran every migration on an empty database.
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"user", "analysis", "watcher_lease", "outgoing_mail"} <= tables


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LABQUEUE_CELERY_EXTRA", "{broken", 'a JSON object, e.g. {"key": "value"}'),
        (
            "LABQUEUE_TRUSTED_HOSTS",
            "labqueue.uni.example",
            'a JSON list, e.g. ["a", "b"]',
        ),
        ("LABQUEUE_MAX_RUNNING", "lots", "a number"),
        ("LABQUEUE_ACADEMIC_EMAIL_ONLY", "yes", "true or false"),
        ("LABQUEUE_RUNNER", "auto", '"docker" or "slurm" or "local"'),
    ],
)
def test_a_setting_that_does_not_parse_stops_start_up(
    tmp_path, smtp, monkeypatch, variable, value, expected
):
    from frontend.core.settings import ConfigError

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as stopped:
        create_app(base_config(tmp_path, smtp))
    assert f"{variable}: expected {expected}, got {value!r}" in str(stopped.value)


def test_a_string_setting_of_digits_stays_a_string(tmp_path, smtp, monkeypatch):
    monkeypatch.setenv("LABQUEUE_MAIL_PASSWORD", "123456")
    assert create_app(base_config(tmp_path, smtp)).config["MAIL_PASSWORD"] == "123456"


def test_every_setting_is_documented_in_config_example():
    from frontend.core.settings import Defaults

    documented = (ROOT / "config_example.py").read_text()
    keys = [k for k in vars(Defaults) if k.isupper()]
    missing = [k for k in keys if k not in documented]
    assert keys and missing == []


def test_a_data_folder_that_cannot_be_made_stops_start_up(tmp_path, smtp):
    from frontend.core.settings import ConfigError

    config = base_config(tmp_path, smtp)
    Path(config["USER_DATA_DIR"]).write_text("a file where the folder should be")
    with pytest.raises(ConfigError) as stopped:
        create_app(config)
    assert f"USER_DATA_DIR ({config['USER_DATA_DIR']}) cannot be made" in str(
        stopped.value
    )


def test_a_data_folder_it_cannot_write_stops_start_up_with_the_mend(
    tmp_path, smtp, monkeypatch
):
    # As a volume the engine made for root looks to the app's user (the suite may
    # run as root, whom no mode stops, so the answer to "may I write?" is set).
    import os

    from frontend.core.settings import ConfigError

    config = base_config(tmp_path, smtp)
    failed = config["FAILED_ANALYSES_DIR"]
    Path(failed).mkdir(parents=True)
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: str(path) != failed and access(path, mode)
    )
    with pytest.raises(ConfigError) as stopped:
        create_app(config)
    message = str(stopped.value)
    assert f"FAILED_ANALYSES_DIR ({failed}) is not writable" in message
    assert f"chown {os.getuid()}:{os.getgid()} {failed}" in message
    assert "docker-compose up prepare" in message


def test_logs_go_to_standard_error_instead_of_files_when_asked(tmp_path, smtp, capsys):
    config = {**base_config(tmp_path, smtp), "LOG_TO_FILE": True}
    app = create_app({**config, "LOG_TO_STDERR": True})
    try:
        logging.getLogger("frontend.somewhere").warning("a record for the stream")
    finally:
        remove_handlers()
    assert "WARNING [MainProcess] frontend.somewhere: a record for the stream" in (
        capsys.readouterr().err
    )
    assert not (Path(app.config["LOG_DIR"]) / "web.log").exists()


def test_health_says_ok_while_the_database_answers_and_503_when_not(app, client):
    answer = client.get("/health")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    unreachable = "postgresql+psycopg2://labqueue:x@127.0.0.1:9/labqueue"
    broken = create_app({**app.config, "SQLALCHEMY_DATABASE_URI": unreachable})
    answer = broken.test_client().get("/health")
    assert answer.status_code == 503
    assert "database does not answer" in answer.text
