"""``imgtrans app``: a local web page to draw (or upload) an input and see the model's translation.

- [palettes][imgtrans.app.palettes]: the label colours the canvas paints with (the 12 CMP Facades
  classes, black on white for edges, or free) and the starting example;
- [server][imgtrans.app.server]: the page's HTTP server (Python's ``http.server``, no extra
  dependency) and its translation endpoint.

The page (``static/``) is plain HTML, CSS and JavaScript served by that server: it loads nothing
from elsewhere, so it works without internet. See ``docs/app.md`` for why it is not a gradio app.
"""

from imgtrans.app.palettes import EDGES, FACADES, FREE, PALETTES, Palette, palette_for
from imgtrans.app.server import AppServer, decode_upload, make_server, translate_image

__all__ = [
    "EDGES",
    "FACADES",
    "FREE",
    "PALETTES",
    "AppServer",
    "Palette",
    "decode_upload",
    "make_server",
    "palette_for",
    "translate_image",
]
