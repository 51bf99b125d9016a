"""`threadline serve`: OTLP receiver -> store -> analysis -> query API -> web UI.

Never imports threadline.boundaries or threadline.integrations."""
