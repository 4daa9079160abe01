"""`streamproc serve`: the loaded model behind an OpenAI-compatible HTTP API.

    errors.py    OpenAI's error JSON and the status code for each of our typed errors
    limits.py    what a request may cost before model work: JSON depth, text size, the decode pool
    imagesize.py an image's width and height from its file header (checked before decoding)
    media.py     image and video parts -> RGB arrays at the model's geometry (no network)
    request.py   a chat-completions body -> model inputs, generation parameters, stop strings
    pool.py      the engines behind a bounded queue; each request runs on a worker thread
    text.py      token ids -> text deltas as they come, stop strings
    metrics.py   Prometheus metrics of the API
    app.py       the routes (chat completions, models, metrics, health), logging, server-sent events

The routes run on the project's one HTTP stack (streamproc/http): the same middleware (keys, Host
check, body limit, cross-site refusals, security headers) and server as `streamproc run`'s port.
"""
