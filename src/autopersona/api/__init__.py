"""HTTP service and dashboard: profiles, audiences, tags, events, strategies, feedback.

``autopersona serve`` starts :func:`autopersona.api.app.create_app` under uvicorn; API keys
with scopes are managed with ``autopersona keys …`` (:mod:`autopersona.api.keys`).
"""
