"""What-if studies: many seeded twin runs of scenario variants, in parallel on Dask,
summarised with confidence intervals (``cotenant whatif``).

- ``variants``: the dotted keys and run settings a study varies, applied and checked;
- ``runner``: the grid of variants x seeds, run serially or on Dask, cached;
- ``cache``: finished runs on disk, keyed by a hash of what decides their numbers;
- ``metrics``: the numbers read from one run's report;
- ``stats``: means, Student-t intervals, Welch differences;
- ``summary``: a study's intervals and differences, and how each metric reads;
- ``studies``: the built-in studies (notice, spares, price, power);
- ``report``: the text and HTML reports.
"""
