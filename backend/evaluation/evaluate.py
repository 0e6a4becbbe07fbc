"""Evaluate a run on a held-out split, and compare a baseline run with a decoupled one.

`evaluate_run` generates for every held-out pair of the run's varieties (the run's dialects,
plus MSA when the run trained on MSA targets and the split has some), then writes into the
run folder:

    outputs.jsonl   one line per sentence: id, variety, source, reference, hypothesis,
                    the identifier's label and confidence, sentence chrF++
    eval.json       per variety: chrF++, BLEU (normalised; raw beside), n, signatures,
                    fidelity and MSA leakage; the average over dialects; the identifier's
                    own accuracy on the split's references; generation settings and speed

`compare_runs` reads two evaluated runs and builds the paper's table: per variety baseline
and decoupled chrF++, delta, the paired-bootstrap p-value, BLEU, fidelity and leakage; the
macro average over dialects with a stratified bootstrap p-value; the MSA row apart.
`compare_seeds` builds the same table over several seeds (one pair of runs per seed): means,
sd over seeds, per-seed deltas, and p-values from the same stratified bootstrap with one
stratum per seed (per variety) or per (dialect, seed) (the average).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import paths, varieties
from backend.data import load_corpus
from backend.errors import RunError, UserError
from backend.evaluation import metrics
from backend.evaluation.identifier import DialectIdentifier, fidelity, labelled_texts
from backend.prompts import DEFAULT_FORMAT, Prompter
from backend.runs import Run, RunConfig, get_run, read_jsonl, write_json_atomic, write_text_atomic

Progress = Callable[[str], None]
OUTPUTS = "outputs.jsonl"
ROW_KEYS = ("baseline_chrf", "decoupled_chrf", "delta", "p_value", "baseline_bleu", "decoupled_bleu",
            "fidelity_baseline", "fidelity_decoupled", "msa_leakage_baseline", "msa_leakage_decoupled")


def _run(run_id_or_run: str | Run | Path) -> Run:
    if isinstance(run_id_or_run, Run):
        return run_id_or_run
    if isinstance(run_id_or_run, Path):
        return Run(run_id_or_run)
    return get_run(str(run_id_or_run))


# --- the identifier, trained once per corpus and cached -------------------------------------

def identifier_for(corpus, alpha: float = 0.1) -> tuple[DialectIdentifier, Path]:
    """The dialect identifier trained on `corpus`'s train split, cached under
    models/identifiers/ by a hash of that training text (so a changed corpus retrains)."""
    texts, labels = labelled_texts(corpus, "train")
    if not texts:
        raise UserError(f"{corpus.name} has no training text for the dialect identifier")
    h = hashlib.sha1(f"alpha={alpha}".encode())
    for t, y in zip(texts, labels):
        h.update(f"{y}\t{t}\n".encode())
    path = paths.models_dir() / "identifiers" / f"{h.hexdigest()[:16]}.json"
    if path.is_file():
        try:
            return DialectIdentifier.load(path), path
        except UserError:
            path.unlink(missing_ok=True)
    ident = DialectIdentifier(alpha=alpha).fit(texts, labels)
    ident.save(path)
    return ident, path


def identifier_accuracy(ident: DialectIdentifier, corpus, split: str, codes: Sequence[str] | None = None) -> dict:
    """The identifier's accuracy on the references (held-out text) of `split`."""
    texts, labels = labelled_texts(corpus, split)
    if codes is not None:
        keep = [i for i, y in enumerate(labels) if y in set(codes)]
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    report = ident.report(texts, labels)
    report.update(split=split, trained_on="train", labels=ident.labels)
    return report


# --- one run ------------------------------------------------------------------------------

def test_pairs(corpus, split: str, codes: Sequence[str], max_sentences: int | None = None) -> dict[str, list]:
    """Held-out pairs per target variety, in corpus order, at most `max_sentences` each."""
    out: dict[str, list] = {}
    for code in codes:
        pairs = [p for p in corpus.pairs if p.split == split and p.target_variety == code and p.target.strip()]
        if max_sentences:
            pairs = pairs[:max_sentences]
        if pairs:
            out[code] = pairs
    return out


def run_varieties(config, corpus, split: str, dialects: Sequence[str] | None = None) -> list[str]:
    codes = varieties.parse_list(dialects) if dialects else [d for d in varieties.parse_list(config.dialects)
                                                             if d != "MSA"]
    unknown = [c for c in codes if c not in varieties.parse_list(config.dialects)]
    if unknown:
        raise UserError(f"this run was not trained on {', '.join(unknown)}")
    if config.include_msa and any(p.split == split and p.target_variety == "MSA" for p in corpus.pairs):
        codes.append("MSA")
    return codes


@dataclass(frozen=True)
class LoadedRun:
    """A run's base + adapter, loaded, with the corpus and the varieties to evaluate it on."""

    config: RunConfig
    corpus: Any
    codes: list[str]
    model: Any
    tokenizer: Any


def load_run(run: Run, split: str = "test", dialects: Sequence[str] | None = None, corpus=None,
             progress: Progress | None = None) -> LoadedRun:
    """The start of every run evaluation, steered or not: a run without an adapter, or asked
    for varieties it was not trained on, is refused before any model is loaded."""
    from backend.modeling import load_adapter, load_base  # lazy: torch; eval.json readers stay light

    config = run.config()
    if not run.has_adapter():
        raise RunError(f"run {run.id} has no trained adapter yet (state: {run.state().get('state')})")
    corpus = corpus if corpus is not None else load_corpus(config.source)
    codes = run_varieties(config, corpus, split, dialects)
    (progress or (lambda message: None))(f"{run.id}: loading {config.base} + adapter")
    model, tokenizer = load_base(config.base)
    return LoadedRun(config, corpus, codes, load_adapter(model, run.adapter_dir, "adapter"), tokenizer)


def evaluate_run(run_id_or_run: str | Run | Path, split: str = "test", dialects: Sequence[str] | None = None,
                 max_sentences: int | None = None, batch_size: int = 16, max_new_tokens: int = 48,
                 num_beams: int = 1, seed: int = 0, corpus=None, progress: Progress | None = None) -> dict:
    """Generate on `split`, score, identify, and write eval.json + outputs.jsonl into the run."""
    say = progress or (lambda message: None)
    run = _run(run_id_or_run)
    loaded = load_run(run, split, dialects, corpus, say)
    config = loaded.config
    report, lines = evaluate_model(loaded.model, loaded.tokenizer, loaded.corpus, loaded.codes, split, label=run.id,
                                   prompt_format=config.prompt_format, max_sentences=max_sentences,
                                   batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                   seed=seed, progress=say)
    report = {"run": run.id, "method": config.method, "split": split, "source": config.source,
              "base": config.base, **report}
    write_text_atomic(run.dir / OUTPUTS, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    write_json_atomic(run.eval_path, report)
    run.log(f"evaluated on {split}: average chrF++ {_fmt(report['average']['chrf'])} over "
            f"{len(report['varieties']) - (report['msa'] is not None)} dialects")
    return report


def evaluate_base(base: str, source: str = "offline", split: str = "test", dialects: Sequence[str] | None = None,
                  max_sentences: int | None = None, batch_size: int = 16, max_new_tokens: int = 48,
                  num_beams: int = 1, seed: int = 0, corpus=None, progress: Progress | None = None) -> dict:
    """The same evaluation for a bare base model (no adapter): the starting point of every run.

    Varieties are `dialects` (default: every dialect of the corpus) plus MSA, whose pairs in
    the offline corpus are ENG -> MSA. Nothing is written; the report is returned.
    """
    from backend.modeling import load_base  # lazy: torch; eval.json readers stay light

    say = progress or (lambda message: None)
    corpus = corpus if corpus is not None else load_corpus(source)
    codes = varieties.parse_list(dialects) if dialects else list(dict.fromkeys(
        p.target_variety for p in corpus.pairs if p.target_variety not in ("MSA", "ENG")))
    codes = [c for c in codes if c != "MSA"] + ["MSA"]
    say(f"loading base {base}")
    model, tokenizer = load_base(base)
    report, _ = evaluate_model(model, tokenizer, corpus, codes, split, label=f"base {base}",
                               prompt_format=DEFAULT_FORMAT, max_sentences=max_sentences, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, num_beams=num_beams, seed=seed, progress=say)
    return {"run": None, "method": "base", "split": split, "source": corpus.name, "base": base, **report}


def evaluate_model(model, tokenizer, corpus, codes: Sequence[str], split: str, *, label: str, prompt_format: str,
                   max_sentences: int | None = None, batch_size: int = 16, max_new_tokens: int = 48,
                   num_beams: int = 1, seed: int = 0, progress: Progress | None = None,
                   steering=None) -> tuple[dict, list[dict]]:
    """(report, output lines) of a loaded model on `split` for the varieties `codes`.

    `steering` (a backend.steering.Steerer) generates with inference-time steering towards
    each pair's target variety; the report then says how (`steering`)."""
    from backend.modeling import generate  # lazy: torch; eval.json readers stay light

    say = progress or (lambda message: None)
    by_variety = test_pairs(corpus, split, codes, max_sentences)
    if not by_variety:
        raise UserError(f"{corpus.name} has no {split} pairs for {', '.join(codes)}")
    missing = [c for c in codes if c not in by_variety]

    say(f"{label}: dialect identifier")
    ident, ident_path = identifier_for(corpus)
    ident_report = identifier_accuracy(ident, corpus, split)

    pairs = [p for code in by_variety for p in by_variety[code]]
    prompter = Prompter(tokenizer, prompt_format)
    prompts = [prompter(p.source, p.source_variety, p.target_variety) for p in pairs]
    say(f"{label}: generating {len(prompts)} sentences ({', '.join(f'{c} {len(v)}' for c, v in by_variety.items())})")
    start = time.time()
    gen = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams, seed=seed)
    if steering is not None:
        hyps = steering.generate(model, tokenizer, prompts, [p.target_variety for p in pairs], **gen)
    else:
        hyps = generate(model, tokenizer, prompts, **gen)
    gen_time = time.time() - start

    say(f"{label}: scoring")
    labels = ident.predict(hyps)
    lines, results = [], {}
    i = 0
    for code, vpairs in by_variety.items():
        h, r, lab = hyps[i:i + len(vpairs)], [p.target for p in vpairs], labels[i:i + len(vpairs)]
        i += len(vpairs)
        scores = metrics.corpus_scores(h, r)
        results[code] = {"variety": code, "name": varieties.get(code).name, **scores, **fidelity(lab, code)}
        for p, hyp, lbl in zip(vpairs, h, lab):
            lines.append({"id": p.id, "variety": code, "source": p.source, "source_variety": p.source_variety,
                          "reference": p.target, "hypothesis": hyp, "label": lbl,
                          "label_p": None if lbl is None else round(ident.predict_proba(hyp)[lbl], 4),
                          "chrf": round(metrics.sentence_chrf(hyp, p.target), 3)})
    dialect_rows = [v for c, v in results.items() if c != "MSA"]
    average = {key: metrics.macro_average([v[key] for v in dialect_rows])
               for key in ("chrf", "bleu", "chrf_raw", "bleu_raw", "fidelity", "msa_leakage")}
    average["n"] = sum(v["n"] for v in dialect_rows)
    any_row = next(iter(results.values()))
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "signatures": {"chrf": any_row["chrf_signature"], "bleu": any_row["bleu_signature"],
                       "normalization": "backend.data.normalize.normalize_arabic on hypotheses and references"},
        "varieties": results, "average": average, "msa": results.get("MSA"),
        "missing_varieties": missing,
        "identifier": {**ident_report, "path": str(ident_path)},
        "generation": {"n": len(hyps), "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                       "num_beams": num_beams, "do_sample": False, "seed": seed, "max_sentences": max_sentences,
                       "seconds": round(gen_time, 2), "sentences_per_s": round(len(hyps) / max(gen_time, 1e-9), 2)},
    }
    if steering is not None:
        report["steering"] = steering.describe()
    return report, lines


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


# --- two runs -----------------------------------------------------------------------------

def _outputs(run: Run) -> dict[str, dict[str, dict]]:
    """variety -> pair id -> output line."""
    out: dict[str, dict[str, dict]] = {}
    for line in read_jsonl(run.dir / OUTPUTS):
        out.setdefault(line["variety"], {})[line["id"]] = line
    return out


def _aligned(base_out: dict[str, dict], dec_out: dict[str, dict], code: str) -> tuple[list, list, list]:
    ids = sorted(base_out)
    if set(ids) != set(dec_out):
        raise RunError(f"the two runs were evaluated on different {code} sentences; evaluate both the same way")
    return ([base_out[i]["hypothesis"] for i in ids], [dec_out[i]["hypothesis"] for i in ids],
            [base_out[i]["reference"] for i in ids])


def compare_runs(baseline_run: str | Run | Path, decoupled_run: str | Run | Path,
                 n_samples: int = metrics.N_BOOTSTRAP) -> dict:
    """The table: per variety, baseline vs decoupled, with paired bootstrap p-values."""
    base, dec = _run(baseline_run), _run(decoupled_run)
    be, de = base.eval(), dec.eval()
    for run, ev in ((base, be), (dec, de)):
        if ev is None:
            raise RunError(f"run {run.id} is not evaluated yet; run `python -m backend evaluate {run.id}`")
    if be["split"] != de["split"]:
        raise RunError(f"the runs were evaluated on different splits ({be['split']} and {de['split']})")
    bo, do = _outputs(base), _outputs(dec)
    codes = [c for c in be["varieties"] if c in de["varieties"]]
    rows, strata, bleu_strata = [], [], []
    for code in codes:
        b_h, d_h, refs = _aligned(bo.get(code, {}), do.get(code, {}), code)
        test = metrics.paired_bootstrap(b_h, d_h, refs, n_samples=n_samples)
        bv, dv = be["varieties"][code], de["varieties"][code]
        rows.append({
            "variety": code, "name": varieties.get(code).name, "n": len(refs),
            "baseline_chrf": test["chrf"]["baseline"], "decoupled_chrf": test["chrf"]["system"],
            "delta": test["chrf"]["delta"], "p_value": test["chrf"]["p_value"],
            "baseline_bleu": test["bleu"]["baseline"], "decoupled_bleu": test["bleu"]["system"],
            "bleu_p_value": test["bleu"]["p_value"],
            "baseline_ci": test["chrf"]["baseline_ci"], "decoupled_ci": test["chrf"]["system_ci"],
            "fidelity_baseline": bv["fidelity"], "fidelity_decoupled": dv["fidelity"],
            "msa_leakage_baseline": bv["msa_leakage"], "msa_leakage_decoupled": dv["msa_leakage"],
            "baseline_chrf_raw": bv.get("chrf_raw"), "decoupled_chrf_raw": dv.get("chrf_raw"),
        })
        if code != "MSA":
            strata.append((b_h, d_h, refs))
            bleu_strata.append((b_h, d_h, refs))
    signature = test["chrf"]["signature"] if rows else None
    bleu_signature = test["bleu"]["signature"] if rows else None
    dialect_rows = [r for r in rows if r["variety"] != "MSA"]
    average = None
    if dialect_rows:
        average = {"variety": "AVG", "name": "Average over dialects", "n": sum(r["n"] for r in dialect_rows)}
        for key in (*ROW_KEYS, "bleu_p_value", "baseline_chrf_raw", "decoupled_chrf_raw"):
            average[key] = metrics.macro_average([r[key] for r in dialect_rows])
        avg_test = metrics.paired_bootstrap_average(strata, "chrf", n_samples=n_samples)
        average["p_value"] = avg_test["p_value"]
        average["bleu_p_value"] = metrics.paired_bootstrap_average(bleu_strata, "bleu", n_samples=n_samples)["p_value"]
        average["p_value_method"] = "stratified paired bootstrap over dialects (macro average)"
    return {
        "split": be["split"], "bootstrap": n_samples,
        "runs": {"baseline": base.id, "decoupled": dec.id},
        "signatures": {"chrf": signature, "bleu": bleu_signature},
        "identifier_accuracy": be["identifier"]["accuracy"],
        "identifier": be["identifier"],
        "rows": dialect_rows,
        "average": average,
        "msa": next((r for r in rows if r["variety"] == "MSA"), None),
    }


# --- several seeds --------------------------------------------------------------------------

SEED_MEAN_KEYS = ("baseline_chrf", "decoupled_chrf", "delta", "baseline_bleu", "decoupled_bleu", "fidelity_baseline",
                  "fidelity_decoupled", "msa_leakage_baseline", "msa_leakage_decoupled", "baseline_chrf_raw",
                  "decoupled_chrf_raw")


def _sd(values: Sequence[float | None]) -> float | None:
    """Sample standard deviation (n - 1) over seeds; None with fewer than two values."""
    vals = [float(v) for v in values if v is not None]
    return float(statistics.stdev(vals)) if len(vals) >= 2 else None


def _seed_row(seed_rows: Sequence[dict], seeds: Sequence[int]) -> dict:
    """One variety's row over seeds: means, sd of the chrF++ scores and of the delta, the
    per-seed values (in seed order). The p-value is filled in by the caller."""
    first = seed_rows[0]
    row = {"variety": first["variety"], "name": first.get("name"), "n": first.get("n"), "seeds": list(seeds)}
    for key in SEED_MEAN_KEYS:
        row[key] = metrics.macro_average([r.get(key) for r in seed_rows])
    for key in ("baseline_chrf", "decoupled_chrf", "delta"):
        row[f"{key}_sd"] = _sd([r.get(key) for r in seed_rows])
    row["baseline_chrf_seeds"] = [r.get("baseline_chrf") for r in seed_rows]
    row["decoupled_chrf_seeds"] = [r.get("decoupled_chrf") for r in seed_rows]
    row["deltas"] = [r.get("delta") for r in seed_rows]
    return row


def compare_seeds(pairs: Sequence[tuple[str | Run | Path, str | Run | Path]], seeds: Sequence[int],
                  n_samples: int = metrics.N_BOOTSTRAP, tables: Sequence[dict] | None = None) -> dict:
    """The table over several seeds, one (baseline, decoupled) pair of runs per seed.

    Per variety: baseline and decoupled chrF++ as the mean over seeds with its sd and the
    per-seed values, the delta as the mean of the per-seed deltas (listed too), BLEU,
    fidelity and MSA leakage as means, and a paired bootstrap stratified over seeds (each
    seed's sentences resampled within themselves, the same indices for that seed's baseline
    and decoupled outputs). The average over dialects: means of the per-variety figures, the
    sd over seeds of the per-seed averages, and a paired bootstrap stratified over dialects
    AND seeds (one stratum per (dialect, seed); the statistic is the mean over strata of the
    corpus chrF++ difference). `tables` are the per-seed `compare_runs` results when the
    caller has them. One seed: that seed's `compare_runs` table as it is.
    """
    seeds = list(seeds)
    if len(pairs) != len(seeds) or not seeds:
        raise ValueError(f"{len(pairs)} pairs of runs for {len(seeds)} seeds")
    tables = list(tables) if tables is not None else [compare_runs(b, d, n_samples=n_samples) for b, d in pairs]
    if len(tables) == 1:
        return {**tables[0], "seeds": seeds}
    if len({t["split"] for t in tables}) > 1:
        raise RunError(f"the seeds' runs were evaluated on different splits ({', '.join(t['split'] for t in tables)})")
    runs = [(_run(b), _run(d)) for b, d in pairs]
    outputs = [(_outputs(b), _outputs(d)) for b, d in runs]
    by_seed = [{r["variety"]: r for r in [*t["rows"], *([t["msa"]] if t.get("msa") else [])]} for t in tables]
    codes = [c for c in by_seed[0] if all(c in other for other in by_seed[1:])]
    rows, strata = [], []  # (baseline, decoupled, references) per (dialect, seed)
    for code in codes:
        mine = []
        for (bo, do), seed in zip(outputs, seeds):
            b_h, d_h, refs = _aligned(bo.get(code, {}), do.get(code, {}), code)
            if mine and refs != mine[0][2]:
                raise RunError(f"seed {seed} was evaluated on other {code} sentences than seed {seeds[0]}; "
                               "evaluate every seed the same way")
            mine.append((b_h, d_h, refs))
        row = _seed_row([s[code] for s in by_seed], seeds)
        chrf = metrics.paired_bootstrap_average(mine, "chrf", n_samples=n_samples)
        row.update(p_value=chrf["p_value"], baseline_ci=chrf["baseline_ci"], decoupled_ci=chrf["system_ci"],
                   bleu_p_value=metrics.paired_bootstrap_average(mine, "bleu", n_samples=n_samples)["p_value"],
                   p_value_method="paired bootstrap stratified over seeds")
        rows.append(row)
        if code != "MSA":
            strata += mine
    dialect_rows = [r for r in rows if r["variety"] != "MSA"]
    average = None
    if dialect_rows:
        average = {"variety": "AVG", "name": "Average over dialects", "n": sum(r["n"] for r in dialect_rows),
                   "seeds": seeds}
        for key in SEED_MEAN_KEYS:
            average[key] = metrics.macro_average([r[key] for r in dialect_rows])
        seed_avgs = [t["average"] or {} for t in tables]
        for key in ("baseline_chrf", "decoupled_chrf", "delta"):
            average[f"{key}_sd"] = _sd([a.get(key) for a in seed_avgs])
        average["baseline_chrf_seeds"] = [a.get("baseline_chrf") for a in seed_avgs]
        average["decoupled_chrf_seeds"] = [a.get("decoupled_chrf") for a in seed_avgs]
        average["deltas"] = [a.get("delta") for a in seed_avgs]
        average["p_value"] = metrics.paired_bootstrap_average(strata, "chrf", n_samples=n_samples)["p_value"]
        average["bleu_p_value"] = metrics.paired_bootstrap_average(strata, "bleu", n_samples=n_samples)["p_value"]
        average["p_value_method"] = "paired bootstrap stratified over dialects and seeds (macro average)"
    first = tables[0]
    return {
        "split": first["split"], "bootstrap": n_samples, "seeds": seeds,
        "runs": first["runs"],  # the first seed's pair, as with one seed
        "runs_by_seed": [{"seed": s, **t["runs"]} for s, t in zip(seeds, tables)],
        "signatures": first["signatures"],
        "identifier_accuracy": first["identifier_accuracy"],
        "identifier": first["identifier"],
        "rows": dialect_rows,
        "average": average,
        "msa": next((r for r in rows if r["variety"] == "MSA"), None),
        "per_seed": [{"seed": s, "runs": t["runs"], "rows": t["rows"], "average": t["average"], "msa": t.get("msa")}
                     for s, t in zip(seeds, tables)],
    }
