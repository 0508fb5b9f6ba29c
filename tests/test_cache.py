"""Where the caches live and how cached results are keyed (jaxinv.cache)."""
import os

import pytest

from jaxinv import cache, hoggle, inverters, visualise
from jaxinv.nets import cifar10


def every_cache() -> list[str]:
    return [cifar10.cache_path(), visualise.cache_dir(), inverters.default_dir("hog", 64), hoggle.default_dictionary_path()]


def test_xdg_cache_home_moves_every_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == str(tmp_path / "xdg" / "jaxinv")
    for path in every_cache():
        assert path.startswith(str(tmp_path / "xdg" / "jaxinv") + os.sep), path
    assert len(set(every_cache())) == 4


@pytest.mark.parametrize("value", [None, "", "relative/cache"])
def test_without_an_absolute_xdg_cache_home_caches_go_to_the_home_folder(monkeypatch, tmp_path, value):
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert cache.cache_root() == str(tmp_path / ".cache" / "jaxinv")
    for path in every_cache():
        assert path.startswith(str(tmp_path / ".cache" / "jaxinv") + os.sep), path
