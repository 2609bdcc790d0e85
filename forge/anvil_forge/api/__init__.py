"""The management API (``/api/v1/manage/...``) and the personal API keys it is used with.

``keys`` makes, checks and revokes the keys (the model, ``ApiKey``, belongs to ``accounts``); ``views`` are the
endpoints, which only authorise, parse, call the same selectors and services as the web pages, and answer JSON.
"""
