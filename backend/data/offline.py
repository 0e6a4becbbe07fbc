"""The offline corpus: parallel travel sentences in English, MSA and the 25 MADAR cities.

The tool must run on a fresh machine with no download, and the paper's idea should be
testable under control. So the project writes its own corpus: templates in the domain of
MADAR's BTEC (hotel, restaurant, directions, shopping, transport, health, time, family)
rendered from one semantic frame into English, MSA and each of the 25 city dialects of
`backend/varieties.py`. Close cities inherit from one another in the lexicon (Alexandria and
Aswan from Cairo, Sfax from Tunis, ...) and differ by their own markers.

Everything linguistic lives in `offline_lexicon.yaml` (illustrative, for a linguist to
correct); this module only renders it. The knob `msa_overlap` is the share of a dialect's
forms that it shares with MSA, decided per lexeme: each (dialect, lexeme) and each
(dialect, sentence pattern) gets one fixed uniform draw from a hash of the pair (not of the
frame, the seed or the knob), and the dialect uses the MSA form wherever that lexeme or
pattern appears iff the draw is below the knob. So a dialect is consistent across the
corpus (a word it shares with MSA is always shared), raising the knob only ever turns more
lexemes into MSA (overlap rises monotonically), and at 1.0 every dialect sentence is its
MSA sentence.

Pairs: ENG -> MSA for every frame (so the MSA trade-off can be measured), plus MSA -> each
dialect (`source="MSA"`, the default) or ENG -> each dialect (`source="ENG"`). A reference
is a function of (source, target variety): where two frames give the same source but
different targets for a variety, only the first is kept. Frames are split 80/10/10 into
train/dev/test; a sentence (source or target, any variety) that would appear in two splits
is kept only in the first (train, then dev, then test), so the splits share no sentence.
The same options always give the same corpus, byte for byte.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from backend import varieties
from backend.data.corpus import SPLITS, Pair, ParallelCorpus
from backend.data.normalize import normalize_arabic
from backend.errors import CorpusError

LEXICON_PATH = Path(__file__).with_name("offline_lexicon.yaml")
DIALECTS = ("ALE", "ALX", "ALG", "AMM", "ASW", "BAG", "BAS", "BEI", "BEN", "CAI", "DAM", "DOH", "FES",
            "JED", "JER", "KHA", "MOS", "MUS", "RAB", "RIY", "SAL", "SAN", "SFX", "TRI", "TUN")  # registry order
SOURCES = ("MSA", "ENG")
DEFAULT_SIZE = 3000  # frames; each gives one pair per dialect plus ENG -> MSA
DEFAULT_OVERLAP = 0.3
SPLIT_SHARES = (0.8, 0.1, 0.1)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)(?::([\w.$]*))?(?:@(\w+))?\}")
_SPACE = re.compile(r"\s+")
_BEFORE_PUNCT = re.compile(r"\s+([؟?.!,،])")
_TOKEN_PUNCT = re.compile(r"[؟?.!,،:;\"'()]")


# --------------------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class Frame:
    """One semantic frame: a template and the entry (or var value) chosen for each slot."""

    template: str
    values: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        return self.template + "|" + "|".join(f"{k}={v}" for k, v in self.values)

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.values if k == name), None)


class Lexicon:
    """The YAML file, indexed; `render` turns a frame into a sentence in one variety."""

    def __init__(self, data: dict[str, Any]):
        self.varieties: tuple[str, ...] = tuple(data["varieties"])
        self.parents: dict[str, str] = {str(k): str(v) for k, v in (data.get("inherit") or {}).items()}
        for child in self.parents:
            if child not in self.varieties or self.chain(child)[-1] not in self.varieties:
                raise ValueError(f"lexicon: inherit names an unknown variety for {child!r}")
        self.morph: dict[str, dict[str, Any]] = {}
        for v in ("ENG", *self.varieties):
            merged: dict[str, Any] = {}
            for ancestor in reversed(self.chain(v)):  # the parent's patterns, then the child's
                merged.update(data["morphology"].get(ancestor) or {})
            self.morph[v] = merged
        self.joins = [(re.compile(rx), rep) for rx, rep in data["orthography"]["joins"]]
        self.entries: dict[str, tuple[str, dict[str, Any]]] = {}
        for section, kind in (("words", "word"), ("nouns", "noun"), ("adjectives", "adj"), ("verbs", "verb")):
            for eid, entry in (data.get(section) or {}).items():
                if eid in self.entries:
                    raise ValueError(f"lexicon: entry {eid!r} is defined twice")
                self.entries[str(eid)] = (kind, entry)
        for city, forms in (data.get("city_forms") or {}).items():  # an inheriting city's own forms
            for eid, value in forms.items():
                entry = self.entries[str(eid)][1]
                if city in entry:
                    raise ValueError(f"lexicon: {eid!r} gives {city} in its entry and in city_forms")
                entry[city] = value
        self.classes: dict[str, list[str]] = {k: [str(x) for x in v] for k, v in data["classes"].items()}
        self.templates: dict[str, dict[str, Any]] = data["templates"]
        self._frames: dict[str, list[Frame]] = {}
        self._slot_names: dict[str, tuple[str, ...]] = {}
        self._forms: dict[tuple[str, str, str, str], str] = {}
        self._patterns: dict[tuple, list] = {}

    def chain(self, variety: str) -> tuple[str, ...]:
        """The variety, then the varieties it inherits from (ALX -> CAI), nearest first."""
        out = [variety]
        while out[-1] in self.parents:
            out.append(self.parents[out[-1]])
            if len(out) > len(self.varieties) + 1:
                raise ValueError(f"lexicon: inherit loops at {variety!r}")
        return tuple(out)

    def lexemes(self, frame: Frame) -> dict[str, str]:
        """Slot name -> lexeme id for every placeholder of the frame's Arabic patterns
        (a slot filled by the frame, or a fixed word such as {where})."""
        values = dict(frame.values)
        return {name: values.get(name, name) for name in self.slot_names(frame.template)}

    # ------------------------------------------------------------------ frames

    def frames(self, tid: str) -> list[Frame]:
        if tid not in self._frames:
            t = self.templates[tid]
            var_names = sorted(t.get("vars") or {})
            var_lists = [[str(x) for x in t["vars"][n]] for n in var_names]
            alternatives = t["slots"] if isinstance(t["slots"], list) else [t["slots"]]
            seen: dict[Frame, None] = {}
            for alt in alternatives:
                for var_values in product(*var_lists):
                    for assign in self._assignments(list(alt.items()), {}):
                        values = dict(zip(var_names, var_values))
                        values.update(assign)
                        seen.setdefault(Frame(tid, tuple(sorted(values.items()))), None)
            self._frames[tid] = list(seen)
        return self._frames[tid]

    def _assignments(self, slots: list[tuple[str, str]], done: dict[str, str]) -> Iterator[dict[str, str]]:
        if not slots:
            yield dict(done)
            return
        (name, spec), rest = slots[0], slots[1:]
        if spec.startswith("@"):
            spec = self.entries[done[spec[1:]]][1]["objects"]
        for eid in self.classes[spec]:
            done[name] = eid
            yield from self._assignments(rest, done)
        done.pop(name, None)

    def slot_names(self, tid: str) -> tuple[str, ...]:
        """Every placeholder name of a template's Arabic patterns: the slots the knob decides."""
        if tid not in self._slot_names:
            t = self.templates[tid]
            names = {m.group(1) for key, text in t.items() if key not in ("slots", "vars", "ENG")
                     for m in _PLACEHOLDER.finditer(str(text))}
            self._slot_names[tid] = tuple(sorted(names))
        return self._slot_names[tid]

    # ------------------------------------------------------------------ rendering

    def render(self, frame: Frame, variety: str, msa_slots: frozenset[str] = frozenset(),
               msa_pattern: bool = False) -> str:
        """The frame's sentence in `variety`; slots in `msa_slots` (and the pattern, if
        `msa_pattern`) are rendered in MSA instead."""
        pattern_variety = "MSA" if msa_pattern and variety not in ("MSA", "ENG") else variety
        values = dict(frame.values)
        mixed = variety not in ("MSA", "ENG")
        parts = []
        for token in self._tokens(frame, pattern_variety):
            if isinstance(token, str):
                parts.append(token)
                continue
            name, form, agree = token
            v = "MSA" if mixed and name in msa_slots else variety
            gender = "m"
            if agree:
                gender = self.gender(values[agree], "MSA" if mixed and agree in msa_slots else variety)
            if form == "obj":
                form = self.entries[values[self._object_of(frame.template, name)]][1]["object"]
            parts.append(self.form(values.get(name, name), v, form, gender))
        return self._finish("".join(parts), variety)

    def _tokens(self, frame: Frame, pattern_variety: str) -> list[str | tuple[str, str, str | None]]:
        """A template's pattern for one variety, vars filled, split into text and placeholders."""
        t = self.templates[frame.template]
        var_values = tuple((n, frame.get(n) or "") for n in sorted(t.get("vars") or {}))
        key = (frame.template, pattern_variety, var_values)
        if key not in self._patterns:
            pattern = next((t[v] for v in self.chain(pattern_variety) if v in t), None) or t["AR"]
            for name, value in var_values:
                pattern = pattern.replace("$" + name, value)
            tokens: list[str | tuple[str, str, str | None]] = []
            last = 0
            for m in _PLACEHOLDER.finditer(pattern):
                tokens.append(pattern[last:m.start()])
                tokens.append((m.group(1), m.group(2) or "", m.group(3)))
                last = m.end()
            tokens.append(pattern[last:])
            self._patterns[key] = tokens
        return self._patterns[key]

    def _object_of(self, tid: str, slot: str) -> str:
        t = self.templates[tid]
        alternatives = t["slots"] if isinstance(t["slots"], list) else [t["slots"]]
        for alt in alternatives:
            spec = alt.get(slot, "")
            if spec.startswith("@"):
                return spec[1:]
        raise ValueError(f"template {tid}: slot {slot!r} uses form 'obj' but is not '@verb'")

    def _finish(self, text: str, variety: str) -> str:
        if variety == "ENG":
            for rx, rep in self.morph["ENG"].get("rewrite", []):
                text = re.sub(rx, rep, text)
        elif "ـ" in text:  # every join involves a clitic marker
            for rx, rep in self.joins:
                text = rx.sub(rep, text)
        text = _BEFORE_PUNCT.sub(r"\1", _SPACE.sub(" ", text)).strip()
        if variety == "ENG" and self.morph["ENG"].get("capitalize") and text:
            text = text[0].upper() + text[1:]
        return text

    def _data(self, eid: str, variety: str, msa_fallback: bool) -> Any:
        kind, entry = self.entries[eid]
        for v in self.chain(variety):
            if v in entry:
                return entry[v]
        if variety not in ("MSA", "ENG") and "AR" in entry:
            return entry["AR"]
        if msa_fallback and variety != "ENG" and "MSA" in entry:
            return entry["MSA"]
        raise KeyError(f"lexicon: {kind} {eid!r} has no form for {variety}")

    def gender(self, eid: str, variety: str) -> str:
        kind, entry = self.entries[eid]
        if kind != "noun":
            return "m"
        d = self._data(eid, variety, msa_fallback=True)
        return (d.get("g") if isinstance(d, dict) else None) or entry.get("g", "m")

    def form(self, eid: str, variety: str, form: str, gender: str = "m") -> str:
        key = (eid, variety, form, gender)
        if key not in self._forms:
            kind = self.entries[eid][0]
            if kind == "noun":
                text = self._noun(eid, variety, form or "bare")
            elif kind == "adj":
                text = self._adjective(eid, variety, form, gender)
            elif kind == "verb":
                text = self._verb(eid, variety, form, gender)
            else:
                text = self._word(eid, variety, form, gender)
            self._forms[key] = text
        return self._forms[key]

    def _noun(self, eid: str, v: str, form: str) -> str:
        entry = self.entries[eid][1]
        d = self._data(eid, v, msa_fallback=True)
        d = {"n": d} if isinstance(d, str) else d
        if form in d:
            return str(d[form])
        m, n = self.morph[v], str(d["n"])
        if form == "bare":
            return n
        if form == "def":
            return _apply(m["definite"], n=n)
        if form == "indef":
            return n if d.get("mass", entry.get("mass", False)) else _apply(m["indefinite"], n=n)
        if form == "acc":
            return _apply(m["accusative"], indef=self._noun(eid, v, "indef"), n=n)
        if form == "this":
            return _apply(m["demonstrative"][self.gender(eid, v)], n=n, **{"def": self._noun(eid, v, "def")})
        if form.startswith("poss."):
            return _apply(m["possessive"][form[5:]], n=n, **{"def": self._noun(eid, v, "def")})
        raise KeyError(f"lexicon: unknown noun form {form!r} for {eid!r}")

    def _adjective(self, eid: str, v: str, form: str, gender: str) -> str:
        d = self._data(eid, v, msa_fallback=True)
        d = {"m": d} if isinstance(d, str) else d
        m = self.morph[v]

        def agreeing(g: str) -> str:
            if g in d:
                return str(d[g])
            return str(d["m"]) if g == "m" else _apply(m["adjective"][g], a=d["m"])

        if form == "negpred":
            g = gender if gender in ("m", "f") else "m"
            override = d.get(f"negpred.{g}")
            return str(override) if override else _apply(m["predicate_negation"][g], a=agreeing(g))
        return agreeing(form or gender)

    def _verb(self, eid: str, v: str, form: str, gender: str) -> str:
        d = self._data(eid, v, msa_fallback=False)
        if v == "ENG":
            return str(d[form])
        m = self.morph[v]
        *mods, person = form.split(".")
        if person == "3":
            person = "3f" if gender == "f" else "3m"
        if "ind" in mods:
            text = str(d.get(f"ind.{person}") or _apply(m["indicative"][person], s=d["stem"]))
        else:
            text = str(d[person]) if person in d else _apply(m["persons"][person], s=d["stem"])
        if "fut" in mods:
            text = _apply(m["future"], v=text)
        elif "negfut" in mods:
            text = _apply(m["neg_future"], v=text)
        elif "neg" in mods:
            text = _apply(m["negation"]["verb"], v=text)
        prep = d.get("prep")
        return f"{text} {prep}" if prep else text

    def _word(self, eid: str, v: str, form: str, gender: str) -> str:
        d = self._data(eid, v, msa_fallback=False)
        if form == "at":
            return _apply(self.morph[v]["at_hour"], h=d)
        if isinstance(d, str):
            return d
        if form.startswith("neg.") and form not in d:
            base = self._word(eid, v, form[4:], gender)
            return _apply(self.morph[v]["negation"][d.get("pos", "verb")], v=base)
        for key in (f"{form}_{gender}", form):
            if key in d:
                return str(d[key])
        raise KeyError(f"lexicon: word {eid!r} has no form {form!r} for {v}")


def _apply(pattern: str | dict[str, Any], **values: str) -> str:
    """Fill a morphology pattern; a dict pattern carries spelling rewrites to run after."""
    if isinstance(pattern, dict):
        text = pattern["pattern"].format(**values)
        for rx, rep in pattern.get("rewrite", []):
            text = re.sub(rx, rep, text)
        return text
    return pattern.format(**values)


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The parsed lexicon (read once per process)."""
    with open(LEXICON_PATH, encoding="utf-8") as f:
        data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Lexicon(data)


def frame_count() -> int:
    """How many distinct frames the templates allow: the largest possible `size`."""
    lex = lexicon()
    return sum(len(lex.frames(tid)) for tid in lex.templates)


# --------------------------------------------------------------------------- corpus


@cache
def msa_draw(variety: str, item: str) -> float:
    """The fixed uniform draw in [0, 1) that decides whether `variety` uses the MSA form of
    `item` (a lexeme id, or `template:<id>` for a sentence pattern). It depends on nothing
    else -- not the frame, not the seed, not the knob -- so the choice is lexical: the
    variety keeps the MSA form of `item` everywhere iff the draw is below `msa_overlap`."""
    return _uniforms(f"msa-overlap|{variety}|{item}", 1)[0]


def _decisions(lex: Lexicon, frame: Frame, variety: str, msa_overlap: float) -> tuple[frozenset[str], bool]:
    """Which slots of this dialect sentence take their MSA form (those whose lexeme the
    variety shares with MSA), and whether the sentence pattern does."""
    keep = frozenset(name for name, eid in lex.lexemes(frame).items() if msa_draw(variety, eid) < msa_overlap)
    return keep, msa_draw(variety, "template:" + frame.template) < msa_overlap


def _uniforms(key: str, n: int) -> list[float]:
    """n uniform numbers in [0, 1) from a string, the same on every machine and Python."""
    out: list[float] = []
    block = 0
    while len(out) < n:
        digest = hashlib.blake2b(f"{key}|{block}".encode(), digest_size=64).digest()
        out.extend(int.from_bytes(digest[i:i + 8], "big") / 2**64 for i in range(0, 64, 8))
        block += 1
    return out[:n]


def _dialect_sentence(lex: Lexicon, frame: Frame, variety: str, msa_overlap: float) -> str:
    keep, keep_pattern = _decisions(lex, frame, variety, msa_overlap)
    return lex.render(frame, variety, keep, keep_pattern)


def _select_frames(lex: Lexicon, size: int, seed: int) -> list[tuple[Frame, str]]:
    """`size` frames, balanced over templates, each with its split."""
    rng = random.Random(f"offline-frames|{seed}")
    pools = []
    for tid in lex.templates:
        pool = list(lex.frames(tid))
        rng.shuffle(pool)
        pools.append(pool)
    chosen: list[Frame] = []
    depth = 0
    while len(chosen) < size:
        for pool in pools:
            if depth < len(pool) and len(chosen) < size:
                chosen.append(pool[depth])
        depth += 1
    rng.shuffle(chosen)
    n_train = round(size * SPLIT_SHARES[0])
    n_dev = round(size * SPLIT_SHARES[1])
    splits = ["train"] * n_train + ["dev"] * n_dev + ["test"] * (size - n_train - n_dev)
    order = {s: i for i, s in enumerate(SPLITS)}
    return sorted(zip(chosen, splits), key=lambda fs: order[fs[1]])


def _check_options(msa_overlap: float, seed: int, size: int, source: str) -> tuple[float, int, int, str]:
    try:
        msa_overlap = float(msa_overlap)
        seed, size = int(seed), int(size)
    except (TypeError, ValueError):
        raise CorpusError(
            f"offline corpus: msa_overlap must be a number, seed and size whole numbers "
            f"(got {msa_overlap!r}, {seed!r}, {size!r})"
        ) from None
    if not 0.0 <= msa_overlap <= 1.0:
        raise CorpusError(f"offline corpus: msa_overlap must be between 0 and 1, not {msa_overlap:g}")
    if seed < 0:
        raise CorpusError(f"offline corpus: seed must be 0 or more, not {seed}")
    limit = frame_count()
    if not 10 <= size <= limit:
        raise CorpusError(f"offline corpus: size must be between 10 and {limit} frames, not {size}")
    source = str(source).strip().upper()
    if source == "EN":
        source = "ENG"
    if source not in SOURCES:
        raise CorpusError(f"offline corpus: source must be MSA or ENG, not {source!r}")
    return msa_overlap, seed, size, source


@lru_cache(maxsize=8)
def _generate(msa_overlap: float, seed: int, size: int, source: str) -> tuple[Pair, ...]:
    lex = lexicon()
    pairs: list[Pair] = []
    for index, (frame, split) in enumerate(_select_frames(lex, size, seed)):
        fid = f"offline-{index:05d}"
        eng = lex.render(frame, "ENG")
        msa = lex.render(frame, "MSA")
        pairs.append(Pair(f"{fid}-MSA", eng, "ENG", msa, "MSA", split))
        src, src_variety = (msa, "MSA") if source == "MSA" else (eng, "ENG")
        for variety in DIALECTS:
            target = _dialect_sentence(lex, frame, variety, msa_overlap)
            pairs.append(Pair(f"{fid}-{variety}", src, src_variety, target, variety, split))
    return tuple(_disjoint(_functional(pairs)))


def _functional(pairs: list[Pair]) -> list[Pair]:
    """Keep the reference a function of (source, target variety): when two frames give the
    same source but different targets for a variety, only the first (train first) is kept."""
    first: dict[tuple[str, str], str] = {}
    kept = []
    for p in pairs:
        if first.setdefault((p.source, p.target_variety), p.target) == p.target:
            kept.append(p)
    return kept


def _disjoint(pairs: list[Pair]) -> list[Pair]:
    """Drop pairs whose source or target already appears in an earlier split, and repeats."""
    owner: dict[str, str] = {}
    for p in pairs:  # claims are made split by split, train first
        if p.split == "train":
            owner.setdefault(p.source, "train")
            owner.setdefault(p.target, "train")
    kept: list[Pair] = []
    seen: set[tuple[str, str, str]] = set()
    for split in SPLITS:
        batch = [p for p in pairs if p.split == split]
        accepted = [p for p in batch if owner.get(p.source, split) == split and owner.get(p.target, split) == split]
        for p in accepted:
            owner.setdefault(p.source, split)
            owner.setdefault(p.target, split)
            key = (p.source, p.target, p.target_variety)
            if key not in seen:
                seen.add(key)
                kept.append(p)
    return kept


def generate_corpus(msa_overlap: float = DEFAULT_OVERLAP, seed: int = 0, size: int = DEFAULT_SIZE,
                    source: str = "MSA") -> ParallelCorpus:
    """The offline corpus for these options (cached: training and the app ask repeatedly).

    `size` counts frames; each gives an ENG -> MSA pair and one pair per dialect, so the
    default 3000 frames give about 30,000 pairs.
    """
    msa_overlap, seed, size, source = _check_options(msa_overlap, seed, size, source)
    name = f"offline:msa_overlap={msa_overlap:g},seed={seed},size={size},source={source}"
    return ParallelCorpus(name, list(_generate(msa_overlap, seed, size, source)))


@lru_cache(maxsize=16)
def _monolingual(variety: str, msa_overlap: float, seed: int, size: int, unused: bool) -> tuple[str, ...]:
    lex = lexicon()
    corpus = generate_corpus(msa_overlap, seed, size)
    held_out = {t for p in corpus.pairs if p.split != "train" for t in (p.source, p.target)}
    texts: dict[str, None] = {}
    for p in corpus.pairs:
        if p.split == "train":
            for text, v in ((p.source, p.source_variety), (p.target, p.target_variety)):
                if v == variety:
                    texts.setdefault(text, None)
    if unused:
        used = {f for f, _ in _select_frames(lex, size, seed)}
        for tid in lex.templates:
            for frame in lex.frames(tid):
                if frame in used:
                    continue
                if variety in ("MSA", "ENG"):
                    text = lex.render(frame, variety)
                else:
                    text = _dialect_sentence(lex, frame, variety, msa_overlap)
                if text not in held_out:
                    texts.setdefault(text, None)
    return tuple(texts)


def monolingual_text(variety: str, msa_overlap: float = DEFAULT_OVERLAP, seed: int = 0,
                     size: int = DEFAULT_SIZE, unused_frames: bool = True) -> list[str]:
    """Distinct sentences in one variety for pretraining, never a dev or test sentence.

    The train split's sentences of that variety come first; with `unused_frames` the frames
    the parallel corpus did not draw are rendered too, which gives MSA several thousand
    sentences more than the parallel train split, so a pretraining mixture can be mostly MSA.
    """
    code = varieties.code(variety)
    if code not in ("MSA", "ENG", *DIALECTS):
        raise CorpusError(f"the offline corpus has no {code}; it has MSA, ENG and {', '.join(DIALECTS)}")
    msa_overlap, seed, size, _ = _check_options(msa_overlap, seed, size, "MSA")
    return list(_monolingual(code, msa_overlap, seed, size, bool(unused_frames)))


# --------------------------------------------------------------------------- measurement


def _tokens(text: str) -> list[str]:
    return _TOKEN_PUNCT.sub(" ", normalize_arabic(text)).split()


def msa_token_overlap(corpus: ParallelCorpus) -> dict[str, float]:
    """Per dialect: mean share of a dialect sentence's tokens also found in its MSA sentence.

    The MSA sentence of a frame is the target of its ENG -> MSA pair, matched by the pair
    id's frame part (`offline-00042-CAI` -> `offline-00042`), so this works for both
    source sides.
    """
    msa_of = {p.id.rsplit("-", 1)[0]: p.target for p in corpus.pairs if p.target_variety == "MSA"}
    sums: dict[str, list[float]] = {}
    for p in corpus.pairs:
        msa = msa_of.get(p.id.rsplit("-", 1)[0])
        if p.target_variety == "MSA" or msa is None:
            continue
        tokens = _tokens(p.target)
        if not tokens:
            continue
        reference = set(_tokens(msa))
        share = sum(t in reference for t in tokens) / len(tokens)
        acc = sums.setdefault(p.target_variety, [0.0, 0])
        acc[0] += share
        acc[1] += 1
    return {v: s / n for v, (s, n) in sorted(sums.items())}
