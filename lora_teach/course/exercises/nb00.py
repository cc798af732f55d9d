"""Exercises for notebook 00, welcome and setup: a worked example of a check (q0) and two warm-ups on the
MNIST images (a number, then a function)."""

from __future__ import annotations

import torch

from lora_teach.course.exercises import Incorrect, Question, as_number, call_student

# q0: the worked example the notebook uses to show check / hint / solution (not an exercise).


def _check_q0(number_of_classes) -> str:
    got = as_number("number_of_classes", number_of_classes)
    if got != int(got):
        raise Incorrect("`number_of_classes` counts labels, so it is a whole number")
    if got == 9:
        raise Incorrect("`number_of_classes` is one short: the labels run from 0 to 9, both included")
    if got != 10:
        raise Incorrect("`number_of_classes` is not the number of different labels; count the digits 0 to 9")
    return "ten classes, one per digit."


q0 = Question(
    "q0 a worked example",
    _check_q0,
    hints=["A label is one digit. Which digits can a label be?", "The labels are 0, 1, ..., 9."],
    solution="number_of_classes = 10  # the digits 0 to 9",
)

# q1: a number. How many numbers one 28 x 28 image holds.


def _check_q1(pixels_per_image) -> str:
    got = as_number("pixels_per_image", pixels_per_image)
    if got == 28 + 28:
        raise Incorrect("`pixels_per_image` adds the two sides; a grid holds rows times columns numbers")
    if got == 28:
        raise Incorrect("`pixels_per_image` counts one row; the image has 28 rows of 28 pixels")
    if got == 60_000 * 28 * 28:
        raise Incorrect("`pixels_per_image` counts the whole training set; count a single image")
    if got != 28 * 28:
        raise Incorrect("`pixels_per_image` is not the number of pixels of one 28 x 28 image; see .hint()")
    return "784 numbers: notebook 03's network takes each image as a vector of 784 inputs."


q1 = Question(
    "q1 numbers in one image",
    _check_q1,
    hints=[
        "An image is a grid of 28 rows, each with 28 pixels.",
        "pixels_per_image = 28 * 28",
    ],
)

# q2: a function. The fraction of an image's pixels that carry ink, for an image of any size (the prompt
# says so): 28 x 28 like MNIST's, and smaller ones where a fixed 784 would give itself away.


def _q2_images() -> list[torch.Tensor]:
    sparse = torch.zeros(28, 28, dtype=torch.uint8)
    sparse[4:24, 12:15] = torch.arange(1, 61, dtype=torch.uint8).reshape(20, 3)  # 60 faint to bright pixels
    return [
        sparse,
        torch.tensor([[0, 0], [0, 255]], dtype=torch.uint8),
        torch.tensor([[0, 0, 0], [0, 0, 0]], dtype=torch.uint8),
        torch.tensor([[1, 2, 0, 0], [0, 0, 0, 7], [9, 0, 0, 0]], dtype=torch.uint8),
        torch.full((28, 28), 200, dtype=torch.uint8),
    ]


def _check_q2(ink_fraction) -> str:
    for image in _q2_images():
        shown = f"a {image.shape[0]} x {image.shape[1]} image"
        inked = int((image > 0).sum())
        expected = inked / image.numel()
        got = as_number(f"ink_fraction({shown})", call_student(ink_fraction, image, name="ink_fraction"))
        if abs(got - expected) <= 1e-6:
            continue
        if inked and abs(got - inked) <= 1e-6:
            raise Incorrect(
                "`ink_fraction` returns how many pixels carry ink; divide by the number of pixels"
            )
        if image.numel() != 28 * 28 and abs(got - inked / (28 * 28)) <= 1e-6:
            raise Incorrect(
                f"`ink_fraction` divides by 28 x 28 for {shown}; count the pixels of the image it is given"
            )
        if got > 1:
            raise Incorrect("`ink_fraction` returned more than 1; a fraction lies between 0 and 1")
        if abs(got - image.double().mean().item() / 255) <= 1e-6:
            raise Incorrect(
                "`ink_fraction` returns the mean brightness; count the pixels above 0 instead, however faint"
            )
        raise Incorrect(f"`ink_fraction` is wrong for {shown}; see .hint()")
    return "the share of pixels above 0; the cell below applies it to the training images."


q2 = Question(
    "q2 a function on images",
    _check_q2,
    hints=[
        "`image > 0` is a tensor of True/False, one per pixel. What fraction of it is True?",
        "return (image > 0).float().mean().item()",
    ],
)

__all__ = ["q0", "q1", "q2"]
