"""A1111 prompt weighting and long prompts for diffusers pipelines.

diffusers cuts prompts at 77 tokens and reads ``(word:1.2)`` as plain text; people coming from A1111
expect both to work. This module reproduces A1111's attention parser (``prompt_parser``) and its CLIP
wrapper (``sd_hijack_clip``): 75-token chunks, per-token weights with the mean restored, and as many
chunks for every prompt and negative prompt of a batch. The result goes to the pipeline as
``prompt_embeds`` and friends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Final

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from transformers import PreTrainedTokenizerBase

from engine.errors import SettingsError

CHUNK_LENGTH: Final = 75
"""Prompt tokens per chunk; BOS and EOS around them make CLIP's 77."""

COMMA_BACKTRACK: Final = 20
"""A1111's default ``comma_padding_backtrack``: a chunk that fills up within this many tokens of a comma
is cut after the comma, so the words after it stay together in the next chunk."""

MAX_CHUNKS: Final = 8
"""Most 75-token chunks a prompt (or negative prompt) may take: 600 tokens, far beyond what CLIP
weighs usefully, while each chunk costs a text-encoder pass and longer cross-attention on every step
(a 2000-character prompt of BREAKs would be hundreds)."""

BREAK: Final = ("BREAK", -1.0)
"""The segment ``parse_prompt_attention`` emits for the word BREAK: start a new chunk here."""

_ATTENTION = re.compile(
    r"""
    \\[()\[\]\\]                                          # escaped bracket or backslash: literal
    | \\                                                  # any other backslash: dropped
    | \( | \[
    | :\s*(?P<weight>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)   # ":1.3)" closes a weighted group
    | \) | ]
    | [^\\()\[\]:]+
    | :
    """,
    re.X,
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")
_ROUND: Final = 1.1
_SQUARE: Final = 1 / 1.1

_Chunk = tuple[list[int], list[float]]
"""Token ids of one chunk (without BOS/EOS) and the weight of each."""


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into (segment, weight) pairs with A1111's emphasis syntax.

    ``(a)`` ×1.1, ``[a]`` ÷1.1, ``(a:w)`` ×w, ``\\(`` literal; unclosed brackets weight the rest of the
    text, unmatched closers are literal; neighbours of equal weight are merged; BREAK yields ``BREAK``.
    Two deliberate differences from A1111, where it would break: brackets do not scale BREAK (A1111 then
    encodes the literal word), and a malformed weight such as ``(a:.)`` is text instead of an exception.
    """
    texts: list[str] = []
    weights: list[float] = []
    round_opens: list[int] = []
    square_opens: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for i in range(start, len(weights)):
            if (texts[i], weights[i]) != BREAK:
                weights[i] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group("weight")
        if token.startswith("\\"):
            texts.append(token[1:])
            weights.append(1.0)
        elif token == "(":
            round_opens.append(len(texts))
        elif token == "[":
            square_opens.append(len(texts))
        elif weight is not None and round_opens:
            multiply(round_opens.pop(), float(weight))
        elif token == ")" and round_opens:
            multiply(round_opens.pop(), _ROUND)
        elif token == "]" and square_opens:
            multiply(square_opens.pop(), _SQUARE)
        else:
            for i, part in enumerate(_BREAK_WORD.split(token)):
                if i > 0:
                    texts.append(BREAK[0])
                    weights.append(BREAK[1])
                texts.append(part)
                weights.append(1.0)
    for start in round_opens:
        multiply(start, _ROUND)
    for start in square_opens:
        multiply(start, _SQUARE)

    merged: list[tuple[str, float]] = []
    for part in zip(texts, weights, strict=True):
        if merged and merged[-1][1] == part[1] and BREAK not in (merged[-1], part):
            merged[-1] = (merged[-1][0] + part[0], part[1])
        else:
            merged.append(part)
    return merged or [("", 1.0)]


@dataclass(frozen=True)
class PromptEmbeds:
    """Text conditioning for one pipeline call, one row per prompt; pooled ones only for SDXL."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        """The fields that are set, for ``pipe(**embeds.as_kwargs())``: SD pipelines reject pooled."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {name: value for name, value in values.items() if value is not None}


class PromptEncoder:
    """Encodes prompts with A1111 semantics for an SD 1.x/2.x or SDXL diffusers pipeline."""

    def __init__(self, pipe: DiffusionPipeline) -> None:
        self._pipe = pipe
        self._sdxl = "text_encoder_2" in pipe.components
        pairs = [(pipe.tokenizer, pipe.text_encoder)]
        if self._sdxl:
            pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
        # SDXL refiners have no first text encoder: they are conditioned on the second one only.
        self._encoders = [(tokenizer, model) for tokenizer, model in pairs if model is not None]
        self._tokenizer: PreTrainedTokenizerBase = self._encoders[0][0]
        # SDXL models saved with this flag want an all-zero negative conditioning for an empty negative
        # prompt; A1111 does that, diffusers only when no negative prompt is passed at all.
        self._zero_empty_negative = self._sdxl and bool(pipe.config.get("force_zeros_for_empty_prompt"))

    @torch.no_grad()
    def encode(self, prompts: list[str], negative_prompts: list[str]) -> PromptEmbeds:
        """Encode each prompt with its negative; every row gets the chunk count of the longest text."""
        if len(prompts) != len(negative_prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(negative_prompts)} negative prompts")
        rows = [self._chunks(text) for text in [*prompts, *negative_prompts]]
        count = max(len(chunks) for chunks in rows)
        padded = [chunks + [([], [])] * (count - len(chunks)) for chunks in rows]
        encoded = [self._encode_chunk([chunks[i] for chunks in padded]) for i in range(count)]
        embeds = torch.cat([hidden for hidden, _ in encoded], dim=1)
        pooled = encoded[0][1]  # A1111 takes the pooled embedding of the first chunk only
        size = len(prompts)
        positive, negative = embeds[:size], embeds[size:]
        if pooled is None:
            return PromptEmbeds(positive, negative)
        positive_pooled, negative_pooled = pooled[:size], pooled[size:]
        if self._zero_empty_negative:
            empty = torch.tensor([text == "" for text in negative_prompts], device=embeds.device)
            negative = negative.masked_fill(empty[:, None, None], 0.0)
            negative_pooled = negative_pooled.masked_fill(empty[:, None], 0.0)
        return PromptEmbeds(positive, negative, positive_pooled, negative_pooled)

    def _chunks(self, text: str) -> list[_Chunk]:
        return chunks(self._tokenizer, text)

    def _encode_chunk(self, batch: list[_Chunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states (batch, 77, features) of one chunk per row, and SDXL's pooled embedding."""
        device = self._pipe._execution_device
        weights = torch.tensor([[1.0, *w, *[1.0] * (CHUNK_LENGTH + 1 - len(w))] for _, w in batch])
        hiddens = []
        for tokenizer, model in self._encoders:
            ids = torch.tensor([_wrap(tokens, tokenizer) for tokens, _ in batch], device=device)
            output = model(ids, output_hidden_states=self._sdxl)
            # SD conditions on the last layer (final norm applied), SDXL on the penultimate one of each.
            hidden = output.hidden_states[-2] if self._sdxl else output.last_hidden_state
            hiddens.append(_emphasize(hidden, weights.to(hidden)))
        # SDXL's last encoder is the one with a projection: its text_embeds are the pooled embedding.
        pooled = output.text_embeds if self._sdxl else None
        return torch.cat(hiddens, dim=-1), pooled


def chunks(tokenizer: PreTrainedTokenizerBase, text: str) -> list[_Chunk]:
    """Weighted tokens of ``text`` in chunks of at most 75, like A1111's ``tokenize_line``."""
    parsed = parse_prompt_attention(text)
    comma_id = tokenizer.convert_tokens_to_ids(",</w>")
    comma = comma_id if isinstance(comma_id, int) and comma_id != tokenizer.unk_token_id else None
    # verbose=False: more than 77 tokens is expected here, the chunks take care of it.
    token_lists = tokenizer(
        [part for part, _ in parsed], add_special_tokens=False, verbose=False
    ).input_ids
    found: list[_Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1
    for ids, (part, weight) in zip(token_lists, parsed, strict=True):
        if (part, weight) == BREAK:
            found.append((tokens, weights))
            tokens, weights, last_comma = [], [], -1
            continue
        for token in ids:
            if len(tokens) == CHUNK_LENGTH:
                near_comma = CHUNK_LENGTH - last_comma <= COMMA_BACKTRACK and token != comma
                cut = last_comma + 1 if near_comma else CHUNK_LENGTH
                found.append((tokens[:cut], weights[:cut]))
                tokens, weights, last_comma = tokens[cut:], weights[cut:], -1
            if token == comma:
                last_comma = len(tokens)
            tokens.append(token)
            weights.append(weight)
    if tokens or not found:
        found.append((tokens, weights))
    return found


def chunk_count(tokenizer: PreTrainedTokenizerBase, prompt: str, negative_prompt: str) -> int:
    """The chunks a job's conditioning takes (its prompt and negative prompt are padded to the longer
    one), refused beyond ``MAX_CHUNKS``. Jobs batch only with equal counts: padding a prompt with
    empty chunks changes its picture."""
    count = max(len(chunks(tokenizer, prompt)), len(chunks(tokenizer, negative_prompt)))
    if count > MAX_CHUNKS:
        raise SettingsError(
            f"The prompt is too long: it takes {count} chunks of {CHUNK_LENGTH} tokens (each BREAK "
            f"starts a new one), and this bot takes at most {MAX_CHUNKS}. Shorten the prompt or the "
            "negative prompt, or use fewer BREAKs."
        )
    return count


def _wrap(tokens: list[int], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """BOS + tokens + EOS, padded to 77 with the tokenizer's pad token (EOS for CLIP-L, as in A1111)."""
    padding = [tokenizer.pad_token_id] * (CHUNK_LENGTH - len(tokens))
    return [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id, *padding]


def _emphasize(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token by its weight, then restore each row's mean as A1111 does.

    The mean is taken per row, not over the batch as in A1111, so batching jobs together does not
    change any one of them.
    """
    original = hidden.mean(dim=(1, 2), keepdim=True)
    weighted = hidden * weights.unsqueeze(-1)
    new = weighted.mean(dim=(1, 2), keepdim=True)
    # A mean of ~0 (possible right after a LayerNorm without bias) has nothing to restore; dividing
    # by it would turn the whole prompt into NaN.
    usable = new.abs() > torch.finfo(new.dtype).eps
    return weighted * torch.where(usable, original / torch.where(usable, new, 1), 1)
