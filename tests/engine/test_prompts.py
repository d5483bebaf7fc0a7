"""A1111 prompt weighting: the parser against A1111's own examples, the encoder against diffusers.

The tiny pipelines' tokenizer makes every non-space character one token, so token counts are easy to
control; CLIP's causal attention means a token's hidden state depends only on the tokens before it in
its chunk, which lets the chunking tests compare against prompts split by hand with BREAK.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForInpainting, StableDiffusionXLInpaintPipeline
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image
from torch.testing import assert_close

from engine.prompts import BREAK, PromptEncoder, parse_prompt_attention
from tests.support.tiny_models import TINY_NATIVE_SIZE, build_tiny_sd, build_tiny_sdxl

SEED_PROMPT = "Ana de Armas, (emma watson:0.5), Liza Soberano"
LONG_WORDS = ["abcdefghij"[i % 10] for i in range(100)]
LONG_PROMPT = " ".join(LONG_WORDS)  # 100 one-character words: 100 tokens, two chunks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The examples of A1111's own docstring, with its exact floats.
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
        (SEED_PROMPT, [("Ana de Armas, ", 1.0), ("emma watson", 0.5), (", Liza Soberano", 1.0)]),
        ("((twice))", [("twice", 1.2100000000000002)]),
        ("[unbalanced", [("unbalanced", 1 / 1.1)]),
        ("(a:-1.5) b", [("a", -1.5), (" b", 1.0)]),
        ("(a: .5 ) b", [("a", 0.5), (" b", 1.0)]),
        ("a ) b ] c", [("a ) b ] c", 1.0)]),
        ("back\\\\slash", [("back\\slash", 1.0)]),
        # Prompt editing is not attention syntax: the attention parser reads it as a [group].
        ("[abc:0.5]", [("abc:0.5", 1 / 1.1)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_prompt_attention_follows_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_prompt_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
        ("BREAK a", [("", 1.0), BREAK, ("a", 1.0)]),
        ("a break b, aBREAK", [("a break b, aBREAK", 1.0)]),
        # Brackets do not scale BREAK (A1111 would then encode the word), and it never merges.
        ("(a BREAK b)", [("a", 1.1), BREAK, ("b", 1.1)]),
        ("(a BREAK b:-1)", [("a", -1.0), BREAK, ("b", -1.0)]),
    ],
)
def test_break_is_its_own_segment(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_prompt_attention(text) == expected


def test_malformed_weight_is_text_not_an_error() -> None:
    assert parse_prompt_attention("(a:.) b") == [("a:.", 1.1), (" b", 1.0)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"sd": build_tiny_sd(root / "sd"), "sdxl": build_tiny_sdxl(root / "sdxl")}


@pytest.fixture(scope="module")
def sd(folders: dict[str, Path]) -> DiffusionPipeline:
    return AutoPipelineForInpainting.from_pretrained(folders["sd"])


@pytest.fixture(scope="module")
def sdxl(folders: dict[str, Path]) -> DiffusionPipeline:
    return AutoPipelineForInpainting.from_pretrained(folders["sdxl"])


def diffusers_sd(pipe: DiffusionPipeline, text: str) -> torch.Tensor:
    """diffusers' own (truncating, unweighted) encoding of one prompt: (1, 77, hidden)."""
    with torch.no_grad():
        return pipe.encode_prompt(text, "cpu", 1, False)[0]


def token_count(pipe: DiffusionPipeline, text: str) -> int:
    return len(pipe.tokenizer(text, add_special_tokens=False).input_ids)


def test_unweighted_sd_prompts_match_diffusers(sd: DiffusionPipeline) -> None:
    prompts, negatives = ["a photo of a cat", "Ana de Armas"], ["", "blurry, lowres"]
    embeds = PromptEncoder(sd).encode(prompts, negatives)
    with torch.no_grad():
        expected, negative = sd.encode_prompt(prompts, "cpu", 1, True, negative_prompt=negatives)
    assert embeds.prompt_embeds.shape == (2, 77, 32)
    assert_close(embeds.prompt_embeds, expected)
    assert_close(embeds.negative_prompt_embeds, negative)
    assert embeds.pooled_prompt_embeds is None
    assert embeds.negative_pooled_prompt_embeds is None


@pytest.mark.parametrize(
    ("weighted", "plain", "prefix", "segment", "weight"),
    [
        ("a (cat:1.5)", "a cat", "a ", "cat", 1.5),
        (SEED_PROMPT, "Ana de Armas, emma watson, Liza Soberano", "Ana de Armas, ", "emma watson", 0.5),
        ("a [[dog]] runs", "a dog runs", "a ", "dog", 1 / 1.21),
    ],
)
def test_weight_scales_its_tokens_then_the_mean_is_restored(
    sd: DiffusionPipeline, weighted: str, plain: str, prefix: str, segment: str, weight: float
) -> None:
    encoder = PromptEncoder(sd)
    got = encoder.encode([weighted], [""]).prompt_embeds[0]
    unweighted = encoder.encode([plain], [""]).prompt_embeds[0]
    # BOS has weight 1: only the mean restore scales it, by the factor every token shares.
    scale = got[0] @ unweighted[0] / (unweighted[0] @ unweighted[0])
    start = 1 + token_count(sd, prefix)
    stop = start + token_count(sd, segment)
    expected = unweighted * scale
    expected[start:stop] *= weight
    assert_close(got, expected)
    assert_close(got.mean(), unweighted.mean())
    assert not torch.isclose(scale, torch.tensor(1.0))


def test_long_prompt_makes_two_chunks_and_the_negative_is_padded(sd: DiffusionPipeline) -> None:
    embeds = PromptEncoder(sd).encode([LONG_PROMPT], ["blurry"])
    assert embeds.prompt_embeds.shape == (1, 154, 32)
    assert embeds.negative_prompt_embeds.shape == (1, 154, 32)
    # diffusers truncates to the first 75 tokens: that is exactly the first chunk.
    assert_close(embeds.prompt_embeds[:, :77], diffusers_sd(sd, LONG_PROMPT))
    assert_close(embeds.prompt_embeds[:, 77:], diffusers_sd(sd, " ".join(LONG_WORDS[75:])))
    assert_close(embeds.negative_prompt_embeds[:, :77], diffusers_sd(sd, "blurry"))
    assert_close(embeds.negative_prompt_embeds[:, 77:], diffusers_sd(sd, ""))


def test_break_starts_a_new_chunk(sd: DiffusionPipeline) -> None:
    embeds = PromptEncoder(sd).encode(["a cat BREAK a dog"], [""])
    assert embeds.prompt_embeds.shape == (1, 154, 32)
    assert_close(embeds.prompt_embeds[:, :77], diffusers_sd(sd, "a cat"))
    assert_close(embeds.prompt_embeds[:, 77:], diffusers_sd(sd, "a dog"))
    # Like A1111, a leading BREAK leaves an empty first chunk and a trailing one adds nothing.
    leading = PromptEncoder(sd).encode(["BREAK a dog"], [""]).prompt_embeds
    trailing = PromptEncoder(sd).encode(["a dog BREAK"], [""]).prompt_embeds
    assert_close(leading, torch.cat([diffusers_sd(sd, ""), diffusers_sd(sd, "a dog")], dim=1))
    assert_close(trailing, diffusers_sd(sd, "a dog"))


def test_empty_prompts_make_one_empty_chunk(sd: DiffusionPipeline) -> None:
    embeds = PromptEncoder(sd).encode([""], [""])
    assert_close(embeds.prompt_embeds, diffusers_sd(sd, ""))
    assert_close(embeds.negative_prompt_embeds, diffusers_sd(sd, ""))


def test_a_full_chunk_is_cut_after_a_comma_within_20_tokens(sd: DiffusionPipeline) -> None:
    encoder = PromptEncoder(sd)

    def encode(text: str) -> torch.Tensor:
        return encoder.encode([text], [""]).prompt_embeds

    # 60 tokens, a comma, 30 tokens: the comma is 15 tokens before the end of the chunk.
    near = encode("x" * 60 + "," + " y" * 30)
    assert_close(near, encode("x" * 60 + ", BREAK" + " y" * 30))
    assert not torch.allclose(near, encode("x" * 60 + "," + " y" * 14 + " BREAK" + " y" * 16))
    # A comma 35 tokens before the end is too far back: the chunk is cut at 75 tokens.
    far = encode("x" * 40 + "," + " y" * 50)
    assert_close(far, encode("x" * 40 + "," + " y" * 34 + " BREAK" + " y" * 16))


def test_batch_rows_are_independent_and_share_the_chunk_count(sd: DiffusionPipeline) -> None:
    encoder = PromptEncoder(sd)
    batch = encoder.encode(["(a:1.3) cat", LONG_PROMPT], ["", "(ugly:1.2)"])
    short = encoder.encode(["(a:1.3) cat"], ["(ugly:1.2)"])
    assert batch.prompt_embeds.shape == batch.negative_prompt_embeds.shape == (2, 154, 32)
    assert_close(batch.prompt_embeds[:1, :77], short.prompt_embeds)
    assert_close(batch.prompt_embeds[:1, 77:], diffusers_sd(sd, ""))
    assert_close(batch.prompt_embeds[1:], encoder.encode([LONG_PROMPT], [""]).prompt_embeds)
    assert_close(batch.negative_prompt_embeds[1:, :77], short.negative_prompt_embeds)


def test_prompt_and_negative_counts_must_match(sd: DiffusionPipeline) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 negative"):
        PromptEncoder(sd).encode(["a", "b"], [""])


def test_embeddings_follow_the_text_encoder_dtype(folders: dict[str, Path]) -> None:
    pipe = AutoPipelineForInpainting.from_pretrained(folders["sd"], torch_dtype=torch.bfloat16)
    embeds = PromptEncoder(pipe).encode([SEED_PROMPT], [""])
    assert embeds.prompt_embeds.dtype == embeds.negative_prompt_embeds.dtype == torch.bfloat16


def test_unweighted_sdxl_prompts_match_diffusers(sdxl: DiffusionPipeline) -> None:
    prompts, negatives = ["a photo of a cat", "Ana de Armas"], ["", "blurry"]
    embeds = PromptEncoder(sdxl).encode(prompts, negatives)
    with torch.no_grad():
        expected = sdxl.encode_prompt(
            prompts, device="cpu", do_classifier_free_guidance=True, negative_prompt=negatives
        )
    got = embeds.as_kwargs()
    shapes = {name: tuple(tensor.shape) for name, tensor in got.items()}
    assert shapes == {
        "prompt_embeds": (2, 77, 80),  # 32 features from the first encoder, 48 from the second
        "negative_prompt_embeds": (2, 77, 80),
        "pooled_prompt_embeds": (2, 48),
        "negative_pooled_prompt_embeds": (2, 48),
    }
    for tensor, reference in zip(got.values(), expected, strict=True):
        assert_close(tensor, reference)


def test_sdxl_weights_both_encoders_and_pools_the_first_chunk(sdxl: DiffusionPipeline) -> None:
    encoder = PromptEncoder(sdxl)
    weighted = encoder.encode(["(" + LONG_PROMPT + ":1.2)"], [""])
    plain = encoder.encode([LONG_PROMPT], [""])
    assert weighted.prompt_embeds.shape == (1, 154, 80)
    with torch.no_grad():
        pooled = sdxl.encode_prompt(LONG_PROMPT, device="cpu", do_classifier_free_guidance=False)[2]
    # The pooled embedding is the unweighted one of the first chunk, which diffusers' truncation keeps.
    assert_close(weighted.pooled_prompt_embeds, pooled)
    for half in (slice(0, 32), slice(32, 80)):  # first encoder's features, then the second's
        assert not torch.allclose(weighted.prompt_embeds[..., half], plain.prompt_embeds[..., half])
        assert_close(weighted.prompt_embeds[..., half].mean(), plain.prompt_embeds[..., half].mean())


def test_sdxl_zeroes_an_empty_negative_when_the_model_asks(
    sdxl: DiffusionPipeline, folders: dict[str, Path]
) -> None:
    pipe = AutoPipelineForInpainting.from_pretrained(folders["sdxl"], force_zeros_for_empty_prompt=True)
    zeroed = PromptEncoder(pipe).encode(["a cat", "a dog"], ["", "blurry"]).as_kwargs()
    encoded = PromptEncoder(sdxl).encode(["a cat", "a dog"], ["", "blurry"]).as_kwargs()
    for name in ("negative_prompt_embeds", "negative_pooled_prompt_embeds"):
        assert not zeroed[name][0].any()
        assert encoded[name][0].any()
        assert_close(zeroed[name][1], encoded[name][1])


def test_sdxl_refiner_uses_the_second_encoder_only(sdxl: DiffusionPipeline) -> None:
    components = {**sdxl.components, "tokenizer": None, "text_encoder": None}
    refiner = StableDiffusionXLInpaintPipeline(**components, force_zeros_for_empty_prompt=False)
    embeds = PromptEncoder(refiner).encode(["a cat"], ["blurry"])
    with torch.no_grad():
        expected = refiner.encode_prompt(
            "a cat", device="cpu", do_classifier_free_guidance=True, negative_prompt="blurry"
        )
    assert embeds.prompt_embeds.shape == (1, 77, 48)
    assert_close(embeds.prompt_embeds, expected[0])
    assert_close(embeds.negative_prompt_embeds, expected[1])
    assert_close(embeds.pooled_prompt_embeds, expected[2])


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_pipelines_accept_the_embeddings(kind: str, request: pytest.FixtureRequest) -> None:
    pipe = request.getfixturevalue(kind)
    embeds = PromptEncoder(pipe).encode([SEED_PROMPT, LONG_PROMPT], ["blurry", ""])
    kwargs = embeds.as_kwargs()
    pooled = {"pooled_prompt_embeds", "negative_pooled_prompt_embeds"}
    assert (pooled <= kwargs.keys()) == (kind == "sdxl")
    image = Image.new("RGB", (TINY_NATIVE_SIZE, TINY_NATIVE_SIZE), "gray")
    mask = Image.new("L", (TINY_NATIVE_SIZE, TINY_NATIVE_SIZE), 255)
    result = pipe(
        image=[image, image],
        mask_image=[mask, mask],
        height=TINY_NATIVE_SIZE,
        width=TINY_NATIVE_SIZE,
        num_inference_steps=2,
        output_type="np",
        **kwargs,
    )
    assert result.images.shape == (2, TINY_NATIVE_SIZE, TINY_NATIVE_SIZE, 3)
    assert np.isfinite(result.images).all()
