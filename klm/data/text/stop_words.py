"""The English stop-word list used by the `remove_stop_words` cleaning step.

`ENGLISH_STOP_WORDS` holds lower-case English function words: articles,
pronouns, auxiliary and modal verbs, prepositions, conjunctions and a few
frequent adverbs. Content-bearing words that such lists sometimes include
("not", "no", "never", "against") are deliberately left out, because removing
them flips the meaning of a sentence, which matters for classification.

Matching is on whitespace-separated words compared lower-cased, so a word
with punctuation attached ("the,") is kept; run the step on text whose
punctuation is already split off (as in WikiText) or accept that.

Stop-word removal is off by default: language models need function words.
"""

ENGLISH_STOP_WORDS = frozenset(
    """
    a about above after again all am an and any are as at
    be because been before being below between both but by
    can could
    did do does doing down during
    each
    few for from further
    had has have having he her here hers herself him himself his how
    i if in into is it its itself
    just
    me more most my myself
    of off on once only or other our ours ourselves out over own
    same shall she should so some such
    than that the their theirs them themselves then there these they this
    those through to too
    under until up
    very
    was we were what when where which while who whom why will with would
    you your yours yourself yourselves
    """.split()
)
