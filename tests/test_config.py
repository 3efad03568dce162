"""The typed configuration: TOML round trip, precedence, unknown keys, constraints."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurocare_bids.cli.parser import build_parser
from neurocare_bids.cli.run import build_config
from neurocare_bids.config import Config, _toml_value, reference_markdown
from neurocare_bids.errors import ConfigError


def test_toml_round_trip_of_every_value(tmp_path):
    cfg = Config()
    cfg.update({"preprocessing": {"l_freq": 1, "sfreq": 256.0, "notch": False}, "windows": {"duration": 2.0},
                "montage": {"electrodes": ["Fp1", "Fp2", "O1"]}, "execution": {"participant_label": ["01", "a2"]}})
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    again = Config.from_toml(path)
    assert again == cfg and again.preprocessing.l_freq == 1.0 and isinstance(again.preprocessing.l_freq, float)
    assert again.output_hash() == cfg.output_hash() != Config().output_hash()


def test_execution_options_do_not_change_the_output_hash():
    cfg = Config()
    cfg.update({"execution": {"nprocs": 7, "overwrite": True, "work_dir": "/tmp/x"}})
    assert cfg.output_hash() == Config().output_hash()


def test_an_option_added_later_changes_the_output_hash_only_when_set_away_from_its_legacy_value():
    """``preprocessing.causal = false`` (its legacy value, whatever the default) gives the hash computed before
    the option existed, so outputs made then stay up to date; true changes the hash, so they are recomputed."""
    import dataclasses
    import hashlib
    import json

    from neurocare_bids import __version__
    from neurocare_bids.config import OUTPUT_SECTIONS

    cfg = Config()
    cfg.update({"preprocessing": {"causal": False}})
    payload = {name: dataclasses.asdict(getattr(cfg, name)) for name in OUTPUT_SECTIONS}  # the former formula
    del payload["preprocessing"]["causal"]
    payload["version"] = __version__
    former = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert cfg.output_hash() == former
    cfg.update({"preprocessing": {"causal": True}})
    assert cfg.output_hash() != former
    cfg.update({"preprocessing": {"causal": False}})
    assert cfg.output_hash() == former
    assert (Config().output_hash() == former) is (Config().preprocessing.causal is False)


def test_a_record_that_does_not_mention_a_later_option_means_its_legacy_value():
    """A sidecar or model card written before ``preprocessing.causal`` existed was filtered zero phase: it reads
    as ``causal = false`` even where the default is true; a record that says ``causal`` keeps its value."""
    from neurocare_bids.config import recorded_settings

    old = {"l_freq": 0.5, "h_freq": 30.0, "FilterType": "Butterworth band-pass, zero-phase (forward-backward)"}
    assert recorded_settings("preprocessing", old) == {**old, "causal": False}
    assert recorded_settings("preprocessing", {**old, "causal": True})["causal"] is True
    assert recorded_settings("windows", {"duration": 4.0}) == {"duration": 4.0}  # nothing added since
    cfg = Config()
    cfg.update({"preprocessing": {"causal": True}})
    cfg.update({"preprocessing": recorded_settings("preprocessing", {"l_freq": 0.5})})
    assert cfg.preprocessing.causal is False


@pytest.mark.parametrize("data, message", [
    ({"preprocesing": {}}, "did you mean 'preprocessing'"),
    ({"windows": {"duraton": 3}}, "did you mean 'duration'"),
    ({"windows": {"duration": "4"}}, "must be a number"),
    ({"windows": {"duration": 11}}, "at most 10"),
    ({"windows": {"duration": 4.003}}, "whole number of samples"),
    ({"preprocessing": {"h_freq": 70}}, "Nyquist"),
    ({"preprocessing": {"l_freq": 40}}, "below h_freq"),
    ({"montage": {"montage": "averag"}}, "did you mean 'average'"),
    ({"execution": {"nprocs": 1.5}}, "must be an integer"),
    ({"execution": {"overwrite": 1}}, "true or false"),
    ({"execution": {"participant_label": ["../x"]}}, "invalid participant label"),
    ({"windows": {"seizure_overlap": 0}}, "greater than 0"),
    ({"input": 3}, "must be a table"),
])
def test_bad_values_are_rejected_with_a_clear_message(data, message):
    with pytest.raises(ConfigError, match=message):
        Config().update(data)


def test_bad_toml_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[windows\nduration = 4")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_toml(path)
    with pytest.raises(ConfigError, match="not found"):
        Config.from_toml(tmp_path / "missing.toml")


def test_cli_overrides_file_overrides_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[execution]\nnprocs = 3\nseed = 5\nparticipant_label = ["07"]\n[windows]\nduration = 2\n')
    args = build_parser().parse_args(["b", "o", "participant", "--config", str(path), "--seed", "9",
                                      "--participant_label", "sub-01", "02"])
    cfg = build_config(args)
    assert cfg.execution.seed == 9 and cfg.execution.nprocs == 3 and cfg.windows.duration == 2.0
    assert cfg.execution.participant_label == ["01", "02"]


def test_reference_documents_every_key():
    table = reference_markdown()
    for section, values in Config().to_dict().items():
        for key in values:
            assert f"`{section}.{key}`" in table


def test_documentation_configuration_page_is_the_generated_reference():
    """The documentation's configuration reference is generated at each build (docs/hooks.py), so it cannot drift
    from the code: the page asks for it, and the generated text has every option's row once, with its default."""
    root = Path(__file__).resolve().parents[1]
    assert "<!-- generate: configuration -->" in (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = reference_markdown()
    for section, values in Config().to_dict().items():
        assert table.count(f"### `[{section}]`") == 1
        for key, value in values.items():
            rows = [line for line in table.splitlines() if line.startswith(f"| `{section}.{key}` |")]
            assert len(rows) == 1, (section, key)
            assert f"| `{_toml_value(value)}` |" in rows[0], (section, key)
