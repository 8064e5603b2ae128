"""Images decoded ahead of the model and packed into its batches (the stream, predict, the
cluster's decoding tasks): a worker decodes an image and its mask (``decode``: ``data.load_image``,
``data.load_label``, the file flow's own); the batches are the model's whole batch, a short last
one padded with copies of its first image as the runner pads (``pack_batch``); an unreadable image
is logged, listed and left out, the next ones filling its slot (``decoded_feeds``, ``decoded_units``).
"""

import logging
import time

import numpy as np

from .data import load_label, try_load_image

log = logging.getLogger(__name__)


def decode(task):
    """Worker: (image path, mask path, size) -> (image array, label mask, None) or (None, None, why)."""
    image_path, label_path, size = task
    image, why = try_load_image(image_path, size)
    return (None, None, why) if why else (image, load_label(label_path, size), None)


def pack_batch(spec, images):
    """One batch array: the images, then copies of the first (padding, as the runner pads)."""
    array = np.empty(spec.shape, spec.dtype)  # a new array each batch: a backend may keep it
    for slot, image in enumerate(images):
        array[slot] = image
    array[len(images):] = array[0]
    return array


def decoded_feeds(decoded, tasks, spec, timings, bad):
    """``([array], [(path, label), ...])`` per batch from the decoder; unreadable images are logged,
    listed in ``bad`` and left out (the next images fill their slots)."""
    for arrays, (items, _) in decoded_units(decoded, tasks, spec, timings, bad):
        yield arrays, items


def decoded_units(decoded, tasks, spec, timings, bad, position=0):
    """:func:`decoded_feeds` of ``tasks[position:]`` (what ``decoded`` decodes) with the batch's unit
    as the tag: ``(items, (first, end, [unreadable positions]))``, the task positions first..end-1
    it took (so a unit is well defined whatever is unreadable)."""
    batchsize = spec.shape[0]
    while position < len(tasks):
        items, images, first, skipped = [], [], position, []
        while len(items) < batchsize and position < len(tasks):
            start = time.perf_counter()
            image, label, why = next(decoded)
            timings.add("wait_ms", start)
            path = tasks[position][0]
            position += 1
            if why is not None:
                log.warning("%s: cannot read the image (%s)", path, why)
                bad.append(path)
                skipped.append(position - 1)
                continue
            items.append((path, label))
            images.append(image)
        if items:
            yield [pack_batch(spec, images)], (items, (first, position, skipped))
