"""Every bad input gets a clear error naming the problem, and nothing is half-written."""

import json

import numpy as np
import pytest

from rqgmm import RQGMM, RQKMeans, load
from rqgmm.errors import ArtifactError, InvalidInputError, NotFittedError, OutputExistsError
from rqgmm.io import artifacts


@pytest.fixture
def fitted(blobs):
    return RQGMM(n_levels=2, codebook_size=6, random_state=0, progress=False).fit(blobs)


@pytest.mark.parametrize("klass", [RQGMM, RQKMeans])
def test_nan_and_inf_rows_are_named(klass, blobs):
    X = blobs.copy()
    X[[3, 17], 0] = np.nan
    X[40, 2] = np.inf
    with pytest.raises(InvalidInputError, match=r"3 row\(s\) contain NaN or Inf, first at row\(s\) 3, 17, 40"):
        klass(n_levels=1, codebook_size=4, progress=False).fit(X)


def test_drop_invalid_skips_bad_rows(blobs):
    X = blobs.copy()
    X[5] = np.nan
    clean = np.delete(blobs, 5, axis=0)
    params = dict(n_levels=2, codebook_size=6, random_state=0, progress=False)
    dropped = RQGMM(**params).fit(X, drop_invalid=True)
    reference = RQGMM(**params).fit(clean)
    np.testing.assert_array_equal(dropped.means_[0], reference.means_[0])
    codes, kept = dropped.encode(X, drop_invalid=True)
    assert kept.tolist() == [i for i in range(len(blobs)) if i != 5]  # which rows the codes belong to
    np.testing.assert_array_equal(codes, dropped.encode(clean))
    fit_codes, fit_kept = RQGMM(**params).fit_encode(X, drop_invalid=True)
    np.testing.assert_array_equal(fit_kept, kept)
    np.testing.assert_array_equal(fit_codes, reference.encode(clean))


def test_wrong_dimension_at_encode(fitted, blobs):
    with pytest.raises(InvalidInputError, match=r"X has 5 features, but \w+ is expecting 8"):
        fitted.encode(blobs[:, :5])


def test_fewer_rows_than_codes(blobs):
    with pytest.raises(InvalidInputError, match=r"10 row\(s\) but level 1 has codebook_size=32"):
        RQGMM(n_levels=2, codebook_size=[4, 32], progress=False).fit(blobs[:10])


def test_zero_rows():
    with pytest.raises(InvalidInputError, match="zero rows"):
        RQKMeans(n_levels=1, codebook_size=2, progress=False).fit(np.zeros((0, 4), dtype=np.float32))


def test_constant_data():
    with pytest.raises(InvalidInputError, match="constant data"):
        RQGMM(n_levels=1, codebook_size=2, progress=False).fit(np.ones((100, 4)))


@pytest.mark.parametrize("bad, message", [
    (np.array([["a", "b"], ["c", "d"]]), "expected real numbers"),
    (np.array([["a", 1]], dtype=object), "expected real numbers, got objects that are not numbers"),
    (np.array([[1, None]], dtype=object), "contain NaN or Inf, first at row"),  # None converts to a missing value
    (np.ones((3, 2), dtype=complex), "Complex data not supported")])
def test_non_numeric_input(bad, message):
    with pytest.raises(InvalidInputError, match=message):
        RQGMM(n_levels=1, codebook_size=1, progress=False).fit(bad)


def test_one_dimensional_input():
    with pytest.raises(InvalidInputError, match=r"expected a 2-D matrix"):
        RQGMM(n_levels=1, codebook_size=1, progress=False).fit(np.ones(10))


@pytest.mark.parametrize("params, message", [
    (dict(n_levels=0), r"n_levels must be an int in \[1, 64\]"),
    (dict(codebook_size=[4, 4], n_levels=3), "lists 2 sizes but n_levels=3"),
    (dict(covariance_type="full"), "covariance_type must be one of"),
    (dict(reg_covar=0.0), "reg_covar must be a number > 0"),
    (dict(init="nope"), "init must be one of"),
    (dict(residual="both"), "residual must be one of"),
])
def test_invalid_hyperparameters(params, message, blobs):
    with pytest.raises(InvalidInputError, match=message):
        RQGMM(**{"progress": False, **params}).fit(blobs)


def test_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        RQGMM().encode(np.ones((2, 2)))


def test_decode_rejects_out_of_range_codes(fitted):
    codes = np.zeros((4, 2), dtype=np.int64)
    codes[2, 1] = 6
    with pytest.raises(InvalidInputError, match=r"row 2 has code 6 at level 1, outside \[0, 6\)"):
        fitted.decode(codes)
    with pytest.raises(InvalidInputError, match=r"expected shape \(n_items, 2\)"):
        fitted.decode(np.zeros((4, 3), dtype=np.int64))


def test_missing_tokenizer_directory(tmp_path):
    with pytest.raises(ArtifactError, match="no tokenizer directory"):
        load(tmp_path / "absent")


def test_incomplete_tokenizer_directory(tmp_path, fitted):
    fitted.save(tmp_path / "tok")
    (tmp_path / "tok" / "arrays.safetensors").unlink()
    with pytest.raises(ArtifactError, match="arrays.safetensors is missing"):
        load(tmp_path / "tok")


def test_corrupted_manifest(tmp_path, fitted):
    fitted.save(tmp_path / "tok")
    (tmp_path / "tok" / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupted manifest"):
        load(tmp_path / "tok")


def test_corrupted_arrays_fail_the_checksum(tmp_path, fitted):
    fitted.save(tmp_path / "tok")
    path = tmp_path / "tok" / "arrays.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last array's payload
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load(tmp_path / "tok")


def test_truncated_array_file(tmp_path, fitted):
    fitted.save(tmp_path / "tok")
    path = tmp_path / "tok" / "arrays.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="corrupted array file"):
        load(tmp_path / "tok")


def test_other_format_version(tmp_path, fitted):
    fitted.save(tmp_path / "tok")
    manifest_path = tmp_path / "tok" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99 is not supported"):
        load(tmp_path / "tok")


def test_existing_output_is_refused_and_kept(tmp_path, fitted, blobs):
    fitted.save(tmp_path / "tok")
    before = (tmp_path / "tok" / "manifest.json").read_text()
    with pytest.raises(OutputExistsError, match="already exists"):
        fitted.save(tmp_path / "tok")
    assert (tmp_path / "tok" / "manifest.json").read_text() == before
    other = RQKMeans(n_levels=1, codebook_size=3, random_state=0, progress=False).fit(blobs)
    other.save(tmp_path / "tok", overwrite=True)
    assert isinstance(load(tmp_path / "tok"), RQKMeans)


def test_failed_save_loses_nothing(tmp_path, fitted, blobs, monkeypatch):
    fitted.save(tmp_path / "tok")
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(tmp_path / "tok", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary left behind
    np.testing.assert_array_equal(load(tmp_path / "tok").encode(blobs), fitted.encode(blobs))
