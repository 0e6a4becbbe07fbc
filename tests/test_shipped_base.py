"""The base model shipped in models/base/default: its manifest, and that it translates."""

from __future__ import annotations

import hashlib
import json

import pytest

from backend import paths

SHIPPED = paths.SHIPPED_BASES / "default"
pytestmark = pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(),
                                reason=f"no shipped base model at {SHIPPED}")


def _manifest() -> dict:
    return json.loads((SHIPPED / "manifest.json").read_text(encoding="utf-8"))


def test_the_manifest_names_every_file_with_its_checksum_and_how_it_was_made():
    manifest = _manifest()
    on_disk = {p.name for p in SHIPPED.iterdir() if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (SHIPPED / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{name} differs from its manifest"
        assert len(data) == entry["bytes"]
    assert manifest["command"].startswith("python -m backend pretrain")
    assert len(manifest["code_commit"] or "") == 40
    assert manifest["recipe_code_modified_since_commit"] is False
    for key in ("seed", "corpus", "wall_time_s", "dev_perplexity", "params"):
        assert manifest[key] is not None, key
    assert (SHIPPED / "model.safetensors").stat().st_size <= 30 * 2**20
    assert not list(SHIPPED.glob("*.bin")) and not list(SHIPPED.glob("*.pt"))


def test_default_resolves_to_the_shipped_base_when_the_models_folder_has_none(models_root):
    from backend.modeling import resolve_base

    if (models_root / "base" / "default").is_dir():
        pytest.skip("this session built its own default base")
    assert resolve_base("default") == str(SHIPPED)


@pytest.mark.slow
def test_the_shipped_base_translates_english_into_msa_and_leans_to_msa_for_dialects():
    from backend.evaluation.evaluate import evaluate_base

    report = evaluate_base("default", split="test", dialects=["CAI", "RAB"], max_sentences=24, batch_size=24)
    assert report["msa"]["chrf"] >= 50, report["msa"]  # ENG -> MSA: it translates
    assert report["average"]["chrf"] >= 20  # MSA -> dialect: related text, not noise
