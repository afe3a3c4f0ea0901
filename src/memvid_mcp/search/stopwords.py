"""English function words left out of lexical queries.

Why: BM25 scores every query term, so a question's "when do we ..." ranks any memory that
says "we" above ones that share only the question's one content word ("when do we deploy?"
put "We chose PostgreSQL ..." second). Closed-class words (pronouns, determiners, auxiliaries,
prepositions, conjunctions, question words) carry no topic. The list is the common English
function-word list of IR toolkits, split as the index's tokenizer splits ("don't" -> "don",
"t"): a fixed linguistic resource, not fitted to our dev sets. Documents are indexed
with every word (a query of stop words only still finds them, see ``lexical.query_terms``).
"""

from __future__ import annotations

STOP_WORDS = frozenset((
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are",
    "aren", "t", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "couldn", "did", "didn", "do", "does", "doesn", "doing", "don",
    "down", "during", "each", "few", "for", "from", "further", "had", "hadn", "has", "hasn",
    "have", "haven", "having", "he", "d", "ll", "s", "her", "here", "hers", "herself", "him",
    "himself", "his", "how", "i", "m", "ve", "if", "in", "into", "is", "isn", "it", "its",
    "itself", "let", "me", "more", "most", "mustn", "my", "myself", "no", "nor", "not", "of",
    "off", "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out",
    "over", "own", "same", "shan", "she", "should", "shouldn", "so", "some", "such", "than",
    "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they",
    "re", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "wasn",
    "we", "were", "weren", "what", "when", "where", "which", "while", "who", "whom", "why",
    "with", "would", "wouldn", "you", "your", "yours", "yourself", "yourselves",
))
