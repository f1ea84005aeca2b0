"""The start tokens: one rule for scoring and fine-tuning (a model trained after BOS is scored after BOS)."""

from tokenizers.processors import TemplateProcessing

from genmodes.training.finetune import encode_examples
from genmodes.models import load_model
from genmodes.scoring import encode_prefix
from genmodes.tokens import start_ids


def _tokenizers():
    _, plain = load_model("tiny-random")  # byte-level, adds nothing by default (as SmolLM2)
    _, with_bos = load_model("tiny-random")
    with_bos._tokenizer.post_processor = TemplateProcessing(
        single=f"{with_bos.bos_token} $A", special_tokens=[(with_bos.bos_token, with_bos.bos_token_id)])
    return plain, with_bos


def test_start_ids_is_bos_only_where_the_tokenizer_adds_it():
    plain, with_bos = _tokenizers()
    assert start_ids(plain) == []
    assert start_ids(with_bos) == [with_bos.bos_token_id]


def test_training_examples_start_as_scored_contexts_do():
    for tok in _tokenizers():
        (ids, labels), = encode_examples(tok, [("", "Alice met Bob.")])
        prefix = encode_prefix(tok, "Alice met Bob.")
        assert ids[:len(prefix)] == prefix
        assert labels[0] == -100  # nothing predicts the first token
