"""``n_examples: 0`` in the retrieval recipe asks for no example queries (it used to search with an empty query)."""

import numpy as np

from medclip.embedding import EmbeddedRows
from recipes.retrieval import Config, example_queries


def rows(n: int = 4) -> EmbeddedRows:
    generator = np.random.default_rng(0)
    vectors = generator.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return EmbeddedRows(
        row_numbers=np.arange(1, n + 1),
        patients=np.array([f"p{i}" for i in range(n)]),
        studies=np.array([f"s{i}" for i in range(n)]),
        sites=[None] * n,
        labels=np.zeros((n, 1)),
        targets=np.zeros((n, 0)),
        embeddings={"report": vectors, "ct": vectors[::-1].copy()},
        present={"report": np.ones(n, bool), "ct": np.ones(n, bool)},
    )


def test_no_examples_when_none_are_asked_for():
    cfg = Config(query_modality="report", target_modality="ct", n_examples=0)
    assert example_queries(rows(), cfg, ("finding",)) == []


def test_examples_are_the_first_queries_with_their_hits():
    cfg = Config(query_modality="report", target_modality="ct", n_examples=2)
    examples = example_queries(rows(), cfg, ("finding",), n_hits=3)
    assert [example["query"] for example in examples] == ["s0", "s1"]
    assert all(len(example["hits"]) == 3 for example in examples)
