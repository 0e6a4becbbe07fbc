"""Corpus sources as users spell them, and the one call that loads any of them.

A source is a short string, so that the CLI's `--source`, a run's `config.json` and the
app's text box all name data the same way:

    offline                                   the embedded corpus, default options
    offline:msa_overlap=0.5,seed=1,size=3000,source=ENG
    madar:DIR?cities=CAI,BEI&source=ENG       MADAR v1.1 TSVs (source MSA by default)
    csv:PATH[,PATH...]?source_col=msa&target_col=tweet&variety=EGY&split=train&source_variety=MSA
    hub:OWNER/NAME?variety=GLF                a Hugging Face dataset, read as CSV/TSV/JSONL

Every kind also takes `dialects=CAI,BEI` (or a group such as EGY, which keeps its cities
too): only pairs whose target is listed are kept, so add MSA to keep the MSA rows.
Keyword options of `load_corpus` override those written in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend import varieties
from backend.data.corpus import ParallelCorpus
from backend.data.hub import load_hub
from backend.data.madar import load_madar
from backend.data.tabular import load_tabular
from backend.errors import CorpusError

CSV_OPTIONS = ("source_col", "target_col", "variety", "split", "source_variety")
OPTIONS: dict[str, tuple[str, ...]] = {
    "offline": ("msa_overlap", "seed", "size", "source"),
    "madar": ("cities", "source"),
    "csv": CSV_OPTIONS,
    "hub": CSV_OPTIONS,
}
COMMON_OPTIONS = ("dialects",)
USAGE = (
    "use offline[:msa_overlap=X,seed=N,size=N,source=MSA|ENG], madar:DIR[?cities=CAI,BEI&source=MSA|ENG], "
    "csv:PATH[,PATH...][?source_col=..&target_col=..&variety=..&split=..] or hub:OWNER/NAME"
)


@dataclass(frozen=True)
class Spec:
    """A parsed corpus source: the one place that knows each kind's syntax.

    `Spec.parse(text)` reads any spelling the module doc lists, `str(spec)` writes the
    canonical one back (`Spec.parse(str(spec)) == spec`), and `with_options` /
    `with_target` return changed copies, so no caller ever edits a spec string by hand
    (offline joins options with ',' after ':', the others with '&' after '?').
    """

    kind: str
    target: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Spec:
        """The Spec a source string names, or a one-line CorpusError."""
        return parse_spec(text)

    def __str__(self) -> str:
        items = [f"{k}={v}" for k, v in self.options.items()]
        if self.kind == "offline":
            return "offline:" + ",".join(items) if items else "offline"
        return f"{self.kind}:{self.target}" + ("?" + "&".join(items) if items else "")

    @property
    def paths(self) -> list[str]:
        """The file system parts of the target: madar's folder, csv's files (none otherwise)."""
        if self.kind == "madar":
            return [self.target]
        if self.kind == "csv":
            return [p.strip() for p in self.target.split(",")]
        return []

    def with_options(self, **options: Any) -> Spec:
        """A copy with `options` set (a value of None removes the option).

        Keys must be options of this kind; a value that the syntax could not carry (an
        '&' or '?' in madar/csv/hub, a ',' followed by '=' in offline) is refused rather
        than written into a spec that would read back differently.
        """
        merged = dict(self.options)
        for key, value in options.items():
            key = key.lower()
            _check_key(self.kind, key)
            if value is None:
                merged.pop(key, None)
                continue
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            if not text.strip():
                raise CorpusError(f"option {key!r} of the {self.kind} source has no value")
            merged[key] = text.strip()
        return self._checked(Spec(self.kind, self.target, merged))

    def with_target(self, target: str) -> Spec:
        """A copy naming another folder, file list or dataset id (offline has none)."""
        if self.kind == "offline":
            raise CorpusError("the offline source has no path or id to change")
        return self._checked(Spec(self.kind, target.strip(), dict(self.options)))

    def _checked(self, new: Spec) -> Spec:
        try:
            same = parse_spec(str(new)) == new
        except CorpusError:
            same = False
        if not same:
            raise CorpusError(f"{str(new)[:120]!r} cannot be written as a source of kind "
                              f"{self.kind}: a value holds a separator of its syntax (',', '&', '?' or '=')")
        return new


def _options(text: str, separators: str, kind: str) -> dict[str, str]:
    for sep in separators[1:]:
        text = text.replace(sep, separators[0])
    out: dict[str, str] = {}
    last = None
    for item in text.split(separators[0]):
        item = item.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq and last is not None and separators[0] == ",":
            out[last] += "," + item  # offline:dialects=CAI,BEI,seed=1 -> dialects=CAI,BEI
            continue
        if not eq or not key:
            raise CorpusError(f"option {item!r} of the {kind} source is not key=value; {USAGE}")
        if key in out:
            raise CorpusError(f"option {key!r} is given twice in the {kind} source")
        _check_key(kind, key)
        out[key] = value.strip()
        last = key
    return out


def _check_key(kind: str, key: str) -> None:
    allowed = (*OPTIONS[kind], *COMMON_OPTIONS)
    if key not in allowed:
        raise CorpusError(f"unknown option {key!r} for {kind} sources; valid options: {', '.join(allowed)}")


def parse_spec(spec: str) -> Spec:
    """Split a source string into kind, target (path or repo id) and options."""
    if not isinstance(spec, str) or not spec.strip():
        raise CorpusError(f"no corpus source given; {USAGE}")
    text = spec.strip()
    if "\n" in text or "\x00" in text:
        raise CorpusError(f"a corpus source is one line of text; {USAGE}")
    head, colon, rest = text.partition(":")
    kind = head.strip().lower()
    if kind.startswith("offline") and kind != "offline" and kind[len("offline"):].startswith("?"):
        kind, rest = "offline", text[len("offline"):]  # offline?seed=1
    if kind not in OPTIONS:
        raise CorpusError(f"unknown corpus source {text[:80]!r}; {USAGE}")
    if kind == "offline":
        return Spec("offline", "", _options(rest.lstrip("?"), ",&", kind))
    target, _, query = rest.partition("?")
    target = target.strip()
    if not target:
        what = {"madar": "a folder", "csv": "a file or folder", "hub": "a dataset id"}[kind]
        raise CorpusError(f"the {kind} source needs {what} after '{kind}:'; {USAGE}")
    return Spec(kind, target, _options(query, "&", kind))


def filter_dialects(corpus: ParallelCorpus, dialects: str | list[str] | tuple[str, ...]) -> ParallelCorpus:
    """Keep pairs whose target is listed; a group (EGY) also keeps its cities (CAI, ALX, ASW)."""
    codes = varieties.parse_list(list(dialects) if not isinstance(dialects, str) else dialects)
    if not codes:
        return corpus
    wanted: set[str] = set()
    for c in codes:
        wanted.add(c)
        wanted.update(varieties.get(c).members)
    kept = corpus.filter(targets=tuple(sorted(wanted)))
    if not kept.pairs:
        have = ", ".join(corpus.target_varieties()) or "none"
        raise CorpusError(f"{corpus.name} has no pairs for {', '.join(codes)}; its targets: {have}")
    return ParallelCorpus(corpus.name, kept.pairs)


def load_corpus(spec: str, **options: Any) -> ParallelCorpus:
    """Load any corpus the project supports from its source string (see the module doc)."""
    parsed = parse_spec(spec)
    merged: dict[str, Any] = dict(parsed.options)
    for key, value in options.items():
        if value is None:
            continue
        key = key.lower()
        _check_key(parsed.kind, key)
        merged[key] = value
    for key, value in merged.items():
        if isinstance(value, str) and not value.strip():
            raise CorpusError(f"option {key!r} of the {parsed.kind} source has no value")
    dialects = merged.pop("dialects", None)

    if parsed.kind == "offline":
        from backend.data.offline import generate_corpus  # lazy: yaml; spec checks stay light

        corpus = generate_corpus(**merged)
    elif parsed.kind == "madar":
        corpus = load_madar(parsed.target, cities=merged.get("cities"), source=merged.get("source", "MSA"))
    elif parsed.kind == "csv":
        corpus = load_tabular(parsed.paths, name=f"csv:{parsed.target}", **_as_str(merged))
    else:
        corpus = load_hub(parsed.target, **_as_str(merged))
    if dialects is not None:
        corpus = filter_dialects(corpus, dialects)
    return corpus


def _as_str(options: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in options.items()}
