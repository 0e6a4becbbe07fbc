"""Pretrain the embedded base model from scratch: `python -m backend pretrain`.

Nothing can be downloaded here, so the project builds its own stand-in for the pretrained
LLMs the paper studies: MSA-dominant, instruction-capable, weak in dialects. A base trained
on plain text alone never learns the prompt format and cannot translate, whatever adapter is
put on it, so the mixture holds four components, each a share of its characters (the
preset's `mix`):

    into_msa      translation examples into MSA, in the fine-tuning prompt format
                  (`<ENG> source <MSA> target`; for the offline corpus every frame the
                  templates allow, not only the parallel corpus's draw): "it translates"
    msa           plain MSA sentences
    into_dialect  a few translation examples into each dialect (`<MSA> source <CAI> ...`),
                  for the default base taken from an MSA-heavy rendering of the dialects
                  (the offline corpus at msa_overlap 0.8), as an LLM's dialect "translations"
                  mostly are
    dialect       a little plain dialect text (the real dialects)

so that the bare base writes good MSA and, asked for a dialect, keeps the content but
writes mostly MSA: the MSA pull that decoupling is meant to counter. Only the corpus's TRAIN split (and the extra
frames) feed it, and any sentence of its dev or test split is left out, so evaluation text
stays unseen.

Recipe, in order: mixture -> byte-level BPE tokenizer -> LlamaConfig from the preset ->
documents packed into full blocks (`<s> text </s> <s> prompt target </s> ...`, a translation
example tokenized exactly as `backend.examples.encode` does for fine-tuning) -> transformers
`Trainer` (AdamW, cosine schedule, bf16/fp16 autocast on a GPU) -> perplexity on the dev
split's text -> `save_pretrained` (safetensors) with the tokenizer, `pretrain.json` and
`manifest.json` (sha256 of every file, command, seed, corpus, code commit, wall time, dev
perplexity), written into a temporary sibling and renamed into `models/base/<name>/` at the
very end. The default base is shipped with the project in `models/base/default/`.
"""

from __future__ import annotations

import hashlib
import math
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
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
from backend.data import load_corpus
from backend.data.corpus import ParallelCorpus
from backend.data.offline import frame_count
from backend.data.sources import Spec
from backend.errors import CorpusError, UserError
from backend.examples import encode
from backend.modeling.atomic import atomic_dir
from backend.modeling.device import autocast_dtype, pick_device
from backend.modeling.tokenizer import PROMPT_FORMAT, format_prompt, train_tokenizer
from backend.runs import write_json_atomic
from backend.safety import is_local_name

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Preset:
    """Architecture, schedule and text mixture of one pretraining recipe."""

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
    # Share of the mixture's characters per component (see COMPONENTS); missing ones are 0.
    mix: tuple[tuple[str, float], ...] = (("into_msa", 0.55), ("msa", 0.25), ("into_dialect", 0.12),
                                          ("dialect", 0.08))
    eval_texts: int = 400
    source: str | None = None  # a default source of its own (replaces "offline")
    extra_source: str | None = None  # a second corpus whose text joins the mixture ...
    extra_components: tuple[str, ...] = ("into_msa", "msa", "into_dialect", "dialect")  # ... in these components
    # Where the translation examples into dialects come from, if not the corpus itself.
    dialect_examples: str | None = None
    description: str = ""

    def shares(self) -> dict[str, float]:
        return dict(self.mix)


# The mixture's components: translation examples into MSA (ENG -> MSA above all), plain MSA
# text, translation examples into a dialect, plain dialect text.
COMPONENTS = ("into_msa", "msa", "into_dialect", "dialect")
MAX_DIALECT_SHARE = 0.2  # "mostly MSA": dialect text is at most this share of the mixture's characters
PRESETS: dict[str, Preset] = {
    "tiny": Preset(1000, 64, 4, 4, 172, 128, steps=40, batch_size=8, block_size=64, learning_rate=3e-3,
                   warmup_steps=4, eval_texts=64, description="~0.25M params, seconds on a CPU; for tests"),
    "small": Preset(4000, 256, 6, 4, 688, 128, steps=1000, batch_size=32, block_size=128, learning_rate=2e-3,
                    warmup_steps=80, dialect_examples="offline:msa_overlap=0.8",
                    description="5.5M params, the shipped default base (models/base/default)"),
    "dial2msa": Preset(8000, 256, 6, 4, 688, 128, steps=600, batch_size=16, block_size=128,
                       learning_rate=2e-3, warmup_steps=40, source="csv:{shared}/dial2msa", extra_source="offline",
                       extra_components=("msa",), mix=(("msa", 0.6), ("into_dialect", 0.2), ("dialect", 0.2)),
                       description="6.8M params on Dial2MSA text + offline MSA"),
    "gpu-100m": Preset(16000, 768, 12, 12, 2048, 256, steps=3000, batch_size=64, block_size=256,
                       learning_rate=6e-4, warmup_steps=200, description="~97M params, for a GPU"),
}


@dataclass(frozen=True)
class Document:
    """One pretraining document: a translation example (with `prompt`) or plain text."""

    component: str
    text: str
    prompt: str | None = None
    variety: str = ""

    @property
    def chars(self) -> int:
        return len(self.text) + (len(self.prompt) + 1 if self.prompt else 0)


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
    return load_corpus(source)


def _extra_corpus(spec: str) -> ParallelCorpus:
    """More text for the mixture: for the offline corpus, every frame its templates allow
    (the parallel corpus draws only `size` of them); any other corpus as it is. Sentences of
    the evaluated corpus's dev and test splits are filtered out by `build_mixture`."""
    parsed = Spec.parse(spec)
    if parsed.kind == "offline":
        return _load(str(parsed.with_options(size=frame_count())))
    return _load(spec)


def _is_offline(spec: str) -> bool:
    return Spec.parse(spec).kind == "offline"


def _held_out(corpus: ParallelCorpus) -> set[str]:
    return {_clean(t) for p in corpus.pairs if p.split != "train" for t in (p.source, p.target)}


Source = tuple[ParallelCorpus, bool, tuple[str, ...]]  # (corpus, train split only, components it feeds)


def _pools(sources: list[Source], held_out: set[str], prompt_format: str) -> dict[str, list[Document]]:
    """Every usable document per component, each once, in source order. A pair whose source
    or target is held out gives nothing, not even its other side as plain text."""
    pools: dict[str, dict[tuple, Document]] = {c: {} for c in COMPONENTS}
    for corpus, train_only, components in sources:
        add = {c: pools[c] if c in components else {} for c in COMPONENTS}
        for p in corpus.pairs:
            if train_only and p.split != "train":
                continue
            src, tgt = _clean(p.source), _clean(p.target)
            sv, tv = _variety(p.source_variety), _variety(p.target_variety)
            if not src or not tgt or tv is None or sv is None or src in held_out or tgt in held_out:
                continue
            if tv.kind == "msa":
                kind, mono = "into_msa", "msa"
            elif tv.is_dialect:
                kind, mono = "into_dialect", "dialect"
            else:
                continue
            prompt = format_prompt(src, sv.code, tv.code, prompt_format)
            add[kind].setdefault((prompt, tgt), Document(kind, tgt, prompt, tv.code))
            add[mono].setdefault((tgt,), Document(mono, tgt, None, tv.code))
            if sv.kind == "msa":
                add["msa"].setdefault((src,), Document("msa", src, None, sv.code))
    return {c: list(d.values()) for c, d in pools.items()}


def build_mixture(corpus: ParallelCorpus, shares: dict[str, float], seed: int = 0,
                  extra: ParallelCorpus | None = None, prompt_format: str = PROMPT_FORMAT,
                  extra_components: tuple[str, ...] = COMPONENTS,
                  dialect_examples: ParallelCorpus | None = None) -> tuple[list[Document], dict[str, Any]]:
    """(documents, stats): the pretraining text, mixed by `shares` of characters.

    The first component of `shares` that has text sets the size: it is used whole, once;
    the others are drawn (shuffled by `seed`) up to their share, repeating a small pool when
    its share asks for more. Translation examples are written in the prompt format the fine-tuning uses, so the
    base learns it. Only the corpus's train split and `extra` feed the mixture, and any
    sentence found in the corpus's dev or test split is left out, so evaluation stays unseen.
    `extra` feeds only `extra_components`. With `dialect_examples`, the translation examples
    into a dialect come from that corpus alone (an MSA-heavy rendering of the dialects, say).
    """
    unknown = sorted(set(shares) - set(COMPONENTS))
    if unknown:
        raise UserError(f"unknown mixture components {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    held_out = _held_out(corpus)
    own = tuple(c for c in COMPONENTS if dialect_examples is None or c != "into_dialect")
    sources: list[Source] = [(corpus, True, own)]
    if extra is not None:
        sources.append((extra, False, tuple(c for c in extra_components if c in own)))
    if dialect_examples is not None:
        sources.append((dialect_examples, False, ("into_dialect",)))
    pools = _pools(sources, held_out, prompt_format)
    if not pools["msa"]:
        raise CorpusError("the corpus has no MSA text in its train split; the base model needs an MSA-dominant mixture")
    rng = random.Random(seed)
    chars = {c: sum(d.chars for d in pools[c]) for c in COMPONENTS}
    active = [c for c in shares if shares[c] > 0 and pools[c]]
    total_share = sum(shares[c] for c in active)
    budget = chars[active[0]] / shares[active[0]] * total_share
    docs: list[Document] = []
    taken: dict[str, dict[str, Any]] = {}
    for c in active:
        want = budget * shares[c] / total_share
        pool = list(pools[c])
        got, n, passes = 0, 0, 0
        while got < want:
            rng.shuffle(pool)
            pool = _round_robin(pool)  # a small share still covers every variety
            passes += 1
            for d in pool:
                if got >= want:
                    break
                docs.append(d)
                got += d.chars
                n += 1
        taken[c] = {"documents": n, "chars": got, "available": len(pool), "passes": passes}
    rng.shuffle(docs)
    all_chars = sum(t["chars"] for t in taken.values())
    dialect_chars = sum(len(d.text) for d in docs if d.component in ("into_dialect", "dialect"))
    per_variety: dict[str, int] = {}
    for d in docs:
        if d.component in ("into_dialect", "dialect"):
            per_variety[d.variety] = per_variety.get(d.variety, 0) + 1
    stats = {
        "components": {c: {**t, "share_chars": round(t["chars"] / all_chars, 4)} for c, t in taken.items()},
        "documents": len(docs),
        "dialect_share_chars": round(dialect_chars / all_chars, 4),
        "dialect_varieties": dict(sorted(per_variety.items())),
        "held_out_sentences": len(held_out),
        "extra_corpus": extra.name if extra is not None else None,
        "extra_components": list(extra_components) if extra is not None else None,
        "dialect_examples_corpus": dialect_examples.name if dialect_examples is not None else None,
    }
    return docs, stats


def _round_robin(docs: list[Document]) -> list[Document]:
    """The documents reordered one variety at a time (A B C A B C ...), each variety's own
    order kept."""
    by_variety: dict[str, list[Document]] = {}
    for d in docs:
        by_variety.setdefault(d.variety, []).append(d)
    queues = list(by_variety.values())
    out: list[Document] = []
    for i in range(max(map(len, queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


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


def _dev_texts(corpus: ParallelCorpus, limit: int, seed: int) -> tuple[str, list[tuple[str, bool]]]:
    """(split, [(text, is_msa)]): the dev split's sentences (test if there is no dev)."""
    for split in ("dev", "test"):
        msa, dialect = _texts(corpus, (split,))
        items = [(t, True) for t in sorted(msa)] + [(t, False) for t in sorted(dialect) if t not in msa]
        if items:
            random.Random(seed).shuffle(items)
            return split, items[:limit]
    return "", []


def _token_stream(tokenizer, docs: list[Document]) -> list[int]:
    """`<s> text </s>` per plain document, `<s> prompt target </s>` per translation example
    (token for token what `backend.examples.encode` gives fine-tuning), packed end to end."""
    stream: list[int] = []
    pairs = [d for d in docs if d.prompt]
    encoded = iter(encode(tokenizer, [d.prompt for d in pairs], [d.text for d in pairs], max_length=1 << 20))
    plain = iter(tokenizer([" " + d.text for d in docs if not d.prompt], add_special_tokens=False)["input_ids"])
    for d in docs:
        if d.prompt:
            stream += next(encoded)["input_ids"]
        else:
            stream += [tokenizer.bos_token_id, *next(plain), tokenizer.eos_token_id]
    return stream


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


MANIFEST = "manifest.json"
# The code whose change changes the model: recorded as clean or not in the manifest.
RECIPE_CODE = ("backend/pretrain.py", "backend/data", "backend/modeling/tokenizer.py", "backend/examples.py",
               "backend/varieties.py")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def manifest(folder: Path, info: dict[str, Any], command: str | None) -> dict[str, Any]:
    """How the model in `folder` was made, enough to check it and to make it again."""
    dirty = _git("status", "--porcelain", "--", *RECIPE_CODE)
    return {
        "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
                  for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST},
        "command": command or f"pretrain_base(name={info['name']!r}, preset={info['preset']!r}, seed={info['seed']})",
        "seed": info["seed"],
        "preset": info["preset"],
        "corpus": info["source"],
        "extra_corpus": info["extra_source"],
        "code_commit": _git("rev-parse", "HEAD"),
        "recipe_code_modified_since_commit": None if dirty is None else bool(dirty),
        "wall_time_s": info["wall_time_s"],
        "train_time_s": info["train_time_s"],
        "device": info["device"],
        "threads": info["threads"],
        "params": info["params"],
        "dev_perplexity": info["dev"].get("perplexity"),
        "dev_split": info["dev"].get("split"),
        "versions": info["versions"],
        "created": info["created"],
    }


def _resolve_source(source: str | ParallelCorpus, preset: Preset) -> str | ParallelCorpus:
    if preset.source is None or not (isinstance(source, str) and source == "offline"):
        return source
    src = preset.source.format(shared=paths.shared_data_dir())
    folder = Path(Spec.parse(src).target)
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
    command: str | None = None,
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
    extra_source = recipe.extra_source or (source if isinstance(source, str) and _is_offline(source) else None)
    extra = _extra_corpus(extra_source) if extra_source else None
    examples = _extra_corpus(recipe.dialect_examples) if recipe.dialect_examples else None
    docs, mixture = build_mixture(corpus, recipe.shares(), seed, extra, extra_components=recipe.extra_components,
                                  dialect_examples=examples)

    report({"stage": "tokenizer", "message": f"training a {recipe.vocab_size}-token BPE tokenizer"})
    tokenizer = train_tokenizer((" " + t for d in docs for t in (d.prompt, d.text) if t),
                                recipe.vocab_size, model_max_length=recipe.max_positions)
    stream = _token_stream(tokenizer, docs)
    mixture["tokens"] = len(stream)
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
        "extra_source": extra_source,
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
        write_json_atomic(tmp / MANIFEST, manifest(tmp, info, command))
        report({"stage": "save", "message": f"saving to {final}"})  # last chance to cancel
    report({"stage": "done", "path": str(final), "params": info["params"], "dev": dev_stats,
            "wall_time_s": info["wall_time_s"]})
    return final
