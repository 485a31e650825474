"""Issue 10, defect 1: settings given with ``-c`` once are kept in kie-uploader.settings.json, and a changed
bucket set or secret is refused unless accepted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kie_uploader import settings_file
from kie_uploader.settings import SettingsError, StackSettings, from_context_and_file
from kie_uploader.settings_file import SettingsFileError

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kie/api-key-AbCdEf"
OTHER_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kie/test-key-XyZ123"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / settings_file.FILE_NAME


def deploy(path: Path, **context: object) -> StackSettings:
    """What one ``cdk deploy -c ...`` run of the app does with the file (infra.app.main's path)."""
    return from_context_and_file(context.get, path, remember=True)


def test_a_missing_file_is_empty_and_a_saved_one_reads_back(path: Path) -> None:
    assert settings_file.load(path) == {}
    settings_file.save(path, {"notify": "queue", "bucketNames": "a-bucket,b-bucket"})
    assert settings_file.load(path) == {"bucketNames": "a-bucket,b-bucket", "notify": "queue"}
    document = json.loads(path.read_text())
    assert list(document["settings"]) == ["bucketNames", "notify"]  # sorted, one per line: reviewable


@pytest.mark.parametrize("text", ["{not json", '["a"]', '{"settings": "x"}'])
def test_a_malformed_file_is_refused_naming_the_file(path: Path, text: str) -> None:
    path.write_text(text)
    with pytest.raises(SettingsFileError, match=re.escape(str(path))):
        settings_file.load(path)


def test_json_values_from_a_hand_written_file_are_read_as_context_values(path: Path) -> None:
    path.write_text(
        json.dumps({"settings": {"bucketNames": ["one-bucket", "two-bucket"], "maxConcurrency": 7}})
    )
    parsed = from_context_and_file(dict[str, object]().get, path)
    assert parsed.bucket_names == ("one-bucket", "two-bucket")
    assert parsed.max_concurrency == 7


def test_defect_1_a_later_deploy_without_c_keeps_the_buckets_the_secret_and_the_rest(path: Path) -> None:
    first = deploy(path, bucketNames="my-bucket", apiKeySecretArn=SECRET_ARN, notify="queue", prefix="in/")
    assert first.bucket_names == ("my-bucket",)
    later = deploy(path)  # `npx cdk deploy` with no -c at all
    assert later.bucket_names == ("my-bucket",)  # not a new bucket
    assert later.api_key_secret_arn == SECRET_ARN  # not a new, empty secret
    assert (later.notify, later.prefix) == ("queue", "in/")


def test_a_changed_bucket_set_is_refused_naming_the_key_and_the_accept_flag(path: Path) -> None:
    deploy(path, bucketNames="my-bucket,other-bucket")
    with pytest.raises(SettingsError, match=r"bucketNames=.*-c acceptSettingsChange=true"):
        deploy(path, bucketNames="my-bucket")
    assert settings_file.load(path)["bucketNames"] == "my-bucket,other-bucket"  # unchanged


def test_the_same_buckets_in_another_order_are_not_a_change(path: Path) -> None:
    deploy(path, bucketNames="my-bucket,other-bucket")
    assert deploy(path, bucketNames="other-bucket, my-bucket").bucket_names == ("other-bucket", "my-bucket")


def test_a_changed_secret_is_refused_naming_the_key(path: Path) -> None:
    deploy(path, apiKeySecretArn=SECRET_ARN)
    with pytest.raises(SettingsError, match=r"apiKeySecretArn=.*acceptSettingsChange=true"):
        deploy(path, apiKeySecretArn=OTHER_SECRET_ARN)


def test_an_accepted_change_is_used_and_kept(path: Path) -> None:
    deploy(path, bucketNames="my-bucket", apiKeySecretArn=SECRET_ARN)
    changed = deploy(
        path, bucketNames="new-bucket", apiKeySecretArn=OTHER_SECRET_ARN, acceptSettingsChange="true"
    )
    assert (changed.bucket_names, changed.api_key_secret_arn) == (("new-bucket",), OTHER_SECRET_ARN)
    assert deploy(path).bucket_names == ("new-bucket",)
    assert "acceptSettingsChange" not in settings_file.load(path)  # the acceptance is for one run only


def test_an_unguarded_option_may_be_overridden_with_c_and_is_remembered(path: Path) -> None:
    deploy(path, notify="queue", maxConcurrency="5")
    assert deploy(path, maxConcurrency="9").max_concurrency == 9
    assert deploy(path).max_concurrency == 9


def test_a_malformed_value_in_the_file_fails_naming_the_key(path: Path) -> None:
    settings_file.save(path, {"notify": "sns"})
    with pytest.raises(SettingsError, match="notify"):
        from_context_and_file(dict[str, object]().get, path)


def test_without_remember_the_file_is_not_written(path: Path) -> None:
    from_context_and_file({"notify": "queue"}.get, path)
    assert not path.exists()


def test_configure_refuses_to_change_a_recorded_bucket_set_without_accept_change(path: Path) -> None:
    current = settings_file.apply_changes({}, {"bucketNames": "my-bucket"}, accept_change=False, path=path)
    assert current == {"bucketNames": "my-bucket"}
    with pytest.raises(SettingsFileError, match=r"bucketNames=.*--accept-change"):
        settings_file.apply_changes(current, {"bucketNames": "new-bucket"}, accept_change=False, path=path)
    with pytest.raises(SettingsFileError, match="bucketNames"):  # removing it would create a new bucket
        settings_file.apply_changes(current, {"bucketNames": None}, accept_change=False, path=path)
    changed = settings_file.apply_changes(
        current, {"bucketNames": "new-bucket"}, accept_change=True, path=path
    )
    assert changed == {"bucketNames": "new-bucket"}


def test_assignments_are_parsed_and_an_empty_value_removes_the_option() -> None:
    assert settings_file.parse_assignments(["notify=queue", "prefix=", "suffix=.png"]) == {
        "notify": "queue",
        "prefix": None,
        "suffix": ".png",
    }
    with pytest.raises(SettingsFileError, match="name=value"):
        settings_file.parse_assignments(["notify"])


def test_the_options_the_stack_reads_are_known() -> None:
    keys = settings_file.known_keys(StackSettings.from_context)
    assert {"bucketNames", "apiKeySecretArn", "notify", "prefix", "presignExpiresSeconds"} <= keys


def test_the_default_path_is_at_the_repository_top_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(settings_file.ENV_VAR, raising=False)
    assert settings_file.default_path().name == settings_file.FILE_NAME
    assert (settings_file.default_path().parent / "cdk.json").is_file()
    monkeypatch.setenv(settings_file.ENV_VAR, str(tmp_path / "x.json"))
    assert settings_file.default_path() == tmp_path / "x.json"


def test_the_configure_command_writes_the_file_and_guards_the_buckets(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kie_uploader import cli
    from kie_uploader.cli import errors

    assert cli.main(["configure", "--settings-file", str(path), "bucketNames=my-bucket", "notify=queue"]) == 0
    assert settings_file.load(path) == {"bucketNames": "my-bucket", "notify": "queue"}
    assert "bucketNames = my-bucket" in capsys.readouterr().out
    code = cli.main(["configure", "--settings-file", str(path), "bucketNames=new-bucket"])
    assert code == errors.EXIT_ERROR
    err = capsys.readouterr().err
    assert "bucketNames='new-bucket' differs" in err and "--accept-change" in err and err.count("\n") == 1
    assert settings_file.load(path)["bucketNames"] == "my-bucket"
    args = ["configure", "--settings-file", str(path), "--accept-change", "bucketNames=new-bucket"]
    assert cli.main(args) == 0
    assert settings_file.load(path)["bucketNames"] == "new-bucket"


@pytest.mark.parametrize(
    ("assignment", "named"), [("bucketName=x-bucket", "bucketName"), ("notify=sns", "notify")]
)
def test_the_configure_command_refuses_unknown_names_and_malformed_values(
    path: Path, capsys: pytest.CaptureFixture[str], assignment: str, named: str
) -> None:
    from kie_uploader import cli
    from kie_uploader.cli import errors

    assert cli.main(["configure", "--settings-file", str(path), assignment]) == errors.EXIT_ERROR
    assert named in capsys.readouterr().err
    assert not path.exists()
