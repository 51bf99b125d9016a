"""The project served: ``python -m django_shop.server`` (from tests/integrations) configures
threadline as service "shop" (OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT), calls tl.instrument()
before Django builds its handler, creates the orders table with two "book" orders, prints the
port it listens on and serves with uvicorn until its stdin closes, then flushes and exits 0."""

from __future__ import annotations

import os
import socket
import sys
import threading

import threadline as tl


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")
    tl.configure("shop")
    tl.instrument()  # after DJANGO_SETTINGS_MODULE, before the handler is built

    import django
    import uvicorn
    from django.core.asgi import get_asgi_application
    from django.db import connection

    django.setup()
    from django_shop.models import Order

    with connection.schema_editor() as editor:
        editor.create_model(Order)
    Order.objects.bulk_create([Order(item="book", price=9.5), Order(item="book", price=3.0)])

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(
        uvicorn.Config(get_asgi_application(), log_level="warning", lifespan="off")
    )
    print(sock.getsockname()[1], flush=True)

    def stop_at_eof() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=stop_at_eof, daemon=True).start()
    server.run(sockets=[sock])
    tl.shutdown()


if __name__ == "__main__":
    main()
