from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from transformers import PI0Processor
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling

from sop_ros.core.policy.inputs import PromptLayout, pixel_batch
from sop_ros.core.policy.tokenizer import (
    IMAGE_TOKEN,
    TOKENIZER_DIGEST,
    VOCABULARY,
    build_tokenizer,
    prompt_text,
)

INSTRUCTIONS = [
    "Pick up the red cube and put it in the bin.",
    "stack 3 blocks; then say 'done' (twice)!",
    "wipe the xylophone with a sponge",
]


def test_every_build_gives_the_same_ids() -> None:
    first, second = build_tokenizer(), build_tokenizer()
    for text in INSTRUCTIONS:
        assert first(text).input_ids == second(text).input_ids
    assert first.get_vocab() == second.get_vocab()
    assert len(TOKENIZER_DIGEST) == 64


def test_instructions_encode_without_unknown_tokens_and_round_trip() -> None:
    tokenizer = build_tokenizer()
    for text in INSTRUCTIONS:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids).replace(" ", "") == text.lower().replace(" ", "")


def test_special_tokens_follow_paligemma() -> None:
    tokenizer = build_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_id == VOCABULARY.index(IMAGE_TOKEN)
    # Special-token text typed into an instruction stays text.
    layout = PromptLayout(
        tokenizer, image_token_id=image_id, num_cameras=1, tokens_per_image=4, max_prompt_tokens=30
    )
    input_ids, _ = layout.encode(["put the <image> <bos> here"])
    assert input_ids[0].tolist().count(image_id) == 4
    assert input_ids[0].tolist().count(tokenizer.bos_token_id) == 1


def test_prompt_carries_the_advantage_indicator() -> None:
    assert prompt_text("  Pick   the Cube ") == "pick the cube"
    assert prompt_text("pick the cube", True) == "pick the cube advantage: positive"
    assert prompt_text("pick the cube", False) == "pick the cube advantage: negative"


def test_too_long_prompt_is_refused_with_its_length() -> None:
    layout = PromptLayout(
        build_tokenizer(), image_token_id=4, num_cameras=1, tokens_per_image=4, max_prompt_tokens=5
    )
    with pytest.raises(ValueError, match="needs 8 tokens, more than max_prompt_tokens=5"):
        layout.encode(["pick up the red cube and go"])


class _SmallImages(PilBackend):
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size: ClassVar[dict[str, int]] = {"height": 64, "width": 64}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    image_seq_length = 64


def test_inputs_match_what_pi0_processor_builds() -> None:
    processor = PI0Processor(image_processor=_SmallImages(), tokenizer=build_tokenizer(), chunk_size=4)
    layout = PromptLayout(
        build_tokenizer(), image_token_id=processor.image_token_id, num_cameras=2, tokens_per_image=64,
        max_prompt_tokens=20,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    prompt = prompt_text("pick up the red cube", True)
    expected = processor(images=[images], text=[prompt], padding="max_length", max_length=layout.length)
    input_ids, attention_mask = layout.encode([prompt])
    assert torch.equal(input_ids, expected["input_ids"])
    assert torch.equal(attention_mask, expected["attention_mask"])
    pixels = pixel_batch([{"a": images[0], "b": images[1]}], ["a", "b"], 64)
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=1e-6, rtol=0)
