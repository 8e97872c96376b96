"""The ONVIF credentials file: safe modes only, strict keys, and no secret in any message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scanner.credentials import load_credentials
from scanner.errors import ConfigError

SECRET = "Hunter2-Very-Secret"
USER = "svc-onvif-user"

GOOD = f"""
# delivered by systemd LoadCredential= in production
[[onvif]]
cidr = "198.51.100.0/24"
username = "{USER}"
password = "{SECRET}"

[[onvif]]
cidr = "198.51.100.21/32"
username = "admin"
password = "other"
"""


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _no_systemd_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_good_file(tmp_path: Path, mode: int) -> None:
    creds = load_credentials(write(tmp_path / "onvif.toml", GOOD, mode))
    assert creds == {
        "198.51.100.0/24": (USER, SECRET),
        "198.51.100.21/32": ("admin", "other"),
    }


def test_empty_file_is_no_credentials(tmp_path: Path) -> None:
    assert load_credentials(write(tmp_path / "onvif.toml", "")) == {}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o666])
def test_open_modes_are_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "onvif.toml", GOOD, mode)
    with pytest.raises(ConfigError) as err:
        load_credentials(path)
    msg = str(err.value)
    assert str(path) in msg and f"{mode:04o}" in msg and "chmod 600" in msg
    assert SECRET not in msg and USER not in msg


def test_systemd_credentials_directory_is_exempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd decides the modes under $CREDENTIALS_DIRECTORY (and /run/credentials/)."""
    creds_dir = tmp_path / "creds"
    creds_dir.mkdir()
    inside = write(creds_dir / "onvif", GOOD, 0o644)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds_dir))
    assert "198.51.100.0/24" in load_credentials(inside)
    # a symlink placed there does not lend its exemption to an open file elsewhere
    outside = write(tmp_path / "elsewhere.toml", GOOD, 0o644)
    link = creds_dir / "linked"
    link.symlink_to(outside)
    with pytest.raises(ConfigError, match="too open"):
        load_credentials(link)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such credentials file"):
        load_credentials(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_credentials(tmp_path)


BAD = [
    ('[[onvif]]\ncidr = "198.51.100.1/24"\nusername = "u"\npassword = "{pw}"\n', "onvif[0].cidr"),
    ('[[onvif]]\ncidr = "not-a-cidr"\nusername = "u"\npassword = "{pw}"\n', "onvif[0].cidr"),
    ('[[onvif]]\ncidr = "2001:db8::/32"\nusername = "u"\npassword = "{pw}"\n', "onvif[0].cidr"),
    ('[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "u"\npasword = "{pw}"\n', "'pasword'"),
    (
        '[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "u"\npassword = "x"\nnote = "{pw}"\n',
        "unknown key 'note'",
    ),
    ('[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "u"\n', "onvif[0].password: missing"),
    ('[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "{pw}"\npassword = 7\n', "must be"),
    ('[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "u"\npassword = ""\n', "non-empty"),
    ('[rtsp]\npassword = "{pw}"\n', "unknown key 'rtsp'"),
    ('onvif = "{pw}"\n', "array of tables"),
    ('onvif = ["{pw}"]\n', "onvif[0]: must be a table"),
    (
        '[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "u"\npassword = "{pw}"\n'
        '[[onvif]]\ncidr = "198.51.100.0/24"\nusername = "v"\npassword = "w"\n',
        "listed twice",
    ),
    # broken TOML right next to the password: tomllib would quote the bad character
    ('[[onvif]]\ncidr = "198.51.100.0/24"\npassword = "{pw}\x01"\n', "not valid TOML (at line"),
    ("[[onvif]]\npassword = {pw}\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "expect"), BAD)
def test_bad_files_are_refused_without_echoing_secrets(
    tmp_path: Path, text: str, expect: str
) -> None:
    path = write(tmp_path / "onvif.toml", text.replace("{pw}", SECRET))
    with pytest.raises(ConfigError) as err:
        load_credentials(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ")
    assert expect in msg
    assert SECRET not in msg and SECRET[:6] not in msg
    # no chained exception whose text a traceback would print
    assert err.value.__cause__ is None
    assert err.value.__context__ is None or err.value.__suppress_context__


def test_exit_code_is_ex_config(tmp_path: Path) -> None:
    path = write(tmp_path / "onvif.toml", GOOD, 0o644)
    with pytest.raises(ConfigError) as err:
        load_credentials(path)
    assert err.value.exit_code == os.EX_CONFIG
