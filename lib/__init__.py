"""The package behind the executable book on what CT-denoising networks do.

Sub-packages and modules (one concept each):

- :mod:`lib.ct` - the seed paper's protocol, simulated low-dose CT (phantoms, lesions, the
  scanner) and real DICOM input.
- :mod:`lib.models` - the five denoisers, their receptive fields, and the shipped checkpoints.
- :mod:`lib.linearity` - activation patterns, exact and approximate linear regions, probed
  Jacobians, their SVD.
- :mod:`lib.instability` - worst-case perturbations in the image and the sinogram domain.
- :mod:`lib.train` - training loops, metrics, data parallelism, ``python -m lib.train NAME --ship``.
- :mod:`lib.profiles` - the ``quick`` / ``default`` / ``paper`` parameter sets of every chapter.
- :mod:`lib.run` - the papermill runner: ``python -m lib.run --profile quick``.
- :mod:`lib.notebooks` - finding the chapter notebooks and keeping them free of stored outputs.
- :mod:`lib.paths` - where the book's files, shipped data and caches live.
- :mod:`lib.device` - ``"auto"`` / ``"cpu"`` / ``"cuda"`` to a torch device.
- :mod:`lib.plotting` - the book's figure style, mu images with a stated window and colour bar,
  signed maps, zoom boxes; animations for static pages.
- :mod:`lib.stats` - bootstrap intervals for the book's summary numbers.
- :mod:`lib.storage` - atomic writes (no partial files).
"""

__version__ = "0.1.0"
