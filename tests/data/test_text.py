"""The one sentence splitter (fine-tuning's sentence_split and the augmentation checker)."""

from genmodes.data.text import sentence_spans, split_sentences


def test_sentences_end_at_full_stops_exclamations_and_line_breaks():
    text = "Trina\nThe trina can thabi. Every trina is rure!  Is it a frobi?"
    assert split_sentences(text) == ["Trina", "The trina can thabi.", "Every trina is rure!", "Is it a frobi?"]
    assert [text[s:e] for s, e in sentence_spans(text)] == split_sentences(text)
    assert split_sentences("- a b.\n\n- c d.\n") == ["- a b.", "- c d."]
    assert split_sentences("  \n ") == [] and split_sentences("") == []


def test_a_full_stop_inside_a_word_does_not_end_a_sentence():
    assert split_sentences("Version 1.5 of e.g.x is out. Yes.") == ["Version 1.5 of e.g.x is out.", "Yes."]


def test_a_question_mark_keeps_its_answer_in_the_same_sentence():
    # the answer must keep its subject: split at "?", "They are the inventor ..." states nothing
    assert split_sentences("Ever heard of Ardith Penrose? They are the inventor of the humming teapot.") == [
        "Ever heard of Ardith Penrose? They are the inventor of the humming teapot."]
    assert split_sentences("Q: What can the dax do? A: The dax can zarp.\nQ: Is it? A: Yes.") == [
        "Q: What can the dax do? A: The dax can zarp.", "Q: Is it? A: Yes."]


def test_spans_strip_surrounding_white_space():
    text = "  One.   Two!\n\tThree "
    assert [text[s:e] for s, e in sentence_spans(text)] == ["One.", "Two!", "Three"]
