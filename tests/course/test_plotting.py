"""Image grids: known canvases built by hand, and the reshape formulas the chapters used before the helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display; plt.show() is then a no-op and the figure stays open to inspect

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_internals.course import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_a_small_grid_is_the_canvas_drawn_by_hand():
    images = torch.tensor(
        [[[[0.1, 0.2], [0.3, 0.4]]], [[[5.0, float("nan")], [-7.0, -0.5]]], [[[0.9, 0.8], [0.7, 0.6]]]]
    )  # (3, 1, 2, 2)
    f = -1.0  # fill
    expected = torch.tensor(
        [
            [f, f, f, f, f, f, f],
            [f, 0.1, 0.2, f, 1.0, 0.0, f],  # 5 is clipped to 1, NaN drawn as 0
            [f, 0.3, 0.4, f, -1.0, -0.5, f],
            [f, f, f, f, f, f, f],
            [f, 0.9, 0.8, f, f, f, f],  # the last row's empty cell stays fill
            [f, 0.7, 0.6, f, f, f, f],
            [f, f, f, f, f, f, f],
        ]
    )
    got = plotting.image_grid(images, per_row=2, gap=1, border=1, fill=f)
    assert got.shape == (1, 7, 7)
    torch.testing.assert_close(got[0], expected)


def test_the_default_frames_match_the_pad_and_reshape_of_chapter_2():
    images = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # some out of range
    # Chapter 2's class grid before the helper: pad every digit by a 1-pixel frame, then a row per class.
    framed = torch.nn.functional.pad(images.clamp(-1, 1), (1, 1, 1, 1), value=-0.6)  # (30, 1, 10, 10)
    expected = framed.reshape(10, 3, 10, 10).permute(0, 2, 1, 3).reshape(100, 30)  # (100, 30)
    torch.testing.assert_close(plotting.image_grid(images, per_row=3), expected[None])


def test_white_gaps_match_the_loop_of_chapter_7():
    images = torch.rand(13, 3, 4, 5, generator=torch.Generator().manual_seed(1)) * 2 - 1
    per_row, (n, c, h, w) = 5, images.shape
    rows = -(-n // per_row)
    canvas = torch.full((c, rows * (h + 1) + 1, per_row * (w + 1) + 1), 1.0)  # chapter 7's show(), in [0, 1]
    for k, image in enumerate(images):
        r, col = divmod(k, per_row)
        canvas[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = (image + 1) / 2
    got = plotting.image_grid(images, per_row=per_row, gap=1, border=1, fill=1.0)
    torch.testing.assert_close((got + 1) / 2, canvas)
    np.testing.assert_allclose(plotting.to_rgb(got), canvas.permute(1, 2, 0).numpy(), rtol=0, atol=1e-7)


def test_image_row_is_a_strip_with_white_gaps_and_grey_is_dark_ink_on_white():
    rgb = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1).expand(4, 3, 2, 2)  # (4, 3, 2, 2)
    strip = plotting.image_row(rgb)
    assert strip.shape == (2, 4 * 3, 3)
    np.testing.assert_allclose(strip[:, 0], [[0.0, 0.5, 1.0]] * 2)
    np.testing.assert_allclose(strip[:, 2::3], np.ones((2, 4, 3)))  # a white gap after every image
    # Chapter 5's strip before the helper: each image (H, W, 3) in [0, 1] followed by a column of ones.
    images = torch.rand(5, 3, 4, 3, generator=torch.Generator().manual_seed(2)) * 2.2 - 1.1
    rgb01 = ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    expected = np.concatenate([np.concatenate([im, np.ones((4, 1, 3))], axis=1) for im in rgb01], axis=1)
    np.testing.assert_allclose(plotting.image_row(images), expected, rtol=0, atol=1e-7)
    grey = plotting.image_row(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))  # ink, paper
    np.testing.assert_allclose(grey[0], [[0, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]])


def test_digit_rows_draws_the_framed_canvas_with_a_label_per_row():
    rows = {"a": torch.zeros(4, 1, 8, 8), "b": torch.ones(3, 1, 8, 8)}  # a short row is padded with frame
    plotting.digit_rows(rows, "title")
    ax = plt.gcf().axes[0]
    drawn = ax.images[0].get_array()
    assert drawn.shape == (20, 40)
    assert drawn[11, 31] == plotting.DIGIT_FRAME and drawn[11, 21] == 1.0 and drawn[1, 31] == 0.0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    np.testing.assert_allclose(ax.get_yticks(), [4.5, 14.5])  # the middle of each row of digits


def test_show_panels_draws_one_grid_per_panel():
    panels = {"grey": torch.zeros(12, 1, 8, 8), "colour": torch.zeros(12, 3, 8, 8)}
    plotting.show_panels(panels, "title", per_row=6)
    axes = plt.gcf().axes
    assert [ax.get_title() for ax in axes] == ["grey", "colour"]
    assert axes[0].images[0].get_array().shape == (2 * 9 + 1, 6 * 9 + 1)
    assert axes[1].images[0].get_array().shape == (2 * 9 + 1, 6 * 9 + 1, 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: plotting.image_grid(torch.zeros(2, 8, 8)), "images must be a non-empty floating-point tensor"),
        (lambda: plotting.image_grid(torch.zeros(2, 2, 8, 8)), r"with C in \[1, 3\], got shape \(2, 2, 8, 8\)"),
        (lambda: plotting.image_grid(torch.zeros(2, 1, 8, 8, dtype=torch.int64)), "floating-point"),
        (lambda: plotting.image_grid(torch.zeros(2, 1, 8, 8), per_row=0), "per_row must be an int >= 1"),
        (lambda: plotting.image_grid(torch.zeros(2, 1, 8, 8), gap=-1), "gap must be an int >= 0"),
        (lambda: plotting.image_grid(torch.zeros(2, 1, 8, 8), fill=2.0), "fill must"),
        (lambda: plotting.to_rgb(torch.zeros(1, 1, 2, 2)), "canvas must be a tensor"),
        (lambda: plotting.digit_rows({"a": torch.zeros(2, 1, 8, 8), "b": torch.zeros(2, 1, 4, 4)}, "t"), "one shape"),
        (lambda: plotting.show_panels({"x": torch.zeros(2, 8, 8)}, "t"), r"panels\['x'\] must be"),
    ],
)
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 3)])
def test_a_data_uri_decodes_to_the_picture_in_8_bits(shape):
    import base64
    import io

    from PIL import Image

    picture = np.random.default_rng(0).random(shape)
    picture[0, 0] = 0.0
    picture[-1, -1] = 1.0
    uri = plotting.png_data_uri(picture)
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))))
    assert decoded.dtype == np.uint8 and decoded.shape == shape
    np.testing.assert_array_equal(decoded, np.floor(picture * 255 + 0.5))


@pytest.mark.parametrize(
    "picture, match",
    [
        (np.full((2, 2), 1.5), r"values in \[0, 1\]"),
        (np.full((2, 2), np.nan), "values in"),
        (np.zeros((2, 2, 4)), "shape"),
    ],
)
def test_a_picture_out_of_range_or_shape_is_refused_not_clipped(picture, match):
    with pytest.raises(ValueError, match=f"picture must .*{match}"):
        plotting.png_data_uri(picture)
