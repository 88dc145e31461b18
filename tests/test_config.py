"""Config layer: defaults <- YAML (_BASE_ chain) <- CLI pairs; strict keys with suggestions; types."""

from pathlib import Path

import pytest
import yaml

from cgd_video.config import ConfigError, get_cfg_defaults, list_configs, load_config, resolve_config_path
from cgd_video.config.loading import load_config_from_yaml_string

DEFAULTS_PY = Path(__file__).resolve().parents[1] / "cgd_video" / "config" / "defaults.py"


def _write(p: Path, data) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_base_chain_relative_and_cli_override(tmp_path):
    _write(tmp_path / "a" / "root.yaml", {"SOLVER": {"BASE_LR": 0.1, "STEPS": [3, 6]}, "SEED": 7})
    _write(tmp_path / "a" / "mid.yaml", {"_BASE_": "root.yaml", "SOLVER": {"BASE_LR": 0.2}, "MODEL": {"DEPTH": 18}})
    leaf = _write(tmp_path / "b" / "leaf.yaml", {"_BASE_": "../a/mid.yaml", "MODEL": {"ATTENTION": "cgd"}})
    cfg = load_config(leaf, ["SOLVER.BASE_LR", "0.005", "SOLVER.STEPS", "[4, 8]"])
    assert cfg.SOLVER.BASE_LR == 0.005  # CLI beats the files
    assert cfg.SOLVER.STEPS == [4, 8]
    assert cfg.SEED == 7  # from the root of the chain
    assert cfg.MODEL.DEPTH == 18  # from the middle
    assert cfg.MODEL.ATTENTION == "cgd"  # from the leaf
    assert cfg.MODEL.NUM_CLASSES == get_cfg_defaults().MODEL.NUM_CLASSES  # untouched default
    assert cfg.is_frozen()


def test_base_cycle_is_an_error(tmp_path):
    _write(tmp_path / "x.yaml", {"_BASE_": "y.yaml"})
    _write(tmp_path / "y.yaml", {"_BASE_": "x.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "x.yaml")


def test_unknown_key_in_file_names_file_key_and_suggestion(tmp_path):
    f = _write(tmp_path / "bad.yaml", {"SOLVER": {"BASE_LRR": 0.1}})
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "SOLVER.BASE_LRR" in msg and "SOLVER.BASE_LR" in msg.split("did you mean")[1] and str(f) in msg


@pytest.mark.parametrize(
    "key, suggestion",
    [("SOLVER.LR_BASE", "SOLVER.BASE_LR"), ("SOLVR.MOMENTUM", "SOLVER.MOMENTUM"), ("MODEL.ATTENTON", "MODEL.ATTENTION")],
)
def test_unknown_cli_key_suggests_closest(key, suggestion):
    with pytest.raises(ConfigError) as e:
        load_config(None, [key, "1"])
    assert key in str(e.value) and f"did you mean '{suggestion}'" in str(e.value)


@pytest.mark.parametrize(
    "key, value",
    [("SOLVER.BASE_LR", "fast"), ("MODEL.DEPTH", "5.5"), ("TRAIN.SYNC_BN", "1"), ("SOLVER.STEPS", "40"),
     ("SOLVER.STEPS", "['a']"), ("MODEL.ATTENTION", "3")],
)
def test_wrong_type_names_the_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, [key, value])


def test_wrong_type_in_file(tmp_path):
    f = _write(tmp_path / "t.yaml", "MODEL:\n  DEPTH: fifty\n")
    with pytest.raises(ConfigError, match=r"MODEL\.DEPTH.*int"):
        load_config(f)


def test_yaml_scientific_notation_and_int_for_float(tmp_path):
    # PyYAML reads "1e-4" (no dot) as a string; an int where a float is expected is fine.
    f = _write(tmp_path / "t.yaml", "SOLVER:\n  WEIGHT_DECAY: 1e-4\n  BASE_LR: 1\n")
    cfg = load_config(f)
    assert cfg.SOLVER.WEIGHT_DECAY == pytest.approx(1e-4) and isinstance(cfg.SOLVER.BASE_LR, float)


def test_odd_cli_pairs_rejected():
    with pytest.raises(ConfigError, match="KEY VALUE"):
        load_config(None, ["SOLVER.BASE_LR"])


def test_name_lookup_in_configs_and_listing_on_miss():
    cfg = load_config("ucf101_cgd.yaml")
    assert cfg.MODEL.ATTENTION == "cgd" and cfg.MODEL.NUM_CLASSES == 101
    assert resolve_config_path("ucf101_cgd") == resolve_config_path("ucf101_cgd.yaml")
    with pytest.raises(ConfigError) as e:
        resolve_config_path("ucf101_cdg.yaml")
    assert "ucf101_cgd.yaml" in str(e.value) and "minikinetics_c2d.yaml" in str(e.value)


def test_yaml_roundtrip_from_checkpoint_string():
    cfg = load_config("minikinetics_cgnl.yaml", ["SEED", "3"])
    again = load_config_from_yaml_string(cfg.dump())
    assert again == cfg


def test_paper_configs_carry_the_protocol():
    names = [n for n in list_configs() if not n.startswith("base")]
    rows = ["c2d", "nl", "cgnl", "cgd", "cgd_conv2", "cgd_concat", "cgd_shared", "cgd_mean"]
    for ds in ("ucf101", "minikinetics"):
        for r in rows:
            assert f"{ds}_{r}.yaml" in names
    u, k = load_config("ucf101_cgnl"), load_config("minikinetics_cgnl")
    assert (u.MODEL.CGNL_GROUPS, k.MODEL.CGNL_GROUPS) == (1, 8)
    assert (u.TEST.NUM_CLIPS, u.TEST.NUM_CROPS, k.TEST.NUM_CLIPS, k.TEST.NUM_CROPS) == (1, 1, 10, 3)
    for c in (u, k):
        assert c.DATA.NUM_FRAMES * c.DATA.SAMPLING_RATE == 64 and c.DATA.TRAIN_CROP == 224
        assert c.TRAIN.BATCH_SIZE * 4 == c.SOLVER.REFERENCE_BATCH == 44
        assert (c.SOLVER.BASE_LR, c.SOLVER.MOMENTUM, c.SOLVER.MAX_EPOCH, c.SOLVER.STEPS) == (0.01, 0.9, 100, [40, 80])
        assert (c.SOLVER.WEIGHT_DECAY, c.SOLVER.CGD_WEIGHT_DECAY, c.MODEL.DROPOUT) == (1e-4, 5e-5, 0.5)
    assert load_config("ucf101_cgd_conv2").MODEL.CGD_POSITION == "conv2"
    assert load_config("minikinetics_cgd_concat").MODEL.CGD_TEMPORAL == "concat"


def test_every_default_key_has_a_comment():
    lines = DEFAULTS_PY.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("_C.") and " = " in line and "CN()" not in line:
            assert lines[i - 1].lstrip().startswith("#"), f"defaults.py:{i + 1} {line!r} has no comment above it"


def test_missing_data_files_name_the_key_and_path(tmp_path):
    from cgd_video.boundary.data import DataConfigError, build_train_dataset, read_classes_for

    cfg = load_config("ucf101_cgd", ["DATA.CLASSES", str(tmp_path / "nope.txt")])
    with pytest.raises(DataConfigError, match=r"DATA\.CLASSES.*nope\.txt.*build_lists"):
        read_classes_for(cfg)
    cfg = load_config("ucf101_cgd", ["DATA.TRAIN_LIST", ""])
    with pytest.raises(DataConfigError, match=r"DATA\.TRAIN_LIST is empty"):
        build_train_dataset(cfg)
