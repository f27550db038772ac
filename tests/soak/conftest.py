"""The soak script is run by hand (``python tests/soak/soak.py``), never collected by pytest."""
collect_ignore = ["soak.py"]
