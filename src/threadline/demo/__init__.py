"""`threadline demo`: a small shop of HTTP services, a queue worker and a process pool, traced
end to end. `shop.Shop` runs it; `command` is the CLI."""
