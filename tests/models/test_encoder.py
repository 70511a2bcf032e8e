import numpy as np
import pytest

from convssl.models.encoder import Encoder
from convssl.models.reference import ModelFolderError


def test_minilm_embeddings_rank_paraphrases_above_unrelated(minilm_path):
    encoder = Encoder.load(minilm_path)
    vectors = encoder.embed(
        ["my card has not arrived yet", "when will my new card come?", "what is the weather in Paris"],
        normalize=True,
    )
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_embedding_order_matches_input_order(minilm_path):
    encoder = Encoder.load(minilm_path)
    texts = ["a much longer sentence about transferring money abroad", "hi", "reset my pin"]
    together = encoder.embed(texts, batch_size=2)
    alone = np.stack([encoder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        Encoder.load(tmp_path / "nope")
    with pytest.raises(ModelFolderError, match="config.json"):
        Encoder.load(tmp_path)
