"""One module per data set format (the formats are described in :mod:`vlalign.datasets.formats`), and
:mod:`~vlalign.datasets.format_readers.base`, what they share. Each format module defines ``read(source)`` (its
batches of canonical items and rejects), ``check(source)`` (the cheap checks before work) and
``fingerprint(source)`` (what changes when its files change); :mod:`vlalign.datasets.readers` maps the format
names to these modules."""
