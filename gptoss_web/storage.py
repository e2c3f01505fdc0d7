"""Static files storage for production: hashed names that ES module imports follow."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Whitenoise's compressed, hashed files, with ES module imports rewritten to the hashed names too.

    ``static/js/app.js`` imports ``./chat/main.js`` and so on. Without the rewrite a browser would load the
    hashed entry file and then the unhashed modules, which whitenoise serves without the long cache lifetime:
    an upgrade could mix an old module with a new one. Django rewrites ``import … from "./x.js"`` when asked.
    """

    support_js_module_import_aggregation = True
