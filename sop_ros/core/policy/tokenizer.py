r"""A small PaliGemma-style tokenizer built locally, identical on every machine.

Nothing is downloaded: the vocabulary is a fixed list in this file, so the
learner and every robot build the same token ids, and a change to the list
changes :data:`TOKENIZER_DIGEST` (part of the policy's ``config_hash``), so
weights trained with one vocabulary are never activated with another.

Layout follows PaliGemma: ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, an
``<image>`` token no prompt ever produces, and ``"\n"`` as the prompt
terminator. Words outside the word list split into word pieces (single
characters in the worst case), so every lowercase English instruction with
digits and punctuation encodes without ``<unk>``.

Stateless after construction; a built tokenizer may be shared between threads
for encoding.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from sop_ros.core.weights import sha256_bytes

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "IMAGE_TOKEN",
    "PAD_TOKEN",
    "PROMPT_END",
    "TOKENIZER_DIGEST",
    "VOCABULARY",
    "build_tokenizer",
    "prompt_text",
]

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
BOS_TOKEN = "<bos>"
UNK_TOKEN = "<unk>"
IMAGE_TOKEN = "<image>"
# PaliGemma ends every prefix with a newline; PI0Processor appends it too.
PROMPT_END = "\n"

_SPECIAL = (PAD_TOKEN, EOS_TOKEN, BOS_TOKEN, UNK_TOKEN, IMAGE_TOKEN, PROMPT_END)

# Words that instructions for table-top manipulation use. Append only: inserting
# a word shifts every id after it and changes the digest.
_WORDS = """
a an the this that these those it its them they one two three four five six seven eight nine ten
and or but not no yes then if when while until after before again
to from into onto on in inside out outside of off at by with without near next beside between behind
above below under over up down left right front back top bottom middle center side corner edge
pick place put move push pull lift lower drop grasp grab hold release open close turn rotate slide
fold unfold stack unstack insert remove pour fill empty wipe clean press tap flip shake hang pack
sort arrange align fetch bring take give hand reach go stop wait return reset
red green blue yellow orange purple pink black white gray grey brown
cube block box ball cup mug bowl plate bottle can jar lid door drawer shelf table tray bin basket
bag cloth towel shirt sponge spoon fork knife pen marker book toy fruit apple banana lemon
object item target goal gripper arm robot hand camera
small large big little tall short long first second third last other same all each both
slowly quickly carefully gently
advantage positive negative task
""".split()  # noqa: SIM905 (a word list reads better as text)

_PUNCTUATION = tuple(string.punctuation)
_CHARACTERS = tuple(string.ascii_lowercase) + tuple(string.digits)

VOCABULARY: tuple[str, ...] = (
    *_SPECIAL,
    *dict.fromkeys(_WORDS),  # keeps first occurrence, in order
    *_CHARACTERS,
    *_PUNCTUATION,
    *(f"##{c}" for c in _CHARACTERS),
)

TOKENIZER_DIGEST = sha256_bytes("\x00".join(VOCABULARY).encode())


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the tokenizer (a few ms); the same ids on every call and machine."""
    vocab = {token: index for index, token in enumerate(VOCABULARY)}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=100))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    # Whitespace separates words; every punctuation character is its own token.
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        unk_token=UNK_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
    )
    # The newline must survive pre-tokenisation, which drops whitespace.
    tokenizer.add_tokens([PROMPT_END], special_tokens=False)
    return tokenizer


def prompt_text(instruction: str, advantage: bool | None = None, *, verbatim: bool = False) -> str:
    """Return the text part of a prompt: the instruction and, for RECAP, the advantage indicator.

    Args:
        instruction: Natural-language task instruction.
        advantage: True for "advantage: positive", False for "advantage: negative",
            None to leave the indicator out (plain imitation).
        verbatim: Keep the instruction's case and spacing (PaliGemma's tokenizer, as LeRobot
            feeds it; only a trailing newline goes, the prompt layout adds one); otherwise
            lowercase it and collapse whitespace (the built-in vocabulary is lowercase).
    """
    text = instruction.removesuffix(PROMPT_END) if verbatim else " ".join(instruction.lower().split())
    if advantage is None:
        return text
    return f"{text} advantage: {'positive' if advantage else 'negative'}"
