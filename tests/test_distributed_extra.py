import sys

from click.testing import CliRunner

from rqgmm.cli import main


def test_a_missing_ray_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = CliRunner().invoke(main, ["fit", str(tmp_path / "x.parquet"), "--engine", "ray", "-o",
                                       str(tmp_path / "t"), "-q"])
    assert result.exit_code == 1
    assert "Ray, which is not installed: pip install 'rqgmm[ray]'" in result.output
