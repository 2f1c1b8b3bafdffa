"""Controlled degradations with a severity level (fuse.data.conditions) on hand-built inputs."""
from __future__ import annotations

import numpy as np
import pytest

from fuse.data.conditions import (
    CONDITIONS,
    EventWindow,
    condition_rng,
    parse_condition,
)
from fuse.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 100, 200  # sensor and image size
START, STOP = 10.0, 11.0  # a one-second event window
LEVELS = range(1, 6)
IMAGE_NAMES = sorted(name for name, cls in CONDITIONS.items() if cls.target == "image")
EVENT_NAMES = sorted(name for name, cls in CONDITIONS.items() if cls.target == "events")
DETERMINISTIC = {"overexposure"}  # a fixed gain: draws nothing


def _image(seed: int = 0) -> np.ndarray:
    """A random texture in 1..254, so black pixels can only come from a mask."""
    return np.random.default_rng(seed).integers(1, 255, size=(H, W, 3), dtype=np.uint8)


def _window(n: int = 5000, seed: int = 0, start: float = START, stop: float = STOP) -> EventWindow:
    """``n`` events at distinct, sorted times in the window, event i at its own pixel (i mod H*W)."""
    rng = np.random.default_rng(seed)
    pixel = np.arange(n) % (H * W)
    events = np.stack([np.sort(rng.uniform(start, stop, n)), pixel % W, pixel // W,
                       np.where(rng.random(n) < 0.5, -1.0, 1.0)], axis=1)
    return EventWindow(events, H, W, start, stop)


def _input(name: str) -> np.ndarray | EventWindow:
    return _image() if CONDITIONS[name].target == "image" else _window()


def _array(x: np.ndarray | EventWindow) -> np.ndarray:
    return x.events if isinstance(x, EventWindow) else x


def _apply(name: str, severity: int, x, seed: int = 0, frame: int = 0):
    return CONDITIONS[name](severity).apply(x, condition_rng(seed, frame))


def _binomial_ok(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` within 5 standard deviations of a Binomial(n, p) mean."""
    return abs(count - n * p) <= 5 * np.sqrt(n * p * (1 - p))


def _poisson_ok(count: int, mean: float) -> bool:
    return abs(count - mean) <= 5 * np.sqrt(mean)


def _kept_in_order(source: np.ndarray, out: np.ndarray) -> bool:
    """Whether the rows of ``source`` (distinct times) that are in ``out`` appear there whole and in order."""
    rows = out[np.isin(out[:, 0], source[:, 0])]
    index = np.searchsorted(source[:, 0], rows[:, 0])
    return bool(np.all(np.diff(index) > 0) and np.array_equal(source[index], rows))


def _added(source: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The rows of ``out`` that are not rows of ``source`` (whose times are distinct)."""
    return out[~np.isin(out[:, 0], source[:, 0])]


def _sorted_by_time(events: np.ndarray) -> bool:
    return bool(np.all(np.diff(events[:, 0]) >= 0))


# ----------------------------------------------------------------------------- every condition


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_severity_zero_returns_the_input_and_draws_nothing(name):
    x = _input(name)
    rng = condition_rng(0, 0)
    assert _apply(name, 0, x) is x
    assert CONDITIONS[name](0).apply(x, rng) is x
    assert rng.random() == condition_rng(0, 0).random()


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_seed_and_frame_reproduce_exactly_and_another_frame_differs(name):
    x = _input(name)
    before = _array(x).copy()
    first = _array(_apply(name, 3, x, seed=5, frame=7))
    again = _array(_apply(name, 3, x, seed=5, frame=7))
    other_frame = _array(_apply(name, 3, x, seed=5, frame=8))
    other_seed = _array(_apply(name, 3, x, seed=6, frame=7))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, before)
    assert np.array_equal(_array(x), before), "the input was modified"
    if name in DETERMINISTIC:
        assert np.array_equal(first, other_frame) and np.array_equal(first, other_seed)
    else:
        assert not np.array_equal(first, other_frame)
        assert not np.array_equal(first, other_seed)


def test_a_frames_generator_does_not_depend_on_the_order_frames_are_drawn_in():
    forward = {frame: condition_rng(3, frame).random(4) for frame in range(5)}
    backward = {frame: condition_rng(3, frame).random(4) for frame in reversed(range(5))}
    assert all(np.array_equal(forward[frame], backward[frame]) for frame in range(5))


def test_every_seed_and_frame_has_its_own_stream_apart_from_plainly_seeded_ones():
    pairs = [(seed, frame) for seed in range(4) for frame in range(4)]
    first = {pair: condition_rng(*pair).random() for pair in pairs}
    plain = {np.random.default_rng(seed).random() for seed in range(4)}
    plain |= {np.random.default_rng(list(pair)).random() for pair in pairs}
    assert len(set(first.values())) == len(pairs)
    assert not plain & set(first.values())


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_conditions_keep_dtype_and_shape(name):
    for severity in LEVELS:
        out = _apply(name, severity, _image())
        assert out.dtype == np.uint8 and out.shape == (H, W, 3)


def _by_level(name: str, image: np.ndarray, measure) -> list[float]:
    """``measure(out)`` at severities 0..5, each level drawing from the same (seed, frame)."""
    return [measure(_apply(name, severity, image)) for severity in range(6)]


def test_low_light_darkens_with_severity():
    means = _by_level("low_light", _image(), lambda out: out.mean())
    assert np.all(np.diff(means) < 0)
    assert means[5] < 0.1 * means[0]


def test_overexposure_brightens_and_saturates_with_severity():
    image = _image()
    means = _by_level("overexposure", image, lambda out: out.mean())
    saturated = _by_level("overexposure", image, lambda out: np.mean(out == 255))
    assert np.all(np.diff(means) > 0)
    assert np.all(np.diff(saturated) > 0)
    assert saturated[5] > 0.8


def test_gaussian_noise_std_rises_with_severity_and_matches_the_table():
    gray = np.full((H, W, 3), 128, np.uint8)
    stds = _by_level("gaussian_noise", gray, lambda out: (out.astype(float) - 128).std())
    assert np.all(np.diff(stds) > 0)
    for severity in (1, 2, 3):  # below clipping, the table's sigma (rounding adds 1/12 variance)
        sigma = CONDITIONS["gaussian_noise"].table[severity]
        assert abs(stds[severity] - np.sqrt(sigma**2 + 1 / 12)) < 0.03 * sigma


def test_motion_blur_removes_more_detail_with_severity():
    def detail(out: np.ndarray) -> float:
        image = out.astype(float)
        return np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()

    assert np.all(np.diff(_by_level("motion_blur", _image(), detail)) < 0)


def test_occlusion_blacks_out_rectangles_and_more_with_severity():
    image = _image()
    mean_share = []
    for severity in LEVELS:
        count, ratio = CONDITIONS["occlusion"].table[severity]
        rows, cols = int(ratio * H), int(ratio * W)  # +1 each, less one where cut at the border
        smallest, largest = rows * cols / (H * W), (rows + 1) * (cols + 1) / (H * W)
        shares = []
        for frame in range(10):
            out = _apply("occlusion", severity, image, frame=frame)
            black = np.all(out == 0, axis=2)
            assert np.array_equal(out[~black], image[~black]), "pixels outside the rectangles changed"
            shares.append(black.mean())
        assert smallest <= min(shares) and max(shares) <= count * largest
        mean_share.append(np.mean(shares))
    assert np.all(np.diff(mean_share) > 0)


# ----------------------------------------------------------------------------- events


def test_dropout_keeps_the_stated_share_in_order():
    window = _window(20000)
    kept_before = window.events
    for severity in LEVELS:
        p = CONDITIONS["dropout"].table[severity]
        out = _apply("dropout", severity, window).events
        assert _binomial_ok(len(out), len(window.events), 1 - p)
        assert _kept_in_order(window.events, out)
        assert np.all(np.isin(out[:, 0], kept_before[:, 0])), "a level keeps an event the level below dropped"
        kept_before = out


@pytest.mark.parametrize("severity", LEVELS)
def test_hot_pixels_fire_at_the_stated_rate_on_the_stated_number_of_pixels(severity):
    share, rate = CONDITIONS["hot_pixels"].table[severity]
    window = _window(2000)
    out = _apply("hot_pixels", severity, window).events
    added = _added(window.events, out)
    pixel = (added[:, 2] * W + added[:, 1]).astype(int)
    hot, counts = np.unique(pixel, return_counts=True)
    expected = rate * (STOP - START)
    assert len(hot) == round(share * H * W)
    assert _poisson_ok(len(added), len(hot) * expected)
    assert np.all(np.abs(counts - expected) <= 6 * np.sqrt(expected))
    first_polarity = added[np.unique(pixel, return_index=True)[1], 3]
    assert np.array_equal(added[:, 3], first_polarity[np.searchsorted(hot, pixel)]), "a hot pixel changed polarity"
    assert np.all((added[:, 0] >= START) & (added[:, 0] <= STOP))
    assert _sorted_by_time(out) and _kept_in_order(window.events, out)
    assert len(out) == len(window.events) + len(added)


def test_hot_pixels_are_distinct_in_every_frame():
    share, rate = CONDITIONS["hot_pixels"].table[5]
    empty = EventWindow(np.zeros((0, 4)), H, W, START, START + 0.01)  # 20 events per hot pixel
    for frame in range(30):  # drawn with replacement, 200 of 20000 pixels would collide ~once a frame
        events = _apply("hot_pixels", 5, empty, frame=frame).events
        assert len(np.unique(events[:, 2] * W + events[:, 1])) == round(share * H * W)


@pytest.mark.parametrize("severity", LEVELS)
def test_background_noise_adds_rate_times_pixels_times_duration_on_the_sensor(severity):
    rate = CONDITIONS["background_noise"].table[severity]
    window = _window(2000)
    out = _apply("background_noise", severity, window).events
    added = _added(window.events, out)
    t, x, y, p = added.T
    assert _poisson_ok(len(added), rate * H * W * (STOP - START))
    assert np.all((x >= 0) & (x < W) & (y >= 0) & (y < H))
    assert np.array_equal(x, np.round(x)) and np.array_equal(y, np.round(y))
    assert abs(x.mean() - (W - 1) / 2) < 0.05 * W and abs(y.mean() - (H - 1) / 2) < 0.05 * H
    assert np.all((t >= START) & (t <= STOP))
    assert _binomial_ok(int(np.sum(p == 1)), len(p), 0.5) and np.all(np.abs(p) == 1)
    assert _sorted_by_time(out) and _kept_in_order(window.events, out)


def _by_pixel(events: np.ndarray) -> np.ndarray:
    """Rows ordered by their (distinct) pixel, to pair an event with its jittered self."""
    return events[np.lexsort((events[:, 1], events[:, 2]))]


@pytest.mark.parametrize("severity", LEVELS)
def test_time_jitter_moves_times_by_the_stated_sigma_and_keeps_x_y_p_and_order(severity):
    sigma = CONDITIONS["time_jitter"].table[severity]
    events = _window(5000).events  # in a window 0.2 s (20 sigma) wider: no event reaches its ends
    window = EventWindow(events, H, W, START - 0.2, STOP + 0.2)
    out = _apply("time_jitter", severity, window).events
    before, after = _by_pixel(window.events), _by_pixel(out)
    shift = after[:, 0] - before[:, 0]
    assert _sorted_by_time(out)
    assert np.array_equal(before[:, 1:], after[:, 1:]), "x, y or p changed"
    assert abs(shift.std() - sigma) < 0.05 * sigma and abs(shift.mean()) < 0.1 * sigma


def test_time_jitter_reflects_at_the_window_ends_without_piling_events_there():
    window = _window(20000, start=0.0, stop=0.01)  # level 5's sigma is the whole window
    out = _apply("time_jitter", 5, window).events
    t = out[:, 0]
    assert len(out) == len(window.events) and _sorted_by_time(out)
    assert np.all((t >= 0.0) & (t <= 0.01))
    for edge in (t < 0.001, t > 0.009):  # uniform stays uniform: 10% in each tenth at the ends
        assert _binomial_ok(int(edge.sum()), len(t), 0.1)


def test_polarity_flip_flips_the_stated_share_and_nothing_else():
    window = _window(20000)
    flipped_before = np.zeros(len(window.events), bool)
    for severity in LEVELS:
        p = CONDITIONS["polarity_flip"].table[severity]
        out = _apply("polarity_flip", severity, window).events
        flipped = out[:, 3] != window.events[:, 3]
        assert np.array_equal(out[:, :3], window.events[:, :3])
        assert np.array_equal(out[flipped, 3], -window.events[flipped, 3])
        assert _binomial_ok(int(flipped.sum()), len(flipped), p)
        assert np.all(flipped[flipped_before]), "a level keeps a polarity the level below flipped"
        flipped_before = flipped


def test_noise_lands_in_an_empty_window():
    empty = EventWindow(np.zeros((0, 4)), H, W, START, STOP)
    for name in ("hot_pixels", "background_noise"):
        assert len(_apply(name, 3, empty).events) > 0
    for name in ("dropout", "time_jitter", "polarity_flip"):
        assert _apply(name, 3, empty).events.shape == (0, 4)


# ----------------------------------------------------------------------------- inputs and parser


def test_event_windows_and_inputs_of_the_wrong_kind_are_refused():
    events = _window(10).events
    zero_one = events.copy()
    zero_one[:, 3] = (zero_one[:, 3] > 0).astype(float)
    with pytest.raises(ValueError, match="polarity must be -1 or \\+1"):
        EventWindow(zero_one, H, W, START, STOP)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        EventWindow(events[:, :3], H, W, START, STOP)
    with pytest.raises(ValueError, match="start < stop"):
        EventWindow(events, H, W, STOP, START)
    with pytest.raises(TypeError, match="expects an EventWindow"):
        _apply("dropout", 1, events)
    with pytest.raises(TypeError, match="uint8 H x W x 3"):
        _apply("low_light", 1, _image().astype(np.float32))
    with pytest.raises(TypeError, match="uint8 H x W x 3"):
        _apply("low_light", 1, _image()[:, :, 0])


def test_parse_condition_reads_every_label_back():
    for name, cls in CONDITIONS.items():
        for severity in range(6):
            condition = cls(severity)
            assert parse_condition(condition.label) == condition
    assert parse_condition(" events:dropout@3 ").parameter == 0.4
    assert parse_condition("image:low_light@0").parameter is None


@pytest.mark.parametrize("text, message", [
    ("events:dropout", "must be written target:name@severity"),
    ("dropout@3", "must be written target:name@severity"),
    ("audio:dropout@3", "unknown target 'audio'.*expected one of image, events"),
    ("events:drop@3", "unknown events condition 'drop'.*background_noise, dropout, hot_pixels"),
    ("image:dropout@3", "unknown image condition 'dropout'.*gaussian_noise, low_light"),
    ("events:dropout@6", "severity '6'.*must be an integer 0..5"),
    ("events:dropout@-1", "severity '-1'"),
    ("events:dropout@3.0", "severity '3.0'"),
    ("events:dropout@x", "severity 'x'"),
])
def test_parse_condition_names_what_is_wrong(text, message):
    with pytest.raises(UsageError, match=message):
        parse_condition(text)


def test_a_severity_outside_the_table_is_refused():
    for severity in (-1, 6, 2.0):
        with pytest.raises(UsageError, match="must be 0..5"):
            CONDITIONS["dropout"](severity)
