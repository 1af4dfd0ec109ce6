"""`odkit serve`: exported models behind a TF-Serving-compatible REST API, a `:detect` endpoint and a web page.

The HTTP layer (``app.py``) needs the ``serve`` extra (Starlette + uvicorn + python-multipart); the rest
uses only what ``odkit.inference`` uses (onnxruntime, numpy, Pillow). Nothing here imports torch.

    models.py    ServedModel: a Detector + its TF Serving signature metadata; loading several exports
    tfserving.py request parsing and response building for TF Serving's REST JSON (row and columnar)
    batching.py  MicroBatcher: concurrent requests -> one onnxruntime run per batch
    metrics.py   counters and histograms in Prometheus text format
    app.py       the Starlette application and the uvicorn runner
    static/      the web page (plain HTML/JS/CSS, no build step, no CDN)
"""
