"""A small Django project for test_django.py: one app, one model, one view, served by uvicorn in
its own OS process (``python -m django_shop.server``)."""
