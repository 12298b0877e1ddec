"""The regolancer template and the per-run config built from it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from core.models import Channel, Pair
from core.regolancer_config import (
    TemplateError,
    build_config,
    check_template,
    load_template,
    template_warnings,
    write_config,
)
from sim.regolancer import go_type_error
from tests.test_pairing import channel as node_channel

ROOT = Path(__file__).resolve().parent.parent


def channel(chan_id: str, pubkey: str) -> Channel:
    return node_channel(
        int(chan_id), remote_pubkey=pubkey, auto_rebalance=True, ar_out_target=50, ar_in_target=50
    )


def make_pair(source: str = "879609302301671425", target: str = "879609302301671426") -> Pair:
    return Pair(channel(source, "02" + "a" * 64), channel(target, "03" + "b" * 64), 60, 40)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.json"
    path.write_text(text)
    return path


def test_shipped_template_loads_without_warnings():
    template = load_template(ROOT / "config.template.json")
    assert template["connect"] == "127.0.0.1:10009"
    assert isinstance(template["amount"], int)
    for key in ("from", "to", "pfrom", "pto", "stat", "perc"):
        assert key not in template
    assert not ("econ_ratio_max_ppm" in template and "fee_limit_ppm" in template)
    assert template_warnings(template, Path("data/stat.csv"), 1800) == []


def test_build_config_sets_pair_and_stat(tmp_path):
    template = {"amount": 50000, "stat": "/elsewhere.csv", "from": [1], "perc": 20}
    config = build_config(template, make_pair(), tmp_path / "stat.csv")
    assert config["from"] == ["879609302301671425"]
    assert config["to"] == ["879609302301671426"]
    assert all(isinstance(x, str) for x in config["from"] + config["to"])
    assert config["pfrom"] == 60
    assert type(config["pfrom"]) is int
    assert config["pto"] == 40
    assert type(config["pto"]) is int
    assert config["stat"] == str(tmp_path / "stat.csv")
    assert "perc" not in config
    # Pure: the template is untouched.
    assert template == {"amount": 50000, "stat": "/elsewhere.csv", "from": [1], "perc": 20}


def test_build_config_stat_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = build_config({"amount": 1}, make_pair(), Path("data/stat.csv"))
    assert config["stat"] == str(tmp_path / "data" / "stat.csv")
    assert '"pfrom": 60' in json.dumps(config)


def test_build_config_lndg_fee_limit_and_amount(tmp_path):
    template = {
        "amount": 50000,
        "min_amount": 10000,
        "econ_ratio": 0.9,
        "econ_ratio_max_ppm": 1500,
        "lost_profit": True,
    }
    config = build_config(
        template, make_pair(), tmp_path / "stat.csv", fee_limit_ppm=256, amount=80000
    )
    assert type(config["fee_limit_ppm"]) is int
    assert config["fee_limit_ppm"] == 256
    assert "econ_ratio_max_ppm" not in config  # regolancer refuses both together
    # regolancer ignores these once fee_limit_ppm is set; they stay as written
    assert (config["econ_ratio"], config["lost_profit"]) == (0.9, True)
    assert type(config["amount"]) is int
    assert config["amount"] == 80000
    assert config["min_amount"] == 10000
    assert '"fee_limit_ppm": 256' in json.dumps(config)
    check_template(config)
    assert [go_type_error(key, value) for key, value in config.items()] == [None] * len(config)
    assert template["econ_ratio_max_ppm"] == 1500  # pure: the template is untouched


def test_build_config_amount_replaces_relative_amounts(tmp_path):
    template = {"rel_amount_to": 0.2, "rel_amount_from": 0.1, "fee_limit_ppm": 900}
    config = build_config(template, make_pair(), tmp_path / "stat.csv", amount=30000)
    assert config["amount"] == 30000
    assert "rel_amount_to" not in config
    assert "rel_amount_from" not in config
    assert config["fee_limit_ppm"] == 900  # no fee override: the template's own stays
    check_template(config)


def test_build_config_without_overrides_keeps_the_template(tmp_path):
    template = {"rel_amount_to": 0.2, "econ_ratio": 0.9, "econ_ratio_max_ppm": 1500}
    config = build_config(template, make_pair(), tmp_path / "stat.csv")
    for key, value in template.items():
        assert config[key] == value
    assert "fee_limit_ppm" not in config
    assert "amount" not in config


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"fee_limit_ppm": 0}, "fee_limit_ppm must be a whole number above 0"),
        ({"fee_limit_ppm": -5}, "fee_limit_ppm must be a whole number above 0"),
        ({"fee_limit_ppm": 256.0}, "fee_limit_ppm must be a whole number above 0"),
        ({"fee_limit_ppm": True}, "fee_limit_ppm must be a whole number above 0"),
        ({"amount": 0}, "amount must be a whole number above 0"),
        ({"amount": 50000.0}, "amount must be a whole number above 0"),
        ({"amount": 5000}, "below the template's min_amount 10000"),
    ],
)
def test_build_config_refuses_overrides_regolancer_would_misread(tmp_path, overrides, match):
    template = {"amount": 50000, "min_amount": 10000}
    with pytest.raises(ValueError, match=match):
        build_config(template, make_pair(), tmp_path / "stat.csv", **overrides)


def test_write_config_is_private_json(tmp_path):
    config = build_config({"amount": 50000}, make_pair(), tmp_path / "stat.csv")
    path = write_config(config, tmp_path / "work")
    assert path.suffix == ".json"
    assert path.parent == tmp_path / "work"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == config
    other = write_config(config, tmp_path / "work")
    assert other != path


def test_write_config_refuses_toml_directory(tmp_path):
    with pytest.raises(ValueError, match="toml"):
        write_config({}, tmp_path / "x.toml.d")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"amount": 50000.0}', r'"amount" must be a whole number like 50000'),
        ('{"amount": 50000, "timeout_rebalance": 25.0}', r'"timeout_rebalance" must be a whole'),
        ('{"amount": 50000, "min_amount": "10000"}', r'"min_amount" must be a whole number'),
        ('{"amount": true}', r'"amount" must be a whole number'),
        ('{"amount": 50000, "exclude": [123]}', r'"exclude" must be a list of strings'),
        ('{"amount": 50000, "allow_rapid_rebalance": "yes"}', "true or false"),
        ('{"amount": 50000, "econ_ratio": "0.9"}', r'"econ_ratio" must be a number'),
        ('{"amount": 50000, "tlscert": 1}', r'"tlscert" must be a string'),
        ('{"amount": 1, "econ_ratio_max_ppm": 5, "fee_limit_ppm": 9}', "not both"),
        ('{"econ_ratio": 0.9}', "no amount"),
        ('{"amount": 0}', "no amount"),
        ('{"amount": 5, "rel_amount_to": 0.2}', "not both"),
        ('{"rel_amount_to": 0.2, "allow_rapid_rebalance": true}', "rapid"),
        ('{"amount": 5, "min_amount": 10}', "min_amount"),
        ("[1, 2]", "must be a JSON object"),
        ('{"amount": 50000,}', r"not valid JSON: .* line 1 column 18"),
        ('{\n  "amount": 1\n  "pto": 2\n}', r"line 3 column 3"),
    ],
)
def test_bad_templates(tmp_path, text, match):
    with pytest.raises(TemplateError, match=match) as info:
        load_template(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_template(tmp_path):
    with pytest.raises(TemplateError, match=r"not found.*config\.template\.json"):
        load_template(tmp_path / "nope.json")


def test_per_run_keys_are_not_checked():
    # Replaced per run, so bad values there never reach regolancer.
    check_template({"amount": 1, "from": [1], "pfrom": 50.0, "stat": 3, "perc": 1.5})


def test_warnings(tmp_path):
    stat_path = tmp_path / "stat.csv"
    template = {
        "amount": 1,
        "from": ["1"],
        "pto": 30,
        "perc": 20,
        "stat": "other.csv",
        "timeout_rebalance": 60,
        "timeout_attempt": 40,
    }
    warnings = template_warnings(template, stat_path, 1800)
    text = "\n".join(warnings)
    assert "from, pto are ignored" in text
    assert '"perc"' in text
    assert "other.csv" in text
    assert str(stat_path) in text
    assert "timeout_rebalance is 60 min (3600 s)" in text
    assert "at most 29" in text
    assert "timeout_attempt is 40 min" in text
    assert len(warnings) == 5


def test_warnings_defaults_and_matching_stat(tmp_path):
    stat_path = tmp_path / "stat.csv"
    # No timeout_rebalance means regolancer's 360 minutes: longer than the run limit.
    warnings = template_warnings({"amount": 1, "stat": str(stat_path)}, stat_path, 1800)
    assert len(warnings) == 1
    assert "360 min" in warnings[0]
    assert template_warnings({"amount": 1, "timeout_rebalance": 25}, stat_path, 1800) == []


def test_template_file_mode_untouched(tmp_path):
    path = write(tmp_path, '{"amount": 1}')
    os.chmod(path, 0o644)
    assert load_template(path) == {"amount": 1}
