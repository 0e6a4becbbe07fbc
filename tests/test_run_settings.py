"""RunConfig as the one declaration of run settings (issue 14) and the memory estimate with
model presets (issue 11): the CLI flags and the Train form are derived from its fields."""

from __future__ import annotations

import json
from dataclasses import MISSING
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import memory
from backend.__main__ import build_parser
from backend.__main__ import main as cli_main
from backend.cli.train import configs_from_args, flag
from backend.demo import DemoOptions
from backend.errors import LimitError, RunError, UserError
from backend.experiment import config_from_dict
from backend.runs import _SETTING_TYPES, RunConfig, setting_fields

REPO = Path(__file__).resolve().parent.parent
CUSTOM = {"method", "source", "dialects", "base", "name"}  # the Train page draws these itself

# A value different from the default for every field, as typed on the command line and as stored.
OTHER = {
    "method": ("baseline", "baseline"), "source": ("offline:size=300", "offline:size=300"),
    "dialects": ("CAI,BEI", ["CAI", "BEI"]), "base": ("tiny", "tiny"), "steps": ("7", 7),
    "batch_size": ("3", 3), "learning_rate": ("0.01", 0.01), "lam": ("2.5", 0.0),  # baseline: lam forced to 0
    "lam_warmup": ("4", 4), "layers": ("3,2,3", [2, 3]), "probe_every": ("5", 5), "probe_rank": ("4", 4),
    "probe_steps": ("6", 6), "probe_batch": ("9", 9), "subspace": ("pca", "pca"), "lora_rank": ("8", 8),
    "lora_alpha": ("12", 12), "lora_dropout": ("0.1", 0.1), "lora_targets": ("q_proj,v_proj", ["q_proj", "v_proj"]),
    "max_length": ("40", 40), "max_train_pairs": ("50", 50), "include_msa": (None, False), "seed": ("3", 3),
    "name": ("x", "x"), "prompt_format": ("{source} -> {target_variety}:", "{source} -> {target_variety}:"),
    "save_every": ("11", 11), "dtype": ("bf16", "bf16"), "quantize": ("4bit", "4bit"),
    "gradient_checkpointing": (None, True),
}


def _configs(*argv: str) -> list[RunConfig]:
    return configs_from_args(build_parser("train").parse_args(["train", *argv]))


def test_every_field_has_a_type_a_label_and_a_help_text():
    for f in setting_fields():
        assert f.type in _SETTING_TYPES, f.name
        assert f.metadata["label"] and f.metadata["help"], f.name


def test_every_field_has_one_flag_named_after_it_with_the_fields_default():
    assert _configs() == [RunConfig()]  # no flag given: exactly RunConfig's defaults
    names = [f.name for f in setting_fields()]
    assert set(OTHER) == set(names)  # a new field needs a line here (and gets its flag for free)
    argv = []
    for name in names:
        text = OTHER[name][0]
        if text is None:  # a boolean: --x / --no-x
            argv.append(flag(name) if OTHER[name][1] else "--no-" + flag(name)[2:])
        else:
            argv.append(f"{flag(name)}={text}")
    [config] = _configs(*argv)
    for name in names:
        assert getattr(config, name) == OTHER[name][1], name


def test_help_documents_the_memory_flags(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--dtype", "--quantize", "--gradient-checkpointing", "--dry-run", "--probe-rank", "--preset"):
        assert option in out


def test_lora_alpha_is_twice_the_rank_on_the_cli_as_on_the_page():
    # before: the CLI kept lora_alpha 64 whatever --lora-rank, while the page set 2 x rank
    [cli] = _configs("--lora-rank", "8")
    assert cli.lora_alpha == 16
    assert _configs("--lora-rank", "8", "--lora-alpha", "5")[0].lora_alpha == 5
    assert RunConfig.from_dict(cli.to_dict()) == cli  # stored resolved: a reload keeps it


def test_the_probe_rank_flag_is_named_after_its_field():
    # before: --rank set the probe's rank, next to --lora-rank for the adapter's
    assert _configs("--probe-rank", "4")[0].probe_rank == 4
    with pytest.raises(UserError, match="--probe-rank"):
        _configs("--rank", "4")
    old = _configs("--lr", "0.01", "--lambda", "2", "--lambda-warmup", "3", "--no-msa")[0]  # old spellings
    assert (old.learning_rate, old.lam, old.lam_warmup, old.include_msa) == (0.01, 2.0, 3, False)


def test_layers_are_parsed_once_and_checked(capsys):
    assert _configs("--layers", "4, 2,4")[0].layers == [2, 4]
    # before: the CLI's own parser let layer 0 through to training
    with pytest.raises(LimitError, match="layers must be at least 1"):
        _configs("--layers", "0,2")
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "--layers", "two"])
    assert "layers must be numbers separated by commas" in capsys.readouterr().err


def test_run_config_checks_every_field_and_names_it():
    cases = [({"steps": 0}, LimitError, "steps must be at least 1"),
             ({"dtype": "int3"}, RunError, "unknown dtype 'int3'"),
             ({"quantize": "2bit"}, RunError, "unknown quantize"),
             ({"subspace": "x"}, RunError, "unknown subspace"),
             ({"gradient_checkpointing": "yes"}, RunError, "gradient_checkpointing should be true or false"),
             ({"lora_dropout": 1.5}, LimitError, "lora_dropout must be at most"),
             ({"dialects": []}, RunError, "at least one dialect"),
             ({"source": " "}, RunError, "source is empty")]
    for values, error, words in cases:
        with pytest.raises(error, match=words):
            RunConfig.from_dict(values)
    assert RunConfig(layers=[]).layers is None


def test_experiment_and_demo_settings_go_through_run_config():
    # before: an experiment's `train:` section was checked for names only; steps 0 reached training
    with pytest.raises(UserError, match="`train`: steps must be at least 1"):
        config_from_dict({"name": "x", "train": {"steps": 0}})
    with pytest.raises(UserError, match="sweep.*probe_every must be at least 1"):
        config_from_dict({"name": "x", "sweep": {"param": "probe_every", "values": [50, 0]}})
    with pytest.raises(LimitError, match="batch_size must be at least 1"):
        DemoOptions(batch_size=0)
    options = DemoOptions.tiny(seed=3, base_steps=7)
    assert DemoOptions.from_json(options.to_json()) == options  # what a detached build receives
    assert options.run_config("decoupled").steps == options.steps


def test_dry_run_prints_settings_and_memory_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    assert cli_main(["train", "--dry-run", "--method", "both", "--dialects", "CAI,BEI", "--lora-rank", "4"]) == 0
    out = capsys.readouterr().out
    assert "lora_alpha = 8" in out and "# baseline" in out and "# decoupled" in out
    assert "memory: about" in out and "config.json" in out
    assert list(tmp_path.iterdir()) == []
    assert cli_main(["train", "--dry-run", "--preset", "allam-7b"]) == 0
    out = capsys.readouterr().out
    assert "base = ALLaM-AI/ALLaM-7B-Instruct-preview" in out and "quantize = 4bit" in out
    assert cli_main(["train", "--dry-run", "--preset", "allam-7b", "--quantize", "8bit"]) == 0
    assert "quantize = 8bit" in capsys.readouterr().out  # a flag given wins over the preset
    assert cli_main(["train", "--dry-run", "--preset", "allam-7b", "--quantize", "none"]) == 0
    out = capsys.readouterr().out
    assert "quantize = none" in out  # a preset's quantisation can be turned off
    import torch

    here = "(here: float32 on cpu)" if not torch.cuda.is_available() else "(here: "
    assert f"dtype = auto  {here}" in out  # what auto becomes on this machine
    assert cli_main(["train", "--dry-run", "--base", "someone/unknown-model"]) == 0
    assert "cannot estimate" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_parameter_counts_match_real_models():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(REPO / "models" / "base" / "default")
    shape, _ = memory.model_shape("default")
    assert shape.params() == sum(p.numel() for p in model.parameters())
    for preset in memory.PRESETS.values():  # the published parameter counts of the hub models
        assert preset.shape.params() == preset.published_params, preset.name
        assert memory.preset_for(preset.hub_id) is preset


def test_memory_estimate_moves_the_right_way():
    def est(**kw):
        return memory.estimate(RunConfig(**kw), memory.PRESETS["qwen2.5-1.5b"].shape)

    fp32, bf16, q8, q4 = (est(dtype="fp32"), est(dtype="bf16"), est(quantize="8bit"), est(quantize="4bit"))
    assert fp32.weights == 2 * bf16.weights > q8.weights > q4.weights
    assert est(gradient_checkpointing=True).activations < bf16.activations
    assert est(batch_size=32).activations > bf16.activations
    assert est(lora_rank=64).lora_params == 2 * bf16.lora_params
    assert est(lora_targets=["q_proj", "v_proj"]).lora_params < bf16.lora_params
    assert bf16.optimizer == 3 * bf16.lora  # gradient + two Adam moments, all fp32
    assert 1.5e9 * 2 < bf16.total < 40 * memory.GIB
    assert memory.model_shape("someone/unknown-model") is None


def test_train_page_draws_one_control_per_field_with_its_default():
    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=120).run()
    assert not at.exception
    widgets = {w.key: w for kind in (at.number_input, at.text_input, at.selectbox, at.checkbox, at.radio,
                                     at.multiselect) for w in kind}
    for f in setting_fields():
        if f.name in CUSTOM:
            assert any(k == f"train_{f.name}" or k.startswith(f"train_{f.name}_") for k in widgets), f.name
            continue
        widget = widgets[f"train_{f.name}"]
        default = f.default_factory() if f.default is MISSING else f.default
        if type(widget).__name__ == "TextInput":  # lists as typed; none as an empty box
            default = ",".join(map(str, default)) if isinstance(default, list) else default or ""
        assert widget.value == default, f.name
    assert any("GPU memory" in m.value for m in at.markdown)
    # the page and the CLI build the same config for the same choices
    at.number_input(key="train_lora_rank").set_value(8).run()
    at.text_input(key="train_layers").input("3,2").run()
    assert any("LoRA alpha 16" in c.value and "layers 2, 3" in c.value for c in at.caption)
    at.selectbox(key="train_base").set_value(next(o for o in at.selectbox(key="train_base").options
                                                   if o.startswith("allam-7b"))).run()
    assert at.selectbox(key="train_quantize_allam-7b").value == "4bit"
    assert any("GPU memory" in m.value and "GiB" in m.value for m in at.markdown)
    assert not at.error, [e.value for e in at.error]
    json.dumps([c.value for c in at.caption])  # captions render as text
