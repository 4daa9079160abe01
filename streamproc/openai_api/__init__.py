"""`streamproc serve`: the loaded model behind an OpenAI-compatible HTTP API.

    errors.py    OpenAI's error JSON and the status code for each of our typed errors
    media.py     image and video parts -> RGB arrays at the model's geometry (no network)
    request.py   a chat-completions body -> model inputs, generation parameters, stop strings
    pool.py      the engines behind a bounded queue; each request runs on a worker thread
    text.py      token ids -> text deltas as they come, stop strings
    metrics.py   Prometheus metrics of the API
    app.py       the Starlette application (routes, API key, logging, server-sent events)

Starlette and uvicorn are an optional extra (`pip install 'streamproc[serve]'`); nothing here
imports them at module level except app.py.
"""
