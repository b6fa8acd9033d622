"""The demo's experiments: valid configuration, and never over an operator's own."""

from __future__ import annotations

from pathlib import Path

from segue.cli.demo import with_demo_experiments
from segue.demo.experiments import DEMO_PLACEMENTS, demo_config
from segue.settings import load_settings


def test_the_demo_config_is_valid_and_splits_every_placement(tmp_path: Path):
    path = tmp_path / "segue.yaml"
    path.write_text(demo_config())
    settings = load_settings(path, {})
    assert [e.placement for e in settings.experiments] == list(DEMO_PLACEMENTS)
    assert all(e.holdout == 0.5 for e in settings.experiments)
    assert all([v.name for v in e.variants] == ["personalized"] for e in settings.experiments)


def test_configured_experiments_are_kept(tmp_path: Path):
    path = tmp_path / "segue.yaml"
    path.write_text("experiments: [{name: mine, placement: home_hero, holdout: 0.2}]\n")
    own = load_settings(path, {})
    assert with_demo_experiments(own) is own
    plain = with_demo_experiments(load_settings(None, {}))
    assert [e.name for e in plain.experiments] == [f"{p}_personalization" for p in DEMO_PLACEMENTS]
