"""Third-party transports: each module is import-guarded and needs its extra."""
