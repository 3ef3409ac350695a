"""The README's config reference is what conf/ holds: generated, and every key checked."""

from __future__ import annotations

import yaml
from omegaconf import OmegaConf

from conftest import ROOT, compose


def test_readme_config_reference_is_generated_from_conf():
    from attnlab.reference import END, START, generate

    text = (ROOT / "README.md").read_text()
    block = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert block == generate(), "README.md's config reference is stale: run `make docs`"


def test_every_documented_key_is_in_the_composed_config_with_its_default():
    from attnlab.reference import documented

    absent = object()
    checked = 0
    composed = {}  # one composition per selection: many keys share one
    for selection, key, written in documented():
        extra = ["data.train_path=x.csv"] if selection == ["data=files"] else []
        # A component's own defaults show under model=default, whose file sets none of their keys
        # (the default model, small_transformer, sizes its encoder and attention itself).
        base = ["model=default"] if any(o.startswith("model/") for o in selection) else []
        overrides = (*base, *selection, *extra)
        if overrides not in composed:
            composed[overrides] = compose(list(overrides))
        cfg = composed[overrides]
        node = OmegaConf.select(cfg, key, default=absent, throw_on_missing=False, throw_on_resolution_failure=False)
        assert node is not absent, f"README documents {key} ({selection}), the composed config has no such key"
        if "${" not in written and written != "???":
            assert node == yaml.safe_load(written), (key, node, written)
        checked += 1
    assert checked > 60  # the whole of conf/, not an empty loop
