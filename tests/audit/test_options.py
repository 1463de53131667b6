"""One source of truth for settings: the CLI's options, the API's request schema and the remote gate all come from the
dataclass fields."""

import argparse
import dataclasses

import pytest
from pydantic import ValidationError

from audit.cli import build_parser
from audit.detect.config import AuditConfig
from audit.options import add_arguments, api_values, default_of, field_docs, from_arguments, options, request_model
from audit.report.gate import GatePolicy
from audit.training.config import TrainConfig


def parse(argv):
    return build_parser().parse_args(argv)


def test_every_audit_setting_is_a_cli_option_and_an_api_field():
    fields = {f.name for f in dataclasses.fields(AuditConfig)} - {"imitator", "demos", "policy"}
    assert {f.name for f in options(AuditConfig, "cli")} == fields
    # a path the service would open is never an API field: the search's demonstrator checkpoint is the CLI's alone
    assert {f.name for f in options(AuditConfig, "api")} == fields - {"demonstrator"}
    model = request_model(AuditConfig, "S")
    assert set(model.model_fields) == fields - {"demonstrator"}
    docs = field_docs(AuditConfig)
    assert all(docs.get(name) for name in fields)  # every option has its help text


def test_cli_reads_every_option_into_the_config_and_unset_ones_keep_defaults():
    args = parse(
        [
            "gate",
            "--imitator",
            "i",
            "--demos",
            "d",
            "--alpha",
            "0.05",
            "--taps",
            "",
            "--no-explain",
            "--score-rule",
            "cusum",
            "--max-fit-episodes",
            "77",
            "--allow-likely-incorrigible",
            "--max-unlike-share",
            "0.5",
            "--delta",
            "0.1",
            "--bh",
        ]
    )
    from audit.cli import audit_config

    config = audit_config(args)
    assert config.alpha == 0.05 and config.taps == () and config.explain is False and config.score_rule == "cusum"
    assert config.max_fit_episodes == 77 and config.bh is True
    assert config.policy == GatePolicy(fail_on_likely_incorrigible=False, max_unlike_share=0.5, delta=0.1)
    default = audit_config(parse(["audit", "--imitator", "i", "--demos", "d"]))
    assert default == AuditConfig(imitator="i", demos="d")


def test_one_set_of_bounds_for_cli_config_and_api():
    with pytest.raises(ValueError, match="alpha must be >= 0.0001 and <= 0.5, got 0.7"):
        AuditConfig(imitator="", demos="", alpha=0.7)
    model = request_model(AuditConfig, "S")
    with pytest.raises(ValidationError):
        model(alpha=0.7)
    model(alpha=0.5)
    # the service's own caps are tighter than the library's, and only there
    AuditConfig(imitator="", demos="", episodes=10_000)
    with pytest.raises(ValidationError):
        model(episodes=10_000)
    with pytest.raises(ValidationError):  # strict: no booleans for numbers, no strings for numbers, no unknown fields
        model(episodes=True)
    with pytest.raises(ValidationError):
        model(evil=1)


def test_the_remote_gate_forwards_exactly_the_api_fields():
    config = AuditConfig(imitator="i", demos="d", taps=("core",), seed=5)
    sent = api_values(config)
    assert set(sent) == {f.name for f in options(AuditConfig, "api")} and sent["taps"] == ["core"]
    back = AuditConfig(imitator="i", demos="d", **{k: tuple(v) if k == "taps" else v for k, v in sent.items()})
    assert back == config


def test_train_config_options_round_trip():
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    cfg = from_arguments(
        TrainConfig, parser.parse_args(["--mode", "adversarial", "--disc-taps", "core,head", "--quiet", "--steps", "7"])
    )
    assert cfg.mode == "adversarial" and cfg.disc_taps == ("core", "head") and cfg.progress is False and cfg.steps == 7
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        TrainConfig(mode="dagger")


def test_a_caller_passing_a_setting_on_reads_its_default_from_the_field():
    from audit.bench.null import NullCase

    assert default_of(AuditConfig, "grid_offsets") is AuditConfig(imitator="x", demos="y").grid_offsets
    assert default_of(TrainConfig, "disc_taps") == TrainConfig().disc_taps
    with pytest.raises(ValueError, match="no setting"):
        default_of(AuditConfig, "nonesuch")
    # the harness and the bench commands leave the view to the audit unless told
    assert NullCase().grid_offsets is None
    args = build_parser().parse_args(["bench", "null"])
    assert args.grid_offsets is None
    assert build_parser().parse_args(["bench", "detect", "--no-grid-offsets"]).grid_offsets is False


def test_bench_null_names_the_settings_it_was_given_beyond_its_defaults():
    from audit.cli.bench import null_command

    plain = build_parser().parse_args(["bench", "null"])
    assert "--disc-steps" not in null_command(plain) and "--alpha" not in null_command(plain)
    args = build_parser().parse_args(
        ["bench", "null", "--disc-steps", "200", "--alpha", "0.01", "--demos-episodes", "2000"]
    )
    assert args.disc_steps == 200
    assert null_command(args).endswith("--demos-episodes 2000 --alpha 0.01 --disc-steps 200")
