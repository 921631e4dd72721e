"""Offline word properties of concept names, for breaking concept-alignment results down
(``vlalign.methods.concepts.breakdown``): word frequency and polysemy. No network is used.

* :func:`word_frequency`: Zipf frequency (log10 of occurrences per billion words) from the ``wordfreq``
  package, whose word lists ship inside its wheel.
* :func:`polysemy`: number of WordNet 3.0 synsets, read from the index files of the Debian package
  ``wordnet-base`` (``/usr/share/wordnet/index.{noun,verb,adj,adv}``); :data:`WORDNET_DIR`, overridable with
  the environment variable ``VLALIGN_WORDNET_DIR``. Returns None when the files are absent
  (:func:`wordnet_available`).
"""

from __future__ import annotations

import functools
import os
import string
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "WORDNET_DIR",
    "WORDNET_ENV",
    "WORDNET_POS_FILES",
    "word_frequency",
    "wordnet_dir",
    "wordnet_available",
    "wordnet_index",
    "polysemy",
]

WORDNET_ENV = "VLALIGN_WORDNET_DIR"
#: where Debian's ``wordnet-base`` installs the WordNet 3.0 database
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_POS_FILES = ("index.noun", "index.verb", "index.adj", "index.adv")


def _phrases(phrases: Iterable[str], name: str = "phrases") -> list[str]:
    if isinstance(phrases, str):
        raise ValueError(f"{name} must be an iterable of strings, not a single string")
    try:
        out = list(phrases)
    except TypeError as exc:
        raise ValueError(f"{name} must be an iterable of strings, got {type(phrases).__name__}") from exc
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(p).__name__}")
    return out


# --------------------------------------------------------------------------------------------------------------
# Frequency
# --------------------------------------------------------------------------------------------------------------


def word_frequency(phrases: Iterable[str], lang: str = "en", *, unknown: float = float("nan")) -> np.ndarray:
    """(n,) Zipf frequency of each phrase: ``wordfreq.zipf_frequency(phrase, lang)`` (wordlist 'best').

    A multi-word phrase is handled by wordfreq itself: it tokenizes the phrase (punctuation such as ':' is
    dropped) and combines the token frequencies f_i as 1 / f = sum_i 1 / f_i (then converts to Zipf), so a
    phrase is rarer than its rarest word. wordfreq returns 0.0 for a phrase it does not know (a token missing
    from its list, or nothing left after tokenization); that 0.0 is replaced by ``unknown``, NaN by default so
    that ``breakdown`` leaves such phrases out (pass ``unknown=0.0`` for wordfreq's own convention).
    """
    items = _phrases(phrases)
    if not isinstance(lang, str) or not lang:
        raise ValueError(f"lang must be a language code such as 'en', got {lang!r}")
    try:
        from wordfreq import zipf_frequency  # wordfreq (and its tokenizers) take ~0.3 s to import: lazy
    except ImportError as exc:  # pragma: no cover - it is a pinned dependency
        raise ImportError("word_frequency needs the 'wordfreq' package (requirements/base.txt)") from exc
    out = np.array([zipf_frequency(p, lang) for p in items], dtype=np.float64)
    out[out == 0.0] = unknown
    return out


# --------------------------------------------------------------------------------------------------------------
# Polysemy (WordNet 3.0 index files)
# --------------------------------------------------------------------------------------------------------------


def wordnet_dir() -> Path:
    """The WordNet folder: ``$VLALIGN_WORDNET_DIR`` if set, else :data:`WORDNET_DIR`."""
    env = os.environ.get(WORDNET_ENV)
    return Path(env) if env else WORDNET_DIR


def wordnet_available(directory: str | os.PathLike | None = None) -> bool:
    """True when all four index files (index.noun, index.verb, index.adj, index.adv) are in the folder."""
    d = Path(directory) if directory is not None else wordnet_dir()
    return all((d / f).is_file() for f in WORDNET_POS_FILES)


@functools.lru_cache(maxsize=4)
def _load_index(directory: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in WORDNET_POS_FILES:
        with open(Path(directory) / name, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line or line[0] == " ":  # the licence header lines start with two spaces
                    continue
                parts = line.split()
                if len(parts) < 3:
                    continue
                try:
                    n = int(parts[2])
                except ValueError:
                    continue
                counts[parts[0]] = counts.get(parts[0], 0) + n
    return counts


def wordnet_index(directory: str | os.PathLike | None = None) -> dict[str, int] | None:
    """lemma -> number of synsets summed over the four parts of speech (each index line is
    ``lemma pos synset_cnt ...``), or None when the files are absent. Cached per folder."""
    d = Path(directory) if directory is not None else wordnet_dir()
    if not wordnet_available(d):
        return None
    return _load_index(str(d.resolve()))


_STRIP = string.punctuation + "\u2019\u201c\u201d"


def _lemma(text: str) -> str:
    return "_".join(text.lower().split())


def polysemy(phrases: Iterable[str], *, directory: str | os.PathLike | None = None) -> np.ndarray | None:
    """(n,) WordNet 3.0 polysemy: the number of synsets (all parts of speech together) of each phrase.

    The phrase is looked up as one lemma first (lower case, runs of white space as '_', e.g. "ice cream" ->
    ``ice_cream``); if that is not listed, its last white-space-separated word is, with leading and trailing
    punctuation stripped ("flag: japan" -> ``japan``). No lemmatisation (WordNet's morphy) is done: "hands" is
    not found as "hand". NaN when neither is listed (not 0: every listed lemma has at least one synset).
    Returns None when the WordNet files are absent (see :func:`wordnet_available`).
    """
    items = _phrases(phrases)
    index = wordnet_index(directory)
    if index is None:
        return None
    out = np.full(len(items), np.nan)
    for i, p in enumerate(items):
        whole = _lemma(p)
        if whole in index:
            out[i] = index[whole]
            continue
        words = p.split()
        if words:
            last = _lemma(words[-1].strip(_STRIP))
            if last in index:
                out[i] = index[last]
    return out
