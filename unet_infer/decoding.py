"""Images decoded ahead of the model and packed into its batches (the stream, predict, the
cluster's decoding tasks): a worker decodes an image and its mask (``decode``: ``data.load_image``,
``data.load_label``, the file flow's own); the batches are the model's whole batch, a short last
one padded with copies of its first image as the runner pads (``pack_batch``); an unreadable image
is logged, listed and left out, the next ones filling its slot (``decoded_units``).
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


def decoded_units(decoded, tasks, spec, timings, bad, position=0):
    """``([batch array], (items, (first, end, [unreadable positions])))`` per batch of ``tasks[position:]``
    (what ``decoded`` decodes): ``items`` ``[(path, label), ...]``; the unit, the task positions
    first..end-1 it took, is well defined whatever is unreadable (logged, listed in ``bad``, left out)."""
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
