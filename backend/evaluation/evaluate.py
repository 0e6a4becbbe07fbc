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
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backend import paths, varieties
from backend.errors import RunError, UserError
from backend.evaluation import metrics
from backend.evaluation.identifier import DialectIdentifier, fidelity, labelled_texts
from backend.runs import Run, get_run, read_jsonl, write_json_atomic, write_text_atomic

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


def evaluate_run(run_id_or_run: str | Run | Path, split: str = "test", dialects: Sequence[str] | None = None,
                 max_sentences: int | None = None, batch_size: int = 16, max_new_tokens: int = 48,
                 num_beams: int = 1, seed: int = 0, corpus=None, progress: Progress | None = None) -> dict:
    """Generate on `split`, score, identify, and write eval.json + outputs.jsonl into the run."""
    from backend.data import load_corpus
    from backend.modeling import format_prompt, generate, load_adapter, load_base

    say = progress or (lambda message: None)
    run = _run(run_id_or_run)
    config = run.config()
    if not run.has_adapter():
        raise RunError(f"run {run.id} has no trained adapter yet (state: {run.state().get('state')})")
    corpus = corpus if corpus is not None else load_corpus(config.source)
    codes = run_varieties(config, corpus, split, dialects)
    by_variety = test_pairs(corpus, split, codes, max_sentences)
    if not by_variety:
        raise UserError(f"{corpus.name} has no {split} pairs for {', '.join(codes)}")
    missing = [c for c in codes if c not in by_variety]

    say(f"{run.id}: dialect identifier")
    ident, ident_path = identifier_for(corpus)
    ident_report = identifier_accuracy(ident, corpus, split)

    say(f"{run.id}: loading {config.base} + adapter")
    model, tokenizer = load_base(config.base)
    model = load_adapter(model, run.adapter_dir, "adapter")
    pairs = [p for code in by_variety for p in by_variety[code]]
    prompts = [format_prompt(p.source, p.source_variety, p.target_variety, config.prompt_format) for p in pairs]
    say(f"{run.id}: generating {len(prompts)} sentences ({', '.join(f'{c} {len(v)}' for c, v in by_variety.items())})")
    start = time.time()
    hyps = generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                    num_beams=num_beams, seed=seed)
    gen_time = time.time() - start

    say(f"{run.id}: scoring")
    labels = ident.predict(hyps)
    lines, results = [], {}
    i = 0
    for code, vpairs in by_variety.items():
        h, r, lab = hyps[i:i + len(vpairs)], [p.target for p in vpairs], labels[i:i + len(vpairs)]
        i += len(vpairs)
        scores = metrics.corpus_scores(h, r)
        results[code] = {"variety": code, "name": varieties.get(code).name, **scores, **fidelity(lab, code)}
        for p, hyp, label in zip(vpairs, h, lab):
            lines.append({"id": p.id, "variety": code, "source": p.source, "source_variety": p.source_variety,
                          "reference": p.target, "hypothesis": hyp, "label": label,
                          "label_p": None if label is None else round(ident.predict_proba(hyp)[label], 4),
                          "chrf": round(metrics.sentence_chrf(hyp, p.target), 3)})
    dialect_rows = [v for c, v in results.items() if c != "MSA"]
    average = {key: metrics.macro_average([v[key] for v in dialect_rows])
               for key in ("chrf", "bleu", "chrf_raw", "bleu_raw", "fidelity", "msa_leakage")}
    average["n"] = sum(v["n"] for v in dialect_rows)
    any_row = next(iter(results.values()))
    report = {
        "run": run.id, "method": config.method, "split": split, "source": config.source, "base": config.base,
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
    write_text_atomic(run.dir / OUTPUTS, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    write_json_atomic(run.eval_path, report)
    run.log(f"evaluated on {split}: average chrF++ {_fmt(average['chrf'])} over {len(dialect_rows)} dialects")
    return report


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
