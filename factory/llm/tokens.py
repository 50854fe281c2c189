"""Counting a prompt's tokens without asking the model: with its own tokenizer when it is here
(the embedded model's GGUF, or ``llm.tokenizer``: a GGUF file or a Hugging Face
``tokenizer.json``), else a stated approximation."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from factory.errors import InputError

# What a chat template adds around each message (role markers, separators): ChatML's
# <|im_start|>role\n ... <|im_end|>\n is four or five tokens; OpenAI documents about four.
TOKENS_PER_MESSAGE = 4
CHARACTERS_PER_TOKEN = 4  # English text in BPE vocabularies of today's models, on average


@dataclass(frozen=True)
class TokenCounter:
    """``count(text)``, and what it is (a tokenizer's file name, or the approximation)."""

    name: str
    count: Callable[[str], int]
    exact: bool

    def messages(self, messages: list[dict[str, str]]) -> int:
        """A chat prompt's tokens: each message's content, and the template's share around it."""
        return sum(self.count(str(message.get("content", ""))) + TOKENS_PER_MESSAGE for message in messages)


def approximate_count(text: str) -> int:
    return math.ceil(len(text) / CHARACTERS_PER_TOKEN)


APPROXIMATE = TokenCounter(f"about {CHARACTERS_PER_TOKEN} characters per token", approximate_count, exact=False)


def counter_for(tokenizer: str | Path | None) -> TokenCounter:
    """The counter of a tokenizer file (GGUF or ``tokenizer.json``), or the approximation."""
    if tokenizer is None:
        return APPROXIMATE
    return _file_counter(str(tokenizer))


@lru_cache(maxsize=4)
def _file_counter(path: str) -> TokenCounter:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: llm.tokenizer: no such file (a GGUF model or a tokenizer.json)")
    if file.suffix == ".json":
        from tokenizers import Tokenizer

        try:
            hf = Tokenizer.from_file(path)
        except Exception as exc:  # the library's own error types differ between versions
            raise InputError(f"{path}: llm.tokenizer: not a tokenizer.json ({exc})") from None
        return TokenCounter(file.name, lambda text: len(hf.encode(text, add_special_tokens=False).ids), exact=True)
    try:
        from llama_cpp import Llama
    except ImportError:  # the embedded extra is not installed: the approximation, said as such
        return APPROXIMATE
    # vocab_only reads the vocabulary and no weights
    try:
        # verbose=False would have llama-cpp-python open a /dev/null of its own and leave it to the
        # garbage collector; its chatter goes to the silenced descriptor instead
        with _native_stderr_silenced():
            vocab = Llama(model_path=path, vocab_only=True, verbose=True)
    except ValueError as exc:
        raise InputError(f"{path}: llm.tokenizer: not a GGUF model ({exc})") from None
    atexit.register(vocab.close)  # freed while llama.cpp's bindings still exist, not in the interpreter's teardown
    return TokenCounter(
        file.name, lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)), exact=True
    )


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """llama.cpp writes to file descriptor 2 from C whatever ``verbose`` says; its chatter is not
    the plan's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class SampledTotal:
    """A total over ``population`` items told from a seeded sample of ``sampled`` of them, and the
    half-width of its 95% interval (0 when every item was counted)."""

    total: float
    half_width: float
    sampled: int
    population: int


def sampled_total(population: int, size: int, seed: int, count: Callable[[list[int]], list[int]]) -> SampledTotal:
    """The total of ``count`` over items ``0..population-1``, counted on a seeded simple random
    sample of ``size`` of them (all, when there are no more), with the interval of its estimate
    (normal approximation, with the finite-population correction)."""
    chosen = (
        sorted(random.Random(seed).sample(range(population), size)) if population > size else list(range(population))
    )
    values = count(chosen)
    n = len(values)
    if not n:
        return SampledTotal(0.0, 0.0, 0, population)
    mean = sum(values) / n
    if n >= population:
        return SampledTotal(float(sum(values)), 0.0, n, population)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    correction = (population - n) / (population - 1)
    half_width = 1.959963984540054 * population * math.sqrt(variance / n * correction)
    return SampledTotal(mean * population, half_width, n, population)
