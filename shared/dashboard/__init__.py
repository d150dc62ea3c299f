"""The web dashboard: a static page and its assets, served by the function app (see ``assets``).

The page holds no data and no key: its script reads the function key from the page's own ``?code=`` and
calls the JSON routes with it, so everything shown goes through the same keys as the API.
"""
