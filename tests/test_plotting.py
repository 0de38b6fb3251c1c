"""Figures for the static page: the animation player works offline."""

import matplotlib

matplotlib.use("agg")

import numpy as np
import pytest
from matplotlib import animation

from lib import plotting


def test_animation_loads_nothing_and_labels_its_buttons():
    frames = [np.zeros((4, 4)), np.ones((4, 4)), np.eye(4)]
    html = plotting.animate(frames, ["a", "b", "c"], (0.0, 1.0)).data
    assert "http" not in html and "<link" not in html and 'class="fa' not in html
    assert html.count("<button") == len(plotting._BUTTON_TEXT) == 9
    assert html.count("data:image/png;base64") == 3


def test_a_changed_player_is_refused(monkeypatch):
    real = animation.Animation.to_jshtml
    monkeypatch.setattr(animation.Animation, "to_jshtml",
                        lambda self: real(self).replace("fa-minus", "fa-circle-minus"))
    with pytest.raises(RuntimeError, match="found 1 stylesheet links and the icons .*fa-circle-minus"):
        plotting.animate([np.zeros((2, 2))] * 2, ["a", "b"], (0.0, 1.0))
