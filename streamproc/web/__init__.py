"""The web view: one page on the service's HTTP port with the cameras, their timelines, alerts
with their pictures, search and summaries. `hub.py` keeps the live state (a sink), `routes.py`
serves the page and its JSON/SSE API, `static/` is plain HTML/CSS/JS with no build step."""
