"""relocate.yaml validation: one clear line with file, line and path, exit 2, no traceback.

Pure parsing is tested on `parse_config`; the user-facing line and exit code go
through the real CLI (`relocate plan -f ...`), which must fail before it touches
any server, so these tests need none.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from helpers import cli, one_line_error as _one_line_error
from relocate.cli.init_cmd import template
from relocate.config import parse_config
from relocate.errors import ConfigError

GOOD = """\
version: 1
app:
  name: townsquare
source:
  aws: {region: us-east-1, endpoint_url: "http://127.0.0.1:1"}
  s3:
    - {bucket: media, prefix: "", to: data/media}
  parameters:
    - {path: /app/prod/, to: shared/app.env}
target:
  ssh:
    host: 127.0.0.1
    port: 2222
    user: deploy
  root: /srv/townsquare
"""


def _write(tmp_path: Path, text: str, name: str = "relocate.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p




def _line_of(text: str, needle: str) -> int:
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError(f"{needle!r} not in text")


def test_good_config_parses(tmp_path: Path) -> None:
    cfg = parse_config(GOOD, tmp_path / "relocate.yaml", env={})
    assert cfg.ssh.port == 2222 and cfg.ssh.user == "deploy"
    assert cfg.root == "/srv/townsquare"
    assert [b.bucket for b in cfg.s3] == ["media"] and cfg.s3[0].to == "data/media"
    assert cfg.env_files == ("shared/app.env",)


def test_unknown_key_names_line_and_nearest_key(tmp_path: Path) -> None:
    text = GOOD.replace("    port: 2222", "    prot: 2222")
    p = _write(tmp_path, text)
    line = _one_line_error(cli("plan", "-f", str(p)))
    n = _line_of(text, "prot:")
    assert f"relocate.yaml:{n}: target.ssh.prot: unknown key" in line
    assert "did you mean 'port'?" in line


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    text = GOOD.replace("  root: /srv/townsquare", "  root: /srv/townsquare\n  zzzqqq: 1")
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "relocate.yaml", env={})
    assert f"relocate.yaml:{_line_of(text, 'zzzqqq')}: target.zzzqqq: unknown key" in e.value.message
    assert "valid keys:" in e.value.message and "root" in e.value.message


def test_wrong_type_is_path_qualified(tmp_path: Path) -> None:
    text = GOOD.replace("port: 2222", "port: twenty-two")
    p = _write(tmp_path, text)
    line = _one_line_error(cli("plan", "-f", str(p)))
    assert line == f"relocate: error: {p}:{_line_of(text, 'twenty-two')}: target.ssh.port: must be an integer"


@pytest.mark.parametrize(
    "old,new,expect",
    [
        ("port: 2222", "port: 70000", "target.ssh.port: must be between 1 and 65535"),
        ("port: 2222", "port: true", "target.ssh.port: must be an integer"),
        ("root: /srv/townsquare", "root: srv/townsquare", "target.root: must be an absolute path"),
        ("to: data/media", "to: ../escape", "source.s3[0].to: must be a path inside target.root"),
        ("to: data/media", "to: /etc", "source.s3[0].to: must be a path relative to target.root"),
        ("  parameters:\n    - {path: /app/prod/, to: shared/app.env}\n", "  parameters: nope\n", "source.parameters: must be a list"),
        ("version: 1", "version: 2", "version: must be 1"),
        ("  name: townsquare", "  name: townsquare\n  moderation: {moderators: -3}", "app.moderation.moderators: must be 0 or more"),
        ("region: us-east-1", 'region: "no where"', "source.aws.region: must be a region name like us-east-1"),
        ('endpoint_url: "http://127.0.0.1:1"', 'endpoint_url: "not-a-url"', "source.aws.endpoint_url: must be an http:// or https:// URL"),
        ('endpoint_url: "http://127.0.0.1:1"', 'endpoint_url: "http://"', "source.aws.endpoint_url: must be an http:// or https:// URL"),
        ('endpoint_url: "http://127.0.0.1:1"', 'endpoint_url: "http://h:99999"', "source.aws.endpoint_url: must be an http:// or https:// URL"),
        ("    user: deploy", "    user: 12", "target.ssh.user: must be a string (quote it)"),
    ],
)
def test_wrong_values(tmp_path: Path, old: str, new: str, expect: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "relocate.yaml", env={})
    assert re.match(rf"^{re.escape(str(tmp_path / 'relocate.yaml'))}:\d+: ", e.value.message), e.value.message
    assert expect in e.value.message


@pytest.mark.parametrize("aws", ['{region: "no where"}', '{region: us-east-1, endpoint_url: "not-a-url"}',
                                 '{region: us-east-1, endpoint_url: "http://"}'])
def test_a_bad_region_or_endpoint_is_exit_2_naming_the_field_not_an_internal_error(tmp_path: Path, aws: str) -> None:
    """README: relocate.yaml is checked whole when loaded; botocore's InvalidRegionError and "Invalid
    endpoint" ValueError once made these exit 1 ("internal error") when the first AWS client was built."""
    text = re.sub(r"(?m)^  aws: .*$", f"  aws: {aws}", GOOD)
    assert text != GOOD
    for command in ("plan", "check"):
        line = _one_line_error(cli(command, "-f", str(_write(tmp_path, text))))
        assert re.search(r"relocate\.yaml:\d+: source\.aws\.(region|endpoint_url): must be ", line), line


def test_the_file_is_named_as_given(tmp_path: Path) -> None:
    """`-f /dev/null` is "/dev/null", not "null"."""
    assert _one_line_error(cli("check", "-f", "/dev/null")) == "relocate: error: /dev/null: the file is empty"
    assert _one_line_error(cli("plan", "-f", "/dev/null")) == "relocate: error: /dev/null: the file is empty"


def test_missing_required_field(tmp_path: Path) -> None:
    text = GOOD.replace("  root: /srv/townsquare\n", "")
    p = _write(tmp_path, text)
    line = _one_line_error(cli("plan", "-f", str(p)))
    assert "target.root: is required" in line
    assert re.search(r"relocate\.yaml:\d+: target\.root", line)


def test_missing_required_section(tmp_path: Path) -> None:
    text = GOOD.split("target:")[0]
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "relocate.yaml", env={})
    assert "target: is required" in e.value.message


def test_env_interpolation(tmp_path: Path) -> None:
    text = GOOD.replace("host: 127.0.0.1", "host: ${RELOCATE_T_HOST}").replace("port: 2222", 'port: "${RELOCATE_T_PORT}"')
    text = text.replace("user: deploy", "user: $${LITERAL}")
    cfg = parse_config(text, tmp_path / "relocate.yaml", env={"RELOCATE_T_HOST": "10.1.2.3", "RELOCATE_T_PORT": "2200"})
    assert cfg.ssh.host == "10.1.2.3"
    assert cfg.ssh.port == 2200
    assert cfg.ssh.user == "${LITERAL}"
    # The raw text is kept for plan files, never what ${ENV} expanded to.
    assert "10.1.2.3" not in cfg.text and "${RELOCATE_T_HOST}" in cfg.text


def test_env_interpolation_through_cli_reads_the_environment(tmp_path: Path) -> None:
    text = GOOD.replace("port: 2222", "port: ${RELOCATE_T_PORT}")
    p = _write(tmp_path, text)
    line = _one_line_error(cli("plan", "-f", str(p), env={"RELOCATE_T_PORT": "not-a-port"}))
    assert f"relocate.yaml:{_line_of(text, 'RELOCATE_T_PORT')}: target.ssh.port: must be an integer" in line


def test_missing_env_var_is_a_clear_error(tmp_path: Path) -> None:
    text = GOOD.replace("host: 127.0.0.1", "host: ${RELOCATE_T_SURELY_UNSET}")
    p = _write(tmp_path, text)
    line = _one_line_error(cli("plan", "-f", str(p)))
    n = _line_of(text, "RELOCATE_T_SURELY_UNSET")
    assert f"relocate.yaml:{n}: target.ssh.host: environment variable RELOCATE_T_SURELY_UNSET is not set" in line


def test_x_keys_are_free(tmp_path: Path) -> None:
    text = GOOD.replace("app:\n", "x-anchors: {whatever: [1, 2]}\napp:\n  x-note: anything at all\n")
    text = text.replace("    user: deploy", "    user: deploy\n    x-comment: {nested: true}")
    cfg = parse_config(text, tmp_path / "relocate.yaml", env={})
    assert cfg.ssh.user == "deploy" and cfg.app.name == "townsquare"


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace("    port: 2222", "    port: 2222\n    port: 2223")
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "relocate.yaml", env={})
    assert "target.ssh.port: is given twice" in e.value.message


def test_two_buckets_into_one_dir_refused(tmp_path: Path) -> None:
    text = GOOD.replace("    - {bucket: media, prefix: \"\", to: data/media}",
                        "    - {bucket: media, to: data/media}\n    - {bucket: other, to: data/media/}")
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "relocate.yaml", env={})
    assert "share one `to:` directory" in e.value.message


def test_init_output_validates(tmp_path: Path) -> None:
    out = tmp_path / "relocate.yaml"
    run = cli("init", str(out))
    assert run.exit_code == 0, run.stderr
    assert out.exists()
    text = out.read_text()
    assert text == template()
    assert "#" in text  # commented, to start from
    cfg = parse_config(text, out, env={})
    assert cfg.root.startswith("/") and cfg.s3 and cfg.parameters and cfg.secrets


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "relocate.yaml"
    out.write_text("mine: keep me\n")
    line = _one_line_error(cli("init", str(out)))
    assert "already exists" in line and "--force" in line
    assert out.read_text() == "mine: keep me\n"
    run = cli("init", str(out), "--force")
    assert run.exit_code == 0, run.stderr
    assert out.read_text() == template()


@pytest.mark.parametrize("command", ["plan", "move", "verify"])
def test_every_command_rejects_bad_config_the_same_way(tmp_path: Path, command: str) -> None:
    p = _write(tmp_path, GOOD.replace("port: 2222", "port: [1]"))
    args = [command, "-f", str(p)] + (["--yes"] if command == "move" else [])
    line = _one_line_error(cli(*args))
    assert "target.ssh.port: must be an integer" in line


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace("  name: townsquare", "  name: [unclosed"))
    line = _one_line_error(cli("plan", "-f", str(p)))
    assert re.search(r"relocate\.yaml:\d+: invalid YAML", line), line


def test_empty_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "# nothing\n")
    line = _one_line_error(cli("plan", "-f", str(p)))
    assert "relocate.yaml: the file is empty" in line


@pytest.mark.parametrize("where", ["source", "target"])
def test_a_password_in_a_database_url_is_refused(tmp_path: Path, where: str) -> None:
    # relocate.yaml's text travels in plan.json: a password written into a URL would too.
    db = ("  databases:\n    - {url: \"postgresql://app:hunter2@db.internal:5432/shop\"}\n" if where == "source" else "")
    text = GOOD.replace("target:\n", db + "target:\n")
    if where == "target":
        text += "  database: {url: \"postgresql://postgres:hunter2@127.0.0.1/shop\"}\n"
    run = cli("plan", "-f", str(_write(tmp_path, text)), "--json")
    line = _one_line_error(run)
    assert f"{where}." in line and "password_from" in line
    assert "hunter2" not in run.stderr + run.stdout


def test_a_database_url_without_a_password_is_accepted(tmp_path: Path) -> None:
    text = GOOD.replace("target:\n", "  databases:\n    - {url: \"postgresql://app@db.internal:5432/shop\", "
                                     "password_from: \"env:DB_PASSWORD\"}\ntarget:\n")
    config = parse_config(text, tmp_path / "relocate.yaml", env={})
    assert config is not None


def test_nested_prefixes_strip_prefix_and_versions_are_validated(tmp_path: Path) -> None:
    """Issue 15 items 8, 9, 13: the rule the starter's comment promises, and its limits."""
    entries = ("    - {bucket: media, to: data/media, priority: bulk}\n"
               "    - {bucket: media, prefix: legal/, to: data/legal, priority: critical, strip_prefix: true, versions: all}")
    cfg = parse_config(GOOD.replace("    - {bucket: media, prefix: \"\", to: data/media}", entries), tmp_path / "relocate.yaml", env={})
    wide, legal = cfg.s3
    assert (wide.prefix, wide.strip_prefix, wide.versions, wide.strip) == ("", False, "current", "")
    assert (legal.prefix, legal.strip_prefix, legal.versions, legal.strip) == ("legal/", True, "all", "legal/")
    from relocate.config import owner_of
    assert owner_of("legal/terms.pdf", list(cfg.s3)) is legal and owner_of("legalese.txt", list(cfg.s3)) is wide
    for bad, needle in [
        ("    - {bucket: media, to: a, strip_prefix: true}", "source.s3[0].strip_prefix: needs a `prefix:` to strip"),
        ("    - {bucket: media, prefix: x/, to: a}\n    - {bucket: media, prefix: x/, to: b}",
         "source.s3[1]: media is listed twice with the prefix 'x/'"),
        ("    - {bucket: media, to: a, versions: some}", "source.s3[0].versions: must be one of"),
        ("    - {bucket: media, to: a, strip_prefix: maybe}", "source.s3[0].strip_prefix: must be"),
    ]:
        p = _write(tmp_path, GOOD.replace("    - {bucket: media, prefix: \"\", to: data/media}", bad))
        line = _one_line_error(cli("plan", "-f", str(p)))
        assert needle in line, line


def test_the_starter_comment_on_listing_a_bucket_again_validates(tmp_path: Path) -> None:
    from relocate.sources.discover import Discovery
    from relocate.starter import starter_yaml

    d = Discovery(regions=["us-east-1"], resources={"s3": [
        {"name": "media", "bytes": 10, "objects": 1, "size_from": "listing", "versioning": "Enabled",
         "encryption": "AES256", "region": "us-east-1"}]})
    text = starter_yaml(d)
    assert "may be listed again with a `prefix:`" in text and "strip_prefix" in text
    # do what the comment says: the same bucket again, with a prefix, its own priority and `to:`
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("- {bucket: \"media\""))
    again = '    - {bucket: "media", prefix: "legal/", to: "data/legal", priority: critical}'
    cfg = parse_config(text.replace(line, line + "\n" + again), tmp_path / "relocate.yaml", env={})
    assert [(b.prefix, b.priority) for b in cfg.s3][-1] == ("legal/", "critical")
