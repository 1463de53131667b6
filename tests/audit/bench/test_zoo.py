"""The departure zoo's cache: only the kinds asked for are trained, an unknown kind is refused, and an imitator whose
file is missing (an interrupted build) is trained again from its run folder instead of refused as an earlier run, and
one that another recipe made is trained again instead of reused; a zoo of another seed has its own cache folder."""

from dataclasses import replace

import pytest

from audit.bench.zoo import FULL, QUICK, build_zoos, zoo_folder
from models.load import load_imitator


def test_an_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown zoo kind"):
        build_zoos(["imitaudit/OffSwitch-v0"], tmp_path, scale=QUICK, kinds=("faithful", "devious"))
    assert not list(tmp_path.iterdir())  # refused before anything is recorded


@pytest.mark.slow
def test_a_missing_imitator_is_rebuilt_from_its_run_folder(tmp_path):
    env = "imitaudit/OffSwitch-v0"
    first = build_zoos([env], tmp_path, scale=QUICK, kinds=("sloppy",))[env]
    assert set(first) == {"reference", "sloppy"} and first["sloppy"].exists()
    assert first["sloppy"].parent.parent.name == f"quick-plan{QUICK.plan_iterations}"  # never a zoo from before it
    assert not (first["sloppy"].parent / "imitator-faithful.safetensors").exists()
    first["sloppy"].unlink()  # as a build killed between its last checkpoint and writing the imitator leaves it
    again = build_zoos([env], tmp_path, scale=QUICK, kinds=("sloppy",))[env]
    assert again["sloppy"].exists()


@pytest.mark.slow
def test_an_imitator_of_another_recipe_is_trained_again(tmp_path):
    env = "imitaudit/OffSwitch-v0"
    first = build_zoos([env], tmp_path, scale=QUICK, kinds=("sloppy",))[env]["sloppy"]
    assert load_imitator(first)[1].provenance["steps"] == QUICK.sloppy_steps
    changed = replace(QUICK, sloppy_steps=QUICK.sloppy_steps + 1)
    again = build_zoos([env], tmp_path, scale=changed, kinds=("sloppy",))[env]["sloppy"]
    assert again == first and load_imitator(again)[1].provenance["steps"] == QUICK.sloppy_steps + 1


def test_zoos_of_another_query_weight_or_finish_never_share_a_cache_folder():
    assert FULL.query_coef != 1.0 and FULL.finish > 0
    assert FULL.folder != replace(FULL, query_coef=1.0).folder
    assert FULL.folder != replace(FULL, finish=0).folder
    # the zoos every table before the weight, and before the finishing phase, was made on
    assert replace(FULL, query_coef=1.0, finish=0).folder == "full-plan24"
    assert replace(FULL, finish=0).folder == "full-plan24-q10"
    assert QUICK.folder == "quick-plan24"  # the quick zoo the tests build keeps the weight its thresholds were set on


def test_zoos_of_another_seed_never_share_a_cache_folder(tmp_path):
    env = "imitaudit/OffSwitch-v0"
    seed0, seed1 = (zoo_folder(tmp_path, env, scale=FULL, seed=s) for s in (0, 1))
    assert seed0 == tmp_path / FULL.folder / "OffSwitch-v0"  # the folder of every zoo before the seed was named
    assert seed1 != seed0 and seed1.name == seed0.name and seed1.parent.parent == tmp_path
