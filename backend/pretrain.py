"""Pretrain the embedded base model from scratch: `python -m backend pretrain`.

Nothing can be downloaded here, so the project builds its own stand-in for the
MSA-dominant pretrained LLMs the paper studies: a small Llama trained with a plain
causal-LM objective on a text mixture that is at least 80% MSA (by characters), the rest
dialect text, drawn from the corpus's TRAIN split only. Any sentence that also occurs in the
dev or test split is dropped from the mixture, so evaluation text stays unseen.

Recipe, in order: mixture -> byte-level BPE tokenizer -> LlamaConfig from the preset ->
sentences packed into full blocks (`<s> text </s> <s> text </s> ...`) -> transformers
`Trainer` (AdamW, cosine schedule, bf16/fp16 autocast on a GPU) -> perplexity on the dev
split's text -> `save_pretrained` (safetensors) with the tokenizer and `pretrain.json`,
written into a temporary sibling and renamed into `models/base/<name>/` at the very end.
"""

from __future__ import annotations

import math
import platform
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import transformers
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from backend import paths, varieties
from backend.data.corpus import ParallelCorpus
from backend.errors import CorpusError, UserError
from backend.modeling.atomic import atomic_dir
from backend.modeling.device import autocast_dtype, pick_device
from backend.modeling.tokenizer import train_tokenizer
from backend.runs import write_json_atomic
from backend.safety import is_local_name

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Preset:
    """Architecture and schedule of one pretraining recipe."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    steps: int
    batch_size: int
    block_size: int
    learning_rate: float
    warmup_steps: int
    msa_share: float = 0.85  # target share of MSA characters; the floor is MIN_MSA_SHARE
    eval_texts: int = 400
    source: str | None = None  # a default source of its own (replaces "offline")
    extra_msa: str | None = None  # a second corpus whose train MSA joins the mixture
    description: str = ""


MIN_MSA_SHARE = 0.8
PRESETS: dict[str, Preset] = {
    "tiny": Preset(1000, 64, 4, 4, 172, 128, steps=40, batch_size=8, block_size=64, learning_rate=3e-3,
                   warmup_steps=4, eval_texts=64, description="~0.25M params, seconds on a CPU; for tests"),
    "small": Preset(4000, 256, 6, 4, 688, 128, steps=150, batch_size=16, block_size=128, learning_rate=3e-3,
                    warmup_steps=15, description="5.2M params as built here (the trained vocabulary sets the exact size), the default base; 3 min 52 s on a 2-core CPU"),
    "dial2msa": Preset(8000, 256, 6, 4, 688, 128, steps=600, batch_size=16, block_size=128,
                       learning_rate=2e-3, warmup_steps=40, source="csv:{shared}/dial2msa", extra_msa="offline",
                       description="6.8M params on Dial2MSA text + offline MSA; 70 min on a 2-core CPU shared with two other jobs"),
    "gpu-100m": Preset(16000, 768, 12, 12, 2048, 256, steps=3000, batch_size=64, block_size=256,
                       learning_rate=6e-4, warmup_steps=200, description="~97M params, for a GPU"),
}


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def _variety(code: str) -> varieties.Variety | None:
    try:
        return varieties.get(code)
    except UserError:
        return None


def _load(source: str | ParallelCorpus) -> ParallelCorpus:
    if isinstance(source, ParallelCorpus):
        return source
    from backend.data import load_corpus  # the data layer; imported late to keep this module light

    return load_corpus(source)


def _is_offline(spec: str) -> bool:
    from backend.data import parse_spec

    return parse_spec(spec).kind == "offline"


def _monolingual_msa(spec: str) -> list[str]:
    """More MSA for the mixture: the offline corpus renders frames its parallel pairs did not
    draw (never a dev or test sentence); any other corpus gives its train split's MSA."""
    from backend.data import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind == "offline":
        from backend.data.offline import monolingual_text

        opts = {k: parsed.options[k] for k in ("msa_overlap", "seed", "size") if k in parsed.options}
        return monolingual_text("MSA", **opts)
    return list(_texts(_load(spec), ("train",))[0])


def _texts(corpus: ParallelCorpus, splits: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """Unique MSA and dialect sentences (text -> variety code) of the given splits."""
    msa: dict[str, str] = {}
    dialect: dict[str, str] = {}
    for p in corpus.pairs:
        if p.split not in splits:
            continue
        for text, code in ((p.source, p.source_variety), (p.target, p.target_variety)):
            v = _variety(code)
            text = _clean(text)
            if not text or v is None:
                continue
            if v.kind == "msa":
                msa.setdefault(text, v.code)
            elif v.is_dialect:
                dialect.setdefault(text, v.code)
    return msa, dialect


def build_mixture(
    corpus: ParallelCorpus, msa_share: float = 0.85, seed: int = 0, extra_msa: Iterable[str] = ()
) -> tuple[list[str], list[str], dict[str, Any]]:
    """(msa texts, dialect texts, stats): all train MSA, dialect text up to the share's budget.

    Dialect sentences are taken round-robin across dialects (each shuffled by `seed`), so a
    small budget still covers every dialect. `extra_msa` adds monolingual MSA sentences.
    Sentences found in the corpus's dev or test split are left out.
    """
    msa, dialect = _texts(corpus, ("train",))
    n_corpus_msa = len(msa)
    hm, hd = _texts(corpus, ("dev", "test"))
    held_out = set(hm) | set(hd)
    for t in extra_msa:
        t = _clean(t)
        if t:
            msa.setdefault(t, "MSA")
    n_extra = len(msa) - n_corpus_msa
    n_before = len(msa) + len(dialect)
    msa = {t: c for t, c in msa.items() if t not in held_out}
    dialect = {t: c for t, c in dialect.items() if t not in held_out and t not in msa}
    if not msa:
        raise CorpusError("the corpus has no MSA text in its train split; the base model needs an MSA-dominant mixture")
    rng = random.Random(seed)
    msa_texts = sorted(msa)
    rng.shuffle(msa_texts)
    msa_chars = sum(len(t) for t in msa_texts)
    budget = msa_chars * (1 - msa_share) / msa_share
    by_variety: dict[str, list[str]] = {}
    for t in sorted(dialect):
        by_variety.setdefault(dialect[t], []).append(t)
    queues = {}
    for code, texts in sorted(by_variety.items()):
        rng.shuffle(texts)
        queues[code] = iter(texts)
    chosen: list[str] = []
    chars = 0
    per_variety: dict[str, int] = dict.fromkeys(queues, 0)
    while queues:
        for code in list(queues):
            t = next(queues[code], None)
            if t is None:
                del queues[code]
            elif chars + len(t) <= budget:
                chosen.append(t)
                chars += len(t)
                per_variety[code] += 1
    stats = {
        "msa_texts": len(msa_texts),
        "msa_texts_added_monolingual": n_extra,
        "dialect_texts": len(chosen),
        "dialect_texts_available": len(dialect),
        "msa_share_chars": round(msa_chars / (msa_chars + chars), 4),
        "dialect_varieties": {k: v for k, v in per_variety.items() if v},
        "held_out_dropped": n_before - len(msa) - len(dialect),
    }
    return msa_texts, chosen, stats


def _dev_texts(corpus: ParallelCorpus, limit: int, seed: int) -> tuple[str, list[tuple[str, bool]]]:
    """(split, [(text, is_msa)]): the dev split's sentences (test if there is no dev)."""
    for split in ("dev", "test"):
        msa, dialect = _texts(corpus, (split,))
        items = [(t, True) for t in sorted(msa)] + [(t, False) for t in sorted(dialect) if t not in msa]
        if items:
            random.Random(seed).shuffle(items)
            return split, items[:limit]
    return "", []


class _Blocks(Dataset):
    """Full blocks of a packed token stream; labels are the inputs (the model shifts them)."""

    def __init__(self, stream: list[int], block_size: int) -> None:
        n = len(stream) // block_size
        self.data = torch.tensor(stream[: n * block_size], dtype=torch.long).view(n, block_size)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.data[i], "labels": self.data[i]}


class _Reporter(TrainerCallback):
    """Terminal progress bar, the loss curve for pretrain.json, and the caller's on_progress."""

    def __init__(self, steps: int, on_progress: Progress | None, start: float) -> None:
        self.steps, self.on_progress, self.start = steps, on_progress, start
        self.curve: list[dict[str, float]] = []
        self.bar = tqdm(total=steps, desc="pretrain", unit="step", disable=None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.curve.append({"step": state.global_step, "loss": round(float(logs["loss"]), 4)})
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}")

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(1)
        if self.on_progress is not None:
            self.on_progress({
                "stage": "train", "step": state.global_step, "steps": self.steps,
                "loss": self.curve[-1]["loss"] if self.curve else None,
                "elapsed": round(time.time() - self.start, 2),
            })

    def close(self) -> None:
        self.bar.close()


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[tuple[str, bool]], max_length: int, batch_size: int = 32) -> dict[str, Any]:
    """Per-token perplexity of `<s> text </s>` (each sentence alone), overall and MSA / dialect."""
    device = next(model.parameters()).device
    model.eval()
    sums = {True: [0.0, 0], False: [0.0, 0]}
    chars = 0
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        ids = [
            ([tokenizer.bos_token_id] + tokenizer(" " + t, add_special_tokens=False)["input_ids"]
             + [tokenizer.eos_token_id])[:max_length]
            for t, _ in batch
        ]
        width = max(len(x) for x in ids)
        inp = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(inp)
        for r, x in enumerate(ids):
            inp[r, : len(x)] = torch.tensor(x)
            mask[r, : len(x)] = 1
        inp, mask = inp.to(device), mask.to(device)
        logits = model(input_ids=inp, attention_mask=mask).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), inp[:, 1:].reshape(-1), reduction="none"
        ).view(len(ids), -1) * mask[:, 1:]
        for r, (text, is_msa) in enumerate(batch):
            sums[is_msa][0] += float(nll[r].sum())
            sums[is_msa][1] += int(mask[r, 1:].sum())
            chars += len(text) + 1
    total_nll = sums[True][0] + sums[False][0]
    total_tok = sums[True][1] + sums[False][1]

    def ppl(nll_sum: float, n: int) -> float | None:
        return round(math.exp(nll_sum / n), 3) if n else None

    return {
        "texts": len(texts),
        "tokens": total_tok,
        "perplexity": ppl(total_nll, total_tok),
        "perplexity_msa": ppl(*sums[True]),
        "perplexity_dialect": ppl(*sums[False]),
        "bits_per_char": round(total_nll / math.log(2) / chars, 4) if chars else None,
    }


def _resolve_source(source: str | ParallelCorpus, preset: Preset) -> str | ParallelCorpus:
    if preset.source is None or not (isinstance(source, str) and source == "offline"):
        return source
    src = preset.source.format(shared=paths.shared_data_dir())
    folder = Path(src.split(":", 1)[1])
    if not folder.is_dir():
        raise CorpusError(
            f"this preset reads {folder}, which is not there; put Dial2MSA under ../shared/data "
            "or pass --source"
        )
    return src


def pretrain_base(
    name: str = "default",
    source: str | ParallelCorpus = "offline",
    preset: str = "small",
    steps: int | None = None,
    seed: int = 0,
    on_progress: Progress | None = None,
) -> Path:
    """Pretrain a base model from scratch into models/base/<name>/ and return that folder.

    `source` is a corpus spec for `backend.data.load_corpus` or a ParallelCorpus. The folder
    appears only when everything is saved; an exception (from training, or raised by
    `on_progress` to cancel) leaves no trace of it.
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not is_local_name(name):
        raise UserError(f"invalid base model name {name!r}: use letters, digits, '-', '_', '.'")
    recipe = PRESETS[preset]
    if steps is not None:
        if steps < 1:
            raise UserError("steps must be at least 1")
        recipe = replace(recipe, steps=steps)
    report = on_progress or (lambda event: None)
    start = time.time()
    transformers.set_seed(seed)

    report({"stage": "data", "message": "loading the corpus"})
    source = _resolve_source(source, recipe)
    corpus = _load(source)
    extra_source = recipe.extra_msa or (source if isinstance(source, str) and _is_offline(source) else None)
    extra = _monolingual_msa(extra_source) if extra_source else []
    msa_texts, dialect_texts, mixture = build_mixture(corpus, recipe.msa_share, seed, extra)
    texts = msa_texts + dialect_texts
    random.Random(seed).shuffle(texts)

    report({"stage": "tokenizer", "message": f"training a {recipe.vocab_size}-token BPE tokenizer"})
    tokenizer = train_tokenizer((" " + t for t in texts), recipe.vocab_size, model_max_length=recipe.max_positions)
    msa_set = set(msa_texts)
    stream: list[int] = []
    msa_tokens = 0
    for t, ids in zip(texts, tokenizer([" " + t for t in texts], add_special_tokens=False)["input_ids"], strict=True):
        stream += [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        msa_tokens += (len(ids) + 2) if t in msa_set else 0
    mixture["msa_share_tokens"] = round(msa_tokens / max(1, len(stream)), 4)
    block = min(recipe.block_size, recipe.max_positions)
    dataset = _Blocks(stream, block)
    if len(dataset) == 0:
        raise CorpusError(f"the corpus gives only {len(stream)} tokens, less than one {block}-token block")

    device = pick_device()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=recipe.hidden, intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers, num_attention_heads=recipe.heads, num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.max_positions, tie_word_embeddings=True, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    amp = autocast_dtype(device)
    with tempfile.TemporaryDirectory(prefix="dd-pretrain-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=recipe.steps, per_device_train_batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate, lr_scheduler_type="cosine", warmup_steps=recipe.warmup_steps,
            weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0,
            logging_steps=max(1, recipe.steps // 50), logging_first_step=True,
            save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            seed=seed, data_seed=seed, bf16=amp == torch.bfloat16, fp16=amp == torch.float16,
            use_cpu=device.type == "cpu", dataloader_num_workers=0, remove_unused_columns=False,
        )
        reporter = _Reporter(recipe.steps, on_progress, start)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[reporter])
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        train_start = time.time()
        try:
            trainer.train()
        finally:
            reporter.close()
        train_time = time.time() - train_start

    report({"stage": "eval", "message": "perplexity on held-out text"})
    dev_split, dev = _dev_texts(corpus, recipe.eval_texts, seed)
    dev_stats = perplexity(model, tokenizer, dev, recipe.max_positions) if dev else {"texts": 0}
    dev_stats["split"] = dev_split or None

    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    final = paths.base_models_dir() / name
    tokens_seen = recipe.steps * recipe.batch_size * block
    info = {
        "name": name,
        "preset": preset,
        "source": source if isinstance(source, str) else f"corpus:{source.name}",
        "extra_msa_source": extra_source,
        "seed": seed,
        "params": model.num_parameters(),
        "architecture": {
            "type": "LlamaForCausalLM", "layers": recipe.layers, "hidden": recipe.hidden, "heads": recipe.heads,
            "intermediate": recipe.intermediate, "max_positions": recipe.max_positions,
            "vocab_size": len(tokenizer), "tied_embeddings": True,
        },
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "block_size": block,
        "learning_rate": recipe.learning_rate,
        "tokens_seen": tokens_seen,
        "corpus_tokens": len(stream),
        "epochs": round(tokens_seen / max(1, len(dataset) * block), 2),
        "mixture": mixture,
        "loss_curve": reporter.curve,
        "final_loss": reporter.curve[-1]["loss"] if reporter.curve else None,
        "dev": dev_stats,
        "train_time_s": round(train_time, 1),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "autocast": str(amp).replace("torch.", "") if amp else None,
        "threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "preset_recipe": asdict(recipe),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info["wall_time_s"] = round(time.time() - start, 1)
        write_json_atomic(tmp / "pretrain.json", info)
        report({"stage": "save", "message": f"saving to {final}"})  # last chance to cancel
    report({"stage": "done", "path": str(final), "params": info["params"], "dev": dev_stats,
            "wall_time_s": info["wall_time_s"]})
    return final
