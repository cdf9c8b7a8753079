import numpy as np
import pytest

from vision_core.quant.agreement import cosine_similarity, output_agreement


def test_cosine_of_scaled_copy_is_one_and_of_opposite_is_minus_one():
    a = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    assert cosine_similarity(a, 3 * a) == pytest.approx(1.0)
    assert cosine_similarity(a, -a) == pytest.approx(-1.0)


def test_cosine_of_orthogonal_vectors_is_zero():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)


def test_agreement_is_per_output_and_requires_the_same_names():
    ref = {"C2": np.ones(4), "C3": np.array([1.0, 0, 0, 0])}
    assert output_agreement(ref, {"C2": np.ones(4), "C3": np.array([1.0, 1, 0, 0])}) == pytest.approx(
        {"C2": 1.0, "C3": 2**-0.5}
    )
    with pytest.raises(ValueError, match="outputs differ"):
        output_agreement(ref, {"C2": np.ones(4)})
