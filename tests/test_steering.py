"""backend.steering (hooks, project, vector, the cache), generate/evaluate --steer, experiment arms."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest
import torch

from backend import compare, demo, steering
from backend.arms import parse_arms
from backend.errors import UserError
from backend.modeling import format_prompt, generate, load_base

TINY = demo.DemoOptions.tiny()
PROMPTS = [format_prompt("أريد أن أشرب القهوة الآن", "MSA", "CAI"), format_prompt("أين المحطة", "MSA", "BEI")]
TARGETS = ["CAI", "BEI"]
FAST = steering.EstimateSettings(per_variety=8, updates=3, probe_steps=5, tokens_per_update=128)


@pytest.fixture(scope="module")
def tiny(tiny_base):
    model, tok = load_base("tiny", device="cpu")
    return model, tok


def _synthetic(model, layers, rank: int = 4, scale: float = 1.0, seed: int = 0) -> steering.SteeringData:
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(seed)
    bases = {x: torch.linalg.qr(torch.randn(d, rank, generator=g))[0] for x in layers}
    means = {x: {v: torch.randn(d, generator=g) * scale for v in ("MSA", "CAI", "BEI")} for x in layers}
    return steering.SteeringData(list(layers), bases, means, "synthetic")


def _hook_ids(model) -> list[set[int]]:
    return [set(m._forward_hooks) for m in steering.layer_modules(model).values()]


def test_specs_and_arms_are_checked():
    assert steering.parse_layers("3, 4,3") == (3, 4)
    assert steering.SteerSpec("project", 0.5, "3,4").slug() == "project-s0.5-L3-4"
    assert steering.SteerSpec("project", 1, [5]).slug(estimated=True) == "project-est-s1-L5"
    for bad in (("project", 1.5), ("vector", -1), ("shift", 1), ("project", "x")):
        with pytest.raises(UserError):
            steering.SteerSpec(*bad)
    with pytest.raises(UserError):
        steering.parse_layers("two")
    arms = parse_arms(["baseline", "decoupled", "base+vector@2", "decoupled+project",
                       {"name": "est", "system": "baseline", "steer": {"method": "project", "strength": 0.5},
                        "subspace": "estimate"}], {"project": {"strength": 0.75, "layers": [3]}})
    assert [a.name for a in arms] == ["baseline", "decoupled", "base+vector@2", "decoupled+project", "est"]
    assert arms[2].steer.strength == 2.0 and arms[3].steer == steering.SteerSpec("project", 0.75, (3,))
    for bad in (["decoupled"], ["baseline", "baseline"], ["baseline", "nothing+vector"], ["baseline", "base+shift"]):
        with pytest.raises(UserError):
            parse_arms(bad)


def test_hooks_see_exactly_the_hidden_states_the_probe_uses(tiny):
    model, tok = tiny
    modules = steering.layer_modules(model)
    assert sorted(modules) == list(range(1, model.config.num_hidden_layers + 1))
    seen, handles = {}, []
    for layer, module in modules.items():
        handles.append(module.register_forward_hook(
            lambda mod, args, out, layer=layer: seen.__setitem__(layer, out[0] if isinstance(out, tuple) else out)))
    try:
        out = model(**tok(PROMPTS[0], return_tensors="pt"), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    for layer in modules:
        assert torch.equal(seen[layer], out.hidden_states[layer]), layer


@pytest.mark.parametrize("method", ["project", "vector"])
def test_strength_zero_gives_identical_tokens(tiny, method):
    model, tok = tiny
    data = _synthetic(model, [1, 2, 3], scale=20.0)
    plain = generate(model, tok, PROMPTS, max_new_tokens=12)
    zero = steering.Steerer(steering.SteerSpec(method, 0.0), data).generate(model, tok, PROMPTS, TARGETS,
                                                                           max_new_tokens=12)
    assert zero == plain
    if method == "vector":  # the hooks do act: a large vector changes the output
        strong = steering.Steerer(steering.SteerSpec("vector", 4.0), data)
        assert strong.generate(model, tok, PROMPTS, TARGETS, max_new_tokens=12) != plain
    assert generate(model, tok, PROMPTS, max_new_tokens=12) == plain  # nothing stays hooked


def test_projection_operator_shrinks_the_subspace_component_by_one_minus_s(tiny):
    model, _ = tiny
    data = _synthetic(model, [2])
    U, m = data.bases[2], data.centre(2, "CAI")
    x = torch.randn(5, 7, U.shape[0])
    for s in (0.0, 0.5, 1.0):
        y = steering._operator(data, steering.SteerSpec("project", s), 2, "CAI")(x)
        assert torch.allclose((y - m) @ U, (1 - s) * ((x - m) @ U), atol=1e-5)
        outside = torch.eye(U.shape[0]) - U @ U.T
        assert torch.allclose((y - x) @ outside, torch.zeros_like(x), atol=1e-5)  # nothing else moves
    assert steering._operator(data, steering.SteerSpec("project", 1.0), 2, "MSA") is None  # never on MSA


def _energy_during_generation(model, tok, steerer, target, positions="generated") -> dict[int, list[float]]:
    """Centred energy inside U at every steered position, read by a second hook on the same
    modules, registered after the steering hooks (so it sees their output)."""
    from backend.decoupling import overlap_energy

    modules = steering.layer_modules(model)
    energy: dict[int, list[float]] = {x: [] for x in steerer.layers}

    def measure(layer):
        U, m = steerer.data.bases[layer], steerer.data.centre(layer, target)

        def fn(mod, args, out):
            h = out[0] if isinstance(out, tuple) else out
            h = h if positions == "all" or h.shape[1] == 1 else h[:, -1:]
            energy[layer] += overlap_energy(h.reshape(-1, h.shape[-1]), U, m).tolist()
        return fn

    with steerer.hooks(model, target):
        handles = [modules[x].register_forward_hook(measure(x)) for x in steerer.layers]
        try:
            generate(model, tok, [PROMPTS[0]], max_new_tokens=8)
        finally:
            for h in handles:
                h.remove()
    return energy


def test_project_at_strength_one_leaves_no_energy_in_the_subspace(tiny):
    model, tok = tiny
    data = _synthetic(model, [1, 2, 3])
    for positions in ("generated", "all"):
        full = steering.Steerer(steering.SteerSpec("project", 1.0), data, positions=positions)
        energy = _energy_during_generation(model, tok, full, "CAI", positions)
        assert all(len(v) >= (2 if positions == "generated" else 10) for v in energy.values()), energy
        assert max(max(v) for v in energy.values()) < 1e-8, energy
    none = _energy_during_generation(model, tok, steering.Steerer(steering.SteerSpec("project", 0.0), data), "CAI")
    assert min(sum(v) / len(v) for v in none.values()) > 1e-3  # without steering there is energy to remove


def test_project_with_the_probes_own_estimate_on_the_bare_base(tiny):
    model, tok = tiny
    steerer = steering.prepare(model, tok, steering.SteerSpec("project", 1.0), base="tiny",
                               corpus_spec="offline:size=150", dialects=["CAI", "BEI", "RIY"],
                               settings=steering.EstimateSettings(per_variety=32, updates=10))
    assert steerer.layers == [2, 3] and "estimated on base tiny" in steerer.data.origin
    ranked = [x for x in steerer.layers if steerer.data.rank(x) > 0]
    assert ranked, "the probe found no MSA subspace on the tiny base"
    ranked_steerer = steering.Steerer(steerer.spec.with_layers(ranked), steerer.data)
    energy = _energy_during_generation(model, tok, ranked_steerer, "CAI")
    assert max(max(v) for v in energy.values()) < 1e-8
    vec = steerer.data.vector(2, "CAI")
    assert vec is not None and steerer.data.vector(2, "MSA") is None


def test_hooks_are_removed_when_generation_fails(tiny):
    model, tok = tiny
    before = _hook_ids(model)
    steerer = steering.Steerer(steering.SteerSpec("vector", 1.0), _synthetic(model, [1, 2, 3]))
    calls = {"n": 0}

    def explode(mod, args, out):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory, say")

    bomb = steering.layer_modules(model)[2].register_forward_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            steerer.generate(model, tok, PROMPTS, TARGETS, max_new_tokens=8)
    finally:
        bomb.remove()
    assert _hook_ids(model) == before
    with pytest.raises(UserError):  # a layer the model lacks: refused before anything is hooked
        with steering.hooks(model, steerer.data, steering.SteerSpec("vector", 1.0, (9,)), "CAI"):
            pass
    assert _hook_ids(model) == before


def test_cached_estimates_are_invalidated_when_the_base_or_the_corpus_changes(tiny, tiny_base, tmp_path):
    from backend.data import load_corpus

    model, tok = tiny
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    corpus = load_corpus("offline:size=150")
    kw = dict(adapter_dir=None, dialects=["CAI", "BEI"], layers=[2, 3], prompt_format="<{source_variety}> {source} "
              "<{target_variety}>", settings=FAST)

    def get(base_spec=str(base), spec="offline:size=150", c=corpus):
        steering._MEMO.clear()  # the disk cache, not this process's memo, is under test
        return steering.load_or_estimate(model, tok, base=base_spec, corpus_spec=spec, corpus=c, **kw)

    first = get()
    assert first.meta["cached"] is False and (steering.cache_dir() / first.meta["cache"]).is_file()
    again = get()
    assert again.meta["cached"] is True and again.meta["key"] == first.meta["key"]
    assert torch.equal(again.means[2]["CAI"], first.means[2]["CAI"])
    weights = next(base.glob("*.safetensors"))  # the base is rebuilt: its weight file changes
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt = get()
    assert rebuilt.meta["cached"] is False and rebuilt.meta["key"] != first.meta["key"]
    other = get(spec="offline:size=160", c=load_corpus("offline:size=160"))
    assert other.meta["cached"] is False and other.meta["key"] != rebuilt.meta["key"]
    edited = load_corpus("offline:size=150")  # the same spec, but the corpus's text changed
    edited.pairs = [dataclasses.replace(p, target=p.target + " يا") if p.target_variety == "CAI" else p
                    for p in edited.pairs]
    changed = get(c=edited)
    assert changed.meta["cached"] is False and changed.meta["key"] != rebuilt.meta["key"]
    assert get().meta["cached"] is True  # and the unchanged one is still there


# --- with trained runs: the demo pair ---------------------------------------------------------

@pytest.mark.slow
def test_a_runs_saved_subspace_and_the_cli(demo_pair, capsys):
    from backend.__main__ import main

    run = demo_pair.decoupled
    data = steering.from_run(run)
    assert data.layers == steering.run_layers(run) and set(data.means[data.layers[0]]) == {"MSA", "CAI", "BEI"}
    text = "أريد أن أشرب القهوة الآن"
    argv = ["generate", "--adapter", run.id, "--target", "CAI", "--text", text, "--text", "أين المحطة"]
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert main([*argv, "--steer", "project", "--strength", "0"]) == 0
    assert capsys.readouterr().out == plain  # strength 0 reproduces the unsteered output exactly
    assert main([*argv, "--steer", "vector", "--strength", "0", "--layers", "1,2"]) == 0
    assert capsys.readouterr().out == plain
    assert main([*argv, "--steer", "project", "--strength", "1"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "subspace.safetensors" in captured.err
    assert main([*argv, "--steer", "project", "--layers", "1"]) == 2  # outside the run's subspace
    assert "covers layers" in capsys.readouterr().err

    own = run.eval_path.read_bytes()
    assert main(["evaluate", run.id, "--steer", "vector", "--strength", "1", "--layers", "2", "--max-sentences", "3",
                 "--split", "dev"]) == 0
    assert "written to eval-steer-vector-s1-L2.json" in capsys.readouterr().out
    report = json.loads((run.dir / "eval-steer-vector-s1-L2.json").read_text(encoding="utf-8"))
    assert report["steering"]["method"] == "vector" and report["split"] == "dev"
    assert (run.dir / "outputs-steer-vector-s1-L2.jsonl").is_file()
    assert run.eval_path.read_bytes() == own  # the run's own evaluation is untouched
    assert run.damage() is None


@pytest.mark.slow
@pytest.mark.parametrize("steered", [False, True])
def test_run_evaluations_refuse_before_loading_a_model(demo_pair, tmp_path, steered):
    """Plain and steered evaluation of a run share their start (evaluation.load_run): a variety
    the run was not trained on, or a run without an adapter, is refused before any model is
    loaded and nothing is written."""
    from backend.arms import evaluate_run_steered
    from backend.evaluation.evaluate import evaluate_run
    from backend.runs import Run

    def evaluate(run: Run, **kw) -> dict:
        if steered:
            return evaluate_run_steered(run, steering.SteerSpec("vector", 1.0), **kw)
        return evaluate_run(run, **kw)

    said: list[str] = []
    with pytest.raises(UserError, match="not trained on TUN"):
        evaluate(demo_pair.decoupled, dialects=["TUN"], progress=said.append)
    bare = Run(tmp_path / demo_pair.decoupled.id)
    shutil.copytree(demo_pair.decoupled.dir, bare.dir)
    shutil.rmtree(bare.adapter_dir)
    before = sorted(p.name for p in bare.dir.iterdir())
    with pytest.raises(UserError, match="has no trained adapter yet"):
        evaluate(bare, progress=said.append)
    assert not [m for m in said if "loading" in m]
    assert sorted(p.name for p in bare.dir.iterdir()) == before


@pytest.mark.slow
def test_the_steered_row_joins_the_batched_comparison(demo_pair):
    pm = compare.load_pair_model(demo_pair, device="cpu")
    prompt = format_prompt("أريد أن أشرب القهوة الآن", "MSA", "CAI")
    three, batched = compare.generate_three(pm, prompt, max_new_tokens=10)
    spec = steering.SteerSpec("vector", 4.0, (1, 2))
    for system in ("decoupled", "base"):
        row = steering.for_pair(pm, spec, system, "CAI")
        four, batched4 = compare.generate_three(pm, prompt, max_new_tokens=10, steer=row)
        assert batched4 and four[:3] == three  # the other rows are not steered
        pm.mixed_batch = False
        try:
            assert compare.generate_three(pm, prompt, max_new_tokens=10, steer=row) == (four, False)
        finally:
            pm.mixed_batch = True
    result = compare.compare(pm, "أريد أن أشرب القهوة", "CAI", steer=steering.SteerSpec("project", 0.0))
    assert [o.system for o in result.outputs] == ["base", "baseline", "decoupled", "steered"]
    assert result.outputs[3].text == result.outputs[2].text  # strength 0: the decoupled output itself
    assert "Steered decoupled: project, s=0" in result.outputs[3].title


@pytest.mark.slow
def test_an_experiment_with_arms_gives_one_table(demo_pair):
    from backend.experiment import config_from_dict, results_markdown, run_experiment

    data = TINY.experiment_config().to_dict()
    data.update(name="arms-tiny", entanglement={"enabled": False},
                arms=["baseline", "decoupled", "base", "base+vector", "baseline+project", "decoupled+project@0.5"],
                steering={"vector": {"strength": 2.0, "layers": [2]}})
    data["evaluation"]["split"] = "dev"
    results = run_experiment(config_from_dict(data))
    table = results["arms"]
    assert [a["name"] for a in table["arms"]] == data["arms"] and table["reference"] == "baseline"
    by_name = {a["name"]: a for a in table["arms"]}
    assert by_name["baseline"]["average"]["delta"] is None
    for name in data["arms"][1:]:
        avg = by_name[name]["average"]
        assert avg["chrf"] is not None and avg["p_value"] is not None and 0 <= avg["p_value"] <= 1
        assert {r["variety"] for r in by_name[name]["rows"]} == {"CAI", "BEI"}
    assert by_name["base+vector"]["steering"]["layers"] == [2]
    assert by_name["decoupled+project@0.5"]["steering"]["origin"].endswith("subspace.safetensors")
    md = results_markdown(results)
    assert "## Arms" in md and "| decoupled+project@0.5 |" in md
    again = run_experiment(config_from_dict(data))  # everything cached: the same table
    assert [a["average"]["chrf"] for a in again["arms"]["arms"]] == [a["average"]["chrf"] for a in table["arms"]]
