"""The one network configuration: presets, validation, serialisation."""

import pytest

from symspike.firmware.config import Formats, NetworkConfig, preset


def test_presets_follow_the_authors_code():
    assert preset(100).eta_in == 0.005 and preset(400).eta_ec == 0.04
    assert preset(1600).eta_in == 0.02 and preset(1600).eta_ec == 0.08
    assert preset(1600).tau_theta == 8e6 and preset(6400).tau_theta == 2e7
    assert preset(6400).theta_plus == 0.05 and preset(400).theta_plus == 0.07
    assert preset(400).target_ec == pytest.approx(320.0)
    f = preset(400, "fashion-mnist")
    assert (f.e_v_thresh, f.wmax_ec, f.target_in, f.image_mean) == (-60.0, 40.0, 19.6, 30.0)
    assert f.eta_in == 0.02 and f.eta_ec == 0.32 and f.tau_theta == 5e7
    assert f.wmax_in == 0.25 and preset(400).wmax_in == 1.0
    assert f.target_ec == pytest.approx(800.0)


def test_derived_values():
    c = preset(100)
    assert c.steps_present == 700 and c.steps_rest == 300
    assert c.teacher_p == pytest.approx(0.1)
    assert c.decay_trace == pytest.approx(0.975)


def test_round_trip_and_fingerprint():
    c = preset(400, formats={"weight_bits": 6})
    again = NetworkConfig.from_dict(c.to_dict())
    assert again == c and again.config_id == c.config_id
    assert preset(400).config_id != c.config_id
    # Where the chip runs is no part of what it computes.
    assert preset(400, formats={"weight_bits": 6}, clock_hz=62.5e6,
                  board="ulx3s-85f").config_id == c.config_id


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(n_exc=0), ValueError, "n_exc"),
    (dict(n_exc=1.5), TypeError, "n_exc"),
    (dict(dataset="cifar"), ValueError, "dataset"),
    (dict(rest="sleep"), ValueError, "rest"),
    (dict(rule="triplet"), ValueError, "rule"),
    (dict(lanes=3), ValueError, "power of two"),
    (dict(dt=0.0), ValueError, "dt"),
    (dict(t_present=350.25), ValueError, "whole number"),
])
def test_validation(kwargs, error, text):
    with pytest.raises(error, match=text):
        NetworkConfig(**kwargs)


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(weight_bits=1), ValueError, "weight_bits"),
    (dict(weight_bits=8.0), TypeError, "weight_bits"),
    (dict(stochastic_rounding=1), TypeError, "stochastic_rounding"),
    (dict(sr_bits=12, recip_frac=8), ValueError, "sr_bits"),
])
def test_format_validation(kwargs, error, text):
    with pytest.raises(error, match=text):
        Formats(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown"):
        NetworkConfig.from_dict({"n_exc": 10, "colour": "blue"})
